/*
 * The broker's client of qmpd's admin socket: one connection, JSON lines,
 * a table of requests in flight keyed by id, each with a callback and a
 * deadline. qmpd may restart at any time: the connection is then redialled
 * with a growing delay, and every request in flight fails at once with
 * QMPC_ERR_DOWN rather than hanging a user's page. A request made in the
 * first seconds after the connection was lost waits for the redial
 * instead: a qmpd restart (a package upgrade, systemd's restart) takes
 * well under a second, and a login during it should not fail.
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
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "broker.h"
#include "clock.h"
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
/* How long after losing qmpd a new request waits for it to come back. */
#define QMPC_DOWN_GRACE		5

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
	json_t			*args;		/* while waiting to be sent */
	TAILQ_ENTRY(qmpc_req)	 entry;
};
TAILQ_HEAD(qmpc_reqs, qmpc_req);

struct qmpc_conn {
	struct event_base	*base;
	char			*path;		/* the socket, or ADDR:PORT */
	SSL_CTX			*tls;		/* over TLS to a cluster host */
	char			*cn;		/* the host's certificate CN */
	struct bufferevent	*bev;
	enum qmpc_state		 state;
	struct event		*redial;
	struct event		*tick;
	struct event		*deferred;
	int			 backoff_ms;
	int			 failures;	/* dials failed in a row */
	time_t			 down_since;	/* lost a ready connection */
	time_t			 last_rx;	/* a line came from qmpd */
	int			 pinging;	/* a ping is in flight */
	unsigned int		 ping_generation;
	unsigned int		 generation;	/* counts connections */
	long long		 next_id;
	char			 version[32];
	struct qmpc_reqs	 pending;	/* sent, awaiting a reply */
	struct qmpc_reqs	 failed;	/* to be called back soon */
	struct qmpc_reqs	 waiting;	/* made while down, not sent */
};

/* The connection of a single-host broker: qmpd's unix socket. */
static struct qmpc_conn	 qmpc_local;

static void	qmpc_dial(struct qmpc_conn *);
static void	qmpc_send(struct qmpc_conn *, struct qmpc_req *, json_t *);
static void	qmpc_conn_init(struct qmpc_conn *, struct event_base *,
		    const char *, SSL_CTX *, const char *);

static void
qmpc_req_free(struct qmpc_req *r)
{
	free(r->cmd);
	free(r->errclass);
	free(r->errdesc);
	json_decref(r->args);
	free(r);
}

/* Queue a failure to be called back from the loop, not from our caller. */
static void
qmpc_fail_later(struct qmpc_conn *q, struct qmpc_req *r, const char *errclass,
    const char *desc)
{
	r->errclass = xstrdup(errclass);
	r->errdesc = xstrdup(desc);
	TAILQ_INSERT_TAIL(&q->failed, r, entry);
	event_active(q->deferred, EV_TIMEOUT, 0);
}

/* Call back the requests that failed before reaching qmpd. */
static void
qmpc_deferred_cb(evutil_socket_t fd, short events, void *arg)
{
	struct qmpc_conn	*q = arg;
	struct qmpc_reqs	 list;
	struct qmpc_req		*r;

	/* Callbacks may queue more; take what is there now. */
	TAILQ_INIT(&list);
	TAILQ_CONCAT(&list, &q->failed, entry);
	while ((r = TAILQ_FIRST(&list)) != NULL) {
		TAILQ_REMOVE(&list, r, entry);
		r->cb(NULL, r->errclass, r->errdesc, r->arg);
		qmpc_req_free(r);
	}
}

