/*
 * The HTTPS server: libevent's evhttp over OpenSSL bufferevents. Every
 * request goes through one dispatcher that finds its route in the table,
 * checks the session and the CSRF rules the route asks for, parses a JSON
 * body, and hands an http_call to the route's handler. Limits keep a slow
 * or hostile client from holding much: connections per address and in all
 * (connlimit.c), the size of headers and bodies, and an absolute deadline
 * for each request to arrive whole, however slowly its bytes trickle in.
 */
#include <sys/socket.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "broker.h"
#include "log.h"
#include "proto.h"
#include "xmalloc.h"

#define HTTP_MAX_HEADERS	(16 * 1024)
#define HTTP_TIMEOUT		60
/*
 * From accept (or the end of the last answer on a kept-alive connection)
 * to a whole request, TLS handshake included.
 */
#define HTTP_REQUEST_DEADLINE	10

/*
 * One client connection as the limits see it. evhttp (libevent 2.1) says
 * nothing when it accepts or drops a connection, but each one has its own
 * SSL: this rides on it as ex data, and OpenSSL frees it with the SSL.
 */
struct http_conn {
	struct bufferevent		*bev;
	char				 peer[64];	/* "" until admitted */
	struct event			*admit;
	struct event			*deadline;
	TAILQ_ENTRY(http_conn)		 entry;
};

static struct evhttp		*http;
static SSL_CTX			*http_ssl_ctx;
static struct connlimit		*http_limit;
static TAILQ_HEAD(, http_conn)	 http_conns = TAILQ_HEAD_INITIALIZER(http_conns);
static int			 http_ssl_idx = -1;

static void	http_conn_admit(evutil_socket_t, short, void *);
static void	http_conn_deadline(evutil_socket_t, short, void *);

/*
 * Each connection gets its own TLS bufferevent, accepting, and an entry
 * for the limits. evhttp gives it its socket right after this returns;
 * http_conn_admit, at once on the loop, checks the limits with it.
 */
static struct bufferevent *
http_bevcb(struct event_base *base, void *arg)
{
	struct bufferevent	*bev;
	struct http_conn	*hc;
	struct timeval		 now = { 0, 0 };
	SSL			*ssl;

	if ((ssl = SSL_new(http_ssl_ctx)) == NULL) {
		log_warnx("SSL_new failed: refusing a connection");
		return (NULL);
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return (NULL);
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	hc = xcalloc(1, sizeof *hc);
	hc->bev = bev;
	hc->admit = evtimer_new(base, http_conn_admit, hc);
	hc->deadline = evtimer_new(base, http_conn_deadline, hc);
	TAILQ_INSERT_TAIL(&http_conns, hc, entry);
	SSL_set_ex_data(ssl, http_ssl_idx, hc);
	evtimer_add(hc->admit, &now);
	return (bev);
}

/* The connection's SSL is being freed, so is the connection: forget it. */
static void
http_conn_freed(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	struct http_conn	*hc = ptr;

	if (hc == NULL)
		return;
	TAILQ_REMOVE(&http_conns, hc, entry);
	if (hc->peer[0] != '\0' && http_limit != NULL)
		connlimit_del(http_limit, hc->peer);
	if (hc->admit != NULL)
		event_free(hc->admit);
	if (hc->deadline != NULL)
		event_free(hc->deadline);
	free(hc);
}

/* Make evhttp drop a connection: its socket fails under it. */
static void
http_conn_cut(struct http_conn *hc)
{
	evutil_socket_t	fd = bufferevent_getfd(hc->bev);

	if (fd != -1)
		shutdown(fd, SHUT_RDWR);
}

/* A new connection, its socket set: within the limits, or cut. */
static void
http_conn_admit(evutil_socket_t fd, short events, void *arg)
{
	struct http_conn	*hc = arg;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof ss;
	struct timeval		 tv = { HTTP_REQUEST_DEADLINE, 0 };
	char			 addr[64], *cause = NULL;

	fd = bufferevent_getfd(hc->bev);
	if (fd == -1 || getpeername(fd, (struct sockaddr *)&ss, &sslen) != 0 ||
	    httputil_addr((struct sockaddr *)&ss, addr, sizeof addr,
	    NULL) != 0) {
		http_conn_cut(hc);
		return;
	}
	if (connlimit_add(http_limit, addr, &cause) != 0) {
		log_warnx("portal: %s refused: %s", addr, cause);
		free(cause);
		http_conn_cut(hc);
		return;
	}
	strlcpy(hc->peer, addr, sizeof hc->peer);
	evtimer_add(hc->deadline, &tv);
}

/* A request did not arrive whole in time: drop its connection. */
static void
http_conn_deadline(evutil_socket_t fd, short events, void *arg)
{
	struct http_conn	*hc = arg;

	log_warnx("%s sent no complete request within %d s: connection "
	    "closed", hc->peer, HTTP_REQUEST_DEADLINE);
	http_conn_cut(hc);
}

/* The limits' entry of the connection a request came on, if any. */
static struct http_conn *
http_conn_of(struct evhttp_request *req)
{
	struct evhttp_connection	*evcon;
	struct bufferevent		*bev;
	SSL				*ssl;

	if ((evcon = evhttp_request_get_connection(req)) == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL ||
	    (ssl = bufferevent_openssl_get_ssl(bev)) == NULL)
		return (NULL);
	return (SSL_get_ex_data(ssl, http_ssl_idx));
}

static void
http_call_free(struct http_call *call)
{
	json_decref(call->body);
	free(call->login);
	explicit_bzero(call->sid, sizeof call->sid);
	free(call);
}

void
http_header(struct http_call *call, const char *name, const char *value)
{
	evhttp_add_header(evhttp_request_get_output_headers(call->req), name,
	    value);
}

/* Headers every answer carries: no framing, no sniffing, no caching. */
static void
http_common_headers(struct evhttp_request *req)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Security-Policy", "default-src 'self'; "
	    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
	    "form-action 'self'");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	if (evhttp_find_header(h, "Cache-Control") == NULL)
		evhttp_add_header(h, "Cache-Control", "no-store");
}

