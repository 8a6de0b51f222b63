/*
 * etcd v3 client over etcd 3.4's JSON gateway (POST /v3/kv/range, ...),
 * on libevent's evhttp client and jansson.  Non-blocking, no threads.
 *
 * Keys and values are text (C strings here, JSON strings in results): the
 * client base64-encodes them for the gateway and decodes them in results,
 * and turns the gateway's int64-as-string fields (revision, mod_revision,
 * ID, TTL, count, ...) into JSON integers, with the fields the gateway
 * leaves out when zero filled in ("succeeded": false, "kvs": [], ...).
 *
 * Every call takes an etcd_cb and fires it exactly once, from the loop and
 * never from inside the call: result is the decoded response (borrowed)
 * and errclass NULL, or result NULL, errclass one of
 *
 *   Unavailable	no endpoint answered before the call's deadline
 *   Timeout		the deadline passed with a request in flight
 *   Protocol		the answer was not the gateway's JSON
 *   Cancelled		etcd_free ran first
 *   (gRPC codes)	InvalidArgument, NotFound, OutOfRange, ... from etcd
 *
 * and cause a one-line reason.  A call tries the current endpoint, fails
 * over to the next on a connection error or an "Unavailable" answer, and
 * after each round over all endpoints backs off (50 ms doubling to 1 s),
 * until its deadline (etcd_config.timeout_ms).  A retried txn may have
 * been applied by the attempt that failed: a CAS that reports
 * succeeded=false after a retry is re-read, not assumed lost.
 */
#ifndef QDESK_ETCD_H
#define QDESK_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

struct etcd;
struct etcd_keeper;
struct etcd_watch;

typedef void (*etcd_cb)(void *arg, json_t *result, const char *errclass,
    const char *cause);

struct etcd_config {
	const char	*endpoints;	/* "http://H:P,https://H:P,..." */
	const char	*cacert;	/* PEM CAs for https (NULL: system) */
	const char	*cert;		/* client cert (PEM) or NULL */
	const char	*key;		/* its private key (PEM) */
	int		 timeout_ms;	/* per call, retries in (5000) */
	int		 conns;		/* idle kept per endpoint (4) */
};

/* Flags of etcd_get and etcd_delete. */
#define ETCD_PREFIX	0x1	/* every key that starts with key */
#define ETCD_KEYS_ONLY	0x2	/* range: no values */
#define ETCD_COUNT_ONLY	0x4	/* range: only "count" */
#define ETCD_PREV_KV	0x8	/* put, delete, watch: the previous kv */

struct etcd	*etcd_create(struct event_base *, const struct etcd_config *,
		    char **cause);
/* Fires every pending call with "Cancelled"; watches and keepers first. */
void		 etcd_free(struct etcd *);
/* The endpoint calls go to first, right now. */
const char	*etcd_endpoint(const struct etcd *);

/*
 * The generic call: POST body (stolen, keys already base64) to path, e.g.
 * "/v3/kv/range".  The typed helpers below build the body.  Returns 0, or
 * -1 for a path it does not know (cb is not called).
 */
int		 etcd_call(struct etcd *, const char *path, json_t *body,
		    etcd_cb, void *);

/* Result: the header (with "revision"), "prev_kv" with ETCD_PREV_KV. */
int		 etcd_put(struct etcd *, const char *key, const char *value,
		    int64_t lease, int flags, etcd_cb, void *);
/* Result: "kvs" (each key, value, create_revision, mod_revision,
 * version, lease), "count", "more", header. */
int		 etcd_get(struct etcd *, const char *key, int flags, etcd_cb,
		    void *);
/* Result: "deleted" (a count), "prev_kvs" with ETCD_PREV_KV. */
int		 etcd_delete(struct etcd *, const char *key, int flags,
		    etcd_cb, void *);

/*
 * Transactions: compare, success and failure are arrays (stolen, NULL for
 * none) of what the etcd_cmp_* and etcd_op_* builders return.  Result:
 * "succeeded" and "responses" (each {"response_put": ...}, ...).
 */
int		 etcd_txn(struct etcd *, json_t *compare, json_t *success,
		    json_t *failure, etcd_cb, void *);
/* Compare a key's mod_revision (0: the key does not exist) or value. */
json_t		*etcd_cmp_mod_revision(const char *key, int64_t rev);
json_t		*etcd_cmp_value(const char *key, const char *value);
json_t		*etcd_op_put(const char *key, const char *value,
		    int64_t lease);
