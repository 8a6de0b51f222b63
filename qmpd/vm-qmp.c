/*
 * A VM's QMP side: the steps after spawn (password, cont), the re-attach
 * query, and the QMP event table.
 */
#include <sys/random.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "net.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_QMP_TIMEOUT_MS	30000

static void	vm_qmp_query_status(struct vm *);

/* A random secret nobody knows: SPICE stays locked until a ticket. */
char *
vm_qmp_secret(void)
{
	unsigned char	 r[16];
	char		*s;
	size_t		 i;

	if (getrandom(r, sizeof r, 0) != sizeof r)
		fatal("getrandom");
	s = xmalloc(sizeof r * 2 + 1);
	for (i = 0; i < sizeof r; i++)
		snprintf(s + i * 2, 3, "%02x", r[i]);
	return (s);
}

static void
vm_qmp_quit(struct vm *vm)
{
	if (vm->qmp != NULL)
		qmp_execute(vm->qmp, "quit", NULL, NULL, NULL);
}

static void
vm_qmp_cont_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	char		*r;

	if (errclass != NULL) {
		/* A QEMU that died says why in its log: vm_exited reads it. */
		if (vm->qmp != qmp || strcmp(errclass, "Disconnected") == 0)
			return;
		xasprintf(&r, "cont failed: %s", errdesc);
		vm_set_state(vm, VM_CRASHED, r);
		free(r);
		vm_qmp_quit(vm);
		return;
	}
	if (vm->state == VM_STARTING)
		vm_set_state(vm, VM_RUNNING, NULL);
}

/* Let the guest run; vm-net.c calls this late when rules are pending. */
void
vm_qmp_cont(struct vm *vm)
{
	qmp_execute(vm->qmp, "cont", NULL, vm_qmp_cont_done, vm);
}

static void
vm_qmp_password_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	if (errclass != NULL)
		log_warnx("%s: set_password: %s", ((struct vm *)arg)->def.name,
		    errdesc);
}

/* What query-status says decides the state after STOP or re-attach. */
static void
vm_qmp_status_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	const char	*status;
	char		*r;

	if (errclass != NULL || vm->qmp != qmp)
		return;
	status = json_string_value(json_object_get(ret, "status"));
	if (status == NULL)
		return;
	if (strcmp(status, "internal-error") == 0 ||
	    strcmp(status, "guest-panicked") == 0) {
		xasprintf(&r, "%s%s", status, strcmp(status,
		    "internal-error") == 0 ? " (KVM could not run the guest)" :
		    "");
		vm_set_state(vm, VM_CRASHED, r);
		free(r);
		vm_qmp_quit(vm);
	} else if (strcmp(status, "running") == 0) {
		if (vm->state != VM_STOPPING)
			vm_set_state(vm, VM_RUNNING, NULL);
	} else if (strcmp(status, "shutdown") == 0) {
		vm->guest_shutdown = 1;
		vm_qmp_quit(vm);
	} else if (strcmp(status, "postmigrate") == 0 &&
	    !vm_migrate_busy(vm)) {
		/* Migrated while no qmpd watched: never two running copies. */
		vm_set_state(vm, VM_PAUSED, VM_MIG_POSTMIGRATE);
	} else if (strcmp(status, "prelaunch") == 0 &&
	    vm->state == VM_STARTING) {
		/* qmpd died between spawn and cont: finish the start. */
		qmp_execute(vm->qmp, "cont", NULL, vm_qmp_cont_done, vm);
	} else if (vm->state != VM_STOPPING && vm->state != VM_STARTING)
		vm_set_state(vm, VM_PAUSED, status);
}

static void
vm_qmp_query_status(struct vm *vm)
{
	qmp_execute(vm->qmp, "query-status", NULL, vm_qmp_status_done, vm);
}

static void
vm_ev_shutdown(struct vm *vm, json_t *data)
{
	/* -no-shutdown keeps QEMU up after the guest is off: quit it. */
	if (json_is_true(json_object_get(data, "guest")))
		vm->guest_shutdown = 1;
	if (vm->stop_asked < 2) {
		vm->stop_asked = vm->stop_asked == 1 ? 2 : 0;
		vm_qmp_quit(vm);
	}
}