static const char *
http_reason(int code)
{
	switch (code) {
	case 200: return ("OK");
	case 400: return ("Bad Request");
	case 401: return ("Unauthorized");
	case 403: return ("Forbidden");
	case 404: return ("Not Found");
	case 405: return ("Method Not Allowed");
	case 409: return ("Conflict");
	case 413: return ("Payload Too Large");
	case 415: return ("Unsupported Media Type");
	case 429: return ("Too Many Requests");
	case 500: return ("Internal Server Error");
	case 501: return ("Not Implemented");
	case 502: return ("Bad Gateway");
	case 503: return ("Service Unavailable");
	case 504: return ("Gateway Timeout");
	}
	return (NULL);
}

/* Send any body and free the call. */
void
http_reply_data(struct http_call *call, int code, const char *type,
    const void *data, size_t len)
{
	struct evbuffer		*buf = evbuffer_new();
	struct http_conn	*hc;
	struct timeval		 tv = { HTTP_REQUEST_DEADLINE, 0 };

	/* The answer's flush and the next request share a new deadline. */
	if ((hc = http_conn_of(call->req)) != NULL)
		evtimer_add(hc->deadline, &tv);
	http_common_headers(call->req);
	evhttp_add_header(evhttp_request_get_output_headers(call->req),
	    "Content-Type", type);
	evbuffer_add(buf, data, len);
	evhttp_send_reply(call->req, code, http_reason(code), buf);
	evbuffer_free(buf);
	log_debug("%s %s %s -> %d", call->peer, call->method, call->path,
	    code);
	http_call_free(call);
}

/* Send a JSON value (stolen) and free the call. */
void
http_reply_json(struct http_call *call, int code, json_t *j)
{
	char	*text = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (text == NULL) {
		text = xstrdup("{\"error\":\"internal error\"}");
		code = 500;
	}
	http_reply_data(call, code, "application/json", text, strlen(text));
	free(text);
}

/* {"error": "..."}: a sentence a person can act on. */
void
http_reply_error(struct http_call *call, int code, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	va_end(ap);
	http_reply_json(call, code, json_pack("{s:s}", "error",
	    msg != NULL ? msg : "internal error"));
	free(msg);
}

