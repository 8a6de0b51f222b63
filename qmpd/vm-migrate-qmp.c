/*
 * Live migration's QMP sequence on the source (issue 14): capabilities,
 * parameters, SPICE's client_migrate_info and migrate; then the
 * MIGRATION events up to the switchover, migrate.finish on the target,
 * and the source's QEMU going away once the target runs the desktop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cluster.h"
#include "log.h"
#include "peer.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "vm-migrate.h"
#include "xmalloc.h"

/*
 * Bytes/s for RAM and the disk copy: --bandwidth keeps a migration from
 * filling the office's link (or, in a test, makes RAM take seconds);
 * without it, no cap worth the name.
 */
json_int_t
vm_migrate_bandwidth(struct vm_mig *m)
{
	return (m->bandwidth > 0 ? (json_int_t)m->bandwidth << 20 :
	    (json_int_t)VM_MIG_BANDWIDTH);
}

/*
 * After the mirror is READY (or without copy): RAM, over TLS when the
 * target asked for it (vm_migrate_tls_peer set it up at prepare).
 */
void
vm_migrate_ram(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;
	json_t		*spice, *caps, *host;
	const char	*uri, *ticket;
	char		*via;

	uri = json_string_value(json_object_get(m->target, "uri"));
	spice = json_object_get(m->target, "spice");
	/*
	 * A connected viewer follows the desktop (seamless migration). One
	 * linked through the broker's proxy CONNECTs the same proxy with
	 * this hostname: its ticket, marked, which the proxy sends to the
	 * target while the ticket's tunnel to us is open (broker/proxy.c).
	 */
	if (json_is_object(spice)) {
		if ((ticket = spice_via_ticket(vm)) != NULL) {
			xasprintf(&via, "%s%s", SPICE_VIA_MIGRATE, ticket);
			host = json_string(via);
			free(via);
		} else
			host = json_incref(json_object_get(spice, "host"));
		/* port 0: no plain port (absent, QEMU sends 65535 and
		 * spice-gtk tries it, fails, and abandons the seamless way). */
		m->spice_follow = 1;
		qmp_execute(vm->qmp, "client_migrate_info", json_pack(
		    "{s:s,s:o,s:i,s:O,s:O}", "protocol", "spice", "hostname",
		    host, "port", 0, "tls-port",
		    json_object_get(spice, "tls-port"), "cert-subject",
		    json_object_get(spice, "subject")), NULL, NULL);
	}
	caps = json_pack("[{s:s,s:b}]", "capability", "events", "state", 1);
	/* With copy, the mirror completes while the source is stopped. */
	json_array_append_new(caps, json_pack("{s:s,s:b}", "capability",
	    "pause-before-switchover", "state", m->copy));
	qmp_execute(vm->qmp, "migrate-set-capabilities", json_pack("{s:o}",
	    "capabilities", caps), vm_migrate_step_done, vm);
	qmp_execute(vm->qmp, "migrate-set-parameters", json_pack("{s:i,s:I}",
	    "downtime-limit", m->downtime_limit, "max-bandwidth",
	    vm_migrate_bandwidth(m)), vm_migrate_step_done, vm);
	qmp_execute(vm->qmp, "migrate", json_pack("{s:s}", "uri", uri),
	    vm_migrate_step_done, vm);
	/* --timeout is for convergence: it counts from here. */
	vm_migrate_timer_arm(vm, m->timeout);
	vm_migrate_set(vm, VM_MIG_ACTIVE);
}

/* The source's QEMU is gone after a completed migration: so is the VM. */
static void
vm_migrate_quit_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;

	log_warnx("%s: the migrated source did not quit, killing it",
	    vm->def.name);
	vm_pidfd_signal(vm, SIGKILL);
}

