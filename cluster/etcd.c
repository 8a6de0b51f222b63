/*
 * etcd v3 client over the JSON gateway.  See etcd.h for the contract.
 *
 * A call is a struct etcd_req: its JSON body, its deadline, the endpoint
 * it tries now.  It runs on a connection of that endpoint (one request per
 * connection at a time; idle ones are kept for the next call), or waits in
 * the queue for one.  evhttp's callbacks get the connection, not the
 * request: a request that gives up (deadline, etcd_free) only detaches
 * from its connection, which is then freed from the loop, so no evhttp
 * callback ever sees freed memory and no connection is freed inside one.
 *
 * A watch owns one connection and reads the gateway's chunked stream of
 * newline-separated JSON messages; a broken stream reconnects and resumes
 * after the last revision seen.  A keeper is a lease and a timer.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "compat.h"
#include "etcd.h"
#include "etcd-int.h"
#include "log.h"
#include "xmalloc.h"
static void	etcd_req_dispatch(struct etcd_req *);

/* Milliseconds from now until ts (negative once past). */
long long
etcd_ms_until(const struct timespec *ts)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ((long long)(ts->tv_sec - now.tv_sec) * 1000 +
	    (ts->tv_nsec - now.tv_nsec) / 1000000);
}

static void
etcd_ms_from_now(struct timespec *ts, long long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

void
etcd_timer_ms(struct event *ev, long long ms)
{
	struct timeval	tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

/* ---- connections ---- */

static void	etcd_conn_done(struct evhttp_request *, void *);
static void	etcd_conn_error(enum evhttp_request_error, void *);

/* Free a connection from the loop: never inside one of its callbacks. */
static void
etcd_conn_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_conn	*c = arg;

	evhttp_connection_free(c->evcon);
	free(c);
}

void
etcd_conn_reap(struct etcd_conn *c)
{
	struct timeval	tv = { 0, 0 };

	c->req = NULL;
	c->watch = NULL;
	if (event_base_once(c->e->base, -1, EV_TIMEOUT, etcd_conn_reap_cb, c,
	    &tv) != 0)
		fatalx("%s: event_base_once", __func__);
}

/* The server closed a kept connection: out of the pool with it. */
static void
etcd_conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct etcd_conn	*c = arg;

	if (!c->idle)
		return;
	TAILQ_REMOVE(&c->ep->idle, c, entry);
	c->ep->nidle--;
	c->idle = 0;
	etcd_conn_reap(c);
}

/* A call is done with c: keep it for the next one, or let it go. */
static void
etcd_conn_release(struct etcd_conn *c)
{
	c->req = NULL;
	if (c->ep->nidle >= c->e->conns) {
		etcd_conn_reap(c);
		return;
	}
	TAILQ_INSERT_TAIL(&c->ep->idle, c, entry);
	c->ep->nidle++;
	c->idle = 1;
}

