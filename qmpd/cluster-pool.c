/*
 * Desktop pools in cluster mode (issue 13). A pool is pools/NAME in etcd
 * and its members are desktops of the cluster, vms/NAME-N, placed across
 * the hosts like any other (placement picks the host when one is
 * started). Who has a member is owners/VM: a floating pool's checkout
 * creates that key by compare-and-swap, so two hosts can never hand one
 * desktop to two users; giving it back deletes the key, or, for a
 * stateless pool, marks it {"dirty"} until the host that has the
 * member's disk has stopped it and reset the disk from its template,
 * which then deletes the key: a member is free when it has no owners/
 * key. Every host runs the same engine on what the watch shows it and
 * acts only on the members it holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "pool.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

#define CLUSTER_POOL_TRIES	8	/* checkouts lost to other hosts */

static struct event	*cluster_pool_ev;
static json_t		*cluster_pool_resetting;	/* names in flight */
/*
 * Members this host's checkouts are claiming now: the view shows no
 * owners/ key for them until etcd answers, and a storm of logins (the
 * broker sends them all to one host) would otherwise all pick the same
 * free member and lose to each other.
 */
static json_t		*cluster_pool_claiming;

/* The pool a desktop of the cluster belongs to, or NULL. */
static const char *
cluster_pool_of(const struct cluster_place *p)
{
	return (json_string_value(json_object_get(cluster_place_def(p),
	    "pool")));
}

static int
cluster_pool_floating(json_t *pool)
{
	return (strcmp(json_string_value(json_object_get(pool, "mode")),
	    "floating") == 0);
}

/*
 * Is p's disk disposable: a member of a stateless pool (its disk is reset
 * from the template at every release) or of a floating one (any free
 * desktop will do for its user, none is theirs to keep), so a fresh
 * clone on another host is as good when its host dies (issue 13:
 * "floating and stateless pool users get a desktop on another host from
 * the template"). A dedicated pool's member is its user's: it waits.
 */
int
cluster_pool_disposable(const struct cluster_place *p)
{
	const char	*pname = cluster_pool_of(p);
	json_t		*pool;
	int		 yes;

	if (pname == NULL)
		return (0);
	if ((pool = userdb_get(DB_POOLS, pname)) == NULL)
		return (0);
	yes = json_is_true(json_object_get(pool, "stateless")) ||
	    (json_is_string(json_object_get(pool, "mode")) &&
	    cluster_pool_floating(pool));
	json_decref(pool);
	return (yes);
}

/* A member as pool show tells it. */
static json_t *
cluster_pool_member(struct cluster_place *p)
{
	json_t		*own = userdb_get(USERDB_OWNERS, p->name), *j;
	const char	*owner = json_string_value(json_object_get(own,
			    "login"));

	j = json_pack("{s:s,s:s,s:s?,s:s?,s:b,s:b}", "name", p->name, "state",
	    cluster_place_running(p) ? "running" : "stopped", "host",
	    cluster_place_at(p), "owner", owner, "free", own == NULL, "dirty",
	    json_is_true(json_object_get(own, "dirty")));
	json_decref(own);
	return (j);
}

/* A pool as the admin sees it: its record, its members and counts. */
json_t *
cluster_pool_json(json_t *pool)
{
	const char		*pname = json_string_value(json_object_get(
				    pool, "name"));
	struct cluster_place	*p;
	json_t			*a = json_array();

	TAILQ_FOREACH(p, &cluster_places, entry) {
		if (p->def == NULL || cluster_pool_of(p) == NULL ||
		    strcmp(cluster_pool_of(p), pname) != 0)
			continue;
		json_array_append_new(a, cluster_pool_member(p));
	}
	return (pool_show_json(pool, a));
}

/* ---- pool.create ---- */

struct cluster_pool_op {
	struct cmd_req	*req;
	json_t		*pool;
	int64_t		 size;
};

