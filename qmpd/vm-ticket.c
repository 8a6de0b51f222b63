/*
 * SPICE console tickets: a fresh random password for a VM, valid for a
 * short while, for vm.ticket (admins) and desktop.console (the broker on
 * behalf of a user). Who got the last ticket of each VM is remembered
 * (here, and in the VM's session record for after a restart) so session.c
 * can say whose SPICE session it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_TICKET_LOGIN_MAX	64

/* A ticket being set: set_password, then expire_password. */
struct vm_ticket_req {
	done_cb		 done;
	void		*arg;
	char		 name[VM_NAME_MAX];
	char		 login[VM_TICKET_LOGIN_MAX];	/* "" for an admin */
	uid_t		 uid;
	char		 password[33];
	int		 ttl;
	long long	 expires;
	int		 failed;
};

/*
 * Who got the last ticket of a VM, and the password itself: a live
 * migration hands it to the target (vm_ticket_carry), so a connected
 * viewer's password opens the target's QEMU too.
 */
struct vm_ticket_holder {
	char				 name[VM_NAME_MAX];
	char				 login[VM_TICKET_LOGIN_MAX];
	uid_t				 uid;
	char				 password[33];
	long long			 at;
	long long			 expires;
	TAILQ_ENTRY(vm_ticket_holder)	 entry;
};
static TAILQ_HEAD(, vm_ticket_holder) vm_ticket_holders =
    TAILQ_HEAD_INITIALIZER(vm_ticket_holders);

static struct vm_ticket_holder *
vm_ticket_find(const char *name)
{
	struct vm_ticket_holder	*h;

	TAILQ_FOREACH(h, &vm_ticket_holders, entry) {
		if (strcmp(h->name, name) == 0)
			return (h);
	}
	return (NULL);
}

static void
vm_ticket_remember(struct vm_ticket_req *t)
{
	struct vm_ticket_holder	*h;

	if ((h = vm_ticket_find(t->name)) == NULL) {
		h = xcalloc(1, sizeof *h);
		strlcpy(h->name, t->name, sizeof h->name);
		TAILQ_INSERT_TAIL(&vm_ticket_holders, h, entry);
	}
	strlcpy(h->login, t->login, sizeof h->login);
	strlcpy(h->password, t->password, sizeof h->password);
	h->uid = t->uid;
	h->at = t->expires - t->ttl;
	h->expires = t->expires;
	session_ticket(h->name, h->login, h->uid, h->at, h->expires);
}

/*
 * Who got the last ticket of VM name: 0 and *login ("" when an admin
 * asked, *uid then says who), *at, *expires; -1 when nobody since qmpd
 * started.
 */
int
vm_ticket_last(const char *name, const char **login, uid_t *uid,
    long long *at, long long *expires)
{
	struct vm_ticket_holder	*h;

	if ((h = vm_ticket_find(name)) == NULL)
		return (-1);
	*login = h->login;
	*uid = h->uid;
	*at = h->at;
	*expires = h->expires;
	return (0);
}

static void
vm_ticket_free(struct vm_ticket_req *t)
{
	explicit_bzero(t->password, sizeof t->password);
	free(t);
}

/*
 * The answer: where to connect and the password; for a TLS port (every
 * VM this qmpd starts) also the certificate to trust and its subject.
 */
static void
vm_ticket_reply(struct vm_ticket_req *t, struct vm *vm)
{
	json_t	*r;
	char	*uri, *ca_file;

	if (vm->spice_tls)
		xasprintf(&uri, "spice://%s?tls-port=%d&password=%s",
		    vm_spice_addr(vm), vm->def.spice_port, t->password);
	else
		xasprintf(&uri, "spice://%s:%d?password=%s", vm_spice_addr(vm),
		    vm->def.spice_port, t->password);
	r = json_pack("{s:s,s:s,s:i,s:s,s:I,s:b}", "uri", uri, "host",
	    vm_spice_addr(vm), "port", vm->def.spice_port, "password",
	    t->password, "expires", (json_int_t)t->expires, "tls",
	    vm->spice_tls);
	if (vm->spice_tls) {
		json_object_set_new(r, "ca", json_string(spice_tls_ca()));
		json_object_set_new(r, "host_subject",
		    json_string(spice_tls_subject(vm)));
		ca_file = spice_tls_ca_file();
		json_object_set_new(r, "ca_file", json_string(ca_file));
		free(ca_file);
	}
	done_ok(t->done, t->arg, r);
	explicit_bzero(uri, strlen(uri));
	free(uri);
}

