/*
 * user.import: the users and departments a host kept in its LMDB before
 * it joined a cluster, copied into etcd, where a cluster keeps them.
 * Asked for by the admin (`qdesk user import`), not done at join: a host
 * that rejoins would otherwise bring back every user removed from the
 * cluster meanwhile. Departments first (users name them), then users,
 * one create-only transaction each, one after the other: a record etcd
 * already has is never overwritten, and the answer (and the log) says so
 * in one line per record kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmpd.h"
#include "userdb.h"
#include "xmalloc.h"

/* What is copied, in this order. */
static const struct {
	const char	*table;
	const char	*kind;
} cmd_user_import_tables[] = {
	{ DB_DEPTS, "dept" },
	{ DB_USERS, "user" },
};

/* The whole import: the records still to go and what became of each. */
struct cmd_user_import {
	struct cmd_req	*req;
	json_t		*todo;		/* [{kind, table, key, rec}] */
	size_t		 next;
	json_t		*records;	/* [{kind, name, result}], the answer */
	int		 imported;
	int		 kept;
};

static void	cmd_user_import_next(struct cmd_user_import *);

static int
cmd_user_import_collect(const char *key, json_t *rec, void *arg)
{
	json_t	*todo = arg;

	json_array_append_new(todo, json_pack("{s:s,s:O}", "key", key,
	    "rec", rec));
	return (0);
}

/* One record's result, into the answer; a record kept is logged too. */
static void
cmd_user_import_result(struct cmd_user_import *im, json_t *item,
    const char *errclass, const char *cause)
{
	const char	*kind = json_string_value(json_object_get(item, "kind"));
	const char	*key = json_string_value(json_object_get(item, "key"));
	char		*result;

	if (errclass == NULL) {
		im->imported++;
		result = xstrdup("imported");
		log_info("cluster: %s %s imported from this host's LMDB",
		    kind, key);
	} else if (strcmp(errclass, ERR_EXISTS) == 0) {
		im->kept++;
		xasprintf(&result, "not imported: etcd has %s %s already "
		    "(kept etcd's)", kind, key);
		log_warnx("cluster: %s", result);
	} else {
		xasprintf(&result, "failed: %s", cause);
		log_warnx("cluster: %s %s not imported: %s", kind, key, cause);
	}
	json_array_append_new(im->records, json_pack("{s:s,s:s,s:s}", "kind",
	    kind, "name", key, "result", result));
	free(result);
}

static void
cmd_user_import_done(void *arg, const char *errclass, const char *cause)
{
	struct cmd_user_import	*im = arg;

	cmd_user_import_result(im, json_array_get(im->todo, im->next - 1),
	    errclass, cause);
	cmd_user_import_next(im);
}

/* The next record's transaction, or the answer when none is left. */
static void
cmd_user_import_next(struct cmd_user_import *im)
{
	json_t		*item, *have;
	const char	*table, *key;

	while ((item = json_array_get(im->todo, im->next)) != NULL) {
		im->next++;
		table = json_string_value(json_object_get(item, "table"));
		key = json_string_value(json_object_get(item, "key"));
		if ((have = userdb_get(table, key)) != NULL) {
			/* etcd's view has it: no transaction needed. */
			json_decref(have);
			cmd_user_import_result(im, item, ERR_EXISTS, NULL);
			continue;
		}
		userdb_put(table, key, json_object_get(item, "rec"),
		    USERDB_CREATE, cmd_user_import_done, im);
		return;
	}
	log_info("cluster: import from this host's LMDB: %d imported, %d "
	    "kept as etcd has them", im->imported, im->kept);
	cmd_reply(im->req, json_pack("{s:i,s:i,s:o}", "imported",
	    im->imported, "kept", im->kept, "records", im->records));
	json_decref(im->todo);
	free(im);
}

static enum cmd_retval
cmd_user_import(struct cmd_req *req)
{
	struct cmd_user_import	*im;
	json_t			*part, *item;
	char			*cause = NULL;
	size_t			 i, j;

	if (!userdb_clustered()) {
		cmd_error(req, ERR_STATE, "user import is for a host in a "
		    "cluster (qmpd --cluster): this host's users are in its "
		    "LMDB already");
		return (CMD_RETURN_DONE);
	}
	im = xcalloc(1, sizeof *im);
	im->req = req;
	im->todo = json_array();
	im->records = json_array();
	for (i = 0; i < nitems(cmd_user_import_tables); i++) {
		part = json_array();
		if (db_foreach(qmpd->db, cmd_user_import_tables[i].table,
		    cmd_user_import_collect, part, &cause) < 0) {
			json_decref(part);
			json_decref(im->todo);
			json_decref(im->records);
			free(im);
			cmd_fail(req, ERR_INTERNAL, cause);
			return (CMD_RETURN_DONE);
		}
		json_array_foreach(part, j, item) {
			json_object_set_new(item, "table", json_string(
			    cmd_user_import_tables[i].table));
			json_object_set_new(item, "kind", json_string(
			    cmd_user_import_tables[i].kind));
		}
		json_array_extend(im->todo, part);
		json_decref(part);
	}
	cmd_user_import_next(im);
	return (CMD_RETURN_WAIT);
}

const struct cmd_entry cmd_user_import_entries[] = {
	{ "user.import", NULL, ROLE_ADMIN, cmd_user_import },
	{ NULL, NULL, 0, NULL }
};
