/*
 * userdb's etcd backend alone (qmpd/userdb-etcd.c), etcd stubbed: the
 * watch's events build the view (an older event than the view's record
 * is dropped; keys that are not users/, depts/, pools/ or owners/ are
 * left to others), reads come from it in key order, a write is a CAS on
 * the view's revision (0 to create) that lands in the view once etcd
 * says it succeeded and not when it failed, a create of a key the view
 * has is refused without asking etcd, a deleted key is not brought back
 * by an older event, a sweep drops what a full read lacked, and
 * owners/VM names a desktop's owner.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "cluster.h"
#include "etcd.h"
#include "qmpd.h"
#include "userdb.h"
#include "xmalloc.h"

struct qmpd	*qmpd;
struct etcd	*cluster_etcd;
unsigned int	 cluster_gen = 1;

/* --- stubs: the cluster core and etcd, answering as scripted ---------- */

static char	 last_key[256];
static int64_t	 last_rev = -1;
static int	 calls, kicks;
static int	 answer_ok = 1;		/* the next CAS succeeds */
static int64_t	 answer_rev = 100;	/* the revision it writes */

char *
cluster_key(const char *fmt, ...)
{
	va_list	 ap;
	char	*rest, *key;

	va_start(ap, fmt);
	xvasprintf(&rest, fmt, ap);
	va_end(ap);
	xasprintf(&key, "/qdesk/v1/%s", rest);
	free(rest);
	return (key);
}

const char *
cluster_name(void)
{
	return ("h1");
}

void
cluster_pool_kick(void)
{
	kicks++;
}

static void	event(const char *key, const char *value, int64_t rev);
/* A watch event that arrives before the next answer (a race). */
static const char	*race_key, *race_value;

static void
answer(etcd_cb cb, void *arg)
{
	json_t	*res;

	if (race_key != NULL) {
		event(race_key, race_value, answer_rev + 1);
		race_key = NULL;
	}

	res = json_pack("{s:b,s:{s:I}}", "succeeded", answer_ok, "header",
	    "revision", (json_int_t)answer_rev);
	cb(arg, res, NULL, NULL);
	json_decref(res);
}

int
etcd_cas(struct etcd *e, const char *key, int64_t rev, const char *value,
    int64_t lease, etcd_cb cb, void *arg)
{
	calls++;
	snprintf(last_key, sizeof last_key, "%s", key);
	last_rev = rev;
	answer(cb, arg);
	return (0);
}

json_t *
etcd_cmp_mod_revision(const char *key, int64_t rev)
{
	last_rev = rev;
	return (json_pack("{s:s}", "key", key));
}

json_t *
etcd_op_delete(const char *key, int flags)
{
	snprintf(last_key, sizeof last_key, "%s", key);
	return (json_pack("{s:s}", "delete", key));
}

int
etcd_txn(struct etcd *e, json_t *cmp, json_t *ok, json_t *fail, etcd_cb cb,
    void *arg)
{
	calls++;
	json_decref(cmp);
	json_decref(ok);
	json_decref(fail);
	answer(cb, arg);
	return (0);
}

/* --- helpers ----------------------------------------------------------- */

static void
event(const char *key, const char *value, int64_t rev)
{
	json_t	*kv;

	kv = json_pack("{s:s,s:s?,s:I}", "key", key, "value", value,
	    "mod_revision", (json_int_t)rev);
	userdb_etcd_event(key, kv, value != NULL);
	json_decref(kv);
}

static char	 got_err[64];

static void
done(void *arg, const char *errclass, const char *cause)
{
	snprintf(got_err, sizeof got_err, "%s", errclass != NULL ? errclass :
	    "ok");
}

static const char *
field(const char *table, const char *key, const char *f)
{
	static char	 buf[128];
	json_t		*rec = userdb_etcd.get(table, key);

	snprintf(buf, sizeof buf, "%s", rec == NULL ? "(none)" :
	    json_string_value(json_object_get(rec, f)) != NULL ?
	    json_string_value(json_object_get(rec, f)) : "(null)");
	json_decref(rec);
	return (buf);
}

static int
list_cb(const char *key, json_t *rec, void *arg)
{
	strcat(arg, key);
	strcat(arg, ";");
	return (0);
}

