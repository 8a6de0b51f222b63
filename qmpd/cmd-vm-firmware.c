/*
 * vm.* commands on a VM's firmware: vm.reset_nvram gives a stopped UEFI
 * VM a fresh NVRAM from OVMF's template (boot entries and variables the
 * guest wrote are gone; Secure Boot keys are the template's again).
 */
#include <stdlib.h>

#include "qmpd.h"
#include "vm.h"

static enum cmd_retval
cmd_vm_reset_nvram(struct cmd_req *req)
{
	struct vm	*vm;
	char		*cause = NULL;

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	if (vm_firmware_reset(vm, &cause) != 0) {
		cmd_fail(req, vm_is_active(vm) ? ERR_STATE : ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:s,s:s}", "name", vm->def.name,
	    "firmware", vm->def.firmware));
	return (CMD_RETURN_DONE);
}

const struct cmd_entry cmd_vm_firmware_entries[] = {
	{ "vm.reset_nvram", cmd_name_args, ROLE_ADMIN, cmd_vm_reset_nvram },
	{ NULL, NULL, 0, NULL }
};
