/*
 * The pool policy alone (qmpd/pool.c with user.c), on a private LMDB and
 * with the VM core stubbed (a VM is its definition and a state; start,
 * stop and kill are recorded, not done). Checks which desktop is free,
 * who may use a pool (departments and their parents), which desktop
 * desktop.acquire picks (the user's own, then booted before booting
 * before stopped, floating pools before dedicated), which desktops a
 * shrink dooms, and what giving a desktop out and taking it back does.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "check.h"
#include "log.h"
#include "pool.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

struct qmpd	*qmpd;

static char	 events[1024];		/* "event vm;" as emitted */
static char	 actions[1024];		/* "kill vm;", "stop vm;", ... */

static void
note(char *buf, size_t len, const char *what, const char *vm)
{
	size_t	n = strlen(buf);

	snprintf(buf + n, len - n, "%s %s;", what, vm != NULL ? vm : "-");
}

/* --- stubs of the VM core and the rest of qmpd ------------------------- */

struct vm *
vm_create(json_t *args, char **cause)
{
	struct vm	*vm;

	vm = xcalloc(1, sizeof *vm);
	json_object_set_new(args, "kernel", json_string("/k"));
	if (vm_def_from_json(&vm->def, args, cause) != 0) {
		free(vm);
		return (NULL);
	}
	vm->state = VM_STOPPED;
	TAILQ_INSERT_TAIL(&vms, vm, entry);
	return (vm);
}

int
vm_delete(struct vm *vm, char **cause)
{
	note(actions, sizeof actions, "delete", vm->def.name);
	TAILQ_REMOVE(&vms, vm, entry);
	vm_def_clear(&vm->def);
	free(vm);
	return (0);
}

int
vm_kill(struct vm *vm, char **cause)
{
	note(actions, sizeof actions, "kill", vm->def.name);
	vm->stop_asked = 3;
	return (0);
}

int
vm_stop(struct vm *vm, int force, int timeout, char **cause)
{
	note(actions, sizeof actions, "stop", vm->def.name);
	return (0);
}

int
vm_disk_reset(struct vm *vm, char **cause)
{
	note(actions, sizeof actions, "reset-disk", vm->def.name);
	return (0);
}

int
vm_set_field(struct vm *vm, char **field, const char *value, char **cause)
{
	free(*field);
	*field = value != NULL ? xstrdup(value) : NULL;
	return (0);
}

int
vm_set_flag(struct vm *vm, int *flag, int value, char **cause)
{
	*flag = value;
	return (0);
}

int
boot_queue_start(struct vm *vm, int timeout, done_cb done, void *arg,
    char **cause)
{
	note(actions, sizeof actions, "boot", vm->def.name);
	vm->state = VM_STARTING;
	return (0);
}

int
boot_queue_waiting(const char *name)
{
	return (0);
}

void
boot_queue_cancel(const char *name, const char *why)
{
}

int
qmp_execute(struct qmp *qmp, const char *cmd, json_t *args,
    qmp_reply_cb cb, void *arg)
{
	note(actions, sizeof actions, cmd, arg);
	json_decref(args);
	free(arg);
	return (0);
}

/* A listener of qmpd's events (notify.c, linked as it is). */
static void
record_event(const char *event, const char *vm, json_t *fields, void *arg)
{
	note(events, sizeof events, event, vm);
}

/* --- the tests ---------------------------------------------------------- */

static void
put(const char *table, const char *key, const char *fmt, ...)
{
	json_t		*j;
	json_error_t	 err;
	char		*cause = NULL;
	va_list		 ap;

	va_start(ap, fmt);
	j = json_vpack_ex(&err, 0, fmt, ap);
	va_end(ap);
	CHECK(j != NULL);
	CHECK(db_put(qmpd->db, table, key, j, &cause) == 0);
	json_decref(j);
}

/* A pool and its desktops (states as given, "-" for none). */
static void
make_pool(const char *name, const char *mode, const char *dept,
    int stateless, const enum vm_state *states, int n)
{
	json_t	*pool;
	char	*cause = NULL;
	int	 i;

	put(DB_POOLS, name, "{s:s,s:s,s:s,s:s?,s:b,s:i,s:s,s:i}", "name",
	    name, "template", "tpl", "mode", mode, "dept", dept, "stateless",
	    stateless, "size", n, "on_disconnect", "reset", "grace", 0);
	pool = pool_get(name);
	for (i = 0; i < n; i++) {
		CHECK(pool_desktop_add(pool, &cause) == 0);
		TAILQ_LAST(&vms, vms)->state = states[i];
	}
	json_decref(pool);
}

