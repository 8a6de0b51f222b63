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
#include "log.h"
#include "xmalloc.h"

#define ETCD_TIMEOUT_MS		5000
#define ETCD_CONNS		4
#define ETCD_BACKOFF_MIN_MS	50
#define ETCD_BACKOFF_MAX_MS	1000
#define ETCD_MAX_BODY		(64 * 1024 * 1024)
/* A quiet watch stream is reconnected (and resumed) after this long. */
#define ETCD_WATCH_IDLE_S	60

/* What a response of each path looks like, for the parser's defaults. */
enum etcd_shape {
	ETCD_SHAPE_NONE,
	ETCD_SHAPE_RANGE,
	ETCD_SHAPE_DELETE,
	ETCD_SHAPE_TXN,
	ETCD_SHAPE_LEASE,
	ETCD_SHAPE_WATCH,
	ETCD_SHAPE_KV,
	ETCD_SHAPE_EVENT,
	ETCD_SHAPE_HEADER
};

struct etcd_path {
	const char	*path;
	enum etcd_shape	 shape;
	int		 stream;	/* answers as {"result": ...} */
};

/* Keep this list sorted: looked up with bsearch. */
static const struct etcd_path etcd_paths[] = {
	{ "/v3/kv/deleterange", ETCD_SHAPE_DELETE, 0 },
	{ "/v3/kv/put", ETCD_SHAPE_NONE, 0 },
	{ "/v3/kv/range", ETCD_SHAPE_RANGE, 0 },
	{ "/v3/kv/txn", ETCD_SHAPE_TXN, 0 },
	{ "/v3/lease/grant", ETCD_SHAPE_LEASE, 0 },
	{ "/v3/lease/keepalive", ETCD_SHAPE_LEASE, 1 },
	{ "/v3/lease/revoke", ETCD_SHAPE_NONE, 0 },
	{ "/v3/watch", ETCD_SHAPE_WATCH, 1 },
};

/* Fields the gateway sends as strings (protobuf int64): keep sorted. */
static const char *etcd_int64s[] = {
	"ID",
	"TTL",
	"cluster_id",
	"compact_revision",
	"count",
	"create_revision",
	"deleted",
	"grantedTTL",
	"lease",
	"member_id",
	"mod_revision",
	"raft_term",
	"revision",
	"version",
	"watch_id",
};

/* Which nested objects have which shape, by their member name. */
static const struct {
	const char	*name;
	int		 element;	/* of an array so named */
	enum etcd_shape	 shape;
} etcd_nested[] = {
	{ "events",			1, ETCD_SHAPE_EVENT },
	{ "header",			0, ETCD_SHAPE_HEADER },
	{ "kv",				0, ETCD_SHAPE_KV },
	{ "kvs",			1, ETCD_SHAPE_KV },
	{ "prev_kv",			0, ETCD_SHAPE_KV },
	{ "prev_kvs",			1, ETCD_SHAPE_KV },
	{ "response_delete_range",	0, ETCD_SHAPE_DELETE },
	{ "response_range",		0, ETCD_SHAPE_RANGE },
	{ "response_txn",		0, ETCD_SHAPE_TXN },
};

/* What the gateway leaves out when zero, false or empty. */
enum etcd_dflt { ETCD_D_INT, ETCD_D_FALSE, ETCD_D_ARRAY, ETCD_D_STR };
static const struct {
	enum etcd_shape	 shape;
	const char	*field;
	enum etcd_dflt	 type;
	const char	*str;
} etcd_defaults[] = {
	{ ETCD_SHAPE_RANGE, "kvs", ETCD_D_ARRAY, NULL },
	{ ETCD_SHAPE_RANGE, "count", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_RANGE, "more", ETCD_D_FALSE, NULL },
	{ ETCD_SHAPE_DELETE, "deleted", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_TXN, "succeeded", ETCD_D_FALSE, NULL },
	{ ETCD_SHAPE_TXN, "responses", ETCD_D_ARRAY, NULL },
	{ ETCD_SHAPE_LEASE, "ID", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_LEASE, "TTL", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_WATCH, "events", ETCD_D_ARRAY, NULL },
	{ ETCD_SHAPE_WATCH, "created", ETCD_D_FALSE, NULL },
	{ ETCD_SHAPE_WATCH, "canceled", ETCD_D_FALSE, NULL },
	{ ETCD_SHAPE_WATCH, "compact_revision", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_KV, "key", ETCD_D_STR, "" },
	{ ETCD_SHAPE_KV, "value", ETCD_D_STR, "" },
	{ ETCD_SHAPE_KV, "create_revision", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_KV, "mod_revision", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_KV, "version", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_KV, "lease", ETCD_D_INT, NULL },
	{ ETCD_SHAPE_EVENT, "type", ETCD_D_STR, "PUT" },
	{ ETCD_SHAPE_HEADER, "revision", ETCD_D_INT, NULL },
};