json_t		*etcd_op_get(const char *key, int flags);
json_t		*etcd_op_delete(const char *key, int flags);
/* Put value at key only if its mod_revision is rev (0: create only). */
int		 etcd_cas(struct etcd *, const char *key, int64_t rev,
		    const char *value, int64_t lease, etcd_cb, void *);

/* Leases.  grant's result: "ID", "TTL"; keepalive's: "ID", "TTL" (0 once
 * the lease has expired). */
int		 etcd_lease_grant(struct etcd *, int64_t ttl, etcd_cb,
		    void *);
int		 etcd_lease_keepalive(struct etcd *, int64_t id, etcd_cb,
		    void *);
int		 etcd_lease_revoke(struct etcd *, int64_t id, etcd_cb,
		    void *);

/*
 * A lease kept alive: granted with ttl seconds, renewed every ttl/3.  cb
 * fires with {"ID", "TTL"} once granted, then once more only if the lease
 * is lost: errclass "LeaseLost" when etcd says it expired or no renewal
 * succeeded for ttl seconds (the holder must then assume its keys gone),
 * or the grant's error.  Nothing is renewed after that.
 */
struct etcd_keeper *etcd_keeper_create(struct etcd *, int ttl, etcd_cb,
		    void *);
/* The lease ID, 0 until granted. */
int64_t		 etcd_keeper_id(const struct etcd_keeper *);
/*
 * CLOCK_MONOTONIC ms until which the lease surely holds (the last renewal
 * that held, from when it was sent, plus TTL); 0 before the grant or once
 * lost. etcd cannot expire it earlier.
 */
long long	 etcd_keeper_held_until(const struct etcd_keeper *);
/*
 * Keep renewing, and report no loss by time, until CLOCK_MONOTONIC ms
 * until (later only): the holder has other evidence that the lease
 * holds that long (etcd_quorum_probe). An expiry etcd reports still
 * counts at once. Each renewal is sent afresh at least every TTL/3.
 */
void		 etcd_keeper_hold(struct etcd_keeper *, long long until);
/* Stops renewing (the lease then expires), revoking it first if asked. */
void		 etcd_keeper_free(struct etcd_keeper *, int revoke);

/*
 * A watch on key (or, with ETCD_PREFIX, every key under it) from
 * start_revision (0: from now).  cb fires with each response of the
 * stream ("created", "events": [{"type": "PUT"|"DELETE", "kv", ...}],
 * header): after a broken stream the watch reconnects, to the next
 * endpoint if the current one is down, and resumes after the last
 * revision it delivered, so no event is lost or repeated.  It ends only
 * with etcd_watch_free or an error cb: "Compacted" (the revision to
 * resume from is gone: re-read, then watch again) or "Cancelled".
 */
struct etcd_watch *etcd_watch_create(struct etcd *, const char *key,
		    int flags, int64_t start_revision, etcd_cb, void *);
/* The revision the watch would resume from. */
int64_t		 etcd_watch_revision(const struct etcd_watch *);
void		 etcd_watch_free(struct etcd_watch *);

/*
 * Can any member be a leader now? Asks every endpoint at once, within
 * timeout_ms: a TCP connect (refused: no etcd process there), then
 * /v3/maintenance/status (its leader) and /v3/cluster/member/list (how
 * many members etcd has; the most ever seen is kept). cb gets
 * {"verdict", "answering", "endpoints", "members", "states": [{"url",
 * "state", "why"}], "started", "ended" (CLOCK_MONOTONIC ms)}. verdict
 * "none" only when every endpoint refused the connection or answered
 * with no leader, and the endpoints are as many as etcd's members: no
 * member led at the moment it was asked. "leader": one knows a leader.
 * "unknown": anything else (a timeout may hide a majority). Never fails.
 * A probe in flight must end before etcd_free.
 */
int		 etcd_quorum_probe(struct etcd *, int timeout_ms, etcd_cb,
		    void *);

/*
 * The pure response parser, shared with the fuzz harness: one gateway
 * answer (or one line of a stream) for a call on path.  Returns 0 and
 * *out (a new reference: the response, or a stream line's "result",
 * decoded and completed as above), or -1 with *errclass (static) and
 * *cause (allocated).
 */
int		 etcd_parse(const char *path, const char *body, size_t len,
		    json_t **out, const char **errclass, char **cause);

/* Standard base64 with padding; decode also takes URL-safe and no pad. */
char		*etcd_base64_encode(const void *, size_t);
/* A NUL-terminated allocation and its length, or NULL on bad input. */
char		*etcd_base64_decode(const char *, size_t, size_t *);

#endif
