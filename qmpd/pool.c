/*
 * Desktop pools: the engine. A pool's record lives in DB_POOLS; its
 * desktops are ordinary VMs, linked clones of the pool's template, whose
 * definitions carry "pool" (and, while a user has one, "owner", as
 * desktop.assign sets it). Two more flags in the VM definition make every
 * step survive a kill -9 of qmpd: "pool_dirty" (returned by a user of a
 * stateless pool, its disk not reset yet: never handed out) and
 * "pool_doomed" (being removed by resize or rm). The engine looks at the
 * pools again after every VM state change, from the loop: it resets
 * returned disks, removes doomed desktops and keeps "prestart" free
 * desktops booted through the boot queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "img.h"
#include "log.h"
#include "pool.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

#define POOL_STOP_TIMEOUT	60	/* a returned stateful desktop */

static struct event	*pool_ev;

const char *
pool_of(const struct vm *vm)
{
	return (vm->def.pool);
}

/* Is vm a desktop of pool? */
int
pool_has(const struct vm *vm, const char *pool)
{
	return (pool_of(vm) != NULL && strcmp(pool_of(vm), pool) == 0);
}

/* A pool as the admin sees it: its record, its desktops and counts. */
json_t *
pool_to_json(json_t *pool)
{
	const char	*pname = json_string_value(json_object_get(pool,
			    "name"));
	json_t		*a = json_array();
	struct vm	*vm;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (!pool_has(vm, pname))
			continue;
		json_array_append_new(a, json_pack("{s:s,s:s,s:s?,s:b,s:b,"
		    "s:b,s:b}", "name", vm->def.name, "state",
		    vm_state_name(vm->state), "owner", user_owner(vm),
		    "free", pool_desktop_free(vm), "queued",
		    boot_queue_waiting(vm->def.name), "dirty",
		    vm->def.pool_dirty, "doomed", vm->def.pool_doomed));
	}
	return (pool_show_json(pool, a));
}

/* The pool's record, or NULL; the caller owns it. */
json_t *
pool_get(const char *name)
{
	return (userdb_get(DB_POOLS, name));
}

/* Free: in a pool, nobody's, clean, staying. */
int
pool_desktop_free(const struct vm *vm)
{
	return (pool_of(vm) != NULL && user_owner(vm) == NULL &&
	    !vm->def.pool_dirty && !vm->def.pool_doomed);
}

/* May a user of department dept (NULL: none) use this pool? */
int
pool_user_may(json_t *pool, const char *dept)
{
	const char	*want = json_string_value(json_object_get(pool,
			    "dept"));

	if (want == NULL)
		return (1);
	return (user_dept_within(dept, want));
}

/* The VM definition of a pool's desktop named name. */
json_t *
pool_desktop_args(json_t *pool, const char *name)
{
	static const char *copy[] = { "memory", "vcpus", "nets", "kernel",
	    "initrd", "append", "accel", "display", "machine",
	    "video", "heads", "audio", "usbredir", "balloon", "os", "agent",
	    "profile", "firmware", "tpm", "clipboard", "listen" };
	json_t	*args, *v;
	size_t	 i;

	args = json_pack("{s:s,s:O,s:O}", "name", name, "from",
	    json_object_get(pool, "template"), "pool",
	    json_object_get(pool, "name"));
	for (i = 0; i < nitems(copy); i++)
		if ((v = json_object_get(pool, copy[i])) != NULL &&
		    !json_is_null(v))
			json_object_set(args, copy[i], v);
	return (args);
}

/* One more desktop for the pool, named POOL-N with the first free N. */
int
pool_desktop_add(json_t *pool, char **cause)
{
	const char	*pname = json_string_value(json_object_get(pool,
			    "name"));
	char		 name[VM_NAME_MAX];
	struct vm	*vm;
	json_t		*args;
	int		 n;

	for (n = 1; n < 100000; n++) {
		if ((size_t)snprintf(name, sizeof name, "%s-%d", pname, n) >=
		    sizeof name) {
			xasprintf(cause, "pool name %s is too long for its "
			    "desktops' names", pname);
			return (-1);
		}
		if (vm_find(name) == NULL)
			break;
	}
	args = pool_desktop_args(pool, name);
	vm = vm_create(args, cause);
	json_decref(args);
	if (vm == NULL)
		return (-1);
	notify_emit("vm.created", vm->def.name, NULL);
	return (0);
}

