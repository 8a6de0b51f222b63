/*
 * QMP client tests against a scripted fake QEMU: the peer end of a
 * socketpair, driven by the same event loop (or, for the oversized line, a
 * forked child), plus one test against a real qemu-system-x86_64.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "check.h"
#include "compat.h"
#include "log.h"
#include "qmp.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "	\
	"\"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2\"}, "	\
	"\"capabilities\": [\"oob\"]}}\r\n"

#define MAXLINES	64
#define MAXFDS		8

struct peer;
typedef void (*peer_hook)(struct peer *, json_t *cmd, const char *name,
    json_int_t id);

/* The fake QEMU end: records what the client sends, answers by script. */
struct peer {
	int		 fd;
	struct event	*ev;
	char		*in;
	size_t		 inlen;
	json_t		*lines[MAXLINES];
	int		 nlines;
	int		 fds[MAXFDS];
	int		 fdline[MAXFDS];	/* line the fd arrived with */
	int		 nfds;
	int		 eof;
	int		 manual_caps;		/* hook answers capabilities */
	peer_hook	 hook;
	void		*arg;
};

struct reply {
	int		 fired;
	int		 seq;
	json_t		*ret;
	char		 class[64];
	char		 desc[256];
	int		 free_qmp;		/* call qmp_free from the cb */
	int		 exec_rc;		/* qmp_execute from the cb */
	int		 try_exec;
};

/* Everything one test looks at. */
struct t {
	struct event_base *base;
	struct event	*tick;
	struct qmp	*q;
	int		 qfd;
	struct peer	 peer;
	int		 seq;
	int		 ready, ready_seq;
	int		 closed, closed_seq;
	char		 cause[256];
	int		 free_on_close;
	int		 free_on_ready;
	int		 free_on_event;
	int		 nevents;
	char		 evname[8][32];
	double		 evts[8];
	int		 evdata[8];		/* data present */
	int		 done;
};

static struct t	*cur;

static void
tick_cb(evutil_socket_t fd, short ev, void *arg)
{
}

static double
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec * 1e3 + ts.tv_nsec / 1e6);
}

/* Run the loop until *flag is set or ms pass; 1 if the flag was set. */
static int
run_until(struct t *t, int *flag, int ms)
{
	double	 start = now_ms();

	while (!*flag) {
		if (now_ms() - start > ms)
			return (0);
		event_base_loop(t->base, EVLOOP_ONCE);
	}
	return (1);
}

static void
run_for(struct t *t, int ms)
{
	int	 never = 0;

	run_until(t, &never, ms);
}

static void
peer_write(struct peer *p, const char *s)
{
	size_t	 len = strlen(s), off = 0;
	ssize_t	 n;

	while (off < len) {
		n = write(p->fd, s + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return;
		off += n;
	}
}

static void
peer_replyf(struct peer *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
peer_replyf(struct peer *p, const char *fmt, ...)
{
	va_list	 ap;
	char	 buf[4096];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	peer_write(p, buf);
}

static void
peer_close(struct peer *p)
{
	if (p->fd == -1)
		return;
	event_free(p->ev);
	p->ev = NULL;
	close(p->fd);
	p->fd = -1;
}

/* Read what the client sent, keeping any fds and noting their line. */
static void
peer_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct peer	*p = arg;
	char		 buf[65536], *nl, *start;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(4 * sizeof(int))];
	}		 cbuf;
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cmsg;
	ssize_t		 n;
	int		 i, nfd, got = 0, fds[4];
	json_t		*j;
	const char	*name;

	memset(&msg, 0, sizeof msg);
	iov.iov_base = buf;
	iov.iov_len = sizeof buf;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf.buf;
	msg.msg_controllen = sizeof cbuf.buf;
	n = recvmsg(p->fd, &msg, MSG_CMSG_CLOEXEC);
	if (n == -1)
		return;
	if (n == 0) {
		p->eof = 1;
		event_del(p->ev);
		return;
	}
	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL;
	    cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET ||
		    cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nfd && got < 4; i++)
			memcpy(&fds[got++], CMSG_DATA(cmsg) + i * sizeof(int),
			    sizeof(int));
	}

	p->in = realloc(p->in, p->inlen + n);
	memcpy(p->in + p->inlen, buf, n);
	p->inlen += n;
	start = p->in;
	while ((nl = memchr(start, '\n', p->inlen - (start - p->in))) != NULL) {
		j = json_loadb(start, nl - start, 0, NULL);
		start = nl + 1;
		if (j == NULL || p->nlines == MAXLINES) {
			json_decref(j);
			continue;
		}
		p->lines[p->nlines++] = j;
		name = json_string_value(json_object_get(j, "execute"));
		if (name == NULL)
			continue;
		if (strcmp(name, "qmp_capabilities") == 0 && !p->manual_caps)
			peer_replyf(p, "{\"return\": {}, \"id\": %lld}\r\n",
			    (long long)json_integer_value(json_object_get(j,
			    "id")));
		else if (p->hook != NULL)
			p->hook(p, j, name, json_integer_value(json_object_get(j,
			    "id")));
	}
	p->inlen -= start - p->in;
	memmove(p->in, start, p->inlen);

	/* An fd belongs to the line holding the last byte of its chunk. */
	for (i = 0; i < got && p->nfds < MAXFDS; i++) {
		p->fds[p->nfds] = fds[i];
		p->fdline[p->nfds++] = buf[n - 1] == '\n' ? p->nlines - 1 :
		    p->nlines;
	}
}

