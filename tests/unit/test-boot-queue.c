/*
 * The boot queue alone (qmpd/boot-queue.c), with the VM core stubbed:
 * vm_start only moves a VM to starting (or fails when told to), and a
 * VM's wait answers at once when the VM is running. Checks the cap, the
 * first-come order, the answers a queued start gets (running, deleted
 * meanwhile, a failed start, cancelled), the vm.boot events and the
 * autostart stagger.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "check.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

struct qmpd	*qmpd;

static int	 started;		/* vm_start calls */
static double	 started_at[16];	/* when, by the monotonic clock */
static char	 fail_start[VM_NAME_MAX];	/* this VM's start fails */
static int	 boot_events;
static int	 last_queued;

/* --- stubs of the VM core and the rest of qmpd ------------------------- */

int
vm_start(struct vm *vm, char **cause)
{
	if (strcmp(vm->def.name, fail_start) == 0) {
		xasprintf(cause, "no QEMU for %s", vm->def.name);
		return (-1);
	}
	if (started < (int)nitems(started_at)) {
		struct timespec	ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		started_at[started] = ts.tv_sec + ts.tv_nsec / 1e9;
	}
	started++;
	vm->state = VM_STARTING;
	return (0);
}

/* Waits: answered at once if the VM is in okmask, else kept (one slot). */
static done_cb	 wait_done;
static void	*wait_arg;
static struct vm *wait_vm;
static unsigned int wait_ok;

void
vm_wait_add(struct vm *vm, unsigned int okmask, unsigned int failmask,
    int timeout, done_cb done, void *arg)
{
	if (okmask & VM_MASK(vm->state)) {
		done_ok(done, arg, json_string(vm->def.name));
		return;
	}
	wait_vm = vm;
	wait_ok = okmask;
	wait_done = done;
	wait_arg = arg;
}

void
notify_emit(const char *event, const char *vm, json_t *fields)
{
	if (strcmp(event, "vm.boot") == 0) {
		boot_events++;
		last_queued = json_integer_value(json_object_get(fields,
		    "queued"));
	}
}

/* --- the tests ---------------------------------------------------------- */

/* What a completion callback heard. */
struct answer {
	int	 calls;
	char	 errclass[32];
	char	 text[128];
};

static void
answer_cb(void *arg, json_t *result, const char *errclass, const char *cause)
{
	struct answer	*a = arg;

	a->calls++;
	if (errclass != NULL) {
		strlcpy(a->errclass, errclass, sizeof a->errclass);
		strlcpy(a->text, cause, sizeof a->text);
	} else
		strlcpy(a->text, json_string_value(result), sizeof a->text);
	json_decref(result);
}

static struct vm *
add_vm(const char *name, int autostart)
{
	struct vm	*vm;

	vm = xcalloc(1, sizeof *vm);
	strlcpy(vm->def.name, name, sizeof vm->def.name);
	vm->def.autostart = autostart;
	vm->state = VM_STOPPED;
	TAILQ_INSERT_TAIL(&vms, vm, entry);
	return (vm);
}

static void
del_vm(struct vm *vm)
{
	TAILQ_REMOVE(&vms, vm, entry);
	free(vm);
}

/* Let the loop run what boot_queue_kick activated. */
static void
run_loop(void)
{
	event_base_loop(qmpd->base, EVLOOP_NONBLOCK);
}

static void
test_cap_and_order(void)
{
	struct vm	*a, *b, *c, *d;
	struct answer	 ac = { 0 }, ad = { 0 };
	char		*cause = NULL;

	boot_queue_cap = 2;
	a = add_vm("a", 0);
	b = add_vm("b", 0);
	c = add_vm("c", 0);
	d = add_vm("d", 0);
	CHECK(boot_queue_start(a, 0, NULL, NULL, &cause) == 0);
	CHECK(boot_queue_start(b, 0, NULL, NULL, &cause) == 0);
	CHECK(started == 2 && boot_queue_booting() == 2);
	/* The cap is reached: c and d wait, in order, with their answers. */
	CHECK(boot_queue_start(c, 60, answer_cb, &ac, &cause) == 0);
	CHECK(boot_queue_start(d, 60, answer_cb, &ad, &cause) == 0);
	CHECK(started == 2);
	CHECK(boot_queue_waiting("c") && boot_queue_waiting("d"));
	CHECK(boot_queue_length() == 2);
	CHECK(boot_events == 2 && last_queued == 2);
	/* Queued twice without an answer to give: still one place. */
	CHECK(boot_queue_start(c, 0, NULL, NULL, &cause) == 0);
	CHECK(boot_queue_length() == 2);

	/* a runs: one slot frees, c (first come) starts, d still waits. */
	a->state = VM_RUNNING;
	boot_queue_event("vm.state", "a", NULL, NULL);
	run_loop();
	CHECK(started == 3 && c->state == VM_STARTING);
	CHECK(!boot_queue_waiting("c") && boot_queue_waiting("d"));
	/* c's answer waits for running; the stub keeps the wait. */
	CHECK(ac.calls == 0 && wait_vm == c);
	c->state = VM_RUNNING;
	wait_done(wait_arg, json_string("c"), NULL, NULL);
	CHECK(ac.calls == 1 && ac.errclass[0] == '\0');
	CHECK_STR(ac.text, "c");

	/* An event about no VM, or another event, changes nothing. */
	b->state = VM_RUNNING;
	boot_queue_event("vm.created", "b", NULL, NULL);
	run_loop();
	CHECK(boot_queue_waiting("d"));
	/* d is deleted while it waits: its answer says so. */
	del_vm(d);
	boot_queue_event("vm.state", "b", NULL, NULL);
	run_loop();
	CHECK(ad.calls == 1);
	CHECK_STR(ad.errclass, ERR_NOTFOUND);
	CHECK_STR(ad.text, "VM d was deleted while waiting to boot");
	CHECK(boot_queue_length() == 0);
	del_vm(a);
	del_vm(b);
	del_vm(c);
}

