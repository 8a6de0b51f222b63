/*
 * Guest agent client tests against a scripted fake qemu-ga: the peer end
 * of a socketpair on the same event loop.  The peer answers sync requests
 * by a script (noise first, a stale id, silence) and commands by a hook.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "check.h"
#include "compat.h"
#include "fake-io.h"
#include "log.h"
#include "qga.h"

#define MAXLINES	64

/* The fake agent: records requests, answers syncs and commands. */
struct peer {
	int		 fd;
	struct event	*ev;
	struct fake_in	 in;
	json_t		*lines[MAXLINES];
	int		 nlines;
	int		 nff;			/* 0xFF bytes received */
	int		 nsync;
	json_int_t	 sync_ids[MAXLINES];
	int		 sync_mute;		/* ignore this many syncs */
	int		 sync_noise;		/* noise, a stale id first */
	int		 cmd_mute;		/* never answer commands */
	const char	*late;			/* sent before a sync answer */
};

struct reply {
	int		 fired;
	json_t		*ret;
	char		 class[64];
	char		 desc[256];
	int		 free_qga;
};

struct t {
	struct event_base *base;
	struct qga	*q;
	struct peer	 peer;
	int		 ready, syncing, closed;
	char		 cause[256];
};

/* Run the loop until *flag reaches want or ms pass; 1 if it did. */
static int
run_until(struct t *t, int *flag, int want, int ms)
{
	double	 start = now_ms();

	while (*flag < want) {
		if (now_ms() - start > ms)
			return (0);
		event_base_loop(t->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
	return (1);
}

static void
peer_write(struct peer *p, const char *s, size_t len)
{
	fd_write_all(p->fd, s, len);
}

static void
peer_printf(struct peer *p, const char *fmt, ...)
{
	va_list	 ap;
	char	 buf[4096];
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	peer_write(p, buf, (size_t)n);
}

/* One request: a sync gets its id echoed behind 0xFF, commands by name. */
static void
peer_request(struct peer *p, json_t *j)
{
	const char	*name = json_string_value(json_object_get(j,
			    "execute"));
	json_int_t	 id;

	if (name == NULL)
		return;
	if (strcmp(name, "guest-sync-delimited") == 0) {
		id = json_integer_value(json_object_get(json_object_get(j,
		    "arguments"), "id"));
		p->sync_ids[p->nsync++ % MAXLINES] = id;
		if (p->sync_mute > 0) {
			p->sync_mute--;
			return;
		}
		if (p->late != NULL) {
			peer_printf(p, "%s\n", p->late);
			p->late = NULL;
		}
		if (p->sync_noise) {
			p->sync_noise = 0;
			peer_printf(p, "not json at all\n{\"return\": 7}\n"
			    "\xff{\"return\": %lld}\n", (long long)id + 1);
		}
		peer_printf(p, "\xff{\"return\": %lld}\n", (long long)id);
		return;
	}
	if (p->cmd_mute)
		return;
	if (strcmp(name, "guest-get-host-name") == 0)
		peer_printf(p, "{\"return\": {\"host-name\": \"desk1\"}}\n");
	else if (strcmp(name, "guest-shutdown") == 0)
		;	/* the real agent never answers it */
	else
		peer_printf(p, "{\"error\": {\"class\": \"CommandNotFound\", "
		    "\"desc\": \"The command %s has not been found\"}}\n",
		    name);
}

/* One line the client sent, after any 0xFF bytes (counted). */
static void
peer_line(void *arg, char *line, size_t len)
{
	struct peer	*p = arg;
	char		*s, *end = line + len;
	json_t		*j;

	for (s = line; s < end && (unsigned char)*s == 0xff; s++)
		p->nff++;
	if ((j = json_loadb(s, end - s, 0, NULL)) == NULL)
		return;
	if (p->nlines < MAXLINES)
		p->lines[p->nlines++] = json_incref(j);
	peer_request(p, j);
	json_decref(j);
}

static void
peer_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct peer	*p = arg;
	char		 buf[65536];
	ssize_t		 n;

	n = read(p->fd, buf, sizeof buf);
	if (n <= 0)
		return;
	fake_in_feed(&p->in, buf, n, peer_line, p);
}

static void
t_state_cb(struct qga *q, enum qga_state st, const char *cause, void *arg)
{
	struct t	*t = arg;

	if (st == QGA_READY)
		t->ready++;
	else if (st == QGA_SYNCING)
		t->syncing++;
	else
		t->closed++;
	snprintf(t->cause, sizeof t->cause, "%s", cause ? cause : "");
}

static void
t_reply_cb(struct qga *q, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct reply	*r = arg;

	r->fired++;
	r->ret = json_incref(ret);
	snprintf(r->class, sizeof r->class, "%s", errclass ? errclass : "");
	snprintf(r->desc, sizeof r->desc, "%s", errdesc ? errdesc : "");
	if (r->free_qga)
		qga_free(q);
}

static void
t_setup(struct t *t, int timeout_ms)
{
	static const struct qga_callbacks cbs = { t_state_cb };
	int	 sv[2];

	memset(t, 0, sizeof *t);
	t->base = event_base_new();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		abort();
	t->peer.fd = sv[1];
	t->peer.ev = event_new(t->base, sv[1], EV_READ | EV_PERSIST,
	    peer_read_cb, &t->peer);
	event_add(t->peer.ev, NULL);
	t->q = qga_create(t->base, sv[0], &cbs, t, timeout_ms);
}

static void
t_teardown(struct t *t)
{
	int	 i;

	qga_free(t->q);
	if (t->peer.ev != NULL)
		event_free(t->peer.ev);
	if (t->peer.fd != -1)
		close(t->peer.fd);
	for (i = 0; i < t->peer.nlines; i++)
		json_decref(t->peer.lines[i]);
	free(t->peer.in.buf);
	event_base_free(t->base);
}

/* Noise, a stale id and a bare reply before the answer: only ours counts. */
static void
test_sync_and_command(void)
{
	struct t	 t;
	struct reply	 r = { 0 }, r2 = { 0 };

	t_setup(&t, 2000);
	t.peer.sync_noise = 1;
	CHECK(qga_get_state(t.q) == QGA_SYNCING);
	CHECK(qga_execute(t.q, "guest-info", NULL, 0, t_reply_cb, &r) == -1);
	CHECK(run_until(&t, &t.ready, 1, 3000));
	CHECK(qga_get_state(t.q) == QGA_READY);
	CHECK(t.peer.nff == 1);		/* the parser reset before the sync */
	CHECK(t.peer.nsync == 1);

	CHECK(qga_execute(t.q, "guest-get-host-name", NULL, 0, t_reply_cb,
	    &r) == 0);
	CHECK(qga_execute(t.q, "guest-get-osinfo", NULL, 0, t_reply_cb,
	    &r2) == 0);
	CHECK(r.fired == 0);		/* never from inside qga_execute */
	CHECK(run_until(&t, &r2.fired, 1, 3000));
	CHECK(r.fired == 1);
	CHECK_STR(json_string_value(json_object_get(r.ret, "host-name")),
	    "desk1");
	CHECK_STR(r2.class, "CommandNotFound");
	CHECK(strstr(r2.desc, "guest-get-osinfo") != NULL);
	CHECK(t.ready == 1 && t.syncing == 0 && t.closed == 0);
	json_decref(r.ret);
	t_teardown(&t);
}

/*
 * A command the agent never answers times out; the client resyncs with a
 * new id, and the late reply to the old command (which the agent sends
 * before the sync answer) is not taken for the next command's.
 */
static void
test_timeout_resync(void)
{
	struct t	 t;
	struct reply	 r = { 0 }, q2 = { 0 }, r3 = { 0 };

	t_setup(&t, 300);
	CHECK(run_until(&t, &t.ready, 1, 3000));
	t.peer.cmd_mute = 1;
	CHECK(qga_execute(t.q, "guest-get-host-name", NULL, 0, t_reply_cb,
	    &r) == 0);
	CHECK(qga_execute(t.q, "guest-info", NULL, 0, t_reply_cb, &q2) == 0);
	t.peer.late = "{\"return\": {\"host-name\": \"stale\"}}";
	CHECK(run_until(&t, &r.fired, 1, 3000));
	CHECK_STR(r.class, "Timeout");
	CHECK(strstr(r.desc, "guest-get-host-name") != NULL);
	CHECK(q2.fired == 1);
	CHECK_STR(q2.class, "Disconnected");
	CHECK(t.syncing == 1);
	CHECK(qga_get_state(t.q) != QGA_READY || t.ready == 2);
	CHECK(run_until(&t, &t.ready, 2, 3000));
	CHECK(t.peer.nsync == 2);
	CHECK(t.peer.sync_ids[0] != t.peer.sync_ids[1]);

	t.peer.cmd_mute = 0;
	CHECK(qga_execute(t.q, "guest-get-host-name", NULL, 0, t_reply_cb,
	    &r3) == 0);
	CHECK(run_until(&t, &r3.fired, 1, 3000));
	CHECK_STR(json_string_value(json_object_get(r3.ret, "host-name")),
	    "desk1");
	json_decref(r3.ret);
	t_teardown(&t);
}

/* No agent in the guest: the client keeps asking, with fresh ids. */
static void
test_no_agent(void)
{
	struct t	 t;
	int		 three = 0;

	t_setup(&t, 100);
	t.peer.sync_mute = 1000;
	run_until(&t, &three, 1, 450);
	CHECK(t.ready == 0 && t.closed == 0);
	CHECK(qga_get_state(t.q) == QGA_SYNCING);
	CHECK(t.peer.nsync >= 3);
	CHECK(t.peer.nff == t.peer.nsync);
	CHECK(t.peer.sync_ids[0] != t.peer.sync_ids[1]);
	/* The agent starts late: the next attempt connects. */
	t.peer.sync_mute = 0;
	CHECK(run_until(&t, &t.ready, 1, 1000));
	t_teardown(&t);
}

/*
 * A guest that never opens the port reads nothing: one sync waits in the
 * socket, no more pile up, and its id still counts once the agent reads.
 */
static void
test_unread_sync(void)
{
	struct t	 t;
	int		 never = 0;

	t_setup(&t, 100);
	event_del(t.peer.ev);
	run_until(&t, &never, 1, 450);
	CHECK(qga_get_state(t.q) == QGA_SYNCING);
	event_add(t.peer.ev, NULL);
	CHECK(run_until(&t, &t.ready, 1, 2000));
	CHECK(t.peer.nsync == 1);
	CHECK(t.peer.nff == 1);
	t_teardown(&t);
}

/* guest-shutdown never gets an answer: done once written. */
static void
test_noreply(void)
{
	struct t	 t;
	struct reply	 r = { 0 }, r2 = { 0 };

	t_setup(&t, 300);
	CHECK(run_until(&t, &t.ready, 1, 3000));
	CHECK(qga_execute(t.q, "guest-shutdown", json_pack("{s:s}", "mode",
	    "powerdown"), QGA_NOREPLY, t_reply_cb, &r) == 0);
	CHECK(qga_execute(t.q, "guest-get-host-name", NULL, 0, t_reply_cb,
	    &r2) == 0);
	CHECK(run_until(&t, &r2.fired, 1, 3000));
	CHECK(r.fired == 1 && r.class[0] == '\0' && r.ret == NULL);
	CHECK_STR(json_string_value(json_object_get(r2.ret, "host-name")),
	    "desk1");
	CHECK(t.peer.nlines >= 3);
	CHECK_STR(json_string_value(json_object_get(t.peer.lines[1],
	    "execute")), "guest-shutdown");
	CHECK_STR(json_string_value(json_object_get(json_object_get(
	    t.peer.lines[1], "arguments"), "mode")), "powerdown");
	CHECK(t.syncing == 0);
	json_decref(r2.ret);
	t_teardown(&t);
}

/* QEMU goes away: what waits fails with Disconnected, then CLOSED. */
static void
test_eof(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	CHECK(run_until(&t, &t.ready, 1, 3000));
	t.peer.cmd_mute = 1;
	CHECK(qga_execute(t.q, "guest-get-host-name", NULL, 0, t_reply_cb,
	    &r) == 0);
	run_until(&t, &t.closed, 1, 50);
	event_free(t.peer.ev);
	t.peer.ev = NULL;
	close(t.peer.fd);
	t.peer.fd = -1;
	CHECK(run_until(&t, &t.closed, 1, 3000));
	CHECK(r.fired == 1);
	CHECK_STR(r.class, "Disconnected");
	CHECK(qga_get_state(t.q) == QGA_CLOSED);
	CHECK(qga_execute(t.q, "guest-info", NULL, 0, t_reply_cb, &r) == -1);
	CHECK(r.fired == 1);
	t_teardown(&t);
}

/* A reply callback may free the client; the rest still fire once. */
static void
test_free_in_callback(void)
{
	struct t	 t;
	struct reply	 r = { 0 }, r2 = { 0 };

	t_setup(&t, 2000);
	CHECK(run_until(&t, &t.ready, 1, 3000));
	r.free_qga = 1;
	CHECK(qga_execute(t.q, "guest-get-host-name", NULL, 0, t_reply_cb,
	    &r) == 0);
	CHECK(qga_execute(t.q, "guest-info", NULL, 0, t_reply_cb, &r2) == 0);
	CHECK(run_until(&t, &r.fired, 1, 3000));
	t.q = NULL;
	CHECK(r2.fired == 1);
	CHECK_STR(r2.class, "Disconnected");
	CHECK(t.closed == 0);		/* freed: no state callback */
	json_decref(r.ret);
	t_teardown(&t);
}

/*
 * A reply nobody asked for (an agent restarted mid-answer, or a stray
 * line) means the stream is out of step: resync, then carry on.
 */
static void
test_unasked_reply(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	CHECK(run_until(&t, &t.ready, 1, 3000));
	peer_printf(&t.peer, "{\"return\": {\"host-name\": \"x\"}}\n");
	CHECK(run_until(&t, &t.syncing, 1, 3000));
	CHECK(strstr(t.cause, "not asked") != NULL);
	CHECK(run_until(&t, &t.ready, 2, 3000));
	CHECK(t.peer.nsync == 2);
	/* Garbage alone is only noise: no resync. */
	peer_printf(&t.peer, "\x01\x02 not json\n");
	CHECK(qga_execute(t.q, "guest-get-host-name", NULL, 0, t_reply_cb,
	    &r) == 0);
	CHECK(run_until(&t, &r.fired, 1, 3000));
	CHECK_STR(json_string_value(json_object_get(r.ret, "host-name")),
	    "desk1");
	CHECK(t.syncing == 1 && t.peer.nsync == 2);
	json_decref(r.ret);
	t_teardown(&t);
}

/* The classifier: delimiter, shapes, garbage. */
static void
test_classify(void)
{
	json_t	*out;
	int	 d;

	CHECK(qga_line_classify("\xff{\"return\": 5}", 14, &d, &out) ==
	    QGA_LINE_RETURN && d == 1);
	CHECK(json_integer_value(json_object_get(out, "return")) == 5);
	json_decref(out);
	CHECK(qga_line_classify("junk\xff{\"return\": {}}", 19, &d, &out) ==
	    QGA_LINE_RETURN && d == 1);
	json_decref(out);
	CHECK(qga_line_classify("{\"error\": 3}", 12, &d, &out) ==
	    QGA_LINE_GARBAGE && out == NULL && d == 0);
	CHECK(qga_line_classify("{\"error\": {}}", 13, &d, &out) ==
	    QGA_LINE_ERROR);
	json_decref(out);
	CHECK(qga_line_classify("[1]", 3, &d, &out) == QGA_LINE_GARBAGE);
	CHECK(qga_line_classify("{\"return\"", 9, &d, &out) ==
	    QGA_LINE_GARBAGE);
	CHECK(qga_line_classify("\xff", 1, &d, &out) == QGA_LINE_GARBAGE &&
	    d == 1);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_init("test-qga", 1, getenv("QDESK_DEBUG") != NULL);
	test_classify();
	test_sync_and_command();
	test_timeout_resync();
	test_no_agent();
	test_unread_sync();
	test_noreply();
	test_eof();
	test_free_in_callback();
	test_unasked_reply();
	return (check_exit());
}