static void
cluster_pool_create_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_pool_op	*op = arg;
	const char		*name = json_string_value(json_object_get(
				    op->pool, "name"));

	if (errclass != NULL)
		cmd_error(op->req, errclass, "pool %s not created: etcd: %s",
		    name, cause);
	else if (!json_is_true(json_object_get(res, "succeeded")))
		cmd_error(op->req, ERR_EXISTS, "pool %s not created: the pool "
		    "or a VM named %s-N was made on another host meanwhile",
		    name, name);
	else {
		log_info("pool %s: created in the cluster, %lld desktops from "
		    "%s", name, (long long)op->size, json_string_value(
		    json_object_get(op->pool, "template")));
		cmd_reply(op->req, json_pack("{s:O,s:I}", "name",
		    json_object_get(op->pool, "name"), "count",
		    (json_int_t)op->size));
	}
	json_decref(op->pool);
	free(op);
}

/*
 * pool.create in a cluster (pool checked by cmd-pool.c): the record and
 * every member's definition in one transaction that holds only if none
 * of those keys exists yet.
 */
enum cmd_retval
cluster_pool_create(struct cmd_req *req, json_t *pool)
{
	const char		*pname = json_string_value(json_object_get(
				    pool, "name"));
	int64_t			 i, size = json_integer_value(
				    json_object_get(pool, "size"));
	json_t			*cmp, *ops;
	struct cluster_pool_op	*op;
	char			 name[VM_NAME_MAX], *key, *val;

	if (size > CLUSTER_POOL_MAX_SIZE) {
		cmd_error(req, ERR_ARG, "size must be 1 to %d in a cluster",
		    CLUSTER_POOL_MAX_SIZE);
		return (CMD_RETURN_DONE);
	}
	cmp = json_array();
	ops = json_array();
	key = cluster_key("%s/%s", DB_POOLS, pname);
	val = json_dumps(pool, JSON_COMPACT | JSON_SORT_KEYS);
	json_array_append_new(cmp, etcd_cmp_mod_revision(key, 0));
	json_array_append_new(ops, etcd_op_put(key, val, 0));
	free(key);
	free(val);
	for (i = 1; i <= size; i++) {
		if ((size_t)snprintf(name, sizeof name, "%s-%lld", pname,
		    (long long)i) >= sizeof name) {
			cmd_error(req, ERR_ARG, "pool name %s is too long for "
			    "its desktops' names", pname);
			json_decref(cmp);
			json_decref(ops);
			return (CMD_RETURN_DONE);
		}
		cluster_pool_member_put(cmp, ops, pool, name);
	}
	op = xcalloc(1, sizeof *op);
	op->req = req;
	op->pool = json_incref(pool);
	op->size = size;
	etcd_txn(cluster_etcd, cmp, ops, NULL, cluster_pool_create_cb, op);
	return (CMD_RETURN_WAIT);
}

/* ---- desktop.acquire ---- */

/* A checkout under way: the choice, and how often another host won. */
struct cluster_pool_acq {
	struct cmd_req	*req;
	char		*login;
	char		*dept;
	char		*want;
	char		*vm;
	char		*pool;
	int		 tries;
	json_t		*lost;		/* members another host gave out */
};

struct cluster_pool_pick {
	struct cluster_pool_acq	*acq;
	int			 floating;
	int			 pools;
	struct cluster_place	*mine, *best;
	int			 best_rank;
};

/* A free member's rank: running on an up host first, then stopped. */
static int
cluster_pool_rank(struct cluster_place *p)
{
	if (!cluster_place_running(p))
		return (1);
	return (cluster_host_up(cluster_host_find(cluster_place_at(p))) ? 2 :
	    0);
}

