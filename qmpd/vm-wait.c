/*
 * Waiting for a VM to reach a state: vm.start answers once the VM runs,
 * vm.stop once it is stopped, vm.wait whenever asked. The completion
 * callback runs from vm_set_state, never from polling.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

struct vm_waiter {
	struct vm		*vm;
	done_cb			 done;
	void			*arg;
	unsigned int		 ok;
	unsigned int		 fail;
	struct event		*timer;
	TAILQ_ENTRY(vm_waiter)	 entry;
};

static void
vm_wait_free(struct vm_waiter *w)
{
	TAILQ_REMOVE(&w->vm->waiters, w, entry);
	if (w->timer != NULL)
		event_free(w->timer);
	free(w);
}

static void
vm_wait_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct vm_waiter	*w = arg;
	struct vm		*vm = w->vm;

	done_fail(w->done, w->arg, ERR_TIMEOUT, "VM %s is still %s",
	    vm->def.name, vm_state_name(vm->state));
	vm_wait_free(w);
}

/*
 * done gets the VM (vm_to_json) once its state is in okmask, an error if
 * in failmask or after timeout seconds (0: none).
 */
void
vm_wait_add(struct vm *vm, unsigned int okmask, unsigned int failmask,
    int timeout, done_cb done, void *arg)
{
	struct vm_waiter	*w;

	w = xcalloc(1, sizeof *w);
	w->vm = vm;
	w->done = done;
	w->arg = arg;
	w->ok = okmask;
	w->fail = failmask;
	TAILQ_INSERT_TAIL(&vm->waiters, w, entry);
	if (timeout > 0) {
		struct timeval tv = { timeout, 0 };

		w->timer = evtimer_new(qmpd->base, vm_wait_timeout, w);
		evtimer_add(w->timer, &tv);
	}
	vm_wait_notify(vm);
}

void
vm_wait_notify(struct vm *vm)
{
	struct vm_waiter	*w, *w1;
	unsigned int		 bit = VM_MASK(vm->state);

	TAILQ_FOREACH_SAFE(w, &vm->waiters, entry, w1) {
		if (w->ok & bit)
			done_ok(w->done, w->arg, vm_to_json(vm));
		else if (w->fail & bit)
			done_fail(w->done, w->arg, ERR_STATE, "VM %s is %s%s%s",
			    vm->def.name, vm_state_name(vm->state),
			    vm->reason != NULL ? ": " : "",
			    vm->reason != NULL ? vm->reason : "");
		else
			continue;
		vm_wait_free(w);
	}
}

void
vm_wait_fail_all(struct vm *vm, const char *errclass, const char *desc)
{
	struct vm_waiter	*w, *w1;

	TAILQ_FOREACH_SAFE(w, &vm->waiters, entry, w1) {
		done_fail(w->done, w->arg, errclass, "%s", desc);
		vm_wait_free(w);
	}
}