static void
vm_ev_stop(struct vm *vm, json_t *data)
{
	if (vm->state == VM_STARTING || vm->state == VM_STOPPING)
		return;
	/* A migration's switchover: vm-migrate.c says how it ends. */
	if (vm_migrate_busy(vm)) {
		vm_migrate_stopped(vm);
		return;
	}
	vm_qmp_query_status(vm);
}

static void
vm_ev_resume(struct vm *vm, json_t *data)
{
	if (vm->state == VM_PAUSED || vm->state == VM_STARTING)
		vm_set_state(vm, VM_RUNNING, NULL);
}

static void
vm_ev_panicked(struct vm *vm, json_t *data)
{
	vm_set_state(vm, VM_CRASHED, "guest-panicked");
	vm_qmp_quit(vm);
}

static void
vm_ev_reset(struct vm *vm, json_t *data)
{
	notify_emit("vm.reset", vm->def.name, data);
}

static void
vm_ev_powerdown(struct vm *vm, json_t *data)
{
	log_info("%s: ACPI power button delivered", vm->def.name);
}

static void
vm_ev_block_io_error(struct vm *vm, json_t *data)
{
	json_decref(vm->last_io_error);
	vm->last_io_error = json_incref(data);
	log_warnx("%s: block I/O error", vm->def.name);
	notify_emit("vm.io_error", vm->def.name, data);
}

/* SPICE clients: one record per main channel, keyed by address. */
static void
vm_ev_spice(struct vm *vm, json_t *data, const char *action)
{
	json_t		*client = json_object_get(data, "client");
	json_t		*c, *fields;
	const char	*host = json_string_value(json_object_get(client,
			    "host"));
	const char	*port = json_string_value(json_object_get(client,
			    "port"));
	size_t		 i;

	if (host == NULL || port == NULL)
		return;
	if (strcmp(action, "initialized") == 0) {
		if (json_integer_value(json_object_get(client,
		    "channel-type")) != 1)
			return;
		json_array_append_new(vm->spice_clients, json_pack(
		    "{s:s,s:s,s:I}", "host", host, "port", port, "since",
		    (json_int_t)time(NULL)));
		spice_via_linked_now(vm, host, port);
	} else if (strcmp(action, "disconnected") == 0) {
		json_array_foreach(vm->spice_clients, i, c) {
			if (strcmp(json_string_value(json_object_get(c,
			    "host")), host) == 0 && strcmp(json_string_value(
			    json_object_get(c, "port")), port) == 0) {
				json_array_remove(vm->spice_clients, i);
				break;
			}
		}
	}
	fields = json_pack("{s:s,s:s,s:s}", "action", action, "host", host,
	    "port", port);
	notify_emit("vm.spice", vm->def.name, fields);
	json_decref(fields);
}

static void
vm_ev_spice_connected(struct vm *vm, json_t *data)
{
	vm_ev_spice(vm, data, "connected");
}

static void
vm_ev_spice_initialized(struct vm *vm, json_t *data)
{
	vm_ev_spice(vm, data, "initialized");
}

static void
vm_ev_spice_disconnected(struct vm *vm, json_t *data)
{
	vm_ev_spice(vm, data, "disconnected");
}

/* Keep this list sorted: it is searched with bsearch. */
static const struct vm_qmp_event {
	const char	*name;
	void		(*fn)(struct vm *, json_t *);
} vm_qmp_events[] = {
	{ "BLOCK_IO_ERROR", vm_ev_block_io_error },
	{ "BLOCK_JOB_CANCELLED", vm_migrate_ev_job_done },
	{ "BLOCK_JOB_COMPLETED", vm_migrate_ev_job_done },
	{ "BLOCK_JOB_ERROR", vm_migrate_ev_job_done },
	{ "BLOCK_JOB_READY", vm_migrate_ev_job_ready },
	{ "DEVICE_DELETED", vm_nic_deleted },
	{ "GUEST_PANICKED", vm_ev_panicked },
	{ "MIGRATION", vm_migrate_ev_migration },
	{ "POWERDOWN", vm_ev_powerdown },
	{ "RESET", vm_ev_reset },
	{ "RESUME", vm_ev_resume },
	{ "SHUTDOWN", vm_ev_shutdown },
	{ "SPICE_CONNECTED", vm_ev_spice_connected },
	{ "SPICE_DISCONNECTED", vm_ev_spice_disconnected },
	{ "SPICE_INITIALIZED", vm_ev_spice_initialized },
	{ "SPICE_MIGRATE_COMPLETED", vm_migrate_ev_spice_done },
	{ "STOP", vm_ev_stop },
};