/* Drop the connection: fail everything in flight, redial later. */
static void
qmpc_drop(struct qmpc_conn *q, const char *why)
{
	struct qmpc_req	*r;
	struct timeval	 tv;

	if (q->state == QMPC_READY) {
		log_warnx("lost qmpd at %s: %s; redialling", q->path, why);
		q->down_since = clock_mono_s();
	}
	else if (q->failures++ == 0 || q->failures % 60 == 0)
		log_warnx("cannot reach qmpd at %s: %s; retrying", q->path,
		    why);
	if (q->bev != NULL) {
		bufferevent_free(q->bev);
		q->bev = NULL;
	}
	q->state = QMPC_DOWN;
	while ((r = TAILQ_FIRST(&q->pending)) != NULL) {
		TAILQ_REMOVE(&q->pending, r, entry);
		qmpc_fail_later(q, r, QMPC_ERR_DOWN, "qmpd went away before it "
		    "answered; try again in a moment");
	}
	tv.tv_sec = q->backoff_ms / 1000;
	tv.tv_usec = (q->backoff_ms % 1000) * 1000;
	evtimer_add(q->redial, &tv);
	q->backoff_ms *= 2;
	if (q->backoff_ms > QMPC_BACKOFF_MAX_MS)
		q->backoff_ms = QMPC_BACKOFF_MAX_MS;
}

/* Send what waited for the redial, in the order it was asked. */
static void
qmpc_flush_waiting(struct qmpc_conn *q)
{
	struct qmpc_req	*r;

	while ((r = TAILQ_FIRST(&q->waiting)) != NULL) {
		TAILQ_REMOVE(&q->waiting, r, entry);
		qmpc_send(q, r, r->args);
		r->args = NULL;
	}
}

/* The first line: qmpd's hello, or its refusal of our uid. */
static int
qmpc_hello(struct qmpc_conn *q, json_t *msg)
{
	json_t		*err;
	const char	*v;

	switch (proto_classify(msg)) {
	case PROTO_MSG_HELLO:
		v = json_string_value(json_object_get(json_object_get(msg,
		    "qdesk"), "version"));
		strlcpy(q->version, v != NULL ? v : "?",
		    sizeof q->version);
		q->state = QMPC_READY;
		bufferevent_set_timeouts(q->bev, NULL, NULL);
		q->generation++;
		q->pinging = 0;
		q->backoff_ms = QMPC_BACKOFF_MIN_MS;
		q->failures = 0;
		log_info("connected to qmpd %s at %s", q->version,
		    q->path);
		qmpc_flush_waiting(q);
		return (0);
	case PROTO_MSG_ERROR:
		err = json_object_get(msg, "error");
		log_warnx("qmpd refused the broker (uid %ld): %s (start qmpd "
		    "with --broker-user and this user)", (long)getuid(),
		    json_string_value(json_object_get(err, "desc")));
		return (-1);
	default:
		log_warnx("qmpd at %s did not greet as qmpd does", q->path);
		return (-1);
	}
}

/* A reply: find its request by id and call it back. */
static void
qmpc_reply(struct qmpc_conn *q, json_t *msg, enum proto_msg_kind kind)
{
	struct qmpc_req	*r;
	json_t		*id = json_object_get(msg, "id"), *err;
	const char	*class, *desc;

	if (!json_is_integer(id)) {
		log_warnx("qmpd reply without our id: ignored");
		return;
	}
	TAILQ_FOREACH(r, &q->pending, entry) {
		if (r->id == json_integer_value(id))
			break;
	}
	if (r == NULL) {
		log_debug("qmpd reply to id %lld, which timed out",
		    (long long)json_integer_value(id));
		return;
	}
	TAILQ_REMOVE(&q->pending, r, entry);
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
	struct qmpc_conn *q = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	enum proto_msg_kind kind;
	json_error_t	 jerr;
	json_t		*msg;
	char		*line;
	size_t		 len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		q->last_rx = clock_mono_s();
		msg = json_loadb(line, len, 0, &jerr);
		if (log_getverbose() > 1)
			log_debug("qmpd: <- %s", line);
		free(line);
		if (msg == NULL) {
			qmpc_drop(q, "qmpd sent a line that is not JSON");
			return;
		}
		if (q->state == QMPC_HELLO) {
			if (qmpc_hello(q, msg) != 0) {
				json_decref(msg);
				qmpc_drop(q, "refused");
				return;
			}
			json_decref(msg);
			continue;
		}
		kind = proto_classify(msg);
		if (kind == PROTO_MSG_RETURN || kind == PROTO_MSG_ERROR)
			qmpc_reply(q, msg, kind);
		json_decref(msg);
		/* A callback may not free us, but be sure we still run. */
		if (q->bev != bev)
			return;
	}
	if (evbuffer_get_length(in) > PROTO_MAX_LINE)
		qmpc_drop(q, "qmpd sent an over-long line");
}

