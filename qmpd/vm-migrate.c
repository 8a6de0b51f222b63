/*
 * Live migration, the source's side (issue 14): a state machine over QMP
 * and one peer connection to the target's qmpd, never a blocking wait.
 *
 *   PREPARING   the target's qmpd starts the same VM with -incoming defer
 *   MIRRORING   --storage copy: blockdev-mirror (write-blocking) of disk0
 *               to the target's writable NBD export, until BLOCK_JOB_READY
 *   ACTIVE      migrate-set-capabilities, migrate-set-parameters
 *               (downtime-limit), client_migrate_info for SPICE, migrate;
 *               MIGRATION events, and query-migrate for progress
 *   SWITCHOVER  the source is stopped (with copy, the mirror completes at
 *               pre-switchover); the target takes over on its own
 *               "completed" (vm-incoming.c), migrate.finish says how
 *   COMPLETED   the source's QEMU quits, its record and leftovers go
 *   FAILED, CANCELLED
 *               the desktop keeps running here, and the reason says why
 *
 * The stream is QEMU to QEMU over TCP: plain, on the pair's own addresses
 * (loopback for two qmpds on one machine).
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
#include "xmalloc.h"

#define VM_MIG_POLL_MS		250
#define VM_MIG_DOWNTIME_MS	100	/* Proxmox's start; QEMU's own is 300 */
#define VM_MIG_TIMEOUT		300	/* seconds */
#define VM_MIG_BANDWIDTH	(4ULL << 30)	/* bytes/s: QEMU's 32 MiB/s
						   default would crawl */
#define VM_MIG_QUIT_MS		5000	/* after quit, SIGKILL */
#define VM_MIG_JOB		"mig-disk0"
#define VM_MIG_NBD_NODE		"mig-nbd0"

static const char *vm_mig_state_names[] = {
	[VM_MIG_PREPARING] = "preparing",
	[VM_MIG_MIRRORING] = "mirroring",
	[VM_MIG_ACTIVE] = "active",
	[VM_MIG_SWITCHOVER] = "switchover",
	[VM_MIG_COMPLETED] = "completed",
	[VM_MIG_FAILED] = "failed",
	[VM_MIG_CANCELLED] = "cancelled",
};

static void	vm_migrate_ram(struct vm *);
static void	vm_migrate_fail(struct vm *, enum vm_mig_state, const char *,
		    ...) __attribute__((format(printf, 3, 4)));

/* Milliseconds on a clock: monotonic for spans, realtime across hosts. */
static long long
vm_migrate_clock_ms(clockid_t id)
{
	struct timespec	ts;

	clock_gettime(id, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

long long
vm_migrate_now_ms(void)
{
	return (vm_migrate_clock_ms(CLOCK_MONOTONIC));
}

long long
vm_migrate_wall_ms(void)
{
	return (vm_migrate_clock_ms(CLOCK_REALTIME));
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
	    "s:I,s:I,s:I,s:I,s:I,s:I,s:s?}",
	    "state", vm_mig_state_names[m->state],
	    "role", m->incoming ? "target" : "source",
	    m->incoming ? "from" : "to", m->peer_addr != NULL ? m->peer_addr :
	    "",
	    "storage", m->copy ? "copy" : "shared",
	    "tls", m->tls,
	    "progress", m->progress,
	    "downtime_ms", (json_int_t)m->downtime_ms,
	    "downtime_limit_ms", (json_int_t)m->downtime_limit,
	    "qemu_downtime_ms", (json_int_t)m->qemu_downtime_ms,
	    "total_ms", (json_int_t)total,
	    "ram_mb", (json_int_t)(m->ram_bytes >> 20),
	    "disk_mb", (json_int_t)(m->disk_bytes >> 20),
	    "reason", m->reason));
}

/* Tell who listens (qdesk events) where the migration is. */
static void
vm_migrate_set(struct vm *vm, enum vm_mig_state s)
{
	json_t	*f;

	vm->mig->state = s;
	log_info("%s: migration %s", vm->def.name, vm_mig_state_names[s]);
	f = json_pack("{s:s,s:i}", "state", vm_mig_state_names[s],
	    "progress", vm->mig->progress);
	notify_emit("vm.migration", vm->def.name, f);
	json_decref(f);
}

/*
 * What a definition needs to move. Host-local parts are rebuilt by the
 * target (SPICE port and certificate, fds); what is not moved yet is
 * refused here with the reason rather than lost on the way.
 */
