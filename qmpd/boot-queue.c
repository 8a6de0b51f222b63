/*
 * The boot queue: at most boot_queue_cap VMs are booting (state starting,
 * from vm_start until running) at once, so that a Monday-morning login
 * storm queues instead of thrashing the host. Pools, desktop.power start
 * and autostart go through it; an admin's vm.start does not wait, but
 * its boot counts. The queue holds VM names (a VM may be deleted while
 * it waits) in first-come order and is in memory only: after a restart,
 * pools ask again for what they still need.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "metrics.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

struct boot_entry {
	char			 name[VM_NAME_MAX];
	done_cb			 done;		/* called once running */
	void			*arg;
	int			 timeout;
	struct timespec		 queued;	/* for the wait metric */
	TAILQ_ENTRY(boot_entry)	 entry;
};
static TAILQ_HEAD(, boot_entry) boot_queue = TAILQ_HEAD_INITIALIZER(boot_queue);

int		 boot_queue_cap = 4;	/* 0: no cap */
static struct event	*boot_queue_ev;

/* Seconds VMs waited in the queue for their turn, for metrics. */
static const double	 boot_queue_wait_bounds[] = {
	0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300
};
struct metrics_hist	 boot_queue_wait_hist = {
	boot_queue_wait_bounds, nitems(boot_queue_wait_bounds), { 0 }, 0, 0
};

/* An entry queued at queued leaves the queue now. */
static void
boot_queue_waited(const struct timespec *queued)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	metrics_hist_observe(&boot_queue_wait_hist, (now.tv_sec -
	    queued->tv_sec) + (now.tv_nsec - queued->tv_nsec) / 1e9);
}

/* VMs booting now, whoever started them. */
int
boot_queue_booting(void)
{
	struct vm	*vm;
	int		 n = 0;

	TAILQ_FOREACH(vm, &vms, entry)
		if (vm->state == VM_STARTING)
			n++;
	return (n);
}

/* Is vm waiting for its turn? */
int
boot_queue_waiting(const char *name)
{
	struct boot_entry	*b;

	TAILQ_FOREACH(b, &boot_queue, entry)
		if (strcmp(b->name, name) == 0)
			return (1);
	return (0);
}

int
boot_queue_length(void)
{
	struct boot_entry	*b;
	int			 n = 0;

	TAILQ_FOREACH(b, &boot_queue, entry)
		n++;
	return (n);
}

/* done, if any, hears when vm runs (or stops, or timeout passes). */
static void
boot_queue_wait(struct vm *vm, int timeout, done_cb done, void *arg)
{
	if (done != NULL)
		vm_wait_add(vm, VM_MASK(VM_RUNNING), VM_MASK(VM_STOPPED) |
		    VM_MASK(VM_CRASHED), timeout, done, arg);
}

/* Start one VM now; done, if any, waits for running. */
static int
boot_queue_go(struct vm *vm, int timeout, done_cb done, void *arg,
    char **cause)
{
	if (vm_start(vm, cause) != 0)
		return (-1);
	boot_queue_wait(vm, timeout, done, arg);
	return (0);
}

/* Start waiting VMs while there is room under the cap. */
static void
boot_queue_run(evutil_socket_t fd, short events, void *arg)
{
	struct boot_entry	*b;
	struct vm		*vm;
	char			*cause = NULL;

	while ((b = TAILQ_FIRST(&boot_queue)) != NULL) {
		if (boot_queue_cap > 0 && boot_queue_booting() >= boot_queue_cap)
			break;
		TAILQ_REMOVE(&boot_queue, b, entry);
		boot_queue_waited(&b->queued);
		vm = vm_find(b->name);
		if (vm == NULL) {
			done_fail(b->done, b->arg, ERR_NOTFOUND, "VM %s was "
			    "deleted while waiting to boot", b->name);
		} else if (vm_is_active(vm)) {
			/* Someone else started it meanwhile. */
			boot_queue_wait(vm, b->timeout, b->done, b->arg);
		} else if (boot_queue_go(vm, b->timeout, b->done, b->arg,
		    &cause) != 0) {
			log_warnx("%s: queued start failed: %s", b->name,
			    cause);
			done_fail(b->done, b->arg, ERR_QEMU, "%s", cause);
			notify_emit("vm.boot", b->name, NULL);
			free(cause);
			cause = NULL;
		}
		free(b);
	}
}

