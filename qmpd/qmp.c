/*
 * QMP client: one small state machine per QEMU on a libevent bufferevent.
 * See qmp.h for the contract.
 *
 * Commands wait in two FIFOs, both in the order they were issued: outq
 * (not yet written: before READY, or behind a command that passes an fd)
 * and pending (written, waiting for the reply with the same id).  One timer
 * watches the oldest deadline; it also runs deferred closes, so no reply
 * callback ever fires from inside qmp_execute.
 *
 * A callback may call qmp_free or qmp_execute on the same qmp: every entry
 * from the event loop holds a reference, and qmp_free while one is held
 * only marks the qmp, the last reference frees it.
 *
 * The daemon must ignore SIGPIPE: libevent writes with writev(2), which
 * raises it when QEMU has gone away.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "compat.h"
#include "jsonl.h"
#include "log.h"
#include "qmp.h"
#include "sock.h"
#include "xmalloc.h"

/* A screendump reply is small, but query results can be big. */
#define QMP_MAX_LINE	(16 * 1024 * 1024)

struct qmp_cmd {
	json_int_t		 id;
	char			*name;
	char			*line;		/* JSON and newline */
	size_t			 len;
	int			 fd;		/* our dup for SCM_RIGHTS, or -1 */
	int			 armed;		/* deadline is set */
	struct timespec		 deadline;
	struct timespec		 sent;		/* for qmp_rtt_hook */
	qmp_reply_cb		 cb;
	void			*arg;
	TAILQ_ENTRY(qmp_cmd)	 entry;
};
TAILQ_HEAD(qmp_cmds, qmp_cmd);

struct qmp {
	struct event_base	*base;
	struct bufferevent	*bev;
	int			 fd;
	struct event		*timer;		/* oldest deadline, deferred close */
	struct event		*wev;		/* writable again, for sendmsg */

	enum qmp_state		 state;
	struct qmp_callbacks	 cb;
	void			*arg;
	int			 timeout_ms;
	struct timespec		 greet_deadline;

	json_int_t		 next_id;
	struct qmp_cmds		 outq;		/* not yet written */
	struct qmp_cmds		 pending;	/* written, awaiting a reply */
	size_t			 scanned;	/* input bytes known to hold no LF */

	unsigned int		 refs;		/* entries from the loop running */
	int			 freed;		/* qmp_free called */
	char			*fail;		/* cause of a deferred close */
};

static void	qmp_close(struct qmp *, const char *, const char *, int);
static void	qmp_flush(struct qmp *);
static void	qmp_timer_update(struct qmp *);

static void
qmp_hold(struct qmp *q)
{
	q->refs++;
}

/* Drop a reference; the last one frees a qmp that qmp_free has marked. */
static void
qmp_release(struct qmp *q)
{
	if (--q->refs != 0 || !q->freed)
		return;
	if (q->bev != NULL)
		bufferevent_free(q->bev);
	event_free(q->timer);
	event_free(q->wev);
	free(q->fail);
	free(q);
}

static void
qmp_cmd_free(struct qmp_cmd *c)
{
	if (c->fd != -1)
		close(c->fd);
	free(c->line);
	free(c->name);
	free(c);
}

/* Set a command's deadline: the timeout runs from when it is issued. */
static void
qmp_cmd_arm(struct qmp *q, struct qmp_cmd *c)
{
	if (c->armed || q->timeout_ms <= 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &c->deadline);
	c->deadline.tv_sec += q->timeout_ms / 1000;
	c->deadline.tv_nsec += (long)(q->timeout_ms % 1000) * 1000000;
	if (c->deadline.tv_nsec >= 1000000000) {
		c->deadline.tv_sec++;
		c->deadline.tv_nsec -= 1000000000;
	}
	c->armed = 1;
}

/* Build the command line now, so the id order is the issue order. */
static struct qmp_cmd *
qmp_cmd_new(struct qmp *q, const char *name, json_t *args, int fd,
    qmp_reply_cb cb, void *arg)
{
	struct qmp_cmd	*c;
	json_t		*req;

	c = xcalloc(1, sizeof *c);
	c->id = q->next_id++;
	c->name = xstrdup(name);
	c->fd = fd;
	c->cb = cb;
	c->arg = arg;

	req = json_object();
	json_object_set_new(req, "execute", json_string(name));
	if (args != NULL)
		json_object_set_new(req, "arguments", args);
	json_object_set_new(req, "id", json_integer(c->id));
	c->line = jsonl_encode(req, &c->len, name);
	json_decref(req);
	return (c);
}

