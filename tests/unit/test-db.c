/* LMDB round trips: put, get, foreach, delete, multi-record txns, reopen. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <lmdb.h>

#include "check.h"
#include "db.h"
#include "proto.h"

/* Resource errors get their own class, whoever worded the cause. */
static void
test_errclass(void)
{
	char	buf[256];

	snprintf(buf, sizeof buf, "state database: commit: %s",
	    strerror(ENOSPC));
	CHECK_STR(db_errclass(ERR_ARG, buf), ERR_RESOURCE);
	snprintf(buf, sizeof buf, "state database: put: %s",
	    mdb_strerror(MDB_MAP_FULL));
	CHECK_STR(db_errclass(ERR_INTERNAL, buf), ERR_RESOURCE);
	snprintf(buf, sizeof buf, "open /x/qmp.sock: %s", strerror(EMFILE));
	CHECK_STR(db_errclass(ERR_QEMU, buf), ERR_RESOURCE);
	snprintf(buf, sizeof buf, "socketpair: %s (while starting)",
	    strerror(ENFILE));
	CHECK_STR(db_errclass(ERR_QEMU, buf), ERR_RESOURCE);
	/* Other failures keep the class they were given. */
	snprintf(buf, sizeof buf, "open /x: %s", strerror(ENOENT));
	CHECK_STR(db_errclass(ERR_ARG, buf), ERR_ARG);
	CHECK_STR(db_errclass(ERR_NOTFOUND, "no VM named desk1"),
	    ERR_NOTFOUND);
	CHECK_STR(db_errclass(ERR_ARG, NULL), ERR_ARG);
	/* The words alone, not after "what: ", are not a reason. */
	snprintf(buf, sizeof buf, "invalid name '%s'", strerror(ENOSPC));
	CHECK_STR(db_errclass(ERR_ARG, buf), ERR_ARG);
}

static int
count_cb(const char *key, json_t *val, void *arg)
{
	(*(int *)arg)++;
	return (0);
}

/* Put n records vm000... into the vms table inside transaction t. */
static void
put_vms(struct db_txn *t, int n)
{
	char	 key[16], *cause = NULL;
	json_t	*v;
	int	 i;

	for (i = 0; i < n; i++) {
		snprintf(key, sizeof key, "vm%03d", i);
		v = json_pack("{s:i}", "i", i);
		CHECK(db_txn_put(t, DB_VMS, key, v, &cause) == 0);
		json_decref(v);
	}
	free(cause);
}

int
main(void)
{
	test_errclass();
	char		 dir[] = "/tmp/qdesk-test-db.XXXXXX", *cause = NULL;
	char		 cmd[128];
	struct db	*db;
	struct db_txn	*t;
	json_t		*v;
	int		 n = 0;

	CHECK(mkdtemp(dir) != NULL);
	db = db_open(dir, &cause);
	CHECK(db != NULL);
	if (db == NULL)
		return (check_exit());
	v = json_pack("{s:s,s:i}", "name", "desk1", "memory", 256);
	CHECK(db_put(db, DB_VMS, "desk1", v, &cause) == 0);
	json_decref(v);
	v = db_get(db, DB_VMS, "desk1");
	CHECK(v != NULL && json_integer_value(json_object_get(v, "memory")) ==
	    256);
	json_decref(v);
	CHECK(db_get(db, DB_VMS, "nope") == NULL);
	CHECK(db_get(db, DB_IMAGES, "desk1") == NULL);
	CHECK(db_put(db, "no-such-table", "k", json_true(), &cause) == -1);
	CHECK(cause != NULL);
	free(cause);
	cause = NULL;
	/* A table named at run time (a shared image store's index). */
	CHECK(db_table_open(db, "images:shared", &cause) == 0);
	CHECK(db_table_open(db, "images:shared", &cause) == 0);
	v = json_pack("{s:s}", "file", "t-1.qcow2");
	CHECK(db_put(db, "images:shared", "k", v, &cause) == 0);
	json_decref(v);
	CHECK(db_get(db, DB_IMAGES, "k") == NULL);
	v = db_get(db, "images:shared", "k");
	CHECK(v != NULL && json_object_get(v, "file") != NULL);
	json_decref(v);
	free(cause);
	cause = NULL;

	/* A transaction lands whole or not at all. */
	t = db_begin(db, &cause);
	put_vms(t, 100);
	db_abort(t);
	CHECK(db_get(db, DB_VMS, "vm000") == NULL);
	t = db_begin(db, &cause);
	put_vms(t, 100);
	v = db_txn_get(t, DB_VMS, "vm050");
	CHECK(v != NULL);
	json_decref(v);
	CHECK(db_commit(t, &cause) == 0);
	CHECK(db_foreach(db, DB_VMS, count_cb, &n, &cause) == 101);
	CHECK(n == 101);
	CHECK(db_del(db, DB_VMS, "vm000", &cause) == 0);
	CHECK(db_del(db, DB_VMS, "vm000", &cause) == 1);
	db_close(db);

	/* Everything committed is there after a reopen. */
	db = db_open(dir, &cause);
	CHECK(db != NULL);
	n = 0;
	CHECK(db_foreach(db, DB_VMS, count_cb, &n, &cause) == 100);
	v = db_get(db, DB_VMS, "vm099");
	CHECK(v != NULL && json_integer_value(json_object_get(v, "i")) == 99);
	json_decref(v);
	db_close(db);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return (check_exit());
}
