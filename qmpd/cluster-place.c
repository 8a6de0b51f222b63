/*
 * Placement: which host runs which desktop. vms/VM holds the definition
 * (the vm.create arguments, so any host can create it locally) and the
 * host it is pinned to, if any; placement/VM = {"host","epoch","state"}
 * says where it runs and whether it should, and is written only by
 * etcd_cas on the key's mod_revision, so two hosts can never both claim
 * a desktop. Every host watches both: the host placement names starts
 * the desktop (no host-to-host call), and a host that finds a desktop
 * running locally that placement gives to another host kills it.
 * Failover is cluster-failover.c's, the vm.* commands cluster-cmd.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "clock.h"
#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define PLACE_MEM_SAME	512	/* MiB of free memory that make no difference */

struct cluster_places	cluster_places = TAILQ_HEAD_INITIALIZER(cluster_places);
static json_t	*stores;		/* stores/NAME values by name */

struct cluster_place *
cluster_place_find(const char *name)
{
	struct cluster_place	*p;

	TAILQ_FOREACH(p, &cluster_places, entry)
		if (strcmp(p->name, name) == 0)
			return (p);
	return (NULL);
}

static struct cluster_place *
place_get(const char *name)
{
	struct cluster_place	*p;

	if ((p = cluster_place_find(name)) != NULL)
		return (p);
	p = xcalloc(1, sizeof *p);
	p->name = xstrdup(name);
	TAILQ_INSERT_TAIL(&cluster_places, p, entry);
	return (p);
}

static void
place_forget(struct cluster_place *p)
{
	if (p->def != NULL || p->pl != NULL)
		return;
	TAILQ_REMOVE(&cluster_places, p, entry);
	free(p->name);
	free(p);
}

const char *
cluster_place_at(const struct cluster_place *p)
{
	return (p == NULL ? NULL : json_string_value(json_object_get(p->pl,
	    "host")));
}

long long
cluster_place_epoch(const struct cluster_place *p)
{
	return (p == NULL ? 0 : json_integer_value(json_object_get(p->pl,
	    "epoch")));
}

int
cluster_place_running(const struct cluster_place *p)
{
	const char	*s;

	s = p == NULL ? NULL : json_string_value(json_object_get(p->pl,
	    "state"));
	return (s != NULL && strcmp(s, "running") == 0);
}

int
cluster_place_mine(const struct cluster_place *p)
{
	const char	*h = cluster_place_at(p);

	return (h != NULL && strcmp(h, cluster_name()) == 0);
}

json_t *
cluster_place_def(const struct cluster_place *p)
{
	return (json_object_get(p->def, "def"));
}

const char *
cluster_place_pin(const struct cluster_place *p)
{
	return (json_string_value(json_object_get(p->def, "host")));
}

const char *
cluster_place_host(const char *vm)
{
	return (cluster_place_at(cluster_place_find(vm)));
}

/*
 * Can the desktop run on another host than the one that had it: no disk
 * (kernel and initrd, stateless), or its disk on a shared store. A
 * linked clone (--from) stays on its host, unless it is a stateless or
 * floating pool's member: its disk is disposable, the new host clones the
 * template anew.
 */
int
cluster_place_movable(const struct cluster_place *p)
{
	json_t		*args = cluster_place_def(p), *st;
	const char	*disk, *path, *k;
	size_t		 n;

	if (json_object_get(args, "from") != NULL)
		return (cluster_pool_disposable(p) || cluster_clone_movable(p));
	if ((disk = json_string_value(json_object_get(args, "disk"))) == NULL)
		return (1);
	json_object_foreach(stores, k, st) {
		path = json_string_value(json_object_get(st, "path"));
		if (path == NULL || !json_is_true(json_object_get(st,
		    "shared")))
			continue;
		n = strlen(path);
		if (strncmp(disk, path, n) == 0 && (disk[n] == '/' ||
		    (n > 0 && path[n - 1] == '/')))
			return (1);
	}
	return (0);
}

/*
 * Why p, not movable, waits for its host: the words after "its disk"
 * (a linked clone on a shared store says what it lacks to move).
 */
const char *
cluster_place_stuck(const struct cluster_place *p)
{
	json_t	*args = cluster_place_def(p);

	if (json_object_get(args, "from") == NULL)
		return ("is not on a shared store");
	if (json_object_get(args, "store") != NULL)
		return (cluster_clone_stuck(p));
	return ("is a linked clone, which stays on its host");
}