/* Look at the queue again, from the loop (never inside vm_set_state). */
void
boot_queue_kick(void)
{
	if (TAILQ_EMPTY(&boot_queue))
		return;
	if (boot_queue_ev == NULL)
		boot_queue_ev = event_new(qmpd->base, -1, 0, boot_queue_run,
		    NULL);
	event_active(boot_queue_ev, EV_TIMEOUT, 0);
}

/*
 * Start vm now if the cap allows, or queue it. done (may be NULL) hears
 * when the VM runs (or fails); returns -1 with *cause only when an
 * immediate start failed, and then done is not called.
 */
int
boot_queue_start(struct vm *vm, int timeout, done_cb done, void *arg,
    char **cause)
{
	struct boot_entry	*b;
	json_t			*f;
	int			 n;

	if (vm_is_active(vm)) {
		boot_queue_wait(vm, timeout, done, arg);
		return (0);
	}
	if (boot_queue_waiting(vm->def.name)) {
		if (done == NULL)
			return (0);
	} else if (TAILQ_EMPTY(&boot_queue) && (boot_queue_cap == 0 ||
	    boot_queue_booting() < boot_queue_cap))
		return (boot_queue_go(vm, timeout, done, arg, cause));
	b = xcalloc(1, sizeof *b);
	strlcpy(b->name, vm->def.name, sizeof b->name);
	b->done = done;
	b->arg = arg;
	b->timeout = timeout;
	clock_gettime(CLOCK_MONOTONIC, &b->queued);
	TAILQ_INSERT_TAIL(&boot_queue, b, entry);
	n = boot_queue_length();
	log_info("%s: boot queued (%d waiting, %d booting, cap %d)",
	    vm->def.name, n, boot_queue_booting(), boot_queue_cap);
	f = json_pack("{s:i,s:i}", "queued", n, "booting",
	    boot_queue_booting());
	notify_emit("vm.boot", vm->def.name, f);
	json_decref(f);
	return (0);
}

/* Forget vm's places in the queue; whoever waited gets why. */
void
boot_queue_cancel(const char *name, const char *why)
{
	struct boot_entry	*b, *b1;

	TAILQ_FOREACH_SAFE(b, &boot_queue, entry, b1) {
		if (strcmp(b->name, name) != 0)
			continue;
		TAILQ_REMOVE(&boot_queue, b, entry);
		done_fail(b->done, b->arg, ERR_STATE, "VM %s: %s", name, why);
		free(b);
	}
}

/* A listener of qmpd's events: a VM changing state may free a slot. */
void
boot_queue_event(const char *event, const char *vm, json_t *fields,
    void *arg)
{
	if (vm != NULL && strcmp(event, "vm.state") == 0)
		boot_queue_kick();
}

static void
boot_queue_autostart_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm;
	char		*cause = NULL;
	char		*name = arg;

	if ((vm = vm_find(name)) != NULL && !vm_is_active(vm)) {
		if (boot_queue_start(vm, 0, NULL, NULL, &cause) != 0) {
			log_warnx("%s: autostart failed: %s", name, cause);
			free(cause);
		}
	}
	free(name);
}

/*
 * At start: autostart VMs boot through the queue, handed to it 250 ms
 * apart, so a host boot is no storm.
 */
void
boot_queue_autostart(void)
{
	struct vm	*vm;
	int		 n = 0;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (!vm->def.autostart || vm_is_active(vm))
			continue;
		/* tv_usec must stay below a second. */
		event_base_once(qmpd->base, -1, EV_TIMEOUT,
		    boot_queue_autostart_cb, xstrdup(vm->def.name),
		    &(struct timeval){ n / 4, (n % 4) * 250000 });
		n++;
	}
}