static void
test_fail_and_cancel(void)
{
	struct vm	*a, *b, *x, *y;
	struct answer	 ax = { 0 }, ay = { 0 };
	char		*cause = NULL;

	boot_queue_cap = 1;
	started = 0;
	a = add_vm("a", 0);
	b = add_vm("b", 0);
	x = add_vm("x", 0);
	y = add_vm("y", 0);
	/* An immediate start that fails: -1 and a cause, no answer. */
	strlcpy(fail_start, "b", sizeof fail_start);
	CHECK(boot_queue_start(b, 0, answer_cb, &ax, &cause) == -1);
	CHECK(cause != NULL && strcmp(cause, "no QEMU for b") == 0);
	free(cause);
	cause = NULL;
	CHECK(ax.calls == 0);

	CHECK(boot_queue_start(a, 0, NULL, NULL, &cause) == 0);
	strlcpy(fail_start, "x", sizeof fail_start);
	CHECK(boot_queue_start(x, 0, answer_cb, &ax, &cause) == 0);
	CHECK(boot_queue_start(y, 0, answer_cb, &ay, &cause) == 0);
	/* y is given back before its turn: its answer says why. */
	boot_queue_cancel("y", "returned to its pool");
	CHECK(ay.calls == 1);
	CHECK_STR(ay.errclass, ERR_STATE);
	CHECK_STR(ay.text, "VM y: returned to its pool");
	/* x's turn comes and its start fails: the answer carries why. */
	a->state = VM_RUNNING;
	boot_queue_event("vm.state", "a", NULL, NULL);
	run_loop();
	CHECK(ax.calls == 1);
	CHECK_STR(ax.errclass, ERR_QEMU);
	CHECK_STR(ax.text, "no QEMU for x");
	CHECK(boot_queue_length() == 0);
	/* No cap: everything starts at once. */
	boot_queue_cap = 0;
	fail_start[0] = '\0';
	x->state = VM_STOPPED;
	CHECK(boot_queue_start(x, 0, NULL, NULL, &cause) == 0);
	CHECK(boot_queue_start(y, 0, NULL, NULL, &cause) == 0);
	CHECK(x->state == VM_STARTING && y->state == VM_STARTING);
	/* Starting an active VM only waits for it. */
	y->state = VM_RUNNING;
	memset(&ay, 0, sizeof ay);
	CHECK(boot_queue_start(y, 0, answer_cb, &ay, &cause) == 0);
	CHECK(ay.calls == 1 && ay.errclass[0] == '\0');
	del_vm(a);
	del_vm(b);
	del_vm(x);
	del_vm(y);
}

static void
test_autostart(void)
{
	struct vm	*v[7];
	char		 name[8];
	int		 i;

	boot_queue_cap = 0;
	started = 0;
	for (i = 0; i < 7; i++) {
		snprintf(name, sizeof name, "as%d", i);
		v[i] = add_vm(name, i != 2);
	}
	v[3]->state = VM_RUNNING;
	boot_queue_autostart();
	/*
	 * From the loop, 250 ms apart: as0, as1, as4, as5, as6 (as2 is not
	 * autostart, as3 runs already). Timers never fire early, so only
	 * the lower bounds are checked: a busy host makes them late.
	 */
	CHECK(started == 0);
	event_base_dispatch(qmpd->base);
	CHECK(started == 5);
	CHECK(v[0]->state == VM_STARTING && v[6]->state == VM_STARTING);
	CHECK(v[2]->state == VM_STOPPED && v[3]->state == VM_RUNNING);
	CHECK(started_at[1] - started_at[0] >= 0.2);
	CHECK(started_at[4] - started_at[0] >= 0.95);
	for (i = 0; i < 7; i++)
		del_vm(v[i]);
}

int
main(void)
{
	log_init("test-boot-queue", 1, 0);
	qmpd = xcalloc(1, sizeof *qmpd);
	qmpd->base = event_base_new();
	test_cap_and_order();
	test_fail_and_cancel();
	test_autostart();
	event_base_free(qmpd->base);
	free(qmpd);
	return (check_exit());
}
