/*
 * Guest agent client: one small state machine per VM on a libevent
 * bufferevent, in the shape of qmp.c.  See qga.h for the contract.
 *
 * Commands wait in one FIFO; the head is in flight once written (at most
 * one at a time: the agent answers in order, and a reply to a command we
 * gave up on must not be taken for the next one's).  One timer serves the
 * sync attempt and the in-flight command's deadline.  Callbacks fire only
 * from the loop, never from inside qga_execute; a callback may call
 * qga_free or qga_execute: entries from the loop hold a reference.
 */
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/random.h>

#include <linux/sockios.h>

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
#include "qga.h"
#include "xmalloc.h"

/* guest-network-get-interfaces of a busy guest is the biggest answer. */
#define QGA_MAX_LINE	(1024 * 1024)

struct qga_cmd {
	char			*name;
	char			*line;		/* JSON and newline */
	size_t			 len;
	int			 flags;
	qga_reply_cb		 cb;
	void			*arg;
	TAILQ_ENTRY(qga_cmd)	 entry;
};
TAILQ_HEAD(qga_cmds, qga_cmd);

struct qga {
	struct event_base	*base;
	struct bufferevent	*bev;
	struct event		*timer;		/* sync retry, deadline */

	enum qga_state		 state;
	struct qga_callbacks	 cb;
	void			*arg;
	int			 timeout_ms;

	json_int_t		 sync_id;	/* the id the agent must echo */
	struct qga_cmds		 queue;		/* head in flight if inflight */
	int			 inflight;
	size_t			 scanned;	/* input bytes with no LF */

	unsigned int		 refs;
	int			 freed;
};

static void	qga_flush(struct qga *);

static void
qga_hold(struct qga *q)
{
	q->refs++;
}

/* Drop a reference; the last one frees a qga that qga_free has marked. */
static void
qga_release(struct qga *q)
{
	if (--q->refs != 0 || !q->freed)
		return;
	if (q->bev != NULL)
		bufferevent_free(q->bev);
	event_free(q->timer);
	free(q);
}

static void
qga_cmd_free(struct qga_cmd *c)
{
	free(c->line);
	free(c->name);
	free(c);
}

static void
qga_timer_arm(struct qga *q)
{
	struct timeval	tv;

	tv.tv_sec = q->timeout_ms / 1000;
	tv.tv_usec = (q->timeout_ms % 1000) * 1000;
	evtimer_add(q->timer, &tv);
}

/* Encode a command as one line; the agent needs no id. */
static char *
qga_encode(const char *name, json_t *args, size_t *len)
{
	json_t	*req;
	char	*line;

	req = json_object();
	json_object_set_new(req, "execute", json_string(name));
	if (args != NULL)
		json_object_set_new(req, "arguments", args);
	line = jsonl_encode(req, len, name);
	json_decref(req);
	return (line);
}

/* Fire and free every queued command's callback with errclass. */
static void
qga_fail_all(struct qga *q, const char *errclass, const char *cause)
{
	struct qga_cmds	 dead;
	struct qga_cmd	*c;

	TAILQ_INIT(&dead);
	TAILQ_CONCAT(&dead, &q->queue, entry);
	q->inflight = 0;
	while ((c = TAILQ_FIRST(&dead)) != NULL) {
		TAILQ_REMOVE(&dead, c, entry);
		if (c->cb != NULL)
			c->cb(q, NULL, errclass, cause, c->arg);
		qga_cmd_free(c);
	}
}

/*
 * Is what we wrote last still unread? A guest that has not opened its end
 * of the port reads nothing: QEMU leaves our bytes in the socket.
 */
static int
qga_unread(struct qga *q)
{
	int	 queued = 0;

	if (evbuffer_get_length(bufferevent_get_output(q->bev)) != 0)
		return (1);
	return (ioctl(bufferevent_getfd(q->bev), SIOCOUTQ, &queued) == 0 &&
	    queued > 0);
}

/*
 * Ask the agent to echo a fresh random id behind a 0xFF delimiter; the
 * 0xFF we send first makes the agent drop any half-read request. While
 * the last request is unread, it stays the one: nothing piles up for a
 * guest with no agent, and its answer still counts when one starts.
 */
static void
qga_sync_send(struct qga *q)
{
	uint32_t	 r;
	char		*line;
	size_t		 len;

	if (q->sync_id != 0 && qga_unread(q)) {
		qga_timer_arm(q);
		return;
	}
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
		r = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16);
	q->sync_id = (json_int_t)(r & 0x7fffffff);
	line = qga_encode("guest-sync-delimited", json_pack("{s:I}", "id",
	    q->sync_id), &len);
	log_debug("qga: -> \\xff%.*s", (int)len - 1, line);
	if (bufferevent_write(q->bev, "\xff", 1) != 0 ||
	    bufferevent_write(q->bev, line, len) != 0)
		fatalx("%s: bufferevent_write", __func__);
	free(line);
	qga_timer_arm(q);
}

