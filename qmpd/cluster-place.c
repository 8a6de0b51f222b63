/*
 * Placement: which host runs which desktop. vms/VM holds the definition
 * (the vm.create arguments, so any host can create it locally) and the
 * host it is pinned to, if any; placement/VM = {"host","epoch","state"}
 * says where it runs and whether it should, and is written only by
 * etcd_cas on the key's mod_revision, so two hosts can never both claim
 * a desktop. Every host watches both: the host placement names starts
 * the desktop (no host-to-host call), and a host that finds a desktop
 * running locally that placement gives to another host kills it.
 *
 * A host going down (its lease expired) arms a timer of fence_delay:
 * by then that host has fenced itself, and the desktops it ran that can
 * run elsewhere (no disk, or a disk on a shared store) are placed on
 * another host; the others wait for it, shown "host down".
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

#define PLACE_WAIT_S	120	/* a start or stop asked of another host */
#define PLACE_MEM_SAME	512	/* MiB of free memory that make no difference */

/* What etcd says of one VM: its definition and its placement. */
struct place {
	char			*name;
	json_t			*def;	/* vms/ value: {"def","host",...} */
	int64_t			 def_rev;
	json_t			*pl;	/* placement/ value */
	int64_t			 pl_rev;
	unsigned int		 def_gen, pl_gen;	/* cluster_gen seen */
	TAILQ_ENTRY(place)	 entry;
};
static TAILQ_HEAD(, place) places = TAILQ_HEAD_INITIALIZER(places);
static json_t	*stores;		/* stores/NAME values by name */

/* A request waiting for a host's record to show the outcome. */
struct place_wait {
	struct cmd_req		*req;
	char			*name;
	char			*host;
	long long		 epoch;
	int			 running;	/* wants running, else stopped */
	struct event		*timer;
	TAILQ_ENTRY(place_wait)	 entry;
};
static TAILQ_HEAD(, place_wait) waits = TAILQ_HEAD_INITIALIZER(waits);

/* A down host's failover, fence_delay after its lease went. */
struct place_down {
	char			*host;
	struct event		*timer;
	int			 fired;		/* failover ran once */
	TAILQ_ENTRY(place_down)	 entry;
};
static TAILQ_HEAD(, place_down) downs = TAILQ_HEAD_INITIALIZER(downs);

static struct place *
place_find(const char *name)
{
	struct place	*p;

	TAILQ_FOREACH(p, &places, entry)
		if (strcmp(p->name, name) == 0)
			return (p);
	return (NULL);
}

static struct place *
place_get(const char *name)
{
	struct place	*p;

	if ((p = place_find(name)) != NULL)
		return (p);
	p = xcalloc(1, sizeof *p);
	p->name = xstrdup(name);
	TAILQ_INSERT_TAIL(&places, p, entry);
	return (p);
}

static void
place_forget(struct place *p)
{
	if (p->def != NULL || p->pl != NULL)
		return;
	TAILQ_REMOVE(&places, p, entry);
	free(p->name);
	free(p);
}

static const char *
pl_host(const struct place *p)
{
	return (p == NULL ? NULL : json_string_value(json_object_get(p->pl,
	    "host")));
}

static long long
pl_epoch(const struct place *p)
{
	return (p == NULL ? 0 : json_integer_value(json_object_get(p->pl,
	    "epoch")));
}

static int
pl_running(const struct place *p)
{
	const char	*s;

	s = p == NULL ? NULL : json_string_value(json_object_get(p->pl,
	    "state"));
	return (s != NULL && strcmp(s, "running") == 0);
}

static int
pl_mine(const struct place *p)
{
	const char	*h = pl_host(p);

	return (h != NULL && strcmp(h, cluster_name()) == 0);
}

static json_t *
def_args(const struct place *p)
{
	return (json_object_get(p->def, "def"));
}

static const char *
def_pin(const struct place *p)
{
	return (json_string_value(json_object_get(p->def, "host")));
}

const char *
cluster_place_host(const char *vm)
{
	return (pl_host(place_find(vm)));
}

const char *
cluster_place_pin(const char *vm)
{
	struct place	*p = place_find(vm);

	return (p == NULL ? NULL : def_pin(p));
}

/*
 * Can the desktop run on another host than the one that had it: no disk
 * (kernel and initrd, stateless), or its disk on a shared store. A
 * linked clone (--from) stays on its host.
 */
