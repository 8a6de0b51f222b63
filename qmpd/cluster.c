/*
 * Cluster mode (qmpd --cluster FILE): the etcd client on qmpd's loop and
 * the one watch that keeps this host's view of the cluster. At start the
 * whole of /qdesk/v1/ is read once (the view), the join checks run on
 * it, and a watch from the revision after that read delivers every later
 * change: host records to cluster-host.c, definitions and placement to
 * cluster-place.c. Nothing here blocks the loop after start-up; at
 * start-up qmpd runs its loop until the join is decided.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "clock.h"
#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "userdb.h"
#include "xmalloc.h"

#define CLUSTER_PREFIX		"/qdesk/v1/"
#define CLUSTER_RETRY_MS	1000	/* a failed initial read, again */

struct etcd		*cluster_etcd;
static struct etcd_watch *cluster_watch;
static struct event	*cluster_retry_ev;
static struct event	*cluster_read_ev;	/* test hook join-read-late */
static int		 cluster_loaded;	/* the initial read is in */
static char		*cluster_refused;	/* why start-up failed */
unsigned int		 cluster_gen;		/* of the last full read */

char *
cluster_key(const char *fmt, ...)
{
	va_list	 ap;
	char	*rest, *key;

	va_start(ap, fmt);
	if (vasprintf(&rest, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	xasprintf(&key, "%s%s", CLUSTER_PREFIX, rest);
	free(rest);
	return (key);
}

const char *
cluster_name(void)
{
	return (qmpd->cluster->name);
}

const char *
cluster_stamp(void)
{
	static char	buf[64];
	long long	ms = clock_wall_ms();
	time_t		t = ms / 1000;
	struct tm	tm;

	gmtime_r(&t, &tm);
	snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ms % 1000);
	return (buf);
}

/* One key's change (or, at the initial read, its value), by its family. */
static void
cluster_dispatch(json_t *kv, int put)
{
	const char	*key = json_string_value(json_object_get(kv, "key"));

	if (key == NULL || strncmp(key, CLUSTER_PREFIX,
	    strlen(CLUSTER_PREFIX)) != 0)
		return;
	key += strlen(CLUSTER_PREFIX);
	if (strncmp(key, "hosts/", 6) == 0 || strncmp(key, "members/", 8) == 0
	    || strncmp(key, "drain/", 6) == 0)
		cluster_host_event(key, kv, put);
	else if (strncmp(key, "vms/", 4) == 0 ||
	    strncmp(key, "placement/", 10) == 0 ||
	    strncmp(key, "stores/", 7) == 0)
		cluster_place_event(key, kv, put);
	else if (strncmp(key, "images/", 7) == 0)
		cluster_image_event(key, kv, put);
	else
		userdb_etcd_event(key, kv, put);	/* users/, pools/, ... */
}


/* The watch's events; a compacted revision means read it all again. */
static void
cluster_watch_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	json_t	*ev;
	size_t	 i;

	if (errclass != NULL) {
		log_warnx("cluster: watch: %s: %s", errclass, cause);
		etcd_watch_free(cluster_watch);
		cluster_watch = NULL;
		if (strcmp(errclass, "Cancelled") != 0)
			cluster_load();
		return;
	}
	json_array_foreach(json_object_get(res, "events"), i, ev) {
		cluster_dispatch(json_object_get(ev, "kv"), strcmp(
		    json_string_value(json_object_get(ev, "type")), "PUT") ==
		    0);
	}
}

static void
cluster_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	cluster_load();
}

/* The initial read: every key, then the watch from the next revision. */
static void
cluster_load_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct timeval	 tv = { 0, CLUSTER_RETRY_MS * 1000 };
	json_t		*kv;
	size_t		 i;
	int64_t		 rev;

	if (errclass != NULL) {
		log_warnx("cluster: etcd %s: %s (again in %d ms)",
		    etcd_endpoint(cluster_etcd), cause, CLUSTER_RETRY_MS);
		evtimer_add(cluster_retry_ev, &tv);
		return;
	}
	cluster_gen++;
	json_array_foreach(json_object_get(res, "kvs"), i, kv)
		cluster_dispatch(kv, 1);
	/* What the view has and etcd no longer does went meanwhile. */
	cluster_host_sweep(cluster_gen);
	cluster_place_sweep(cluster_gen);
	cluster_image_sweep(cluster_gen);
	userdb_etcd_sweep(cluster_gen);
	rev = json_integer_value(json_object_get(json_object_get(res,
	    "header"), "revision"));
	cluster_watch = etcd_watch_create(cluster_etcd, CLUSTER_PREFIX,
	    ETCD_PREFIX | ETCD_PREV_KV, rev + 1, cluster_watch_cb, NULL);
	if (!cluster_loaded) {
		cluster_loaded = 1;
		if ((cluster_refused = cluster_host_refuse()) != NULL ||
		    (cluster_refused = cluster_cert_refuse(json_object_get(res,
		    "kvs"))) != NULL)
			return;
		cluster_host_join();
		cluster_image_start();
		userdb_import_hint();
	}
	if (cluster_host_joined())
		cluster_place_reconcile();
}

