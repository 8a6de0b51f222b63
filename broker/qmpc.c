/*
 * The broker's client of qmpd's admin socket: one connection, JSON lines,
 * a table of requests in flight keyed by id, each with a callback and a
 * deadline. qmpd may restart at any time: the connection is then redialled
 * with a growing delay, and every request in flight fails at once with
 * QMPC_ERR_DOWN rather than hanging a user's page.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "broker.h"
#include "log.h"
#include "proto.h"
#include "xmalloc.h"

#define QMPC_BACKOFF_MIN_MS	100
#define QMPC_BACKOFF_MAX_MS	5000
/*
 * A connection silent this long gets a ping; no answer to it in time and
 * qmpd is taken for gone. EOF alone is not enough: a qmpd killed with
 * -9 may leave its end of our socket open in a child (a QEMU), and then
 * nothing but silence tells us. Any reply proves life: the ping is a
 * command qmpd does not know, answered at once and never logged.
 */
#define QMPC_HELLO_TIMEOUT	10
#define QMPC_PING_IDLE		5
#define QMPC_PING_TIMEOUT	10
#define QMPC_PING_CMD		"broker.ping"

enum qmpc_state {
	QMPC_DOWN,		/* waiting to redial */
	QMPC_HELLO,		/* connected, waiting for qmpd's hello */
	QMPC_READY
};

struct qmpc_req {
	long long		 id;
	char			*cmd;
	qmpc_cb			 cb;
	void			*arg;
	time_t			 deadline;	/* CLOCK_MONOTONIC seconds */
	int			 timeout;
	char			*errclass;	/* set when failed early */
	char			*errdesc;
	TAILQ_ENTRY(qmpc_req)	 entry;
};
TAILQ_HEAD(qmpc_reqs, qmpc_req);

static struct {
	struct event_base	*base;
	char			*path;
	struct bufferevent	*bev;
	enum qmpc_state		 state;
	struct event		*redial;
	struct event		*tick;
	struct event		*deferred;
	int			 backoff_ms;
	int			 failures;	/* dials failed in a row */
	time_t			 last_rx;	/* a line came from qmpd */
	int			 pinging;	/* a ping is in flight */
	unsigned int		 generation;	/* counts connections */
	long long		 next_id;
	char			 version[32];
	struct qmpc_reqs	 pending;	/* sent, awaiting a reply */
	struct qmpc_reqs	 failed;	/* to be called back soon */
} qmpc;

static void	qmpc_dial(void);

static time_t
qmpc_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

static void
qmpc_req_free(struct qmpc_req *r)
{
	free(r->cmd);
	free(r->errclass);
	free(r->errdesc);
	free(r);
}

/* Queue a failure to be called back from the loop, not from our caller. */
static void
qmpc_fail_later(struct qmpc_req *r, const char *errclass, const char *desc)
{
	r->errclass = xstrdup(errclass);
	r->errdesc = xstrdup(desc);
	TAILQ_INSERT_TAIL(&qmpc.failed, r, entry);
	event_active(qmpc.deferred, EV_TIMEOUT, 0);
}

/* Call back the requests that failed before reaching qmpd. */
static void
qmpc_deferred_cb(evutil_socket_t fd, short events, void *arg)
{
	struct qmpc_reqs	 list;
	struct qmpc_req		*r;

	/* Callbacks may queue more; take what is there now. */
	TAILQ_INIT(&list);
	TAILQ_CONCAT(&list, &qmpc.failed, entry);
	while ((r = TAILQ_FIRST(&list)) != NULL) {
		TAILQ_REMOVE(&list, r, entry);
		r->cb(NULL, r->errclass, r->errdesc, r->arg);
		qmpc_req_free(r);
	}
}

/* Drop the connection: fail everything in flight, redial later. */
static void
qmpc_drop(const char *why)
{
	struct qmpc_req	*r;
	struct timeval	 tv;

	if (qmpc.state == QMPC_READY)
		log_warnx("lost qmpd at %s: %s; redialling", qmpc.path, why);
	else if (qmpc.failures++ == 0 || qmpc.failures % 60 == 0)
		log_warnx("cannot reach qmpd at %s: %s; retrying", qmpc.path,
		    why);
	if (qmpc.bev != NULL) {
		bufferevent_free(qmpc.bev);
		qmpc.bev = NULL;
	}
	qmpc.state = QMPC_DOWN;
	while ((r = TAILQ_FIRST(&qmpc.pending)) != NULL) {
		TAILQ_REMOVE(&qmpc.pending, r, entry);
		qmpc_fail_later(r, QMPC_ERR_DOWN, "qmpd went away before it "
		    "answered; try again in a moment");
	}
	tv.tv_sec = qmpc.backoff_ms / 1000;
	tv.tv_usec = (qmpc.backoff_ms % 1000) * 1000;
	evtimer_add(qmpc.redial, &tv);
	qmpc.backoff_ms *= 2;
	if (qmpc.backoff_ms > QMPC_BACKOFF_MAX_MS)
		qmpc.backoff_ms = QMPC_BACKOFF_MAX_MS;
}