static int
cluster_pool_pick_cb(const char *key, json_t *pool, void *arg)
{
	struct cluster_pool_pick	*k = arg;
	struct cluster_place		*p;
	json_t				*own;
	const char			*owner;
	int				 r;

	if (k->acq->want != NULL && strcmp(key, k->acq->want) != 0)
		return (0);
	if (!pool_user_may(pool, k->acq->dept))
		return (0);
	if (k->acq->want == NULL && cluster_pool_floating(pool) !=
	    k->floating)
		return (0);
	k->pools++;
	TAILQ_FOREACH(p, &cluster_places, entry) {
		if (p->def == NULL || cluster_pool_of(p) == NULL ||
		    strcmp(cluster_pool_of(p), key) != 0 ||
		    json_object_get(k->acq->lost, p->name) != NULL)
			continue;
		own = userdb_get(USERDB_OWNERS, p->name);
		owner = json_string_value(json_object_get(own, "login"));
		if (owner != NULL && strcmp(owner, k->acq->login) == 0 &&
		    k->mine == NULL)
			k->mine = p;
		if (own == NULL && json_object_get(cluster_pool_claiming,
		    p->name) == NULL && (r = cluster_pool_rank(p)) >
		    k->best_rank) {
			k->best = p;
			k->best_rank = r;
		}
		json_decref(own);
	}
	return (0);
}

static void
cluster_pool_acq_free(struct cluster_pool_acq *a)
{
	free(a->login);
	free(a->dept);
	free(a->want);
	free(a->vm);
	free(a->pool);
	json_decref(a->lost);
	free(a);
}

/* A claim to give back if the start it led to fails. */
struct cluster_pool_claim {
	char	*vm;
	char	*login;
};

/*
 * The start of a member just claimed (or of a floating one the user
 * had) ended: on failure owners/VM goes again, by CAS and only if it is
 * still this user's, so the next login can get a desktop; the user was
 * told the start's error.
 */
static void
cluster_pool_start_ended(void *arg, const char *errclass, const char *desc)
{
	struct cluster_pool_claim	*c = arg;
	json_t				*own;
	const char			*owner;
	char				*what;

	if (errclass != NULL) {
		own = userdb_get(USERDB_OWNERS, c->vm);
		owner = json_string_value(json_object_get(own, "login"));
		if (owner != NULL && strcmp(owner, c->login) == 0) {
			log_warnx("cluster: %s: start for %s failed (%s): "
			    "claim released", c->vm, c->login, desc);
			xasprintf(&what, "cluster: %s: claim of %s released",
			    c->vm, c->login);
			userdb_del(USERDB_OWNERS, c->vm, userdb_log_cb, what);
		}
		json_decref(own);
	}
	free(c->vm);
	free(c->login);
	free(c);
}

/*
 * The member is the user's: start it through placement (or it runs).
 * release: give the claim back if the start fails (a fresh claim, or a
 * floating member; a dedicated one the user had stays theirs).
 */
static void
cluster_pool_acq_start(struct cluster_pool_acq *a, int release)
{
	struct cmd_req			*req = a->req;
	struct cluster_pool_claim	*c;
	char				*vm = a->vm;

	if (release) {
		c = xcalloc(1, sizeof *c);
		c->vm = xstrdup(vm);
		c->login = xstrdup(a->login);
		req->ended = cluster_pool_start_ended;
		req->ended_arg = c;
	}
	a->vm = NULL;
	cluster_pool_acq_free(a);
	if (cluster_cmd_start(req, vm) == -1)
		cmd_error(req, ERR_NOTFOUND, "desktop %s is no longer defined",
		    vm);
	free(vm);
}

static void	cluster_pool_acq_try(struct cluster_pool_acq *);

/*
 * The member a checkout goes for now. The last try's names go here and
 * only here: a retry that ends without a member (none free, no pool)
 * leaves them to cluster_pool_acq_free, so each is freed once.
 */
static void
cluster_pool_acq_choose(struct cluster_pool_acq *a, struct cluster_place *p)
{
	free(a->vm);
	free(a->pool);
	a->vm = xstrdup(p->name);
	a->pool = xstrdup(cluster_pool_of(p));
}