/*
 * The read of cluster_load; under test hook join-read-late, not before
 * the test makes the file join-read-go in the state dir.
 */
static void
cluster_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct timeval	 tv = { 0, 100 * 1000 };
	char		*go;
	int		 wait;

	if (arg != NULL) {
		xasprintf(&go, "%s/join-read-go", qmpd->state_dir);
		wait = access(go, F_OK) != 0;
		free(go);
		if (wait) {
			evtimer_add(cluster_read_ev, &tv);
			return;
		}
	}
	etcd_get(cluster_etcd, CLUSTER_PREFIX, ETCD_PREFIX, cluster_load_cb,
	    NULL);
}

/*
 * Read everything again and watch from there: at start, after a
 * compaction, and each time this host (re)joins, so that it never acts
 * on a view older than its own lease (a partition may have hidden
 * failovers from it). Test hook join-read-late:HOST holds a (re)join's
 * read back, its watch gone, till the test says: what changes meanwhile
 * only the read can tell (test 92).
 */
void
cluster_load(void)
{
	if (cluster_watch != NULL)
		etcd_watch_free(cluster_watch);
	cluster_watch = NULL;
	if (cluster_host_joined() && test_hook_armed("join-read-late",
	    cluster_name())) {
		log_warnx("cluster: test hook join-read-late: the read waits "
		    "for %s/join-read-go", qmpd->state_dir);
		cluster_read_cb(-1, 0, cluster_read_ev);
		return;
	}
	cluster_read_cb(-1, 0, NULL);
}

/*
 * Connect, read the cluster, check this host may join, and start
 * joining. Runs the loop until the join is decided: a refusal fails
 * start-up; an etcd that does not answer leaves qmpd serving while it
 * tries again (its desktops are fenced if no lease holds in time).
 */
int
cluster_init(char **cause)
{
	struct etcd_config	 ec;
	struct cluster_conf	*c = qmpd->cluster;

	memset(&ec, 0, sizeof ec);
	ec.endpoints = c->etcd;
	ec.cacert = c->etcd_ca;
	ec.cert = c->etcd_cert;
	ec.key = c->etcd_key;
	ec.timeout_ms = c->lease_ttl * 1000 / 2;
	if ((cluster_etcd = etcd_create(qmpd->base, &ec, cause)) == NULL)
		return (-1);
	cluster_retry_ev = evtimer_new(qmpd->base, cluster_retry_cb, NULL);
	cluster_read_ev = evtimer_new(qmpd->base, cluster_read_cb,
	    event_self_cbarg());
	notify_listen(cluster_place_vm_event, NULL);
	notify_listen(cluster_nic_event, NULL);
	/* Desktops re-attached from before must not outlive a lost lease. */
	cluster_fence_arm(c->lease_ttl);
	cluster_load();
	while (cluster_refused == NULL && !cluster_host_joined() &&
	    !cluster_fencing() && !qmpd->exiting)
		event_base_loop(qmpd->base, EVLOOP_ONCE);
	if (cluster_refused != NULL) {
		*cause = cluster_refused;
		cluster_refused = NULL;
		return (-1);
	}
	log_info("cluster: %s %s (etcd %s)", c->name, cluster_host_joined() ?
	    "joined" : "not joined yet", c->etcd);
	return (0);
}

void
cluster_close(void)
{
	if (cluster_etcd == NULL)
		return;
	if (cluster_watch != NULL)
		etcd_watch_free(cluster_watch);
	cluster_watch = NULL;
	if (cluster_retry_ev != NULL)
		event_free(cluster_retry_ev);
	cluster_retry_ev = NULL;
	if (cluster_read_ev != NULL)
		event_free(cluster_read_ev);
	cluster_read_ev = NULL;
}
