/*
 * Live migration's failures (issue 14), on the source: a QMP step that
 * failed, the target's qmpd gone, --timeout. Each ends in
 * vm_migrate_fail: the desktop keeps running here, the target drops its
 * half, and the reason says why.
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

/* migrate.abort's answer: nothing to do but let go of the peer. */
static void
vm_migrate_abort_done(struct peer *p, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct vm	*vm = arg;

	if (errclass != NULL)
		log_warnx("%s: the target's abort: %s", vm->def.name, desc);
}

/*
 * cont for a source whose switchover failed. QEMU refuses it ("Migration
 * is not finalized yet") while its migration thread still finishes the
 * stream, which on a loaded host can outlast the target's qmpd: an
 * unanswered refusal left the guest stopped while vm show said running.
 * So it is retried every VM_MIG_RESUME_MS until QEMU takes it; a QEMU
 * that never does leaves the VM paused, saying why.
 */
#define VM_MIG_RESUME_MS	100
#define VM_MIG_RESUME_TRIES	100

struct mig_resume {
	char	*name;
	int	 left;
};

static void	vm_migrate_resume_send(struct mig_resume *);

static void
vm_migrate_resume_free(struct mig_resume *r)
{
	free(r->name);
	free(r);
}

static void
vm_migrate_resume_again(evutil_socket_t fd, short events, void *arg)
{
	vm_migrate_resume_send(arg);
}

static void
vm_migrate_resume_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct mig_resume	*r = arg;
	struct vm		*vm = vm_find(r->name);
	struct timeval		 tv = { 0, VM_MIG_RESUME_MS * 1000 };
	char			*why;

	/* Resumed; or gone, or a new migration has it now. */
	if (errclass == NULL || vm == NULL || vm->qmp != qmp ||
	    strcmp(errclass, "Disconnected") == 0 || vm_migrate_busy(vm)) {
		vm_migrate_resume_free(r);
		return;
	}
	if (--r->left > 0 && event_base_once(qmpd->base, -1, EV_TIMEOUT,
	    vm_migrate_resume_again, r, &tv) == 0) {
		log_debug("%s: cont after the failed migration: %s; again in "
		    "%d ms", r->name, desc, VM_MIG_RESUME_MS);
		return;
	}
	xasprintf(&why, "not resumed after the failed migration: QEMU "
	    "refused cont: %s", desc);
	log_warnx("%s: %s", r->name, why);
	vm_set_state(vm, VM_PAUSED, why);
	free(why);
	vm_migrate_resume_free(r);
}

static void
vm_migrate_resume_send(struct mig_resume *r)
{
	struct vm	*vm = vm_find(r->name);

	if (vm == NULL || vm->qmp == NULL || vm_migrate_busy(vm) ||
	    qmp_execute(vm->qmp, "cont", NULL, vm_migrate_resume_done,
	    r) != 0)
		vm_migrate_resume_free(r);
}

static void
vm_migrate_resume(struct vm *vm)
{
	struct mig_resume	*r = xcalloc(1, sizeof *r);

	r->name = xstrdup(vm->def.name);
	r->left = VM_MIG_RESUME_TRIES;
	vm_migrate_resume_send(r);
}

/*
 * A cluster source stopped for a failed switchover: resumed if placement
 * still names this host, else the target has the desktop and this copy
 * goes (never two running).
 */
