/*
 * The HTTPS server: libevent's evhttp over OpenSSL bufferevents. Every
 * request goes through one dispatcher that finds its route in the table,
 * checks the session and the CSRF rules the route asks for, parses a JSON
 * body, and hands an http_call to the route's handler. Limits on headers,
 * bodies and time keep a slow or hostile client from holding much.
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

static struct evhttp	*http;
static SSL_CTX		*http_ssl_ctx;

/* Each connection gets its own TLS bufferevent, accepting. */
static struct bufferevent *
http_bevcb(struct event_base *base, void *arg)
{
	struct bufferevent	*bev;
	SSL			*ssl;

	if ((ssl = SSL_new(http_ssl_ctx)) == NULL) {
		log_warnx("SSL_new failed: refusing a connection");
		return (NULL);
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev != NULL)
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return (bev);
}

static void
http_call_free(struct http_call *call)
{
	json_decref(call->body);
	free(call->login);
	explicit_bzero(call->sid, sizeof call->sid);
	free(call);
}

/* Free a call that gets no answer: its connection was taken over. */
void
http_call_drop(struct http_call *call)
{
	http_call_free(call);
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
	struct evbuffer	*buf = evbuffer_new();

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

/*
 * For a route whose body is optional: none is fine (0, body NULL), one
 * must be a JSON object as http_body says; replies and returns -1 if not.
 */
int
http_call_body(struct http_call *call)
{
	struct evhttp_request	*req = call->req;

	if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) == 0)
		return (0);
	return (http_body(call, evhttp_request_get_input_headers(req)));
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
	struct session		*s;
	const char		*path, *method, *cookie;
	char			 sid[128];
	size_t			 i;
	int			 path_known = 0;

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
	    (s = session_find(sid, !http_background(in))) != NULL) {
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
	console_ws_stop();
	if (http != NULL)
		evhttp_free(http);
	http = NULL;
}