static void
vm_ticket_expire_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_ticket_req	*t = arg;
	struct vm		*vm = vm_find(t->name);
	char			*cause = NULL;

	if (t->failed)
		;
	else if (errclass != NULL)
		done_fail(t->done, t->arg, ERR_QEMU, "expire_password: %s",
		    errdesc);
	else if (vm == NULL)
		done_fail(t->done, t->arg, ERR_NOTFOUND, "VM %s went away",
		    t->name);
	else {
		vm_ticket_remember(t);
		/* Kept in the record for a migration after a restart. */
		if (vm_save_state(vm, &cause) != 0) {
			log_warnx("%s: ticket not recorded: %s", t->name,
			    cause);
			free(cause);
		}
		if (t->login[0] != '\0')
			log_info("%s: console ticket for %s, %d s", t->name,
			    t->login, t->ttl);
		else
			log_info("%s: console ticket for uid %ld, %d s",
			    t->name, (long)t->uid, t->ttl);
		vm_ticket_reply(t, vm);
	}
	vm_ticket_free(t);
}

static void
vm_ticket_set_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_ticket_req	*t = arg;

	if (errclass != NULL) {
		done_fail(t->done, t->arg, ERR_QEMU, "set_password: %s",
		    errdesc);
		t->failed = 1;
	}
}

/*
 * A SPICE ticket for vm, valid ttl seconds, on behalf of login (NULL: an
 * admin, uid). connected=keep leaves an open session alone;
 * expire_password always follows, since a new password does not lift an
 * older expiry. done is always called, at once on error or later from
 * the QMP callbacks.
 */
void
vm_ticket(struct vm *vm, long long ttl, const char *login, uid_t uid,
    done_cb done, void *arg)
{
	struct vm_ticket_req	*t;
	char			*secret, when[32];

	if (strcmp(vm->def.display, "spice") != 0) {
		done_fail(done, arg, ERR_STATE, "VM %s has no SPICE display",
		    vm->def.name);
		return;
	}
	if (ttl < 5 || ttl > 86400) {
		done_fail(done, arg, ERR_ARG, "expires must be 5 to 86400 "
		    "seconds");
		return;
	}
	if (vm->qmp == NULL || (vm->state != VM_RUNNING &&
	    vm->state != VM_PAUSED)) {
		done_fail(done, arg, ERR_STATE, "VM %s is %s: start it first",
		    vm->def.name, vm_state_name(vm->state));
		return;
	}
	t = xcalloc(1, sizeof *t);
	t->done = done;
	t->arg = arg;
	strlcpy(t->name, vm->def.name, sizeof t->name);
	if (login != NULL)
		strlcpy(t->login, login, sizeof t->login);
	t->uid = uid;
	secret = vm_qmp_secret();
	strlcpy(t->password, secret, sizeof t->password);
	explicit_bzero(secret, strlen(secret));
	free(secret);
	t->ttl = (int)ttl;
	t->expires = time(NULL) + ttl;
	snprintf(when, sizeof when, "+%lld", ttl);
	if (qmp_execute(vm->qmp, "set_password", json_pack("{s:s,s:s,s:s}",
	    "protocol", "spice", "password", t->password, "connected", "keep"),
	    vm_ticket_set_done, t) != 0) {
		done_fail(done, arg, ERR_QEMU, "VM %s: QMP is not connected",
		    vm->def.name);
		vm_ticket_free(t);
		return;
	}
	/* Queued behind set_password on the same live connection. */
	qmp_execute(vm->qmp, "expire_password", json_pack("{s:s,s:s}",
	    "protocol", "spice", "time", when), vm_ticket_expire_done, t);
}

/*
 * The last ticket of VM name for migrate.prepare: {password, expires,
 * at, login, uid}, or NULL when none was given since qmpd started (the
 * target then has no password and a viewer must ask for a new ticket).
 * Sent even when expired: a viewer linked with it still follows.
 */
