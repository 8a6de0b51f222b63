/*
 * Live migration commands (issue 14): vm.migrate for admins, and the
 * host-to-host half the source's qmpd calls on the target's (peer.c):
 * migrate.prepare, migrate.finish, migrate.abort, migrate.status. Those are for hosts
 * (ROLE_HOST: a cluster host certificate); root over the unix
 * socket is admin and may call them, for two qmpds on one machine.
 */
#include <stdlib.h>

#include "qmpd.h"
#include "vm.h"

static enum cmd_retval
cmd_vm_migrate(struct cmd_req *req)
{
	struct vm	*vm;

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	vm_migrate(vm, req->args, cmd_done, cmd_done_progress, req);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_migrate_prepare(struct cmd_req *req)
{
	vm_incoming_prepare(req->args, cmd_done, req);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_migrate_finish(struct cmd_req *req)
{
	struct vm	*vm;

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	vm_incoming_finish(vm, req->args, cmd_done, req);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_migrate_abort(struct cmd_req *req)
{
	struct vm	*vm;
	char		*cause = NULL;
	const char	*name = cmd_arg_str(req, "name", "");

	if ((vm = vm_find(name)) == NULL) {
		/*
		 * Gone already (its QEMU failed first): nothing to undo; or
		 * not here yet (its template on the way): it never will be.
		 */
		cmd_reply(req, json_pack("{s:s,s:b}", "name", name, "found",
		    vm_incoming_image_abort(name)));
		return (CMD_RETURN_DONE);
	}
	if (vm_incoming_abort(vm, cmd_arg_str(req, "reason", "aborted"),
	    &cause) != 0) {
		cmd_fail(req, ERR_STATE, cause);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:s,s:b}", "name", name, "found", 1));
	return (CMD_RETURN_DONE);
}

/* migrate.status: why the half here ended (vm-incoming-why.c). */
static enum cmd_retval
cmd_migrate_status(struct cmd_req *req)
{
	vm_incoming_status(cmd_arg_str(req, "name", ""), cmd_done, req);
	return (CMD_RETURN_WAIT);
}

static const struct cmd_arg cmd_vm_migrate_args[] = {
	{ "name", ARG_STR, 1 },
	{ "to", ARG_STR, 1 },
	{ "storage", ARG_STR, 0 },
	{ "downtime", ARG_INT, 0 },
	{ "timeout", ARG_INT, 0 },
	{ "bandwidth", ARG_INT, 0 },	/* MiB/s; 0: no cap */
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_migrate_prepare_args[] = {
	{ "name", ARG_STR, 1 },
	{ "def", ARG_OBJECT, 1 },
	{ "storage", ARG_STR, 0 },
	{ "disk_size", ARG_INT, 0 },
	{ "from", ARG_STR, 0 },
	{ "timeout", ARG_INT, 0 },
	{ "ticket", ARG_OBJECT, 0 },	/* the source's SPICE ticket */
	{ "nvram_size", ARG_INT, 0 },	/* its UEFI vars (vm-migrate-tpm.c) */
	{ "via", ARG_STR, 0 },		/* its viewer's proxy ticket */
	{ "nets", ARG_OBJECT, 0 },	/* its NICs' networks: vm-migrate-nic.c */
	{ "image", ARG_OBJECT, 0 },	/* its clone's template: vm-migrate-image.c */
	{ "pci", ARG_ARRAY, 0 },	/* its PCI layout: vm-migrate-dev.c */
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_migrate_finish_args[] = {
	{ "name", ARG_STR, 1 },
	{ "source", ARG_OBJECT, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_migrate_abort_args[] = {
	{ "name", ARG_STR, 1 },
	{ "reason", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_vm_migrate_entries[] = {
	{ "vm.migrate", cmd_vm_migrate_args, ROLE_ADMIN, cmd_vm_migrate },
	{ "migrate.prepare", cmd_migrate_prepare_args, ROLE_HOST,
	    cmd_migrate_prepare },
	{ "migrate.finish", cmd_migrate_finish_args, ROLE_HOST,
	    cmd_migrate_finish },
	{ "migrate.abort", cmd_migrate_abort_args, ROLE_HOST,
	    cmd_migrate_abort },
	{ "migrate.status", cmd_name_args, ROLE_HOST, cmd_migrate_status },
	{ NULL, NULL, 0, NULL }
};
