/*
 * The etcd client's request bodies: put, range, delete, compares and
 * transaction ops, leases, as the v3 JSON gateway wants them (keys and
 * values base64), and the calls that send them through etcd_submit
 * (etcd.c).  See etcd.h for the contract.
 */
#include <sys/types.h>

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/http.h>

#include <openssl/ssl.h>

#include "compat.h"
#include "etcd.h"
#include "etcd-int.h"
#include "xmalloc.h"

/* A JSON string of s base64-encoded, as the gateway takes bytes. */
json_t *
etcd_b64_json(const char *s, size_t len)
{
	char	*b;
	json_t	*v;

	b = etcd_base64_encode(s, len);
	v = json_string(b);
	free(b);
	return (v);
}

/* The end of the range of every key starting with key (etcd's rule). */
char *
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
