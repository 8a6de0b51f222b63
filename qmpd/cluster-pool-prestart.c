/*
 * Prestart for a cluster's pools (pool create/set --prestart K): keep K
 * free members running somewhere in the cluster so a login gets a booted
 * desktop. Counted from the cluster's view (placement says running, no
 * owners/ key); one host places them, the up host with the lowest name,
 * so the hosts do not each start K. Placement is written by CAS as any
 * start is, so even two hosts that both think they are that one (a view
 * not current yet) cannot place one member twice.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "userdb.h"
#include "xmalloc.h"

static json_t	*cluster_prestart_flight;	/* members being placed */

/* Is this host the one that places prestarts (lowest up, not draining)? */
static int
cluster_prestart_mine(void)
{
	struct cluster_host	*h;
	const char		*low = NULL;

	TAILQ_FOREACH(h, &cluster_hosts, entry) {
		if (!cluster_host_up(h) || h->draining)
			continue;
		if (low == NULL || strcmp(h->name, low) < 0)
			low = h->name;
	}
	return (low != NULL && strcmp(low, cluster_name()) == 0);
}

/* A free member (no owners/ key) of pool pname, or 0. */
static int
cluster_prestart_free(struct cluster_place *p, const char *pname)
{
	const char	*of;

	if (p->def == NULL)
		return (0);
	of = json_string_value(json_object_get(cluster_place_def(p), "pool"));
	return (of != NULL && strcmp(of, pname) == 0 &&
	    userdb_etcd_revision(USERDB_OWNERS, p->name) == 0);
}

/* Free members of pname that placement says run. */
int
cluster_pool_free_running(const char *pname)
{
	struct cluster_place	*p;
	int			 n = 0;

	TAILQ_FOREACH(p, &cluster_places, entry)
		if (cluster_prestart_free(p, pname) && cluster_place_running(p))
			n++;
	return (n);
}

static void
cluster_prestart_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	char	*vm = arg;

	if (errclass != NULL || !json_is_true(json_object_get(res,
	    "succeeded"))) {
		log_info("cluster: prestart of %s not placed: %s", vm,
		    errclass != NULL ? cause : "placement changed meanwhile");
		json_object_del(cluster_prestart_flight, vm);
		cluster_pool_kick();
	}
	free(vm);
}

/* Place one free stopped member where it was, or on the best host. */
static void
cluster_prestart_one(struct cluster_place *p, const char *pname)
{
	struct cluster_host	*h;
	const char		*host = cluster_place_at(p);
	char			*cause = NULL, *key, *val;

	h = host != NULL ? cluster_host_find(host) : NULL;
	if (h == NULL || !cluster_host_up(h) || h->draining) {
		if ((host = cluster_place_choose(p, NULL, &cause)) == NULL) {
			log_warnx("cluster: prestart of %s (pool %s): %s",
			    p->name, pname, cause);
			free(cause);
			return;
		}
	}
	log_info("cluster: prestart of %s (pool %s) on %s", p->name, pname,
	    host);
	json_object_set_new(cluster_prestart_flight, p->name, json_true());
	key = cluster_key("placement/%s", p->name);
	val = cluster_place_value(p, host, 1, "prestart");
	etcd_cas(cluster_etcd, key, p->pl_rev, val, 0, cluster_prestart_cb,
	    xstrdup(p->name));
	free(key);
	free(val);
}

static int
cluster_prestart_pool(const char *pname, json_t *pool, void *arg)
{
	struct cluster_place	*p;
	json_int_t		 want = json_integer_value(json_object_get(pool,
				    "prestart"));
	int			 n;

	n = cluster_pool_free_running(pname);
	TAILQ_FOREACH(p, &cluster_places, entry) {
		if (json_object_get(cluster_prestart_flight, p->name) == NULL)
			continue;
		/* Once the view shows it running (or someone has it) it is
		 * counted above, or not free: no longer in flight. */
		if (!cluster_prestart_free(p, pname)) {
			if (p->def == NULL || userdb_etcd_revision(
			    USERDB_OWNERS, p->name) != 0)
				json_object_del(cluster_prestart_flight,
				    p->name);
		} else if (cluster_place_running(p))
			json_object_del(cluster_prestart_flight, p->name);
		else
			n++;
	}
	TAILQ_FOREACH(p, &cluster_places, entry) {
		if (n >= want)
			break;
		if (!cluster_prestart_free(p, pname) ||
		    cluster_place_running(p) ||
		    json_object_get(cluster_prestart_flight, p->name) != NULL)
			continue;
		cluster_prestart_one(p, pname);
		n++;
	}
	return (0);
}

/* From the pool engine: top up every pool's free running members. */
void
cluster_pool_prestart(void)
{
	char	*cause = NULL;

	if (cluster_prestart_flight == NULL)
		cluster_prestart_flight = json_object();
	if (!cluster_host_joined() || cluster_gen == 0 ||
	    !cluster_prestart_mine())
		return;
	if (userdb_foreach(DB_POOLS, cluster_prestart_pool, NULL, &cause) < 0) {
		log_warnx("cluster: prestart: %s", cause);
		free(cause);
	}
}