/* Arrange for the connection to close from the loop, not from here. */
static void
qmp_fail_later(struct qmp *q, const char *fmt, ...)
{
	va_list	 ap;

	if (q->fail != NULL || q->state == QMP_CLOSED)
		return;
	va_start(ap, fmt);
	if (vasprintf(&q->fail, fmt, ap) == -1)
		fatalx("%s: vasprintf", __func__);
	va_end(ap);
	evtimer_del(q->timer);
	event_active(q->timer, EV_TIMEOUT, 1);
}

/* Hand a command without an fd to the bufferevent; it is now pending. */
static void
qmp_cmd_write(struct qmp *q, struct qmp_cmd *c)
{
	log_debug("qmp: -> %.*s", (int)c->len - 1, c->line);
	if (bufferevent_write(q->bev, c->line, c->len) != 0)
		fatalx("%s: bufferevent_write", __func__);
	free(c->line);
	c->line = NULL;
	clock_gettime(CLOCK_MONOTONIC, &c->sent);
	qmp_cmd_arm(q, c);
	TAILQ_INSERT_TAIL(&q->pending, c, entry);
}

/*
 * Send the head of outq with its fd attached to the first byte, straight on
 * the socket; only called when the bufferevent has nothing left to write,
 * so nothing can overtake it.  Returns 0 once sent.
 */
static int
qmp_cmd_sendfd(struct qmp *q, struct qmp_cmd *c)
{
	struct iovec	iov;
	ssize_t		n;

	iov.iov_base = c->line;
	iov.iov_len = c->len;
	n = sock_send_fd(q->fd, &iov, 1, c->fd);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			event_add(q->wev, NULL);
			return (-1);
		}
		qmp_fail_later(q, "cannot send QMP command %s: %s", c->name,
		    strerror(errno));
		return (-1);
	}
	log_debug("qmp: -> %.*s (fd %d)", (int)c->len - 1, c->line, c->fd);

	/* The fd went with the first byte; the rest is ordinary output. */
	if ((size_t)n < c->len &&
	    bufferevent_write(q->bev, c->line + n, c->len - n) != 0)
		fatalx("%s: bufferevent_write", __func__);
	close(c->fd);
	c->fd = -1;
	free(c->line);
	c->line = NULL;
	TAILQ_REMOVE(&q->outq, c, entry);
	qmp_cmd_arm(q, c);
	TAILQ_INSERT_TAIL(&q->pending, c, entry);
	return (0);
}

/* Write what outq holds, in order, stopping at an fd that must wait. */
static void
qmp_flush(struct qmp *q)
{
	struct evbuffer	*out;
	struct qmp_cmd	*c;

	if (q->state != QMP_READY || q->fail != NULL ||
	    event_pending(q->wev, EV_WRITE, NULL))
		return;
	out = bufferevent_get_output(q->bev);
	while ((c = TAILQ_FIRST(&q->outq)) != NULL) {
		if (c->fd == -1) {
			TAILQ_REMOVE(&q->outq, c, entry);
			qmp_cmd_write(q, c);
			continue;
		}
		/* Wait for the write callback: earlier output goes first. */
		if (evbuffer_get_length(out) != 0)
			break;
		if (qmp_cmd_sendfd(q, c) != 0)
			break;
	}
}

/* Point the timer at the oldest deadline: greeting, then oldest command. */
static void
qmp_timer_update(struct qmp *q)
{
	const struct timespec	*dl = NULL;
	struct qmp_cmd		*c;
	struct timespec		 now;
	struct timeval		 tv;
	long long		 ns;

	if (q->state == QMP_CLOSED || q->fail != NULL || q->timeout_ms <= 0)
		return;
	if (q->state == QMP_GREETING)
		dl = &q->greet_deadline;
	else if ((c = TAILQ_FIRST(&q->pending)) != NULL)
		dl = &c->deadline;
	else if ((c = TAILQ_FIRST(&q->outq)) != NULL && c->armed)
		dl = &c->deadline;
	if (dl == NULL) {
		evtimer_del(q->timer);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (long long)(dl->tv_sec - now.tv_sec) * 1000000000LL +
	    (dl->tv_nsec - now.tv_nsec);
	if (ns < 0)
		ns = 0;
	tv.tv_sec = ns / 1000000000LL;
	tv.tv_usec = (ns % 1000000000LL) / 1000;
	evtimer_add(q->timer, &tv);
}

/* A deferred close is due, or the oldest command (or greeting) is late. */
static void
qmp_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct qmp	*q = arg;
	struct qmp_cmd	*c;
	char		*cause, *fail;

	qmp_hold(q);
	if (q->fail != NULL) {
		fail = q->fail;
		q->fail = NULL;
		qmp_close(q, "Disconnected", fail, 1);
		free(fail);
	} else if (q->state == QMP_GREETING) {
		xasprintf(&cause, "no QMP greeting within %d ms",
		    q->timeout_ms);
		qmp_close(q, "Timeout", cause, 1);
		free(cause);
	} else if ((c = TAILQ_FIRST(&q->pending)) != NULL ||
	    (c = TAILQ_FIRST(&q->outq)) != NULL) {
		xasprintf(&cause, "no reply to QMP command %s within %d ms",
		    c->name, q->timeout_ms);
		qmp_close(q, "Timeout", cause, 1);
		free(cause);
	}
	qmp_release(q);
}

