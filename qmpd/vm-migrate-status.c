/*
 * Live migration's status (issue 14): the clocks its figures are taken
 * on, the state as vm show and qdesk events see it, and the progress
 * polled from query-migrate and query-block-jobs.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "cluster.h"
#include "log.h"
#include "peer.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "vm-migrate.h"
#include "xmalloc.h"

static const char *vm_mig_state_names[] = {
	[VM_MIG_PREPARING] = "preparing",
	[VM_MIG_MIRRORING] = "mirroring",
	[VM_MIG_ACTIVE] = "active",
	[VM_MIG_SWITCHOVER] = "switchover",
	[VM_MIG_COMPLETED] = "completed",
	[VM_MIG_FAILED] = "failed",
	[VM_MIG_CANCELLED] = "cancelled",
};

/* Monotonic for spans, realtime across hosts (common/clock.c). */
long long
vm_migrate_now_ms(void)
{
	return (clock_mono_ms());
}

long long
vm_migrate_wall_ms(void)
{
	return (clock_wall_ms());
}

/* STOP on the source mid-migration: the guest's downtime starts now. */
void
vm_migrate_stopped(struct vm *vm)
{
	if (!vm->mig->incoming && vm->mig->stopped_at == 0)
		vm->mig->stopped_at = vm_migrate_wall_ms();
}

/*
 * The guest's downtime: from the source's STOP to the target's cont, by
 * the two hosts' clocks (one clock on one machine); without both, QEMU's
 * own figure plus the target's resume.
 */
long long
vm_migrate_downtime(const struct vm_mig *m)
{
	if (m->stopped_at > 0 && m->resumed_at >= m->stopped_at)
		return (m->resumed_at - m->stopped_at);
	return (m->qemu_downtime_ms + m->resume_ms);
}

const char *
vm_migrate_state_name(enum vm_mig_state s)
{
	return (vm_mig_state_names[s]);
}

/* Is a migration of vm under way (either side)? */
int
vm_migrate_busy(const struct vm *vm)
{
	return (vm->mig != NULL && vm->mig->state <= VM_MIG_SWITCHOVER);
}

void
vm_migrate_free(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;

	if (m == NULL)
		return;
	/* A target's half going: why, for a source that asks. */
	vm_incoming_ended(vm);
	if (m->status != NULL)
		done_fail(m->status, m->status_arg, ERR_STATE, "VM %s: its "
		    "migration here is over", vm->def.name);
	vm->mig = NULL;
	if (m->poll != NULL)
		event_free(m->poll);
	if (m->timer != NULL)
		event_free(m->timer);
	peer_free(m->peer);
	json_decref(m->target);
	free(m->peer_addr);
	free(m->reason);
	free(m->disk);
	free(m->image);
	free(m->pins);
	free(m->qemu_error);
	free(m);
}

/* The "migration" object of vm show: during a migration and after it. */
void
vm_migrate_json(const struct vm *vm, json_t *j)
{
	const struct vm_mig	*m = vm->mig;
	long long		 total;

	if (m == NULL) {
		json_object_set_new(j, "migration", json_null());
		return;
	}
	total = m->state <= VM_MIG_SWITCHOVER ? vm_migrate_now_ms() - m->t0 :
	    m->total_ms;
	json_object_set_new(j, "migration", json_pack("{s:s,s:s,s:s,s:s,s:b,s:i,"
	    "s:I,s:I,s:i,s:I,s:I,s:I,s:I,s:I,s:s?}",
	    "state", vm_migrate_state_name(m->state),
	    "role", m->incoming ? "target" : "source",
	    m->incoming ? "from" : "to", m->peer_addr != NULL ? m->peer_addr :
	    "",
	    "storage", m->copy ? "copy" : "shared",
	    "tls", m->tls,
	    "progress", m->progress,
	    "downtime_ms", (json_int_t)m->downtime_ms,
	    "downtime_limit_ms", (json_int_t)m->downtime_limit,
	    "bandwidth_mib", m->bandwidth,
	    "qemu_downtime_ms", (json_int_t)m->qemu_downtime_ms,
	    "total_ms", (json_int_t)total,
	    "ram_mb", (json_int_t)(m->ram_bytes >> 20),
	    "disk_mb", (json_int_t)(m->disk_bytes >> 20),
	    "disk_ms", (json_int_t)m->disk_ms,
	    "reason", m->reason));
}