int
vm_migrate_check(const struct vm_def *def, int copy, char **cause)
{
	if (def->nnics > 0) {
		xasprintf(cause, "VM %s has NICs: moving TAPs and leases to "
		    "another host is not done yet", def->name);
		return (-1);
	}
	if (def->tpm) {
		xasprintf(cause, "VM %s has a TPM: its swtpm state does not "
		    "migrate yet", def->name);
		return (-1);
	}
	if (strcmp(def->firmware, "bios") != 0 && def->firmware[0] != '\0') {
		xasprintf(cause, "VM %s boots UEFI: its NVRAM file does not "
		    "migrate yet", def->name);
		return (-1);
	}
	if (def->image != NULL) {
		xasprintf(cause, "VM %s runs on the image store (%s): the "
		    "target needs its template first (the cluster's template "
		    "copy); only --disk files migrate yet", def->name,
		    def->image);
		return (-1);
	}
	if (copy && def->disk == NULL) {
		xasprintf(cause, "VM %s has no disk to copy: use --storage "
		    "shared", def->name);
		return (-1);
	}
	return (0);
}

static void
vm_migrate_poll_arm(struct vm *vm)
{
	struct timeval	tv = { 0, VM_MIG_POLL_MS * 1000 };

	evtimer_add(vm->mig->poll, &tv);
}

/* query-migrate: RAM sent, left, and the progress in percent. */
static void
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

	if (m == NULL || vm->qmp != qmp || !vm_migrate_busy(vm))
		return;
	if (errclass == NULL && m->state == VM_MIG_ACTIVE)
		vm_migrate_info(m, ret);
	else if (errclass == NULL && m->state == VM_MIG_MIRRORING) {
		json_array_foreach(ret, i, job) {
			if (strcmp(json_string_value(json_object_get(job,
			    "device")), VM_MIG_JOB) != 0)
				continue;
			m->disk_bytes = json_integer_value(json_object_get(job,
			    "offset"));
			m->disk_total = json_integer_value(json_object_get(job,
			    "len"));
			if (m->disk_total > 0)
				m->progress = (int)(m->disk_bytes * 50 /
				    m->disk_total);
		}
	}
	vm_migrate_poll_arm(vm);
}

static void
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
 * A cluster source stopped for a failed switchover: resumed if placement
 * still names this host, else the target has the desktop and this copy
 * goes (never two running).
 */
static void
vm_migrate_resume_cb(const char *name, int mine, void *arg)
{
	struct vm	*vm;
	char		*cause = NULL;

	if ((vm = vm_find(name)) == NULL || vm->qmp == NULL)
		return;
	if (mine) {
		qmp_execute(vm->qmp, "cont", NULL, NULL, NULL);
		return;
	}
	log_warnx("%s: placement names another host after the failed "
	    "switchover: this copy goes", name);
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
static void
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
	    vm->def.name, m->peer_addr, vm_mig_state_names[s], m->reason);
	if (vm->qmp != NULL) {
		if (m->copy)
			qmp_execute(vm->qmp, "block-job-cancel",
			    json_pack("{s:s,s:b}", "device", VM_MIG_JOB,
			    "force", 1), NULL, NULL);
		if (was == VM_MIG_SWITCHOVER && qmpd->cluster != NULL)
			cluster_migrate_resume(vm->def.name,
			    vm_migrate_resume_cb, NULL);
		else if (was == VM_MIG_SWITCHOVER)
			qmp_execute(vm->qmp, "cont", NULL, NULL, NULL);
	}
	if (m->peer != NULL && peer_call(m->peer, "migrate.abort",
	    json_pack("{s:s,s:s}", "name", vm->def.name, "reason", m->reason),
	    vm_migrate_abort_done, vm) != 0) {
		peer_free(m->peer);
		m->peer = NULL;
	}
	done_fail(m->done, m->done_arg, ERR_STATE, "migration of %s to %s %s: "
	    "%s; it keeps running here", vm->def.name, m->peer_addr,
	    vm_mig_state_names[s], m->reason);
	m->done = NULL;
}

/* The connection to the target's qmpd is gone. */
static void
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
		qmp_execute(vm->qmp, "migrate_cancel", NULL, NULL, NULL);
		return;
	}
	if (m->state != VM_MIG_SWITCHOVER)
		vm_migrate_fail(vm, VM_MIG_FAILED, "%s", m->reason);
	/* At switchover migrate.finish answers (Disconnected) and decides. */
}

