/*
 * The commands of the unprivileged broker (ROLE_BROKER; admins may call
 * them too): authenticate an office user, and act on that user's own
 * desktops only. Each names the user it acts for; a desktop that is not
 * theirs is refused, and the refusal is logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "log.h"
#include "pool.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define CMD_BROKER_START_TIMEOUT	120
/* A user's ACPI shutdown: time for the guest to save work before quit. */
#define CMD_BROKER_SHUTDOWN_TIMEOUT	300
#define CMD_BROKER_TICKET_TTL		60

/*
 * Failed logins per login name, shared by the portal and the RDP gateway
 * since both come through user.auth. Kept in DB_LOCKOUTS too, so a qmpd
 * restart neither unlocks a login nor forgets its recent failures.
 */
static struct auth_lockout	*cmd_broker_lockout;

/* Seconds on a clock nobody can set back to escape a lock. */
static time_t
cmd_broker_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

/* For log lines: where the broker says the user came from. */
static const char *
cmd_broker_client(struct cmd_req *req)
{
	return (cmd_arg_str(req, "client", "an unnamed client"));
}

static int
cmd_broker_lockout_load_cb(const char *login, json_t *rec, void *arg)
{
	auth_lockout_import(cmd_broker_lockout, login, rec, cmd_broker_now());
	return (0);
}

/* The counters, loaded from the database on first use. */
static struct auth_lockout *
cmd_broker_lockouts(void)
{
	char	*cause = NULL;

	if (cmd_broker_lockout != NULL)
		return (cmd_broker_lockout);
	cmd_broker_lockout = auth_lockout_create(AUTH_LOCK_FAILURES,
	    AUTH_LOCK_WINDOW, AUTH_LOCK_TIME, AUTH_LOCK_ENTRIES);
	if (db_foreach(qmpd->db, DB_LOCKOUTS, cmd_broker_lockout_load_cb,
	    NULL, &cause) < 0) {
		log_warnx("failed-login counters not loaded: %s", cause);
		free(cause);
	}
	return (cmd_broker_lockout);
}

/* Store login's counters as they are now (run state: not synced). */
static void
cmd_broker_lockout_save(const char *login)
{
	json_t	*j;
	char	*cause = NULL;
	int	 rv;

	j = auth_lockout_export(cmd_broker_lockouts(), login,
	    cmd_broker_now());
	if (j != NULL)
		rv = db_put_nosync(qmpd->db, DB_LOCKOUTS, login, j, &cause);
	else
		rv = db_del(qmpd->db, DB_LOCKOUTS, login, &cause) < 0 ? -1 : 0;
	if (rv != 0) {
		log_warnx("failed logins of %s not stored: %s", login, cause);
		free(cause);
	}
	json_decref(j);
}

/* A good login forgets the failures, in the database too if it had any. */
static void
cmd_broker_lockout_forget(const char *login)
{
	json_t	*j;

	j = auth_lockout_export(cmd_broker_lockouts(), login,
	    cmd_broker_now());
	auth_lockout_clear(cmd_broker_lockouts(), login);
	if (j != NULL)
		cmd_broker_lockout_save(login);
	json_decref(j);
}

static void
cmd_broker_auth_fail(struct cmd_req *req, const char *login, const char *why)
{
	int	locked;

	locked = auth_lockout_fail(cmd_broker_lockouts(), login,
	    cmd_broker_now());
	cmd_broker_lockout_save(login);
	if (locked > 0)
		log_warnx("login %.64s from %s refused: %s; locked for %d s",
		    login, cmd_broker_client(req), why, locked);
	else
		log_warnx("login %.64s from %s refused: %s", login,
		    cmd_broker_client(req), why);
	/* The same words whatever the reason: no guessing who exists. */
	cmd_error(req, ERR_AUTH, "invalid login or password");
}

/*
 * user.auth: check a user's password. yescrypt blocks the loop for
 * ~50-100 ms, once per request (a dummy hash stands in for an unknown
 * user so the answer takes as long); a locked login costs no hash.
 */