/* qmpd's error classes as HTTP statuses; anything else is a 500. */
static const struct {
	const char	*class;
	int		 code;
} http_qmpd_codes[] = {
	{ ERR_AUTH, 401 },
	{ ERR_BUSY, 503 },
	{ ERR_STATE, 409 },
	{ ERR_ARG, 400 },
	{ ERR_LOCKED, 429 },
	{ ERR_NOTFOUND, 404 },
	{ ERR_DENIED, 403 },
	{ ERR_QEMU, 502 },
	{ ERR_TIMEOUT, 504 },
	{ QMPC_ERR_DOWN, 503 },
};

/* Answer with qmpd's error, as the status its class maps to. */
void
http_reply_qmpd(struct http_call *call, const char *errclass,
    const char *errdesc)
{
	size_t	i;
	int	code = 500;

	for (i = 0; i < nitems(http_qmpd_codes); i++) {
		if (strcmp(http_qmpd_codes[i].class, errclass) == 0) {
			code = http_qmpd_codes[i].code;
			break;
		}
	}
	if (code == 403 || code == 404 || code >= 500)
		log_warnx("%s%s%s%s %s %s %s: %s: %s",
		    call->login != NULL ? "user " : "",
		    call->login != NULL ? call->login : "",
		    call->login != NULL ? " from " : "", call->peer,
		    call->method, call->path,
		    code >= 500 ? "failed" : "refused", errclass, errdesc);
	http_reply_json(call, code, json_pack("{s:s,s:s}", "error", errdesc,
	    "class", errclass));
}

/* A request the portal makes by itself, not on the user's behalf. */
static int
http_background(struct evkeyvalq *in)
{
	const char	*v = evhttp_find_header(in, HTTP_BACKGROUND_HEADER);

	return (v != NULL && strcmp(v, "1") == 0);
}

/*
 * A POST must carry the custom header (a cross-site form cannot) and, if
 * the browser names an origin, it must be this very host.
 */
static int
http_csrf_ok(struct http_call *call, struct evkeyvalq *in)
{
	const char	*v, *origin;
	char		 want[300];

	if ((v = evhttp_find_header(in, HTTP_CSRF_HEADER)) == NULL ||
	    strcmp(v, "1") != 0)
		return (0);
	if ((origin = evhttp_find_header(in, "Origin")) == NULL)
		return (1);
	v = evhttp_find_header(in, "Host");
	snprintf(want, sizeof want, "https://%s", v != NULL ? v : "");
	return (strcmp(origin, want) == 0);
}

/* The body as a JSON object; replies and returns -1 if it is not one. */
static int
http_body(struct http_call *call, struct evkeyvalq *in)
{
	struct evbuffer	*buf = evhttp_request_get_input_buffer(call->req);
	const char	*type = evhttp_find_header(in, "Content-Type");
	json_error_t	 jerr;
	size_t		 len = evbuffer_get_length(buf);

	if (type == NULL || strncasecmp(type, "application/json", 16) != 0) {
		http_reply_error(call, 415, "send the request as JSON "
		    "(Content-Type: application/json)");
		return (-1);
	}
	if (len > HTTP_MAX_BODY) {
		http_reply_error(call, 413, "request body over %d bytes",
		    HTTP_MAX_BODY);
		return (-1);
	}
	call->body = json_loadb((const char *)evbuffer_pullup(buf, len), len,
	    JSON_REJECT_DUPLICATES, &jerr);
	if (call->body == NULL || !json_is_object(call->body)) {
		http_reply_error(call, 400, "the request body is not a JSON "
		    "object%s%s", call->body == NULL ? ": " : "",
		    call->body == NULL ? jerr.text : "");
		return (-1);
	}
	return (0);
}

/* Fill in who asked and by which name they reached us. */
static void
http_call_client(struct http_call *call, struct evkeyvalq *in)
{
	struct evhttp_connection	*evcon;
	char				*addr = NULL;
	ev_uint16_t			 port = 0;
	const char			*host;

	evcon = evhttp_request_get_connection(call->req);
	if (evcon != NULL)
		evhttp_connection_get_peer(evcon, &addr, &port);
	snprintf(call->peer, sizeof call->peer, "%s", addr != NULL ? addr :
	    "?");
	if (broker->public_host != NULL)
		strlcpy(call->host, broker->public_host, sizeof call->host);
	else if ((host = evhttp_find_header(in, "Host")) == NULL ||
	    httputil_hostname(host, call->host, sizeof call->host) != 0)
		strlcpy(call->host, "localhost", sizeof call->host);
}

