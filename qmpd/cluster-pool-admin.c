/*
 * pool resize, rm and set in cluster mode (issue 13). Each is one etcd
 * transaction that holds only if pools/NAME is still the record this
 * host's view has and no member it touches was claimed meanwhile
 * (owners/VM unchanged), so two hosts' admin commands and a login on a
 * third never tear a pool apart. Hosts act on what the watch then
 * shows: a member whose vms/ key went is removed where it lives
 * (cluster-place.c, or the pool engine if it still ran).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "pool.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

/*
 * etcd refuses a transaction with more than 128 compares or operations
 * (--max-txn-ops); a shrink costs two of each per member.
 */
#define CLUSTER_POOL_TXN_SHRINK	60
#define CLUSTER_POOL_NAMES	1000	/* NAME-1 .. NAME-1000 */

struct cluster_pool_adm {
	struct cmd_req	*req;
	char		*name;
	char		*what;		/* "resized to 4", for the log */
	json_t		*reply;
	json_t		*tidy;		/* rm: members' leftovers to delete */
};

/* A member of pool pname (its vms/ key exists), or NULL. */
static struct cluster_place *
cluster_pool_adm_member(const char *pname, long k)
{
	struct cluster_place	*p;
	const char		*of;
	char			 name[VM_NAME_MAX];

	if ((size_t)snprintf(name, sizeof name, "%s-%ld", pname, k) >=
	    sizeof name || (p = cluster_place_find(name)) == NULL ||
	    p->def == NULL)
		return (NULL);
	of = json_string_value(json_object_get(cluster_place_def(p), "pool"));
	return (of != NULL && strcmp(of, pname) == 0 ? p : NULL);
}

/* The pool's record rewritten, compared against the view's revision. */
static void
cluster_pool_adm_record(json_t *cmp, json_t *ops, json_t *pool)
{
	const char	*pname = json_string_value(json_object_get(pool,
			    "name"));
	char		*key, *val;

	key = cluster_key("%s/%s", DB_POOLS, pname);
	json_array_append_new(cmp, etcd_cmp_mod_revision(key,
	    userdb_etcd_revision(DB_POOLS, pname)));
	if (json_object_get(pool, "gone") == NULL) {
		val = json_dumps(pool, JSON_COMPACT | JSON_SORT_KEYS);
		json_array_append_new(ops, etcd_op_put(key, val, 0));
		free(val);
	} else
		json_array_append_new(ops, etcd_op_delete(key, 0));
	free(key);
}

/* A new member's definition, created only if vms/NAME is free. */
void
cluster_pool_member_put(json_t *cmp, json_t *ops, json_t *pool,
    const char *name)
{
	json_t	*rec;
	char	*key, *val;

	rec = json_pack("{s:o,s:n,s:I,s:s}", "def", pool_desktop_args(pool,
	    name), "host", "created", (json_int_t)clock_wall_ms(), "by",
	    cluster_name());
	key = cluster_key("vms/%s", name);
	val = json_dumps(rec, JSON_COMPACT);
	json_array_append_new(cmp, etcd_cmp_mod_revision(key, 0));
	json_array_append_new(ops, etcd_op_put(key, val, 0));
	json_decref(rec);
	free(key);
	free(val);
}

static void
cluster_pool_adm_free(struct cluster_pool_adm *op)
{
	free(op->name);
	free(op->what);
	json_decref(op->reply);
	json_decref(op->tidy);
	free(op);
}

static void
cluster_pool_adm_tidy_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	if (errclass != NULL)
		log_warnx("cluster: %s left in etcd: %s", (char *)arg, cause);
	free(arg);
}

/* Leftovers of a removed pool (placement, dirty marks): best effort. */
static void
cluster_pool_adm_tidy(json_t *tidy)
{
	size_t		 i;
	json_t		*v;
	char		*k;

	json_array_foreach(tidy, i, v) {
		k = cluster_key("%s", json_string_value(v));
		etcd_delete(cluster_etcd, k, 0, cluster_pool_adm_tidy_cb,
		    xstrdup(json_string_value(v)));
		free(k);
	}
}

static void
cluster_pool_adm_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_pool_adm	*op = arg;

	if (errclass != NULL)
		cmd_error(op->req, errclass, "pool %s: etcd: %s", op->name,
		    cause);
	else if (!json_is_true(json_object_get(res, "succeeded")))
		cmd_error(op->req, ERR_BUSY, "pool %s changed on another host "
		    "meanwhile (a desktop handed out, or an admin): try again",
		    op->name);
	else {
		log_info("pool %s: %s in the cluster", op->name, op->what);
		cluster_pool_adm_tidy(op->tidy);
		cmd_reply(op->req, json_incref(op->reply));
	}
	cluster_pool_adm_free(op);
}

