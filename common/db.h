/*
 * State database: one LMDB environment, named tables, JSON values keyed by
 * name. Every write is one short transaction that commits whole or not at
 * all (LMDB's default durable commit: kill -9 loses nothing acknowledged).
 * Never hold a transaction across a callback, never use one after fork().
 */
#ifndef QDESK_DB_H
#define QDESK_DB_H

#include <jansson.h>

struct db;
struct db_txn;

/* The named databases; keep in step with db_tables[] in db.c. */
#define DB_VMS		"vms"
#define DB_IMAGES	"images"
#define DB_NETWORKS	"networks"
#define DB_LEASES	"leases"
#define DB_USERS	"users"
#define DB_DEPTS	"depts"
#define DB_POOLS	"pools"
#define DB_SESSIONS	"sessions"
#define DB_META		"meta"
#define DB_LOCKOUTS	"lockouts"	/* failed logins, run state */
#define DB_VMUIDS	"vmuids"	/* each VM's own uid (qmpd/vm-uid.c) */

/*
 * The class to answer a failure with: ERR_RESOURCE ("ResourceExhausted")
 * when cause says the host ran out of something (a full disk or quota,
 * the state database's map or readers, file descriptors, memory), so a
 * script can tell "fix the host" from "fix your input"; else errclass.
 * Causes are "what: reason" (strerror or mdb_strerror), as every module
 * words them, so the reason is recognised wherever it came from.
 */
const char	*db_errclass(const char *errclass, const char *cause);

/* Open (creating) the environment in directory path. */
struct db	*db_open(const char *path, char **cause);
/* Open (creating) one more table, named at run time (a shared store's). */
int		 db_table_open(struct db *, const char *name, char **cause);
void		 db_close(struct db *);
/* Bytes of the map in use and the map's size. */
void		 db_usage(struct db *, unsigned long long *used,
		    unsigned long long *size);

/* One-shot operations, each its own transaction. */
json_t		*db_get(struct db *, const char *table, const char *key);
int		 db_put(struct db *, const char *table, const char *key,
		    const json_t *val, char **cause);
/*
 * The same, not synced to disk before it returns: for run state, which a
 * host crash makes moot. It survives kill -9 of the process all the same.
 */
int		 db_put_nosync(struct db *, const char *table, const char *key,
		    const json_t *val, char **cause);
/* Returns 0, 1 when the key did not exist, -1 on error. */
int		 db_del(struct db *, const char *table, const char *key,
		    char **cause);
/* The same for run state, not synced (see db_put_nosync). */
int		 db_del_nosync(struct db *, const char *table,
		    const char *key, char **cause);
/*
 * Calls cb for every record in key order inside one read transaction; cb
 * gets a borrowed value and returns non-zero to stop. Returns the number
 * of records visited or -1.
 */
int		 db_foreach(struct db *, const char *table,
		    int (*cb)(const char *key, json_t *val, void *arg),
		    void *arg, char **cause);

/* Multi-record write transactions, for changes that must land together. */
struct db_txn	*db_begin(struct db *, char **cause);
json_t		*db_txn_get(struct db_txn *, const char *table, const char *key);
int		 db_txn_put(struct db_txn *, const char *table, const char *key,
		    const json_t *val, char **cause);
int		 db_txn_del(struct db_txn *, const char *table, const char *key,
		    char **cause);
int		 db_commit(struct db_txn *, char **cause);	/* frees txn */
void		 db_abort(struct db_txn *);			/* frees txn */

#endif