/* Quit the migrated source; SIGKILL if it has not gone in a while. */
static void
vm_migrate_quit(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;
	struct timeval	 tv = { VM_MIG_QUIT_MS / 1000, 0 };

	if (vm->qmp == NULL || qmp_execute(vm->qmp, "quit", NULL, NULL,
	    NULL) != 0)
		vm_pidfd_signal(vm, SIGKILL);
	evtimer_del(m->timer);
	evtimer_assign(m->timer, qmpd->base, vm_migrate_quit_cb, vm);
	evtimer_add(m->timer, &tv);
}

/* The viewers did not say they switched in time: quit all the same. */
static void
vm_migrate_spice_late_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;

	log_warnx("%s: no SPICE_MIGRATE_COMPLETED within %d ms of the "
	    "switchover: quitting the source, its viewers may lose the "
	    "desktop", vm->def.name, VM_MIG_SPICE_MS);
	vm_migrate_quit(vm);
}

/* migrate.finish: did the target take over? */
static void
vm_migrate_finish_done(struct peer *p, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;
	struct timeval	 tv = { VM_MIG_QUIT_MS / 1000, 0 };

	if (m == NULL || m->state != VM_MIG_SWITCHOVER)
		return;
	if (errclass != NULL) {
		/*
		 * Disconnected: the target's qmpd went away at the very end.
		 * Its QEMU is paused until someone runs it; resuming here
		 * keeps exactly one copy running.
		 */
		vm_migrate_fail(vm, VM_MIG_FAILED, "the target did not take "
		    "over: %s", desc != NULL ? desc : errclass);
		return;
	}
	m->resume_ms = json_integer_value(json_object_get(ret, "resume_ms"));
	m->resumed_at = json_integer_value(json_object_get(ret, "resumed_at"));
	m->downtime_ms = vm_migrate_downtime(m);
	m->total_ms = vm_migrate_now_ms() - m->t0;
	m->progress = 100;
	vm_migrate_set(vm, VM_MIG_COMPLETED);
	log_info("%s: migrated to %s in %lld ms, downtime %lld ms (QEMU %lld, "
	    "resume %lld), %llu MiB RAM, %llu MiB disk", vm->def.name,
	    m->peer_addr, m->total_ms, m->downtime_ms, m->qemu_downtime_ms,
	    m->resume_ms, m->ram_bytes >> 20, m->disk_bytes >> 20);
	/* The copy here stops; its exit (vm_migrate_exited) ends the VM. */
	vm->stop_asked = 2;
	evtimer_del(m->poll);
	evtimer_del(m->timer);
	/*
	 * A viewer that follows the desktop switches to the target over
	 * the channels it opened there at MIGRATE_BEGIN once spice-server
	 * here says MIGRATE_END; QEMU says SPICE_MIGRATE_COMPLETED when it
	 * has. Quitting before that closes what the viewer still reads
	 * (remote-viewer then exits: CI at load, 75), so this QEMU waits
	 * for it, VM_MIG_SPICE_MS at most.
	 */
	if (m->spice_follow && !m->spice_done && vm->qmp != NULL &&
	    json_array_size(vm->spice_clients) > 0) {
		tv.tv_sec = VM_MIG_SPICE_MS / 1000;
		evtimer_assign(m->timer, qmpd->base, vm_migrate_spice_late_cb,
		    vm);
		evtimer_add(m->timer, &tv);
		return;
	}
	vm_migrate_quit(vm);
}

/* SPICE_MIGRATE_COMPLETED: the viewers are on the target now. */
void
vm_migrate_ev_spice_done(struct vm *vm, json_t *data)
{
	struct vm_mig	*m = vm->mig;

	if (m == NULL || m->incoming)
		return;
	m->spice_done = 1;
	if (m->state == VM_MIG_COMPLETED && vm->stop_asked == 2 &&
	    evtimer_pending(m->timer, NULL) &&
	    event_get_callback(m->timer) == vm_migrate_spice_late_cb) {
		log_info("%s: the viewers switched to %s", vm->def.name,
		    m->peer_addr);
		vm_migrate_quit(vm);
	}
}