/* owners/VM created (the desktop is the user's) or taken meanwhile. */
static void
cluster_pool_claim_cb(void *arg, const char *errclass, const char *cause)
{
	struct cluster_pool_acq	*a = arg;
	json_t			*f;

	json_object_del(cluster_pool_claiming, a->vm);
	if (errclass != NULL && strcmp(errclass, ERR_EXISTS) == 0 &&
	    ++a->tries < CLUSTER_POOL_TRIES) {
		log_info("cluster: %s went to another user meanwhile; %s "
		    "tries another", a->vm, a->login);
		/* This host's view may not show that yet: skip it. */
		json_object_set_new(a->lost, a->vm, json_true());
		cluster_pool_acq_try(a);
		return;
	}
	if (errclass != NULL) {
		cmd_error(a->req, errclass, "no desktop for %s: %s", a->login,
		    cause);
		cluster_pool_acq_free(a);
		return;
	}
	log_info("cluster: %s: given to %s (pool %s)", a->vm, a->login,
	    a->pool);
	f = json_pack("{s:s,s:s}", "login", a->login, "pool", a->pool);
	notify_emit("desktop.assigned", a->vm, f);
	json_decref(f);
	cluster_pool_acq_start(a, 1);
}

/* Pick among the pools the user may use, then claim or start. */
static void
cluster_pool_acq_try(struct cluster_pool_acq *a)
{
	struct cluster_pool_pick	 k;
	json_t				*rec;
	char				*cause = NULL;
	int				 floating;

	memset(&k, 0, sizeof k);
	k.acq = a;
	for (k.floating = 1; k.floating >= 0; k.floating--) {
		if (userdb_foreach(DB_POOLS, cluster_pool_pick_cb, &k,
		    &cause) < 0) {
			cmd_fail(a->req, ERR_INTERNAL, cause);
			cluster_pool_acq_free(a);
			return;
		}
		if (k.mine != NULL || k.best != NULL || a->want != NULL)
			break;
	}
	if (k.mine != NULL) {
		cluster_pool_acq_choose(a, k.mine);
		rec = userdb_get(DB_POOLS, a->pool);
		floating = rec != NULL && cluster_pool_floating(rec);
		json_decref(rec);
		cluster_pool_acq_start(a, floating);
		return;
	}
	if (k.best == NULL) {
		if (k.pools == 0)
			cmd_error(a->req, ERR_NOTFOUND, "no desktop pool for "
			    "%s", a->login);
		else
			cmd_error(a->req, ERR_BUSY, "no free desktop in the "
			    "pools of %s: try again later", a->login);
		cluster_pool_acq_free(a);
		return;
	}
	cluster_pool_acq_choose(a, k.best);
	rec = json_pack("{s:s,s:s,s:s}", "login", a->login, "pool", a->pool,
	    "by", cluster_name());
	if (cluster_pool_claiming == NULL)
		cluster_pool_claiming = json_object();
	json_object_set_new(cluster_pool_claiming, a->vm, json_true());
	userdb_put(USERDB_OWNERS, a->vm, rec, USERDB_CREATE,
	    cluster_pool_claim_cb, a);
	json_decref(rec);
}

/*
 * desktop.acquire in a cluster: the user's member, or a free one claimed
 * by CAS (running ones first, floating pools before dedicated ones),
 * started through placement; the answer comes once its host runs it.
 */
enum cmd_retval
cluster_pool_acquire(struct cmd_req *req, const char *dept)
{
	struct cluster_pool_acq	*a;
	const char		*want = cmd_arg_str(req, "pool", NULL);

	if (!cluster_host_joined()) {
		cmd_error(req, ERR_STATE, "this host (%s) is not in the cluster "
		    "now (no lease in etcd): no desktop can be handed out",
		    cluster_name());
		return (CMD_RETURN_DONE);
	}
	a = xcalloc(1, sizeof *a);
	a->req = req;
	a->login = xstrdup(cmd_arg_str(req, "login", ""));
	a->dept = dept != NULL ? xstrdup(dept) : NULL;
	a->want = want != NULL ? xstrdup(want) : NULL;
	a->lost = json_object();
	cluster_pool_acq_try(a);
	return (CMD_RETURN_WAIT);
}

/* ---- giving desktops back ---- */

/*
 * Give member vm back: a stateless one is marked dirty (never handed out
 * before its host resets it), any other one is free at once; its host
 * stops it when it sees that.
 */
