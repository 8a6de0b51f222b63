/*
 * Live migration of a VM's TPM and UEFI NVRAM (issue 14). Both travel in
 * QEMU's own stream, so nothing is copied beside it; the target needs
 * only a place for each to land before -incoming:
 *
 *  - NVRAM: OVMF's vars are a pflash chip (pflash_cfi01) whose content
 *    is a ROM-device RAM block, sent with the guest's RAM. On load QEMU
 *    7.2 registers a run-state handler (pflash_post_load) that writes
 *    the whole chip to its block device when the target runs, that is
 *    at its cont. So the target's vars file is a copy of the template of
 *    the source's size (QEMU sizes the chip from the file, and a chip of
 *    another size fails the stream), overwritten at cont.
 *  - TPM: the tpm-emulator backend sends swtpm's state blobs (permanent,
 *    volatile, savestate) in the stream and sets them into the target's
 *    swtpm on load (CMD_SET_STATEBLOB, which swtpm stores in its state
 *    dir). The target's swtpm starts empty, without swtpm_setup (an EK
 *    made there would be overwritten). swtpm 0.7 has no --migration
 *    option and needs none: each host has a state dir of its own (0.8's
 *    release-lock-outgoing is for one dir shared by both).
 *
 * After success the source's record goes, and its NVRAM, swtpm and TPM
 * state with it (vm_delete); after a failure the target's half goes the
 * same way (vm_migrate_exited, vm_incoming_undo).
 */
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

/* Is vm a migration's target still waiting for its state? */
int
vm_migrate_tpm_incoming(const struct vm *vm)
{
	return (vm->mig != NULL && vm->mig->incoming &&
	    vm_migrate_busy(vm));
}

/* The source's migrate.prepare: the size its NVRAM file has here. */
void
vm_migrate_tpm_offer(const struct vm *vm, json_t *prepare)
{
	long long	size;

	if ((size = vm_firmware_size(vm, 0)) >= 0)
		json_object_set_new(prepare, "nvram_size",
		    json_integer(size));
}

/*
 * The target, before its QEMU starts: a vars file for the chip the
 * stream brings, and no TPM state but what the stream brings. No VM of
 * this name is here, so what its TPM dir holds is a leftover.
 */
int
vm_migrate_tpm_prepare(struct vm *vm, json_t *prepare, char **cause)
{
	const struct vm_firmware	*fw = vm_def_firmware(vm->def.firmware);
	json_t				*j = json_object_get(prepare,
					    "nvram_size");
	long long			 have;

	if (vm->def.tpm)
		vm_tpm_delete(vm);
	if (fw == NULL || fw->code == NULL)
		return (0);
	/* No template here (-1): vm_firmware_create says what to install. */
	have = vm_firmware_size(vm, 1);
	if (have != -1 && json_is_integer(j) &&
	    json_integer_value(j) != have) {
		xasprintf(cause, "the source's NVRAM is %lld bytes, this host's "
		    "template of firmware %s %lld: the hosts' ovmf packages "
		    "differ", (long long)json_integer_value(j),
		    vm->def.firmware, have);
		return (-1);
	}
	if (vm_firmware_create(vm, cause) != 0)
		return (-1);
	log_debug("%s: NVRAM of %lld bytes for the incoming stream",
	    vm->def.name, have);
	return (0);
}
