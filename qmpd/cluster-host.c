/*
 * Hosts of the cluster. This host's record hosts/H lives under a lease
 * its keeper renews every lease_ttl/3: the key vanishing is what "H is
 * down" means to everyone. The record is written again every lease_ttl/3
 * (its "time" says when, so "lease age" and clock skew can be told) and
 * whenever a VM changes state here. members/H (no lease) keeps a dead
 * host listed; drain/H (no lease, any admin may write it) stops placing
 * there. The view of every host comes from cluster.c's watch.
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
#include "img.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define CLUSTER_SKEW_MS		2000	/* clocks may differ this much */
#define CLUSTER_REJOIN_MS	1000

struct cluster_hosts	 cluster_hosts = TAILQ_HEAD_INITIALIZER(cluster_hosts);

static struct etcd_keeper *host_keeper;
static int		 host_joined;
static int		 host_joining;
static struct event	*host_refresh_ev;	/* every lease_ttl/3 */
static struct event	*host_touch_ev;		/* soon, after a change */
static struct event	*host_rejoin_ev;
static json_t		*host_failed;		/* {"VM": {"epoch","why"}} */
static char		 host_instance[128];

struct cluster_host *
cluster_host_find(const char *name)
{
	struct cluster_host	*h;

	TAILQ_FOREACH(h, &cluster_hosts, entry)
		if (strcmp(h->name, name) == 0)
			return (h);
	return (NULL);
}

/* The host named, added to the view (sorted by name) if new. */
static struct cluster_host *
host_get(const char *name)
{
	struct cluster_host	*h, *at;

	if ((h = cluster_host_find(name)) != NULL)
		return (h);
	h = xcalloc(1, sizeof *h);
	h->name = xstrdup(name);
	TAILQ_FOREACH(at, &cluster_hosts, entry)
		if (strcmp(at->name, name) > 0)
			break;
	if (at != NULL)
		TAILQ_INSERT_BEFORE(at, h, entry);
	else
		TAILQ_INSERT_TAIL(&cluster_hosts, h, entry);
	return (h);
}

int
cluster_host_up(const struct cluster_host *h)
{
	return (h != NULL && h->rec != NULL);
}

int
cluster_host_lists(const struct cluster_host *h, const char *list,
    const char *name)
{
	json_t	*v;
	size_t	 i;

	if (h == NULL || h->rec == NULL)
		return (0);
	json_array_foreach(json_object_get(h->rec, list), i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), name) ==
		    0)
			return (1);
	return (0);
}

int
cluster_host_joined(void)
{
	return (host_joined);
}

struct etcd_keeper *
cluster_host_keeper(void)
{
	return (host_joined ? host_keeper : NULL);
}

/* Who this qmpd is: the machine's boot and its state dir. */
static const char *
host_instance_id(void)
{
	FILE	*f;
	char	 boot[64] = "";

	if (host_instance[0] != '\0')
		return (host_instance);
	if ((f = fopen("/proc/sys/kernel/random/boot_id", "r")) != NULL) {
		if (fgets(boot, sizeof boot, f) == NULL)
			boot[0] = '\0';
		fclose(f);
	}
	boot[strcspn(boot, "\n")] = '\0';
	snprintf(host_instance, sizeof host_instance, "%s:%s", boot,
	    qmpd->state_dir);
	return (host_instance);
}

/* MiB the kernel says is available, less what local guests may still take. */
static long long
host_mem_free(void)
{
	FILE		*f;
	char		 line[128];
	long long	 kb = 0, committed = 0;
	struct vm	*vm;

	if ((f = fopen("/proc/meminfo", "r")) != NULL) {
		while (fgets(line, sizeof line, f) != NULL)
			if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
				break;
		fclose(f);
	}
	TAILQ_FOREACH(vm, &vms, entry)
		if (vm_is_active(vm))
			committed += vm->def.memory;
	return (kb / 1024 - committed);
}

