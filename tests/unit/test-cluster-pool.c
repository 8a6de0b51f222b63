/*
 * A cluster pool's checkout alone (qmpd/cluster-pool.c's desktop.acquire),
 * with the cluster, userdb and placement stubbed: owners/VM creates wait
 * until the test answers them as etcd would, later, from the loop. A
 * checkout that loses its claim to another host whose claim this host's
 * view does not show yet skips that member: with none left it is told
 * Busy, once (CI lost a qmpd to a double free on that path, test 68),
 * with another free one it claims and starts that; two checkouts on one
 * host at once claim different members; a claim lost every time ends
 * with AlreadyExists; a start that fails gives the claim back. Run it
 * under ASan (meson -Db_sanitize=address) to see any double free; glibc
 * alone usually aborts on it too.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "check.h"
#include "cluster.h"
#include "etcd.h"
#include "pool.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

struct qmpd		*qmpd;
struct etcd		*cluster_etcd;
unsigned int		 cluster_gen = 1;
struct cluster_places	 cluster_places = TAILQ_HEAD_INITIALIZER(cluster_places);

/* --- a request and how it was answered --------------------------------- */

struct treq {
	struct cmd_req	 req;		/* first: the stubs cast back */
	int		 answers;
	char		 errclass[32];	/* "" for a reply */
	char		 text[256];	/* the error, or the reply's name */
};

static void
treq_init(struct treq *t, const char *login)
{
	memset(t, 0, sizeof *t);
	t->req.args = json_pack("{s:s}", "login", login);
}

static void
treq_clear(struct treq *t)
{
	json_decref(t->req.args);
}

static void
treq_ended(struct cmd_req *req, const char *errclass, const char *text)
{
	struct treq	*t = (struct treq *)req;

	t->answers++;
	snprintf(t->errclass, sizeof t->errclass, "%s",
	    errclass != NULL ? errclass : "");
	snprintf(t->text, sizeof t->text, "%s", text != NULL ? text : "");
	if (req->ended != NULL) {
		req->ended(req->ended_arg, errclass, text);
		req->ended = NULL;
	}
}

void
cmd_reply(struct cmd_req *req, json_t *ret)
{
	treq_ended(req, NULL, json_string_value(json_object_get(ret, "name")));
	json_decref(ret);
}

void
cmd_error(struct cmd_req *req, const char *errclass, const char *fmt, ...)
{
	va_list	 ap;
	char	 text[256];

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	treq_ended(req, errclass, text);
}

void
cmd_fail(struct cmd_req *req, const char *errclass, char *cause)
{
	treq_ended(req, errclass, cause);
	free(cause);
}

const char *
cmd_arg_str(struct cmd_req *req, const char *name, const char *dflt)
{
	const char	*s = json_string_value(json_object_get(req->args, name));

	return (s != NULL ? s : dflt);
}

/* --- userdb: a view, and creates that etcd answers when the test says -- */

static json_t	*view;			/* {table: {key: record}} */
static char	 actions[1024];		/* "start vm;", "del owners/vm;" */

struct pending {
	char		 key[64];
	json_t		*rec;
	userdb_cb	 cb;
	void		*arg;
};
static struct pending	pending[8];
static int		npending;

static void
note(const char *what, const char *name)
{
	size_t	n = strlen(actions);

	snprintf(actions + n, sizeof actions - n, "%s %s;", what, name);
}

static void
view_set(const char *table, const char *key, json_t *rec)
{
	json_t	*t;

	if ((t = json_object_get(view, table)) == NULL)
		json_object_set_new(view, table, t = json_object());
	if (rec != NULL)
		json_object_set(t, key, rec);
	else
		json_object_del(t, key);
}

json_t *
userdb_get(const char *table, const char *key)
{
	json_t	*rec = json_object_get(json_object_get(view, table), key);

	return (rec != NULL ? json_deep_copy(rec) : NULL);
}

int
userdb_foreach(const char *table, userdb_each_cb cb, void *arg,
    char **cause)
{
	json_t		*t = json_deep_copy(json_object_get(view, table));
	json_t		*rec;
	const char	*key;
	int		 n = 0;

	json_object_foreach(t, key, rec) {
		n++;
		if (cb(key, rec, arg) != 0)
			break;
	}
	json_decref(t);
	return (n);
}

/* Only owners/ creates come here: they wait for answer(). */
void
userdb_put(const char *table, const char *key, json_t *rec, int flags,
    userdb_cb cb, void *arg)
{
	struct pending	*p = &pending[npending++];

	CHECK(strcmp(table, USERDB_OWNERS) == 0 && (flags & USERDB_CREATE));
	snprintf(p->key, sizeof p->key, "%s", key);
	p->rec = json_deep_copy(rec);
	p->cb = cb;
	p->arg = arg;
}

