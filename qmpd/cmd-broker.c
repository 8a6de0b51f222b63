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
#include "clock.h"
#include "cluster.h"
#include "log.h"
#include "pool.h"
#include "qmp.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

#define CMD_BROKER_START_TIMEOUT	120
/* A user's ACPI shutdown: time for the guest to save work before quit. */
#define CMD_BROKER_SHUTDOWN_TIMEOUT	300
#define CMD_BROKER_TICKET_TTL		60
/* Revocations kept for the RDP sessions that ask: how many, how long. */
#define CMD_BROKER_REVOKED_KEEP		4096
#define CMD_BROKER_REVOKED_TTL		600
/* Password checks queued or running at once; more are answered Busy. */
#define CMD_BROKER_AUTH_QUEUE		256

/*
 * Failed logins per (login, client address) and per login, shared by the
 * portal and the RDP gateway since both come through user.auth. Kept in
 * DB_LOCKOUTS too (run state, not synced), so a qmpd restart neither
 * unlocks a login nor forgets its recent failures; a record the table
 * forgets is deleted there as well, so the table on disk stays bounded.
 */
static struct auth_lockout	*cmd_broker_lockout;

/* For log lines: where the broker says the user came from. */
static const char *
cmd_broker_client(struct cmd_req *req)
{
	return (cmd_arg_str(req, "client", "an unnamed client"));
}

/* Delete a lockout record from the database (run state: not synced). */
static void
cmd_broker_lockout_del(const char *key, void *arg)
{
	char	*cause = NULL;

	if (db_del_nosync(qmpd->db, DB_LOCKOUTS, key, &cause) < 0) {
		log_warnx("failed logins of %s not deleted: %s", key, cause);
		free(cause);
	}
}

/* At load: the keys to delete once the read transaction is over. */
static void
cmd_broker_lockout_drop(const char *key, void *arg)
{
	json_array_append_new(arg, json_string(key));
}

static int
cmd_broker_lockout_load_cb(const char *key, json_t *rec, void *arg)
{
	if (auth_lockout_import(cmd_broker_lockout, key, rec,
	    clock_mono_s()) == 0)
		cmd_broker_lockout_drop(key, arg);
	return (0);
}

/* The counters, loaded from the database on first use. */
static struct auth_lockout *
cmd_broker_lockouts(void)
{
	json_t	*drop, *k;
	char	*cause = NULL;
	size_t	 i;

	if (cmd_broker_lockout != NULL)
		return (cmd_broker_lockout);
	cmd_broker_lockout = auth_lockout_create(AUTH_LOCK_FAILURES,
	    AUTH_LOCK_LOGIN_FAILURES, AUTH_LOCK_WINDOW, AUTH_LOCK_TIME,
	    AUTH_LOCK_ENTRIES, AUTH_LOCK_KNOWN_ENTRIES);
	drop = json_array();
	auth_lockout_on_evict(cmd_broker_lockout, cmd_broker_lockout_drop,
	    drop);
	if (db_foreach(qmpd->db, DB_LOCKOUTS, cmd_broker_lockout_load_cb,
	    drop, &cause) < 0) {
		log_warnx("failed-login counters not loaded: %s", cause);
		free(cause);
	}
	json_array_foreach(drop, i, k)
		cmd_broker_lockout_del(json_string_value(k), NULL);
	json_decref(drop);
	auth_lockout_on_evict(cmd_broker_lockout, cmd_broker_lockout_del,
	    NULL);
	return (cmd_broker_lockout);
}

/* Store one record as it is now (run state: not synced). */
static void
cmd_broker_lockout_save(const char *login, const char *addr)
{
	json_t	*j;
	char	 key[AUTH_KEY_MAX], *cause = NULL;

	auth_lockout_key(login, addr, key, sizeof key);
	j = auth_lockout_export(cmd_broker_lockouts(), login, addr,
	    clock_mono_s());
	if (j == NULL) {
		cmd_broker_lockout_del(key, NULL);
		return;
	}
	if (db_put_nosync(qmpd->db, DB_LOCKOUTS, key, j, &cause) != 0) {
		log_warnx("failed logins of %s not stored: %s", key, cause);
		free(cause);
	}
	json_decref(j);
}