/* query-migrate once "completed": QEMU's own figures, then finish. */
static void
vm_migrate_completed_info(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;

	if (m == NULL || m->state != VM_MIG_SWITCHOVER)
		return;
	if (errclass == NULL) {
		vm_migrate_info(m, ret);
		m->qemu_downtime_ms = json_integer_value(json_object_get(ret,
		    "downtime"));
	}
	if (m->peer == NULL || peer_call(m->peer, "migrate.finish", json_pack(
	    "{s:s,s:{s:I,s:I,s:I,s:I,s:I,s:I}}", "name", vm->def.name, "source",
	    "total_ms", (json_int_t)(vm_migrate_now_ms() - m->t0),
	    "qemu_downtime_ms", (json_int_t)m->qemu_downtime_ms, "ram_bytes",
	    (json_int_t)m->ram_bytes, "disk_bytes", (json_int_t)m->disk_bytes,
	    "downtime_limit", (json_int_t)m->downtime_limit, "stopped_at",
	    (json_int_t)m->stopped_at),
	    vm_migrate_finish_done, vm) != 0)
		vm_migrate_fail(vm, VM_MIG_FAILED, "the target's qmpd went "
		    "away at switchover");
}

/*
 * The target's answer to migrate.status: the source's QEMU only saw its
 * stream cut, the target's says why it could not load it. NULL (no
 * answer in VM_MIG_WHY_S, or none to give): QEMU's own words here.
 */
void
vm_migrate_why(struct vm *vm, const char *load_error)
{
	struct vm_mig	*m = vm->mig;

	m->asking = 0;
	if (load_error != NULL)
		vm_migrate_fail(vm, VM_MIG_FAILED, "target %s could not load "
		    "the stream: %s", m->peer_addr, load_error);
	else
		vm_migrate_fail(vm, VM_MIG_FAILED, "QEMU: %s", m->qemu_error);
}

static void
vm_migrate_why_done(struct peer *p, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;
	const char	*reason, *prefix = "could not load the stream: ";

	if (m == NULL || !m->asking || !vm_migrate_busy(vm))
		return;
	reason = json_string_value(json_object_get(ret, "reason"));
	if (errclass != NULL || reason == NULL ||
	    !json_is_true(json_object_get(ret, "load_failed"))) {
		if (errclass != NULL)
			log_debug("%s: migrate.status: %s", vm->def.name, desc);
		vm_migrate_why(vm, NULL);
		return;
	}
	if (strncmp(reason, prefix, strlen(prefix)) == 0)
		reason += strlen(prefix);
	vm_migrate_why(vm, reason);
}

/*
 * query-migrate after "failed": QEMU's own words, and the target asked
 * why (a stream the target could not load shows here only as cut).
 */
static void
vm_migrate_failed_info(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;
	const char	*desc;

	if (m == NULL || !vm_migrate_busy(vm) || m->asking)
		return;
	desc = errclass == NULL ? json_string_value(json_object_get(ret,
	    "error-desc")) : NULL;
	free(m->qemu_error);
	m->qemu_error = xstrdup(desc != NULL ? desc :
	    "the migration stream failed");
	if (m->peer != NULL && peer_call(m->peer, "migrate.status",
	    json_pack("{s:s}", "name", vm->def.name), vm_migrate_why_done,
	    vm) == 0) {
		m->asking = 1;
		vm_migrate_timer_arm(vm, VM_MIG_WHY_S);
		return;
	}
	vm_migrate_fail(vm, VM_MIG_FAILED, "QEMU: %s", m->qemu_error);
}