void
userdb_del(const char *table, const char *key, userdb_cb cb, void *arg)
{
	char	 what[128];

	snprintf(what, sizeof what, "%s/%s", table, key);
	note("del", what);
	view_set(table, key, NULL);
	cb(arg, NULL, NULL);
}

void
userdb_log_cb(void *arg, const char *errclass, const char *cause)
{
	free(arg);
}

/*
 * etcd answers the oldest pending create: it lands (NULL), or another
 * host's create won and this host's view does not show it yet.
 */
static void
answer(const char *errclass)
{
	struct pending	p = pending[0];

	CHECK(npending > 0);
	if (npending == 0)
		return;
	memmove(pending, pending + 1, --npending * sizeof *pending);
	if (errclass == NULL)
		view_set(USERDB_OWNERS, p.key, p.rec);
	p.cb(p.arg, errclass, errclass != NULL ? "owners/ was created on "
	    "another host meanwhile" : NULL);
	json_decref(p.rec);
}

/* --- the cluster: members of a pool, placement, starts ------------------ */

static int	start_fails;

static void
member_add(const char *name, const char *pool)
{
	struct cluster_place	*p = xcalloc(1, sizeof *p);

	p->name = xstrdup(name);
	p->def = json_pack("{s:{s:s}}", "def", "pool", pool);
	TAILQ_INSERT_TAIL(&cluster_places, p, entry);
}

static void
members_clear(void)
{
	struct cluster_place	*p;

	while ((p = TAILQ_FIRST(&cluster_places)) != NULL) {
		TAILQ_REMOVE(&cluster_places, p, entry);
		free(p->name);
		json_decref(p->def);
		free(p);
	}
}

struct cluster_place *
cluster_place_find(const char *name)
{
	struct cluster_place	*p;

	TAILQ_FOREACH(p, &cluster_places, entry)
		if (strcmp(p->name, name) == 0)
			return (p);
	return (NULL);
}

json_t *
cluster_place_def(const struct cluster_place *p)
{
	return (json_object_get(p->def, "def"));
}

const char *
cluster_place_at(const struct cluster_place *p)
{
	return (json_string_value(json_object_get(p->pl, "host")));
}

int
cluster_place_running(const struct cluster_place *p)
{
	return (json_is_true(json_object_get(p->pl, "running")));
}

int
cluster_place_mine(const struct cluster_place *p)
{
	return (1);
}

int
cluster_cmd_start(struct cmd_req *req, const char *vm)
{
	note("start", vm);
	if (start_fails)
		cmd_error(req, ERR_QEMU, "%s on h2: no kernel", vm);
	else
		cmd_reply(req, json_pack("{s:s}", "name", vm));
	return (CMD_RETURN_DONE);
}

char *
cluster_key(const char *fmt, ...)
{
	va_list	 ap;
	char	*key;

	va_start(ap, fmt);
	xvasprintf(&key, fmt, ap);
	va_end(ap);
	return (key);
}

const char *
cluster_name(void)
{
	return ("h2");
}

struct cluster_host *
cluster_host_find(const char *name)
{
	return (NULL);
}

int
cluster_host_up(const struct cluster_host *h)
{
	return (h != NULL);
}

int
cluster_host_joined(void)
{
	return (1);
}

int
cluster_fencing(void)
{
	return (0);
}

int
pool_user_may(json_t *pool, const char *dept)
{
	return (1);
}

/* --- what the checkout does not reach ----------------------------------- */

void	 notify_emit(const char *e, const char *vm, json_t *f) { }
void	 notify_dispatch(const struct notify_handler *h, size_t n,
	    const char *e, const char *vm, json_t *f) { }
void	 pool_disconnect_ended(const char *vm, json_t *f) { }
void	 cluster_pool_member_put(json_t *c, json_t *o, json_t *p,
	    const char *n) { }
void	 cluster_pool_prestart(void) { }
int	 cluster_pool_free_running(const char *p) { return (0); }
int	 etcd_txn(struct etcd *e, json_t *c, json_t *s, json_t *f,
	    etcd_cb cb, void *a) { return (0); }
json_t	*etcd_cmp_mod_revision(const char *k, int64_t r) { return (NULL); }
json_t	*etcd_op_put(const char *k, const char *v, int64_t l) { return (NULL); }
int	 vm_delete(struct vm *vm, char **c) { return (0); }
int	 vm_disk_reset(struct vm *vm, char **c) { return (0); }
int	 vm_kill(struct vm *vm, char **c) { return (0); }
int	 vm_stop(struct vm *vm, int f, int t, char **c) { return (0); }
int	 vm_save(struct vm *vm, char **c) { return (0); }
int	 vm_migrate_busy(const struct vm *vm) { return (0); }
int	 vm_profile_from_name(const char *n, enum vm_profile *p) { return (-1); }

