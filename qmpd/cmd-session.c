/*
 * session.list (admin) and desktop.via (broker): the SPICE sessions
 * session.c records, and the broker's word on who is behind its proxy.
 */
#include <stdlib.h>
#include <string.h>

#include "qmpd.h"
#include "vm.h"

/* session.list: of one VM or all, open ones first, then newest first. */
static enum cmd_retval
cmd_session_list(struct cmd_req *req)
{
	const char	*errclass = NULL;
	char		*cause = NULL;
	json_t		*sessions;

	sessions = session_list(cmd_arg_str(req, "vm", NULL), &errclass,
	    &cause);
	if (sessions == NULL) {
		cmd_fail(req, errclass, cause);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:o}", "sessions", sessions));
	return (CMD_RETURN_DONE);
}

/* desktop.via: which real client is behind a proxy port. */
static enum cmd_retval
cmd_session_via(struct cmd_req *req)
{
	const char	*vm = cmd_arg_str(req, "vm", NULL);
	const char	*via = cmd_arg_str(req, "via", NULL);
	const char	*client = cmd_arg_str(req, "client", NULL);
	const char	*ticket = cmd_arg_str(req, "ticket", NULL);
	struct vm	*v;

	if ((v = vm_find(vm)) == NULL) {
		cmd_error(req, ERR_NOTFOUND, "no VM named %s", vm);
		return (CMD_RETURN_DONE);
	}
	if (strlen(via) > 64 || strlen(client) > 64 || *via == '\0' ||
	    *client == '\0') {
		cmd_error(req, ERR_ARG, "via and client must be ADDR:PORT, "
		    "at most 64 characters");
		return (CMD_RETURN_DONE);
	}
	/* The ticket goes back to the viewer in client_migrate_info. */
	if (ticket != NULL && strlen(ticket) < 256)
		spice_via_set(v, via, ticket);
	cmd_reply(req, json_pack("{s:b}", "matched", session_via(vm, via,
	    client)));
	return (CMD_RETURN_DONE);
}

static const struct cmd_arg cmd_session_via_args[] = {
	{ "vm", ARG_STR, 1 },
	{ "via", ARG_STR, 1 },
	{ "client", ARG_STR, 1 },
	{ "ticket", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_session_list_args[] = {
	{ "vm", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_session_entries[] = {
	{ "desktop.via", cmd_session_via_args, ROLE_BROKER, cmd_session_via },
	{ "session.list", cmd_session_list_args, ROLE_ADMIN,
	    cmd_session_list },
	{ NULL, NULL, 0, NULL }
};