static int
place_movable(const struct place *p)
{
	json_t		*args = def_args(p), *st;
	const char	*disk, *path, *k;
	size_t		 n;

	if (json_object_get(args, "from") != NULL)
		return (0);
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

/* Memory the desktop needs, MiB (vm-def.c's default when not given). */
static long long
place_memory(const struct place *p)
{
	json_t	*m = json_object_get(def_args(p), "memory");

	return (json_is_integer(m) ? json_integer_value(m) : 512);
}

/*
 * The host for p: its pin, else the up, undrained host with the most
 * free memory (less what is placed there and not yet running; within
 * PLACE_MEM_SAME the one with fewer desktops) that has its template,
 * under its boot cap if any host is. exclude is skipped.
 */
static const char *
place_choose(struct place *p, const char *exclude, char **cause)
{
	struct cluster_host	*h, *best = NULL;
	struct place		*q;
	const char		*pin = def_pin(p), *from;
	long long		 free_mb, best_free = 0, need;
	int			 capped, best_capped = 1, n, best_n = 0;
	json_t			*tpl, *v;
	size_t			 i;
	int			 has;

	from = json_string_value(json_object_get(def_args(p), "from"));
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
		if (from != NULL) {
			has = 0;
			tpl = json_object_get(h->rec, "templates");
			json_array_foreach(tpl, i, v)
				if (json_is_string(v) && strcmp(
				    json_string_value(v), from) == 0)
					has = 1;
			if (!has)
				continue;
		}
		free_mb = json_integer_value(json_object_get(h->rec,
		    "mem_free"));
		n = json_array_size(json_object_get(h->rec, "running")) +
		    json_array_size(json_object_get(h->rec, "starting"));
		TAILQ_FOREACH(q, &places, entry) {
			if (q == p || !pl_running(q) || strcmp(pl_host(q),
			    h->name) != 0 || cluster_host_lists(h, "running",
			    q->name) || cluster_host_lists(h, "starting",
			    q->name))
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
		/* Free memory within PLACE_MEM_SAME is a tie: fewer wins. */
		if (best == NULL || (best_capped && !capped) ||
		    (capped == best_capped &&
		    (free_mb > best_free + PLACE_MEM_SAME ||
		    (free_mb >= best_free - PLACE_MEM_SAME && (n < best_n ||
		    (n == best_n && free_mb > best_free)))))) {
			best = h;
			best_free = free_mb;
			best_n = n;
			best_capped = capped;
		}
	}
	if (best == NULL) {
		if (from != NULL)
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
static char *
place_value(struct place *p, const char *host, int running,
    const char *why)
{
	json_t	*v;
	char	*s;

	v = json_pack("{s:s,s:I,s:s,s:s?,s:I}", "host", host, "epoch",
	    (json_int_t)pl_epoch(p) + (running ? 1 : 0), "state", running ?
	    "running" : "stopped", "why", why, "time",
	    (json_int_t)cluster_wall_ms());
	s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	return (s);
}

/* ---- this host acting on placement ---- */

struct place_start {
	char		*name;
	long long	 epoch;
};

static void
place_started(void *arg, json_t *result, const char *errclass,
    const char *cause)
{
	struct place_start	*s = arg;

	if (errclass != NULL) {
		log_warnx("cluster: %s: start failed: %s", s->name, cause);
		cluster_host_failed(s->name, s->epoch, cause);
	} else {
		log_info("cluster: %s: running here at %s (epoch %lld)",
		    s->name, cluster_stamp(), s->epoch);
		cluster_host_failed(s->name, s->epoch, NULL);
	}
	json_decref(result);
	free(s->name);
	free(s);
}

/* Make the local VM match what etcd says of p. */
static void
place_reconcile_one(struct place *p)
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
	    p->def != NULL && (p->pl == NULL || !pl_mine(p)) &&
	    vm->stop_asked != 3) {
		log_warnx("cluster: %s is placed on %s: killing the copy here "
		    "at %s", p->name, pl_host(p) != NULL ? pl_host(p) :
		    "no host", cluster_stamp());
		if (vm_kill(vm, &cause) != 0) {
			log_warnx("cluster: %s: %s", p->name, cause);
			free(cause);
		}
		return;
	}
	if (!cluster_host_joined() || p->def == NULL || !pl_mine(p))
		return;
	if (!pl_running(p)) {
		if (vm != NULL && vm_is_active(vm) && vm->state != VM_STOPPING &&
		    vm_stop(vm, 0, 30, &cause) != 0) {
			log_warnx("cluster: %s: %s", p->name, cause);
			free(cause);
		}
		return;
	}
	if (vm == NULL) {
		args = json_deep_copy(def_args(p));
		vm = vm_create(args, &cause);
		json_decref(args);
		if (vm == NULL) {
			log_warnx("cluster: %s: cannot create it here: %s",
			    p->name, cause);
			cluster_host_failed(p->name, pl_epoch(p), cause);
			free(cause);
			return;
		}
		notify_emit("vm.created", vm->def.name, NULL);
	}
	if (vm_is_active(vm) || boot_queue_waiting(vm->def.name))
		return;
	log_info("cluster: %s: placed here (epoch %lld), starting at %s",
	    p->name, pl_epoch(p), cluster_stamp());
	s = xcalloc(1, sizeof *s);
	s->name = xstrdup(p->name);
	s->epoch = pl_epoch(p);
	if (boot_queue_start(vm, PLACE_WAIT_S, place_started, s, &cause) !=
	    0) {
		log_warnx("cluster: %s: %s", p->name, cause);
		cluster_host_failed(p->name, s->epoch, cause);
		free(cause);
		free(s->name);
		free(s);
	}
}

static void	place_down_again(void);

void
cluster_place_reconcile(void)
{
	struct place	*p, *p1;

	TAILQ_FOREACH_SAFE(p, &places, entry, p1)
		place_reconcile_one(p);
	place_down_again();
}

static void
place_cas_log_cb(void *arg, json_t *res, const char *errclass,
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
	struct place	*p;
	const char	*state;
	char		*key, *val;

	if (strcmp(event, "vm.state") != 0 && strcmp(event, "vm.deleted") !=
	    0)
		return;
	cluster_host_touch();
	state = json_string_value(json_object_get(fields, "state"));
	if (state == NULL || strcmp(state, "stopped") != 0 ||
	    !cluster_host_joined() || cluster_fencing())
		return;
	if ((p = place_find(vm)) == NULL || !pl_mine(p) || !pl_running(p))
		return;
	key = cluster_key("placement/%s", vm);
	val = place_value(p, cluster_name(), 0, "stopped here");
	etcd_cas(cluster_etcd, key, p->pl_rev, val, 0, place_cas_log_cb,
	    xstrdup(vm));
	free(key);
	free(val);
}

/* ---- live migration ---- */

struct place_mig {
	char			*name;
	char			*from;
	long long		 epoch;		/* as written */
	void			(*cb)(const char *, int, const char *, void *);
	void			*arg;
};

static void
place_mig_end(struct place_mig *pm, int ok, const char *why)
{
	pm->cb(pm->name, ok, why, pm->arg);
	free(pm->name);
	free(pm->from);
	free(pm);
}

/* The JSON value of the first key an etcd_get found, or NULL. */
static json_t *
place_got_value(json_t *res)
{
	const char	*val;

	val = json_string_value(json_object_get(json_array_get(
	    json_object_get(res, "kvs"), 0), "value"));
	return (val != NULL ? json_loads(val, 0, NULL) : NULL);
}

/* After an etcd error: did our swap land anyway? */
static void
place_mig_reread_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct place_mig	*pm = arg;
	json_t			*v;
	int			 ok;

	v = errclass == NULL ? place_got_value(res) : NULL;
	ok = v != NULL && json_integer_value(json_object_get(v, "epoch")) ==
	    pm->epoch && strcmp(json_string_value(json_object_get(v,
	    "host")) != NULL ? json_string_value(json_object_get(v, "host")) :
	    "", cluster_name()) == 0;
	json_decref(v);
	place_mig_end(pm, ok, ok ? NULL : errclass != NULL ? cause :
	    "placement changed meanwhile");
}

