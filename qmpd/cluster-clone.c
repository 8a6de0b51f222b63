/*
 * A cluster desktop whose disk is a linked clone on a shared image store
 * (vm create --from T --store S): its file is in S, which every host
 * mounts at the same path, but only the index of the host that made it
 * names it. So that another host can take the desktop when that host
 * dies, the host that runs it records the clone in its definition,
 * vms/VM's "clone" (beside "def", which vm create takes):
 *
 *   {"store","name","file","template","template_file","template_format",
 *    "template_kind","template_sha256","by"}
 *
 * the object a live migration's source sends (vm_migrate_image_offer),
 * or {"why","by"} when the clone cannot move (snapshots beside it). A
 * host placement gives the desktop to creates its record without a new
 * clone and adopts the recorded one into its index, as a migration's
 * target does (vm_incoming_image_adopt). A host that finds its own
 * stopped record of the desktop placed elsewhere drops it as a
 * migration's source does: the index forgets the clone, the file stays.
 * The fence and the placement CAS keep one QEMU on the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cluster.h"
#include "etcd.h"
#include "img.h"
#include "log.h"
#include "qmpd.h"
#include "store.h"
#include "vm.h"
#include "xmalloc.h"

/* Desktops whose "clone" write is in flight from here. */
static json_t	*clone_busy;

/* The recorded clone of p, or NULL. */
static json_t *
clone_rec(const struct cluster_place *p)
{
	return (json_object_get(p->def, "clone"));
}

/* The shared store p's disk is a clone on, or NULL. */
static const char *
clone_store(const struct cluster_place *p)
{
	json_t	*def = cluster_place_def(p);

	if (json_object_get(def, "from") == NULL)
		return (NULL);
	return (json_string_value(json_object_get(def, "store")));
}

/* Does host record rec say it has shared store name mounted? */
int
cluster_clone_host_has(json_t *rec, const char *name)
{
	json_t	*v;
	size_t	 i;

	json_array_foreach(json_object_get(rec, "stores"), i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), name) ==
		    0)
			return (1);
	return (0);
}

/* The shared store p's recorded clone needs on a new host, or NULL. */
const char *
cluster_clone_store(const struct cluster_place *p)
{
	const char	*store = clone_store(p);

	if (store == NULL || json_string_value(json_object_get(clone_rec(p),
	    "file")) == NULL)
		return (NULL);
	return (store);
}

/*
 * Can p, a clone on a shared store, run on another host than its own:
 * recorded, and a host that is up and not draining has the store.
 */
int
cluster_clone_movable(const struct cluster_place *p)
{
	struct cluster_host	*h;
	const char		*store = cluster_clone_store(p);
	const char		*at = cluster_place_at(p);

	if (store == NULL)
		return (0);
	TAILQ_FOREACH(h, &cluster_hosts, entry)
		if (cluster_host_up(h) && !h->draining && (at == NULL ||
		    strcmp(h->name, at) != 0) &&
		    cluster_clone_host_has(h->rec, store))
			return (1);
	return (0);
}

/* Why p, a clone on a shared store, cannot move: after "its disk". */
const char *
cluster_clone_stuck(const struct cluster_place *p)
{
	static char	 buf[512];
	const char	*store = clone_store(p), *why;

	why = json_string_value(json_object_get(clone_rec(p), "why"));
	if (why != NULL)
		snprintf(buf, sizeof buf, "is a linked clone on shared image "
		    "store %s that cannot move: %s", store, why);
	else if (clone_rec(p) == NULL)
		snprintf(buf, sizeof buf, "is a linked clone on shared image "
		    "store %s that its host has not recorded in etcd (it does "
		    "when it runs the desktop)", store);
	else
		snprintf(buf, sizeof buf, "is a linked clone on shared image "
		    "store %s, which no other host that is up and not "
		    "draining has mounted", store);
	return (buf);
}

/* What the definition should say of vm's clone: its files, or why not. */
static json_t *
clone_describe(struct vm *vm)
{
	struct imgstore	*st;
	json_t		*req = json_object(), *img, *tpl;
	const char	*sum;
	char		*cause = NULL;

	if (vm_migrate_image_offer(vm, req, &cause) != 0) {
		img = json_pack("{s:s}", "why", cause);
		free(cause);
		json_decref(req);
		return (img);
	}
	img = json_incref(json_object_get(req, "image"));
	json_decref(req);
	/* Its template's sum, if hashed: a host whose copy differs refuses. */
	if ((st = img_store_named(vm->def.store, &cause)) != NULL &&
	    (tpl = imgstore_get(st, vm->def.from, &cause)) != NULL) {
		if ((sum = cluster_image_sum(tpl)) != NULL)
			json_object_set_new(img, "template_sha256",
			    json_string(sum));
		json_decref(tpl);
	}
	free(cause);
	return (img);
}