/* Find the route, enforce its rules, and run its handler. */
static void
http_dispatch(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	const struct http_route	*r, *found = NULL;
	struct http_call	*call;
	struct portal_session	*s;
	struct http_conn	*hc;
	const char		*path, *method, *cookie;
	char			 sid[128];
	size_t			 i;
	int			 path_known = 0;

	/* The request is in, whole: its deadline is met. */
	if ((hc = http_conn_of(req)) != NULL)
		evtimer_del(hc->deadline);
	call = xcalloc(1, sizeof *call);
	call->req = req;
	call->method = "?";
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || *path == '\0')
		path = "/";
	strlcpy(call->path, path, sizeof call->path);
	http_call_client(call, in);
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
	case EVHTTP_REQ_HEAD:
		method = "GET";
		break;
	case EVHTTP_REQ_POST:
		method = "POST";
		break;
	default:
		http_reply_error(call, 405, "only GET and POST are served");
		return;
	}
	call->method = method;
	if (strlen(path) >= sizeof call->path) {
		http_reply_error(call, 404, "no such page");
		return;
	}
	for (i = 0; i < nroutes; i++) {
		r = &routes[i];
		if (!httputil_match(r->pattern, path, call->arg,
		    sizeof call->arg))
			continue;
		path_known = 1;
		if (strcmp(r->method, method) == 0) {
			found = r;
			break;
		}
	}
	if (found == NULL) {
		if (path_known)
			http_reply_error(call, 405, "%s is not allowed on %s",
			    method, path);
		else
			http_reply_error(call, 404, "no such page: %s", path);
		return;
	}
	call->route = found;

	if ((found->flags & ROUTE_CSRF) && !http_csrf_ok(call, in)) {
		log_warnx("%s POST %s without the %s header or from another "
		    "origin: refused", call->peer, path, HTTP_CSRF_HEADER);
		http_reply_error(call, 403, "request refused: it lacks the "
		    "%s header or comes from another site", HTTP_CSRF_HEADER);
		return;
	}
	if ((cookie = evhttp_find_header(in, "Cookie")) != NULL &&
	    httputil_cookie(cookie, HTTP_COOKIE, sid, sizeof sid) == 0 &&
	    (s = portal_session_find(sid, !http_background(in))) != NULL) {
		call->login = xstrdup(s->login);
		strlcpy(call->sid, s->id, sizeof call->sid);
	}
	explicit_bzero(sid, sizeof sid);
	if ((found->flags & ROUTE_SESSION) && call->login == NULL) {
		http_reply_error(call, 401, "not logged in, or the session "
		    "has ended: log in again");
		return;
	}
	if ((found->flags & ROUTE_BODY) && http_body(call, in) != 0)
		return;
	found->handler(call);
}

int
http_start(struct event_base *base, int fd, SSL_CTX *ctx, char **cause)
{
	http_ssl_ctx = ctx;
	if (http_ssl_idx == -1 && (http_ssl_idx = SSL_get_ex_new_index(0,
	    NULL, NULL, NULL, http_conn_freed)) == -1) {
		xasprintf(cause, "SSL_get_ex_new_index failed");
		return (-1);
	}
	http_limit = connlimit_create(broker->max_conns,
	    broker->max_conns_addr);
	if ((http = evhttp_new(base)) == NULL) {
		xasprintf(cause, "evhttp_new failed");
		return (-1);
	}
	evhttp_set_bevcb(http, http_bevcb, NULL);
	evhttp_set_max_headers_size(http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(http, HTTP_READ_MAX);
	evhttp_set_timeout(http, HTTP_TIMEOUT);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST);
	evhttp_set_gencb(http, http_dispatch, NULL);
	if (evhttp_accept_socket_with_handle(http, fd) == NULL) {
		xasprintf(cause, "evhttp cannot accept on the HTTPS socket");
		evhttp_free(http);
		http = NULL;
		return (-1);
	}
	return (0);
}

void
http_stop(void)
{
	struct http_conn	*hc;

	if (http != NULL)
		evhttp_free(http);
	http = NULL;
	/* What evhttp left to free later goes without touching the loop. */
	TAILQ_FOREACH(hc, &http_conns, entry) {
		event_free(hc->admit);
		event_free(hc->deadline);
		hc->admit = hc->deadline = NULL;
	}
	connlimit_free(http_limit);
	http_limit = NULL;
}