static void
place_mig_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	struct place_mig	*pm = arg;
	char			*key;

	if (errclass != NULL) {
		log_warnx("cluster: %s: migration's placement: %s", pm->name,
		    cause);
		key = cluster_key("placement/%s", pm->name);
		etcd_get(cluster_etcd, key, 0, place_mig_reread_cb, pm);
		free(key);
		return;
	}
	if (!json_is_true(json_object_get(res, "succeeded"))) {
		place_mig_end(pm, 0, "placement changed meanwhile");
		return;
	}
	log_info("cluster: %s: migrated from %s, placed here (epoch %lld) at "
	    "%s", pm->name, pm->from, pm->epoch, cluster_stamp());
	place_mig_end(pm, 1, NULL);
}

/*
 * A migration's switchover on its target: placement/VM moves from the
 * source to this host, epoch + 1, running, by one compare-and-swap. The
 * VM's incoming QEMU is active here already, so this host's own watch
 * does not start another copy; a failed swap refuses (the source
 * resumes). cb(name, ok, why, arg), never from inside this call.
 */
int
cluster_place_migrated(const char *name, const char *from,
    void (*cb)(const char *, int, const char *, void *), void *arg,
    char **cause)
{
	struct place		*p = place_find(name);
	struct place_mig	*pm;
	char			*key, *val, *why;

	if (p == NULL || p->def == NULL)
		return (1);	/* not a VM of the cluster: nothing to move */
	if (!cluster_host_joined()) {
		xasprintf(cause, "this host (%s) is not in the cluster now",
		    cluster_name());
		return (-1);
	}
	if (pl_host(p) == NULL || strcmp(pl_host(p), from) != 0) {
		xasprintf(cause, "placement of %s names %s, not the source %s",
		    name, pl_host(p) != NULL ? pl_host(p) : "no host", from);
		return (-1);
	}
	pm = xcalloc(1, sizeof *pm);
	pm->name = xstrdup(name);
	pm->from = xstrdup(from);
	pm->epoch = pl_epoch(p) + 1;
	pm->cb = cb;
	pm->arg = arg;
	xasprintf(&why, "migrated from %s", from);
	key = cluster_key("placement/%s", name);
	val = place_value(p, cluster_name(), 1, why);
	etcd_cas(cluster_etcd, key, p->pl_rev, val, 0, place_mig_cb, pm);
	free(why);
	free(key);
	free(val);
	return (0);
}