static void
cluster_pool_return(const char *vm, json_t *own, const char *why)
{
	json_t		*pool, *rec, *f;
	const char	*pname = json_string_value(json_object_get(own,
			    "pool"));
	const char	*login = json_string_value(json_object_get(own,
			    "login"));
	char		*what;

	pool = userdb_get(DB_POOLS, pname);
	xasprintf(&what, "cluster: %s back in pool %s", vm, pname);
	if (json_is_true(json_object_get(pool, "stateless"))) {
		rec = json_pack("{s:s,s:b,s:s}", "pool", pname, "dirty", 1,
		    "by", cluster_name());
		userdb_put(USERDB_OWNERS, vm, rec, 0, userdb_log_cb, what);
		json_decref(rec);
	} else
		userdb_del(USERDB_OWNERS, vm, userdb_log_cb, what);
	json_decref(pool);
	log_info("cluster: %s: back in pool %s (%s, was %s)", vm, pname, why,
	    login);
	f = json_pack("{s:s,s:s}", "login", login, "why", why);
	notify_emit("desktop.returned", vm, f);
	json_decref(f);
}

struct cluster_pool_rel {
	const char	*login;
	const char	*vm;
	json_t		*released;
	json_t		*kept;
};

static int
cluster_pool_release_cb(const char *vm, json_t *own, void *arg)
{
	struct cluster_pool_rel	*r = arg;
	const char		*login, *pname;
	json_t			*pool;
	int			 floating;

	login = json_string_value(json_object_get(own, "login"));
	pname = json_string_value(json_object_get(own, "pool"));
	if (login == NULL || pname == NULL || strcmp(login, r->login) != 0 ||
	    (r->vm != NULL && strcmp(vm, r->vm) != 0))
		return (0);
	pool = userdb_get(DB_POOLS, pname);
	floating = pool != NULL && cluster_pool_floating(pool);
	json_decref(pool);
	if (!floating) {
		json_array_append_new(r->kept, json_string(vm));
		return (0);
	}
	json_array_append_new(r->released, json_string(vm));
	cluster_pool_return(vm, own, "released");
	return (0);
}

/* desktop.release in a cluster: as on one host, on owners/ in etcd. */
enum cmd_retval
cluster_pool_release(struct cmd_req *req)
{
	struct cluster_pool_rel	 r;
	json_t			*own;
	const char		*owner;
	char			*cause = NULL;

	r.login = cmd_arg_str(req, "login", "");
	r.vm = cmd_arg_str(req, "vm", NULL);
	if (r.vm != NULL) {
		own = userdb_get(USERDB_OWNERS, r.vm);
		owner = json_string_value(json_object_get(own, "login"));
		if (owner == NULL || strcmp(owner, r.login) != 0 ||
		    json_object_get(own, "pool") == NULL) {
			json_decref(own);
			log_warnx("desktop.release of %.64s for %s refused",
			    r.vm, r.login);
			cmd_error(req, ERR_DENIED, "desktop %.64s is not a pool "
			    "desktop of yours", r.vm);
			return (CMD_RETURN_DONE);
		}
		json_decref(own);
	}
	r.released = json_array();
	r.kept = json_array();
	if (userdb_foreach(USERDB_OWNERS, cluster_pool_release_cb, &r,
	    &cause) < 0) {
		json_decref(r.released);
		json_decref(r.kept);
		cmd_fail(req, ERR_INTERNAL, cause);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:o,s:o}", "released", r.released, "kept",
	    r.kept));
	return (CMD_RETURN_DONE);
}

/* ---- the engine: what this host does for the members it holds ---- */

/* Is the local vm a pool member of the cluster that is this host's? */
static struct cluster_place *
cluster_pool_held(struct vm *vm)
{
	struct cluster_place	*p;

	if (vm->def.pool == NULL || (p = cluster_place_find(vm->def.name)) ==
	    NULL || p->def == NULL)
		return (NULL);
	if (p->pl != NULL && !cluster_place_mine(p))
		return (NULL);
	return (p);
}

