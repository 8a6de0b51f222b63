/*
 * The fake QEMU for the QMP client tests: see qmp-fake.h.
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
#include "qmp-fake.h"
#include "sock.h"

struct t	*cur;

void
tick_cb(evutil_socket_t fd, short ev, void *arg)
{
}

/* Run the loop until *flag is set or ms pass; 1 if the flag was set. */
int
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

void
run_for(struct t *t, int ms)
{
	int	 never = 0;

	run_until(t, &never, ms);
}

void
peer_write(struct peer *p, const char *s)
{
	fd_write_all(p->fd, s, strlen(s));
}

void
peer_replyf(struct peer *p, const char *fmt, ...)
{
	va_list	 ap;
	char	 buf[4096];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	peer_write(p, buf);
}

void
peer_close(struct peer *p)
{
	if (p->fd == -1)
		return;
	event_free(p->ev);
	p->ev = NULL;
	close(p->fd);
	p->fd = -1;
}

/* One line the client sent: kept, and answered by the script. */
static void
peer_line(void *arg, char *line, size_t len)
{
	struct peer	*p = arg;
	json_t		*j;
	const char	*name;

	j = json_loadb(line, len, 0, NULL);
	if (j == NULL || p->nlines == MAXLINES) {
		json_decref(j);
		return;
	}
	p->lines[p->nlines++] = j;
	name = json_string_value(json_object_get(j, "execute"));
	if (name == NULL)
		return;
	if (strcmp(name, "qmp_capabilities") == 0 && !p->manual_caps)
		peer_replyf(p, "{\"return\": {}, \"id\": %lld}\r\n",
		    (long long)json_integer_value(json_object_get(j, "id")));
	else if (p->hook != NULL)
		p->hook(p, j, name, json_integer_value(json_object_get(j,
		    "id")));
}

/* Read what the client sent, keeping any fds and noting their line. */
static void
peer_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct peer	*p = arg;
	char		 buf[65536];
	ssize_t		 n;
	int		 i, got = 0, fds[4];

	n = sock_recv_fds(p->fd, buf, sizeof buf, 0, fds, &got, 4);
	if (n == -1)
		return;
	if (n == 0) {
		p->eof = 1;
		event_del(p->ev);
		return;
	}

	fake_in_feed(&p->in, buf, n, peer_line, p);

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

const struct qmp_callbacks t_callbacks = { t_state_cb, t_event_cb };

void
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
void
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

void
t_teardown(struct t *t)
{
	int	 i;

	qmp_free(t->q);
	peer_close(&t->peer);
	for (i = 0; i < t->peer.nlines; i++)
		json_decref(t->peer.lines[i]);
	for (i = 0; i < t->peer.nfds; i++)
		close(t->peer.fds[i]);
	free(t->peer.in.buf);
	event_free(t->tick);
	event_base_free(t->base);
	cur = NULL;
}

void
reply_clear(struct reply *r)
{
	json_decref(r->ret);
	memset(r, 0, sizeof *r);
}

const char *
line_execute(struct t *t, int i)
{
	if (i >= t->peer.nlines)
		return (NULL);
	return (json_string_value(json_object_get(t->peer.lines[i],
	    "execute")));
}

/* Greet, then wait for READY. */
int
t_ready(struct t *t)
{
	peer_write(&t->peer, GREETING);
	return (run_until(t, &t->ready, 2000));
}

void
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

/* Add the fake's own CHECKs to the caller's: check.h counts per file. */
void
qmp_fake_checks(int *count, int *failures)
{
	*count += check_count;
	*failures += check_failures;
}
