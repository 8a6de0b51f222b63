/*
 * userdb: the store of users, departments, pools and assignments chosen
 * at start-up, and its LMDB backend (single-host mode, as qdesk always
 * kept them). The etcd backend is userdb-etcd.c.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

static const struct userdb_ops	*userdb = &userdb_lmdb;

void
userdb_use(const struct userdb_ops *ops)
{
	userdb = ops;
	log_debug("users, departments and pools: %s", ops->name);
}

int
userdb_clustered(void)
{
	return (userdb != &userdb_lmdb);
}

json_t *
userdb_get(const char *table, const char *key)
{
	return (userdb->get(table, key));
}

int
userdb_foreach(const char *table, userdb_each_cb cb, void *arg, char **cause)
{
	return (userdb->foreach(table, cb, arg, cause));
}

void
userdb_put(const char *table, const char *key, json_t *rec, int flags,
    userdb_cb cb, void *arg)
{
	userdb->put(table, key, rec, flags, cb, arg);
}

void
userdb_del(const char *table, const char *key, userdb_cb cb, void *arg)
{
	userdb->del(table, key, cb, arg);
}

const char *
userdb_owner(const char *vm, const char *local)
{
	return (userdb->owner(vm, local));
}

void
userdb_assign(const char *vm, const char *login, userdb_cb cb, void *arg)
{
	userdb->assign(vm, login, cb, arg);
}

void
userdb_log_cb(void *arg, const char *errclass, const char *cause)
{
	char	*what = arg;

	if (errclass != NULL)
		log_warnx("%s not saved: %s", what, cause);
	free(what);
}

/* Counting a table's local records that etcd's view lacks. */
struct userdb_missing {
	const char	*table;
	int		 n;
};

static int
userdb_missing_cb(const char *key, json_t *rec, void *arg)
{
	struct userdb_missing	*m = arg;
	json_t			*have;

	if ((have = userdb_get(m->table, key)) == NULL)
		m->n++;
	json_decref(have);
	return (0);
}

/*
 * At a cluster join: users and departments this host's LMDB kept from
 * before, that the cluster (etcd) lacks, are not imported by themselves
 * (a rejoin would bring back users removed meanwhile); say how to.
 */
void
userdb_import_hint(void)
{
	struct userdb_missing	 users = { DB_USERS, 0 }, depts = { DB_DEPTS,
				    0 };

	db_foreach(qmpd->db, DB_USERS, userdb_missing_cb, &users, NULL);
	db_foreach(qmpd->db, DB_DEPTS, userdb_missing_cb, &depts, NULL);
	if (users.n + depts.n > 0)
		log_info("cluster: this host's LMDB has %d user(s) and %d "
		    "department(s) the cluster lacks: `qdesk user import` "
		    "copies them into etcd", users.n, depts.n);
}

static json_t *
lmdb_get(const char *table, const char *key)
{
	return (db_get(qmpd->db, table, key));
}

/* Owners are the local VM records' owner fields: a table of them. */
static int
lmdb_owners(userdb_each_cb cb, void *arg)
{
	struct vm	*vm, *vm1;
	json_t		*rec;
	int		 n = 0, stop;

	TAILQ_FOREACH_SAFE(vm, &vms, entry, vm1) {
		if (vm->def.owner == NULL)
			continue;
		n++;
		rec = json_pack("{s:s,s:s?}", "login", vm->def.owner, "pool",
		    vm->def.pool);
		stop = cb(vm->def.name, rec, arg);
		json_decref(rec);
		if (stop)
			break;
	}
	return (n);
}

static int
lmdb_foreach(const char *table, userdb_each_cb cb, void *arg, char **cause)
{
	if (strcmp(table, USERDB_OWNERS) == 0)
		return (lmdb_owners(cb, arg));
	return (db_foreach(qmpd->db, table, cb, arg, cause));
}

/* LMDB answers at once: cb runs before this returns. */
static void
lmdb_put(const char *table, const char *key, json_t *rec, int flags,
    userdb_cb cb, void *arg)
{
	json_t	*old;
	char	*cause = NULL;
	int	 rc;

	if ((flags & USERDB_CREATE) && (old = db_get(qmpd->db, table,
	    key)) != NULL) {
		json_decref(old);
		xasprintf(&cause, "%s/%s exists already", table, key);
		cb(arg, ERR_EXISTS, cause);
		free(cause);
		return;
	}
	if (flags & USERDB_NOSYNC)
		rc = db_put_nosync(qmpd->db, table, key, rec, &cause);
	else
		rc = db_put(qmpd->db, table, key, rec, &cause);
	cb(arg, rc != 0 ? ERR_INTERNAL : NULL, cause);
	free(cause);
}

static void
lmdb_del(const char *table, const char *key, userdb_cb cb, void *arg)
{
	char	*cause = NULL;

	if (db_del(qmpd->db, table, key, &cause) < 0)
		cb(arg, ERR_INTERNAL, cause);
	else
		cb(arg, NULL, NULL);
	free(cause);
}

static const char *
lmdb_owner(const char *vm, const char *local)
{
	return (local);
}

/* The owner field of the local VM record, saved with it. */
static void
lmdb_assign(const char *name, const char *login, userdb_cb cb, void *arg)
{
	struct vm	*vm;
	char		*cause = NULL;

	if ((vm = vm_find(name)) == NULL) {
		xasprintf(&cause, "no VM named %s", name);
		cb(arg, ERR_NOTFOUND, cause);
	} else if (login != NULL && vm->def.owner != NULL &&
	    strcmp(vm->def.owner, login) != 0) {
		xasprintf(&cause, "VM %s is assigned to %s", name,
		    vm->def.owner);
		cb(arg, ERR_EXISTS, cause);
	} else if (vm_set_field(vm, &vm->def.owner, login, &cause) != 0)
		cb(arg, ERR_INTERNAL, cause);
	else
		cb(arg, NULL, NULL);
	free(cause);
}

const struct userdb_ops userdb_lmdb = {
	"LMDB", lmdb_get, lmdb_foreach, lmdb_put, lmdb_del, lmdb_owner,
	lmdb_assign
};