static void
test_free_and_may(void)
{
	struct vm	*vm;
	json_t		*pool, *show;

	put(DB_DEPTS, "company", "{s:s}", "name", "company");
	put(DB_DEPTS, "sales", "{s:s,s:s}", "name", "sales", "parent",
	    "company");
	put(DB_DEPTS, "hr", "{s:s,s:s}", "name", "hr", "parent", "company");
	make_pool("fl", "floating", NULL, 1, (enum vm_state[]){ VM_STOPPED,
	    VM_RUNNING, VM_STARTING, VM_RUNNING }, 4);
	CHECK((vm = vm_find("fl-1")) != NULL && pool_has(vm, "fl"));
	CHECK(!pool_has(vm, "f") && !pool_has(vm, "fl-"));
	CHECK(pool_desktop_free(vm));
	vm->def.pool_dirty = 1;
	CHECK(!pool_desktop_free(vm));
	vm->def.pool_dirty = 0;
	vm->def.owner = xstrdup("bob");
	CHECK(!pool_desktop_free(vm));
	CHECK_STR(user_owner(vm), "bob");

	/* pool show: the record, its desktops, counts that match them. */
	pool = pool_get("fl");
	show = pool_to_json(pool);
	CHECK_STR(json_string_value(json_object_get(show, "mode")),
	    "floating");
	CHECK(json_array_size(json_object_get(show, "desktops")) == 4);
	CHECK(json_integer_value(json_object_get(show, "count")) == 4);
	CHECK(json_integer_value(json_object_get(show, "running")) == 2);
	CHECK(json_integer_value(json_object_get(show, "in_use")) == 1);
	CHECK(json_integer_value(json_object_get(show, "free")) <= 3);
	json_decref(show);
	json_decref(pool);
	pool = json_pack("{s:s}", "name", "c");
	show = pool_show_json(pool, json_pack(
	    "[{s:s,s:s,s:b},{s:s,s:b},{s:s,s:b}]", "state", "running",
	    "owner", "ann", "free", 0, "state", "stopped", "free", 1,
	    "state", "running", "free", 1));
	CHECK(json_integer_value(json_object_get(show, "count")) == 3);
	CHECK(json_integer_value(json_object_get(show, "free")) == 2);
	CHECK(json_integer_value(json_object_get(show, "in_use")) == 1);
	CHECK(json_integer_value(json_object_get(show, "running")) == 2);
	json_decref(show);
	json_decref(pool);

	/* No department: everyone's. A department: its users and below. */
	pool = pool_get("fl");
	CHECK(pool_user_may(pool, NULL) && pool_user_may(pool, "sales"));
	json_decref(pool);
	pool = json_pack("{s:s}", "dept", "company");
	CHECK(pool_user_may(pool, "sales") && pool_user_may(pool, "company"));
	CHECK(!pool_user_may(pool, NULL) && !pool_user_may(pool, "other"));
	json_decref(pool);
	pool = json_pack("{s:s}", "dept", "sales");
	CHECK(!pool_user_may(pool, "hr") && !pool_user_may(pool, "company"));
	json_decref(pool);
}

static void
test_pick(void)
{
	struct pool_pick	 p;
	char			*cause = NULL;

	make_pool("ded", "dedicated", "hr", 0, (enum vm_state[]){ VM_RUNNING,
	    VM_STOPPED }, 2);
	/* bob has fl-1: that is his, whatever else is free. */
	CHECK(pool_pick(&p, NULL, "bob", "sales", &cause) == 0);
	CHECK(p.mine == vm_find("fl-1"));
	/* alice: a booted one of the floating pool (fl-2 before fl-4). */
	CHECK(pool_pick(&p, NULL, "alice", "sales", &cause) == 0);
	CHECK(p.mine == NULL && p.best == vm_find("fl-2"));
	CHECK(p.pools == 1);		/* ded is hr's */
	/* Nothing booted any more: booting before stopped. */
	vm_find("fl-2")->state = VM_STOPPED;
	vm_find("fl-4")->state = VM_STOPPED;
	CHECK(pool_pick(&p, NULL, "alice", "sales", &cause) == 0);
	CHECK(p.best == vm_find("fl-3"));
	vm_find("fl-3")->state = VM_STOPPED;
	CHECK(pool_pick(&p, NULL, "alice", "sales", &cause) == 0);
	CHECK(p.best == vm_find("fl-2"));
	/* carol of hr: floating pools first, then the dedicated one. */
	CHECK(pool_pick(&p, NULL, "carol", "hr", &cause) == 0);
	CHECK(p.best == vm_find("fl-2") && p.pools == 1);
	CHECK(pool_pick(&p, "ded", "carol", "hr", &cause) == 0);
	CHECK(p.best == vm_find("ded-1"));
	/* A pool asked for that the user may not use: none counted. */
	CHECK(pool_pick(&p, "ded", "alice", "sales", &cause) == 0);
	CHECK(p.pools == 0 && p.best == NULL);
	/* Everything taken: no free desktop. */
	vm_find("fl-2")->def.pool_doomed = 1;
	vm_find("fl-3")->def.pool_dirty = 1;
	vm_find("fl-4")->def.owner = xstrdup("dave");
	CHECK(pool_pick(&p, "fl", "alice", "sales", &cause) == 0);
	CHECK(p.pools == 1 && p.best == NULL && p.mine == NULL);
	vm_find("fl-2")->def.pool_doomed = 0;
	vm_find("fl-3")->def.pool_dirty = 0;
}