static enum cmd_retval
cluster_pool_adm_run(struct cmd_req *req, const char *pname, json_t *cmp,
    json_t *ops, json_t *reply, json_t *tidy, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Send the transaction; the reply comes once etcd answered. */
static enum cmd_retval
cluster_pool_adm_run(struct cmd_req *req, const char *pname, json_t *cmp,
    json_t *ops, json_t *reply, json_t *tidy, const char *fmt, ...)
{
	struct cluster_pool_adm	*op = xcalloc(1, sizeof *op);
	va_list			 ap;

	op->req = req;
	op->name = xstrdup(pname);
	va_start(ap, fmt);
	xvasprintf(&op->what, fmt, ap);
	va_end(ap);
	op->reply = reply;
	op->tidy = tidy;
	etcd_txn(cluster_etcd, cmp, ops, NULL, cluster_pool_adm_cb, op);
	return (CMD_RETURN_WAIT);
}

/* Which free member goes first: stopped ones, then the highest number. */
struct cluster_pool_gone {
	struct cluster_place	*p;
	int			 running;
	long			 k;
};

static int
cluster_pool_gone_cmp(const void *a, const void *b)
{
	const struct cluster_pool_gone	*x = a, *y = b;

	if (x->running != y->running)
		return (x->running - y->running);
	return (x->k < y->k ? 1 : x->k > y->k ? -1 : 0);
}

/*
 * pool.resize in a cluster: up adds definitions NAME-K for the lowest
 * free K, down removes free members (no owners/ key: none in use or
 * being reset), stopped ones first; the record and every member in one
 * transaction.
 */
enum cmd_retval
cluster_pool_resize(struct cmd_req *req, json_t *pool, int64_t size)
{
	const char		*pname = json_string_value(json_object_get(
				    pool, "name"));
	struct cluster_pool_gone	*g;
	struct cluster_place	*p;
	json_t			*cmp, *ops, *rec;
	char			 name[VM_NAME_MAX], *key;
	long			 k;
	int			 have = 0, nfree = 0, i, n;

	g = xcalloc(CLUSTER_POOL_NAMES, sizeof *g);
	for (k = 1; k <= CLUSTER_POOL_NAMES; k++) {
		if ((p = cluster_pool_adm_member(pname, k)) == NULL)
			continue;
		have++;
		if (userdb_etcd_revision(USERDB_OWNERS, p->name) != 0)
			continue;
		g[nfree].p = p;
		g[nfree].running = cluster_place_running(p);
		g[nfree++].k = k;
	}
	if (size < have && have - nfree > size) {
		cmd_error(req, ERR_STATE, "pool %s has %d desktops in use or "
		    "being reset: it cannot shrink below %d now", pname,
		    have - nfree, have - nfree);
		goto done;
	}
	if (have - size > CLUSTER_POOL_TXN_SHRINK) {
		cmd_error(req, ERR_ARG, "pool %s: a cluster shrinks by at most "
		    "%d desktops at a time (etcd's limit per transaction)",
		    pname, CLUSTER_POOL_TXN_SHRINK);
		goto done;
	}
	rec = json_deep_copy(pool);
	if (json_integer_value(json_object_get(rec, "prestart")) > size)
		json_object_set_new(rec, "prestart", json_integer(size));
	json_object_set_new(rec, "size", json_integer(size));
	cmp = json_array();
	ops = json_array();
	cluster_pool_adm_record(cmp, ops, rec);
	for (k = 1, n = have; n < size && k <= CLUSTER_POOL_NAMES; k++) {
		snprintf(name, sizeof name, "%s-%ld", pname, k);
		if ((p = cluster_place_find(name)) != NULL && p->def != NULL)
			continue;
		cluster_pool_member_put(cmp, ops, rec, name);
		n++;
	}
	qsort(g, nfree, sizeof *g, cluster_pool_gone_cmp);
	for (i = 0; i < have - size; i++) {
		key = cluster_key("%s/%s", USERDB_OWNERS, g[i].p->name);
		json_array_append_new(cmp, etcd_cmp_mod_revision(key, 0));
		free(key);
		key = cluster_key("vms/%s", g[i].p->name);
		json_array_append_new(ops, etcd_op_delete(key, 0));
		free(key);
		key = cluster_key("placement/%s", g[i].p->name);
		json_array_append_new(ops, etcd_op_delete(key, 0));
		free(key);
	}
	json_decref(rec);
	free(g);
	return (cluster_pool_adm_run(req, pname, cmp, ops, json_pack(
	    "{s:s,s:I}", "name", pname, "size", (json_int_t)size), NULL,
	    "resized from %d to %lld", have, (long long)size));
done:
	free(g);
	return (CMD_RETURN_DONE);
}

/*
 * pool.rm in a cluster: refused while a member is someone's (as on one
 * host); else the record and every member's definition go in one
 * transaction that holds only if no owners/ key changed meanwhile.
 */
enum cmd_retval
cluster_pool_rm(struct cmd_req *req, json_t *pool)
{
	const char		*pname = json_string_value(json_object_get(
				    pool, "name"));
	struct cluster_place	*p;
	json_t			*cmp, *ops, *users, *tidy, *own, *gone;
	const char		*login;
	char			*key, *list;
	long			 k;
	int			 n = 0;

	users = json_array();
	for (k = 1; k <= CLUSTER_POOL_NAMES; k++) {
		if ((p = cluster_pool_adm_member(pname, k)) == NULL)
			continue;
		own = userdb_get(USERDB_OWNERS, p->name);
		if ((login = json_string_value(json_object_get(own,
		    "login"))) != NULL)
			json_array_append_new(users, json_sprintf("%s (%s)",
			    p->name, login));
		json_decref(own);
	}
	if (json_array_size(users) > 0) {
		list = json_dumps(users, JSON_COMPACT);
		cmd_error(req, ERR_STATE, "pool %s has desktops in use: %s; "
		    "release or unassign them first", pname, list);
		free(list);
		json_decref(users);
		return (CMD_RETURN_DONE);
	}
	json_decref(users);
	cmp = json_array();
	ops = json_array();
	tidy = json_array();
	gone = json_pack("{s:s,s:b}", "name", pname, "gone", 1);
	cluster_pool_adm_record(cmp, ops, gone);
	json_decref(gone);
	for (k = 1; k <= CLUSTER_POOL_NAMES; k++) {
		if ((p = cluster_pool_adm_member(pname, k)) == NULL)
			continue;
		n++;
		key = cluster_key("%s/%s", USERDB_OWNERS, p->name);
		json_array_append_new(cmp, etcd_cmp_mod_revision(key,
		    userdb_etcd_revision(USERDB_OWNERS, p->name)));
		free(key);
		key = cluster_key("vms/%s", p->name);
		json_array_append_new(ops, etcd_op_delete(key, 0));
		free(key);
		/* After it: a member's placement and a dirty mark. */
		json_array_append_new(tidy, json_sprintf("placement/%s",
		    p->name));
		json_array_append_new(tidy, json_sprintf("%s/%s",
		    USERDB_OWNERS, p->name));
	}
	return (cluster_pool_adm_run(req, pname, cmp, ops, json_pack("{s:s}",
	    "name", pname), tidy, "removed with its %d desktops", n));
}

/*
 * pool.set in a cluster: the record as cmd-pool.c changed it; a new
 * profile goes into every member's definition too (its host applies it
 * to its copy, for the next start).
 */
enum cmd_retval
cluster_pool_set(struct cmd_req *req, json_t *pool)
{
	const char		*pname = json_string_value(json_object_get(
				    pool, "name"));
	json_t			*profile = json_object_get(req->args,
				    "profile");
	struct cluster_place	*p;
	json_t			*cmp, *ops, *rec;
	char			*key, *val;
	long			 k;

	cmp = json_array();
	ops = json_array();
	cluster_pool_adm_record(cmp, ops, pool);
	for (k = 1; profile != NULL && k <= CLUSTER_POOL_NAMES; k++) {
		if ((p = cluster_pool_adm_member(pname, k)) == NULL)
			continue;
		rec = json_deep_copy(p->def);
		json_object_set(json_object_get(rec, "def"), "profile",
		    profile);
		key = cluster_key("vms/%s", p->name);
		val = json_dumps(rec, JSON_COMPACT);
		json_array_append_new(cmp, etcd_cmp_mod_revision(key,
		    p->def_rev));
		json_array_append_new(ops, etcd_op_put(key, val, 0));
		json_decref(rec);
		free(key);
		free(val);
	}
	return (cluster_pool_adm_run(req, pname, cmp, ops,
	    cluster_pool_json(pool), NULL, "settings changed"));
}