/* The socket connected (the hello follows), closed or failed. */
static void
qmpc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct qmpc_conn	*q = arg;
	unsigned long		 e;
	char			 why[300];

	if (what & BEV_EVENT_CONNECTED) {
		if (q->tls != NULL && cluster_check_peer(q->bev, q->cn, why,
		    sizeof why) != 0)
			qmpc_drop(q, why);
		return;		/* qmpd's hello comes next */
	}
	if (q->tls != NULL && (e = bufferevent_get_openssl_error(bev)) != 0) {
		ERR_error_string_n(e, why, sizeof why);
		qmpc_drop(q, why);
	} else if (what & BEV_EVENT_TIMEOUT)
		qmpc_drop(q, "no hello from qmpd within 10 s");
	else if (what & BEV_EVENT_EOF)
		qmpc_drop(q, "connection closed");
	else if (what & BEV_EVENT_ERROR)
		qmpc_drop(q, strerror(EVUTIL_SOCKET_ERROR()));
}

/* Connect to qmpd's socket or listener, without blocking the loop. */
static void
qmpc_dial(struct qmpc_conn *q)
{
	struct sockaddr_storage	ss;
	struct sockaddr_un	*sun = (struct sockaddr_un *)&ss;
	struct timeval		tv = { QMPC_HELLO_TIMEOUT, 0 };
	int			sslen = sizeof ss;
	SSL			*ssl;

	memset(&ss, 0, sizeof ss);
	if (q->tls != NULL) {
		if (evutil_parse_sockaddr_port(q->path, (struct sockaddr *)&ss,
		    &sslen) != 0) {
			qmpc_drop(q, "not a numeric ADDR:PORT");
			return;
		}
		ssl = SSL_new(q->tls);
		q->bev = bufferevent_openssl_socket_new(q->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		bufferevent_openssl_set_allow_dirty_shutdown(q->bev, 1);
	} else {
		sun->sun_family = AF_UNIX;
		strlcpy(sun->sun_path, q->path, sizeof sun->sun_path);
		sslen = sizeof *sun;
		q->bev = bufferevent_socket_new(q->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	bufferevent_setcb(q->bev, qmpc_read_cb, NULL, qmpc_event_cb, q);
	bufferevent_setwatermark(q->bev, EV_READ, 0, PROTO_MAX_LINE + 65536);
	bufferevent_set_timeouts(q->bev, &tv, NULL);
	q->state = QMPC_HELLO;
	if (bufferevent_socket_connect(q->bev, (struct sockaddr *)&ss,
	    sslen) != 0) {
		qmpc_drop(q, strerror(errno));
		return;
	}
	bufferevent_enable(q->bev, EV_READ | EV_WRITE);
}

static void
qmpc_redial_cb(evutil_socket_t fd, short events, void *arg)
{
	qmpc_dial(arg);
}

/* A ping's answer, whatever it says, proves qmpd alive; none: gone. */
static void
qmpc_ping_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct qmpc_conn	*q = arg;

	if (q->ping_generation != q->generation)
		return;		/* an earlier connection's ping */
	q->pinging = 0;
	if (errclass != NULL && strcmp(errclass, "Timeout") == 0 &&
	    q->state == QMPC_READY)
		qmpc_drop(q, "qmpd stopped answering (no reply to a ping in "
		    "10 s)");
}

/*
 * Once a second: fail requests qmpd has sat on past their deadline, and
 * ping a connection that has been silent a while.
 */
static void
qmpc_tick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct qmpc_conn *q = arg;
	struct qmpc_req	*r, *r1;
	time_t		 now = clock_mono_s();
	char		*desc;

	if (q->state == QMPC_READY && !q->pinging &&
	    now - q->last_rx >= QMPC_PING_IDLE) {
		q->pinging = 1;
		q->ping_generation = q->generation;
		qmpc_conn_call(q, QMPC_PING_CMD, NULL, QMPC_PING_TIMEOUT,
		    qmpc_ping_done, q);
	}

	TAILQ_FOREACH_SAFE(r, &q->waiting, entry, r1) {
		if (q->state == QMPC_READY || now < r->deadline)
			continue;
		TAILQ_REMOVE(&q->waiting, r, entry);
		qmpc_fail_later(q, r, QMPC_ERR_DOWN, "qmpd is not reachable "
		    "right now; try again in a moment");
	}

	TAILQ_FOREACH_SAFE(r, &q->pending, entry, r1) {
		if (now < r->deadline)
			continue;
		TAILQ_REMOVE(&q->pending, r, entry);
		xasprintf(&desc, "qmpd at %s did not answer %s within %d s",
		    q->path, r->cmd, r->timeout);
		if (strcmp(r->cmd, QMPC_PING_CMD) != 0)
			log_warnx("%s", desc);
		qmpc_fail_later(q, r, "Timeout", desc);
		free(desc);
	}
}

/*
 * A connection to qmpd at path (a unix socket), or with tls to a cluster
 * host's listener at path ("ADDR:PORT") whose certificate must be cn.
 */
struct qmpc_conn *
qmpc_conn_open(struct event_base *base, const char *path, SSL_CTX *tls,
    const char *cn)
{
	struct qmpc_conn	*q;

	q = xcalloc(1, sizeof *q);
	qmpc_conn_init(q, base, path, tls, cn);
	return (q);
}

static void
qmpc_conn_init(struct qmpc_conn *q, struct event_base *base,
    const char *path, SSL_CTX *tls, const char *cn)
{
	struct timeval	tv = { 1, 0 };

	q->base = base;
	q->path = xstrdup(path);
	q->tls = tls;
	q->cn = cn != NULL ? xstrdup(cn) : NULL;
	q->backoff_ms = QMPC_BACKOFF_MIN_MS;
	q->next_id = 1;
	TAILQ_INIT(&q->pending);
	TAILQ_INIT(&q->failed);
	TAILQ_INIT(&q->waiting);
	q->redial = evtimer_new(base, qmpc_redial_cb, q);
	q->deferred = event_new(base, -1, 0, qmpc_deferred_cb, q);
	q->tick = event_new(base, -1, EV_PERSIST, qmpc_tick_cb, q);
	evtimer_add(q->tick, &tv);
	qmpc_dial(q);
}

/* Close it; requests in flight are dropped without their callbacks. */
static void
qmpc_conn_clear(struct qmpc_conn *q)
{
	struct qmpc_req	*r;

	if (q->base == NULL)
		return;
	if (q->bev != NULL)
		bufferevent_free(q->bev);
	q->bev = NULL;
	q->state = QMPC_DOWN;
	while ((r = TAILQ_FIRST(&q->pending)) != NULL) {
		TAILQ_REMOVE(&q->pending, r, entry);
		qmpc_req_free(r);
	}
	while ((r = TAILQ_FIRST(&q->failed)) != NULL) {
		TAILQ_REMOVE(&q->failed, r, entry);
		qmpc_req_free(r);
	}
	while ((r = TAILQ_FIRST(&q->waiting)) != NULL) {
		TAILQ_REMOVE(&q->waiting, r, entry);
		qmpc_req_free(r);
	}
	event_free(q->redial);
	event_free(q->deferred);
	event_free(q->tick);
	free(q->path);
	free(q->cn);
	q->base = NULL;
}

/*
 * Close a host's connection for good (it moved, or the broker stops):
 * each request still in flight is failed, now, with QMPC_ERR_DOWN.
 */
void
qmpc_conn_free(struct qmpc_conn *q)
{
	struct qmpc_reqs	 list;
	struct qmpc_req		*r;

	if (q == NULL)
		return;
	TAILQ_INIT(&list);
	TAILQ_CONCAT(&list, &q->pending, entry);
	TAILQ_CONCAT(&list, &q->failed, entry);
	TAILQ_CONCAT(&list, &q->waiting, entry);
	qmpc_conn_clear(q);
	free(q);
	while ((r = TAILQ_FIRST(&list)) != NULL) {
		TAILQ_REMOVE(&list, r, entry);
		/* A ping's callback is the connection's own: it is gone. */
		if (strcmp(r->cmd, QMPC_PING_CMD) != 0)
			r->cb(NULL, r->errclass != NULL ? r->errclass :
			    QMPC_ERR_DOWN, r->errdesc != NULL ? r->errdesc :
			    "the host's connection closed before it answered; "
			    "try again in a moment", r->arg);
		qmpc_req_free(r);
	}
}

int
qmpc_conn_ready(const struct qmpc_conn *q)
{
	return (q->state == QMPC_READY);
}

void
qmpc_start(struct event_base *base, const char *path)
{
	qmpc_conn_init(&qmpc_local, base, path, NULL, NULL);
}

void
qmpc_stop(void)
{
	qmpc_conn_clear(&qmpc_local);
}

/* Single host: the socket's state; cluster: whether any host is up. */
int
qmpc_connected(void)
{
	if (broker->cluster != NULL)
		return (cluster_up_hosts() > 0);
	return (qmpc_local.state == QMPC_READY);
}

const char *
qmpc_version(void)
{
	if (broker->cluster != NULL)
		return (cluster_version());
	return (qmpc_local.state == QMPC_READY ? qmpc_local.version : NULL);
}

const char *
qmpc_conn_version(const struct qmpc_conn *q)
{
	return (q->state == QMPC_READY ? q->version : NULL);
}

/* Send cmd with args (stolen) to q's qmpd; cb runs later, exactly once. */
void
qmpc_conn_call(struct qmpc_conn *q, const char *cmd, json_t *args,
    int timeout, qmpc_cb cb, void *arg)
{
	struct qmpc_req	*r;
	time_t		 now = clock_mono_s();

	r = xcalloc(1, sizeof *r);
	r->cmd = xstrdup(cmd);
	r->cb = cb;
	r->arg = arg;
	r->timeout = timeout;
	r->deadline = now + timeout;
	if (q->state == QMPC_READY) {
		qmpc_send(q, r, args);
		return;
	}
	if (q->down_since != 0 && now - q->down_since < QMPC_DOWN_GRACE) {
		/* Lost moments ago: most likely a restart; wait for it. */
		if (r->deadline > q->down_since + QMPC_DOWN_GRACE)
			r->deadline = q->down_since + QMPC_DOWN_GRACE;
		r->args = args;
		TAILQ_INSERT_TAIL(&q->waiting, r, entry);
		return;
	}
	json_decref(args);
	qmpc_fail_later(q, r, QMPC_ERR_DOWN, "qmpd is not reachable "
	    "right now; try again in a moment");
}

/* Put r on the wire of a ready connection; args are stolen. */
static void
qmpc_send(struct qmpc_conn *q, struct qmpc_req *r, json_t *args)
{
	const char	*cmd = r->cmd;
	json_t		*id;
	char		*line;

	if (args == NULL)
		args = json_object();
	r->deadline = clock_mono_s() + r->timeout;
	r->id = q->next_id++;
	id = json_integer(r->id);
	line = proto_request(id, cmd, args);
	json_decref(id);
	json_decref(args);
	if (log_getverbose() > 1 && strcmp(cmd, "user.auth") != 0 &&
	    strcmp(cmd, QMPC_PING_CMD) != 0)
		log_debug("qmpd %s: -> %s", q->path, line);
	evbuffer_add(bufferevent_get_output(q->bev), line, strlen(line));
	evbuffer_add(bufferevent_get_output(q->bev), "\n", 1);
	free(line);
	TAILQ_INSERT_TAIL(&q->pending, r, entry);
}

/*
 * Send cmd to qmpd: the local one, or in cluster mode the host the
 * request is for (cluster.c routes it).
 */
void
qmpc_call(const char *cmd, json_t *args, int timeout, qmpc_cb cb, void *arg)
{
	if (broker->cluster != NULL)
		cluster_call(cmd, args, timeout, cb, arg);
	else
		qmpc_conn_call(&qmpc_local, cmd, args, timeout, cb, arg);
}