/* A new connection to ep: plain, or TLS with our certificate if any. */
struct etcd_conn *
etcd_conn_new(struct etcd *e, struct etcd_ep *ep)
{
	struct etcd_conn	*c;
	struct bufferevent	*bev;
	SSL			*ssl;
	X509_VERIFY_PARAM	*param;
	struct in6_addr		 a6;
	struct in_addr		 a4;

	c = xcalloc(1, sizeof *c);
	c->e = e;
	c->ep = ep;
	if (!ep->tls) {
		c->evcon = evhttp_connection_base_new(e->base, e->dns,
		    ep->host, ep->port);
	} else {
		if ((ssl = SSL_new(e->ssl)) == NULL)
			fatalx("%s: SSL_new", __func__);
		param = SSL_get0_param(ssl);
		if (inet_pton(AF_INET, ep->host, &a4) == 1 ||
		    inet_pton(AF_INET6, ep->host, &a6) == 1)
			X509_VERIFY_PARAM_set1_ip_asc(param, ep->host);
		else {
			SSL_set_tlsext_host_name(ssl, ep->host);
			X509_VERIFY_PARAM_set1_host(param, ep->host, 0);
		}
		bev = bufferevent_openssl_socket_new(e->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (bev == NULL)
			fatalx("%s: bufferevent_openssl_socket_new", __func__);
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
		c->evcon = evhttp_connection_base_bufferevent_new(e->base,
		    e->dns, bev, ep->host, ep->port);
	}
	if (c->evcon == NULL)
		fatalx("%s: evhttp_connection_base_new", __func__);
	evhttp_connection_set_retries(c->evcon, 0);
	evhttp_connection_set_closecb(c->evcon, etcd_conn_close_cb, c);
	return (c);
}

/* Start a POST of body on c; the answer comes to etcd_conn_done. */
int
etcd_conn_post(struct etcd_conn *c, const char *path, const char *body,
    size_t len, void (*chunk)(struct evhttp_request *, void *))
{
	struct evhttp_request	*http;
	struct evkeyvalq	*h;
	struct bufferevent	*bev;
	evutil_socket_t		 fd;
	int			 one = 1;

	c->failed = 0;
	c->uses++;
	if ((http = evhttp_request_new(etcd_conn_done, c)) == NULL)
		fatalx("%s: evhttp_request_new", __func__);
	evhttp_request_set_error_cb(http, etcd_conn_error);
	if (chunk != NULL)
		evhttp_request_set_chunked_cb(http, chunk);
	h = evhttp_request_get_output_headers(http);
	evhttp_add_header(h, "Host", c->ep->host);
	evhttp_add_header(h, "Content-Type", "application/json");
	evbuffer_add(evhttp_request_get_output_buffer(http), body, len);
	if (evhttp_make_request(c->evcon, http, EVHTTP_REQ_POST, path) != 0)
		return (-1);
	/*
	 * TLS writes a request as several records: without this, Nagle holds
	 * the last one for the server's delayed ACK, 40 ms a call.
	 */
	bev = evhttp_connection_get_bufferevent(c->evcon);
	if (bev != NULL && (fd = bufferevent_getfd(bev)) != -1)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return (0);
}

const char *
etcd_conn_strerror(struct etcd_conn *c)
{
	struct bufferevent	*bev;
	unsigned long		 err;
	const char		*s;

	/* A TLS failure says why: a certificate refused, on either side. */
	if (c->ep->tls &&
	    (bev = evhttp_connection_get_bufferevent(c->evcon)) != NULL &&
	    (err = bufferevent_get_openssl_error(bev)) != 0) {
		s = ERR_reason_error_string(err);
		snprintf(c->errbuf, sizeof c->errbuf, "TLS: %s",
		    s != NULL ? s : "handshake failed");
		return (c->errbuf);
	}
	if (!c->failed)
		return ("cannot connect");
	switch (c->err) {
	case EVREQ_HTTP_TIMEOUT:
		return ("timed out");
	case EVREQ_HTTP_EOF:
		return ("connection closed");
	case EVREQ_HTTP_INVALID_HEADER:
		return ("bad HTTP header");
	case EVREQ_HTTP_BUFFER_ERROR:
		return ("connection refused or reset");
	case EVREQ_HTTP_DATA_TOO_LONG:
		return ("answer too long");
	default:
		return ("connection failed");
	}
}

/* evhttp says why a request failed, before its completion callback. */
static void
etcd_conn_error(enum evhttp_request_error err, void *arg)
{
	struct etcd_conn	*c = arg;

	c->err = err;
	c->failed = 1;
}

/* ---- calls ---- */

static void
etcd_req_free(struct etcd_req *r)
{
	event_free(r->timer);
	int	i;

	for (i = 0; i < r->e->neps; i++)
		free(r->why[i]);
	free(r->why);
	free(r->body);
	free(r);
}

/* The call is over: off every list, then its callback, then freed. */
static void
etcd_req_finish(struct etcd_req *r, json_t *result, const char *errclass,
    const char *cause)
{
	struct etcd	*e = r->e;
	struct etcd_req	*w;

	TAILQ_REMOVE(&e->running, r, entry);
	evtimer_del(r->timer);
	if (r->conn != NULL) {
		etcd_conn_reap(r->conn);
		r->conn = NULL;
	}
	if (errclass != NULL)
		log_debug("etcd: %s: %s: %s", r->path->path, errclass, cause);
	/* A connection may have come free: the next waiting call takes it. */
	if ((w = TAILQ_FIRST(&e->waiting)) != NULL) {
		TAILQ_REMOVE(&e->waiting, w, entry);
		TAILQ_INSERT_TAIL(&e->running, w, entry);
		etcd_req_dispatch(w);
	}
	if (r->cb != NULL)
		r->cb(r->arg, result, errclass, cause);
	etcd_req_free(r);
}

static void
etcd_req_fail(struct etcd_req *r, const char *errclass, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Finish a call with an error, its cause formatted. */
static void
etcd_req_fail(struct etcd_req *r, const char *errclass, const char *fmt, ...)
{
	va_list	 ap;
	char	*cause;

	va_start(ap, fmt);
	xvasprintf(&cause, fmt, ap);
	va_end(ap);
	etcd_req_finish(r, NULL, errclass, cause);
	free(cause);
}

/* What went wrong where, for the final error: "URL: why; ...". */
static char *
etcd_req_why(struct etcd_req *r)
{
	struct etcd	*e = r->e;
	char		*s = NULL, *t;
	int		 i;

	for (i = 0; i < e->neps; i++) {
		if (r->why[i] == NULL && (r->conn == NULL || r->ep != i))
			continue;
		xasprintf(&t, "%s%s%s: %s", s != NULL ? s : "",
		    s != NULL ? "; " : "", e->eps[i].url, r->why[i] != NULL ?
		    r->why[i] : "no answer yet");
		free(s);
		s = t;
	}
	return (s != NULL ? s : xstrdup("no endpoint tried"));
}

/*
 * How long one member may keep a call that is safe to repeat before it
 * goes to the next: a third of the call's time. A member that accepts
 * and stays silent (restarting, catching up with the leader: etcd serves
 * nothing until it is ready, though its port accepts at once) would
 * otherwise hold the call to its deadline, and an admin's command with
 * it, while two members could answer.
 */
static long long
etcd_req_share_ms(struct etcd_req *r)
{
	return (r->timeout_ms / 3 > ETCD_ATTEMPT_MIN_MS ? r->timeout_ms / 3 :
	    ETCD_ATTEMPT_MIN_MS);
}

/* May this call go on to another member (not pinned, one to go to)? */
static int
etcd_req_repeatable(struct etcd_req *r)
{
	return (r->path->repeat && r->pin < 0 && r->e->neps > 1);
}

/* Until this attempt gives up: the deadline, or the share if sooner. */
static long long
etcd_req_attempt_ms(struct etcd_req *r)
{
	long long	left = etcd_ms_until(&r->deadline), ms;

	if (!etcd_req_repeatable(r))
		return (left);
	ms = etcd_req_share_ms(r);
	return (ms < left ? ms : left);
}

static void	etcd_req_retry(struct etcd_req *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* The deadline passed, an attempt's share of it, or a backoff ended. */
static void
etcd_req_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_req	*r = arg;
	struct etcd	*e = r->e;
	struct etcd_conn *c;
	char		*why;

	if (etcd_ms_until(&r->deadline) > 0 && r->conn == NULL) {
		etcd_req_dispatch(r);
		return;
	}
	if (etcd_ms_until(&r->deadline) > 0 && etcd_req_repeatable(r)) {
		/* This member kept a repeatable call its share: the next. */
		c = r->conn;
		r->conn = NULL;
		etcd_conn_reap(c);
		etcd_req_retry(r, 0, "no answer within %lld ms",
		    etcd_req_share_ms(r));
		return;
	}
	/*
	 * An endpoint that kept the call unanswered to its deadline (a
	 * member hung or cut off, not refusing) is not the next call's
	 * first choice either, or every call after it would hang there too.
	 */
	if (r->conn != NULL && r->pin < 0 && e->cur == r->ep)
		e->cur = (r->ep + 1) % e->neps;
	why = etcd_req_why(r);
	etcd_req_fail(r, r->conn != NULL ? "Timeout" : "Unavailable",
	    "etcd %s: no answer within %d ms (%s)", r->path->path,
	    r->timeout_ms, why);
	free(why);
}

/* Try the next endpoint now, or after a backoff once all were tried. */
static void
etcd_req_retry(struct etcd_req *r, int vague, const char *fmt, ...)
{
	struct etcd	*e = r->e;
	va_list		 ap;
	long long	 ms, left;

	/* A vague reason does not hide a precise one (a TLS alert). */
	if (!vague || r->why[r->ep] == NULL) {
		free(r->why[r->ep]);
		va_start(ap, fmt);
		xvasprintf(&r->why[r->ep], fmt, ap);
		va_end(ap);
	}
	log_debug("etcd: %s: %s: %s", r->path->path, e->eps[r->ep].url,
	    r->why[r->ep]);
	/* A call to one member (a quorum probe) says what that one did. */
	if (r->pin >= 0) {
		etcd_req_fail(r, "Unavailable", "etcd %s: %s: %s",
		    r->path->path, e->eps[r->ep].url, r->why[r->ep]);
		return;
	}

	if (e->cur == r->ep)
		e->cur = (r->ep + 1) % e->neps;
	r->ep = (r->ep + 1) % e->neps;
	left = etcd_ms_until(&r->deadline);
	if (++r->tries % e->neps != 0) {
		ms = 0;
	} else {
		ms = (long long)ETCD_BACKOFF_MIN_MS << (r->rounds < 5 ?
		    r->rounds : 5);
		if (ms > ETCD_BACKOFF_MAX_MS)
			ms = ETCD_BACKOFF_MAX_MS;
		r->rounds++;
	}
	etcd_timer_ms(r->timer, ms < left ? ms : left);
}

/* Send the call to its endpoint, on an idle connection or a new one. */
static void
etcd_req_dispatch(struct etcd_req *r)
{
	struct etcd	*e = r->e;
	struct etcd_ep	*ep = &e->eps[r->ep];
	struct etcd_conn *c;

	if ((c = TAILQ_FIRST(&ep->idle)) != NULL) {
		TAILQ_REMOVE(&ep->idle, c, entry);
		ep->nidle--;
		c->idle = 0;
	} else
		c = etcd_conn_new(e, ep);
	c->req = r;
	r->conn = c;
	etcd_timer_ms(r->timer, etcd_req_attempt_ms(r));
	if (etcd_conn_post(c, r->path->path, r->body, r->len, NULL) != 0) {
		r->conn = NULL;
		etcd_conn_reap(c);
		etcd_req_retry(r, 0, "cannot send the request");
	}
}

/* An answer, or a connection failure, for the call on c. */
static void
etcd_req_done(struct etcd_req *r, struct evhttp_request *http)
{
	struct etcd_conn	*c = r->conn;
	struct etcd_ep		*ep = c->ep;
	struct evbuffer		*in;
	json_t			*res;
	const char		*class, *why;
	char			*cause, *body;
	size_t			 len;
	int			 code;

	code = http != NULL ? evhttp_request_get_response_code(http) : 0;
	if (code == 0) {
		r->conn = NULL;
		etcd_conn_reap(c);
		/* A kept connection the server closed: one more go, fresh. */
		if (c->uses > 1 && c->failed && c->err == EVREQ_HTTP_EOF) {
			etcd_req_dispatch(r);
			return;
		}
		why = etcd_conn_strerror(c);
		etcd_req_retry(r, strncmp(why, "TLS: ", 5) != 0, "%s", why);
		return;
	}
	in = evhttp_request_get_input_buffer(http);
	len = evbuffer_get_length(in);
	body = (char *)evbuffer_pullup(in, -1);
	if (etcd_parse(r->path->path, body != NULL ? body : "", len, &res,
	    &class, &cause) != 0) {
		if (strcmp(class, "Unavailable") == 0) {
			/* This member cannot serve: another may. */
			r->conn = NULL;
			etcd_conn_release(c);
			etcd_req_retry(r, 0, "%s", cause);
			free(cause);
			return;
		}
		etcd_req_fail(r, class, "etcd %s: %s", r->path->path, cause);
		free(cause);
		return;
	}
	if (code != HTTP_OK) {
		json_decref(res);
		etcd_req_fail(r, "Protocol", "etcd %s: HTTP %d from %s",
		    r->path->path, code, ep->url);
		return;
	}
	r->conn = NULL;
	etcd_conn_release(c);
	etcd_req_finish(r, res, NULL, NULL);
	json_decref(res);
}

/* evhttp's completion callback: hand it to whoever owns c now. */
static void
etcd_conn_done(struct evhttp_request *http, void *arg)
{
	struct etcd_conn	*c = arg;

	if (c->req != NULL)
		etcd_req_done(c->req, http);
	else if (c->watch != NULL)
		etcd_watch_done(c->watch, http);
}

/* Queue a call: it starts now if a connection is free, else waits. */
int
etcd_submit(struct etcd *e, const char *path, json_t *body, int timeout_ms,
    etcd_cb cb, void *arg)
{
	return (etcd_submit_at(e, -1, path, body, timeout_ms, cb, arg));
}

int
etcd_submit_at(struct etcd *e, int pin, const char *path, json_t *body,
    int timeout_ms, etcd_cb cb, void *arg)
{
	const struct etcd_path	*p;
	struct etcd_req		*r, *w;
	int			 busy = 0;

	p = etcd_path_find(path);
	if (p == NULL || p->shape == ETCD_SHAPE_WATCH) {
		json_decref(body);
		return (-1);
	}
	r = xcalloc(1, sizeof *r);
	r->e = e;
	r->path = p;
	if ((r->body = json_dumps(body, JSON_COMPACT)) == NULL)
		fatalx("%s: cannot encode %s", __func__, path);
	json_decref(body);
	r->len = strlen(r->body);
	r->cb = cb;
	r->arg = arg;
	r->timeout_ms = timeout_ms > 0 ? timeout_ms : e->timeout_ms;
	etcd_ms_from_now(&r->deadline, r->timeout_ms);
	r->pin = pin >= 0 && pin < e->neps ? pin : -1;
	r->ep = r->pin >= 0 ? r->pin : e->cur;
	r->why = xcalloc(e->neps, sizeof *r->why);
	if ((r->timer = evtimer_new(e->base, etcd_req_timer_cb, r)) == NULL)
		fatalx("%s: evtimer_new", __func__);

	/* At most conns * 4 calls in flight per client; the rest wait. */
	TAILQ_FOREACH(w, &e->running, entry)
		busy++;
	/* A probe of one member never queues behind calls that retry. */
	if (busy >= e->conns * 4 && r->pin < 0) {
		TAILQ_INSERT_TAIL(&e->waiting, r, entry);
		return (0);
	}
	TAILQ_INSERT_TAIL(&e->running, r, entry);
	/* Never answer from inside the call: start from the loop. */
	etcd_timer_ms(r->timer, 0);
	return (0);
}

int
etcd_call(struct etcd *e, const char *path, json_t *body, etcd_cb cb,
    void *arg)
{
	return (etcd_submit(e, path, body, 0, cb, arg));
}

/* ---- the client ---- */

/* Parse "http://H:P" or "https://H:P" into ep; -1 with cause if bad. */
static int
etcd_ep_parse(struct etcd_ep *ep, const char *url, char **cause)
{
	struct evhttp_uri	*u;
	const char		*scheme, *host, *path;

	if ((u = evhttp_uri_parse(url)) == NULL) {
		xasprintf(cause, "etcd endpoint %s is not a URL", url);
		return (-1);
	}
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	path = evhttp_uri_get_path(u);
	if (scheme == NULL || (strcmp(scheme, "http") != 0 &&
	    strcmp(scheme, "https") != 0) || host == NULL || *host == '\0' ||
	    evhttp_uri_get_port(u) <= 0 || (path != NULL && *path != '\0' &&
	    strcmp(path, "/") != 0) || evhttp_uri_get_query(u) != NULL) {
		xasprintf(cause, "etcd endpoint %s is not http(s)://HOST:PORT",
		    url);
		evhttp_uri_free(u);
		return (-1);
	}
	ep->url = xstrdup(url);
	ep->host = xstrdup(host);
	ep->port = evhttp_uri_get_port(u);
	ep->tls = strcmp(scheme, "https") == 0;
	evhttp_uri_free(u);
	return (0);
}

static const char *
etcd_ssl_error(void)
{
	unsigned long	e = ERR_get_error();

	return (e != 0 ? ERR_error_string(e, NULL) : "unknown error");
}

/* The TLS context: verify the server by cacert, show cert/key if set. */
static int
etcd_ssl_init(struct etcd *e, const struct etcd_config *cf, char **cause)
{
	if ((e->ssl = SSL_CTX_new(TLS_client_method())) == NULL) {
		xasprintf(cause, "etcd: cannot make a TLS context: %s",
		    etcd_ssl_error());
		return (-1);
	}
	SSL_CTX_set_min_proto_version(e->ssl, TLS1_2_VERSION);
	SSL_CTX_set_verify(e->ssl, SSL_VERIFY_PEER, NULL);
	if (cf->cacert != NULL) {
		if (SSL_CTX_load_verify_locations(e->ssl, cf->cacert,
		    NULL) != 1) {
			xasprintf(cause, "etcd: cannot load CA file %s: %s",
			    cf->cacert, etcd_ssl_error());
			return (-1);
		}
	} else if (SSL_CTX_set_default_verify_paths(e->ssl) != 1) {
		xasprintf(cause, "etcd: cannot load the system CAs: %s",
		    etcd_ssl_error());
		return (-1);
	}
	if ((cf->cert == NULL) != (cf->key == NULL)) {
		xasprintf(cause, "etcd: a client certificate needs its key "
		    "and a key its certificate");
		return (-1);
	}
	if (cf->cert == NULL)
		return (0);
	if (SSL_CTX_use_certificate_chain_file(e->ssl, cf->cert) != 1) {
		xasprintf(cause, "etcd: cannot load certificate %s: %s",
		    cf->cert, etcd_ssl_error());
		return (-1);
	}
	if (SSL_CTX_use_PrivateKey_file(e->ssl, cf->key,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(e->ssl) != 1) {
		xasprintf(cause, "etcd: cannot use key %s: %s", cf->key,
		    etcd_ssl_error());
		return (-1);
	}
	return (0);
}

struct etcd *
etcd_create(struct event_base *base, const struct etcd_config *cf,
    char **cause)
{
	struct etcd	*e;
	char		*list, *s, *url;
	struct in6_addr	 a6;
	struct in_addr	 a4;
	int		 i, tls = 0, names = 0;

	e = xcalloc(1, sizeof *e);
	e->base = base;
	e->timeout_ms = cf->timeout_ms > 0 ? cf->timeout_ms : ETCD_TIMEOUT_MS;
	e->conns = cf->conns > 0 ? cf->conns : ETCD_CONNS;
	TAILQ_INIT(&e->waiting);
	TAILQ_INIT(&e->running);
	TAILQ_INIT(&e->watches);
	TAILQ_INIT(&e->keepers);

	if (cf->endpoints == NULL || *cf->endpoints == '\0') {
		xasprintf(cause, "etcd: no endpoints");
		goto fail;
	}
	s = list = xstrdup(cf->endpoints);
	while ((url = strsep(&s, ",")) != NULL) {
		if (*url == '\0')
			continue;
		e->eps = xrealloc(e->eps, (e->neps + 1) * sizeof *e->eps);
		memset(&e->eps[e->neps], 0, sizeof e->eps[0]);
		if (etcd_ep_parse(&e->eps[e->neps], url, cause) != 0) {
			free(list);
			goto fail;
		}
		tls |= e->eps[e->neps].tls;
		if (inet_pton(AF_INET, e->eps[e->neps].host, &a4) != 1 &&
		    inet_pton(AF_INET6, e->eps[e->neps].host, &a6) != 1)
			names = 1;
		e->neps++;
	}
	free(list);
	/* Only now: a TAILQ head points into itself, realloc moves it. */
	for (i = 0; i < e->neps; i++)
		TAILQ_INIT(&e->eps[i].idle);
	if (e->neps == 0) {
		xasprintf(cause, "etcd: no endpoints in \"%s\"", cf->endpoints);
		goto fail;
	}
	if (!tls && (cf->cacert != NULL || cf->cert != NULL)) {
		xasprintf(cause, "etcd: TLS files given but no https endpoint");
		goto fail;
	}
	if (tls && etcd_ssl_init(e, cf, cause) != 0)
		goto fail;
	/* Names resolve without blocking the loop. */
	if (names && (e->dns = evdns_base_new(base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL) {
		xasprintf(cause, "etcd: cannot set up name resolution");
		goto fail;
	}
	return (e);

fail:
	for (i = 0; i < e->neps; i++) {
		free(e->eps[i].url);
		free(e->eps[i].host);
	}
	free(e->eps);
	if (e->ssl != NULL)
		SSL_CTX_free(e->ssl);
	free(e);
	return (NULL);
}

const char *
etcd_endpoint(const struct etcd *e)
{
	return (e->eps[e->cur].url);
}

void
etcd_free(struct etcd *e)
{
	struct etcd_req		*r;
	struct etcd_conn	*c;
	int			 i;

	if (e == NULL)
		return;
	if (!TAILQ_EMPTY(&e->watches))
		fatalx("%s: a watch is still open", __func__);
	/* Waiting calls go first, so finishing one does not start them. */
	while ((r = TAILQ_FIRST(&e->waiting)) != NULL) {
		TAILQ_REMOVE(&e->waiting, r, entry);
		if (r->cb != NULL)
			r->cb(r->arg, NULL, "Cancelled",
			    "the etcd client was freed");
		etcd_req_free(r);
	}
	while ((r = TAILQ_FIRST(&e->running)) != NULL)
		etcd_req_fail(r, "Cancelled", "the etcd client was freed");
	if (!TAILQ_EMPTY(&e->keepers))
		fatalx("%s: a lease keeper is still running", __func__);
	for (i = 0; i < e->neps; i++) {
		while ((c = TAILQ_FIRST(&e->eps[i].idle)) != NULL) {
			TAILQ_REMOVE(&e->eps[i].idle, c, entry);
			c->idle = 0;
			etcd_conn_reap(c);
		}
		free(e->eps[i].url);
		free(e->eps[i].host);
	}
	free(e->eps);
	if (e->dns != NULL)
		evdns_base_free(e->dns, 0);
	if (e->ssl != NULL)
		SSL_CTX_free(e->ssl);
	free(e);
}