struct place_resume {
	char	*name;
	void	(*cb)(const char *, int, void *);
	void	*arg;
};

static void
place_resume_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct place_resume	*pr = arg;
	const char		*host = NULL;
	json_t			*v;

	v = errclass == NULL ? place_got_value(res) : NULL;
	if (v != NULL)
		host = json_string_value(json_object_get(v, "host"));
	if (errclass != NULL)
		log_warnx("cluster: %s: placement unknown (%s): not resumed",
		    pr->name, cause);
	pr->cb(pr->name, errclass == NULL && (host == NULL ||
	    strcmp(host, cluster_name()) == 0), pr->arg);
	json_decref(v);
	free(pr->name);
	free(pr);
}

/*
 * A source stopped for a switchover that failed: may it resume? Only if
 * placement/VM (read from etcd, not the watch's view, which may lag)
 * still names this host; cb(name, mine, arg).
 */
void
cluster_place_resume(const char *name, void (*cb)(const char *, int,
    void *), void *arg)
{
	struct place_resume	*pr;
	char			*key;

	pr = xcalloc(1, sizeof *pr);
	pr->name = xstrdup(name);
	pr->cb = cb;
	pr->arg = arg;
	key = cluster_key("placement/%s", name);
	etcd_get(cluster_etcd, key, 0, place_resume_cb, pr);
	free(key);
}

/* The host placement would choose for VM name, other than exclude. */
const char *
cluster_place_choose(const char *name, const char *exclude, char **cause)
{
	struct place	*p = place_find(name);

	if (p == NULL || p->def == NULL) {
		xasprintf(cause, "VM %s is not a VM of the cluster", name);
		return (NULL);
	}
	return (place_choose(p, exclude, cause));
}

/* ---- waiting for another host ---- */

static void
place_wait_free(struct place_wait *w)
{
	TAILQ_REMOVE(&waits, w, entry);
	event_free(w->timer);
	free(w->name);
	free(w->host);
	free(w);
}

static void
place_wait_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct place_wait	*w = arg;

	cmd_error(w->req, ERR_TIMEOUT, "%s: host %s did not report it %s "
	    "within %d s", w->name, w->host, w->running ? "running" :
	    "stopped", PLACE_WAIT_S);
	place_wait_free(w);
}

static json_t	*place_json(struct place *);

/* Has the host done what w waits for (or failed, or gone)? */
static void
place_wait_check(struct place_wait *w)
{
	struct cluster_host	*h = cluster_host_find(w->host);
	struct place		*p = place_find(w->name);
	json_t			*f;
	int			 listed;

	if (!cluster_host_up(h)) {
		cmd_error(w->req, ERR_STATE, "%s: host %s went down",
		    w->name, w->host);
		place_wait_free(w);
		return;
	}
	f = json_object_get(json_object_get(h->rec, "failed"), w->name);
	if (w->running && f != NULL && json_integer_value(json_object_get(f,
	    "epoch")) == w->epoch) {
		cmd_error(w->req, ERR_QEMU, "%s on %s: %s", w->name, w->host,
		    json_string_value(json_object_get(f, "why")));
		place_wait_free(w);
		return;
	}
	listed = cluster_host_lists(h, "running", w->name);
	if (w->running ? !listed : (listed || cluster_host_lists(h,
	    "starting", w->name)))
		return;
	cmd_reply(w->req, p != NULL ? place_json(p) : json_object());
	place_wait_free(w);
}

static void
place_wait_add(struct cmd_req *req, const char *name, const char *host,
    long long epoch, int running)
{
	struct place_wait	*w;
	struct timeval		 tv = { PLACE_WAIT_S, 0 };

	w = xcalloc(1, sizeof *w);
	w->req = req;
	w->name = xstrdup(name);
	w->host = xstrdup(host);
	w->epoch = epoch;
	w->running = running;
	w->timer = evtimer_new(qmpd->base, place_wait_timeout, w);
	evtimer_add(w->timer, &tv);
	TAILQ_INSERT_TAIL(&waits, w, entry);
	place_wait_check(w);
}