static enum cmd_retval
cmd_broker_auth(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	json_t		*pw = json_object_get(req->args, "password");
	json_t		*rec;
	const char	*hash;
	char		*cause = NULL;
	int		 left, ok;

	if (auth_login_valid(login, &cause) != 0) {
		free(cause);
		log_warnx("login from %s refused: not a valid login name",
		    cmd_broker_client(req));
		cmd_error(req, ERR_AUTH, "invalid login or password");
		return (CMD_RETURN_DONE);
	}
	left = auth_lockout_check(cmd_broker_lockouts(), login,
	    cmd_broker_now());
	if (left > 0) {
		log_warnx("login %s from %s refused: locked for %d s more",
		    login, cmd_broker_client(req), left);
		cmd_error(req, ERR_LOCKED, "too many failed logins for %s; try "
		    "again in %d s", login, left);
		return (CMD_RETURN_DONE);
	}
	if (auth_password_valid(json_string_value(pw), json_string_length(pw),
	    &cause) != 0) {
		free(cause);
		cmd_broker_auth_fail(req, login, "unusable password");
		return (CMD_RETURN_DONE);
	}
	rec = user_get(login);
	hash = json_string_value(json_object_get(rec, "hash"));
	ok = auth_verify(json_string_value(pw), hash);
	if (rec == NULL)
		cmd_broker_auth_fail(req, login, "no such user");
	else if (!ok)
		cmd_broker_auth_fail(req, login, hash == NULL ?
		    "the user has no password" : "wrong password");
	else if (json_is_true(json_object_get(rec, "disabled")))
		cmd_broker_auth_fail(req, login, "the user is disabled");
	else {
		cmd_broker_lockout_forget(login);
		log_info("login %s from %s", login, cmd_broker_client(req));
		json_object_set_new(rec, "last_login",
		    json_integer(time(NULL)));
		if (db_put(qmpd->db, DB_USERS, login, rec, &cause) != 0) {
			log_warnx("user %s: last login not saved: %s", login,
			    cause);
			free(cause);
		}
		cmd_reply(req, json_pack("{s:s,s:O?,s:O?,s:b}", "login", login,
		    "name", json_object_get(rec, "name"), "dept",
		    json_object_get(rec, "dept"), "admin",
		    json_is_true(json_object_get(rec, "admin"))));
	}
	json_decref(rec);
	return (CMD_RETURN_DONE);
}

/* The user a request acts for: known and enabled, or answered. */
static int
cmd_broker_user(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	json_t		*rec;
	int		 disabled;

	if ((rec = user_get(login)) == NULL) {
		cmd_error(req, ERR_NOTFOUND, "no user named %.64s", login);
		return (-1);
	}
	disabled = json_is_true(json_object_get(rec, "disabled"));
	json_decref(rec);
	if (disabled) {
		log_warnx("%s for disabled user %s refused", req->entry->name,
		    login);
		cmd_error(req, ERR_DENIED, "user %s is disabled", login);
		return (-1);
	}
	return (0);
}

/*
 * The desktop named by "vm", if it belongs to the user named by "login";
 * otherwise answered with PermissionDenied (the same for a VM that does
 * not exist, so nobody learns the names of others' desktops) and logged.
 */
static struct vm *
cmd_broker_desktop(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	const char	*name = cmd_arg_str(req, "vm", "");
	const char	*owner;
	struct vm	*vm;

	if (cmd_broker_user(req) != 0)
		return (NULL);
	vm = vm_find(name);
	owner = vm != NULL ? user_owner(vm) : NULL;
	if (owner == NULL || strcmp(owner, login) != 0) {
		log_warnx("%s of desktop %.64s for %s refused: %s",
		    req->entry->name, name, login, vm == NULL ? "no such VM" :
		    owner == NULL ? "not assigned" : "assigned to someone "
		    "else");
		cmd_error(req, ERR_DENIED, "desktop %.64s is not yours", name);
		return (NULL);
	}
	return (vm);
}

/* One desktop as its user sees it. */
static json_t *
cmd_broker_desktop_json(struct vm *vm)
{
	json_t	*spice = json_null();

	if (strcmp(vm->def.display, "spice") == 0)
		spice = json_pack("{s:s,s:i}", "host", vm->def.listen, "port",
		    vm->def.spice_port);
	return (json_pack("{s:s,s:s,s:s?,s:o}", "name", vm->def.name, "state",
	    vm_state_name(vm->state), "pool", vm->def.pool, "spice", spice));
}

