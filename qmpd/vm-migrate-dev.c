/*
 * Live migration of a desktop whose devices changed while it ran (issue
 * 14): a NIC added (vm nic-add) or removed (vm nic-rm) since boot. Both
 * change the definition at once, so the definition names the devices
 * QEMU has; what it cannot say is where QEMU put them on the PCI bus,
 * and the stream loads only into the same device at the same place.
 * The source asks its QEMU (query-pci), not a record of its own: QEMU
 * is the truth, and a qmpd restarted between the hotplug and the
 * migration asks it the same. migrate.prepare carries the layout as
 * "pci"; the target's argv places each device there (vm-argv-pin.c).
 * Its TAPs open as for any NIC of the definition (vm-migrate-nic.c). A
 * target QEMU that stops later boots from the definition, QEMU's own
 * layout again (vm_start drops the migration's pins).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "vm-migrate.h"
#include "xmalloc.h"

/*
 * The source: the definition and QEMU name the same NICs (a hotplug or
 * unplug cut short by a qmpd restart leaves them apart), and no NIC is
 * on its way in or out.
 */
static int
vm_migrate_dev_nics(const struct vm *vm, struct vm_pci_pins *p,
    char **cause)
{
	struct vm_pci_pin	*x;
	const char		*busy, *id;
	char			 dev[VM_PCI_ID_MAX];
	size_t			 n;
	u_int			 i, k;

	if ((busy = vm_nic_busy(vm)) != NULL) {
		xasprintf(cause, "NIC %s of %s is being added or removed: "
		    "migrate once vm nic-add or nic-rm has answered", busy,
		    vm->def.name);
		return (-1);
	}
	for (i = 0; i < vm->def.nnics; i++) {
		snprintf(dev, sizeof dev, "%s-nic", vm->def.nics[i].id);
		if (vm_pci_pins_find(p, dev) != NULL)
			continue;
		/*
		 * query-pci walks buses by the numbers the guest's firmware
		 * gave them: behind a root port not numbered yet, a q35 NIC
		 * hot-added to its own port is unlisted. vm-nic.c puts netN
		 * at slot 0 of qdesk-rpN, always.
		 */
		if (strcmp(vm->def.machine, "q35") == 0 &&
		    p->n < VM_PCI_PINS_MAX) {
			x = &p->v[p->n++];
			memset(x, 0, sizeof *x);
			strlcpy(x->id, dev, sizeof x->id);
			snprintf(x->bus, sizeof x->bus, "qdesk-rp%s",
			    vm->def.nics[i].id + 3);
			continue;
		}
		xasprintf(cause, "NIC %s of %s is in its definition but not "
		    "in its QEMU (an add cut short): vm nic-rm it, or vm stop "
		    "and start %s", dev, vm->def.name, vm->def.name);
		return (-1);
	}
	/* QEMU's NICs are netN-nic (vm-argv.c, vm-nic.c). */
	for (k = 0; k < p->n; k++) {
		id = p->v[k].id;
		n = strlen(id);
		if (strncmp(id, "net", 3) != 0 || n < 4 ||
		    strcmp(id + n - 4, "-nic") != 0)
			continue;
		for (i = 0; i < vm->def.nnics; i++) {
			if (strlen(vm->def.nics[i].id) == n - 4 &&
			    strncmp(vm->def.nics[i].id, id, n - 4) == 0)
				break;
		}
		if (i == vm->def.nnics) {
			xasprintf(cause, "NIC %s of %s is in its QEMU but no "
			    "longer in its definition (a removal cut short): "
			    "vm stop and start %s", id, vm->def.name,
			    vm->def.name);
			return (-1);
		}
	}
	return (0);
}

/* query-pci answered: where the source's devices are, for the target. */
static void
vm_migrate_dev_pci(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm		*vm = arg;
	struct vm_mig		*m = vm->mig;
	struct vm_pci_pins	*p;
	char			*cause = NULL;

	if (m == NULL || m->incoming || m->state != VM_MIG_PREPARING)
		return;
	if (errclass != NULL) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "QEMU: query-pci: %s",
		    errdesc);
		return;
	}
	p = xcalloc(1, sizeof *p);
	if (vm_pci_pins_query(ret, p, &cause) != 0 ||
	    vm_migrate_dev_nics(vm, p, &cause) != 0) {
		free(p);
		vm_migrate_fail(vm, VM_MIG_FAILED, "%s", cause);
		free(cause);
		return;
	}
	free(m->pins);
	m->pins = p;
	log_debug("%s: %u PCI devices to place on the target", vm->def.name,
	    p->n);
}

/*
 * The source, as the migration starts: ask QEMU where its devices are.
 * The answer comes before that of any QMP command sent after this one,
 * so migrate.prepare (sent from a later answer) finds it.
 */
void
vm_migrate_dev_query(struct vm *vm)
{
	if (vm->qmp != NULL)
		qmp_execute(vm->qmp, "query-pci", NULL, vm_migrate_dev_pci,
		    vm);
}

/* The source's migrate.prepare: the layout, as "pci". */
void
vm_migrate_dev_offer(const struct vm *vm, json_t *prepare)
{
	if (vm->mig != NULL && vm->mig->pins != NULL)
		json_object_set_new(prepare, "pci",
		    vm_pci_pins_to_json(vm->mig->pins));
}

/*
 * The target, before its QEMU starts: the source's layout for its argv,
 * each NIC of the definition in it. A source that sent none builds from
 * the definition's order, as before hotplug moved.
 */
int
vm_migrate_dev_take(struct vm *vm, const json_t *prepare, char **cause)
{
	const json_t		*j = json_object_get(prepare, "pci");
	struct vm_pci_pins	*p;
	char			 dev[VM_PCI_ID_MAX];
	u_int			 i;

	if (j == NULL)
		return (0);
	p = xcalloc(1, sizeof *p);
	if (vm_pci_pins_from_json(j, p, cause) != 0)
		goto fail;
	for (i = 0; i < vm->def.nnics; i++) {
		snprintf(dev, sizeof dev, "%s-nic", vm->def.nics[i].id);
		if (vm_pci_pins_find(p, dev) == NULL) {
			xasprintf(cause, "the source's PCI layout has no place "
			    "for NIC %s", dev);
			goto fail;
		}
	}
	free(vm->mig->pins);
	vm->mig->pins = p;
	return (0);
fail:
	free(p);
	return (-1);
}