static void
t_state_cb(struct qmp *q, enum qmp_state st, const char *cause, void *arg)
{
	struct t	*t = arg;

	if (st == QMP_READY) {
		t->ready++;
		t->ready_seq = ++t->seq;
		CHECK(cause == NULL);
		if (t->free_on_ready) {
			qmp_free(q);
			t->q = NULL;
		}
	} else if (st == QMP_CLOSED) {
		t->closed++;
		t->closed_seq = ++t->seq;
		CHECK(cause != NULL);
		snprintf(t->cause, sizeof t->cause, "%s", cause ? cause : "");
		if (t->free_on_close) {
			qmp_free(q);
			t->q = NULL;
		}
	} else
		CHECK(!"unexpected state callback");
}

static void
t_event_cb(struct qmp *q, const char *name, json_t *data, double ts,
    void *arg)
{
	struct t	*t = arg;

	if (t->nevents < 8) {
		snprintf(t->evname[t->nevents], sizeof t->evname[0], "%s",
		    name);
		t->evts[t->nevents] = ts;
		t->evdata[t->nevents] = data != NULL;
	}
	t->nevents++;
	if (t->free_on_event) {
		qmp_free(q);
		t->q = NULL;
	}
}

static const struct qmp_callbacks t_callbacks = { t_state_cb, t_event_cb };

static void
t_reply_cb(struct qmp *q, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct reply	*r = arg;

	r->fired++;
	r->seq = ++cur->seq;
	if (ret != NULL)
		r->ret = json_incref(ret);
	CHECK((ret == NULL) == (errclass != NULL));
	if (errclass != NULL) {
		CHECK(errdesc != NULL);
		snprintf(r->class, sizeof r->class, "%s", errclass);
		snprintf(r->desc, sizeof r->desc, "%s", errdesc);
	}
	if (r->try_exec)
		r->exec_rc = qmp_execute(q, "after", json_object(), t_reply_cb,
		    r);
	if (r->free_qmp) {
		qmp_free(q);
		cur->q = NULL;
	}
}

/* A socketpair, a loop, a qmp on one end and the fake QEMU on the other. */
static void
t_setup(struct t *t, int timeout_ms)
{
	int		 sv[2];
	struct timeval	 tv = { 0, 10000 };

	memset(t, 0, sizeof *t);
	cur = t;
	t->base = event_base_new();
	t->tick = event_new(t->base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(t->tick, &tv);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) == -1) {
		perror("socketpair");
		exit(1);
	}
	t->qfd = sv[0];
	t->peer.fd = sv[1];
	t->peer.ev = event_new(t->base, sv[1], EV_READ | EV_PERSIST,
	    peer_read_cb, &t->peer);
	event_add(t->peer.ev, NULL);
	t->q = qmp_create(t->base, sv[0], &t_callbacks, t, timeout_ms);
	CHECK(t->q != NULL);
	CHECK(qmp_get_state(t->q) == QMP_GREETING);
}

static void
t_teardown(struct t *t)
{
	int	 i;

	qmp_free(t->q);
	peer_close(&t->peer);
	for (i = 0; i < t->peer.nlines; i++)
		json_decref(t->peer.lines[i]);
	for (i = 0; i < t->peer.nfds; i++)
		close(t->peer.fds[i]);
	free(t->peer.in);
	event_free(t->tick);
	event_base_free(t->base);
	cur = NULL;
}

static void
reply_clear(struct reply *r)
{
	json_decref(r->ret);
	memset(r, 0, sizeof *r);
}

static const char *
line_execute(struct t *t, int i)
{
	if (i >= t->peer.nlines)
		return (NULL);
	return (json_string_value(json_object_get(t->peer.lines[i],
	    "execute")));
}

/* Greet, then wait for READY. */
static int
t_ready(struct t *t)
{
	peer_write(&t->peer, GREETING);
	return (run_until(t, &t->ready, 2000));
}

static void
hook_status(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	if (strcmp(name, "query-status") == 0)
		peer_replyf(p, "{\"return\": {\"status\": \"running\", "
		    "\"singlestep\": false, \"running\": true}, "
		    "\"id\": %lld}\r\n", (long long)id);
	else
		peer_replyf(p, "{\"error\": {\"class\": \"CommandNotFound\", "
		    "\"desc\": \"The command %s has not been found\"}, "
		    "\"id\": %lld}\r\n", name, (long long)id);
}