/*
 * Give a desktop back to its pool: nobody's from now on; a stateless
 * one is marked dirty in the same write, so it is never handed out
 * before its disk is reset. A running one is stopped (at once when its
 * disk is thrown away anyway).
 */
void
pool_return(struct vm *vm, const char *why)
{
	json_t		*pool;
	char		*cause = NULL;
	const char	*owner = user_owner(vm);
	char		*who;
	int		 stateless;

	if ((pool = pool_get(pool_of(vm))) == NULL)
		return;
	stateless = json_is_true(json_object_get(pool, "stateless"));
	json_decref(pool);
	who = owner != NULL ? xstrdup(owner) : NULL;
	if (stateless)
		vm->def.pool_dirty = 1;
	if (user_set_owner(vm, NULL, &cause) != 0) {
		log_warnx("%s: not returned to its pool: %s", vm->def.name,
		    cause);
		free(cause);
		free(who);
		return;
	}
	log_info("%s: back in pool %s (%s%s%s)", vm->def.name, pool_of(vm),
	    why, who != NULL ? ", was " : "", who != NULL ? who : "");
	json_t *f = json_pack("{s:s?,s:s}", "login", who, "why", why);
	notify_emit("desktop.returned", vm->def.name, f);
	json_decref(f);
	free(who);
	boot_queue_cancel(vm->def.name, "returned to its pool");
	if (vm_is_active(vm) && vm->state != VM_STOPPING) {
		if (stateless)
			vm_kill(vm, &cause);
		else
			vm_stop(vm, 0, POOL_STOP_TIMEOUT, &cause);
		if (cause != NULL) {
			log_warnx("%s: %s", vm->def.name, cause);
			free(cause);
		}
	}
	pool_kick();
}

/* Mark every desktop of the pool doomed that matches; a count. */
int
pool_doom(const char *pname, int max, int only_free)
{
	struct vm	*vm;
	char		*cause = NULL;
	int		 n = 0, pass;

	/* Stopped ones first: removing them costs nothing. */
	for (pass = 0; pass < 2; pass++) {
		TAILQ_FOREACH(vm, &vms, entry) {
			if (n >= max)
				return (n);
			if (!pool_has(vm, pname) || vm->def.pool_doomed)
				continue;
			if (only_free && !pool_desktop_free(vm))
				continue;
			if (pass == 0 && (vm_is_active(vm) ||
			    boot_queue_waiting(vm->def.name)))
				continue;
			if (vm_set_flag(vm, &vm->def.pool_doomed, 1,
			    &cause) != 0) {
				log_warnx("%s: %s", vm->def.name, cause);
				free(cause);
				cause = NULL;
				continue;
			}
			n++;
		}
	}
	return (n);
}

/* A free desktop's rank: booted ones first, then booting, then stopped. */
static int
pool_rank(const struct vm *vm)
{
	if (vm->state == VM_RUNNING)
		return (3);
	if (vm->state == VM_STARTING || boot_queue_waiting(vm->def.name))
		return (2);
	if (vm->state == VM_STOPPED || vm->state == VM_CRASHED)
		return (1);
	return (0);
}

