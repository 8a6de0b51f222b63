/*
 * userdb's etcd backend (cluster mode): users/LOGIN, depts/NAME,
 * pools/NAME and owners/VM under the cluster prefix. Reads come from
 * the view that cluster.c's one watch keeps current, so user.auth on any
 * host answers without a round trip; every write is a compare-and-swap
 * on the mod_revision this host's view has (0: create only), so two
 * hosts' writes of one record never silently overwrite each other: the
 * later one is refused and can be tried again on the newer record. A
 * write that etcd accepted is put in the view at once, so the next
 * command on this host reads it even before the watch brings it.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "userdb.h"
#include "xmalloc.h"

/* Keep this list sorted: it is searched with bsearch. */
static const char *const userdb_etcd_tables[] = {
	DB_DEPTS, USERDB_OWNERS, DB_POOLS, DB_USERS
};

/*
 * {table: {key: {"v": record, "rev": mod_revision, "gen": cluster_gen}}};
 * a deleted key keeps its slot without "v" (so an older event still on
 * its way cannot bring it back) until the next full read sweeps it.
 */
static json_t	*view;

struct userdb_etcd_op {
	char		*table;
	char		*key;
	json_t		*rec;		/* NULL: a delete */
	int		 create;	/* a put of a key etcd had not */
	userdb_cb	 cb;
	void		*arg;
};

static int
userdb_etcd_cmp(const void *a, const void *b)
{
	return (strcmp(a, *(const char *const *)b));
}

/* The table's name in userdb_etcd_tables, or NULL. */
static const char *
userdb_etcd_table(const char *name, size_t len)
{
	char		 buf[16];
	const char	*const *t;

	if (len == 0 || len >= sizeof buf)
		return (NULL);
	memcpy(buf, name, len);
	buf[len] = '\0';
	t = bsearch(buf, userdb_etcd_tables, nitems(userdb_etcd_tables),
	    sizeof *userdb_etcd_tables, userdb_etcd_cmp);
	return (t != NULL ? *t : NULL);
}

static json_t *
userdb_etcd_slot(const char *table, const char *key)
{
	return (json_object_get(json_object_get(view, table), key));
}

/* Does the view hold a record (not a deletion) at key? */
static int
userdb_etcd_has(const char *table, const char *key)
{
	return (json_object_get(userdb_etcd_slot(table, key), "v") != NULL);
}

static void
userdb_etcd_set(const char *table, const char *key, json_t *rec,
    int64_t rev)
{
	json_t	*t;

	if (view == NULL)
		view = json_object();
	if ((t = json_object_get(view, table)) == NULL)
		json_object_set_new(view, table, t = json_object());
	if (rec == NULL)
		json_object_set_new(t, key, json_pack("{s:I,s:I}", "rev",
		    (json_int_t)rev, "gen", (json_int_t)cluster_gen));
	else
		json_object_set_new(t, key, json_pack("{s:O,s:I,s:I}", "v",
		    rec, "rev", (json_int_t)rev, "gen",
		    (json_int_t)cluster_gen));
}

/*
 * A key of the watch ("users/alice", after the prefix): 1 if it is one
 * of ours. An event older than what this host wrote itself is dropped.
 */
int
userdb_etcd_event(const char *key, json_t *kv, int put)
{
	const char	*slash = strchr(key, '/'), *table, *val;
	json_t		*rec = NULL, *slot;
	int64_t		 rev;

	if (slash == NULL || (table = userdb_etcd_table(key, slash - key)) ==
	    NULL)
		return (0);
	key = slash + 1;
	if (*key == '\0')
		return (1);
	rev = json_integer_value(json_object_get(kv, "mod_revision"));
	slot = userdb_etcd_slot(table, key);
	if (slot != NULL && rev != 0 && rev < json_integer_value(
	    json_object_get(slot, "rev")))
		return (1);
	if (put) {
		val = json_string_value(json_object_get(kv, "value"));
		if (val == NULL || (rec = json_loads(val, 0, NULL)) == NULL ||
		    !json_is_object(rec)) {
			log_warnx("cluster: %s/%s: not a JSON object", table,
			    key);
			json_decref(rec);
			return (1);
		}
	}
	userdb_etcd_set(table, key, rec, rev);
	json_decref(rec);
	if (strcmp(table, USERDB_OWNERS) == 0 || strcmp(table, DB_POOLS) == 0)
		cluster_pool_kick();	/* its host (or prestart) may act */
	return (1);
}

/* After a full read: what it lacked was deleted meanwhile. */
void
userdb_etcd_sweep(unsigned int gen)
{
	const char	*table, *key;
	json_t		*t, *slot;
	void		*tmp;

	json_object_foreach(view, table, t) {
		json_object_foreach_safe(t, tmp, key, slot) {
			if (json_integer_value(json_object_get(slot, "gen")) !=
			    gen)
				json_object_del(t, key);
		}
	}
}

static json_t *
userdb_etcd_get(const char *table, const char *key)
{
	json_t	*v = json_object_get(userdb_etcd_slot(table, key), "v");

	return (v != NULL ? json_deep_copy(v) : NULL);
}

