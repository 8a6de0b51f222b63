/*
 * userdb: where the office's records are kept — users (with their
 * password hashes), departments, pools and assignments. One interface,
 * two stores: LMDB on a single host (userdb.c), the watched etcd view in
 * a cluster (userdb-etcd.c), so user.c, cmd-user.c, cmd-broker.c and the
 * pools never ask which. Reads are synchronous (LMDB, or the view the
 * watch keeps current); writes answer through a callback, at once for
 * LMDB, after etcd's compare-and-swap in a cluster.
 */
#ifndef QDESK_USERDB_H
#define QDESK_USERDB_H

#include <stdint.h>

#include <jansson.h>

/* Tables: DB_USERS, DB_DEPTS, DB_POOLS (db.h) and these, etcd only. */
#define USERDB_OWNERS	"owners"	/* VM -> {"login"}: an assignment */

/* errclass NULL: done. The record written is the caller's still. */
typedef void	(*userdb_cb)(void *arg, const char *errclass,
		    const char *cause);
typedef int	(*userdb_each_cb)(const char *key, json_t *rec, void *arg);

#define USERDB_CREATE	0x1	/* refused (ERR_EXISTS) if the key is there */
#define USERDB_NOSYNC	0x2	/* a write a crash may lose (last_login) */

struct userdb_ops {
	const char	*name;
	json_t		*(*get)(const char *table, const char *key);
	int		 (*foreach)(const char *table, userdb_each_cb, void *,
			    char **cause);
	void		 (*put)(const char *table, const char *key,
			    json_t *rec, int flags, userdb_cb, void *);
	void		 (*del)(const char *table, const char *key, userdb_cb,
			    void *);
	/*
	 * A desktop's owner: LMDB keeps it in the local VM record (local,
	 * its def.owner), etcd in owners/VM so any host may assign any
	 * desktop. assign: login NULL frees it; a desktop someone else
	 * has is refused (ERR_EXISTS), in etcd by CAS.
	 */
	const char	*(*owner)(const char *vm, const char *local);
	void		 (*assign)(const char *vm, const char *login,
			    userdb_cb, void *);
};
extern const struct userdb_ops	userdb_lmdb;	/* userdb.c */
extern const struct userdb_ops	userdb_etcd;	/* userdb-etcd.c */

/* Which store: set once at start-up (LMDB unless qmpd --cluster). */
void	 userdb_use(const struct userdb_ops *);
int	 userdb_clustered(void);

/* A record (the caller owns it) or NULL. */
json_t	*userdb_get(const char *table, const char *key);
int	 userdb_foreach(const char *table, userdb_each_cb, void *,
	    char **cause);
void	 userdb_put(const char *table, const char *key, json_t *rec,
	    int flags, userdb_cb, void *);
void	 userdb_del(const char *table, const char *key, userdb_cb, void *);
const char *userdb_owner(const char *vm, const char *local);
void	 userdb_assign(const char *vm, const char *login, userdb_cb, void *);
/* At a cluster join: log how many local users etcd lacks, and the fix. */
void	 userdb_import_hint(void);
/* A userdb_cb that only logs a failure; arg is an xstrdup'd what. */
void	 userdb_log_cb(void *arg, const char *errclass, const char *cause);

/* userdb-etcd.c: the watch's events for users/, depts/, ... and sweep. */
int	 userdb_etcd_event(const char *key, json_t *kv, int put);
void	 userdb_etcd_sweep(unsigned int gen);
/* The key's mod_revision in the view, for a transaction: 0 if none. */
int64_t	 userdb_etcd_revision(const char *table, const char *key);

#endif