static int
host_template_cb(const char *key, json_t *val, void *arg)
{
	const char	*kind = json_string_value(json_object_get(val, "kind"));

	/* A stale copy is never listed: others would fetch it. */
	if (kind != NULL && (strcmp(kind, "base") == 0 ||
	    strcmp(kind, "template") == 0) && cluster_image_listable(key, val))
		json_array_append_new(arg, json_string(key));
	return (0);
}

/* This host's record, as hosts/H holds it. */
static json_t *
host_record(void)
{
	struct cluster_conf	*c = qmpd->cluster;
	struct cluster_host	*me = cluster_host_find(c->name);
	json_t			*run = json_array(), *starting = json_array();
	json_t			*tpl = json_array();
	struct vm		*vm;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (vm->state == VM_STARTING)
			json_array_append_new(starting,
			    json_string(vm->def.name));
		else if (vm_is_active(vm))
			json_array_append_new(run, json_string(vm->def.name));
	}
	db_foreach(qmpd->db, DB_IMAGES, host_template_cb, tpl, NULL);
	if (host_failed == NULL)
		host_failed = json_object();
	return (json_pack("{s:s?,s:s?,s:I,s:i,s:i,s:o,s:o,s:o,s:b,s:I,s:s,"
	    "s:O,s:o}", "addr", c->addr, "listen", c->listen, "mem_free",
	    (json_int_t)host_mem_free(), "boot_cap", boot_queue_cap, "booting",
	    boot_queue_booting(), "running", run, "starting", starting,
	    "templates", tpl, "draining", me != NULL && me->draining, "time",
	    (json_int_t)clock_wall_ms(), "instance", host_instance_id(),
	    "failed", host_failed, "stores", cluster_stores_here()));
}

static void
host_put_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	if (errclass != NULL)
		log_debug("cluster: hosts/%s: %s", cluster_name(), cause);
}

/* Write the record again under the lease (the keeper says if it is lost). */
static void
host_refresh(void)
{
	char	*key, *val;
	json_t	*rec;

	if (!host_joined)
		return;
	rec = host_record();
	val = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	key = cluster_key("hosts/%s", cluster_name());
	etcd_put(cluster_etcd, key, val, etcd_keeper_id(host_keeper), 0,
	    host_put_cb, NULL);
	free(key);
	free(val);
}

static void
host_refresh_cb(evutil_socket_t fd, short events, void *arg)
{
	struct timeval	tv;
	int		ms = qmpd->cluster->lease_ttl * 1000 / 3;

	host_refresh();
	/* Past the lease's end only on proof that etcd has no quorum. */
	cluster_fence_watchdog(cluster_quorum_until(
	    etcd_keeper_held_until(host_keeper)));
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(host_refresh_ev, &tv);
}

static void
host_touch_cb(evutil_socket_t fd, short events, void *arg)
{
	host_refresh();
}

void
cluster_host_touch(void)
{
	struct timeval	tv = { 0, 20 * 1000 };

	if (host_touch_ev != NULL && !evtimer_pending(host_touch_ev, NULL))
		evtimer_add(host_touch_ev, &tv);
}

void
cluster_host_failed(const char *name, long long epoch, const char *why)
{
	if (host_failed == NULL)
		host_failed = json_object();
	if (why == NULL)
		json_object_del(host_failed, name);
	else
		json_object_set_new(host_failed, name, json_pack("{s:I,s:s}",
		    "epoch", (json_int_t)epoch, "why", why));
	cluster_host_touch();
}

/*
 * Start-up checks on the first view: the name is not held by another
 * live qmpd, and this host's clock agrees with every live member's
 * (their records say when they were written, at most lease_ttl ago).
 */