static void
clone_put_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	json_t			*rec = arg;
	struct cluster_place	*p;
	const char		*name;
	json_int_t		 rev;

	name = json_string_value(json_object_get(json_object_get(rec, "def"),
	    "name"));
	if (name != NULL)
		json_object_del(clone_busy, name);
	if (errclass != NULL)
		log_warnx("cluster: %s: its clone not recorded: %s", name,
		    cause);
	else if (json_is_true(json_object_get(res, "succeeded"))) {
		log_info("cluster: %s: its clone recorded in etcd", name);
		/* This host's view at once, so the next write compares. */
		rev = json_integer_value(json_object_get(json_object_get(res,
		    "header"), "revision"));
		if (name != NULL && (p = cluster_place_find(name)) != NULL &&
		    p->def != NULL && rev > p->def_rev) {
			json_decref(p->def);
			p->def = json_incref(rec);
			p->def_rev = rev;
		}
	}
	/* Else the definition changed meanwhile: its watch event retries. */
	json_decref(rec);
}

/*
 * vm, p's desktop, runs here: its definition records its clone as it is
 * now (a compare-and-swap on the revision seen; a write lost to another
 * is tried again on the watch event that follows).
 */
void
cluster_clone_record(struct cluster_place *p, struct vm *vm)
{
	json_t	*now, *rec, *old;
	char	*key, *val;

	if (vm == NULL || vm->def.store == NULL || vm->def.image == NULL ||
	    p->def == NULL || !vm_is_active(vm) || vm_migrate_busy(vm) ||
	    json_object_get(clone_busy, p->name) != NULL)
		return;
	now = clone_describe(vm);
	old = json_deep_copy(clone_rec(p));
	json_object_del(old, "by");
	if (json_equal(old, now)) {
		json_decref(old);
		json_decref(now);
		return;
	}
	json_decref(old);
	json_object_set_new(now, "by", json_string(cluster_name()));
	rec = json_deep_copy(p->def);
	json_object_set_new(rec, "clone", now);
	if (clone_busy == NULL)
		clone_busy = json_object();
	json_object_set_new(clone_busy, p->name, json_true());
	key = cluster_key("vms/%s", p->name);
	val = json_dumps(rec, JSON_COMPACT);
	etcd_cas(cluster_etcd, key, p->def_rev, val, 0, clone_put_cb, rec);
	free(key);
	free(val);
}

/*
 * Placement gives this host p, whose clone another host made: its record
 * here over that clone (no new one), which this host's index adopts as a
 * migration's target does. On failure the record goes, the file stays.
 */
struct vm *
cluster_clone_create(struct cluster_place *p, char **cause)
{
	struct vm	*vm;
	struct vm_mig	 m;
	struct imgstore	*st;
	json_t		*clone = clone_rec(p), *args, *tpl;
	const char	*want, *have;
	char		*why = NULL;
	int		 rc;

	want = json_string_value(json_object_get(clone, "template_sha256"));
	if (want != NULL && (st = img_store_named(clone_store(p), &why)) !=
	    NULL && (tpl = imgstore_get(st, json_string_value(json_object_get(
	    clone, "template")), &why)) != NULL) {
		have = cluster_image_sum(tpl);
		rc = have != NULL && strcmp(have, want) != 0;
		json_decref(tpl);
		if (rc) {
			xasprintf(cause, "template %s on store %s differs here "
			    "from the one %s's clone stands on",
			    json_string_value(json_object_get(clone,
			    "template")), clone_store(p), p->name);
			free(why);
			return (NULL);
		}
	}
	free(why);
	why = NULL;
	args = json_deep_copy(cluster_place_def(p));
	/* The clone's name given: vm_disk_create makes none. */
	json_object_set(args, "image", json_object_get(clone, "name"));
	vm = vm_create(args, cause);
	json_decref(args);
	if (vm == NULL)
		return (NULL);
	/* The adoption's own bookkeeping (vm->mig->adopted) is not kept. */
	memset(&m, 0, sizeof m);
	vm->mig = &m;
	args = json_pack("{s:O}", "image", clone);
	rc = vm_incoming_image_adopt(vm, args, cause);
	json_decref(args);
	vm->mig = NULL;
	if (rc != 0) {
		vm->disk_away = 1;	/* forgotten, never removed */
		if (vm_delete(vm, &why) != 0) {
			log_warnx("cluster: %s: %s", p->name, why);
			free(why);
		}
		return (NULL);
	}
	log_info("cluster: %s: clone %s (file %s on store %s) adopted here",
	    p->name, vm->def.image, json_string_value(json_object_get(clone,
	    "file")), vm->def.store);
	return (vm);
}

/*
 * This host's stopped record of p, whose recorded clone placement gives
 * another host: dropped, its index forgetting the clone and leaving the
 * file (the host back from a failover, or one whose desktop started
 * elsewhere). 1 if it went.
 */
int
cluster_clone_release(struct cluster_place *p, struct vm *vm)
{
	char	*cause = NULL;

	if (vm == NULL || vm->def.store == NULL || vm->def.image == NULL ||
	    vm_is_active(vm) || vm->mig != NULL || vm_migrate_busy(vm) ||
	    p->def == NULL || p->pl == NULL || cluster_place_mine(p) ||
	    cluster_clone_store(p) == NULL || !cluster_host_joined())
		return (0);
	vm->disk_away = 1;
	if (vm_delete(vm, &cause) != 0) {
		vm->disk_away = 0;
		log_warnx("cluster: %s: stale copy kept: %s", p->name, cause);
		free(cause);
		return (0);
	}
	log_info("cluster: %s is placed on %s: the stale copy here dropped, "
	    "its clone left to that host", p->name, cluster_place_at(p));
	return (1);
}