/*
 * --timeout: a migration that has not converged is cancelled, not
 * switched to post-copy: after a post-copy switch the guest's memory is
 * split over two hosts, and losing the target would lose the desktop.
 */
static void
vm_migrate_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;

	if (m == NULL || (m->state != VM_MIG_ACTIVE &&
	    m->state != VM_MIG_MIRRORING && m->state != VM_MIG_PREPARING))
		return;
	free(m->reason);
	if (m->state == VM_MIG_ACTIVE)
		xasprintf(&m->reason, "did not converge within %d s (%llu MiB "
		    "of %llu MiB still dirty, downtime limit %d ms): cancelled, "
		    "not switched to post-copy (a post-copy desktop is lost "
		    "with its target)", m->timeout, m->ram_remaining >> 20,
		    m->ram_total >> 20, m->downtime_limit);
	else
		xasprintf(&m->reason, "%s did not finish within %d s: "
		    "cancelled", m->state == VM_MIG_MIRRORING ? "the disk copy"
		    : "preparing the target", m->timeout);
	if (m->state == VM_MIG_ACTIVE && vm->qmp != NULL &&
	    qmp_execute(vm->qmp, "migrate_cancel", NULL, NULL, NULL) == 0)
		return;		/* MIGRATION "cancelled" follows */
	vm_migrate_fail(vm, VM_MIG_CANCELLED, "%s", m->reason);
}

/* A QMP step of the source that must succeed: else the migration fails. */
static void
vm_migrate_step_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;

	if (errclass == NULL || vm->mig == NULL || !vm_migrate_busy(vm))
		return;
	vm_migrate_fail(vm, VM_MIG_FAILED, "QEMU: %s", errdesc);
}

/* After the mirror is READY (or without copy): RAM. */
static void
vm_migrate_ram(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;
	json_t		*spice, *caps;
	const char	*uri;
	char		*host, *colon, *cause = NULL;
	int		 rv = 1;

	uri = json_string_value(json_object_get(m->target, "uri"));
	/* The target listens for TLS: our certificate, and check its own. */
	if (json_is_true(json_object_get(m->target, "tls"))) {
		host = xstrdup(strncmp(uri, "tcp:", 4) == 0 ? uri + 4 : uri);
		if ((colon = strrchr(host, ':')) != NULL)
			*colon = '\0';
		rv = vm_migrate_tls(vm, 0, host, vm_migrate_step_done, &cause);
		free(host);
		if (rv != 0) {
			vm_migrate_fail(vm, VM_MIG_FAILED, "the target wants a "
			    "TLS stream: %s", rv == 1 ? "this host has no "
			    "cluster certificates" : cause);
			free(cause);
			return;
		}
		m->tls = 1;
	}
	spice = json_object_get(m->target, "spice");
	/* A connected viewer follows the desktop (seamless migration). */
	if (json_is_object(spice))
		/* port 0: no plain port (absent, QEMU sends 65535 and
		 * spice-gtk tries it, fails, and abandons the seamless way). */
		qmp_execute(vm->qmp, "client_migrate_info", json_pack(
		    "{s:s,s:O,s:i,s:O,s:O}", "protocol", "spice", "hostname",
		    json_object_get(spice, "host"), "port", 0, "tls-port",
		    json_object_get(spice, "tls-port"), "cert-subject",
		    json_object_get(spice, "subject")), NULL, NULL);
	caps = json_pack("[{s:s,s:b}]", "capability", "events", "state", 1);
	/* With copy, the mirror completes while the source is stopped. */
	json_array_append_new(caps, json_pack("{s:s,s:b}", "capability",
	    "pause-before-switchover", "state", m->copy));
	qmp_execute(vm->qmp, "migrate-set-capabilities", json_pack("{s:o}",
	    "capabilities", caps), vm_migrate_step_done, vm);
	qmp_execute(vm->qmp, "migrate-set-parameters", json_pack("{s:i,s:I}",
	    "downtime-limit", m->downtime_limit, "max-bandwidth",
	    (json_int_t)VM_MIG_BANDWIDTH), vm_migrate_step_done, vm);
	qmp_execute(vm->qmp, "migrate", json_pack("{s:s}", "uri", uri),
	    vm_migrate_step_done, vm);
	vm_migrate_set(vm, VM_MIG_ACTIVE);
}