static int
vm_qmp_event_cmp(const void *key, const void *elem)
{
	return (strcmp(key, ((const struct vm_qmp_event *)elem)->name));
}

static void
vm_qmp_event(struct qmp *qmp, const char *name, json_t *data, double ts,
    void *arg)
{
	struct vm			*vm = arg;
	const struct vm_qmp_event	*e;

	if (vm->qmp != qmp)
		return;
	log_debug("%s: QMP event %s", vm->def.name, name);
	e = bsearch(name, vm_qmp_events, nitems(vm_qmp_events),
	    sizeof vm_qmp_events[0], vm_qmp_event_cmp);
	if (e != NULL)
		e->fn(vm, data);
}

static void
vm_qmp_free_later(evutil_socket_t fd, short events, void *arg)
{
	qmp_free(arg);
}

static void
vm_qmp_state(struct qmp *qmp, enum qmp_state state, const char *cause,
    void *arg)
{
	struct vm	*vm = arg;

	if (state == QMP_READY) {
		log_debug("%s: QMP ready", vm->def.name);
		return;
	}
	if (state != QMP_CLOSED)
		return;
	/* Freed from the loop: we are inside the qmp's own callback. */
	event_base_once(qmpd->base, -1, EV_TIMEOUT, vm_qmp_free_later, qmp,
	    &(struct timeval){ 0, 0 });
	if (vm->qmp != qmp)
		return;
	vm->qmp = NULL;
	if (vm->pidfd != -1) {
		/* QEMU is alive but its monitor is not: nothing can drive it. */
		log_warnx("%s: QMP connection lost (%s)", vm->def.name,
		    cause != NULL ? cause : "closed");
		/* Mid-start that is fatal; vm_exited says why from the log. */
		if (vm->state == VM_STARTING)
			kill(vm->pid, SIGKILL);
	}
}

static const struct qmp_callbacks vm_qmp_callbacks = {
	.state = vm_qmp_state,
	.event = vm_qmp_event,
};

/*
 * Attach a QMP connection. A fresh QEMU (-S) gets its SPICE secret and
 * then cont; a re-attached one is asked what it is doing.
 */
int
vm_qmp_attach(struct vm *vm, int fd, int fresh, char **cause)
{
	char	*secret;

	vm->qmp = qmp_create(qmpd->base, fd, &vm_qmp_callbacks, vm,
	    VM_QMP_TIMEOUT_MS);
	if (vm->qmp == NULL) {
		xasprintf(cause, "cannot set up QMP for %s", vm->def.name);
		return (-1);
	}
	if (!fresh) {
		spice_via_query(vm);
		/* An incoming half a restarted qmpd found: etcd decides. */
		if (vm->mig != NULL && vm->mig->incoming)
			vm_incoming_reattached(vm);
		else
			vm_qmp_query_status(vm);
		return (0);
	}
	if (strcmp(vm->def.display, "spice") == 0) {
		secret = vm_qmp_secret();
		qmp_execute(vm->qmp, "set_password", json_pack("{s:s,s:s}",
		    "protocol", "spice", "password", secret),
		    vm_qmp_password_done, vm);
		free(secret);
	}
	/* A migration target runs only at switchover (vm-incoming.c). */
	if (vm->mig != NULL && vm->mig->incoming) {
		vm_incoming_attached(vm);
		return (0);
	}
	/* Not before the nft rules list the VM's TAPs (vm-net.c). */
	if (!vm_net_cont_wait(vm))
		vm_qmp_cont(vm);
	return (0);
}