/* The shared stores whose path this host sees (host list's "stores"). */
json_t *
cluster_stores_here(void)
{
	json_t		*here = json_array(), *st;
	const char	*k, *path;

	json_object_foreach(stores, k, st) {
		path = json_string_value(json_object_get(st, "path"));
		if (path != NULL && json_is_true(json_object_get(st,
		    "shared")) && access(path, R_OK | W_OK | X_OK) == 0)
			json_array_append_new(here, json_string(k));
	}
	return (here);
}

const char *
cluster_store_path(const char *name)
{
	json_t	*st = json_object_get(stores, name);

	if (!json_is_true(json_object_get(st, "shared")))
		return (NULL);
	return (json_string_value(json_object_get(st, "path")));
}

/*
 * The template a host must hold to start p, or NULL: one on a shared
 * image store (vm create --store) is on every host's path already.
 */
static const char *
place_template(const struct cluster_place *p)
{
	json_t	*def = cluster_place_def(p);

	if (json_object_get(def, "store") != NULL)
		return (NULL);
	return (json_string_value(json_object_get(def, "from")));
}

/* Memory the desktop needs, MiB (vm-def.c's default when not given). */
static long long
place_memory(const struct cluster_place *p)
{
	json_t	*m = json_object_get(cluster_place_def(p), "memory");

	return (json_is_integer(m) ? json_integer_value(m) : 512);
}

/*
 * The host for p: its pin, else the up, undrained host with the most
 * free memory (less what is placed there and not yet running; within
 * PLACE_MEM_SAME the one with fewer desktops) that has its template or
 * can fetch it (cluster-image.c), under its boot cap if any host is.
 * exclude is skipped.
 */
const char *
cluster_place_choose(struct cluster_place *p, const char *exclude, char **cause)
{
	struct cluster_host	*h, *best = NULL;
	struct cluster_place	*q;
	const char		*pin = cluster_place_pin(p), *from, *store;
	long long		 free_mb, best_free = 0, need;
	int			 capped, best_capped = 1, n, best_n = 0;
	json_t			*tpl, *v;
	size_t			 i;
	int			 has = 1, best_has = 0, tie;

	from = place_template(p);
	store = cluster_clone_store(p);
	need = place_memory(p);
	if (pin != NULL) {
		h = cluster_host_find(pin);
		if (h == NULL || !cluster_host_up(h)) {
			xasprintf(cause, "VM %s is pinned to host %s, which is "
			    "%s", p->name, pin, h == NULL ? "unknown" : "down");
			return (NULL);
		}
		if (h->draining) {
			xasprintf(cause, "VM %s is pinned to host %s, which is "
			    "draining (qdesk host undrain %s)", p->name, pin,
			    pin);
			return (NULL);
		}
		return (h->name);
	}
	TAILQ_FOREACH(h, &cluster_hosts, entry) {
		if (!cluster_host_up(h) || h->draining || (exclude != NULL &&
		    strcmp(h->name, exclude) == 0))
			continue;
		/* A recorded clone: only where its shared store is. */
		if (store != NULL && !cluster_clone_host_has(h->rec, store))
			continue;
		if (from != NULL) {
			has = 0;
			tpl = json_object_get(h->rec, "templates");
			json_array_foreach(tpl, i, v)
				if (json_is_string(v) && strcmp(
				    json_string_value(v), from) == 0)
					has = 1;
			/* Without it, a host that can fetch it will do. */
			if (!has && !cluster_image_gettable(from))
				continue;
		}
		free_mb = json_integer_value(json_object_get(h->rec,
		    "mem_free"));
		n = json_array_size(json_object_get(h->rec, "running")) +
		    json_array_size(json_object_get(h->rec, "starting"));
		TAILQ_FOREACH(q, &cluster_places, entry) {
			if (q == p || !cluster_place_running(q) ||
			    strcmp(cluster_place_at(q), h->name) != 0 ||
			    cluster_host_lists(h, "running", q->name) ||
			    cluster_host_lists(h, "starting", q->name))
				continue;
			free_mb -= place_memory(q);
			n++;
		}
		if (free_mb < need)
			continue;
		capped = json_integer_value(json_object_get(h->rec,
		    "boot_cap")) > 0 && json_integer_value(json_object_get(
		    h->rec, "booting")) >= json_integer_value(json_object_get(
		    h->rec, "boot_cap"));
		/*
		 * Free memory within PLACE_MEM_SAME is a tie: a host that
		 * has the template wins it (a copy costs a file's worth of
		 * network), then the one with fewer desktops.
		 */
		tie = free_mb >= best_free - PLACE_MEM_SAME;
		if (best == NULL || (best_capped && !capped) ||
		    (capped == best_capped &&
		    (free_mb > best_free + PLACE_MEM_SAME ||
		    (tie && has > best_has) || (tie && has == best_has &&
		    (n < best_n || (n == best_n && free_mb > best_free)))))) {
			best = h;
			best_free = free_mb;
			best_n = n;
			best_capped = capped;
			best_has = has;
		}
	}
	if (best == NULL) {
		if (store != NULL)
			xasprintf(cause, "no host that is up and not draining "
			    "has shared image store %s mounted and %lld MiB "
			    "free for %s", store, need, p->name);
		else if (from != NULL)
			xasprintf(cause, "no host that is up and not draining "
			    "has template %s and %lld MiB free for %s", from,
			    need, p->name);
		else
			xasprintf(cause, "no host that is up and not draining "
			    "has %lld MiB free for %s", need, p->name);
		return (NULL);
	}
	return (best->name);
}