/* A good login forgets the failures, in the database too if it had any. */
static void
cmd_broker_lockout_forget(const char *login, const char *addr)
{
	char	key[AUTH_KEY_MAX];
	int	stored;

	stored = auth_lockout_clear(cmd_broker_lockouts(), login, addr);
	if (stored & AUTH_STORED_ADDR) {
		auth_lockout_key(login, addr, key, sizeof key);
		cmd_broker_lockout_del(key, NULL);
	}
	if (stored & AUTH_STORED_LOGIN)
		cmd_broker_lockout_del(login, NULL);
}

/*
 * Refuse a login whose failure is counted already (auth_lockout_admit or
 * auth_lockout_done): store the counters, log, answer.
 */
static void
cmd_broker_auth_fail(struct cmd_req *req, const char *login,
    const char *addr, const char *why)
{
	json_t	*f;
	int	 locked;

	metrics_login_failures++;
	cmd_broker_lockout_save(login, addr);
	cmd_broker_lockout_save(login, NULL);
	locked = auth_lockout_check(cmd_broker_lockouts(), login, addr,
	    clock_mono_s());
	f = json_pack("{s:s,s:s,s:s}", "user", login, "client",
	    cmd_broker_client(req), "reason", why);
	if (locked > 0) {
		metrics_lockouts++;
		json_object_set_new(f, "locked", json_integer(locked));
		log_event(1, "login.failed", f, "login %.64s from %s refused: "
		    "%s; locked for %d s", login, cmd_broker_client(req), why,
		    locked);
	} else
		log_event(1, "login.failed", f, "login %.64s from %s refused: "
		    "%s", login, cmd_broker_client(req), why);
	json_decref(f);
	/* The same words whatever the reason: no guessing who exists. */
	cmd_error(req, ERR_AUTH, "invalid login or password");
}

/* A login whose password is being checked on a worker thread. */
struct cmd_broker_login {
	struct cmd_req	*req;
	char		 login[AUTH_LOGIN_MAX + 1];
	char		 addr[AUTH_ADDR_MAX + 1];
	char		*hash;	/* checked against; NULL: no user or none */
	int		 known;
};

/* The password workers, started on first use. */
static struct auth_pool *
cmd_broker_pool(char **cause)
{
	static struct auth_pool	*pool;

	if (pool == NULL)
		pool = auth_pool_create(qmpd->base, auth_pool_cpus(),
		    CMD_BROKER_AUTH_QUEUE, cause);
	return (pool);
}

/* A good login: forget its failures, note when (run state), answer. */
static void
cmd_broker_auth_ok(struct cmd_req *req, const char *login, const char *addr,
    json_t *rec)
{
	char	*what;
	json_t	*f;

	cmd_broker_lockout_forget(login, addr);
	metrics_logins++;
	f = json_pack("{s:s,s:s}", "user", login, "client",
	    cmd_broker_client(req));
	log_event(0, "login", f, "login %s from %s", login,
	    cmd_broker_client(req));
	json_decref(f);
	/* Not synced: a host crash may lose it, no login pays an fsync. */
	json_object_set_new(rec, "last_login", json_integer(time(NULL)));
	xasprintf(&what, "user %s: last login", login);
	userdb_put(DB_USERS, login, rec, USERDB_NOSYNC, userdb_log_cb, what);
	cmd_reply(req, json_pack("{s:s,s:O?,s:O?,s:b}", "login", login,
	    "name", json_object_get(rec, "name"), "dept",
	    json_object_get(rec, "dept"), "admin",
	    json_is_true(json_object_get(rec, "admin"))));
}

/*
 * The verdict of a worker, on the loop. The user is read again: one
 * removed, disabled or given a new password during the check is refused.
 */