/* gRPC status codes, as etcd's errors carry them. */
static const char *etcd_grpc_classes[] = {
	"OK", "Cancelled", "Unknown", "InvalidArgument", "Timeout",
	"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
	"FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
	"Internal", "Unavailable", "DataLoss", "Unauthenticated"
};

struct etcd_conn;

struct etcd_ep {
	char			*url;
	char			*host;
	int			 port;
	int			 tls;
	TAILQ_HEAD(, etcd_conn)	 idle;
	int			 nidle;
};

struct etcd_req {
	struct etcd		*e;
	const struct etcd_path	*path;
	char			*body;
	size_t			 len;
	etcd_cb			 cb;
	void			*arg;
	int			 timeout_ms;
	struct timespec		 deadline;
	int			 ep;		/* of this attempt */
	int			 tries;
	int			 rounds;
	struct etcd_conn	*conn;		/* in flight on it */
	struct event		*timer;		/* deadline/backoff */
	char			**why;		/* per endpoint */
	TAILQ_ENTRY(etcd_req)	 entry;
};
TAILQ_HEAD(etcd_reqs, etcd_req);

/* One evhttp connection; its callbacks find their owner through it. */
struct etcd_conn {
	struct etcd		*e;
	struct etcd_ep		*ep;
	struct evhttp_connection *evcon;
	struct etcd_req		*req;		/* a call on it */
	struct etcd_watch	*watch;		/* or a watch stream */
	enum evhttp_request_error err;
	int			 failed;	/* err is set */
	int			 uses;
	int			 idle;		/* in its endpoint's pool */
	char			 errbuf[128];
	TAILQ_ENTRY(etcd_conn)	 entry;
};

struct etcd_watch {
	struct etcd		*e;
	char			*key;
	char			*range_end;	/* or NULL */
	size_t			 keylen, endlen;
	int			 flags;
	etcd_cb			 cb;
	void			*arg;
	int64_t			 rev;		/* resume (0: now) */
	struct etcd_conn	*conn;
	struct evbuffer		*buf;		/* a partial line */
	struct event		*timer;		/* reconnect */
	int			 created;	/* the stream said so */
	int			 rounds;
	int			 ended;
	TAILQ_ENTRY(etcd_watch)	 entry;
};

struct etcd_keeper {
	struct etcd		*e;
	int			 ttl;
	int64_t			 id;
	etcd_cb			 cb;
	void			*arg;
	struct event		*timer;
	struct timespec		 last_ok;	/* sent, and it held */
	struct timespec		 sent;
	int			 inflight;
	int			 dead;		/* lost */
	int			 freed;
	TAILQ_ENTRY(etcd_keeper) entry;
};

struct etcd {
	struct event_base	*base;
	struct evdns_base	*dns;
	SSL_CTX			*ssl;
	struct etcd_ep		*eps;
	int			 neps;
	int			 cur;
	int			 timeout_ms;
	int			 conns;
	struct etcd_reqs	 waiting;	/* for a connection */
	struct etcd_reqs	 running;	/* in flight or backing off */
	TAILQ_HEAD(, etcd_watch) watches;
	TAILQ_HEAD(, etcd_keeper) keepers;
};

static void	etcd_req_dispatch(struct etcd_req *);
static void	etcd_watch_connect(struct etcd_watch *);

/* Milliseconds from now until ts (negative once past). */
static long long
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

