/*
 * The etcd gateway's answers made usable, and the base64 its keys and
 * values travel in: pure code (no I/O, no loop), shared by the client and
 * tests/fuzz/fuzz-etcd-parse.c.
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

#include "base64.h"
#include "compat.h"
#include "etcd.h"
#include "etcd-int.h"
#include "log.h"
#include "xmalloc.h"

/*
 * Keep this list sorted: looked up with bsearch. repeat: a call that
 * changes nothing (or, a keepalive, only renews) may be sent to another
 * member when one keeps it unanswered (etcd.c); a write may not: the
 * silent member may have applied it.
 */
static const struct etcd_path etcd_paths[] = {
	{ "/v3/cluster/member/list", ETCD_SHAPE_NONE, 0, 1 },
	{ "/v3/kv/deleterange", ETCD_SHAPE_DELETE, 0, 0 },
	{ "/v3/kv/put", ETCD_SHAPE_NONE, 0, 0 },
	{ "/v3/kv/range", ETCD_SHAPE_RANGE, 0, 1 },
	{ "/v3/kv/txn", ETCD_SHAPE_TXN, 0, 0 },
	{ "/v3/lease/grant", ETCD_SHAPE_LEASE, 0, 0 },
	{ "/v3/lease/keepalive", ETCD_SHAPE_LEASE, 1, 1 },
	{ "/v3/lease/revoke", ETCD_SHAPE_NONE, 0, 0 },
	{ "/v3/maintenance/status", ETCD_SHAPE_STATUS, 0, 1 },
	{ "/v3/watch", ETCD_SHAPE_WATCH, 1, 0 },
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


/* ---- base64 ---- */

char *
etcd_base64_encode(const void *data, size_t len)
{
	return (base64_encode(data, len));
}

char *
etcd_base64_decode(const char *s, size_t len, size_t *outlen)
{
	unsigned char	*out;
	ssize_t		 n;

	out = xmalloc(base64_decoded_max(len) + 1);
	if ((n = base64_decode(s, len, out, base64_decoded_max(len),
	    BASE64_URL)) == -1) {
		free(out);
		return (NULL);
	}
	out[n] = '\0';
	if (outlen != NULL)
		*outlen = n;
	return ((char *)out);
}

/* ---- the pure parser ---- */

static int
etcd_path_cmp(const void *key, const void *elem)
{
	return (strcmp(key, ((const struct etcd_path *)elem)->path));
}

const struct etcd_path *
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
		if (shape != ETCD_SHAPE_STATUS && bsearch(k, etcd_int64s,
		    nitems(etcd_int64s),
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