/* The first line: qmpd's hello, or its refusal of our uid. */
static int
qmpc_hello(json_t *msg)
{
	json_t		*err;
	const char	*v;

	switch (proto_classify(msg)) {
	case PROTO_MSG_HELLO:
		v = json_string_value(json_object_get(json_object_get(msg,
		    "qdesk"), "version"));
		strlcpy(qmpc.version, v != NULL ? v : "?",
		    sizeof qmpc.version);
		qmpc.state = QMPC_READY;
		bufferevent_set_timeouts(qmpc.bev, NULL, NULL);
		qmpc.generation++;
		qmpc.pinging = 0;
		qmpc.backoff_ms = QMPC_BACKOFF_MIN_MS;
		qmpc.failures = 0;
		log_info("connected to qmpd %s at %s", qmpc.version,
		    qmpc.path);
		return (0);
	case PROTO_MSG_ERROR:
		err = json_object_get(msg, "error");
		log_warnx("qmpd refused the broker (uid %ld): %s (start qmpd "
		    "with --broker-user and this user)", (long)getuid(),
		    json_string_value(json_object_get(err, "desc")));
		return (-1);
	default:
		log_warnx("qmpd at %s did not greet as qmpd does", qmpc.path);
		return (-1);
	}
}

/* A reply: find its request by id and call it back. */
static void
qmpc_reply(json_t *msg, enum proto_msg_kind kind)
{
	struct qmpc_req	*r;
	json_t		*id = json_object_get(msg, "id"), *err;
	const char	*class, *desc;

	if (!json_is_integer(id)) {
		log_warnx("qmpd reply without our id: ignored");
		return;
	}
	TAILQ_FOREACH(r, &qmpc.pending, entry) {
		if (r->id == json_integer_value(id))
			break;
	}
	if (r == NULL) {
		log_debug("qmpd reply to id %lld, which timed out",
		    (long long)json_integer_value(id));
		return;
	}
	TAILQ_REMOVE(&qmpc.pending, r, entry);
	if (kind == PROTO_MSG_RETURN)
		r->cb(json_object_get(msg, "return"), NULL, NULL, r->arg);
	else {
		err = json_object_get(msg, "error");
		class = json_string_value(json_object_get(err, "class"));
		desc = json_string_value(json_object_get(err, "desc"));
		r->cb(NULL, class != NULL ? class : ERR_INTERNAL,
		    desc != NULL ? desc : "qmpd gave no reason", r->arg);
	}
	qmpc_req_free(r);
}

/* qmpd's lines: its hello first, then replies; events are ignored. */
static void
qmpc_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	enum proto_msg_kind kind;
	json_error_t	 jerr;
	json_t		*msg;
	char		*line;
	size_t		 len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		qmpc.last_rx = qmpc_now();
		msg = json_loadb(line, len, 0, &jerr);
		if (log_getverbose() > 1)
			log_debug("qmpd: <- %s", line);
		free(line);
		if (msg == NULL) {
			qmpc_drop("qmpd sent a line that is not JSON");
			return;
		}
		if (qmpc.state == QMPC_HELLO) {
			if (qmpc_hello(msg) != 0) {
				json_decref(msg);
				qmpc_drop("refused");
				return;
			}
			json_decref(msg);
			continue;
		}
		kind = proto_classify(msg);
		if (kind == PROTO_MSG_RETURN || kind == PROTO_MSG_ERROR)
			qmpc_reply(msg, kind);
		json_decref(msg);
		/* A callback may not free us, but be sure we still run. */
		if (qmpc.bev != bev)
			return;
	}
	if (evbuffer_get_length(in) > PROTO_MAX_LINE)
		qmpc_drop("qmpd sent an over-long line");
}

/* The socket connected (the hello follows), closed or failed. */
static void
qmpc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & BEV_EVENT_CONNECTED)
		return;		/* qmpd's hello comes next */
	if (what & BEV_EVENT_TIMEOUT)
		qmpc_drop("no hello from qmpd within 10 s");
	else if (what & BEV_EVENT_EOF)
		qmpc_drop("connection closed");
	else if (what & BEV_EVENT_ERROR)
		qmpc_drop(strerror(EVUTIL_SOCKET_ERROR()));
}

/* Connect to qmpd's socket, without blocking the loop. */
static void
qmpc_dial(void)
{
	struct sockaddr_un	sun;
	struct timeval		tv = { QMPC_HELLO_TIMEOUT, 0 };

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strlcpy(sun.sun_path, qmpc.path, sizeof sun.sun_path);
	qmpc.bev = bufferevent_socket_new(qmpc.base, -1,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(qmpc.bev, qmpc_read_cb, NULL, qmpc_event_cb, NULL);
	bufferevent_setwatermark(qmpc.bev, EV_READ, 0, PROTO_MAX_LINE + 65536);
	bufferevent_set_timeouts(qmpc.bev, &tv, NULL);
	qmpc.state = QMPC_HELLO;
	if (bufferevent_socket_connect(qmpc.bev, (struct sockaddr *)&sun,
	    sizeof sun) != 0) {
		qmpc_drop(strerror(errno));
		return;
	}
	bufferevent_enable(qmpc.bev, EV_READ | EV_WRITE);
}

static void
qmpc_redial_cb(evutil_socket_t fd, short events, void *arg)
{
	qmpc_dial();
}

/* A ping's answer, whatever it says, proves qmpd alive; none: gone. */
static void
qmpc_ping_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	unsigned int	generation = (unsigned int)(uintptr_t)arg;

	if (generation != qmpc.generation)
		return;		/* an earlier connection's ping */
	qmpc.pinging = 0;
	if (errclass != NULL && strcmp(errclass, "Timeout") == 0 &&
	    qmpc.state == QMPC_READY)
		qmpc_drop("qmpd stopped answering (no reply to a ping in "
		    "10 s)");
}

