/*
 * Failover: a host going down (its lease expired) arms a timer of
 * fence_delay. By then that host has fenced itself, and the desktops it
 * ran that can run elsewhere (no disk, or a disk on a shared store) are
 * placed on another host by the placement CAS; the others wait for it,
 * shown "host down".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

/* A down host's failover, fence_delay after its lease went. */
struct failover {
	char			*host;
	struct event		*timer;
	int			 fired;		/* failover ran once */
	TAILQ_ENTRY(failover)	 entry;
};
static TAILQ_HEAD(, failover) failovers = TAILQ_HEAD_INITIALIZER(failovers);

static void
failover_free(struct failover *d)
{
	TAILQ_REMOVE(&failovers, d, entry);
	event_free(d->timer);
	free(d->host);
	free(d);
}

/* fence_delay after host's lease expired: place its desktops elsewhere. */
static void
failover_cb(evutil_socket_t fd, short events, void *arg)
{
	struct failover		*d = arg;
	struct cluster_place	*p;
	const char		*to;
	char			*cause, *key, *val, *why;

	if (cluster_host_up(cluster_host_find(d->host))) {
		failover_free(d);
		return;
	}
	if (!cluster_host_joined())
		return;		/* a fenced host moves nothing */
	if (!d->fired)
		log_info("cluster: host %s down for %d s more than its lease: "
		    "failover at %s", d->host, qmpd->cluster->fence_delay,
		    cluster_stamp());
	TAILQ_FOREACH(p, &cluster_places, entry) {
		if (p->def == NULL || !cluster_place_running(p) ||
		    strcmp(cluster_place_at(p), d->host) != 0)
			continue;
		if (!cluster_place_movable(p)) {
			if (!d->fired)
				log_info("cluster: %s waits for %s (its disk "
				    "%s)", p->name, d->host,
				    cluster_place_stuck(p));
			continue;
		}
		cause = NULL;
		if ((to = cluster_place_choose(p, d->host, &cause)) == NULL) {
			log_warnx("cluster: failover of %s: %s", p->name,
			    cause);
			free(cause);
			continue;
		}
		log_info("cluster: failover: %s from %s to %s at %s", p->name,
		    d->host, to, cluster_stamp());
		xasprintf(&why, "failover from %s", d->host);
		key = cluster_key("placement/%s", p->name);
		val = cluster_place_value(p, to, 1, why);
		etcd_cas(cluster_etcd, key, p->pl_rev, val, 0,
		    cluster_place_cas_log, xstrdup(p->name));
		free(why);
		free(key);
		free(val);
	}
	d->fired = 1;
}

/*
 * Hosts down past their fence delay: failover again (a store came, or
 * this host has joined again after its own fence).
 */
void
cluster_failover_again(void)
{
	struct failover		*d, *d1;

	TAILQ_FOREACH_SAFE(d, &failovers, entry, d1)
		if (!evtimer_pending(d->timer, NULL))
			failover_cb(-1, 0, d);
}

/* host's lease went: its failover in fence_delay. */
void
cluster_failover_host_down(const char *host)
{
	struct failover		*d;
	struct timeval		 tv = { qmpd->cluster->fence_delay, 0 };

	TAILQ_FOREACH(d, &failovers, entry)
		if (strcmp(d->host, host) == 0)
			return;
	d = xcalloc(1, sizeof *d);
	d->host = xstrdup(host);
	d->timer = evtimer_new(qmpd->base, failover_cb, d);
	evtimer_add(d->timer, &tv);
	TAILQ_INSERT_TAIL(&failovers, d, entry);
	cluster_cmd_recheck();		/* waiters on it learn now */
}

/* host is up again: no failover of it. */
void
cluster_failover_host_up(const char *host)
{
	struct failover	*d, *d1;

	TAILQ_FOREACH_SAFE(d, &failovers, entry, d1)
		if (strcmp(d->host, host) == 0)
			failover_free(d);
}