/* The new placement value: host, the next epoch, running or stopped. */
char *
cluster_place_value(struct cluster_place *p, const char *host, int running,
    const char *why)
{
	json_t	*v;
	char	*s;

	v = json_pack("{s:s,s:I,s:s,s:s?,s:I}", "host", host, "epoch",
	    (json_int_t)cluster_place_epoch(p) + (running ? 1 : 0), "state",
	    running ? "running" : "stopped", "why", why, "time",
	    (json_int_t)clock_wall_ms());
	s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	return (s);
}

/* ---- this host acting on placement ---- */

/* A stop's timeout as the admin gave it (cluster-cmd.c), else 30 s. */
static int
place_stop_timeout(const struct cluster_place *p)
{
	json_int_t	t;

	t = json_integer_value(json_object_get(p->pl, "timeout"));
	return (t >= 1 && t <= 3600 ? (int)t : 30);
}

struct place_start {
	char		*name;
	long long	 epoch;
};

static void
place_started(void *arg, json_t *result, const char *errclass,
    const char *cause)
{
	struct place_start	*s = arg;
	struct cluster_place	*p;

	if (errclass != NULL) {
		log_warnx("cluster: %s: start failed: %s", s->name, cause);
		cluster_host_failed(s->name, s->epoch, cause);
	} else {
		log_info("cluster: %s: running here at %s (epoch %lld)",
		    s->name, cluster_stamp(), s->epoch);
		cluster_host_failed(s->name, s->epoch, NULL);
		if ((p = cluster_place_find(s->name)) != NULL)
			cluster_clone_record(p, vm_find(s->name));
	}
	json_decref(result);
	free(s->name);
	free(s);
}

static void	place_reconcile_one(struct cluster_place *);

/*
 * A template fetch a start here waited on ended: start it, or fail this
 * epoch's start with why (remembered, so that the watch's next event
 * does not fetch again for the same start; a new start may).
 */
static json_t	*place_fetch_failed;	/* VM: the epoch whose fetch failed */
static json_t	*place_fetching;	/* VM: the epoch waiting on a fetch */

static void
place_fetched(const char *cause, void *arg)
{
	struct place_start	*s = arg;
	struct cluster_place	*p;

	json_object_del(place_fetching, s->name);
	if (cause != NULL) {
		if (place_fetch_failed == NULL)
			place_fetch_failed = json_object();
		json_object_set_new(place_fetch_failed, s->name,
		    json_integer(s->epoch));
		cluster_host_failed(s->name, s->epoch, cause);
	} else if ((p = cluster_place_find(s->name)) != NULL &&
	    cluster_place_epoch(p) == s->epoch)
		place_reconcile_one(p);
	free(s->name);
	free(s);
}