/* The desktops of the user named, with what a portal needs to show. */
static enum cmd_retval
cmd_broker_mine(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	const char	*owner;
	struct vm	*vm;
	json_t		*a;

	if (cmd_broker_user(req) != 0)
		return (CMD_RETURN_DONE);
	a = json_array();
	TAILQ_FOREACH(vm, &vms, entry) {
		if ((owner = user_owner(vm)) != NULL &&
		    strcmp(owner, login) == 0)
			json_array_append_new(a, cmd_broker_desktop_json(vm));
	}
	cmd_reply(req, json_pack("{s:o}", "desktops", a));
	return (CMD_RETURN_DONE);
}

/* Start, or wait for a start under way; running already is fine too. */
static enum cmd_retval
cmd_broker_start(struct cmd_req *req, struct vm *vm, const char *login)
{
	char	*cause = NULL;

	switch (vm->state) {
	case VM_RUNNING:
		cmd_reply(req, vm_to_json(vm));
		return (CMD_RETURN_DONE);
	case VM_STARTING:
		break;
	case VM_STOPPED:
	case VM_CRASHED:
		if (boot_queue_start(vm, CMD_BROKER_START_TIMEOUT, cmd_done,
		    req, &cause) != 0) {
			log_warnx("%s: start for %s failed: %s", vm->def.name,
			    login, cause);
			cmd_error(req, ERR_QEMU, "%s", cause);
			free(cause);
			return (CMD_RETURN_DONE);
		}
		log_info("%s: started for %s", vm->def.name, login);
		return (CMD_RETURN_WAIT);
	default:
		cmd_error(req, ERR_STATE, "desktop %s is %s: try again once it "
		    "has %s", vm->def.name, vm_state_name(vm->state),
		    vm->state == VM_STOPPING ? "stopped" : "been resumed");
		return (CMD_RETURN_DONE);
	}
	vm_wait_add(vm, VM_MASK(VM_RUNNING),
	    VM_MASK(VM_STOPPED) | VM_MASK(VM_CRASHED),
	    CMD_BROKER_START_TIMEOUT, cmd_done, req);
	return (CMD_RETURN_WAIT);
}

/* ACPI power button; answers at once, with the desktop stopping. */
static enum cmd_retval
cmd_broker_shutdown(struct cmd_req *req, struct vm *vm, const char *login)
{
	char	*cause = NULL, *reason;

	if (vm->state == VM_STOPPING) {
		cmd_reply(req, vm_to_json(vm));
		return (CMD_RETURN_DONE);
	}
	/* Paused, the guest cannot see the button: vm_stop would quit. */
	if (vm->state == VM_PAUSED) {
		cmd_error(req, ERR_STATE, "desktop %s is paused (%s): ask an "
		    "administrator", vm->def.name, vm->reason != NULL ?
		    vm->reason : "no reason given");
		return (CMD_RETURN_DONE);
	}
	if (vm_stop(vm, 0, CMD_BROKER_SHUTDOWN_TIMEOUT, &cause) != 0) {
		cmd_error(req, ERR_STATE, "%s", cause);
		free(cause);
		return (CMD_RETURN_DONE);
	}
	/* vm_stop says "by admin"; say who it really was. */
	xasprintf(&reason, "%s by %s", vm->stop_asked == 1 ?
	    "ACPI power-down" : "quit", login);
	vm_set_state(vm, VM_STOPPING, reason);
	free(reason);
	cmd_reply(req, vm_to_json(vm));
	return (CMD_RETURN_DONE);
}

struct cmd_broker_reset {
	struct cmd_req	*req;
	char		 name[VM_NAME_MAX];
};

static void
cmd_broker_reset_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct cmd_broker_reset	*r = arg;
	struct vm		*vm = vm_find(r->name);

	if (errclass != NULL)
		cmd_error(r->req, ERR_QEMU, "%s: %s", r->name, errdesc);
	else if (vm == NULL)
		cmd_error(r->req, ERR_NOTFOUND, "VM %s went away", r->name);
	else
		cmd_reply(r->req, vm_to_json(vm));
	free(r);
}