static void
vm_migrate_resume_cb(const char *name, int mine, void *arg)
{
	struct vm	*vm;
	struct vm_mig	*m;
	char		*cause = NULL;
	done_cb		 done;

	if ((vm = vm_find(name)) == NULL || (m = vm->mig) == NULL)
		return;
	/* vm.migrate is answered now that etcd said where the desktop is. */
	done = m->done;
	m->done = NULL;
	if (mine) {
		if (vm->qmp != NULL)
			vm_migrate_resume(vm);
		done_fail(done, m->done_arg, ERR_STATE, "migration of %s to %s "
		    "failed: %s; it keeps running here", name, m->peer_addr,
		    m->reason);
		return;
	}
	log_warnx("%s: placement names another host after the failed "
	    "switchover: this copy goes", name);
	done_fail(done, m->done_arg, ERR_STATE, "migration of %s to %s: %s; "
	    "placement had moved to %s already, so the desktop is %s's (it "
	    "runs there once %s's qmpd finishes the switchover) and this "
	    "copy is killed", name, m->peer_addr, m->reason, m->peer_addr,
	    m->peer_addr, m->peer_addr);
	/* As after a switchover: its exit takes the record and leftovers. */
	m->state = VM_MIG_COMPLETED;
	if (vm_kill(vm, &cause) != 0) {
		log_warnx("%s: %s", name, cause);
		free(cause);
	}
}

/*
 * The migration failed or was cancelled: the desktop runs here. QEMU
 * resumes a source that was running by itself after a failed or
 * cancelled migrate; one stopped for a switchover the target refused is
 * resumed here. The target is told to drop its half of the VM.
 */
void
vm_migrate_fail(struct vm *vm, enum vm_mig_state s, const char *fmt, ...)
{
	struct vm_mig	*m = vm->mig;
	va_list		 ap;
	char		*why;
	enum vm_mig_state was = m->state;

	va_start(ap, fmt);
	if (vasprintf(&why, fmt, ap) < 0)
		why = xstrdup("migration failed");
	va_end(ap);
	if (m->reason == NULL)
		m->reason = why;
	else
		free(why);
	m->total_ms = vm_migrate_now_ms() - m->t0;
	evtimer_del(m->poll);
	evtimer_del(m->timer);
	vm_migrate_set(vm, s);
	log_warnx("%s: migration to %s %s: %s; the VM runs here",
	    vm->def.name, m->peer_addr, vm_migrate_state_name(s), m->reason);
	if (vm->qmp != NULL) {
		if (m->copy)
			qmp_execute(vm->qmp, "block-job-cancel",
			    json_pack("{s:s,s:b}", "device", VM_MIG_JOB,
			    "force", 1), NULL, NULL);
		if (was == VM_MIG_SWITCHOVER && qmpd->cluster != NULL)
			cluster_migrate_resume(vm->def.name,
			    vm_migrate_resume_cb, NULL);
		else if (was == VM_MIG_SWITCHOVER)
			vm_migrate_resume(vm);
	}
	if (m->peer != NULL && peer_call(m->peer, "migrate.abort",
	    json_pack("{s:s,s:s}", "name", vm->def.name, "reason", m->reason),
	    vm_migrate_abort_done, vm) != 0) {
		peer_free(m->peer);
		m->peer = NULL;
	}
	/* A stopped cluster source: answered once etcd says (above). */
	if (was == VM_MIG_SWITCHOVER && qmpd->cluster != NULL &&
	    vm->qmp != NULL)
		return;
	done_fail(m->done, m->done_arg, ERR_STATE, "migration of %s to %s %s: "
	    "%s; it keeps running here", vm->def.name, m->peer_addr,
	    vm_migrate_state_name(s), m->reason);
	m->done = NULL;
}

/* The connection to the target's qmpd is gone. */
void
vm_migrate_peer_closed(struct peer *p, const char *cause, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;

	if (m == NULL || m->peer != p)
		return;
	m->peer = NULL;
	peer_free(p);
	if (!vm_migrate_busy(vm))
		return;
	if (m->reason == NULL)
		xasprintf(&m->reason, "the target's qmpd went away (%s)",
		    cause != NULL ? cause : "closed");
	if (m->state == VM_MIG_ACTIVE && vm->qmp != NULL) {
		/* MIGRATION "cancelled" ends it, with this reason. */
		vm_migrate_cancel(vm);
		return;
	}
	if (m->state != VM_MIG_SWITCHOVER)
		vm_migrate_fail(vm, VM_MIG_FAILED, "%s", m->reason);
	/* At switchover migrate.finish answers (Disconnected) and decides. */
}

