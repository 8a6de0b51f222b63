/*
 * The VM registry as the qmpd unit tests that link a policy module alone
 * (test-boot-queue, test-pool) stand it in: the list the test fills, and
 * the two look-ups every policy makes on it, as vm.c has them.
 */
#include <string.h>

#include <event2/event.h>

#include "qmpd.h"
#include "vm.h"

struct vms	 vms = TAILQ_HEAD_INITIALIZER(vms);

struct vm *
vm_find(const char *name)
{
	struct vm	*vm;

	TAILQ_FOREACH(vm, &vms, entry)
		if (strcmp(vm->def.name, name) == 0)
			return (vm);
	return (NULL);
}

int
vm_is_active(const struct vm *vm)
{
	return (vm->state != VM_STOPPED && vm->state != VM_CRASHED);
}
