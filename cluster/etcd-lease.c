/*
 * The etcd lease keeper: grants a lease, renews it every TTL/3 and reports
 * its loss once.  See etcd.h for the contract.
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
	/*
	 * Renew again now (the client has moved on to another member), not
	 * at the next tick: a renewal that used up its TTL/3 leaves only
	 * another TTL/3 before the lease could end.
	 */
	etcd_timer_ms(k->timer, 0);
}

/* Every ttl/3: renew, unless the lease is past saving already. */
static void
keeper_tick(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_keeper	*k = arg;
	struct timespec		 until;
	char			*why;
	long long		 left;

	until = k->last_ok;
	until.tv_sec += k->ttl;
	/* Evidence from elsewhere (no quorum: nobody can expire it). */
	if (k->hold > (long long)until.tv_sec * 1000 + until.tv_nsec /
	    1000000) {
		until.tv_sec = k->hold / 1000;
		until.tv_nsec = (k->hold % 1000) * 1000000;
	}
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
		/*
		 * A slow renewal still counts if back before the lease ends;
		 * past TTL/3 the next one leaves afresh (a renewal holds from
		 * when it was sent, so an old one retried is worth less).
		 */
		left = etcd_ms_until(&until);
		if (left > k->ttl * 1000 / 3)
			left = k->ttl * 1000 / 3;
		etcd_submit(k->e, "/v3/lease/keepalive", json_pack("{s:I}",
		    "ID", (json_int_t)k->id), left > 1 ? (int)left : 1,
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

long long
etcd_keeper_held_until(const struct etcd_keeper *k)
{
	if (k->id == 0 || k->dead || k->freed)
		return (0);
	return ((long long)k->last_ok.tv_sec * 1000 + k->last_ok.tv_nsec /
	    1000000 + (long long)k->ttl * 1000);
}

void
etcd_keeper_hold(struct etcd_keeper *k, long long until)
{
	if (k != NULL && until > k->hold)
		k->hold = until;
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