static int
userdb_etcd_keycmp(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

/* In key order, like LMDB's, so lists read the same in both modes. */
static int
userdb_etcd_foreach(const char *table, userdb_each_cb cb, void *arg,
    char **cause)
{
	json_t		*t = json_object_get(view, table), *rec, *slot;
	const char	*key;
	char		**keys;
	size_t		 i, n = 0;
	int		 seen = 0;

	keys = xcalloc(json_object_size(t) + 1, sizeof *keys);
	json_object_foreach(t, key, slot)
		keys[n++] = xstrdup(key);
	qsort(keys, n, sizeof *keys, userdb_etcd_keycmp);
	for (i = 0; i < n; i++) {
		/* A callback may have deleted it. */
		if ((rec = userdb_etcd_get(table, keys[i])) == NULL)
			continue;
		seen++;
		if (cb(keys[i], rec, arg) != 0) {
			json_decref(rec);
			break;
		}
		json_decref(rec);
	}
	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	return (seen);
}

static void
userdb_etcd_op_free(struct userdb_etcd_op *op)
{
	free(op->table);
	free(op->key);
	json_decref(op->rec);
	free(op);
}

/* etcd's answer to a CAS put or delete: into the view, then cb. */
static void
userdb_etcd_done(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct userdb_etcd_op	*op = arg;
	char			*why = NULL;
	int64_t			 rev;

	if (errclass != NULL) {
		xasprintf(&why, "etcd: %s", cause);
		op->cb(op->arg, errclass, why);
	} else if (!json_is_true(json_object_get(res, "succeeded"))) {
		/*
		 * A create that failed lost to another host's create, even
		 * if the watch has brought that key here meanwhile (a pool
		 * checkout then tries the next desktop); anything else was
		 * changed under it.
		 */
		if (op->create)
			xasprintf(&why, "%s/%s was created on another host "
			    "meanwhile", op->table, op->key);
		else
			xasprintf(&why, "%s/%s was changed on another host "
			    "meanwhile: try again", op->table, op->key);
		op->cb(op->arg, op->create ? ERR_EXISTS : ERR_BUSY, why);
	} else {
		rev = json_integer_value(json_object_get(json_object_get(res,
		    "header"), "revision"));
		userdb_etcd_set(op->table, op->key, op->rec, rev);
		if (strcmp(op->table, USERDB_OWNERS) == 0)
			cluster_pool_kick();
		op->cb(op->arg, NULL, NULL);
	}
	free(why);
	userdb_etcd_op_free(op);
}

static struct userdb_etcd_op *
userdb_etcd_op(const char *table, const char *key, json_t *rec,
    userdb_cb cb, void *arg)
{
	struct userdb_etcd_op	*op = xcalloc(1, sizeof *op);

	op->table = xstrdup(table);
	op->key = xstrdup(key);
	op->rec = rec != NULL ? json_deep_copy(rec) : NULL;
	op->cb = cb;
	op->arg = arg;
	return (op);
}

/* The key's mod_revision for a CAS: 0 when etcd has no such key. */
static int64_t
userdb_etcd_rev(const char *table, const char *key)
{
	if (!userdb_etcd_has(table, key))
		return (0);
	return (json_integer_value(json_object_get(userdb_etcd_slot(table,
	    key), "rev")));
}

int64_t
userdb_etcd_revision(const char *table, const char *key)
{
	return (userdb_etcd_rev(table, key));
}

static void
userdb_etcd_put(const char *table, const char *key, json_t *rec, int flags,
    userdb_cb cb, void *arg)
{
	struct userdb_etcd_op	*op;
	char			*k, *val;
	int64_t			 rev;

	rev = (flags & USERDB_CREATE) ? 0 : userdb_etcd_rev(table, key);
	if ((flags & USERDB_CREATE) && userdb_etcd_has(table, key)) {
		xasprintf(&k, "%s/%s exists already", table, key);
		cb(arg, ERR_EXISTS, k);
		free(k);
		return;
	}
	op = userdb_etcd_op(table, key, rec, cb, arg);
	op->create = rev == 0;
	k = cluster_key("%s/%s", table, key);
	val = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
	etcd_cas(cluster_etcd, k, rev, val, 0, userdb_etcd_done, op);
	free(val);
	free(k);
}

static void
userdb_etcd_del(const char *table, const char *key, userdb_cb cb, void *arg)
{
	struct userdb_etcd_op	*op;
	char			*k;
	int64_t			 rev = userdb_etcd_rev(table, key);

	if (rev == 0) {
		cb(arg, NULL, NULL);	/* gone already, as LMDB's del */
		return;
	}
	op = userdb_etcd_op(table, key, NULL, cb, arg);
	k = cluster_key("%s/%s", table, key);
	etcd_txn(cluster_etcd, json_pack("[o]", etcd_cmp_mod_revision(k, rev)),
	    json_pack("[o]", etcd_op_delete(k, 0)), NULL, userdb_etcd_done,
	    op);
	free(k);
}

/* owners/VM's login, borrowed from the view (NULL: nobody's). */
static const char *
userdb_etcd_owner(const char *vm, const char *local)
{
	return (json_string_value(json_object_get(json_object_get(
	    userdb_etcd_slot(USERDB_OWNERS, vm), "v"), "login")));
}

/*
 * Create owners/VM (refused if anyone has it, so two hosts never give
 * one desktop to two users), or delete it.
 */
static void
userdb_etcd_assign(const char *vm, const char *login, userdb_cb cb,
    void *arg)
{
	json_t	*rec;

	if (login == NULL) {
		userdb_etcd_del(USERDB_OWNERS, vm, cb, arg);
		return;
	}
	rec = json_pack("{s:s,s:s}", "login", login, "by", cluster_name());
	userdb_etcd_put(USERDB_OWNERS, vm, rec, USERDB_CREATE, cb, arg);
	json_decref(rec);
}

const struct userdb_ops userdb_etcd = {
	"etcd", userdb_etcd_get, userdb_etcd_foreach, userdb_etcd_put,
	userdb_etcd_del, userdb_etcd_owner, userdb_etcd_assign
};