char *
cluster_host_refuse(void)
{
	struct cluster_host	*h;
	const char		*inst, *addr;
	long long		 diff, hi;
	char			*why = NULL;

	hi = (long long)qmpd->cluster->lease_ttl * 1000 + CLUSTER_SKEW_MS;
	TAILQ_FOREACH(h, &cluster_hosts, entry) {
		if (h->rec == NULL)
			continue;
		if (strcmp(h->name, cluster_name()) == 0) {
			inst = json_string_value(json_object_get(h->rec,
			    "instance"));
			if (inst != NULL && strcmp(inst, host_instance_id()) ==
			    0)
				continue;	/* this qmpd, restarted */
			addr = json_string_value(json_object_get(h->rec,
			    "addr"));
			xasprintf(&why, "host name %s is taken: another live "
			    "qmpd (addr %s, %s) holds hosts/%s in etcd; name "
			    "this host differently in %s", h->name, addr !=
			    NULL ? addr : "unknown", inst != NULL ? inst :
			    "unknown instance", h->name, qmpd->cluster->path);
			return (why);
		}
		if (!json_is_integer(json_object_get(h->rec, "time")))
			continue;
		diff = clock_wall_ms() - json_integer_value(
		    json_object_get(h->rec, "time")) - (clock_mono_ms() -
		    h->seen_ms);
		if (diff < -CLUSTER_SKEW_MS || diff > hi) {
			xasprintf(&why, "clock skew: this host's clock is "
			    "%.1f s %s that of %s (at most %d s allowed); sync "
			    "the clocks (NTP) before %s joins",
			    (diff < 0 ? -diff : diff) / 1000.0, diff < 0 ?
			    "behind" : "ahead of", h->name,
			    CLUSTER_SKEW_MS / 1000, cluster_name());
			return (why);
		}
	}
	return (NULL);
}

static void	host_join_read(void);

static void
host_rejoin_cb(evutil_socket_t fd, short events, void *arg)
{
	cluster_host_join();
}

static void
host_rejoin_later(void)
{
	struct timeval	tv = { 0, CLUSTER_REJOIN_MS * 1000 };

	host_joining = 0;
	if (host_keeper != NULL)
		etcd_keeper_free(host_keeper, 1);
	host_keeper = NULL;
	evtimer_add(host_rejoin_ev, &tv);
}

static void
host_members_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	if (errclass != NULL)
		log_warnx("cluster: members/%s: %s", cluster_name(), cause);
}

/* hosts/H is ours: this host is up; it may run what placement gives it. */
static void
host_joined_now(void)
{
	struct cluster_conf	*c = qmpd->cluster;
	char			*key, *val;
	json_t			*m;

	host_joined = 1;
	host_joining = 0;
	cluster_fence_disarm();
	log_info("cluster: %s joined at %s (lease %lld, ttl %d s)", c->name,
	    cluster_stamp(), (long long)etcd_keeper_id(host_keeper),
	    c->lease_ttl);
	m = json_pack("{s:s?,s:s?,s:I}", "addr", c->addr, "listen", c->listen,
	    "joined", (json_int_t)clock_wall_ms());
	val = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	key = cluster_key("members/%s", c->name);
	etcd_put(cluster_etcd, key, val, 0, 0, host_members_cb, NULL);
	free(key);
	free(val);
	host_refresh_cb(-1, 0, NULL);
	cluster_quorum_start();
	cluster_load();		/* then reconcile, on a view newer than us */
}

/* The CAS that takes hosts/H: lost to another qmpd, or ours. */
static void
host_cas_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	json_t		*resp, *kvs, *kv, *rec;
	const char	*inst = NULL, *val;

	if (errclass != NULL) {
		log_warnx("cluster: joining as %s: %s", cluster_name(), cause);
		host_rejoin_later();
		return;
	}
	if (json_is_true(json_object_get(res, "succeeded"))) {
		host_joined_now();
		return;
	}
	/* Lost: who has it? Our own write, applied by a retried attempt? */
	resp = json_array_get(json_object_get(res, "responses"), 0);
	kvs = json_object_get(json_object_get(resp, "response_range"), "kvs");
	kv = json_array_get(kvs, 0);
	if (kv == NULL) {		/* gone meanwhile: read again */
		host_join_read();
		return;
	}
	val = json_string_value(json_object_get(kv, "value"));
	rec = val != NULL ? json_loads(val, 0, NULL) : NULL;
	inst = json_string_value(json_object_get(rec, "instance"));
	if (inst != NULL && strcmp(inst, host_instance_id()) == 0 &&
	    json_integer_value(json_object_get(kv, "lease")) ==
	    etcd_keeper_id(host_keeper)) {
		json_decref(rec);
		host_joined_now();
		return;
	}
	log_warnx("cluster: host name %s is taken by another qmpd (%s); "
	    "trying again", cluster_name(), inst != NULL ? inst : "unknown");
	json_decref(rec);
	host_rejoin_later();
}