/* Greeting, capabilities, a command issued before READY, its return. */
static void
test_normal(void)
{
	struct t	 t;
	struct reply	 r = { 0 };
	json_t		*l;

	t_setup(&t, 2000);
	t.peer.hook = hook_status;
	CHECK(qmp_execute(t.q, "query-status", NULL, t_reply_cb, &r) == 0);
	run_for(&t, 50);
	CHECK(t.peer.nlines == 0);	/* nothing before the greeting */
	CHECK(r.fired == 0);

	peer_write(&t.peer, GREETING);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(t.ready == 1);
	CHECK(t.ready_seq < r.seq);
	CHECK(r.fired == 1);
	CHECK(r.ret != NULL);
	CHECK_STR(json_string_value(json_object_get(r.ret, "status")),
	    "running");
	CHECK(qmp_get_state(t.q) == QMP_READY);

	CHECK(t.peer.nlines == 2);
	CHECK_STR(line_execute(&t, 0), "qmp_capabilities");
	CHECK_STR(line_execute(&t, 1), "query-status");
	l = t.peer.lines[1];
	CHECK(json_is_integer(json_object_get(l, "id")));
	CHECK(json_object_get(l, "arguments") == NULL);
	CHECK(json_integer_value(json_object_get(l, "id")) !=
	    json_integer_value(json_object_get(t.peer.lines[0], "id")));

	/* Arguments go through as given. */
	reply_clear(&r);
	CHECK(qmp_execute(t.q, "query-status", json_pack("{s:s}", "a", "b"),
	    t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(t.peer.nlines == 3);
	CHECK_STR(json_string_value(json_object_get(json_object_get(
	    t.peer.lines[2], "arguments"), "a")), "b");

	/* qmp_free reports no state. */
	qmp_free(t.q);
	t.q = NULL;
	run_for(&t, 30);
	CHECK(t.closed == 0);
	CHECK(t.peer.eof == 1);
	reply_clear(&r);
	t_teardown(&t);
}

/* An error reply carries QEMU's class and description. */
static void
test_error(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	t.peer.hook = hook_status;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "no-such-cmd", NULL, t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(r.ret == NULL);
	CHECK_STR(r.class, "CommandNotFound");
	CHECK_STR(r.desc, "The command no-such-cmd has not been found");
	CHECK(qmp_get_state(t.q) == QMP_READY);
	CHECK(t.closed == 0);
	reply_clear(&r);
	t_teardown(&t);
}

#define EV_STOP	"{\"timestamp\": {\"seconds\": 1700000000, "		\
	"\"microseconds\": 123456}, \"event\": \"STOP\"}\r\n"
#define EV_SHUTDOWN "{\"timestamp\": {\"seconds\": 1700000001, "	\
	"\"microseconds\": 500000}, \"event\": \"SHUTDOWN\", "		\
	"\"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n"

static void
hook_events(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	if (strcmp(name, "qmp_capabilities") == 0) {
		/* An event before the capabilities reply: before READY. */
		peer_write(p, EV_STOP);
		peer_replyf(p, "{\"return\": {}, \"id\": %lld}\r\n",
		    (long long)id);
		return;
	}
	peer_write(p, EV_SHUTDOWN);
	peer_replyf(p, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
	peer_write(p, EV_STOP);
}

/* Events before READY and around replies, timestamps as doubles. */
static void
test_events(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	t.peer.manual_caps = 1;
	t.peer.hook = hook_events;
	CHECK(t_ready(&t));
	CHECK(t.nevents == 1);
	CHECK_STR(t.evname[0], "STOP");
	CHECK(t.evts[0] > 1700000000.123455 && t.evts[0] < 1700000000.123457);
	CHECK(t.evdata[0] == 0);

	CHECK(qmp_execute(t.q, "stop", NULL, t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	run_for(&t, 20);
	CHECK(r.fired == 1 && r.class[0] == '\0');
	CHECK(t.nevents == 3);
	CHECK_STR(t.evname[1], "SHUTDOWN");
	CHECK(t.evdata[1] == 1);
	CHECK(t.evts[1] > 1700000001.49999 && t.evts[1] < 1700000001.50001);
	CHECK_STR(t.evname[2], "STOP");
	reply_clear(&r);
	t_teardown(&t);
}

static void
hook_garbage(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	peer_write(p, "this is not json\r\n");
	peer_write(p, "[1, 2, 3]\n");
	peer_write(p, "{\"foo\": 1}\n");
	peer_write(p, "\n");
	peer_write(p, "{\"event\": 42}\n");
	peer_write(p, "{\"return\": {}}\n");		/* no id */
	peer_write(p, "{\"return\": {}, \"id\": 9999}\n");	/* unknown id */
	peer_write(p, "{\"QMP\": {}}\n");		/* second greeting */
	peer_write(p, "\x01\x02\xff\xfe\n");
	peer_replyf(p, "{\"return\": {\"ok\": 1}, \"id\": %lld}\n",
	    (long long)id);
}

/* Garbage after the greeting is logged and ignored. */
static void
test_garbage(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	t.peer.hook = hook_garbage;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "x", NULL, t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(r.fired == 1);
	CHECK(json_integer_value(json_object_get(r.ret, "ok")) == 1);
	CHECK(qmp_get_state(t.q) == QMP_READY);
	CHECK(t.closed == 0);
	CHECK(t.nevents == 0);
	reply_clear(&r);
	t_teardown(&t);
}

/* Anything but a greeting first closes, and queued commands hear of it. */
static void
test_greeting_garbage(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	CHECK(qmp_execute(t.q, "query-status", NULL, t_reply_cb, &r) == 0);
	peer_write(&t.peer, "{\"return\": {}, \"id\": 1}\n");
	CHECK(run_until(&t, &t.closed, 2000));
	CHECK(strstr(t.cause, "not a QMP greeting") != NULL);
	CHECK(r.fired == 1);
	CHECK_STR(r.class, "Disconnected");
	CHECK(r.seq < t.closed_seq);
	CHECK(t.ready == 0);
	CHECK(qmp_get_state(t.q) == QMP_CLOSED);
	CHECK(t.peer.nlines == 0);
	reply_clear(&r);
	t_teardown(&t);
}

static void
hook_eof(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	if (strcmp(name, "die") == 0)
		peer_close(p);
}

/* QEMU dies mid-command: Disconnected, then CLOSED, then no more. */
static void
test_eof(void)
{
	struct t	 t;
	struct reply	 r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	t_setup(&t, 0);
	t.peer.hook = hook_eof;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "wait", NULL, t_reply_cb, &r1) == 0);
	r2.try_exec = 1;
	CHECK(qmp_execute(t.q, "die", NULL, t_reply_cb, &r2) == 0);
	CHECK(run_until(&t, &t.closed, 2000));
	CHECK(r1.fired == 1 && r2.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	CHECK_STR(r2.class, "Disconnected");
	CHECK(r1.desc[0] != '\0');
	CHECK(r1.seq < r2.seq && r2.seq < t.closed_seq);
	CHECK(r2.exec_rc == -1);	/* execute from a dying callback */
	CHECK(t.closed == 1);
	CHECK(qmp_get_state(t.q) == QMP_CLOSED);
	CHECK(qmp_execute(t.q, "late", json_object(), t_reply_cb, &r3) == -1);
	run_for(&t, 30);
	CHECK(r1.fired == 1 && r2.fired == 1 && r3.fired == 0);
	CHECK(t.closed == 1);
	reply_clear(&r1);
	reply_clear(&r2);
	t_teardown(&t);
}

struct later {
	struct peer	*p;
	json_int_t	 id;
	struct event	*ev;
};

static void
later_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct later	*l = arg;

	peer_replyf(l->p, "{\"return\": {\"late\": true}, \"id\": %lld}\r\n",
	    (long long)l->id);
}

static struct later	 slow;

static void
hook_slow(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	struct timeval	 tv = { 0, 300000 };

	slow.p = p;
	slow.id = id;
	slow.ev = evtimer_new(cur->base, later_cb, &slow);
	evtimer_add(slow.ev, &tv);
	peer_write(p, EV_STOP);
}

/* A reply 300 ms later, with an event in between, still finds its cb. */
static void
test_slow(void)
{
	struct t	 t;
	struct reply	 r = { 0 };
	double		 start;

	t_setup(&t, 2000);
	t.peer.hook = hook_slow;
	CHECK(t_ready(&t));
	start = now_ms();
	CHECK(qmp_execute(t.q, "slow", NULL, t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(now_ms() - start >= 290);
	CHECK(r.fired == 1 && r.ret != NULL);
	CHECK(json_is_true(json_object_get(r.ret, "late")));
	CHECK(t.nevents == 1);
	CHECK(t.closed == 0);
	event_free(slow.ev);
	reply_clear(&r);
	t_teardown(&t);
}

/* A QEMU that does not answer is broken: Timeout for all, then CLOSED. */
static void
test_timeout(void)
{
	struct t	 t;
	struct reply	 r1 = { 0 }, r2 = { 0 };
	double		 start, el;

	t_setup(&t, 200);
	CHECK(t_ready(&t));
	start = now_ms();
	CHECK(qmp_execute(t.q, "hang", NULL, t_reply_cb, &r1) == 0);
	CHECK(qmp_execute(t.q, "hang2", NULL, t_reply_cb, &r2) == 0);
	CHECK(run_until(&t, &t.closed, 3000));
	el = now_ms() - start;
	CHECK(el >= 190 && el < 1500);
	CHECK_STR(r1.class, "Timeout");
	CHECK_STR(r2.class, "Timeout");
	CHECK(r1.fired == 1 && r2.fired == 1);
	CHECK(r2.seq < t.closed_seq);
	CHECK(strstr(t.cause, "hang") != NULL);
	CHECK(t.peer.nlines == 3);
	reply_clear(&r1);
	reply_clear(&r2);
	t_teardown(&t);

	/* No greeting at all. */
	t_setup(&t, 150);
	CHECK(qmp_execute(t.q, "queued", NULL, t_reply_cb, &r1) == 0);
	CHECK(run_until(&t, &t.closed, 3000));
	CHECK(strstr(t.cause, "greeting") != NULL);
	CHECK_STR(r1.class, "Timeout");
	reply_clear(&r1);
	t_teardown(&t);

	/* Replies in time keep the connection, each with its own clock. */
	t_setup(&t, 250);
	t.peer.hook = hook_slow;	/* answers after 300 ms */
	CHECK(t_ready(&t));
	run_for(&t, 300);		/* idle is not a timeout */
	CHECK(t.closed == 0);
	CHECK(qmp_execute(t.q, "slow", NULL, t_reply_cb, &r1) == 0);
	CHECK(run_until(&t, &t.closed, 3000));
	CHECK_STR(r1.class, "Timeout");
	event_free(slow.ev);
	reply_clear(&r1);
	t_teardown(&t);
}

static void
hook_batch3(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	json_int_t	 base = id - 2;

	if (strcmp(name, "c3") != 0)
		return;
	/* All three replies and an event in a single write. */
	peer_replyf(p, "{\"return\": {\"n\": 1}, \"id\": %lld}\n"
	    "{\"return\": {\"n\": 2}, \"id\": %lld}\n"
	    "{\"return\": {\"n\": 3}, \"id\": %lld}\n" EV_STOP,
	    (long long)base, (long long)base + 1, (long long)base + 2);
}

/* qmp_free from inside callbacks, with more input and cbs pending. */
static void
test_free_in_cb(void)
{
	struct t	 t;
	struct reply	 r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	/* A return callback frees; two later replies are in the buffer. */
	t_setup(&t, 2000);
	t.peer.hook = hook_batch3;
	CHECK(t_ready(&t));
	r1.free_qmp = 1;
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	CHECK(qmp_execute(t.q, "c2", NULL, t_reply_cb, &r2) == 0);
	CHECK(qmp_execute(t.q, "c3", NULL, t_reply_cb, &r3) == 0);
	CHECK(run_until(&t, &r1.fired, 2000));
	CHECK(t.q == NULL);
	run_for(&t, 50);
	CHECK(r1.fired == 1 && r1.ret != NULL);
	CHECK(r2.fired == 1 && r3.fired == 1);
	CHECK_STR(r2.class, "Disconnected");
	CHECK_STR(r3.class, "Disconnected");
	CHECK(r2.seq < r3.seq);
	CHECK(t.nevents == 0);
	CHECK(t.closed == 0);
	reply_clear(&r1);
	reply_clear(&r2);
	reply_clear(&r3);
	t_teardown(&t);

	/* A Disconnected callback frees during EOF handling. */
	t_setup(&t, 2000);
	t.peer.hook = hook_eof;
	CHECK(t_ready(&t));
	r1.free_qmp = 1;
	r2.try_exec = 1;
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	CHECK(qmp_execute(t.q, "c2", NULL, t_reply_cb, &r2) == 0);
	CHECK(qmp_execute(t.q, "die", NULL, t_reply_cb, &r3) == 0);
	CHECK(run_until(&t, &r3.fired, 2000));
	run_for(&t, 30);
	CHECK(r1.fired == 1 && r2.fired == 1 && r3.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	CHECK_STR(r3.class, "Disconnected");
	CHECK(r2.exec_rc == -1);
	CHECK(t.closed == 0);		/* freed: no state callback */
	reply_clear(&r1);
	reply_clear(&r2);
	reply_clear(&r3);
	t_teardown(&t);

	/* The CLOSED state callback frees. */
	t_setup(&t, 2000);
	t.peer.hook = hook_eof;
	t.free_on_close = 1;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "die", NULL, t_reply_cb, &r1) == 0);
	CHECK(run_until(&t, &t.closed, 2000));
	run_for(&t, 30);
	CHECK(t.q == NULL);
	CHECK(r1.fired == 1 && t.closed == 1);
	reply_clear(&r1);
	t_teardown(&t);

	/* An event callback frees; replies follow in the same read. */
	t_setup(&t, 2000);
	t.peer.manual_caps = 1;
	t.peer.hook = hook_events;	/* STOP before the caps reply */
	t.free_on_event = 1;
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	peer_write(&t.peer, GREETING);
	CHECK(run_until(&t, &r1.fired, 2000));
	run_for(&t, 30);
	CHECK(t.q == NULL);
	CHECK(t.nevents == 1 && t.ready == 0 && t.closed == 0);
	CHECK(r1.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	reply_clear(&r1);
	t_teardown(&t);

	/* The READY callback frees with queued commands just written. */
	t_setup(&t, 2000);
	t.free_on_ready = 1;
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	peer_write(&t.peer, GREETING);
	CHECK(run_until(&t, &r1.fired, 2000));
	run_for(&t, 30);
	CHECK(t.q == NULL && t.ready == 1 && t.closed == 0);
	CHECK(r1.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	reply_clear(&r1);
	t_teardown(&t);

	/* qmp_free from outside with commands waiting. */
	t_setup(&t, 2000);
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	CHECK(qmp_execute(t.q, "c2", NULL, t_reply_cb, &r2) == 0);
	qmp_free(t.q);
	t.q = NULL;
	CHECK(r1.fired == 1 && r2.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	CHECK_STR(r2.class, "Disconnected");
	run_for(&t, 30);
	CHECK(t.closed == 0);
	CHECK(r1.fired == 1 && r2.fired == 1);
	reply_clear(&r1);
	reply_clear(&r2);
	t_teardown(&t);
}

static void
hook_ok(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	peer_replyf(p, "{\"return\": {}, \"id\": %lld}\n", (long long)id);
}

static int
same_file(int a, int b)
{
	struct stat	 sa, sb;

	if (fstat(a, &sa) == -1 || fstat(b, &sb) == -1)
		return (0);
	return (sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

/* The fd reaches the peer, on the right line, both when queued or not. */
static void
test_execute_fd(void)
{
	struct t	 t;
	struct reply	 r[5];
	char		 path[] = "/tmp/qdesk-test-qmp-XXXXXX";
	int		 fd, i;

	memset(r, 0, sizeof r);
	if ((fd = mkstemp(path)) == -1) {
		perror("mkstemp");
		CHECK(fd != -1);
		return;
	}
	unlink(path);

	t_setup(&t, 2000);
	t.peer.hook = hook_ok;
	CHECK(t_ready(&t));

	/* Output not yet written: the fd command waits for it to drain. */
	CHECK(qmp_execute(t.q, "before", NULL, t_reply_cb, &r[0]) == 0);
	CHECK(qmp_execute_fd(t.q, "getfd", json_pack("{s:s}", "fdname",
	    "vnc"), fd, t_reply_cb, &r[1]) == 0);
	CHECK(qmp_execute(t.q, "after", NULL, t_reply_cb, &r[2]) == 0);
	CHECK(run_until(&t, &r[2].fired, 2000));
	CHECK(r[0].fired && r[1].fired && r[2].fired);
	CHECK(r[1].class[0] == '\0');
	CHECK(r[0].seq < r[1].seq && r[1].seq < r[2].seq);
	CHECK(fcntl(fd, F_GETFD) != -1);	/* the caller keeps its fd */
	CHECK(t.peer.nfds == 1);
	CHECK(t.peer.nfds >= 1 && same_file(t.peer.fds[0], fd));
	CHECK(t.peer.nfds >= 1 && t.peer.fdline[0] == 2);
	CHECK_STR(line_execute(&t, 1), "before");
	CHECK_STR(line_execute(&t, 2), "getfd");
	CHECK_STR(line_execute(&t, 3), "after");

	/* Output idle: sent straight away with sendmsg. */
	CHECK(qmp_execute_fd(t.q, "add-fd", NULL, fd, t_reply_cb,
	    &r[3]) == 0);
	CHECK(run_until(&t, &r[3].fired, 2000));
	CHECK(t.peer.nfds == 2);
	CHECK(t.peer.nfds >= 2 && same_file(t.peer.fds[1], fd));
	CHECK(t.peer.nfds >= 2 && t.peer.fdline[1] == 4);
	CHECK_STR(line_execute(&t, 4), "add-fd");

	/*
	 * Socket buffer full and nothing queued in libevent: sendmsg says
	 * EAGAIN, the command waits for the socket to be writable.
	 */
	event_del(t.peer.ev);
	{
		char	 nl[4096];
		ssize_t	 n;

		memset(nl, '\n', sizeof nl);
		do
			n = write(t.qfd, nl, sizeof nl);
		while (n > 0);
		CHECK(n == -1 && errno == EAGAIN);
		while (write(t.qfd, nl, 1) == 1)
			;
	}
	CHECK(qmp_execute_fd(t.q, "getfd", NULL, fd, t_reply_cb,
	    &r[4]) == 0);
	reply_clear(&r[0]);
	CHECK(qmp_execute(t.q, "behind", NULL, t_reply_cb, &r[0]) == 0);
	run_for(&t, 50);
	CHECK(r[4].fired == 0);
	event_add(t.peer.ev, NULL);
	CHECK(run_until(&t, &r[0].fired, 2000));
	CHECK(r[4].fired == 1 && r[4].class[0] == '\0');
	CHECK(t.peer.nfds == 3);
	CHECK(t.peer.nfds >= 3 && same_file(t.peer.fds[2], fd));
	CHECK(t.peer.nfds >= 3 && t.peer.fdline[2] == 5);
	CHECK_STR(line_execute(&t, 5), "getfd");
	CHECK_STR(line_execute(&t, 6), "behind");
	reply_clear(&r[0]);
	reply_clear(&r[4]);

	/* Before READY the fd waits with its command. */
	t_teardown(&t);
	t_setup(&t, 2000);
	t.peer.hook = hook_ok;
	CHECK(qmp_execute_fd(t.q, "getfd", NULL, fd, t_reply_cb, &r[4]) == 0);
	peer_write(&t.peer, GREETING);
	CHECK(run_until(&t, &r[4].fired, 2000));
	CHECK(r[4].class[0] == '\0');
	CHECK(t.peer.nfds == 1 && same_file(t.peer.fds[0], fd));
	CHECK(qmp_execute_fd(t.q, "getfd", NULL, -1, t_reply_cb, &r[4]) == -1);
	t_teardown(&t);

	for (i = 0; i < 5; i++)
		reply_clear(&r[i]);
	close(fd);
}

static int	 pipe_reverse;

static void
hook_pipeline(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	json_int_t	 i, first = id - 4;

	if (strcmp(name, "p4") != 0)
		return;
	for (i = 0; i < 5; i++) {
		json_int_t n = pipe_reverse ? 4 - i : i;
		peer_replyf(p, "{\"return\": {\"n\": %lld}, \"id\": %lld}\n",
		    (long long)n, (long long)(first + n));
	}
}

/* Five commands in flight; replies in order, then in reverse. */
static void
test_pipeline(void)
{
	struct t	 t;
	struct reply	 r[5];
	char		 name[16];
	int		 i, pass;

	for (pass = 0; pass < 2; pass++) {
		memset(r, 0, sizeof r);
		pipe_reverse = pass;
		t_setup(&t, 2000);
		t.peer.hook = hook_pipeline;
		CHECK(t_ready(&t));
		for (i = 0; i < 5; i++) {
			snprintf(name, sizeof name, "p%d", i);
			CHECK(qmp_execute(t.q, name, NULL, t_reply_cb,
			    &r[i]) == 0);
		}
		CHECK(run_until(&t, &r[pass ? 0 : 4].fired, 2000));
		for (i = 0; i < 5; i++) {
			CHECK(r[i].fired == 1);
			CHECK(json_integer_value(json_object_get(r[i].ret,
			    "n")) == i);
			if (i > 0 && !pass)
				CHECK(r[i - 1].seq < r[i].seq);
			if (i > 0 && pass)
				CHECK(r[i - 1].seq > r[i].seq);
		}
		for (i = 0; i < 5; i++)
			reply_clear(&r[i]);
		t_teardown(&t);
	}
}

/* A line over the cap closes the connection (written by a child). */
static void
test_long_line(void)
{
	struct t	 t;
	struct reply	 r = { 0 };
	pid_t		 pid;
	char		*big;
	size_t		 len = 17 * 1024 * 1024, off;
	ssize_t		 n;
	int		 fd;

	t_setup(&t, 5000);
	t.peer.hook = hook_ok;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "big", NULL, t_reply_cb, &r) == 0);

	fd = t.peer.fd;
	switch ((pid = fork())) {
	case -1:
		CHECK(pid != -1);
		break;
	case 0:
		signal(SIGPIPE, SIG_DFL);
		close(t.qfd);		/* or the parent's close is no EOF */
		fcntl(fd, F_SETFL, 0);
		big = malloc(len);
		memset(big, 'x', len);
		memcpy(big, "{\"return\": \"", 12);
		for (off = 0; off < len; off += n)
			if ((n = write(fd, big + off, len - off)) <= 0)
				_exit(0);
		_exit(0);
	default:
		event_del(t.peer.ev);	/* the child owns the stream now */
		CHECK(run_until(&t, &t.closed, 10000));
		CHECK(strstr(t.cause, "over") != NULL);
		CHECK_STR(r.class, "Disconnected");
		peer_close(&t.peer);
		waitpid(pid, NULL, 0);
	}
	reply_clear(&r);
	t_teardown(&t);
}

/* The classifier on its own: by key, and the value must fit. */
static void
test_classify(void)
{
	static const struct {
		const char		*line;
		enum qmp_line_kind	 kind;
	} cases[] = {
		{ GREETING, QMP_LINE_GREETING },
		{ EV_STOP, QMP_LINE_EVENT },
		{ "{\"return\": {}, \"id\": 1}", QMP_LINE_RETURN },
		{ "{\"return\": [1]}", QMP_LINE_RETURN },
		{ "{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}",
		    QMP_LINE_ERROR },
		{ "{\"error\": \"x\"}", QMP_LINE_GARBAGE },
		{ "{\"event\": 1}", QMP_LINE_GARBAGE },
		{ "{\"QMP\": 1}", QMP_LINE_GARBAGE },
		{ "{\"foo\": 1}", QMP_LINE_GARBAGE },
		{ "[]", QMP_LINE_GARBAGE },
		{ "\"QMP\"", QMP_LINE_GARBAGE },
		{ "", QMP_LINE_GARBAGE },
		{ "{\"return\": {}", QMP_LINE_GARBAGE },
		{ "{\"return\": {}} trailing", QMP_LINE_GARBAGE },
	};
	json_t		*out;
	size_t		 i;

	for (i = 0; i < nitems(cases); i++) {
		out = (json_t *)1;
		CHECK(qmp_line_classify(cases[i].line, strlen(cases[i].line),
		    &out) == cases[i].kind);
		CHECK((out == NULL) == (cases[i].kind == QMP_LINE_GARBAGE));
		json_decref(out);
	}
	/* Length is respected: NUL bytes and no terminator. */
	CHECK(qmp_line_classify("{\"return\":1}\0zz", 15, &out) ==
	    QMP_LINE_GARBAGE);
	CHECK(qmp_line_classify("{\"return\":1}xyz", 12, &out) ==
	    QMP_LINE_RETURN);
	json_decref(out);
}

static void
test_connect_unix(void)
{
	char	 longpath[200];

	memset(longpath, 'a', sizeof longpath - 1);
	longpath[sizeof longpath - 1] = '\0';
	errno = 0;
	CHECK(qmp_connect_unix(longpath) == -1 && errno == ENAMETOOLONG);
	CHECK(qmp_connect_unix("/nonexistent/qdesk/q.sock") == -1 &&
	    errno == ENOENT);
}

static int
in_path(const char *prog)
{
	const char	*path = getenv("PATH");
	char		 dir[4096], file[4200];
	const char	*p, *e;

	if (path == NULL)
		path = "/usr/bin:/bin";
	for (p = path; *p != '\0'; p = *e ? e + 1 : e) {
		e = strchr(p, ':');
		if (e == NULL)
			e = p + strlen(p);
		snprintf(dir, sizeof dir, "%.*s", (int)(e - p), p);
		snprintf(file, sizeof file, "%s/%s", dir[0] ? dir : ".", prog);
		if (access(file, X_OK) == 0)
			return (1);
	}
	return (0);
}

/* The real thing: QEMU with -machine none, query-status, quit. */
static void
test_real_qemu(void)
{
	struct t	 t;
	struct reply	 r = { 0 }, rq = { 0 };
	char		 dir[] = "/tmp/qdesk-qmp-XXXXXX", sock[128], arg[160];
	struct timeval	 tv = { 0, 10000 };
	struct stat	 st;
	pid_t		 pid, w = 0;
	int		 fd = -1, i, status, devnull;

	/* The suite installs QEMU (scripts/setup): its absence is a failure. */
	if (!in_path("qemu-system-x86_64")) {
		fprintf(stderr, "no qemu-system-x86_64 in PATH: install "
		    "qemu-system-x86 (scripts/setup)\n");
		CHECK(!"qemu-system-x86_64 in PATH");
		return;
	}
	if (mkdtemp(dir) == NULL) {
		CHECK(!"mkdtemp");
		return;
	}
	snprintf(sock, sizeof sock, "%s/q.sock", dir);
	snprintf(arg, sizeof arg, "unix:%s,server=on,wait=off", sock);
	if ((pid = fork()) == 0) {
		if ((devnull = open("/dev/null", O_RDWR)) != -1) {
			dup2(devnull, 0);
			dup2(devnull, 1);
		}
		execlp("qemu-system-x86_64", "qemu-system-x86_64", "-accel",
		    "tcg", "-machine", "none", "-nodefaults", "-display",
		    "none", "-S", "-qmp", arg, (char *)NULL);
		_exit(127);
	}
	CHECK(pid > 0);
	for (i = 0; i < 500 && pid > 0; i++) {
		if (stat(sock, &st) == 0 &&
		    (fd = qmp_connect_unix(sock)) != -1)
			break;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			w = pid;
			break;
		}
		usleep(10000);
	}
	CHECK(fd != -1);
	if (fd != -1) {
		memset(&t, 0, sizeof t);
		cur = &t;
		t.base = event_base_new();
		t.tick = event_new(t.base, -1, EV_PERSIST, tick_cb, NULL);
		event_add(t.tick, &tv);
		t.peer.fd = -1;
		t.q = qmp_create(t.base, fd, &t_callbacks, &t, 5000);
		CHECK(qmp_execute(t.q, "query-status", NULL, t_reply_cb,
		    &r) == 0);
		CHECK(run_until(&t, &r.fired, 5000));
		CHECK(t.ready == 1);
		CHECK(r.ret != NULL);
		CHECK_STR(json_string_value(json_object_get(r.ret, "status")),
		    "prelaunch");
		CHECK(json_is_false(json_object_get(r.ret, "running")));
		CHECK(qmp_execute(t.q, "quit", NULL, t_reply_cb, &rq) == 0);
		CHECK(run_until(&t, &t.closed, 5000));
		/* quit's reply usually beats the EOF; either is fine. */
		CHECK(rq.fired == 1);
		CHECK(rq.class[0] == '\0' || strcmp(rq.class,
		    "Disconnected") == 0);
		t_teardown(&t);
	}
	for (i = 0; i < 500 && w != pid; i++) {
		if ((w = waitpid(pid, &status, WNOHANG)) == pid)
			break;
		usleep(10000);
	}
	if (w != pid) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CHECK(!"QEMU did not quit");
	} else
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	unlink(sock);
	rmdir(dir);
	reply_clear(&r);
	reply_clear(&rq);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_init("test-qmp", 1, getenv("QDESK_DEBUG") != NULL);

	test_classify();
	test_connect_unix();
	test_normal();
	test_error();
	test_events();
	test_garbage();
	test_greeting_garbage();
	test_eof();
	test_slow();
	test_timeout();
	test_free_in_cb();
	test_execute_fd();
	test_pipeline();
	test_long_line();
	test_real_qemu();
	return (check_exit());
}