/*
 * The step now under way gets its own bound (secs; 0: none): preparing
 * and the mirror theirs (vm-migrate.h), RAM --timeout, so time spent
 * before RAM moves never counts against convergence.
 */
void
vm_migrate_timer_arm(struct vm *vm, int secs)
{
	struct timeval	tv = { secs, 0 };

	evtimer_del(vm->mig->timer);
	if (secs > 0)
		evtimer_add(vm->mig->timer, &tv);
}

/*
 * Cancel RAM migration: MIGRATION "cancelled" ends it, with the reason
 * set. A QEMU that has not ended it within VM_MIG_CANCEL_S (its channel
 * stuck on a stopped target, say) is not waited for: the migration
 * fails here, and the target's abort closes that channel.
 */
void
vm_migrate_cancel(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;

	if (vm->qmp == NULL || qmp_execute(vm->qmp, "migrate_cancel", NULL,
	    NULL, NULL) != 0) {
		vm_migrate_fail(vm, VM_MIG_CANCELLED, "%s", m->reason != NULL ?
		    m->reason : "cancelled");
		return;
	}
	m->cancelling = 1;
	vm_migrate_timer_arm(vm, VM_MIG_CANCEL_S);
}

/*
 * --timeout: a migration that has not converged is cancelled, not
 * switched to post-copy: after a post-copy switch the guest's memory is
 * split over two hosts, and losing the target would lose the desktop.
 * Before RAM moves the bounds are the steps' own: preparing, and a disk
 * copy that stopped moving.
 */
void
vm_migrate_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;

	if (m == NULL || (m->state != VM_MIG_ACTIVE &&
	    m->state != VM_MIG_MIRRORING && m->state != VM_MIG_PREPARING))
		return;
	/* The target was asked why the stream failed: QEMU's words do. */
	if (m->asking) {
		vm_migrate_why(vm, NULL);
		return;
	}
	if (m->cancelling) {
		log_warnx("%s: QEMU did not end the cancelled migration within "
		    "%d s", vm->def.name, VM_MIG_CANCEL_S);
		vm_migrate_fail(vm, VM_MIG_CANCELLED, "%s", m->reason != NULL ?
		    m->reason : "cancelled");
		return;
	}
	free(m->reason);
	if (m->state == VM_MIG_ACTIVE)
		xasprintf(&m->reason, "did not converge within %d s of RAM "
		    "migration (%llu MiB of %llu MiB still dirty, downtime "
		    "limit %d ms): cancelled, not switched to post-copy (a "
		    "post-copy desktop is lost with its target)", m->timeout,
		    m->ram_remaining >> 20, m->ram_total >> 20,
		    m->downtime_limit);
	else if (m->state == VM_MIG_MIRRORING)
		xasprintf(&m->reason, "the disk copy made no progress for %d s "
		    "(%llu MiB of %llu MiB copied): cancelled", VM_MIG_STALL_S,
		    m->disk_bytes >> 20, m->disk_total >> 20);
	else
		xasprintf(&m->reason, "preparing the target did not finish "
		    "within %d s: cancelled", VM_MIG_PREPARE_S);
	if (m->state == VM_MIG_ACTIVE) {
		vm_migrate_cancel(vm);	/* MIGRATION "cancelled" follows */
		return;
	}
	vm_migrate_fail(vm, VM_MIG_CANCELLED, "%s", m->reason);
}

/* A QMP step of the source that must succeed: else the migration fails. */
void
vm_migrate_step_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;

	if (errclass == NULL || vm->mig == NULL || !vm_migrate_busy(vm))
		return;
	vm_migrate_fail(vm, VM_MIG_FAILED, "QEMU: %s", errdesc);
}