/* 1 when p's template is here (or it has none), else 0: fetching it. */
static int
place_template_here(struct cluster_place *p)
{
	struct place_start	*s;
	const char		*from;
	json_t			*failed;
	char			*cause = NULL;
	int			 rc;

	if ((from = place_template(p)) == NULL)
		return (1);
	failed = json_object_get(place_fetch_failed, p->name);
	if (failed != NULL && json_integer_value(failed) ==
	    cluster_place_epoch(p))
		return (0);
	failed = json_object_get(place_fetching, p->name);
	if (failed != NULL && json_integer_value(failed) ==
	    cluster_place_epoch(p))
		return (0);
	s = xcalloc(1, sizeof *s);
	s->name = xstrdup(p->name);
	s->epoch = cluster_place_epoch(p);
	if ((rc = cluster_image_need(from, place_fetched, s, &cause)) == 0) {
		if (place_fetching == NULL)
			place_fetching = json_object();
		json_object_set_new(place_fetching, p->name,
		    json_integer(s->epoch));
		return (0);
	}
	free(s->name);
	free(s);
	if (rc == 1)
		return (1);
	log_warnx("cluster: %s: %s", p->name, cause);
	cluster_host_failed(p->name, cluster_place_epoch(p), cause);
	free(cause);
	return (0);
}

/* Make the local VM match what etcd says of p. */
static void
place_reconcile_one(struct cluster_place *p)
{
	struct vm		*vm = vm_find(p->name);
	struct place_start	*s;
	json_t			*args;
	char			*cause = NULL;

	/*
	 * Placed elsewhere (or nowhere) and running here: never twice. A
	 * migration's two halves are left to it: the target's until its
	 * switchover moves placement here, the source's until it quits.
	 */
	if (vm != NULL && vm_is_active(vm) && vm->pidfd != -1 &&
	    !vm_migrate_busy(vm) &&
	    p->def != NULL && (p->pl == NULL || !cluster_place_mine(p)) &&
	    vm->stop_asked != 3) {
		log_warnx("cluster: %s is placed on %s: killing the copy here "
		    "at %s", p->name, cluster_place_at(p) != NULL ?
		    cluster_place_at(p) : "no host", cluster_stamp());
		if (vm_kill(vm, &cause) != 0) {
			log_warnx("cluster: %s: %s", p->name, cause);
			free(cause);
		}
		return;
	}
	/* Its clone another host has now: this stale copy goes. */
	if (cluster_clone_release(p, vm))
		return;
	if (!cluster_host_joined() || p->def == NULL || !cluster_place_mine(p))
		return;
	if (!cluster_place_running(p)) {
		if (vm != NULL && vm_is_active(vm) && vm->state != VM_STOPPING &&
		    vm_stop(vm, json_is_true(json_object_get(p->pl, "force")),
		    place_stop_timeout(p), &cause) != 0) {
			log_warnx("cluster: %s: %s", p->name, cause);
			free(cause);
		}
		return;
	}
	if (vm == NULL && !place_template_here(p))
		return;
	if (vm == NULL) {
		args = json_deep_copy(cluster_place_def(p));
		/* A clone another host made and recorded: adopted, not made. */
		if (cluster_clone_store(p) != NULL)
			vm = cluster_clone_create(p, &cause);
		else
			vm = vm_create(args, &cause);
		json_decref(args);
		if (vm == NULL) {
			log_warnx("cluster: %s: cannot create it here: %s",
			    p->name, cause);
			cluster_host_failed(p->name, cluster_place_epoch(p),
			    cause);
			free(cause);
			return;
		}
		notify_emit("vm.created", vm->def.name, NULL);
	}
	if (vm_is_active(vm))
		cluster_clone_record(p, vm);
	if (vm_is_active(vm) || boot_queue_waiting(vm->def.name))
		return;
	log_info("cluster: %s: placed here (epoch %lld), starting at %s",
	    p->name, cluster_place_epoch(p), cluster_stamp());
	s = xcalloc(1, sizeof *s);
	s->name = xstrdup(p->name);
	s->epoch = cluster_place_epoch(p);
	if (boot_queue_start(vm, CLUSTER_WAIT_S, place_started, s, &cause) !=
	    0) {
		log_warnx("cluster: %s: %s", p->name, cause);
		cluster_host_failed(p->name, s->epoch, cause);
		free(cause);
		free(s->name);
		free(s);
	}
}