static void
test_give_return_doom(void)
{
	struct vm	*vm = vm_find("fl-2");
	char		*cause = NULL;

	events[0] = actions[0] = '\0';
	CHECK(pool_give(vm, "alice", &cause) == 0);
	CHECK_STR(user_owner(vm), "alice");
	CHECK_STR(events, "desktop.assigned fl-2;");
	/* Back from a stateless pool: dirty, nobody's, killed if it runs. */
	vm->state = VM_RUNNING;
	events[0] = '\0';
	pool_return(vm, "released");
	CHECK(user_owner(vm) == NULL && vm->def.pool_dirty);
	CHECK_STR(events, "desktop.returned fl-2;");
	CHECK_STR(actions, "kill fl-2;");
	CHECK(!pool_desktop_free(vm));

	/* fl-2 reset and stopped, fl-3 running: the stopped one goes first. */
	vm->def.pool_dirty = 0;
	vm->state = VM_STOPPED;
	vm_find("fl-3")->state = VM_RUNNING;
	CHECK(pool_doom("fl", 1, 1) == 1);
	CHECK(vm->def.pool_doomed && !vm_find("fl-3")->def.pool_doomed);
	/* Up to two more free ones: only fl-3 is (fl-1 bob's, fl-4 dave's). */
	CHECK(pool_doom("fl", 2, 1) == 1);
	CHECK(vm_find("fl-3")->def.pool_doomed);
	CHECK(!vm_find("fl-1")->def.pool_doomed);
	CHECK(!vm_find("fl-4")->def.pool_doomed);
	/* Without only_free, owned ones too; doomed ones count once. */
	CHECK(pool_doom("fl", 10, 0) == 2);
	CHECK(vm_find("fl-1")->def.pool_doomed &&
	    vm_find("fl-4")->def.pool_doomed);
}

static void
test_events(void)
{
	struct vm	*vm = vm_find("ded-2");
	json_t		*f;

	/* A dedicated desktop that stops stays its user's. */
	vm->def.owner = xstrdup("carol");
	f = json_pack("{s:s}", "state", "stopped");
	events[0] = '\0';
	pool_event("vm.state", "ded-2", f, NULL);
	CHECK_STR(user_owner(vm), "carol");
	/* The last client left: the reset runs after the grace (0 s). */
	vm->state = VM_RUNNING;
	vm->qmp = (struct qmp *)1;
	json_decref(f);
	f = json_pack("{s:s,s:b}", "login", "carol", "last", 1);
	actions[0] = '\0';
	pool_event("session.ended", "ded-2", f, NULL);
	event_base_loop(qmpd->base, EVLOOP_ONCE);
	CHECK(strstr(actions, "system_reset ded-2;") != NULL);
	CHECK(strstr(events, "desktop.disconnect_action ded-2;") != NULL);
	json_decref(f);
	vm->qmp = NULL;
}

int
main(void)
{
	char	 dir[] = "/tmp/qdesk-test-pool-XXXXXX", *cause = NULL, *cmd;

	log_init("test-pool", 1, 0);
	notify_listen(record_event, NULL);
	qmpd = xcalloc(1, sizeof *qmpd);
	qmpd->base = event_base_new();
	if (mkdtemp(dir) == NULL || (qmpd->db = db_open(dir, &cause)) ==
	    NULL) {
		fprintf(stderr, "test-pool: %s\n", cause != NULL ? cause :
		    "mkdtemp");
		return (1);
	}
	test_free_and_may();
	test_pick();
	test_give_return_doom();
	test_events();
	db_close(qmpd->db);
	xasprintf(&cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test-pool: could not remove %s\n", dir);
	free(cmd);
	event_base_free(qmpd->base);
	return (check_exit());
}