/*
 * Go to CLOSED: drop the socket, fire every waiting callback once with
 * errclass, then (if notify and not freed) the state callback with cause.
 */
static void
qmp_close(struct qmp *q, const char *errclass, const char *cause, int notify)
{
	struct qmp_cmds	 dead;
	struct qmp_cmd	*c;

	if (q->state == QMP_CLOSED)
		return;
	q->state = QMP_CLOSED;
	log_debug("qmp: closed: %s", cause);

	evtimer_del(q->timer);
	event_del(q->wev);
	if (q->bev != NULL) {
		bufferevent_free(q->bev);
		q->bev = NULL;
		q->fd = -1;
	}
	free(q->fail);
	q->fail = NULL;

	/* Off the struct first: a callback may execute (gets -1) or free. */
	TAILQ_INIT(&dead);
	TAILQ_CONCAT(&dead, &q->pending, entry);
	TAILQ_CONCAT(&dead, &q->outq, entry);

	qmp_hold(q);
	while ((c = TAILQ_FIRST(&dead)) != NULL) {
		TAILQ_REMOVE(&dead, c, entry);
		if (c->cb != NULL)
			c->cb(q, NULL, errclass, cause, c->arg);
		qmp_cmd_free(c);
	}
	if (notify && !q->freed && q->cb.state != NULL)
		q->cb.state(q, QMP_CLOSED, cause, q->arg);
	qmp_release(q);
}

/* The reply to qmp_capabilities: READY, or a QEMU we cannot talk to. */
static void
qmp_negotiated(struct qmp *q, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct qmp_cmd	*c;
	char		*cause;

	if (q->state != QMP_NEGOTIATING)
		return;
	if (errclass != NULL) {
		xasprintf(&cause, "qmp_capabilities failed: %s: %s", errclass,
		    errdesc);
		qmp_close(q, "Disconnected", cause, 1);
		free(cause);
		return;
	}
	q->state = QMP_READY;
	TAILQ_FOREACH(c, &q->outq, entry)
		qmp_cmd_arm(q, c);
	qmp_flush(q);
	if (q->state == QMP_READY && !q->freed && q->cb.state != NULL)
		q->cb.state(q, QMP_READY, NULL, q->arg);
}

/* The greeting: negotiate at once, ahead of anything queued. */
static void
qmp_greeting(struct qmp *q, json_t *root)
{
	json_t		*v;
	struct qmp_cmd	*c;

	v = json_object_get(json_object_get(json_object_get(root, "QMP"),
	    "version"), "qemu");
	log_debug("qmp: greeting from QEMU %lld.%lld.%lld",
	    (long long)json_integer_value(json_object_get(v, "major")),
	    (long long)json_integer_value(json_object_get(v, "minor")),
	    (long long)json_integer_value(json_object_get(v, "micro")));
	q->state = QMP_NEGOTIATING;
	c = qmp_cmd_new(q, "qmp_capabilities", NULL, -1, qmp_negotiated,
	    NULL);
	qmp_cmd_write(q, c);
}

/* An event, with QEMU's {seconds, microseconds} as one double. */
static void
qmp_event(struct qmp *q, json_t *root)
{
	json_t		*t;
	const char	*name;
	double		 ts;
	struct timespec	 now;

	name = json_string_value(json_object_get(root, "event"));
	t = json_object_get(root, "timestamp");
	if (json_is_integer(json_object_get(t, "seconds"))) {
		ts = (double)json_integer_value(json_object_get(t, "seconds")) +
		    (double)json_integer_value(json_object_get(t,
		    "microseconds")) / 1e6;
	} else {
		clock_gettime(CLOCK_REALTIME, &now);
		ts = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	}
	if (q->cb.event != NULL)
		q->cb.event(q, name, json_object_get(root, "data"), ts, q->arg);
}

void	(*qmp_rtt_hook)(double);