static void
cmd_broker_auth_done(int ok, void *arg)
{
	struct cmd_broker_login	*bl = arg;
	json_t			*rec;
	const char		*hash, *why = NULL;

	rec = user_get(bl->login);
	hash = json_string_value(json_object_get(rec, "hash"));
	if (rec == NULL)
		why = bl->known ? "the user was removed" : "no such user";
	else if (bl->hash == NULL)
		why = "the user has no password";
	else if (hash == NULL || strcmp(hash, bl->hash) != 0)
		why = "the password was changed during the check";
	else if (!ok)
		why = "wrong password";
	else if (json_is_true(json_object_get(rec, "disabled")))
		why = "the user is disabled";
	auth_lockout_done(cmd_broker_lockouts(), bl->login, bl->addr,
	    rec != NULL, why == NULL, clock_mono_s());
	if (why != NULL)
		cmd_broker_auth_fail(bl->req, bl->login, bl->addr, why);
	else
		cmd_broker_auth_ok(bl->req, bl->login, bl->addr, rec);
	json_decref(rec);
	free(bl->hash);
	free(bl);
}

/*
 * user.auth: check a user's password. The lockout is checked as the
 * attempt arrives (per client address, then per login), attempts in
 * flight counting against what is left before the lock; a locked login
 * or an unusable password costs no hash. The yescrypt hash
 * (~50-100 ms of CPU; a dummy one for an unknown user, so the answer
 * takes as long) runs on a worker thread and the answer comes from
 * cmd_broker_auth_done; the loop only checks and queues.
 */
static enum cmd_retval
cmd_broker_auth(struct cmd_req *req)
{
	const char		*login = cmd_arg_str(req, "login", "");
	json_t			*pw = json_object_get(req->args, "password");
	json_t			*rec, *f;
	struct auth_pool	*pool;
	struct cmd_broker_login	*bl;
	const char		*hash;
	char			 addr[AUTH_ADDR_MAX + 1], *cause = NULL;
	int			 left;

	if (auth_login_valid(login, &cause) != 0) {
		free(cause);
		metrics_login_failures++;
		log_warnx("login from %s refused: not a valid login name",
		    cmd_broker_client(req));
		cmd_error(req, ERR_AUTH, "invalid login or password");
		return (CMD_RETURN_DONE);
	}
	if ((pool = cmd_broker_pool(&cause)) == NULL) {
		log_warnx("login %s refused: %s", login, cause);
		cmd_fail(req, ERR_INTERNAL, cause);
		return (CMD_RETURN_DONE);
	}
	if (auth_pool_queued(pool) >= CMD_BROKER_AUTH_QUEUE) {
		log_warnx("login %s from %s refused: %d password checks "
		    "queued", login, cmd_broker_client(req),
		    auth_pool_queued(pool));
		cmd_error(req, ERR_BUSY, "too many logins at once; try again "
		    "in a moment");
		return (CMD_RETURN_DONE);
	}
	auth_addr_normalize(json_string_value(json_object_get(req->args,
	    "client")), addr, sizeof addr);
	rec = user_get(login);
	switch (auth_lockout_admit(cmd_broker_lockouts(), login, addr,
	    rec != NULL, json_string_value(pw), json_string_length(pw),
	    clock_mono_s(), &left, &cause)) {
	case AUTH_LOCKED:
		f = json_pack("{s:s,s:s,s:i}", "user", login, "client",
		    cmd_broker_client(req), "locked", left);
		log_event(1, "login.locked", f, "login %s from %s refused: %s",
		    login, cmd_broker_client(req), cause);
		json_decref(f);
		cmd_error(req, ERR_LOCKED, "too many failed logins for %s; try "
		    "again in %d s", login, left);
		free(cause);
		json_decref(rec);
		return (CMD_RETURN_DONE);
	case AUTH_REFUSED:
		cmd_broker_auth_fail(req, login, addr, cause);
		free(cause);
		json_decref(rec);
		return (CMD_RETURN_DONE);
	case AUTH_BUSY:
		log_warnx("login %s from %s refused: %s", login,
		    cmd_broker_client(req), cause);
		cmd_error(req, ERR_BUSY, "too many logins for %s at once; try "
		    "again in a moment", login);
		free(cause);
		json_decref(rec);
		return (CMD_RETURN_DONE);
	}
	hash = json_string_value(json_object_get(rec, "hash"));
	bl = xcalloc(1, sizeof *bl);
	bl->req = req;
	strlcpy(bl->login, login, sizeof bl->login);
	strlcpy(bl->addr, addr, sizeof bl->addr);
	bl->hash = hash != NULL ? xstrdup(hash) : NULL;
	bl->known = rec != NULL;
	json_decref(rec);
	/* Cannot fail: the queue had room above. */
	if (auth_pool_verify(pool, json_string_value(pw), bl->hash,
	    cmd_broker_auth_done, bl, &cause) != 0)
		fatalx("user.auth: %s", cause);
	/* The password need not stay in memory any longer than the job. */
	json_object_del(req->args, "password");
	return (CMD_RETURN_WAIT);
}