/*
 * Once a second: fail requests qmpd has sat on past their deadline, and
 * ping a connection that has been silent a while.
 */
static void
qmpc_tick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct qmpc_req	*r, *r1;
	time_t		 now = qmpc_now();
	char		*desc;

	if (qmpc.state == QMPC_READY && !qmpc.pinging &&
	    now - qmpc.last_rx >= QMPC_PING_IDLE) {
		qmpc.pinging = 1;
		qmpc_call(QMPC_PING_CMD, NULL, QMPC_PING_TIMEOUT,
		    qmpc_ping_done, (void *)(uintptr_t)qmpc.generation);
	}

	TAILQ_FOREACH_SAFE(r, &qmpc.pending, entry, r1) {
		if (now < r->deadline)
			continue;
		TAILQ_REMOVE(&qmpc.pending, r, entry);
		xasprintf(&desc, "qmpd did not answer %s within %d s",
		    r->cmd, r->timeout);
		if (strcmp(r->cmd, QMPC_PING_CMD) != 0)
			log_warnx("%s", desc);
		qmpc_fail_later(r, "Timeout", desc);
		free(desc);
	}
}

void
qmpc_start(struct event_base *base, const char *path)
{
	struct timeval	tv = { 1, 0 };

	qmpc.base = base;
	qmpc.path = xstrdup(path);
	qmpc.backoff_ms = QMPC_BACKOFF_MIN_MS;
	qmpc.next_id = 1;
	TAILQ_INIT(&qmpc.pending);
	TAILQ_INIT(&qmpc.failed);
	qmpc.redial = evtimer_new(base, qmpc_redial_cb, NULL);
	qmpc.deferred = event_new(base, -1, 0, qmpc_deferred_cb, NULL);
	qmpc.tick = event_new(base, -1, EV_PERSIST, qmpc_tick_cb, NULL);
	evtimer_add(qmpc.tick, &tv);
	qmpc_dial();
}

void
qmpc_stop(void)
{
	struct qmpc_req	*r;

	if (qmpc.base == NULL)
		return;
	if (qmpc.bev != NULL)
		bufferevent_free(qmpc.bev);
	qmpc.bev = NULL;
	qmpc.state = QMPC_DOWN;
	while ((r = TAILQ_FIRST(&qmpc.pending)) != NULL) {
		TAILQ_REMOVE(&qmpc.pending, r, entry);
		qmpc_req_free(r);
	}
	while ((r = TAILQ_FIRST(&qmpc.failed)) != NULL) {
		TAILQ_REMOVE(&qmpc.failed, r, entry);
		qmpc_req_free(r);
	}
	event_free(qmpc.redial);
	event_free(qmpc.deferred);
	event_free(qmpc.tick);
	free(qmpc.path);
	qmpc.base = NULL;
}

int
qmpc_connected(void)
{
	return (qmpc.state == QMPC_READY);
}

const char *
qmpc_version(void)
{
	return (qmpc.state == QMPC_READY ? qmpc.version : NULL);
}

/* Send cmd with args (stolen) to qmpd; cb runs later, exactly once. */
void
qmpc_call(const char *cmd, json_t *args, int timeout, qmpc_cb cb, void *arg)
{
	struct qmpc_req	*r;
	json_t		*id;
	char		*line;

	r = xcalloc(1, sizeof *r);
	r->cmd = xstrdup(cmd);
	r->cb = cb;
	r->arg = arg;
	r->timeout = timeout;
	r->deadline = qmpc_now() + timeout;
	if (qmpc.state != QMPC_READY) {
		json_decref(args);
		qmpc_fail_later(r, QMPC_ERR_DOWN, "qmpd is not reachable "
		    "right now; try again in a moment");
		return;
	}
	if (args == NULL)
		args = json_object();
	r->id = qmpc.next_id++;
	id = json_integer(r->id);
	line = proto_request(id, cmd, args);
	json_decref(id);
	json_decref(args);
	if (log_getverbose() > 1 && strcmp(cmd, "user.auth") != 0 &&
	    strcmp(cmd, QMPC_PING_CMD) != 0)
		log_debug("qmpd: -> %s", line);
	evbuffer_add(bufferevent_get_output(qmpc.bev), line, strlen(line));
	evbuffer_add(bufferevent_get_output(qmpc.bev), "\n", 1);
	free(line);
	TAILQ_INSERT_TAIL(&qmpc.pending, r, entry);
}