/* --storage copy: mirror disk0 to the target's NBD export. */
static void
vm_migrate_mirror(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;
	json_t		*nbd = json_object_get(m->target, "nbd");
	char		 port[16];

	snprintf(port, sizeof port, "%lld", (long long)json_integer_value(
	    json_object_get(nbd, "port")));
	qmp_execute(vm->qmp, "blockdev-add", json_pack("{s:s,s:s,s:{s:s,s:O,"
	    "s:s},s:O}", "driver", "nbd", "node-name", VM_MIG_NBD_NODE,
	    "server", "type", "inet", "host", json_object_get(nbd, "host"),
	    "port", port, "export", json_object_get(nbd, "export")),
	    vm_migrate_step_done, vm);
	/* write-blocking: guest writes reach both sides, so it converges. */
	qmp_execute(vm->qmp, "blockdev-mirror", json_pack("{s:s,s:s,s:s,s:s,"
	    "s:s}", "job-id", VM_MIG_JOB, "device", "disk0", "target",
	    VM_MIG_NBD_NODE, "sync", "full", "copy-mode", "write-blocking"),
	    vm_migrate_step_done, vm);
	vm_migrate_set(vm, VM_MIG_MIRRORING);
}

/* BLOCK_JOB_READY: the copy is in step; now RAM. */
void
vm_migrate_ev_job_ready(struct vm *vm, json_t *data)
{
	const char	*dev = json_string_value(json_object_get(data,
			    "device"));

	if (vm->mig == NULL || vm->mig->incoming || dev == NULL ||
	    strcmp(dev, VM_MIG_JOB) != 0 || vm->mig->state != VM_MIG_MIRRORING)
		return;
	vm->mig->disk_bytes = json_integer_value(json_object_get(data,
	    "offset"));
	vm->mig->disk_total = json_integer_value(json_object_get(data, "len"));
	vm->mig->progress = 50;
	log_info("%s: disk copy ready (%llu MiB)", vm->def.name,
	    vm->mig->disk_bytes >> 20);
	vm_migrate_ram(vm);
}

/*
 * The mirror ended: at pre-switchover (cancelled on purpose, the target
 * has every block) the switchover goes on; any other end of it fails
 * the migration, and the NBD node goes.
 */
void
vm_migrate_ev_job_done(struct vm *vm, json_t *data)
{
	struct vm_mig	*m = vm->mig;
	const char	*dev = json_string_value(json_object_get(data,
			    "device"));
	const char	*err = json_string_value(json_object_get(data,
			    "error"));

	if (m == NULL || m->incoming || dev == NULL ||
	    strcmp(dev, VM_MIG_JOB) != 0)
		return;
	if (m->state == VM_MIG_SWITCHOVER && err == NULL) {
		qmp_execute(vm->qmp, "migrate-continue", json_pack("{s:s}",
		    "state", "pre-switchover"), vm_migrate_step_done, vm);
		return;
	}
	if (!vm_migrate_busy(vm)) {
		qmp_execute(vm->qmp, "blockdev-del", json_pack("{s:s}",
		    "node-name", VM_MIG_NBD_NODE), NULL, NULL);
		return;
	}
	if (m->state == VM_MIG_ACTIVE && vm->qmp != NULL) {
		if (m->reason == NULL)
			xasprintf(&m->reason, "the disk copy ended: %s",
			    err != NULL ? err : "cancelled");
		qmp_execute(vm->qmp, "migrate_cancel", NULL, NULL, NULL);
		return;
	}
	vm_migrate_fail(vm, VM_MIG_FAILED, "the disk copy ended: %s",
	    err != NULL ? err : "cancelled");
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
	if (vm->qmp == NULL || qmp_execute(vm->qmp, "quit", NULL, NULL,
	    NULL) != 0)
		vm_pidfd_signal(vm, SIGKILL);
	evtimer_del(m->poll);
	evtimer_del(m->timer);
	evtimer_assign(m->timer, qmpd->base, vm_migrate_quit_cb, vm);
	evtimer_add(m->timer, &tv);
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

/* query-migrate after "failed": QEMU's own words. */
static void
vm_migrate_failed_info(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	const char	*desc;

	if (vm->mig == NULL || !vm_migrate_busy(vm))
		return;
	desc = errclass == NULL ? json_string_value(json_object_get(ret,
	    "error-desc")) : NULL;
	vm_migrate_fail(vm, VM_MIG_FAILED, "QEMU: %s", desc != NULL ? desc :
	    "the migration stream failed");
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
		else if (strcmp(st, "failed") == 0 && m->reason == NULL)
			m->reason = xstrdup("the incoming stream failed");
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

/* The target's answer to migrate.prepare: its URI, NBD export, SPICE. */
static void
vm_migrate_prepared(struct peer *p, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;

	if (m == NULL || m->state != VM_MIG_PREPARING)
		return;
	if (errclass != NULL) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "the target refused: %s",
		    desc != NULL ? desc : errclass);
		return;
	}
	if (vm->qmp == NULL || vm->state != VM_RUNNING) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "the VM is %s here now",
		    vm_state_name(vm->state));
		return;
	}
	if (json_string_value(json_object_get(ret, "uri")) == NULL ||
	    (m->copy && !json_is_object(json_object_get(ret, "nbd")))) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "the target's answer has no "
		    "migration address");
		return;
	}
	m->target = json_incref(ret);
	log_info("%s: target ready at %s", vm->def.name,
	    json_string_value(json_object_get(ret, "uri")));
	if (m->copy)
		vm_migrate_mirror(vm);
	else
		vm_migrate_ram(vm);
}