static int
pool_pick_cb(const char *key, json_t *pool, void *arg)
{
	struct pool_pick	*p = arg;
	struct vm		*vm;
	const char		*owner;
	int			 floating, r;

	if (p->want != NULL && strcmp(key, p->want) != 0)
		return (0);
	if (!pool_user_may(pool, p->dept))
		return (0);
	floating = strcmp(json_string_value(json_object_get(pool, "mode")),
	    "floating") == 0;
	if (p->want == NULL && floating != p->floating)
		return (0);
	p->pools++;
	TAILQ_FOREACH(vm, &vms, entry) {
		if (!pool_has(vm, key))
			continue;
		owner = user_owner(vm);
		if (owner != NULL && strcmp(owner, p->login) == 0 &&
		    p->mine == NULL)
			p->mine = vm;
		if (!pool_desktop_free(vm))
			continue;
		if ((r = pool_rank(vm)) > p->best_rank) {
			p->best = vm;
			p->best_rank = r;
		}
	}
	return (0);
}

/*
 * desktop.acquire's choice for login (of department dept) among the pools
 * they may use (only want, if set): the desktop they have (p->mine), or
 * the best free one (p->best), floating pools before dedicated ones;
 * p->pools counts the pools they may use.
 */
int
pool_pick(struct pool_pick *p, const char *want, const char *login,
    const char *dept, char **cause)
{
	memset(p, 0, sizeof *p);
	p->want = want;
	p->login = login;
	p->dept = dept;
	for (p->floating = 1; p->floating >= 0; p->floating--) {
		if (db_foreach(qmpd->db, DB_POOLS, pool_pick_cb, p, cause) < 0)
			return (-1);
		if (p->mine != NULL || p->best != NULL || p->want != NULL)
			break;
	}
	return (0);
}

/* A free desktop is login's from now on; another one may prestart. */
int
pool_give(struct vm *vm, const char *login, char **cause)
{
	json_t	*f;

	if (user_set_owner(vm, login, cause) != 0)
		return (-1);
	log_info("%s: given to %s (pool %s)", vm->def.name, login,
	    pool_of(vm));
	f = json_pack("{s:s,s:s}", "login", login, "pool", pool_of(vm));
	notify_emit("desktop.assigned", vm->def.name, f);
	json_decref(f);
	pool_kick();
	return (0);
}

/* A stopped desktop that needs work: reset a dirty disk, drop a doomed one. */
static void
pool_tidy(struct vm *vm)
{
	char	*cause = NULL;

	if (vm->def.pool_doomed) {
		if (vm_is_active(vm)) {
			if (vm->stop_asked != 3 && vm_kill(vm, &cause) != 0)
				goto warn;
			return;
		}
		boot_queue_cancel(vm->def.name, "removed from its pool");
		if (vm_delete(vm, &cause) != 0)
			goto warn;
		return;
	}
	if (vm->def.pool_dirty) {
		if (vm_is_active(vm)) {
			if (vm->stop_asked != 3 && vm_kill(vm, &cause) != 0)
				goto warn;
			return;
		}
		if (vm_disk_reset(vm, &cause) != 0)
			goto warn;
		if (vm_set_flag(vm, &vm->def.pool_dirty, 0, &cause) != 0)
			goto warn;
		notify_emit("desktop.reset", vm->def.name, NULL);
	}
	return;
warn:
	log_warnx("%s: %s", vm->def.name, cause);
	free(cause);
}

static int
pool_warm(const struct vm *vm)
{
	return (vm->state == VM_RUNNING || vm->state == VM_STARTING ||
	    boot_queue_waiting(vm->def.name));
}

/* Keep "prestart" free desktops of one pool booted. */
static void
pool_prestart(json_t *pool)
{
	const char	*pname = json_string_value(json_object_get(pool,
			    "name"));
	int		 want, warm = 0;
	struct vm	*vm;
	char		*cause = NULL;

	want = json_integer_value(json_object_get(pool, "prestart"));
	if (want <= 0)
		return;
	TAILQ_FOREACH(vm, &vms, entry) {
		if (pool_of(vm) != NULL && strcmp(pool_of(vm), pname) == 0 &&
		    pool_desktop_free(vm) && pool_warm(vm))
			warm++;
	}
	TAILQ_FOREACH(vm, &vms, entry) {
		if (warm >= want)
			break;
		if (pool_of(vm) == NULL || strcmp(pool_of(vm), pname) != 0 ||
		    !pool_desktop_free(vm) || vm_is_active(vm) ||
		    boot_queue_waiting(vm->def.name))
			continue;
		if (boot_queue_start(vm, 0, NULL, NULL, &cause) != 0) {
			log_warnx("%s: prestart: %s", vm->def.name, cause);
			free(cause);
			cause = NULL;
			continue;
		}
		warm++;
	}
}