void
cluster_place_reconcile(void)
{
	struct cluster_place	*p, *p1;

	cluster_nic_sync_all();
	TAILQ_FOREACH_SAFE(p, &cluster_places, entry, p1)
		place_reconcile_one(p);
	cluster_failover_again();
}

void
cluster_place_cas_log(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	char	*what = arg;

	if (errclass != NULL)
		log_warnx("cluster: %s: %s", what, cause);
	else if (!json_is_true(json_object_get(res, "succeeded")))
		log_info("cluster: %s: placement changed meanwhile", what);
	free(what);
}

/* A VM here stopped by itself or by an admin: placement says so too. */
void
cluster_place_vm_event(const char *event, const char *vm, json_t *fields,
    void *arg)
{
	struct cluster_place	*p;
	const char		*state;
	char			*key, *val;

	if (strcmp(event, "vm.state") != 0 && strcmp(event, "vm.deleted") !=
	    0)
		return;
	cluster_host_touch();
	cluster_cmd_recheck();	/* a start or stop waiting on a VM here */
	state = json_string_value(json_object_get(fields, "state"));
	if (state == NULL || strcmp(state, "stopped") != 0 ||
	    !cluster_host_joined() || cluster_fencing())
		return;
	if ((p = cluster_place_find(vm)) == NULL || !cluster_place_mine(p) ||
	    !cluster_place_running(p))
		return;
	key = cluster_key("placement/%s", vm);
	val = cluster_place_value(p, cluster_name(), 0, "stopped here");
	etcd_cas(cluster_etcd, key, p->pl_rev, val, 0, cluster_place_cas_log,
	    xstrdup(vm));
	free(key);
	free(val);
}

/* ---- the watch ---- */

void
cluster_place_event(const char *key, json_t *kv, int put)
{
	struct cluster_place	*p;
	struct vm		*vm;
	const char		*name = strchr(key, '/') + 1, *val;
	json_t			*v = NULL;
	char			*cause = NULL;

	if (*name == '\0')
		return;
	val = json_string_value(json_object_get(kv, "value"));
	if (put && (val == NULL || (v = json_loads(val, 0, NULL)) == NULL ||
	    !json_is_object(v))) {
		log_warnx("cluster: %s: not a JSON object", key);
		json_decref(v);
		return;
	}
	if (strncmp(key, "stores/", 7) == 0) {
		if (stores == NULL)
			stores = json_object();
		if (put)
			json_object_set_new(stores, name, v);
		else
			json_object_del(stores, name);
		cluster_failover_again();
		return;
	}
	p = place_get(name);
	if (strncmp(key, "vms/", 4) == 0) {
		json_decref(p->def);
		p->def = v;
		p->def_gen = cluster_gen;
		p->def_rev = put ? json_integer_value(json_object_get(kv,
		    "mod_revision")) : 0;
		if (!put && (vm = vm_find(name)) != NULL && !vm_is_active(vm)
		    && vm_delete(vm, &cause) != 0) {
			log_warnx("cluster: %s: %s", name, cause);
			free(cause);
		}
		cluster_pool_kick();	/* a pool member that still runs */
	} else {
		json_decref(p->pl);
		p->pl = v;
		p->pl_gen = cluster_gen;
		p->pl_rev = put ? json_integer_value(json_object_get(kv,
		    "mod_revision")) : 0;
	}
	/* A stopped copy takes etcd's NICs before placement may start it. */
	cluster_nic_sync(p);
	place_reconcile_one(p);
	place_forget(p);
}

/* After a full read: what it lacked was deleted meanwhile. */
void
cluster_place_sweep(unsigned int gen)
{
	struct cluster_place	*p, *p1;
	char			*key, *name;

	TAILQ_FOREACH_SAFE(p, &cluster_places, entry, p1) {
		name = xstrdup(p->name);
		if (p->pl != NULL && p->pl_gen != gen) {
			key = cluster_key("placement/%s", name);
			cluster_place_event(key + strlen("/qdesk/v1/"), NULL, 0);
			free(key);
		}
		if ((p = cluster_place_find(name)) != NULL && p->def != NULL &&
		    p->def_gen != gen) {
			key = cluster_key("vms/%s", name);
			cluster_place_event(key + strlen("/qdesk/v1/"), NULL, 0);
			free(key);
		}
		free(name);
	}
}