json_t *
vm_ticket_carry(const char *name)
{
	struct vm_ticket_holder	*h;

	if ((h = vm_ticket_find(name)) == NULL || h->password[0] == '\0')
		return (NULL);
	return (json_pack("{s:s,s:I,s:I,s:s,s:I}", "password", h->password,
	    "expires", (json_int_t)h->expires, "at", (json_int_t)h->at,
	    "login", h->login, "uid", (json_int_t)h->uid));
}

/* The holder of VM name from a carried ticket t ({password, ...}). */
static int
vm_ticket_load(const char *name, json_t *t, struct vm_ticket_holder **hp,
    char **cause)
{
	struct vm_ticket_holder	*h;
	const char		*password, *login;

	password = json_string_value(json_object_get(t, "password"));
	login = json_string_value(json_object_get(t, "login"));
	if (password == NULL || strlen(password) >= sizeof h->password ||
	    login == NULL || strlen(login) >= sizeof h->login) {
		xasprintf(cause, "the source's SPICE ticket is malformed");
		return (-1);
	}
	if ((h = vm_ticket_find(name)) == NULL) {
		h = xcalloc(1, sizeof *h);
		strlcpy(h->name, name, sizeof h->name);
		TAILQ_INSERT_TAIL(&vm_ticket_holders, h, entry);
	}
	strlcpy(h->password, password, sizeof h->password);
	strlcpy(h->login, login, sizeof h->login);
	h->uid = (uid_t)json_integer_value(json_object_get(t, "uid"));
	h->at = json_integer_value(json_object_get(t, "at"));
	h->expires = json_integer_value(json_object_get(t, "expires"));
	*hp = h;
	return (0);
}

/* The target's side: remember the source's ticket of VM name. */
int
vm_ticket_take(const char *name, json_t *t, char **cause)
{
	struct vm_ticket_holder	*h;

	if (vm_ticket_load(name, t, &h, cause) != 0)
		return (-1);
	session_ticket(h->name, h->login, h->uid, h->at, h->expires);
	return (0);
}

/*
 * Start-up: the ticket of VM name as its record kept it (spice-via.c),
 * so a viewer linked before a qmpd restart still follows a migration.
 */
int
vm_ticket_restore(const char *name, json_t *t, char **cause)
{
	struct vm_ticket_holder	*h;

	return (vm_ticket_load(name, t, &h, cause));
}

/*
 * Set the remembered ticket on vm's QEMU (a migration's target): valid
 * for at least window more seconds, so a viewer can link while the
 * stream runs; vm_ticket_settle puts the source's expiry back once the
 * desktop runs here. No ticket: nothing to do.
 */
void
vm_ticket_arm(struct vm *vm, long long window)
{
	struct vm_ticket_holder	*h;
	char			 when[32];
	long long		 until;

	if ((h = vm_ticket_find(vm->def.name)) == NULL ||
	    h->password[0] == '\0' || vm->qmp == NULL)
		return;
	until = time(NULL) + window;
	if (h->expires > until)
		until = h->expires;
	snprintf(when, sizeof when, "%lld", until);
	qmp_execute(vm->qmp, "set_password", json_pack("{s:s,s:s,s:s}",
	    "protocol", "spice", "password", h->password, "connected", "keep"),
	    NULL, NULL);
	qmp_execute(vm->qmp, "expire_password", json_pack("{s:s,s:s}",
	    "protocol", "spice", "time", when), NULL, NULL);
}

/* After the switchover: the ticket expires when the source's did. */
void
vm_ticket_settle(struct vm *vm)
{
	struct vm_ticket_holder	*h;
	char			 when[32];

	if ((h = vm_ticket_find(vm->def.name)) == NULL ||
	    h->password[0] == '\0' || vm->qmp == NULL)
		return;
	/* A time already past expires it at once: absolute, not "+N". */
	snprintf(when, sizeof when, "%lld", h->expires);
	qmp_execute(vm->qmp, "expire_password", json_pack("{s:s,s:s}",
	    "protocol", "spice", "time", when), NULL, NULL);
}