int
main(void)
{
	char	 order[256] = "", *cause = NULL;
	json_t	*rec;

	/* The watch builds the view; others' keys are not ours. */
	event("users/bob", "{\"login\":\"bob\",\"name\":\"Bob\"}", 5);
	event("users/alice", "{\"login\":\"alice\",\"name\":\"Alice\"}", 6);
	event("depts/sales", "{\"name\":\"sales\"}", 7);
	CHECK(userdb_etcd_event("vms/d1", json_pack("{}"), 1) == 0);
	CHECK(userdb_etcd_event("usersx/a", json_pack("{}"), 1) == 0);
	CHECK_STR(field(DB_USERS, "bob", "name"), "Bob");
	CHECK_STR(field(DB_DEPTS, "sales", "name"), "sales");
	CHECK_STR(field(DB_USERS, "carol", "name"), "(none)");
	CHECK(userdb_etcd.foreach(DB_USERS, list_cb, order, &cause) == 2);
	CHECK_STR(order, "alice;bob;");

	/* An event older than what the view has is dropped. */
	event("users/bob", "{\"login\":\"bob\",\"name\":\"Old\"}", 4);
	CHECK_STR(field(DB_USERS, "bob", "name"), "Bob");

	/* An update is a CAS on the view's revision and lands in it. */
	rec = json_pack("{s:s,s:s}", "login", "bob", "name", "Robert");
	calls = 0;
	userdb_etcd.put(DB_USERS, "bob", rec, 0, done, NULL);
	CHECK(calls == 1);
	CHECK_STR(last_key, "/qdesk/v1/users/bob");
	CHECK(last_rev == 5);
	CHECK_STR(got_err, "ok");
	CHECK_STR(field(DB_USERS, "bob", "name"), "Robert");
	/* The watch's echo of that write changes nothing. */
	event("users/bob", "{\"login\":\"bob\",\"name\":\"Robert\"}", 100);
	CHECK_STR(field(DB_USERS, "bob", "name"), "Robert");

	/* A CAS another host won: refused, the view keeps its record. */
	answer_ok = 0;
	json_object_set_new(rec, "name", json_string("Lost"));
	userdb_etcd.put(DB_USERS, "bob", rec, 0, done, NULL);
	CHECK(last_rev == 100);
	CHECK_STR(got_err, ERR_BUSY);
	CHECK_STR(field(DB_USERS, "bob", "name"), "Robert");
	answer_ok = 1;

	/* A create of a key the view has: refused without asking etcd. */
	calls = 0;
	userdb_etcd.put(DB_USERS, "bob", rec, USERDB_CREATE, done, NULL);
	CHECK(calls == 0);
	CHECK_STR(got_err, ERR_EXISTS);
	/* A create etcd refuses (another host was first): Exists too. */
	answer_ok = 0;
	userdb_etcd.put(DB_USERS, "carol", rec, USERDB_CREATE, done, NULL);
	CHECK(last_rev == 0);
	CHECK_STR(got_err, ERR_EXISTS);
	CHECK_STR(field(DB_USERS, "carol", "name"), "(none)");
	/*
	 * Lost too when the watch brings the winner's key before etcd's
	 * answer: still Exists (a pool checkout tries the next desktop),
	 * not Busy.
	 */
	race_key = "users/dave";
	race_value = "{\"login\":\"dave\",\"name\":\"Winner\"}";
	userdb_etcd.put(DB_USERS, "dave", rec, USERDB_CREATE, done, NULL);
	CHECK(last_rev == 0);
	CHECK_STR(got_err, ERR_EXISTS);
	CHECK_STR(field(DB_USERS, "dave", "name"), "Winner");
	answer_ok = 1;
	json_decref(rec);

	/* owners/VM: the owner, a checkout by CAS create, a free. */
	event("owners/d1", "{\"login\":\"alice\"}", 8);
	CHECK_STR(userdb_etcd.owner("d1", NULL), "alice");
	CHECK(userdb_etcd.owner("d2", NULL) == NULL);
	kicks = 0;
	answer_rev = 101;
	userdb_etcd.assign("d2", "bob", done, NULL);
	CHECK_STR(got_err, "ok");
	CHECK(last_rev == 0);
	CHECK_STR(userdb_etcd.owner("d2", NULL), "bob");
	CHECK(kicks == 1);
	userdb_etcd.assign("d1", "bob", done, NULL);
	CHECK_STR(got_err, ERR_EXISTS);
	answer_rev = 103;
	userdb_etcd.assign("d2", NULL, done, NULL);
	CHECK_STR(got_err, "ok");
	CHECK_STR(last_key, "/qdesk/v1/owners/d2");
	CHECK(last_rev == 101);
	CHECK(userdb_etcd.owner("d2", NULL) == NULL);
	/* The watch's late echo of the create does not bring it back. */
	event("owners/d2", "{\"login\":\"bob\"}", 101);
	CHECK(userdb_etcd.owner("d2", NULL) == NULL);
	/* Created again: a CAS on "no such key". */
	answer_rev = 104;
	userdb_etcd.assign("d2", "carol", done, NULL);
	CHECK_STR(got_err, "ok");
	CHECK(last_rev == 0);
	CHECK_STR(userdb_etcd.owner("d2", NULL), "carol");

	/* A delete event; then a full read that lacks alice sweeps her. */
	event("depts/sales", NULL, 102);
	CHECK_STR(field(DB_DEPTS, "sales", "name"), "(none)");
	cluster_gen = 2;
	event("users/bob", "{\"login\":\"bob\",\"name\":\"Robert\"}", 100);
	userdb_etcd_sweep(2);
	CHECK_STR(field(DB_USERS, "alice", "name"), "(none)");
	CHECK_STR(field(DB_USERS, "bob", "name"), "Robert");
	return (check_exit());
}
