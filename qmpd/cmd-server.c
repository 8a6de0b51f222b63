/* server.status and events.subscribe. */
#include <unistd.h>

#include "qmpd.h"
#include "vm.h"

static enum cmd_retval
cmd_server_status(struct cmd_req *req)
{
	struct vm	*vm;
	json_t		*counts, *accels;
	int		 n[VM_CRASHED + 1] = { 0 }, total = 0;
	size_t		 i;

	TAILQ_FOREACH(vm, &vms, entry) {
		n[vm->state]++;
		total++;
	}
	counts = json_pack("{s:i}", "total", total);
	for (i = 0; i < nitems(n); i++)
		json_object_set_new(counts, vm_state_name(i),
		    json_integer(n[i]));
	accels = json_array();
	if (qmpd->kvm_ok)
		json_array_append_new(accels, json_string("kvm"));
	json_array_append_new(accels, json_string("tcg"));
	cmd_reply(req, json_pack("{s:s,s:i,s:i,s:I,s:s,s:s,s:o,s:o}",
	    "version", QDESK_VERSION, "protocol", PROTO_VERSION,
	    "pid", (int)getpid(),
	    "uptime", (json_int_t)(time(NULL) - qmpd->started),
	    "state_dir", qmpd->state_dir, "vm_user", qmpd->vm_user,
	    "accels", accels, "vms", counts));
	return (CMD_RETURN_DONE);
}

static enum cmd_retval
cmd_events_subscribe(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "vm", NULL);

	if (name != NULL && vm_find(name) == NULL) {
		cmd_error(req, ERR_NOTFOUND, "no VM named %s", name);
		return (CMD_RETURN_DONE);
	}
	server_subscribe(req->client, name);
	cmd_reply(req, json_object());
	return (CMD_RETURN_DONE);
}

static const struct cmd_arg cmd_events_args[] = {
	{ "vm", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_server_entries[] = {
	{ "server.status", NULL, ROLE_ADMIN, cmd_server_status },
	{ "events.subscribe", cmd_events_args, ROLE_ADMIN,
	    cmd_events_subscribe },
	{ NULL, NULL, 0, NULL }
};