/* The reset disk is free again: owners/VM goes (if still dirty). */
static void
cluster_pool_reset_cb(void *arg, const char *errclass, const char *cause)
{
	char	*vm = arg;

	if (errclass != NULL)
		log_warnx("cluster: %s: reset, but still marked dirty: %s", vm,
		    cause);
	else
		log_info("cluster: %s: reset from its template, free again",
		    vm);
	json_object_del(cluster_pool_resetting, vm);
	free(vm);
	cluster_pool_kick();
}

/* A dirty member: stop it at once, then reset its disk and free it. */
static void
cluster_pool_tidy(struct vm *vm)
{
	char	*cause = NULL;

	if (vm_is_active(vm)) {
		if (vm->stop_asked != 3 && vm_kill(vm, &cause) != 0)
			goto warn;
		return;
	}
	if (json_object_get(cluster_pool_resetting, vm->def.name) != NULL)
		return;
	if (vm_disk_reset(vm, &cause) != 0)
		goto warn;
	notify_emit("desktop.reset", vm->def.name, NULL);
	json_object_set_new(cluster_pool_resetting, vm->def.name,
	    json_true());
	userdb_del(USERDB_OWNERS, vm->def.name, cluster_pool_reset_cb,
	    xstrdup(vm->def.name));
	return;
warn:
	log_warnx("cluster: %s: %s", vm->def.name, cause);
	free(cause);
}

/*
 * A local pool desktop whose definition left etcd (pool resize down or
 * rm while it still ran): kill it, then remove it with its disk. 1 if
 * vm was one.
 */
static int
cluster_pool_orphan(struct vm *vm)
{
	struct cluster_place	*p;
	char			*cause = NULL;

	if (vm->def.pool == NULL || cluster_gen == 0 || !cluster_host_joined())
		return (0);
	if ((p = cluster_place_find(vm->def.name)) != NULL && p->def != NULL)
		return (0);
	if (vm_is_active(vm)) {
		if (vm->stop_asked == 3)
			return (1);
		log_info("cluster: %s: no longer in pool %s: killing it",
		    vm->def.name, vm->def.pool);
		if (vm_kill(vm, &cause) != 0)
			goto warn;
		return (1);
	}
	log_info("cluster: %s: no longer in pool %s: removed",
	    vm->def.name, vm->def.pool);
	if (vm_delete(vm, &cause) != 0)
		goto warn;
	return (1);
warn:
	log_warnx("cluster: %s: %s", vm->def.name, cause);
	free(cause);
	return (1);
}

/*
 * A stateless or floating member stopped here that placement gives
 * another host (it failed over while this host was down): its copy is
 * stale, never to start again; remove it with its clone. 1 if vm was one.
 */
static int
cluster_pool_stale(struct vm *vm)
{
	struct cluster_place	*p;
	char			*cause = NULL;

	if (vm->def.pool == NULL || !cluster_host_joined() ||
	    vm_is_active(vm) || vm_migrate_busy(vm) ||
	    (p = cluster_place_find(vm->def.name)) == NULL || p->def == NULL ||
	    p->pl == NULL || cluster_place_mine(p) ||
	    !cluster_pool_disposable(p))
		return (0);
	log_info("cluster: %s: placed on %s: its stale copy here removed",
	    vm->def.name, cluster_place_at(p));
	if (vm_delete(vm, &cause) != 0) {
		log_warnx("cluster: %s: %s", vm->def.name, cause);
		free(cause);
	}
	return (1);
}

/* pool set --profile reached the member's definition: this copy too. */
static void
cluster_pool_profile(struct vm *vm, struct cluster_place *p)
{
	const char	*name = json_string_value(json_object_get(
			    cluster_place_def(p), "profile"));
	enum vm_profile	 prof, old = vm->def.profile;
	char		*cause = NULL;

	if (name == NULL || vm_profile_from_name(name, &prof) != 0 ||
	    prof == old)
		return;
	vm->def.profile = prof;
	if (vm_save(vm, &cause) != 0) {
		vm->def.profile = old;
		log_warnx("cluster: %s: profile %s not saved: %s",
		    vm->def.name, name, cause);
		free(cause);
		return;
	}
	log_info("cluster: %s: profile %s from next start", vm->def.name,
	    name);
}

