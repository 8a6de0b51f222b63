/*
 * LMDB helpers: the environment, its named tables, JSON values. mdb errors
 * become a cause string here, once, at the module edge.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "compat.h"
#include "db.h"
#include "proto.h"
#include "xmalloc.h"

/* errno values that mean the host ran out of something. */
static const int db_resource_errnos[] = {
	ENOSPC, EDQUOT, EMFILE, ENFILE, ENOMEM, ENOBUFS
};
/* LMDB's own: its map, readers, dirty pages or tables are exhausted. */
static const int db_resource_mdb[] = {
	MDB_MAP_FULL, MDB_READERS_FULL, MDB_TXN_FULL, MDB_DBS_FULL,
	MDB_TLS_FULL, MDB_CURSOR_FULL, MDB_PAGE_FULL, MDB_MAP_RESIZED
};

static const char *db_tables[] = {
	DB_VMS, DB_IMAGES, DB_NETWORKS, DB_LEASES, DB_USERS, DB_DEPTS,
	DB_POOLS, DB_SESSIONS, DB_META, DB_LOCKOUTS,
	DB_VMUIDS
};

/* Tables opened later by name (a shared image store's index). */
#define DB_EXTRA_MAX	8

struct db {
	MDB_env		*env;
	MDB_dbi		 dbi[nitems(db_tables)];
	char		*extra[DB_EXTRA_MAX];
	MDB_dbi		 extra_dbi[DB_EXTRA_MAX];
};

struct db_txn {
	struct db	*db;
	MDB_txn		*txn;
	int		 nosync;
};

static int
db_table(struct db *db, const char *table, MDB_dbi *dbi, char **cause)
{
	size_t	i;

	for (i = 0; i < nitems(db_tables); i++) {
		if (strcmp(db_tables[i], table) == 0) {
			*dbi = db->dbi[i];
			return (0);
		}
	}
	for (i = 0; i < DB_EXTRA_MAX && db->extra[i] != NULL; i++) {
		if (strcmp(db->extra[i], table) == 0) {
			*dbi = db->extra_dbi[i];
			return (0);
		}
	}
	if (cause != NULL)
		xasprintf(cause, "no database table %s", table);
	return (-1);
}

/* Does cause end in ": reason" or hold ": reason" before more words? */
static int
db_cause_says(const char *cause, const char *reason)
{
	const char	*p;
	size_t		 len = strlen(reason);

	for (p = cause; (p = strstr(p, reason)) != NULL; p++) {
		if (p - cause >= 2 && p[-2] == ':' && p[-1] == ' ' &&
		    (p[len] == '\0' || p[len] == ' ' || p[len] == ';' ||
		    p[len] == ')' || p[len] == ','))
			return (1);
	}
	return (0);
}

const char *
db_errclass(const char *errclass, const char *cause)
{
	size_t	i;

	if (cause == NULL)
		return (errclass);
	for (i = 0; i < nitems(db_resource_errnos); i++) {
		if (db_cause_says(cause, strerror(db_resource_errnos[i])))
			return (ERR_RESOURCE);
	}
	for (i = 0; i < nitems(db_resource_mdb); i++) {
		if (db_cause_says(cause, mdb_strerror(db_resource_mdb[i])))
			return (ERR_RESOURCE);
	}
	return (errclass);
}

static int
db_fail(char **cause, const char *what, int rc)
{
	if (cause != NULL)
		xasprintf(cause, "state database: %s: %s", what,
		    mdb_strerror(rc));
	return (-1);
}