/* Tell who listens (qdesk events) where the migration is. */
void
vm_migrate_set(struct vm *vm, enum vm_mig_state s)
{
	json_t	*f;

	vm->mig->state = s;
	log_info("%s: migration %s", vm->def.name, vm_migrate_state_name(s));
	f = json_pack("{s:s,s:i}", "state", vm_migrate_state_name(s),
	    "progress", vm->mig->progress);
	notify_emit("vm.migration", vm->def.name, f);
	json_decref(f);
	vm_migrate_report(vm);
}

/* The client waiting for vm.migrate hears where it is (it is alive). */
void
vm_migrate_report(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;

	if (m->incoming || m->report == NULL || m->done == NULL ||
	    !vm_migrate_busy(vm))
		return;
	m->report(m->done_arg, json_pack("{s:s,s:i,s:i}", "what",
	    vm_migrate_state_name(m->state), "done", m->progress, "total",
	    100));
}

void
vm_migrate_poll_arm(struct vm *vm)
{
	struct timeval	tv = { 0, VM_MIG_POLL_MS * 1000 };

	evtimer_add(vm->mig->poll, &tv);
}

/* query-migrate: RAM sent, left, and the progress in percent. */
void
vm_migrate_info(struct vm_mig *m, json_t *ret)
{
	json_t			*ram = json_object_get(ret, "ram");
	unsigned long long	 total, rem;
	int			 pct;

	if (ram == NULL)
		return;
	m->ram_bytes = json_integer_value(json_object_get(ram,
	    "transferred"));
	total = json_integer_value(json_object_get(ram, "total"));
	rem = json_integer_value(json_object_get(ram, "remaining"));
	m->ram_total = total;
	m->ram_remaining = rem;
	pct = total > 0 && rem <= total ? (int)((total - rem) * 100 / total) :
	    0;
	if (m->copy)
		pct = 50 + pct / 2;
	if (pct > m->progress && pct < 100)
		m->progress = pct;
}

static void
vm_migrate_poll_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;
	json_t		*job;
	size_t		 i;
	int		 progressed = 0;

	if (m == NULL || vm->qmp != qmp || !vm_migrate_busy(vm))
		return;
	if (errclass == NULL && m->state == VM_MIG_ACTIVE)
		vm_migrate_info(m, ret);
	else if (errclass == NULL && m->state == VM_MIG_MIRRORING) {
		json_array_foreach(ret, i, job) {
			if (strcmp(json_string_value(json_object_get(job,
			    "device")), VM_MIG_JOB) != 0)
				continue;
			/* A copy that moves is not stalled. */
			if ((unsigned long long)json_integer_value(
			    json_object_get(job, "offset")) > m->disk_bytes) {
				vm_migrate_timer_arm(vm, VM_MIG_STALL_S);
				progressed = 1;
			}
			m->disk_bytes = json_integer_value(json_object_get(job,
			    "offset"));
			m->disk_total = json_integer_value(json_object_get(job,
			    "len"));
			if (m->disk_total > 0)
				m->progress = (int)(m->disk_bytes * 50 /
				    m->disk_total);
		}
		if (progressed)
			vm_migrate_report(vm);
	}
	vm_migrate_poll_arm(vm);
}

void
vm_migrate_poll_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;

	if (vm->qmp == NULL || !vm_migrate_busy(vm))
		return;
	if (vm->mig->state == VM_MIG_ACTIVE)
		qmp_execute(vm->qmp, "query-migrate", NULL,
		    vm_migrate_poll_done, vm);
	else if (vm->mig->state == VM_MIG_MIRRORING)
		qmp_execute(vm->qmp, "query-block-jobs", NULL,
		    vm_migrate_poll_done, vm);
	else
		vm_migrate_poll_arm(vm);
}