/* A hard reset, as vm.reboot: tiny guests have no agent to ask. */
static enum cmd_retval
cmd_broker_reboot(struct cmd_req *req, struct vm *vm, const char *login)
{
	struct cmd_broker_reset	*r;

	if (vm->state != VM_RUNNING || vm->qmp == NULL) {
		cmd_error(req, ERR_STATE, "desktop %s is %s, not running",
		    vm->def.name, vm_state_name(vm->state));
		return (CMD_RETURN_DONE);
	}
	r = xcalloc(1, sizeof *r);
	r->req = req;
	strlcpy(r->name, vm->def.name, sizeof r->name);
	if (qmp_execute(vm->qmp, "system_reset", NULL, cmd_broker_reset_done,
	    r) != 0) {
		free(r);
		cmd_error(req, ERR_QEMU, "VM %s: QMP is not connected",
		    vm->def.name);
		return (CMD_RETURN_DONE);
	}
	log_info("%s: reset by %s", vm->def.name, login);
	return (CMD_RETURN_WAIT);
}

static const struct {
	const char	*name;
	enum cmd_retval	(*fn)(struct cmd_req *, struct vm *, const char *);
} cmd_broker_actions[] = {
	{ "start", cmd_broker_start },
	{ "shutdown", cmd_broker_shutdown },
	{ "reboot", cmd_broker_reboot },
};

/* Start, shut down or reboot the user's own desktop, by the action table. */
static enum cmd_retval
cmd_broker_power(struct cmd_req *req)
{
	const char	*action = cmd_arg_str(req, "action", "");
	struct vm	*vm;
	size_t		 i;

	for (i = 0; i < nitems(cmd_broker_actions); i++)
		if (strcmp(cmd_broker_actions[i].name, action) == 0)
			break;
	if (i == nitems(cmd_broker_actions)) {
		cmd_error(req, ERR_ARG, "unknown action '%.32s': use start, "
		    "shutdown or reboot", action);
		return (CMD_RETURN_DONE);
	}
	if ((vm = cmd_broker_desktop(req)) == NULL)
		return (CMD_RETURN_DONE);
	return (cmd_broker_actions[i].fn(req, vm, cmd_arg_str(req, "login",
	    "")));
}

/* A SPICE ticket for the user's own desktop, remembered as theirs. */
static enum cmd_retval
cmd_broker_console(struct cmd_req *req)
{
	struct vm	*vm;

	if ((vm = cmd_broker_desktop(req)) == NULL)
		return (CMD_RETURN_DONE);
	vm_ticket(vm, cmd_arg_int(req, "expires", CMD_BROKER_TICKET_TTL),
	    cmd_arg_str(req, "login", ""), cmd_req_uid(req), cmd_done, req);
	return (CMD_RETURN_WAIT);
}

/* A VNC connection to the user's own desktop, for the RDP gateway. */
static enum cmd_retval
cmd_broker_vnc(struct cmd_req *req)
{
	struct vm	*vm;

	if ((vm = cmd_broker_desktop(req)) == NULL)
		return (CMD_RETURN_DONE);
	return (cmd_vm_vnc_reply(vm, req));
}

static const struct cmd_arg cmd_broker_vnc_args[] = {
	{ "login", ARG_STR, 1 },
	{ "vm", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_broker_auth_args[] = {
	{ "login", ARG_STR, 1 },
	{ "password", ARG_STR, 1 },
	{ "client", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_broker_mine_args[] = {
	{ "login", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_broker_power_args[] = {
	{ "login", ARG_STR, 1 },
	{ "vm", ARG_STR, 1 },
	{ "action", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_broker_console_args[] = {
	{ "login", ARG_STR, 1 },
	{ "vm", ARG_STR, 1 },
	{ "expires", ARG_INT, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_broker_entries[] = {
	{ "user.auth", cmd_broker_auth_args, ROLE_BROKER, cmd_broker_auth },
	{ "desktop.mine", cmd_broker_mine_args, ROLE_BROKER, cmd_broker_mine },
	{ "desktop.power", cmd_broker_power_args, ROLE_BROKER,
	    cmd_broker_power },
	{ "desktop.console", cmd_broker_console_args, ROLE_BROKER,
	    cmd_broker_console },
	{ "desktop.vnc", cmd_broker_vnc_args, ROLE_BROKER, cmd_broker_vnc },
	{ NULL, NULL, 0, NULL }
};