static void
cluster_pool_run(evutil_socket_t fd, short events, void *arg)
{
	struct vm		*vm, *vm1;
	struct cluster_place	*p;
	json_t			*own, *pool;
	char			*cause = NULL;

	if (cluster_fencing())
		return;
	TAILQ_FOREACH_SAFE(vm, &vms, entry, vm1) {
		if (cluster_pool_orphan(vm) || cluster_pool_stale(vm))
			continue;
		if ((p = cluster_pool_held(vm)) == NULL)
			continue;
		cluster_pool_profile(vm, p);
		own = userdb_get(USERDB_OWNERS, vm->def.name);
		pool = userdb_get(DB_POOLS, vm->def.pool);
		if (json_is_true(json_object_get(own, "dirty")))
			cluster_pool_tidy(vm);
		else if (own == NULL && pool != NULL &&
		    cluster_pool_floating(pool) && vm->state == VM_RUNNING &&
		    vm->stop_asked == 0 && cluster_pool_free_running(
		    vm->def.pool) > json_integer_value(json_object_get(pool,
		    "prestart"))) {
			/* Given back by a host that does not run it, and
			 * more run free than the pool keeps booted. */
			log_info("cluster: %s: nobody's now: stopping it",
			    vm->def.name);
			if (vm_stop(vm, 0, 60, &cause) != 0) {
				log_warnx("cluster: %s: %s", vm->def.name,
				    cause);
				free(cause);
				cause = NULL;
			}
		}
		json_decref(own);
		json_decref(pool);
	}
	cluster_pool_prestart();
}

/* Look at the members again, from the loop. */
void
cluster_pool_kick(void)
{
	if (qmpd->cluster == NULL)
		return;
	if (cluster_pool_ev == NULL) {
		cluster_pool_ev = event_new(qmpd->base, -1, 0,
		    cluster_pool_run, NULL);
		cluster_pool_resetting = json_object();
	}
	event_active(cluster_pool_ev, EV_TIMEOUT, 0);
}

/*
 * vm.state in a cluster: a floating member whose user shut it down goes
 * back to its pool, as on one host.
 */
static void
cluster_pool_state(const char *name, json_t *fields)
{
	struct vm	*vm;
	json_t		*own, *pool;
	const char	*state;

	if (name == NULL || (vm = vm_find(name)) == NULL ||
	    vm->def.pool == NULL)
		return;
	if (cluster_pool_held(vm) == NULL) {
		cluster_pool_kick();	/* an orphan, once stopped, goes */
		return;
	}
	state = json_string_value(json_object_get(fields, "state"));
	if (state != NULL && (strcmp(state, "stopped") == 0 ||
	    strcmp(state, "crashed") == 0)) {
		own = userdb_get(USERDB_OWNERS, name);
		pool = userdb_get(DB_POOLS, vm->def.pool);
		if (json_object_get(own, "login") != NULL && pool != NULL &&
		    cluster_pool_floating(pool))
			cluster_pool_return(name, own, state);
		json_decref(own);
		json_decref(pool);
	}
	cluster_pool_kick();
}

/*
 * session.ended in a cluster: the pool's disconnect action, run by the
 * host whose QEMU lost its last client (only a member held here has
 * a local VM with a pool).
 */
static void
cluster_pool_session_ended(const char *name, json_t *fields)
{
	struct vm	*vm;

	if (name == NULL || (vm = vm_find(name)) == NULL ||
	    vm->def.pool == NULL || cluster_pool_held(vm) == NULL)
		return;
	pool_disconnect_ended(name, fields);
}

/* Keep this list sorted: it is searched with bsearch. */
static const struct notify_handler cluster_pool_handlers[] = {
	{ "session.ended", cluster_pool_session_ended },
	{ "vm.state", cluster_pool_state },
};

/* qmpd's events in a cluster (instead of pool.c's). */
void
cluster_pool_event(const char *event, const char *name, json_t *fields,
    void *arg)
{
	notify_dispatch(cluster_pool_handlers, nitems(cluster_pool_handlers),
	    event, name, fields);
}