/* MIGRATION: the status of the migration, on either side. */
void
vm_migrate_ev_migration(struct vm *vm, json_t *data)
{
	struct vm_mig	*m = vm->mig;
	const char	*st = json_string_value(json_object_get(data, "status"));

	if (m == NULL || st == NULL || !vm_migrate_busy(vm))
		return;
	log_debug("%s: MIGRATION %s", vm->def.name, st);
	if (m->incoming) {
		if (strcmp(st, "completed") == 0)
			vm_incoming_completed(vm);
		else if (strcmp(st, "failed") == 0) {
			/* Its QEMU's own words follow in qemu.log, at exit. */
			m->load_failed = 1;
			if (m->reason == NULL)
				m->reason = xstrdup("the incoming stream "
				    "failed");
		} else if (strcmp(st, "active") == 0)
			vm_incoming_streaming(vm);
		return;
	}
	if (strcmp(st, "pre-switchover") == 0) {
		/* The source is stopped: the mirror is complete, end it. */
		vm_migrate_set(vm, VM_MIG_SWITCHOVER);
		qmp_execute(vm->qmp, "block-job-cancel", json_pack("{s:s}",
		    "device", VM_MIG_JOB), vm_migrate_step_done, vm);
	} else if (strcmp(st, "completed") == 0) {
		if (m->state != VM_MIG_SWITCHOVER)
			vm_migrate_set(vm, VM_MIG_SWITCHOVER);
		qmp_execute(vm->qmp, "query-migrate", NULL,
		    vm_migrate_completed_info, vm);
	} else if (strcmp(st, "failed") == 0)
		qmp_execute(vm->qmp, "query-migrate", NULL,
		    vm_migrate_failed_info, vm);
	else if (strcmp(st, "cancelled") == 0)
		vm_migrate_fail(vm, VM_MIG_CANCELLED, "%s", m->reason != NULL ?
		    m->reason : "cancelled");
}

/*
 * A QEMU with a migration record exited. Returns 1 when the VM went with
 * it: a source that migrated away (its record and leftovers here go), or
 * a target that never took over (its half of the VM is discarded).
 */
int
vm_migrate_exited(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;
	char		*cause = NULL, *why, *disk = NULL, *lines;
	json_t		*res;
	done_cb		 done;
	void		*arg;

	if (!m->incoming && m->state == VM_MIG_COMPLETED) {
		done = m->done;
		arg = m->done_arg;
		m->done = NULL;
		res = json_pack("{s:s,s:s}", "name", vm->def.name, "host",
		    m->peer_addr);
		vm_migrate_json(vm, res);
		xasprintf(&why, "migrated to %s", m->peer_addr);
		if (qmpd->cluster != NULL)
			cluster_desktop_moved(vm->def.name, m->peer_addr);
		vm_set_state(vm, VM_STOPPED, why);
		notify_emit("vm.migrated", vm->def.name,
		    json_object_get(res, "migration"));
		free(why);
		if (vm_delete(vm, &cause) != 0) {
			log_warnx("migrated VM: %s", cause);
			free(cause);
		}
		done_ok(done, arg, res);
		return (1);
	}
	if (!m->incoming && vm_migrate_busy(vm)) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "the source's QEMU exited "
		    "during the migration");
		return (0);
	}
	if (!m->incoming || m->state == VM_MIG_COMPLETED)
		return (0);
	/* A target that never ran: its half of the VM goes. */
	if (m->load_failed && (lines = vm_incoming_qemu_lines(vm)) != NULL) {
		free(m->reason);
		xasprintf(&m->reason, "could not load the stream: %s", lines);
		free(lines);
	}
	xasprintf(&why, "incoming migration ended: %s", m->reason != NULL ?
	    m->reason : "its QEMU exited");
	log_warnx("%s: %s", vm->def.name, why);
	done_fail(m->done, m->done_arg, ERR_QEMU, "%s", why);
	m->done = NULL;
	done_fail(m->finish, m->finish_arg, ERR_STATE, "%s", why);
	m->finish = NULL;
	m->state = VM_MIG_FAILED;
	vm_set_state(vm, VM_STOPPED, why);
	free(why);
	if (m->disk != NULL)
		disk = xstrdup(m->disk);
	vm_incoming_unnote(vm->def.name);
	if (vm_delete(vm, &cause) != 0) {
		log_warnx("incoming VM: %s", cause);
		free(cause);
	}
	if (disk != NULL && unlink(disk) == -1 && errno != ENOENT)
		log_warn("unlink %s", disk);
	free(disk);
	return (1);
}