/*
 * Revocations of the last CMD_BROKER_REVOKED_TTL seconds, newest last:
 * {"login", "vm" (absent: all of the user's desktops), "reason", "at" (ms
 * on CLOCK_MONOTONIC, which every process of the host shares)}. The RDP
 * gateway's sessions ask desktop.revoked about theirs every half second.
 */
static json_t	*cmd_broker_revocations;

/* Drop the revocations no session can still be asking about. */
static void
cmd_broker_revoked_age(void)
{
	json_t		*r;
	long long	 now = clock_mono_ms();

	if (cmd_broker_revocations == NULL)
		cmd_broker_revocations = json_array();
	while ((r = json_array_get(cmd_broker_revocations, 0)) != NULL &&
	    (json_array_size(cmd_broker_revocations) >
	    CMD_BROKER_REVOKED_KEEP || now - json_integer_value(
	    json_object_get(r, "at")) > CMD_BROKER_REVOKED_TTL * 1000LL))
		json_array_remove(cmd_broker_revocations, 0);
}

/* set_password or expire_password answered: only a failure is news. */
static void
cmd_broker_revoke_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	char	*name = arg;

	if (errclass != NULL)
		log_warnx("%s: SPICE clients not disconnected: %s", name,
		    errdesc);
	free(name);
}

/*
 * Disconnect every SPICE client of vm and leave it a password nobody
 * knows, already expired: a ticket given out before is worthless too.
 */
static void
cmd_broker_revoke_spice(struct vm *vm, const char *reason)
{
	char	*secret;

	if (strcmp(vm->def.display, "spice") != 0 || vm->qmp == NULL ||
	    (vm->state != VM_RUNNING && vm->state != VM_PAUSED))
		return;
	session_end_reason(vm->def.name, reason);
	secret = vm_qmp_secret();
	if (qmp_execute(vm->qmp, "set_password", json_pack("{s:s,s:s,s:s}",
	    "protocol", "spice", "password", secret, "connected",
	    "disconnect"), cmd_broker_revoke_done,
	    xstrdup(vm->def.name)) == 0)
		qmp_execute(vm->qmp, "expire_password", json_pack("{s:s,s:s}",
		    "protocol", "spice", "time", "now"),
		    cmd_broker_revoke_done, xstrdup(vm->def.name));
	else
		log_warnx("%s: SPICE clients not disconnected: QMP is not "
		    "connected", vm->def.name);
	explicit_bzero(secret, strlen(secret));
	free(secret);
	log_info("%s: SPICE sessions ended (%s)", vm->def.name, reason);
}

/* Is vm one of login's: assigned to them, or its last ticket theirs? */
static int
cmd_broker_revoke_mine(struct vm *vm, const char *login)
{
	const char	*owner = user_owner(vm), *holder;
	long long	 at, expires;
	uid_t		 uid;

	if (owner != NULL && strcmp(owner, login) == 0)
		return (1);
	return (vm_ticket_last(vm->def.name, &holder, &uid, &at,
	    &expires) == 0 && strcmp(holder, login) == 0);
}

