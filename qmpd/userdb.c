/*
 * userdb: the store of users, departments, pools and assignments chosen
 * at start-up, and its LMDB backend (single-host mode, as qdesk always
 * kept them). The etcd backend is userdb-etcd.c.
 */
#include <stdlib.h>

#include "log.h"
#include "qmpd.h"
#include "userdb.h"
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

void
userdb_log_cb(void *arg, const char *errclass, const char *cause)
{
	char	*what = arg;

	if (errclass != NULL)
		log_warnx("%s not saved: %s", what, cause);
	free(what);
}

static json_t *
lmdb_get(const char *table, const char *key)
{
	return (db_get(qmpd->db, table, key));
}

static int
lmdb_foreach(const char *table, userdb_each_cb cb, void *arg, char **cause)
{
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

const struct userdb_ops userdb_lmdb = {
	"LMDB", lmdb_get, lmdb_foreach, lmdb_put, lmdb_del
};