/* hosts/H as etcd has it now: take it if free or our own old one. */
static void
host_read_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	json_t		*kv, *rec = NULL, *mine;
	const char	*val, *inst = NULL;
	char		*key, *s;
	int64_t		 rev = 0;

	if (errclass != NULL) {
		log_warnx("cluster: joining as %s: %s", cluster_name(), cause);
		host_rejoin_later();
		return;
	}
	if ((kv = json_array_get(json_object_get(res, "kvs"), 0)) != NULL) {
		rev = json_integer_value(json_object_get(kv, "mod_revision"));
		val = json_string_value(json_object_get(kv, "value"));
		rec = val != NULL ? json_loads(val, 0, NULL) : NULL;
		inst = json_string_value(json_object_get(rec, "instance"));
		if (inst == NULL || strcmp(inst, host_instance_id()) != 0) {
			log_warnx("cluster: host name %s is held by another "
			    "qmpd (%s); trying again", cluster_name(),
			    inst != NULL ? inst : "unknown");
			json_decref(rec);
			host_rejoin_later();
			return;
		}
		json_decref(rec);
	}
	key = cluster_key("hosts/%s", cluster_name());
	mine = host_record();
	json_object_set_new(mine, "time", json_integer(clock_wall_ms()));
	s = json_dumps(mine, JSON_COMPACT);
	json_decref(mine);
	etcd_cas(cluster_etcd, key, rev, s, etcd_keeper_id(host_keeper),
	    host_cas_cb, NULL);
	free(s);
	free(key);
}

static void
host_join_read(void)
{
	char	*key = cluster_key("hosts/%s", cluster_name());

	etcd_get(cluster_etcd, key, 0, host_read_cb, NULL);
	free(key);
}

/* The keeper: granted (read and take hosts/H), or lost (fence). */
static void
host_keeper_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	if (errclass == NULL) {
		host_join_read();
		return;
	}
	if (strcmp(errclass, "LeaseLost") == 0 && host_joined) {
		cluster_host_lost(cause);
		return;
	}
	log_warnx("cluster: lease for %s: %s", cluster_name(), cause);
	host_rejoin_later();
}

void
cluster_host_join(void)
{
	if (host_joined || host_joining)
		return;
	if (host_refresh_ev == NULL) {
		host_refresh_ev = evtimer_new(qmpd->base, host_refresh_cb,
		    NULL);
		host_touch_ev = evtimer_new(qmpd->base, host_touch_cb, NULL);
		host_rejoin_ev = evtimer_new(qmpd->base, host_rejoin_cb, NULL);
	}
	host_joining = 1;
	host_keeper = etcd_keeper_create(cluster_etcd,
	    qmpd->cluster->lease_ttl, host_keeper_cb, NULL);
}

/*
 * The lease is gone (the keeper said so, or our key was deleted): fence
 * at once, then try to join again. Others restart what we ran only after
 * the lease expired and fence_delay more.
 */
void
cluster_host_lost(const char *why)
{
	if (!host_joined)
		return;
	host_joined = 0;
	evtimer_del(host_refresh_ev);
	cluster_fence_watchdog(0);
	cluster_fence(why);
	host_rejoin_later();
}