struct db *
db_open(const char *path, char **cause)
{
	struct db	*db;
	MDB_txn		*txn;
	size_t		 i;
	int		 rc, fd;

	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", path, strerror(errno));
		return (NULL);
	}
	db = xcalloc(1, sizeof *db);
	if ((rc = mdb_env_create(&db->env)) != 0)
		goto fail;
	mdb_env_set_maxdbs(db->env, nitems(db_tables) + DB_EXTRA_MAX);
	/* Sparse file: 4 GiB of address space, only what is used is on disk. */
	mdb_env_set_mapsize(db->env, (size_t)4 << 30);
	mdb_env_set_maxreaders(db->env, 64);
	/*
	 * MDB_NOSYNC: a commit is in the page cache at once, which survives
	 * kill -9 of qmpd; db_commit then syncs to disk unless the caller
	 * said the record is run state that a host crash makes moot anyway.
	 */
	if ((rc = mdb_env_open(db->env, path, MDB_NOTLS | MDB_NOSYNC,
	    0600)) != 0)
		goto fail;
	/* LMDB leaves its data fd inheritable: QEMU must never get it. */
	if (mdb_env_get_fd(db->env, &fd) == 0)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	if ((rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0)
		goto fail;
	for (i = 0; i < nitems(db_tables); i++) {
		rc = mdb_dbi_open(txn, db_tables[i], MDB_CREATE, &db->dbi[i]);
		if (rc != 0) {
			mdb_txn_abort(txn);
			goto fail;
		}
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	return (db);
fail:
	xasprintf(cause, "state database %s: %s", path, mdb_strerror(rc));
	if (db->env != NULL)
		mdb_env_close(db->env);
	free(db);
	return (NULL);
}

/* Open (creating) table name beside the fixed ones; idempotent. */
int
db_table_open(struct db *db, const char *name, char **cause)
{
	MDB_txn	*txn;
	MDB_dbi	 dbi;
	size_t	 i;
	int	 rc;

	if (db_table(db, name, &dbi, NULL) == 0)
		return (0);
	for (i = 0; i < DB_EXTRA_MAX && db->extra[i] != NULL; i++)
		;
	if (i == DB_EXTRA_MAX) {
		xasprintf(cause, "database table %s: no room for more than %d "
		    "extra tables", name, DB_EXTRA_MAX);
		return (-1);
	}
	if ((rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0)
		goto fail;
	if ((rc = mdb_dbi_open(txn, name, MDB_CREATE, &dbi)) != 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	db->extra[i] = xstrdup(name);
	db->extra_dbi[i] = dbi;
	return (0);
fail:
	xasprintf(cause, "database table %s: %s", name, mdb_strerror(rc));
	return (-1);
}

void
db_close(struct db *db)
{
	size_t	i;

	if (db == NULL)
		return;
	mdb_env_close(db->env);
	for (i = 0; i < DB_EXTRA_MAX; i++)
		free(db->extra[i]);
	free(db);
}

/* The map's size and the bytes its pages in use take, for metrics. */
void
db_usage(struct db *db, unsigned long long *used, unsigned long long *size)
{
	MDB_envinfo	info;
	MDB_stat	st;

	*used = *size = 0;
	if (mdb_env_info(db->env, &info) != 0 || mdb_env_stat(db->env,
	    &st) != 0)
		return;
	*size = info.me_mapsize;
	*used = (unsigned long long)(info.me_last_pgno + 1) * st.ms_psize;
}

static json_t *
db_decode(MDB_val *v)
{
	return (json_loadb(v->mv_data, v->mv_size, JSON_DISABLE_EOF_CHECK,
	    NULL));
}

static json_t *
db_get_in(struct db *db, MDB_txn *txn, const char *table, const char *key)
{
	MDB_dbi	 dbi;
	MDB_val	 k, v;

	if (db_table(db, table, &dbi, NULL) != 0)
		return (NULL);
	k.mv_data = (void *)key;
	k.mv_size = strlen(key);
	if (mdb_get(txn, dbi, &k, &v) != 0)
		return (NULL);
	return (db_decode(&v));
}

static int
db_put_in(struct db *db, MDB_txn *txn, const char *table, const char *key,
    const json_t *val, char **cause)
{
	MDB_dbi	 dbi;
	MDB_val	 k, v;
	char	*s;
	int	 rc;

	if (db_table(db, table, &dbi, cause) != 0)
		return (-1);
	if ((s = json_dumps(val, JSON_COMPACT)) == NULL) {
		if (cause != NULL)
			xasprintf(cause, "cannot encode %s/%s", table, key);
		return (-1);
	}
	k.mv_data = (void *)key;
	k.mv_size = strlen(key);
	v.mv_data = s;
	v.mv_size = strlen(s);
	rc = mdb_put(txn, dbi, &k, &v, 0);
	free(s);
	if (rc != 0)
		return (db_fail(cause, "put", rc));
	return (0);
}

static int
db_del_in(struct db *db, MDB_txn *txn, const char *table, const char *key,
    char **cause)
{
	MDB_dbi	 dbi;
	MDB_val	 k;
	int	 rc;

	if (db_table(db, table, &dbi, cause) != 0)
		return (-1);
	k.mv_data = (void *)key;
	k.mv_size = strlen(key);
	rc = mdb_del(txn, dbi, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return (1);
	if (rc != 0)
		return (db_fail(cause, "del", rc));
	return (0);
}

json_t *
db_get(struct db *db, const char *table, const char *key)
{
	MDB_txn	*txn;
	json_t	*j;

	if (mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn) != 0)
		return (NULL);
	j = db_get_in(db, txn, table, key);
	mdb_txn_abort(txn);
	return (j);
}

int
db_put(struct db *db, const char *table, const char *key, const json_t *val,
    char **cause)
{
	struct db_txn	*t;

	if ((t = db_begin(db, cause)) == NULL)
		return (-1);
	if (db_txn_put(t, table, key, val, cause) != 0) {
		db_abort(t);
		return (-1);
	}
	return (db_commit(t, cause));
}

int
db_put_nosync(struct db *db, const char *table, const char *key,
    const json_t *val, char **cause)
{
	struct db_txn	*t;

	if ((t = db_begin(db, cause)) == NULL)
		return (-1);
	t->nosync = 1;
	if (db_txn_put(t, table, key, val, cause) != 0) {
		db_abort(t);
		return (-1);
	}
	return (db_commit(t, cause));
}

int
db_del(struct db *db, const char *table, const char *key, char **cause)
{
	struct db_txn	*t;
	int		 rc;

	if ((t = db_begin(db, cause)) == NULL)
		return (-1);
	if ((rc = db_txn_del(t, table, key, cause)) != 0) {
		db_abort(t);
		return (rc);
	}
	return (db_commit(t, cause));
}

int
db_del_nosync(struct db *db, const char *table, const char *key,
    char **cause)
{
	struct db_txn	*t;
	int		 rc;

	if ((t = db_begin(db, cause)) == NULL)
		return (-1);
	t->nosync = 1;
	if ((rc = db_txn_del(t, table, key, cause)) != 0) {
		db_abort(t);
		return (rc);
	}
	return (db_commit(t, cause));
}

int
db_foreach(struct db *db, const char *table,
    int (*cb)(const char *, json_t *, void *), void *arg, char **cause)
{
	MDB_txn		*txn;
	MDB_cursor	*cur;
	MDB_dbi		 dbi;
	MDB_val		 k, v;
	json_t		*j;
	char		*key;
	int		 rc, n = 0, stop = 0;

	if (db_table(db, table, &dbi, cause) != 0)
		return (-1);
	if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) != 0)
		return (db_fail(cause, "begin", rc));
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
		mdb_txn_abort(txn);
		return (db_fail(cause, "cursor", rc));
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (rc == 0 && !stop) {
		key = xstrndup(k.mv_data, k.mv_size);
		if ((j = db_decode(&v)) != NULL) {
			n++;
			stop = cb(key, j, arg);
			json_decref(j);
		}
		free(key);
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return (n);
}

struct db_txn *
db_begin(struct db *db, char **cause)
{
	struct db_txn	*t;
	int		 rc;

	t = xcalloc(1, sizeof *t);
	t->db = db;
	if ((rc = mdb_txn_begin(db->env, NULL, 0, &t->txn)) != 0) {
		free(t);
		db_fail(cause, "begin", rc);
		return (NULL);
	}
	return (t);
}

json_t *
db_txn_get(struct db_txn *t, const char *table, const char *key)
{
	return (db_get_in(t->db, t->txn, table, key));
}

int
db_txn_put(struct db_txn *t, const char *table, const char *key,
    const json_t *val, char **cause)
{
	return (db_put_in(t->db, t->txn, table, key, val, cause));
}

int
db_txn_del(struct db_txn *t, const char *table, const char *key, char **cause)
{
	return (db_del_in(t->db, t->txn, table, key, cause));
}

int
db_commit(struct db_txn *t, char **cause)
{
	MDB_env	*env = t->db->env;
	int	 rc, nosync = t->nosync;

	rc = mdb_txn_commit(t->txn);
	free(t);
	if (rc != 0)
		return (db_fail(cause, "commit", rc));
	if (!nosync && (rc = mdb_env_sync(env, 1)) != 0)
		return (db_fail(cause, "sync", rc));
	return (0);
}

void
db_abort(struct db_txn *t)
{
	if (t == NULL)
		return;
	mdb_txn_abort(t->txn);
	free(t);
}