/* The disk's virtual size, for the target's copy of it. */
static void
vm_migrate_sized(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;
	json_t		*n, *def, *ticket;
	size_t		 i;
	const char	*from;

	if (m == NULL || m->state != VM_MIG_PREPARING)
		return;
	if (errclass != NULL) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "QEMU: %s", errdesc);
		return;
	}
	json_array_foreach(ret, i, n) {
		const char *node = json_string_value(json_object_get(n,
		    "node-name"));

		if (node != NULL && strcmp(node, "disk0") == 0)
			m->disk_total = json_integer_value(json_object_get(
			    json_object_get(n, "image"), "virtual-size"));
	}
	if (m->copy && m->disk_total == 0) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "QEMU does not know the size "
		    "of disk0");
		return;
	}
	from = qmpd->cluster != NULL ? qmpd->cluster->name :
	    qmpd->socket_path;
	if (m->peer == NULL) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "the target's qmpd went "
		    "away");
		return;
	}
	def = vm_def_to_json(&vm->def);
	/* The viewer's password must open the target's QEMU too. */
	ticket = vm_ticket_carry(vm->def.name);
	/* A connection closing already: its close callback says why. */
	(void)peer_call(m->peer, "migrate.prepare", json_pack("{s:s,s:o,s:s,"
	    "s:I,s:s,s:i,s:o*}", "name", vm->def.name, "def", def, "storage",
	    m->copy ? "copy" : "shared", "disk_size", (json_int_t)m->disk_total,
	    "from", from, "timeout", m->timeout, "ticket", ticket),
	    vm_migrate_prepared, vm);
}

/*
 * Where HOST is: unix:PATH or tls:ADDR:PORT as given; in a cluster, a
 * host's name through its hosts/NAME record ("listen"), whose
 * certificate must then be CN host:NAME (*cn).
 */
static char *
vm_migrate_resolve(const char *name, const char *to, char **cn,
    char **cause)
{
	struct cluster_host	*h;
	const char		*listen, *pin;
	char			*addr;

	*cn = NULL;
	if (peer_addr_valid(to))
		return (xstrdup(to));
	if (qmpd->cluster == NULL) {
		xasprintf(cause, "HOST %s: without a cluster (qmpd --cluster) "
		    "give the target qmpd as unix:PATH or tls:ADDR:PORT", to);
		return (NULL);
	}
	if ((pin = cluster_place_pin(cluster_place_find(name))) != NULL && strcmp(pin, to) != 0) {
		xasprintf(cause, "VM %s is pinned to host %s (vm create "
		    "--host): it may run nowhere else", name, pin);
		return (NULL);
	}
	if (strcmp(to, cluster_name()) == 0) {
		xasprintf(cause, "HOST %s is this host: the VM runs here "
		    "already", to);
		return (NULL);
	}
	if ((h = cluster_host_find(to)) == NULL || (h->rec == NULL &&
	    h->member == NULL)) {
		xasprintf(cause, "no host named %s in the cluster (qdesk host "
		    "list)", to);
		return (NULL);
	}
	if (!cluster_host_up(h)) {
		xasprintf(cause, "host %s is down", to);
		return (NULL);
	}
	if (h->draining) {
		xasprintf(cause, "host %s is draining (qdesk host undrain %s)",
		    to, to);
		return (NULL);
	}
	listen = json_string_value(json_object_get(h->rec, "listen"));
	if (listen == NULL || *listen == '\0') {
		xasprintf(cause, "host %s has no cluster listener (its "
		    "cluster file's \"listen\")", to);
		return (NULL);
	}
	xasprintf(&addr, "tls:%s", listen);
	xasprintf(cn, "host:%s", to);
	return (addr);
}