void
cmd_broker_revoke(const char *login, const char *vm, const char *why)
{
	struct vm	*v;
	char		*reason;

	xasprintf(&reason, "revoked: %s", why);
	cmd_broker_revoked_age();
	json_array_append_new(cmd_broker_revocations, json_pack(
	    "{s:s,s:s?,s:s,s:I}", "login", login, "vm", vm, "reason", reason,
	    "at", (json_int_t)clock_mono_ms()));
	TAILQ_FOREACH(v, &vms, entry) {
		if (vm != NULL ? strcmp(v->def.name, vm) == 0 :
		    cmd_broker_revoke_mine(v, login))
			cmd_broker_revoke_spice(v, reason);
	}
	log_info("sessions of %s%s%s %s", login, vm != NULL ? " on " : "",
	    vm != NULL ? vm : "", reason);
	free(reason);
}

/*
 * desktop.revoked: has login's session on vm, authenticated at "since"
 * (ms on CLOCK_MONOTONIC), been revoked since? The RDP gateway's sessions
 * ask this every half second and end themselves with the reason.
 */
static enum cmd_retval
cmd_broker_revoked(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	const char	*vm = cmd_arg_str(req, "vm", NULL);
	long long	 since = cmd_arg_int(req, "since", 0);
	const char	*rvm;
	json_t		*r;
	size_t		 i;

	cmd_broker_revoked_age();
	json_array_foreach(cmd_broker_revocations, i, r) {
		rvm = json_string_value(json_object_get(r, "vm"));
		if (json_integer_value(json_object_get(r, "at")) < since ||
		    strcmp(json_string_value(json_object_get(r, "login")),
		    login) != 0 || (rvm != NULL && (vm == NULL ||
		    strcmp(rvm, vm) != 0)))
			continue;
		cmd_reply(req, json_pack("{s:b,s:O}", "revoked", 1, "reason",
		    json_object_get(r, "reason")));
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:b}", "revoked", 0));
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
	if (qmpd->cluster != NULL && (vm == NULL ||
	    cluster_desktop_stale(vm)) &&
	    cluster_desktop_elsewhere(req, name) != -1)
		return (NULL);
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
		spice = json_pack("{s:s,s:i}", "host", vm_spice_addr(vm), "port",
		    vm->def.spice_port);
	return (json_pack("{s:s,s:s,s:s?,s:o}", "name", vm->def.name, "state",
	    vm_state_name(vm->state), "pool", vm->def.pool, "spice", spice));
}

/*
 * One of the user's desktops; in a cluster one with no record here is
 * as etcd tells it (the broker prefers its placement host's answer).
 */
static json_t *
cmd_broker_mine_json(const char *name)
{
	struct vm	*vm;
	json_t		*d;

	if ((vm = vm_find(name)) != NULL)
		return (cmd_broker_desktop_json(vm));
	d = cluster_desktop_json(name);
	json_object_del(d, "host");
	json_object_set_new(d, "name", json_string(name));
	json_object_set_new(d, "spice", json_null());
	return (d);
}