/*
 * Go to CLOSED: drop the socket, fire every waiting callback once with
 * "Disconnected", then (if notify and not freed) the state callback.
 */
static void
qga_close(struct qga *q, const char *cause, int notify)
{
	if (q->state == QGA_CLOSED)
		return;
	q->state = QGA_CLOSED;
	log_debug("qga: closed: %s", cause);
	evtimer_del(q->timer);
	if (q->bev != NULL) {
		bufferevent_free(q->bev);
		q->bev = NULL;
	}
	qga_hold(q);
	qga_fail_all(q, "Disconnected", cause);
	if (notify && !q->freed && q->cb.state != NULL)
		q->cb.state(q, QGA_CLOSED, cause, q->arg);
	qga_release(q);
}

/*
 * The agent stopped answering, or said something out of turn: fail what
 * waits (with errclass for the one in flight) and resynchronise.
 */
static void
qga_lose_sync(struct qga *q, const char *errclass, const char *cause)
{
	struct qga_cmd	*c;

	if (q->state != QGA_READY)
		return;
	q->state = QGA_SYNCING;
	log_debug("qga: lost sync: %s", cause);
	evtimer_del(q->timer);
	if (q->inflight && (c = TAILQ_FIRST(&q->queue)) != NULL) {
		TAILQ_REMOVE(&q->queue, c, entry);
		q->inflight = 0;
		if (c->cb != NULL)
			c->cb(q, NULL, errclass, cause, c->arg);
		qga_cmd_free(c);
	}
	qga_fail_all(q, "Disconnected", cause);
	if (q->state != QGA_SYNCING || q->freed)
		return;
	qga_sync_send(q);
	if (q->cb.state != NULL)
		q->cb.state(q, QGA_SYNCING, cause, q->arg);
}

/* Write the head of the queue when nothing is in flight. */
static void
qga_flush(struct qga *q)
{
	struct qga_cmd	*c;

	if (q->state != QGA_READY || q->inflight ||
	    (c = TAILQ_FIRST(&q->queue)) == NULL)
		return;
	log_debug("qga: -> %.*s", (int)c->len - 1, c->line);
	if (bufferevent_write(q->bev, c->line, c->len) != 0)
		fatalx("%s: bufferevent_write", __func__);
	q->inflight = 1;
	/* A command without answer is done once written (qga_write_cb). */
	if (c->flags & QGA_NOREPLY)
		evtimer_del(q->timer);
	else
		qga_timer_arm(q);
}

/* The in-flight command is answered: pop it, call back, send the next. */
static void
qga_reply(struct qga *q, json_t *root, enum qga_line_kind kind)
{
	struct qga_cmd	*c;
	const char	*class, *desc;

	c = TAILQ_FIRST(&q->queue);
	if (!q->inflight || c == NULL || (c->flags & QGA_NOREPLY)) {
		qga_lose_sync(q, "Disconnected",
		    "the guest agent answered a question not asked");
		return;
	}
	TAILQ_REMOVE(&q->queue, c, entry);
	q->inflight = 0;
	evtimer_del(q->timer);
	if (c->cb != NULL) {
		if (kind == QGA_LINE_RETURN)
			c->cb(q, json_object_get(root, "return"), NULL, NULL,
			    c->arg);
		else {
			jsonl_error(root, &class, &desc);
			c->cb(q, NULL, class, desc, c->arg);
		}
	}
	qga_cmd_free(c);
	if (!q->freed)
		qga_flush(q);
}

/* One line from the port: a sync answer, a reply, or noise. */
static void
qga_line(struct qga *q, char *line, size_t len)
{
	enum qga_line_kind	 kind;
	json_t			*root, *ret;
	int			 delimited;
	char			 buf[80];

	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	log_debug("qga: <- %s", jsonl_excerpt(buf, sizeof buf, line, len));

	kind = qga_line_classify(line, len, &delimited, &root);
	if (q->state == QGA_SYNCING) {
		/* Everything before our own id's echo is stale. */
		ret = json_object_get(root, "return");
		if (delimited && kind == QGA_LINE_RETURN &&
		    json_is_integer(ret) &&
		    json_integer_value(ret) == q->sync_id) {
			q->state = QGA_READY;
			evtimer_del(q->timer);
			if (q->cb.state != NULL)
				q->cb.state(q, QGA_READY, NULL, q->arg);
			if (q->state == QGA_READY && !q->freed)
				qga_flush(q);
		}
	} else if (delimited)
		log_debug("qga: ignoring a stale sync answer");
	else if (kind == QGA_LINE_GARBAGE)
		log_warnx("qga: ignoring a line that is not an agent reply: "
		    "%s", buf);
	else
		qga_reply(q, root, kind);
	json_decref(root);
}