/* A change under hosts/, members/ or drain/. */
void
cluster_host_event(const char *key, json_t *kv, int put)
{
	struct cluster_host	*h;
	const char		*name = strchr(key, '/') + 1, *val;
	json_t			*rec = NULL;

	if (*name == '\0')
		return;
	val = json_string_value(json_object_get(kv, "value"));
	if (put && (val == NULL || (rec = json_loads(val, 0, NULL)) == NULL ||
	    !json_is_object(rec))) {
		log_warnx("cluster: %s: not a JSON object", key);
		json_decref(rec);
		return;
	}
	h = host_get(name);
	if (strncmp(key, "drain/", 6) == 0) {
		h->draining = put;
		h->drain_gen = cluster_gen;
		json_decref(rec);
		if (strcmp(name, cluster_name()) == 0)
			cluster_host_touch();
		/* An undrained host may take what a failover could not place. */
		if (!put)
			cluster_failover_again();
		return;
	}
	if (strncmp(key, "members/", 8) == 0) {
		json_decref(h->member);
		h->member = rec;
		/* A member without a host key is down (seen so at start). */
		if (put && h->rec == NULL && h->down_ms == 0) {
			h->down_ms = clock_mono_ms();
			cluster_failover_host_down(h->name);
		}
		return;
	}
	if (put) {
		json_decref(h->rec);
		h->rec = rec;
		h->gen = cluster_gen;
		h->seen_ms = clock_mono_ms();
		if (h->down_ms != 0) {
			h->down_ms = 0;
			log_info("cluster: host %s is up at %s", name,
			    cluster_stamp());
			cluster_failover_host_up(name);
			cluster_pool_kick();	/* who places prestarts */
		}
		cluster_cmd_recheck();		/* waiters look again */
		return;
	}
	json_decref(h->rec);
	h->rec = NULL;
	h->down_ms = clock_mono_ms();
	log_info("cluster: host %s is down at %s (its lease expired)", name,
	    cluster_stamp());
	if (strcmp(name, cluster_name()) == 0)
		cluster_host_lost("this host's key was deleted in etcd");
	else
		cluster_failover_host_down(name);
	cluster_pool_kick();	/* who places prestarts may change */
}

/*
 * After a full read: a host whose key it lacked is down, and one whose
 * drain/ key it lacked is undrained (an undrain between two reads, the
 * watch of the first freed before it told, as a (re)join does, left
 * hosts draining for good).
 */
void
cluster_host_sweep(unsigned int gen)
{
	struct cluster_host	*h;
	char			*key;

	TAILQ_FOREACH(h, &cluster_hosts, entry) {
		if (h->draining && h->drain_gen != gen) {
			key = cluster_key("drain/%s", h->name);
			cluster_host_event(key + strlen("/qdesk/v1/"), NULL, 0);
			free(key);
		}
		if (h->rec == NULL || h->gen == gen)
			continue;
		key = cluster_key("hosts/%s", h->name);
		cluster_host_event(key + strlen("/qdesk/v1/"), NULL, 0);
		free(key);
	}
}

/* host.list: every host ever a member, up or not. */
json_t *
cluster_host_list(void)
{
	struct cluster_host	*h;
	json_t			*a = json_array(), *o, *src;
	long long		 now = clock_mono_ms();
	size_t			 n;

	TAILQ_FOREACH(h, &cluster_hosts, entry) {
		if (h->rec == NULL && h->member == NULL)
			continue;
		src = h->rec != NULL ? h->rec : h->member;
		n = json_array_size(json_object_get(h->rec, "running")) +
		    json_array_size(json_object_get(h->rec, "starting"));
		o = json_pack("{s:s,s:O?,s:O?,s:s,s:b}", "name", h->name,
		    "addr", json_object_get(src, "addr"), "listen",
		    json_object_get(src, "listen"), "state", h->rec == NULL ?
		    "down" : h->draining ? "draining" : "up", "draining",
		    h->draining);
		if (h->rec != NULL) {
			json_object_set_new(o, "desktops", json_integer(n));
			json_object_set(o, "mem_free",
			    json_object_get(h->rec, "mem_free"));
			json_object_set_new(o, "lease_age", json_real(
			    ((now - h->seen_ms) / 100) / 10.0));
			json_object_set(o, "running",
			    json_object_get(h->rec, "running"));
		} else {
			json_object_set_new(o, "desktops", json_null());
			json_object_set_new(o, "mem_free", json_null());
			json_object_set_new(o, "lease_age", json_null());
			json_object_set_new(o, "down_for", h->down_ms != 0 ?
			    json_real(((now - h->down_ms) / 100) / 10.0) :
			    json_null());
		}
		json_array_append_new(a, o);
	}
	return (a);
}