/* Tell the metrics how long QEMU took to answer c. */
static void
qmp_rtt(struct qmp_cmd *c)
{
	struct timespec	now;

	if (qmp_rtt_hook == NULL || c->sent.tv_sec == 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	qmp_rtt_hook((now.tv_sec - c->sent.tv_sec) +
	    (now.tv_nsec - c->sent.tv_nsec) / 1e9);
}

/* A return or error: find the command by the id QEMU echoes back. */
static void
qmp_reply(struct qmp *q, json_t *root, enum qmp_line_kind kind)
{
	struct qmp_cmd	*c;
	json_t		*id;
	const char	*class, *desc;

	id = json_object_get(root, "id");
	if (!json_is_integer(id)) {
		log_warnx("qmp: ignoring a reply without an id");
		return;
	}
	TAILQ_FOREACH(c, &q->pending, entry) {
		if (c->id == json_integer_value(id))
			break;
	}
	if (c == NULL) {
		log_warnx("qmp: ignoring a reply to unknown id %lld",
		    (long long)json_integer_value(id));
		return;
	}
	TAILQ_REMOVE(&q->pending, c, entry);
	qmp_rtt(c);
	if (c->cb != NULL) {
		if (kind == QMP_LINE_RETURN)
			c->cb(q, json_object_get(root, "return"), NULL, NULL,
			    c->arg);
		else {
			jsonl_error(root, &class, &desc);
			c->cb(q, NULL, class, desc, c->arg);
		}
	}
	qmp_cmd_free(c);
}

/* One line from QEMU; garbage is ignored once past the greeting. */
static void
qmp_line(struct qmp *q, char *line, size_t len)
{
	enum qmp_line_kind	 kind;
	json_t			*root;
	char			 buf[80], *cause;

	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	log_debug("qmp: <- %.*s", (int)len, line);

	kind = qmp_line_classify(line, len, &root);
	switch (kind) {
	case QMP_LINE_GREETING:
		if (q->state == QMP_GREETING)
			qmp_greeting(q, root);
		else
			log_warnx("qmp: ignoring a second greeting");
		break;
	case QMP_LINE_EVENT:
		qmp_event(q, root);
		break;
	case QMP_LINE_RETURN:
	case QMP_LINE_ERROR:
		if (q->state != QMP_GREETING) {
			qmp_reply(q, root, kind);
			break;
		}
		/* FALLTHROUGH */
	case QMP_LINE_GARBAGE:
		jsonl_excerpt(buf, sizeof buf, line, len);
		if (q->state == QMP_GREETING) {
			xasprintf(&cause, "not a QMP greeting: %s", buf);
			qmp_close(q, "Disconnected", cause, 1);
			free(cause);
		} else
			log_warnx("qmp: ignoring a line that is not QMP: %s",
			    buf);
		break;
	}
	json_decref(root);
}

/* Split the input into lines, resuming the LF search where it stopped. */
static void
qmp_read_cb(struct bufferevent *bev, void *arg)
{
	struct qmp		*q = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	size_t			 len;
	char			*line, *cause;

	qmp_hold(q);
	while (q->state != QMP_CLOSED && !q->freed) {
		switch (jsonl_next(in, &q->scanned, QMP_MAX_LINE, &line, &len)) {
		case JSONL_MORE:
			break;
		case JSONL_TOOLONG:
			xasprintf(&cause, "QMP line of %zu bytes is over %d",
			    len, QMP_MAX_LINE);
			qmp_close(q, "Disconnected", cause, 1);
			free(cause);
			break;
		case JSONL_LINE:
			qmp_line(q, line, len);
			free(line);
			continue;
		}
		break;
	}
	qmp_timer_update(q);
	qmp_release(q);
}

/* Room to write: what waits its turn goes now. */
static void
qmp_writable(struct qmp *q)
{
	qmp_hold(q);
	qmp_flush(q);
	qmp_timer_update(q);
	qmp_release(q);
}

/* Output drained: an fd command waiting its turn can go now. */
static void
qmp_write_cb(struct bufferevent *bev, void *arg)
{
	qmp_writable(arg);
}

/* The socket is writable again after sendmsg said EAGAIN. */
static void
qmp_wev_cb(evutil_socket_t fd, short events, void *arg)
{
	qmp_writable(arg);
}

/* EOF or a socket error: QEMU is gone, or going. */
static void
qmp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct qmp	*q = arg;
	char		*cause;

	if ((cause = jsonl_event_cause(what, "QEMU closed the QMP connection",
	    "QMP connection error")) == NULL)
		return;
	qmp_hold(q);
	qmp_close(q, "Disconnected", cause, 1);
	qmp_release(q);
	free(cause);
}