/* Split the input into lines, resuming the LF search where it stopped. */
static void
qga_read_cb(struct bufferevent *bev, void *arg)
{
	struct qga		*q = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	size_t			 len;
	char			*line;

	qga_hold(q);
	while (q->state != QGA_CLOSED && !q->freed) {
		switch (jsonl_next(in, &q->scanned, QGA_MAX_LINE, &line, &len)) {
		case JSONL_MORE:
			break;
		case JSONL_TOOLONG:
			qga_close(q, "guest agent line too long", 1);
			break;
		case JSONL_LINE:
			qga_line(q, line, len);
			free(line);
			continue;
		}
		break;
	}
	qga_release(q);
}

/* Output drained: a command that gets no answer is done. */
static void
qga_write_cb(struct bufferevent *bev, void *arg)
{
	struct qga	*q = arg;
	struct qga_cmd	*c;

	qga_hold(q);
	c = TAILQ_FIRST(&q->queue);
	if (q->state == QGA_READY && q->inflight && c != NULL &&
	    (c->flags & QGA_NOREPLY)) {
		TAILQ_REMOVE(&q->queue, c, entry);
		q->inflight = 0;
		if (c->cb != NULL)
			c->cb(q, NULL, NULL, NULL, c->arg);
		qga_cmd_free(c);
		if (!q->freed)
			qga_flush(q);
	}
	qga_release(q);
}

/* A sync attempt or a command is late. */
static void
qga_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct qga	*q = arg;
	struct qga_cmd	*c;
	char		*cause;

	qga_hold(q);
	if (q->state == QGA_SYNCING)
		qga_sync_send(q);	/* no agent yet: ask again */
	else if (q->state == QGA_READY && q->inflight &&
	    (c = TAILQ_FIRST(&q->queue)) != NULL) {
		xasprintf(&cause, "the guest agent did not answer %s within "
		    "%d ms", c->name, q->timeout_ms);
		qga_lose_sync(q, "Timeout", cause);
		free(cause);
	}
	qga_release(q);
}

/* EOF or a socket error: QEMU is gone, or going. */
static void
qga_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct qga	*q = arg;
	char		*cause;

	if ((cause = jsonl_event_cause(what,
	    "QEMU closed the guest agent port", "guest agent port error")) ==
	    NULL)
		return;
	qga_hold(q);
	qga_close(q, cause, 1);
	qga_release(q);
	free(cause);
}

struct qga *
qga_create(struct event_base *base, int fd, const struct qga_callbacks *cb,
    void *arg, int timeout_ms)
{
	struct qga	*q;

	q = xcalloc(1, sizeof *q);
	q->base = base;
	q->state = QGA_SYNCING;
	if (cb != NULL)
		q->cb = *cb;
	q->arg = arg;
	q->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
	TAILQ_INIT(&q->queue);

	q->bev = jsonl_bufferevent(base, fd, qga_read_cb, qga_write_cb,
	    qga_event_cb, q);
	if ((q->timer = evtimer_new(base, qga_timer_cb, q)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	qga_sync_send(q);
	return (q);
}

void
qga_free(struct qga *q)
{
	if (q == NULL || q->freed)
		return;
	q->freed = 1;
	qga_hold(q);
	qga_close(q, "the guest agent client was freed", 0);
	qga_release(q);
}

enum qga_state
qga_get_state(const struct qga *q)
{
	return (q->state);
}

int
qga_execute(struct qga *q, const char *cmd, json_t *args, int flags,
    qga_reply_cb cb, void *arg)
{
	struct qga_cmd	*c;

	if (q->state != QGA_READY) {
		json_decref(args);
		return (-1);
	}
	c = xcalloc(1, sizeof *c);
	c->name = xstrdup(cmd);
	c->line = qga_encode(cmd, args, &c->len);
	c->flags = flags;
	c->cb = cb;
	c->arg = arg;
	TAILQ_INSERT_TAIL(&q->queue, c, entry);
	qga_flush(q);
	return (0);
}

/*
 * What follows the last 0xFF (the agent's delimiter) or the whole line is
 * a reply when it is an object with "return", or "error" as an object.
 */
enum qga_line_kind
qga_line_classify(const char *line, size_t len, int *delimited, json_t **out)
{
	json_t			*root;
	json_error_t		 jerr;
	enum qga_line_kind	 kind = QGA_LINE_GARBAGE;
	const char		*p;

	if (out != NULL)
		*out = NULL;
	*delimited = 0;
	if ((p = memrchr(line, 0xff, len)) != NULL) {
		*delimited = 1;
		len -= (size_t)(p + 1 - line);
		line = p + 1;
	}
	root = json_loadb(line, len, 0, &jerr);
	if (root == NULL)
		return (QGA_LINE_GARBAGE);
	if (json_is_object(root)) {
		if (json_object_get(root, "return") != NULL)
			kind = QGA_LINE_RETURN;
		else if (json_is_object(json_object_get(root, "error")))
			kind = QGA_LINE_ERROR;
	}
	if (kind == QGA_LINE_GARBAGE || out == NULL)
		json_decref(root);
	else
		*out = root;
	return (kind);
}