static void
etcd_timer_ms(struct event *ev, long long ms)
{
	struct timeval	tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

/* ---- base64 ---- */

static const char etcd_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
etcd_base64_encode(const void *data, size_t len)
{
	const unsigned char	*p = data;
	char			*out, *o;
	size_t			 i;
	unsigned int		 v;

	out = o = xmalloc(4 * ((len + 2) / 3) + 1);
	for (i = 0; i + 2 < len; i += 3) {
		v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
		*o++ = etcd_b64[v >> 18];
		*o++ = etcd_b64[(v >> 12) & 63];
		*o++ = etcd_b64[(v >> 6) & 63];
		*o++ = etcd_b64[v & 63];
	}
	if (i < len) {
		v = p[i] << 16;
		if (i + 1 < len)
			v |= p[i + 1] << 8;
		*o++ = etcd_b64[v >> 18];
		*o++ = etcd_b64[(v >> 12) & 63];
		*o++ = i + 1 < len ? etcd_b64[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return (out);
}

static int
etcd_base64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return (c - 'A');
	if (c >= 'a' && c <= 'z')
		return (c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (c - '0' + 52);
	if (c == '+' || c == '-')
		return (62);
	if (c == '/' || c == '_')
		return (63);
	return (-1);
}

char *
etcd_base64_decode(const char *s, size_t len, size_t *outlen)
{
	unsigned char	*out;
	size_t		 i, o = 0, n = 0;
	unsigned int	 acc = 0;
	int		 v;

	while (len > 0 && s[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return (NULL);
	out = xmalloc(len * 3 / 4 + 1);
	for (i = 0; i < len; i++) {
		if ((v = etcd_base64_value((unsigned char)s[i])) == -1) {
			free(out);
			return (NULL);
		}
		acc = (acc << 6) | v;
		if (++n == 4) {
			out[o++] = acc >> 16;
			out[o++] = acc >> 8;
			out[o++] = acc;
			acc = 0;
			n = 0;
		}
	}
	if (n == 2)
		out[o++] = acc >> 4;
	else if (n == 3) {
		out[o++] = acc >> 10;
		out[o++] = acc >> 2;
	}
	out[o] = '\0';
	if (outlen != NULL)
		*outlen = o;
	return ((char *)out);
}

static json_t *
etcd_b64_json(const char *s, size_t len)
{
	char	*b;
	json_t	*v;

	b = etcd_base64_encode(s, len);
	v = json_string(b);
	free(b);
	return (v);
}

/* ---- the pure parser ---- */

static int
etcd_path_cmp(const void *key, const void *elem)
{
	return (strcmp(key, ((const struct etcd_path *)elem)->path));
}

static const struct etcd_path *
etcd_path_find(const char *path)
{
	return (bsearch(path, etcd_paths, nitems(etcd_paths),
	    sizeof etcd_paths[0], etcd_path_cmp));
}

static int
etcd_str_cmp(const void *key, const void *elem)
{
	return (strcmp(key, *(const char *const *)elem));
}

/*
 * Fill in what the gateway leaves out for an object of this shape, and
 * check what it did send has the type it promises; -1 if not.
 */
static int
etcd_fill(json_t *obj, enum etcd_shape shape)
{
	size_t	 i;
	json_t	*v;
	int	 ok;

	for (i = 0; i < nitems(etcd_defaults); i++) {
		if (etcd_defaults[i].shape != shape)
			continue;
		v = json_object_get(obj, etcd_defaults[i].field);
		if (v != NULL) {
			switch (etcd_defaults[i].type) {
			case ETCD_D_INT:
				ok = json_is_integer(v);
				break;
			case ETCD_D_FALSE:
				ok = json_is_boolean(v);
				break;
			case ETCD_D_ARRAY:
				ok = json_is_array(v);
				break;
			default:
				ok = json_is_string(v);
				break;
			}
			if (!ok)
				return (-1);
			continue;
		}
		switch (etcd_defaults[i].type) {
		case ETCD_D_INT:
			v = json_integer(0);
			break;
		case ETCD_D_FALSE:
			v = json_false();
			break;
		case ETCD_D_ARRAY:
			v = json_array();
			break;
		default:
			v = json_string(etcd_defaults[i].str);
			break;
		}
		json_object_set_new(obj, etcd_defaults[i].field, v);
	}
	return (0);
}

/* A kv's key or value from base64 to text; -1 if not base64 or UTF-8. */
static int
etcd_decode_text(json_t *obj, const char *field)
{
	json_t		*v, *s;
	char		*d;
	size_t		 len;

	v = json_object_get(obj, field);
	if (v == NULL)
		return (0);
	if (!json_is_string(v))
		return (-1);
	d = etcd_base64_decode(json_string_value(v), json_string_length(v),
	    &len);
	if (d == NULL)
		return (-1);
	s = json_stringn(d, len);
	free(d);
	if (s == NULL)
		return (-1);
	json_object_set_new(obj, field, s);
	return (0);
}

/* Turn an all-digit string into an integer in place; -1 if it is not. */
static int
etcd_decode_int(json_t *obj, const char *field, json_t *v)
{
	const char	*s;
	char		*end;
	long long	 n;
	unsigned long long u;

	if (json_is_integer(v))
		return (0);
	if (!json_is_string(v))
		return (-1);
	s = json_string_value(v);
	if (*s == '\0' || strlen(s) != json_string_length(v))
		return (-1);
	errno = 0;
	if (*s == '-')
		n = strtoll(s, &end, 10);
	else {
		/* uint64 ids (member_id) above INT64_MAX keep their bits. */
		u = strtoull(s, &end, 10);
		n = (long long)u;
	}
	if (errno != 0 || *end != '\0')
		return (-1);
	json_object_set_new(obj, field, json_integer(n));
	return (0);
}

static enum etcd_shape
etcd_nested_shape(const char *name, int element)
{
	size_t	i;

	for (i = 0; i < nitems(etcd_nested); i++) {
		if (etcd_nested[i].element == element &&
		    strcmp(etcd_nested[i].name, name) == 0)
			return (etcd_nested[i].shape);
	}
	return (ETCD_SHAPE_NONE);
}

/* Decode one object of a response and everything under it. */
static int
etcd_decode(json_t *obj, enum etcd_shape shape, int depth)
{
	const char	*k;
	json_t		*v, *el;
	void		*iter;
	size_t		 i;

	if (depth > 16)
		return (-1);
	if (!json_is_object(obj))
		return (shape == ETCD_SHAPE_NONE ? 0 : -1);
	if (shape == ETCD_SHAPE_KV && (etcd_decode_text(obj, "key") != 0 ||
	    etcd_decode_text(obj, "value") != 0))
		return (-1);
	iter = json_object_iter(obj);
	while (iter != NULL) {
		k = json_object_iter_key(iter);
		v = json_object_iter_value(iter);
		iter = json_object_iter_next(obj, iter);
		if (bsearch(k, etcd_int64s, nitems(etcd_int64s),
		    sizeof etcd_int64s[0], etcd_str_cmp) != NULL) {
			if (etcd_decode_int(obj, k, v) != 0)
				return (-1);
		} else if (json_is_object(v)) {
			/* An object where an array belongs, or bad inside. */
			if (etcd_nested_shape(k, 1) != ETCD_SHAPE_NONE ||
			    etcd_decode(v, etcd_nested_shape(k, 0),
			    depth + 1) != 0)
				return (-1);
		} else if (json_is_array(v)) {
			if (etcd_nested_shape(k, 0) != ETCD_SHAPE_NONE)
				return (-1);
			json_array_foreach(v, i, el) {
				if (etcd_decode(el, etcd_nested_shape(k, 1),
				    depth + 1) != 0)
					return (-1);
			}
		} else if (etcd_nested_shape(k, 0) != ETCD_SHAPE_NONE ||
		    etcd_nested_shape(k, 1) != ETCD_SHAPE_NONE)
			return (-1);
	}
	return (etcd_fill(obj, shape));
}

/* The class and text of a gateway error, in either of its two shapes. */
static void
etcd_parse_error(json_t *root, json_t *err, const char **errclass,
    char **cause)
{
	json_t		*code, *msg;
	json_int_t	 c;

	if (json_is_object(err)) {
		code = json_object_get(err, "grpc_code");
		msg = json_object_get(err, "message");
	} else {
		code = json_object_get(root, "code");
		msg = json_object_get(root, "message");
		if (!json_is_string(msg))
			msg = err;
	}
	c = json_integer_value(code);
	if (c > 0 && c < (json_int_t)nitems(etcd_grpc_classes))
		*errclass = etcd_grpc_classes[c];
	else
		*errclass = "Unknown";
	xasprintf(cause, "%s", json_is_string(msg) && json_string_length(msg) ?
	    json_string_value(msg) : "etcd gave no reason");
}

int
etcd_parse(const char *path, const char *body, size_t len, json_t **out,
    const char **errclass, char **cause)
{
	const struct etcd_path	*p;
	json_t			*root, *err, *res;
	json_error_t		 jerr;

	*out = NULL;
	*errclass = NULL;
	*cause = NULL;
	if ((p = etcd_path_find(path)) == NULL) {
		*errclass = "InvalidArgument";
		xasprintf(cause, "%s is not an etcd call this client makes",
		    path);
		return (-1);
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		*errclass = "Protocol";
		if (root == NULL)
			xasprintf(cause, "%s: not JSON: %s", path, jerr.text);
		else
			xasprintf(cause, "%s: not a JSON object", path);
		json_decref(root);
		return (-1);
	}
	if ((err = json_object_get(root, "error")) != NULL) {
		etcd_parse_error(root, err, errclass, cause);
		json_decref(root);
		return (-1);
	}
	res = root;
	if (p->stream) {
		res = json_object_get(root, "result");
		if (!json_is_object(res)) {
			*errclass = "Protocol";
			xasprintf(cause, "%s: no result in the answer", path);
			json_decref(root);
			return (-1);
		}
		json_incref(res);
		json_decref(root);
	}
	if (etcd_decode(res, p->shape, 0) != 0) {
		*errclass = "Protocol";
		xasprintf(cause, "%s: malformed answer (a field of the wrong "
		    "type, or a key or value that is not base64 UTF-8)", path);
		json_decref(res);
		return (-1);
	}
	*out = res;
	return (0);
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

static void
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
static struct etcd_conn *
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
static int
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

static const char *
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

/* The deadline passed, or a backoff ended. */
static void
etcd_req_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_req	*r = arg;
	char		*why;

	if (etcd_ms_until(&r->deadline) > 0 && r->conn == NULL) {
		etcd_req_dispatch(r);
		return;
	}
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
	etcd_timer_ms(r->timer, etcd_ms_until(&r->deadline));
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

static void	etcd_watch_done(struct etcd_watch *,
		    struct evhttp_request *);

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
static int
etcd_submit(struct etcd *e, const char *path, json_t *body, int timeout_ms,
    etcd_cb cb, void *arg)
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
	r->ep = e->cur;
	r->why = xcalloc(e->neps, sizeof *r->why);
	if ((r->timer = evtimer_new(e->base, etcd_req_timer_cb, r)) == NULL)
		fatalx("%s: evtimer_new", __func__);

	/* At most conns * 4 calls in flight per client; the rest wait. */
	TAILQ_FOREACH(w, &e->running, entry)
		busy++;
	if (busy >= e->conns * 4) {
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

/* ---- request bodies ---- */

/* The end of the range of every key starting with key (etcd's rule). */
static char *
etcd_prefix_end(const char *key, size_t *len)
{
	char	*end;
	size_t	 n = strlen(key);

	end = xstrdup(key);
	while (n > 0) {
		if ((unsigned char)end[n - 1] < 0xff) {
			end[n - 1]++;
			*len = n;
			return (end);
		}
		n--;
	}
	/* Every key: "\0". */
	end[0] = '\0';
	*len = 1;
	return (end);
}

/* "key" and, for a prefix, "range_end" of a range, delete or watch. */
static void
etcd_set_range(json_t *body, const char *key, int flags)
{
	char	*end;
	size_t	 len;

	if ((flags & ETCD_PREFIX) && *key == '\0') {
		json_object_set_new(body, "key", etcd_b64_json("", 1));
		json_object_set_new(body, "range_end", etcd_b64_json("", 1));
		return;
	}
	json_object_set_new(body, "key", etcd_b64_json(key, strlen(key)));
	if (flags & ETCD_PREFIX) {
		end = etcd_prefix_end(key, &len);
		json_object_set_new(body, "range_end", etcd_b64_json(end, len));
		free(end);
	}
}

/* The bodies of put, range and deleterange, as the gateway wants them. */
static json_t *
etcd_body_put(const char *key, const char *value, int64_t lease, int flags)
{
	json_t	*b;

	b = json_object();
	json_object_set_new(b, "key", etcd_b64_json(key, strlen(key)));
	json_object_set_new(b, "value", etcd_b64_json(value, strlen(value)));
	if (lease != 0)
		json_object_set_new(b, "lease", json_integer(lease));
	if (flags & ETCD_PREV_KV)
		json_object_set_new(b, "prev_kv", json_true());
	return (b);
}

static json_t *
etcd_body_range(const char *key, int flags)
{
	json_t	*b;

	b = json_object();
	etcd_set_range(b, key, flags);
	if (flags & ETCD_KEYS_ONLY)
		json_object_set_new(b, "keys_only", json_true());
	if (flags & ETCD_COUNT_ONLY)
		json_object_set_new(b, "count_only", json_true());
	return (b);
}

static json_t *
etcd_body_delete(const char *key, int flags)
{
	json_t	*b;

	b = json_object();
	etcd_set_range(b, key, flags);
	if (flags & ETCD_PREV_KV)
		json_object_set_new(b, "prev_kv", json_true());
	return (b);
}

int
etcd_put(struct etcd *e, const char *key, const char *value, int64_t lease,
    int flags, etcd_cb cb, void *arg)
{
	return (etcd_submit(e, "/v3/kv/put", etcd_body_put(key, value, lease,
	    flags), 0, cb, arg));
}

int
etcd_get(struct etcd *e, const char *key, int flags, etcd_cb cb, void *arg)
{
	return (etcd_submit(e, "/v3/kv/range", etcd_body_range(key, flags), 0,
	    cb, arg));
}

int
etcd_delete(struct etcd *e, const char *key, int flags, etcd_cb cb,
    void *arg)
{
	return (etcd_submit(e, "/v3/kv/deleterange", etcd_body_delete(key,
	    flags), 0, cb, arg));
}

json_t *
etcd_cmp_mod_revision(const char *key, int64_t rev)
{
	json_t	*c;

	c = json_object();
	json_object_set_new(c, "key", etcd_b64_json(key, strlen(key)));
	json_object_set_new(c, "target", json_string("MOD"));
	json_object_set_new(c, "result", json_string("EQUAL"));
	json_object_set_new(c, "mod_revision", json_integer(rev));
	return (c);
}

json_t *
etcd_cmp_value(const char *key, const char *value)
{
	json_t	*c;

	c = json_object();
	json_object_set_new(c, "key", etcd_b64_json(key, strlen(key)));
	json_object_set_new(c, "target", json_string("VALUE"));
	json_object_set_new(c, "result", json_string("EQUAL"));
	json_object_set_new(c, "value", etcd_b64_json(value, strlen(value)));
	return (c);
}

json_t *
etcd_op_put(const char *key, const char *value, int64_t lease)
{
	return (json_pack("{s:o}", "request_put", etcd_body_put(key, value,
	    lease, 0)));
}

json_t *
etcd_op_get(const char *key, int flags)
{
	return (json_pack("{s:o}", "request_range", etcd_body_range(key,
	    flags)));
}

json_t *
etcd_op_delete(const char *key, int flags)
{
	return (json_pack("{s:o}", "request_delete_range",
	    etcd_body_delete(key, flags)));
}

int
etcd_txn(struct etcd *e, json_t *compare, json_t *success, json_t *failure,
    etcd_cb cb, void *arg)
{
	json_t	*b;

	b = json_object();
	json_object_set_new(b, "compare", compare != NULL ? compare :
	    json_array());
	json_object_set_new(b, "success", success != NULL ? success :
	    json_array());
	json_object_set_new(b, "failure", failure != NULL ? failure :
	    json_array());
	return (etcd_submit(e, "/v3/kv/txn", b, 0, cb, arg));
}

int
etcd_cas(struct etcd *e, const char *key, int64_t rev, const char *value,
    int64_t lease, etcd_cb cb, void *arg)
{
	json_t	*cmp, *ok, *fail;

	cmp = json_array();
	json_array_append_new(cmp, etcd_cmp_mod_revision(key, rev));
	ok = json_array();
	json_array_append_new(ok, etcd_op_put(key, value, lease));
	/* On failure, what is there now: the loser learns the winner. */
	fail = json_array();
	json_array_append_new(fail, etcd_op_get(key, 0));
	return (etcd_txn(e, cmp, ok, fail, cb, arg));
}

int
etcd_lease_grant(struct etcd *e, int64_t ttl, etcd_cb cb, void *arg)
{
	return (etcd_submit(e, "/v3/lease/grant", json_pack("{s:I}", "TTL",
	    (json_int_t)ttl), 0, cb, arg));
}

int
etcd_lease_keepalive(struct etcd *e, int64_t id, etcd_cb cb, void *arg)
{
	return (etcd_submit(e, "/v3/lease/keepalive", json_pack("{s:I}", "ID",
	    (json_int_t)id), 0, cb, arg));
}

int
etcd_lease_revoke(struct etcd *e, int64_t id, etcd_cb cb, void *arg)
{
	return (etcd_submit(e, "/v3/lease/revoke", json_pack("{s:I}", "ID",
	    (json_int_t)id), 0, cb, arg));
}

/* ---- the lease keeper ---- */

static void	keeper_tick(evutil_socket_t, short, void *);

/* Off the client's list and freed; no call of its may be pending. */
static void
etcd_keeper_destroy(struct etcd_keeper *k)
{
	TAILQ_REMOVE(&k->e->keepers, k, entry);
	event_free(k->timer);
	free(k);
}

/* The lease is gone: say so once, and stop. */
static void
etcd_keeper_lost(struct etcd_keeper *k, const char *errclass,
    const char *cause)
{
	k->dead = 1;
	evtimer_del(k->timer);
	if (!k->freed && k->cb != NULL)
		k->cb(k->arg, NULL, errclass, cause);
}

/* A renewal came back: the lease holds from when it left, or is gone. */
static void
etcd_keeper_keepalive_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct etcd_keeper	*k = arg;
	char			*why;

	k->inflight = 0;
	if (k->freed) {
		etcd_keeper_destroy(k);
		return;
	}
	if (k->dead)
		return;
	if (errclass == NULL) {
		if (json_integer_value(json_object_get(res, "TTL")) <= 0) {
			xasprintf(&why, "etcd lease %lld expired",
			    (long long)k->id);
			etcd_keeper_lost(k, "LeaseLost", why);
			free(why);
			return;
		}
		/* It holds for ttl from when the renewal left, not now. */
		k->last_ok = k->sent;
		return;
	}
	log_debug("etcd: lease %lld: renewal failed: %s", (long long)k->id,
	    cause);
}

/* Every ttl/3: renew, unless the lease is past saving already. */
static void
keeper_tick(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_keeper	*k = arg;
	struct timespec		 until;
	char			*why;

	until = k->last_ok;
	until.tv_sec += k->ttl;
	if (etcd_ms_until(&until) <= 0) {
		xasprintf(&why, "etcd lease %lld: no renewal held for %d s",
		    (long long)k->id, k->ttl);
		etcd_keeper_lost(k, "LeaseLost", why);
		free(why);
		return;
	}
	if (!k->inflight) {
		clock_gettime(CLOCK_MONOTONIC, &k->sent);
		k->inflight = 1;
		/* A slow renewal still counts if back before the lease ends. */
		etcd_submit(k->e, "/v3/lease/keepalive", json_pack("{s:I}",
		    "ID", (json_int_t)k->id), etcd_ms_until(&until) > 1 ?
		    (int)etcd_ms_until(&until) : 1,
		    etcd_keeper_keepalive_cb, k);
	}
	/* Wake at the next renewal or when the lease would run out. */
	etcd_timer_ms(k->timer, etcd_ms_until(&until) < k->ttl * 1000 / 3 ?
	    etcd_ms_until(&until) : k->ttl * 1000 / 3);
}

/* The lease is granted: tell the holder and start renewing. */
static void
etcd_keeper_grant_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct etcd_keeper	*k = arg;

	k->inflight = 0;
	if (k->freed) {
		etcd_keeper_destroy(k);
		return;
	}
	if (errclass != NULL) {
		etcd_keeper_lost(k, errclass, cause);
		return;
	}
	k->id = json_integer_value(json_object_get(res, "ID"));
	k->last_ok = k->sent;
	etcd_timer_ms(k->timer, k->ttl * 1000 / 3);
	if (k->cb != NULL)
		k->cb(k->arg, res, NULL, NULL);
}

struct etcd_keeper *
etcd_keeper_create(struct etcd *e, int ttl, etcd_cb cb, void *arg)
{
	struct etcd_keeper	*k;

	k = xcalloc(1, sizeof *k);
	k->e = e;
	k->ttl = ttl > 0 ? ttl : 1;
	k->cb = cb;
	k->arg = arg;
	if ((k->timer = evtimer_new(e->base, keeper_tick, k)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	TAILQ_INSERT_TAIL(&e->keepers, k, entry);
	clock_gettime(CLOCK_MONOTONIC, &k->sent);
	k->inflight = 1;
	etcd_lease_grant(e, k->ttl, etcd_keeper_grant_cb, k);
	return (k);
}

int64_t
etcd_keeper_id(const struct etcd_keeper *k)
{
	return (k->id);
}

void
etcd_keeper_free(struct etcd_keeper *k, int revoke)
{
	if (k == NULL || k->freed)
		return;
	if (revoke && k->id != 0 && !k->dead)
		etcd_lease_revoke(k->e, k->id, NULL, NULL);
	evtimer_del(k->timer);
	k->freed = 1;
	/* A renewal in flight frees it when it comes back. */
	if (!k->inflight)
		etcd_keeper_destroy(k);
}

/* ---- watches ---- */

/* The watch is over for good: say why, once. */
static void
etcd_watch_end(struct etcd_watch *w, const char *errclass, const char *cause)
{
	w->ended = 1;
	if (w->conn != NULL) {
		etcd_conn_reap(w->conn);
		w->conn = NULL;
	}
	evtimer_del(w->timer);
	if (w->cb != NULL)
		w->cb(w->arg, NULL, errclass, cause);
}

/* Reconnect later: to the same member after a stream that worked, else
 * to the next one, backing off after each round of all. */
static void
etcd_watch_lost(struct etcd_watch *w, const char *why)
{
	struct etcd	*e = w->e;
	long long	 ms = 0;

	log_debug("etcd: watch %s: %s", w->key, why);
	if (w->conn != NULL) {
		etcd_conn_reap(w->conn);
		w->conn = NULL;
	}
	if (!w->created) {
		/* This member is down: the next one, backing off per round. */
		e->cur = (e->cur + 1) % e->neps;
		if (++w->rounds % e->neps == 0) {
			ms = (long long)ETCD_BACKOFF_MIN_MS << (w->rounds /
			    e->neps < 5 ? w->rounds / e->neps : 5);
			if (ms > ETCD_BACKOFF_MAX_MS)
				ms = ETCD_BACKOFF_MAX_MS;
		}
	} else {
		/* A stream that worked: the same member again, shortly. */
		w->rounds = 0;
		ms = ETCD_BACKOFF_MIN_MS;
	}
	etcd_timer_ms(w->timer, ms);
}

/* One message of the stream; returns -1 once the watch is gone. */
static int
etcd_watch_line(struct etcd_watch *w, const char *line, size_t len)
{
	json_t		*res, *ev;
	const char	*class;
	char		*cause;
	int64_t		 rev, hrev;
	size_t		 i;

	if (etcd_parse("/v3/watch", line, len, &res, &class, &cause) != 0) {
		etcd_watch_lost(w, cause);
		free(cause);
		return (-1);
	}
	if (json_is_true(json_object_get(res, "canceled"))) {
		rev = json_integer_value(json_object_get(res,
		    "compact_revision"));
		if (rev > 0) {
			xasprintf(&cause, "etcd watch %s: revision %lld is "
			    "compacted (oldest now %lld)", w->key,
			    (long long)w->rev, (long long)rev);
			etcd_watch_end(w, "Compacted", cause);
		} else {
			xasprintf(&cause, "etcd watch %s cancelled: %s", w->key,
			    json_string_value(json_object_get(res,
			    "cancel_reason")) ?: "no reason given");
			etcd_watch_end(w, "Cancelled", cause);
		}
		free(cause);
		json_decref(res);
		return (-1);
	}
	hrev = json_integer_value(json_object_get(json_object_get(res,
	    "header"), "revision"));
	if (json_is_true(json_object_get(res, "created"))) {
		w->created = 1;
		if (w->rev == 0)
			w->rev = hrev + 1;
	}
	json_array_foreach(json_object_get(res, "events"), i, ev) {
		rev = json_integer_value(json_object_get(json_object_get(ev,
		    "kv"), "mod_revision"));
		if (rev >= w->rev)
			w->rev = rev + 1;
	}
	if (w->cb != NULL)
		w->cb(w->arg, res, NULL, NULL);
	json_decref(res);
	return (0);
}

/* Data of the stream: split it into lines, keeping a partial one. */
static void
etcd_watch_chunk(struct evhttp_request *http, void *arg)
{
	struct etcd_conn	*c = arg;
	struct etcd_watch	*w = c->watch;
	struct evbuffer_ptr	 eol;
	size_t			 n;
	char			*line;

	if (w == NULL)
		return;
	evbuffer_add_buffer(w->buf, evhttp_request_get_input_buffer(http));
	for (;;) {
		eol = evbuffer_search_eol(w->buf, NULL, &n, EVBUFFER_EOL_LF);
		if (eol.pos == -1) {
			if (evbuffer_get_length(w->buf) > ETCD_MAX_BODY)
				etcd_watch_lost(w, "a watch message too long");
			return;
		}
		line = xmalloc(eol.pos + 1);
		evbuffer_remove(w->buf, line, eol.pos);
		line[eol.pos] = '\0';
		evbuffer_drain(w->buf, n);
		/* The callback may free the watch: stop at once then. */
		if (eol.pos > 0 && etcd_watch_line(w, line, eol.pos) != 0) {
			free(line);
			return;
		}
		free(line);
		if (c->watch != w)
			return;
	}
}

/* The stream ended: a member died, or a quiet stream timed out. */
static void
etcd_watch_done(struct etcd_watch *w, struct evhttp_request *http)
{
	struct etcd_conn	*c = w->conn;
	char			*why;
	int			 code;

	code = http != NULL ? evhttp_request_get_response_code(http) : 0;
	if (code == 0)
		xasprintf(&why, "%s: %s", c->ep->url, etcd_conn_strerror(c));
	else
		xasprintf(&why, "%s: stream ended (HTTP %d)", c->ep->url, code);
	/* Whatever the last chunk left is a final message. */
	if (code == HTTP_OK && evbuffer_get_length(w->buf) > 0 &&
	    evbuffer_get_length(w->buf) < ETCD_MAX_BODY) {
		evbuffer_add(w->buf, "\n", 1);
		etcd_watch_chunk(http, c);
		if (c->watch != w) {
			free(why);
			return;
		}
	}
	etcd_watch_lost(w, why);
	free(why);
}

/* (Re)open the stream from the revision after the last one seen. */
static void
etcd_watch_connect(struct etcd_watch *w)
{
	struct etcd	*e = w->e;
	json_t		*cr, *b;
	char		*body;

	evbuffer_drain(w->buf, evbuffer_get_length(w->buf));
	w->created = 0;
	w->conn = etcd_conn_new(e, &e->eps[e->cur]);
	w->conn->watch = w;
	evhttp_connection_set_timeout(w->conn->evcon, ETCD_WATCH_IDLE_S);

	cr = json_object();
	json_object_set_new(cr, "key", etcd_b64_json(w->key, w->keylen));
	if (w->range_end != NULL)
		json_object_set_new(cr, "range_end", etcd_b64_json(w->range_end,
		    w->endlen));
	if (w->rev > 0)
		json_object_set_new(cr, "start_revision", json_integer(w->rev));
	if (w->flags & ETCD_PREV_KV)
		json_object_set_new(cr, "prev_kv", json_true());
	json_object_set_new(cr, "progress_notify", json_true());
	b = json_pack("{s:o}", "create_request", cr);
	if ((body = json_dumps(b, JSON_COMPACT)) == NULL)
		fatalx("%s: json_dumps", __func__);
	json_decref(b);
	log_debug("etcd: watch %s from %lld on %s", w->key, (long long)w->rev,
	    e->eps[e->cur].url);
	if (etcd_conn_post(w->conn, "/v3/watch", body, strlen(body),
	    etcd_watch_chunk) != 0)
		etcd_watch_lost(w, "cannot send the watch request");
	free(body);
}

/* Time to (re)connect a watch that has no stream. */
static void
etcd_watch_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_watch	*w = arg;

	if (!w->ended && w->conn == NULL)
		etcd_watch_connect(w);
}

struct etcd_watch *
etcd_watch_create(struct etcd *e, const char *key, int flags,
    int64_t start_revision, etcd_cb cb, void *arg)
{
	struct etcd_watch	*w;

	w = xcalloc(1, sizeof *w);
	w->e = e;
	w->flags = flags;
	w->cb = cb;
	w->arg = arg;
	w->rev = start_revision > 0 ? start_revision : 0;
	if ((flags & ETCD_PREFIX) && *key == '\0') {
		w->key = xstrdup("");
		w->keylen = 1;
		w->range_end = xstrdup("");
		w->endlen = 1;
	} else {
		w->key = xstrdup(key);
		w->keylen = strlen(key);
		if (flags & ETCD_PREFIX)
			w->range_end = etcd_prefix_end(key, &w->endlen);
	}
	if ((w->buf = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if ((w->timer = evtimer_new(e->base, etcd_watch_timer_cb, w)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	TAILQ_INSERT_TAIL(&e->watches, w, entry);
	etcd_timer_ms(w->timer, 0);
	return (w);
}

int64_t
etcd_watch_revision(const struct etcd_watch *w)
{
	return (w->rev);
}

void
etcd_watch_free(struct etcd_watch *w)
{
	if (w == NULL)
		return;
	TAILQ_REMOVE(&w->e->watches, w, entry);
	if (w->conn != NULL)
		etcd_conn_reap(w->conn);
	event_free(w->timer);
	evbuffer_free(w->buf);
	free(w->key);
	free(w->range_end);
	free(w);
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