/* ---- failover ---- */

static void
place_down_free(struct place_down *d)
{
	TAILQ_REMOVE(&downs, d, entry);
	event_free(d->timer);
	free(d->host);
	free(d);
}

/* fence_delay after host's lease expired: place its desktops elsewhere. */
static void
place_down_cb(evutil_socket_t fd, short events, void *arg)
{
	struct place_down	*d = arg;
	struct place		*p;
	const char		*to;
	char			*cause, *key, *val, *why;

	if (cluster_host_up(cluster_host_find(d->host))) {
		place_down_free(d);
		return;
	}
	if (!cluster_host_joined())
		return;		/* a fenced host moves nothing */
	if (!d->fired)
		log_info("cluster: host %s down for %d s more than its lease: "
		    "failover at %s", d->host, qmpd->cluster->fence_delay,
		    cluster_stamp());
	TAILQ_FOREACH(p, &places, entry) {
		if (p->def == NULL || !pl_running(p) || strcmp(pl_host(p),
		    d->host) != 0)
			continue;
		if (!place_movable(p)) {
			if (!d->fired)
				log_info("cluster: %s waits for %s (its disk is "
				    "not on a shared store)", p->name, d->host);
			continue;
		}
		cause = NULL;
		if ((to = place_choose(p, d->host, &cause)) == NULL) {
			log_warnx("cluster: failover of %s: %s", p->name,
			    cause);
			free(cause);
			continue;
		}
		log_info("cluster: failover: %s from %s to %s at %s", p->name,
		    d->host, to, cluster_stamp());
		xasprintf(&why, "failover from %s", d->host);
		key = cluster_key("placement/%s", p->name);
		val = place_value(p, to, 1, why);
		etcd_cas(cluster_etcd, key, p->pl_rev, val, 0,
		    place_cas_log_cb, xstrdup(p->name));
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
static void
place_down_again(void)
{
	struct place_down	*d, *d1;

	TAILQ_FOREACH_SAFE(d, &downs, entry, d1)
		if (!evtimer_pending(d->timer, NULL))
			place_down_cb(-1, 0, d);
}

void
cluster_place_host_down(const char *host)
{
	struct place_down	*d;
	struct timeval		 tv = { qmpd->cluster->fence_delay, 0 };

	TAILQ_FOREACH(d, &downs, entry)
		if (strcmp(d->host, host) == 0)
			return;
	d = xcalloc(1, sizeof *d);
	d->host = xstrdup(host);
	d->timer = evtimer_new(qmpd->base, place_down_cb, d);
	evtimer_add(d->timer, &tv);
	TAILQ_INSERT_TAIL(&downs, d, entry);
	cluster_place_host_up(NULL);	/* waiters on it learn now */
}

/* host is up again (NULL: some record changed): waiters look again. */
void
cluster_place_host_up(const char *host)
{
	struct place_down	*d, *d1;
	struct place_wait	*w, *w1;

	TAILQ_FOREACH_SAFE(d, &downs, entry, d1)
		if (host != NULL && strcmp(d->host, host) == 0)
			place_down_free(d);
	TAILQ_FOREACH_SAFE(w, &waits, entry, w1)
		place_wait_check(w);
}

/* ---- the watch ---- */

void
cluster_place_event(const char *key, json_t *kv, int put)
{
	struct place	*p;
	struct vm	*vm;
	const char	*name = strchr(key, '/') + 1, *val;
	json_t		*v = NULL;
	char		*cause = NULL;

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
		place_down_again();
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
	} else {
		json_decref(p->pl);
		p->pl = v;
		p->pl_gen = cluster_gen;
		p->pl_rev = put ? json_integer_value(json_object_get(kv,
		    "mod_revision")) : 0;
	}
	place_reconcile_one(p);
	place_forget(p);
}

/* After a full read: what it lacked was deleted meanwhile. */
void
cluster_place_sweep(unsigned int gen)
{
	struct place	*p, *p1;
	char		*key, *name;

	TAILQ_FOREACH_SAFE(p, &places, entry, p1) {
		name = xstrdup(p->name);
		if (p->pl != NULL && p->pl_gen != gen) {
			key = cluster_key("placement/%s", name);
			cluster_place_event(key + strlen("/qdesk/v1/"), NULL, 0);
			free(key);
		}
		if ((p = place_find(name)) != NULL && p->def != NULL &&
		    p->def_gen != gen) {
			key = cluster_key("vms/%s", name);
			cluster_place_event(key + strlen("/qdesk/v1/"), NULL, 0);
			free(key);
		}
		free(name);
	}
}

/* ---- the vm.* commands in cluster mode ---- */

/* A VM as vm show tells it, from etcd (it runs elsewhere or nowhere). */
static json_t *
place_json(struct place *p)
{
	struct cluster_host	*h;
	struct vm		*vm;
	json_t			*j, *f;
	const char		*host = pl_host(p), *state = "stopped";
	const char		*reason = NULL;

	if (pl_mine(p) && (vm = vm_find(p->name)) != NULL)
		return (vm_to_json(vm));
	j = p->def != NULL ? json_deep_copy(def_args(p)) : json_object();
	json_object_set_new(j, "name", json_string(p->name));
	if (pl_running(p)) {
		h = cluster_host_find(host);
		f = json_object_get(json_object_get(h != NULL ? h->rec : NULL,
		    "failed"), p->name);
		if (!cluster_host_up(h)) {
			state = "host down";
			reason = place_movable(p) ? "failover pending" :
			    "its disk is not on a shared store: it waits for "
			    "its host";
		} else if (cluster_host_lists(h, "running", p->name))
			state = "running";
		else if (f != NULL && json_integer_value(json_object_get(f,
		    "epoch")) == pl_epoch(p)) {
			state = "crashed";
			reason = json_string_value(json_object_get(f, "why"));
		} else
			state = "starting";
	}
	json_object_set_new(j, "state", json_string(state));
	json_object_set_new(j, "reason", reason != NULL ? json_string(reason) :
	    json_null());
	json_object_set_new(j, "host", host != NULL ? json_string(host) :
	    json_null());
	json_object_set_new(j, "pin", def_pin(p) != NULL ?
	    json_string(def_pin(p)) : json_null());
	json_object_set_new(j, "epoch", json_integer(pl_epoch(p)));
	return (j);
}

/* An etcd write on behalf of a request. */
struct place_op {
	struct cmd_req	*req;
	char		*name;
	char		*host;
	json_t		*reply;		/* vm.create's answer */
	int		 running;
	long long	 epoch;		/* the placement's, as written */
};

static void
place_op_free(struct place_op *op)
{
	free(op->name);
	free(op->host);
	json_decref(op->reply);
	free(op);
}

static void
place_create_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct place_op	*op = arg;

	if (errclass != NULL)
		cmd_error(op->req, errclass, "vm create %s: %s", op->name,
		    cause);
	else if (!json_is_true(json_object_get(res, "succeeded")))
		cmd_error(op->req, ERR_EXISTS, "a VM named %s already exists "
		    "in the cluster", op->name);
	else {
		log_info("cluster: %s: defined in etcd", op->name);
		cmd_reply(op->req, op->reply);
		op->reply = NULL;
	}
	place_op_free(op);
}