struct qmp *
qmp_create(struct event_base *base, int fd, const struct qmp_callbacks *cb,
    void *arg, int timeout_ms)
{
	struct qmp	*q;

	q = xcalloc(1, sizeof *q);
	q->base = base;
	q->fd = fd;
	q->state = QMP_GREETING;
	if (cb != NULL)
		q->cb = *cb;
	q->arg = arg;
	q->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
	q->next_id = 1;
	TAILQ_INIT(&q->outq);
	TAILQ_INIT(&q->pending);

	q->bev = jsonl_bufferevent(base, fd, qmp_read_cb, qmp_write_cb,
	    qmp_event_cb, q);
	if ((q->timer = evtimer_new(base, qmp_timer_cb, q)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	if ((q->wev = event_new(base, fd, EV_WRITE, qmp_wev_cb, q)) == NULL)
		fatalx("%s: event_new", __func__);

	if (q->timeout_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &q->greet_deadline);
		q->greet_deadline.tv_sec += q->timeout_ms / 1000;
		q->greet_deadline.tv_nsec +=
		    (long)(q->timeout_ms % 1000) * 1000000;
		if (q->greet_deadline.tv_nsec >= 1000000000) {
			q->greet_deadline.tv_sec++;
			q->greet_deadline.tv_nsec -= 1000000000;
		}
		qmp_timer_update(q);
	}
	return (q);
}

void
qmp_free(struct qmp *q)
{
	if (q == NULL || q->freed)
		return;
	q->freed = 1;
	qmp_hold(q);
	qmp_close(q, "Disconnected", "the QMP client was freed", 0);
	qmp_release(q);
}

enum qmp_state
qmp_get_state(const struct qmp *q)
{
	return (q->state);
}

/* Queue a command; it is written at once when READY and nothing waits. */
static int
qmp_submit(struct qmp *q, const char *cmd, json_t *args, int fd,
    qmp_reply_cb cb, void *arg)
{
	struct qmp_cmd	*c;
	int		 dupfd = -1;

	if (q->state == QMP_CLOSED) {
		json_decref(args);
		return (-1);
	}
	if (fd != -1 && (dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1) {
		log_warn("qmp: cannot duplicate fd %d for %s", fd, cmd);
		json_decref(args);
		return (-1);
	}
	c = qmp_cmd_new(q, cmd, args, dupfd, cb, arg);
	TAILQ_INSERT_TAIL(&q->outq, c, entry);
	if (q->state == QMP_READY) {
		qmp_cmd_arm(q, c);
		qmp_flush(q);
		qmp_timer_update(q);
	}
	return (0);
}

int
qmp_execute(struct qmp *q, const char *cmd, json_t *args, qmp_reply_cb cb,
    void *arg)
{
	return (qmp_submit(q, cmd, args, -1, cb, arg));
}

int
qmp_execute_fd(struct qmp *q, const char *cmd, json_t *args, int fd,
    qmp_reply_cb cb, void *arg)
{
	if (fd < 0) {
		json_decref(args);
		errno = EBADF;
		return (-1);
	}
	return (qmp_submit(q, cmd, args, fd, cb, arg));
}

int
qmp_connect_unix(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd, saved;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof sun.sun_path) >=
	    sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return (-1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1 &&
	    errno != EINPROGRESS && errno != EINTR) {
		saved = errno;
		close(fd);
		errno = saved;
		return (-1);
	}
	return (fd);
}

/*
 * Decide what a line is by its key; the value under the key must have the
 * right shape too ("QMP" and "error" objects, "event" a string).
 */
enum qmp_line_kind
qmp_line_classify(const char *line, size_t len, json_t **out)
{
	json_t			*root;
	json_error_t		 jerr;
	enum qmp_line_kind	 kind = QMP_LINE_GARBAGE;

	if (out != NULL)
		*out = NULL;
	root = json_loadb(line, len, 0, &jerr);
	if (root == NULL)
		return (QMP_LINE_GARBAGE);
	if (json_is_object(root)) {
		if (json_object_get(root, "QMP") != NULL) {
			if (json_is_object(json_object_get(root, "QMP")))
				kind = QMP_LINE_GREETING;
		} else if (json_object_get(root, "event") != NULL) {
			if (json_is_string(json_object_get(root, "event")))
				kind = QMP_LINE_EVENT;
		} else if (json_object_get(root, "return") != NULL)
			kind = QMP_LINE_RETURN;
		else if (json_is_object(json_object_get(root, "error")))
			kind = QMP_LINE_ERROR;
	}
	if (kind == QMP_LINE_GARBAGE || out == NULL)
		json_decref(root);
	else
		*out = root;
	return (kind);
}