/* The desktops of the user named, with what a portal needs to show. */
static enum cmd_retval
cmd_broker_mine(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	json_t		*a, *names, *v;
	size_t		 i;

	if (cmd_broker_user(req) != 0)
		return (CMD_RETURN_DONE);
	a = json_array();
	names = user_desktops(login);
	json_array_foreach(names, i, v)
		json_array_append_new(a, cmd_broker_mine_json(
		    json_string_value(v)));
	json_decref(names);
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
			cmd_fail(req, ERR_QEMU, cause);
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
		cmd_fail(req, ERR_STATE, cause);
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
	int		 rv;

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
	if (qmpd->cluster != NULL && (rv = cluster_desktop_power(req, vm,
	    action)) != -1)
		return (rv);
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

/*
 * A desktop between two hosts (a live migration): Busy, so the RDP
 * gateway asks again (broker/rdp/rdp-follow.c), while it arrives here
 * or its source switches over; once it has left, the host it went to,
 * which the broker asks instead. 0: not moving, answer as usual (a
 * stopped desktop's answer ends the gateway's session).
 */
static int
cmd_broker_moving(struct cmd_req *req, struct vm *vm)
{
	struct vm_mig	*m = vm->mig;

	/*
	 * Its QEMU is coming (a restart after a crash, say), or going: its
	 * monitor closed before qmpd saw it exit. Ask again: the same.
	 */
	if (m == NULL && vm->qmp == NULL && vm_is_active(vm)) {
		cmd_error(req, ERR_BUSY, "desktop %.64s: its QEMU is not "
		    "reachable now: ask again in a moment", vm->def.name);
		return (1);
	}
	if (m == NULL && (vm->state == VM_STARTING ||
	    (vm->restart_timer != NULL &&
	    evtimer_pending(vm->restart_timer, NULL)))) {
		cmd_error(req, ERR_BUSY, "desktop %.64s is starting: ask again "
		    "in a moment", vm->def.name);
		return (1);
	}
	if (m == NULL)
		return (0);
	if (m->incoming && (m->state == VM_MIG_PREPARING ||
	    m->state == VM_MIG_ACTIVE || m->state == VM_MIG_SWITCHOVER)) {
		cmd_error(req, ERR_BUSY, "desktop %.64s is arriving from %s: "
		    "ask again in a moment", vm->def.name, m->peer_addr);
		return (1);
	}
	if (!m->incoming && m->state == VM_MIG_SWITCHOVER) {
		cmd_error(req, ERR_BUSY, "desktop %.64s is moving to %s: ask "
		    "again in a moment", vm->def.name, m->peer_addr);
		return (1);
	}
	if (!m->incoming && m->state == VM_MIG_COMPLETED &&
	    qmpd->cluster != NULL) {
		cmd_error(req, ERR_STATE, "desktop %.64s is on host %s",
		    vm->def.name, m->peer_addr);
		return (1);
	}
	return (0);
}

/* A VNC connection to the user's own desktop, for the RDP gateway. */
static enum cmd_retval
cmd_broker_vnc(struct cmd_req *req)
{
	struct vm	*vm;

	if ((vm = cmd_broker_desktop(req)) == NULL ||
	    cmd_broker_moving(req, vm))
		return (CMD_RETURN_DONE);
	return (cmd_vm_vnc_reply(vm, req));
}

/*
 * desktop.spice: where the broker's proxy sends a viewer's migration
 * session (the CONNECT naming its ticket as client_migrate_info gave
 * it): the target's SPICE server while vm migrates away from here, else
 * vm's own. The proxy checked that the ticket holds a tunnel to vm.
 */
static enum cmd_retval
cmd_broker_spice(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "vm", "");
	struct vm	*vm;
	struct vm_mig	*m;
	json_t		*spice = NULL;

	if ((vm = vm_find(name)) == NULL || !vm_is_active(vm)) {
		cmd_error(req, ERR_STATE, "desktop %.64s is not running here",
		    name);
		return (CMD_RETURN_DONE);
	}
	m = vm->mig;
	if (m != NULL && !m->incoming && m->target != NULL &&
	    (m->state == VM_MIG_MIRRORING || m->state == VM_MIG_ACTIVE ||
	    m->state == VM_MIG_SWITCHOVER || m->state == VM_MIG_COMPLETED))
		spice = json_object_get(m->target, "spice");
	if (json_is_object(spice))
		cmd_reply(req, json_pack("{s:O,s:O,s:b}", "host",
		    json_object_get(spice, "host"), "port",
		    json_object_get(spice, "tls-port"), "migrating", 1));
	else
		cmd_reply(req, json_pack("{s:s,s:i,s:b}", "host",
		    vm_spice_addr(vm), "port", vm->def.spice_port,
		    "migrating", 0));
	return (CMD_RETURN_DONE);
}

static const struct cmd_arg cmd_broker_spice_args[] = {
	{ "vm", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

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

static const struct cmd_arg cmd_broker_revoked_args[] = {
	{ "login", ARG_STR, 1 },
	{ "vm", ARG_STR, 0 },
	{ "since", ARG_INT, 1 },
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
	{ "desktop.spice", cmd_broker_spice_args, ROLE_BROKER,
	    cmd_broker_spice },
	{ "desktop.revoked", cmd_broker_revoked_args, ROLE_BROKER,
	    cmd_broker_revoked },
	{ NULL, NULL, 0, NULL }
};