/* The VM of the cluster whose definition names this disk file, or NULL. */
static const char *
place_disk_user(const char *disk)
{
	struct place	*p;
	const char	*d;

	if (disk == NULL)
		return (NULL);
	TAILQ_FOREACH(p, &places, entry) {
		d = json_string_value(json_object_get(def_args(p), "disk"));
		if (d != NULL && strcmp(d, disk) == 0)
			return (p->name);
	}
	return (NULL);
}

static enum cmd_retval
place_create(struct cmd_req *req, const char *name)
{
	struct cluster_host	*h;
	struct place_op		*op;
	struct vm_def		 d;
	json_t			*args, *rec;
	const char		*pin = cmd_arg_str(req, "host", NULL);
	const char		*other;
	char			*cause = NULL, *key, *val;

	if (vm_find(name) != NULL || (place_find(name) != NULL &&
	    place_find(name)->def != NULL)) {
		cmd_error(req, ERR_EXISTS, "a VM named %s already exists",
		    name);
		return (CMD_RETURN_DONE);
	}
	if (pin != NULL && ((h = cluster_host_find(pin)) == NULL ||
	    (h->rec == NULL && h->member == NULL))) {
		cmd_error(req, ERR_ARG, "no host named %s in the cluster "
		    "(qdesk host list)", pin);
		return (CMD_RETURN_DONE);
	}
	args = json_deep_copy(req->args);
	json_object_del(args, "host");
	memset(&d, 0, sizeof d);
	if (vm_def_from_json(&d, args, &cause) != 0) {
		vm_def_clear(&d);
		json_decref(args);
		cmd_fail(req, ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	if (d.kernel == NULL && d.disk == NULL && d.from == NULL) {
		cmd_error(req, ERR_ARG, "VM %s needs something to boot: give "
		    "--kernel, --disk or --from", name);
		vm_def_clear(&d);
		json_decref(args);
		return (CMD_RETURN_DONE);
	}
	vm_def_clear(&d);
	if ((other = place_disk_user(json_string_value(json_object_get(args,
	    "disk")))) != NULL) {
		cmd_error(req, ERR_ARG, "disk %s is VM %s's already: one disk "
		    "file, one desktop", json_string_value(json_object_get(args,
		    "disk")), other);
		json_decref(args);
		return (CMD_RETURN_DONE);
	}
	rec = json_pack("{s:O,s:s?,s:I,s:s}", "def", args, "host", pin,
	    "created", (json_int_t)cluster_wall_ms(), "by", cluster_name());
	val = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	op = xcalloc(1, sizeof *op);
	op->req = req;
	op->name = xstrdup(name);
	op->reply = args;
	json_object_set_new(args, "state", json_string("stopped"));
	json_object_set_new(args, "host", json_null());
	json_object_set_new(args, "pin", pin != NULL ? json_string(pin) :
	    json_null());
	key = cluster_key("vms/%s", name);
	etcd_cas(cluster_etcd, key, 0, val, 0, place_create_cb, op);
	free(key);
	free(val);
	return (CMD_RETURN_WAIT);
}

/* The placement CAS of a start or stop: then wait for the host. */
static void
place_set_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	struct place_op	*op = arg;
	struct place	*p = place_find(op->name);
	json_t		*resp, *kv;
	const char	*val;
	json_t		*v;

	if (errclass != NULL) {
		cmd_error(op->req, errclass, "placement of %s: %s", op->name,
		    cause);
		place_op_free(op);
		return;
	}
	if (!json_is_true(json_object_get(res, "succeeded"))) {
		resp = json_array_get(json_object_get(res, "responses"), 0);
		kv = json_array_get(json_object_get(json_object_get(resp,
		    "response_range"), "kvs"), 0);
		val = json_string_value(json_object_get(kv, "value"));
		v = val != NULL ? json_loads(val, 0, NULL) : NULL;
		cmd_error(op->req, ERR_STATE, "placement of %s changed "
		    "meanwhile (now on %s): try again", op->name,
		    json_string_value(json_object_get(v, "host")) != NULL ?
		    json_string_value(json_object_get(v, "host")) : "no host");
		json_decref(v);
		place_op_free(op);
		return;
	}
	log_info("cluster: %s placed on %s (%s) at %s", op->name, op->host,
	    op->running ? "running" : "stopped", cluster_stamp());
	if (!cluster_host_up(cluster_host_find(op->host)))
		cmd_reply(op->req, p != NULL ? place_json(p) : json_object());
	else
		place_wait_add(op->req, op->name, op->host, op->epoch,
		    op->running);
	place_op_free(op);
}

static enum cmd_retval
place_set(struct cmd_req *req, struct place *p, const char *host,
    int running)
{
	struct place_op	*op;
	char		*key, *val;

	op = xcalloc(1, sizeof *op);
	op->req = req;
	op->name = xstrdup(p->name);
	op->host = xstrdup(host);
	op->running = running;
	op->epoch = pl_epoch(p) + (running ? 1 : 0);
	key = cluster_key("placement/%s", p->name);
	val = place_value(p, host, running, running ? "started by admin" :
	    "stopped by admin");
	etcd_cas(cluster_etcd, key, p->pl_rev, val, 0, place_set_cb, op);
	free(key);
	free(val);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
place_start(struct cmd_req *req, struct place *p)
{
	struct cluster_host	*h;
	const char		*host = pl_host(p), *pin = def_pin(p);
	char			*cause = NULL;
	json_t			*f;

	h = host != NULL ? cluster_host_find(host) : NULL;
	/* Placed and up: wait for it, unless this epoch's start failed. */
	f = json_object_get(json_object_get(h != NULL ? h->rec : NULL,
	    "failed"), p->name);
	if (pl_running(p) && cluster_host_up(h) && (f == NULL ||
	    json_integer_value(json_object_get(f, "epoch")) != pl_epoch(p))) {
		place_wait_add(req, p->name, host, pl_epoch(p), 1);
		return (CMD_RETURN_WAIT);
	}
	if (pl_running(p) && !cluster_host_up(h) && !place_movable(p)) {
		cmd_error(req, ERR_STATE, "VM %s: its host %s is down and its "
		    "disk is not on a shared store: it waits for %s", p->name,
		    host, host);
		return (CMD_RETURN_DONE);
	}
	/* Where it ran, if that host can take it; else the best host. */
	if (h == NULL || !cluster_host_up(h) || h->draining ||
	    (pin != NULL && strcmp(pin, host) != 0)) {
		if ((host = place_choose(p, NULL, &cause)) == NULL) {
			cmd_fail(req, ERR_STATE, cause);
			return (CMD_RETURN_DONE);
		}
	}
	return (place_set(req, p, host, 1));
}

static int
place_stop(struct cmd_req *req, struct place *p)
{
	struct vm	*vm = vm_find(p->name);

	if (!pl_running(p)) {
		if (vm != NULL && vm_is_active(vm))
			return (-1);
		cmd_error(req, ERR_STATE, "VM %s is not running (stopped)",
		    p->name);
		return (CMD_RETURN_DONE);
	}
	if (pl_mine(p) && vm != NULL && vm_is_active(vm))
		return (-1);	/* here: the local stop, then the event */
	return (place_set(req, p, pl_host(p), 0));
}

static void
place_delete_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct place_op	*op = arg;

	if (errclass != NULL)
		cmd_error(op->req, errclass, "vm delete %s: %s", op->name,
		    cause);
	else if (!json_is_true(json_object_get(res, "succeeded")))
		cmd_error(op->req, ERR_STATE, "VM %s changed meanwhile: try "
		    "again", op->name);
	else
		cmd_reply(op->req, json_object());
	place_op_free(op);
}

static enum cmd_retval
place_delete(struct cmd_req *req, struct place *p)
{
	struct place_op	*op;
	struct vm	*vm = vm_find(p->name);
	char		*kd, *kp;

	if (pl_running(p) || (vm != NULL && vm_is_active(vm))) {
		cmd_error(req, ERR_STATE, "VM %s is running on %s: stop it "
		    "first", p->name, pl_host(p) != NULL ? pl_host(p) :
		    cluster_name());
		return (CMD_RETURN_DONE);
	}
	op = xcalloc(1, sizeof *op);
	op->req = req;
	op->name = xstrdup(p->name);
	kd = cluster_key("vms/%s", p->name);
	kp = cluster_key("placement/%s", p->name);
	etcd_txn(cluster_etcd, json_pack("[o]", etcd_cmp_mod_revision(kd,
	    p->def_rev)), json_pack("[o,o]", etcd_op_delete(kd, 0),
	    etcd_op_delete(kp, 0)), NULL, place_delete_cb, op);
	free(kd);
	free(kp);
	return (CMD_RETURN_WAIT);
}

/* vm.list: local VMs that run here or nowhere else, then etcd's others. */
static enum cmd_retval
place_list(struct cmd_req *req)
{
	struct vm	*vm;
	struct place	*p;
	json_t		*a = json_array();

	TAILQ_FOREACH(vm, &vms, entry) {
		p = place_find(vm->def.name);
		if (p == NULL || p->pl == NULL || pl_mine(p))
			json_array_append_new(a, vm_to_json(vm));
	}
	TAILQ_FOREACH(p, &places, entry) {
		if (p->def == NULL)
			continue;
		vm = vm_find(p->name);
		if (vm != NULL && (p->pl == NULL || pl_mine(p)))
			continue;
		json_array_append_new(a, place_json(p));
	}
	cmd_reply(req, json_pack("{s:o}", "vms", a));
	return (CMD_RETURN_DONE);
}

/*
 * vm.create, start, stop, delete, show and list in cluster mode; -1 when
 * the VM is only local (made before this host joined a cluster) or runs
 * here, and the local command is the right one.
 */
int
cluster_place_cmd(struct cmd_req *req)
{
	const char	*cmd = req->entry->name;
	const char	*name = cmd_arg_str(req, "name", "");
	struct place	*p;
	struct vm	*vm;

	if (strcmp(cmd, "vm.list") == 0)
		return (place_list(req));
	if (strcmp(cmd, "vm.create") == 0)
		return (place_create(req, name));
	p = place_find(name);
	vm = vm_find(name);
	if (p == NULL || p->def == NULL)
		return (-1);		/* local only, or NotFound */
	if (strcmp(cmd, "vm.show") == 0) {
		if (vm != NULL && (p->pl == NULL || pl_mine(p)))
			return (-1);
		cmd_reply(req, place_json(p));
		return (CMD_RETURN_DONE);
	}
	if (!cluster_host_joined()) {
		cmd_error(req, ERR_STATE, "this host (%s) is not in the cluster "
		    "now (no lease in etcd): no placement", cluster_name());
		return (CMD_RETURN_DONE);
	}
	if (strcmp(cmd, "vm.start") == 0)
		return (place_start(req, p));
	if (strcmp(cmd, "vm.stop") == 0)
		return (place_stop(req, p));
	if (strcmp(cmd, "vm.delete") == 0)
		return (place_delete(req, p));
	return (-1);
}