/* --- the tests --------------------------------------------------------- */

/* A floating, stateless pool "lin" with members lin-1 .. lin-n, all free. */
static void
setup(int n)
{
	json_t	*pool;
	char	 name[16];
	int	 i;

	json_decref(view);
	view = json_object();
	pool = json_pack("{s:s,s:s,s:b,s:s}", "name", "lin", "mode",
	    "floating", "stateless", 1, "template", "tpl");
	view_set(DB_POOLS, "lin", pool);
	json_decref(pool);
	members_clear();
	for (i = 1; i <= n; i++) {
		snprintf(name, sizeof name, "lin-%d", i);
		member_add(name, "lin");
	}
	actions[0] = '\0';
	npending = 0;
	start_fails = 0;
}

/* Lost to another host, none left: Busy, once, and the process lives. */
static void
test_lost_last(void)
{
	struct treq	t;

	setup(1);
	treq_init(&t, "r1");
	CHECK(cluster_pool_acquire(&t.req, NULL) == CMD_RETURN_WAIT);
	CHECK(npending == 1 && strcmp(pending[0].key, "lin-1") == 0);
	CHECK(t.answers == 0);
	answer(ERR_EXISTS);
	CHECK(npending == 0);
	CHECK(t.answers == 1);
	CHECK_STR(t.errclass, ERR_BUSY);
	CHECK(strstr(t.text, "no free desktop") != NULL);
	CHECK_STR(actions, "");
	treq_clear(&t);
}

/* Lost one, another is free: that one is claimed and started. */
static void
test_lost_then_next(void)
{
	struct treq	t;

	setup(2);
	treq_init(&t, "r1");
	cluster_pool_acquire(&t.req, NULL);
	CHECK(npending == 1 && strcmp(pending[0].key, "lin-1") == 0);
	answer(ERR_EXISTS);
	CHECK(t.answers == 0);
	CHECK(npending == 1 && strcmp(pending[0].key, "lin-2") == 0);
	answer(NULL);
	CHECK(t.answers == 1);
	CHECK_STR(t.errclass, "");
	CHECK_STR(t.text, "lin-2");
	CHECK_STR(actions, "start lin-2;");
	treq_clear(&t);
}

/* Two checkouts on this host while etcd has not answered: two members. */
static void
test_two_at_once(void)
{
	struct treq	a, b, c;

	setup(2);
	treq_init(&a, "r1");
	treq_init(&b, "r2");
	treq_init(&c, "r3");
	cluster_pool_acquire(&a.req, NULL);
	cluster_pool_acquire(&b.req, NULL);
	CHECK(npending == 2);
	CHECK(strcmp(pending[0].key, "lin-1") == 0 &&
	    strcmp(pending[1].key, "lin-2") == 0);
	/* Both are being claimed: a third is told none is free. */
	cluster_pool_acquire(&c.req, NULL);
	CHECK(c.answers == 1);
	CHECK_STR(c.errclass, ERR_BUSY);
	answer(NULL);
	answer(NULL);
	CHECK_STR(a.text, "lin-1");
	CHECK_STR(b.text, "lin-2");
	CHECK_STR(actions, "start lin-1;start lin-2;");
	treq_clear(&a);
	treq_clear(&b);
	treq_clear(&c);
}

/* Lost every time (the view never catches up): AlreadyExists at last. */
static void
test_lost_always(void)
{
	struct treq	t;
	int		i;

	setup(12);
	treq_init(&t, "r1");
	cluster_pool_acquire(&t.req, NULL);
	for (i = 0; i < 12 && npending > 0; i++)
		answer(ERR_EXISTS);
	CHECK(npending == 0);
	CHECK(t.answers == 1);
	CHECK_STR(t.errclass, ERR_EXISTS);
	CHECK(i == 8);
	CHECK_STR(actions, "");
	treq_clear(&t);
}

/* A claimed member whose start fails: its owners/ key goes again. */
static void
test_start_fails(void)
{
	struct treq	t;
	json_t		*own;

	setup(1);
	start_fails = 1;
	treq_init(&t, "r1");
	cluster_pool_acquire(&t.req, NULL);
	answer(NULL);
	CHECK(t.answers == 1);
	CHECK_STR(t.errclass, ERR_QEMU);
	CHECK_STR(actions, "start lin-1;del owners/lin-1;");
	own = userdb_get(USERDB_OWNERS, "lin-1");
	CHECK(own == NULL);
	json_decref(own);
	treq_clear(&t);
}

int
main(void)
{
	qmpd = xcalloc(1, sizeof *qmpd);	/* no cluster: no pool engine */
	test_lost_last();
	test_lost_then_next();
	test_two_at_once();
	test_lost_always();
	test_start_fails();
	members_clear();
	json_decref(view);
	free(qmpd);
	return (check_exit());
}