/*
 * vm.migrate: check, connect to the target's qmpd, then the state
 * machine above; done answers once it has ended either way.
 */
void
vm_migrate(struct vm *vm, json_t *args, done_cb done, void *arg)
{
	struct vm_mig	*m;
	const char	*to, *storage;
	json_int_t	 downtime, timeout;
	char		*addr, *cn, *cause = NULL;
	int		 copy;
	struct timeval	 tv = { 0, 0 };

	to = json_string_value(json_object_get(args, "to"));
	storage = json_string_value(json_object_get(args, "storage"));
	downtime = json_is_integer(json_object_get(args, "downtime")) ?
	    json_integer_value(json_object_get(args, "downtime")) :
	    VM_MIG_DOWNTIME_MS;
	timeout = json_is_integer(json_object_get(args, "timeout")) ?
	    json_integer_value(json_object_get(args, "timeout")) :
	    VM_MIG_TIMEOUT;
	if (storage == NULL)
		storage = "shared";
	if (strcmp(storage, "shared") != 0 && strcmp(storage, "copy") != 0) {
		done_fail(done, arg, ERR_ARG, "--storage %s: shared or copy",
		    storage);
		return;
	}
	copy = strcmp(storage, "copy") == 0;
	if (downtime < 1 || downtime > 60000) {
		done_fail(done, arg, ERR_ARG, "--downtime %lld: 1 to 60000 ms",
		    (long long)downtime);
		return;
	}
	if (timeout < 0 || timeout > 86400) {
		done_fail(done, arg, ERR_ARG, "--timeout %lld: 0 (none) to "
		    "86400 s", (long long)timeout);
		return;
	}
	if (vm_migrate_busy(vm)) {
		done_fail(done, arg, ERR_BUSY, "VM %s is already migrating "
		    "(%s)", vm->def.name, vm_mig_state_names[vm->mig->state]);
		return;
	}
	if (vm->state != VM_RUNNING || vm->qmp == NULL) {
		done_fail(done, arg, ERR_STATE, "VM %s is %s: only a running "
		    "VM migrates", vm->def.name, vm_state_name(vm->state));
		return;
	}
	if (vm->def.pool != NULL && qmpd->cluster == NULL) {
		done_fail(done, arg, ERR_STATE, "VM %s is a desktop of pool %s, "
		    "which lives on this host: pool desktops move between "
		    "cluster hosts only", vm->def.name, vm->def.pool);
		return;
	}
	if (vm_migrate_check(&vm->def, copy, &cause) != 0) {
		done_fail(done, arg, ERR_STATE, "%s", cause);
		free(cause);
		return;
	}
	if ((addr = vm_migrate_resolve(vm->def.name, to != NULL ? to : "", &cn,
	    &cause)) == NULL) {
		done_fail(done, arg, ERR_ARG, "%s", cause);
		free(cause);
		return;
	}
	vm_migrate_free(vm);
	m = vm->mig = xcalloc(1, sizeof *m);
	/* A host's name says more in vm show and the logs than its port. */
	m->peer_addr = xstrdup(cn != NULL ? to : addr);
	m->copy = copy;
	m->downtime_limit = (int)downtime;
	m->timeout = (int)timeout;
	m->t0 = vm_migrate_now_ms();
	m->done = done;
	m->done_arg = arg;
	m->poll = evtimer_new(qmpd->base, vm_migrate_poll_cb, vm);
	m->timer = evtimer_new(qmpd->base, vm_migrate_timeout_cb, vm);
	vm_migrate_set(vm, VM_MIG_PREPARING);
	m->peer = peer_open_cn(addr, cn, vm_migrate_peer_closed, vm, &cause);
	free(cn);
	free(addr);
	if (m->peer == NULL) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "%s", cause);
		free(cause);
		return;
	}
	if (timeout > 0) {
		tv.tv_sec = timeout;
		evtimer_add(m->timer, &tv);
	}
	vm_migrate_poll_arm(vm);
	qmp_execute(vm->qmp, "query-named-block-nodes", json_pack("{s:b}",
	    "flat", 1), vm_migrate_sized, vm);
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
	char		*cause = NULL, *why, *disk = NULL;
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
	if (vm_delete(vm, &cause) != 0) {
		log_warnx("incoming VM: %s", cause);
		free(cause);
	}
	if (disk != NULL && unlink(disk) == -1 && errno != ENOENT)
		log_warn("unlink %s", disk);
	free(disk);
	return (1);
}