static int
pool_prestart_cb(const char *key, json_t *rec, void *arg)
{
	pool_prestart(rec);
	return (0);
}

/* Every desktop that needs work, then every pool's prestart. */
static void
pool_run(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm, *vm1;
	json_t		*pool;
	char		*cause = NULL;

	TAILQ_FOREACH_SAFE(vm, &vms, entry, vm1) {
		if (pool_of(vm) == NULL)
			continue;
		/* A desktop whose pool is gone (pool rm, then a crash). */
		if ((pool = pool_get(pool_of(vm))) == NULL &&
		    user_owner(vm) == NULL)
			vm->def.pool_doomed = 1;
		json_decref(pool);
		pool_tidy(vm);
	}
	if (db_foreach(qmpd->db, DB_POOLS, pool_prestart_cb, NULL,
	    &cause) < 0) {
		log_warnx("pools: %s", cause);
		free(cause);
	}
}

/* Look at the pools again, from the loop. */
void
pool_kick(void)
{
	if (pool_ev == NULL)
		pool_ev = event_new(qmpd->base, -1, 0, pool_run, NULL);
	event_active(pool_ev, EV_TIMEOUT, 0);
}

/* Start-up: desktops a crash left missing are made again; then work. */
static int
pool_init_cb(const char *key, json_t *rec, void *arg)
{
	struct vm	*vm;
	int		 have = 0, size;
	char		*cause = NULL;

	size = json_integer_value(json_object_get(rec, "size"));
	TAILQ_FOREACH(vm, &vms, entry)
		if (pool_of(vm) != NULL && strcmp(pool_of(vm), key) == 0 &&
		    !vm->def.pool_doomed)
			have++;
	for (; have < size; have++) {
		if (pool_desktop_add(rec, &cause) != 0) {
			log_warnx("pool %s: %s", key, cause);
			free(cause);
			break;
		}
		log_info("pool %s: desktop made again after a restart", key);
	}
	return (0);
}

void
pool_init(void)
{
	char	*cause = NULL;

	if (db_foreach(qmpd->db, DB_POOLS, pool_init_cb, NULL, &cause) < 0) {
		log_warnx("pools: %s", cause);
		free(cause);
	}
	pool_kick();
}

/*
 * vm.state: a state change may free a pool desktop; a floating desktop
 * whose user shut it down goes back to its pool.
 */
static void
pool_state(const char *name, json_t *fields)
{
	const char	*state;
	struct vm	*vm;
	json_t		*pool;
	int		 floating;

	if ((vm = vm_find(name)) == NULL || pool_of(vm) == NULL)
		return;
	state = json_string_value(json_object_get(fields, "state"));
	if (state != NULL && (strcmp(state, "stopped") == 0 ||
	    strcmp(state, "crashed") == 0) && user_owner(vm) != NULL) {
		pool = pool_get(pool_of(vm));
		floating = pool != NULL && strcmp(json_string_value(
		    json_object_get(pool, "mode")), "floating") == 0;
		json_decref(pool);
		if (floating)
			pool_return(vm, state);
	}
	pool_kick();
}

/* Keep this list sorted: it is searched with bsearch. */
static const struct notify_handler pool_handlers[] = {
	{ "session.ended", pool_disconnect_ended },
	{ "vm.state", pool_state },
};

/* Every event of qmpd passes here; pools act on a few. */
void
pool_event(const char *event, const char *vm, json_t *fields, void *arg)
{
	notify_dispatch(pool_handlers, nitems(pool_handlers), event, vm,
	    fields);
}
