/*
 * Live migration, the source's side (issue 14): vm.migrate checks the
 * VM and the target, connects to the target's qmpd and asks it to
 * prepare the same VM; the rest is a state machine over QMP and that
 * peer connection, never a blocking wait, in the vm-migrate-*.c files:
 *
 *   PREPARING   the target's qmpd starts the same VM with -incoming defer
 *               (this file)
 *   MIRRORING   --storage copy: blockdev-mirror (write-blocking) of disk0
 *               to the target's writable NBD export, until BLOCK_JOB_READY
 *               (vm-migrate-mirror.c)
 *   ACTIVE      migrate-set-capabilities, migrate-set-parameters
 *               (downtime-limit), client_migrate_info for SPICE, migrate;
 *               MIGRATION events (vm-migrate-qmp.c), and query-migrate for
 *               progress (vm-migrate-status.c)
 *   SWITCHOVER  the source is stopped (with copy, the mirror completes at
 *               pre-switchover); the target takes over on its own
 *               "completed" (vm-incoming.c), migrate.finish says how
 *   COMPLETED   the source's QEMU quits, its record and leftovers go
 *               (vm-migrate-qmp.c)
 *   FAILED, CANCELLED
 *               the desktop keeps running here, and the reason says why
 *               (vm-migrate-fail.c)
 *
 * The stream is QEMU to QEMU over TCP, on the pair's own addresses
 * (loopback for two qmpds on one machine), TLS in a cluster with
 * certificates (vm-migrate-tls.c).
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
 * What a definition needs to move. Host-local parts are rebuilt by the
 * target (SPICE port and certificate, fds); what is not moved yet is
 * refused here with the reason rather than lost on the way.
 */
int
vm_migrate_check(const struct vm_def *def, int copy, char **cause)
{
	if (def->image != NULL)
		return (vm_migrate_image_check(def, copy, cause));
	if (copy && def->disk == NULL) {
		xasprintf(cause, "VM %s has no disk to copy: use --storage "
		    "shared", def->name);
		return (-1);
	}
	return (0);
}

/* The target's answer to migrate.prepare: its URI, NBD export, SPICE. */
static void
vm_migrate_prepared(struct peer *p, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;
	char		*cause = NULL;

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
	/* Before the mirror: its NBD connection uses the same credentials. */
	if (vm_migrate_tls_peer(vm, m->target, vm_migrate_step_done,
	    &cause) != 0) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "%s", cause);
		free(cause);
		return;
	}
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
	json_t		*n, *def, *ticket, *req, *nets;
	size_t		 i;
	const char	*from;
	char		*cause = NULL;

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
	/* NICs: the target compares these networks with its own. */
	nets = vm_migrate_nic_nets(&vm->def, &cause);
	if (cause != NULL) {
		vm_migrate_fail(vm, VM_MIG_FAILED, "%s", cause);
		free(cause);
		return;
	}
	def = vm_def_to_json(&vm->def);
	/* The viewer's password must open the target's QEMU too. */
	ticket = vm_ticket_carry(vm->def.name);
	/*
	 * A viewer linked through the proxy: its tunnel's ticket too. A
	 * connection closing already: its close callback says why.
	 */
	req = json_pack("{s:s,s:o,s:s,s:I,s:s,s:i,s:o*,s:s*,s:o*}", "name",
	    vm->def.name, "def", def, "storage", m->copy ? "copy" : "shared",
	    "disk_size", (json_int_t)m->disk_total, "from", from, "timeout",
	    m->timeout, "ticket", ticket, "via", spice_via_ticket(vm), "nets",
	    nets);
	/* Its NVRAM's size: the target's file must match (vm-migrate-tpm.c). */
	vm_migrate_tpm_offer(vm, req);
	/* A clone on the image store: its template and that one's sum. */
	if (vm_migrate_image_offer(vm, req, &cause) != 0) {
		json_decref(req);
		vm_migrate_fail(vm, VM_MIG_FAILED, "%s", cause);
		free(cause);
		return;
	}
	/* Where its devices are, hotplugged ones too (vm-migrate-dev.c). */
	vm_migrate_dev_offer(vm, req);
	(void)peer_call(m->peer, "migrate.prepare", req, vm_migrate_prepared,
	    vm);
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
vm_migrate(struct vm *vm, json_t *args, done_cb done, progress_cb report,
    void *arg)
{
	struct vm_mig	*m;
	const char	*to, *storage;
	json_int_t	 downtime, timeout, bandwidth;
	char		*addr, *cn, *cause = NULL;
	int		 copy;

	to = json_string_value(json_object_get(args, "to"));
	storage = json_string_value(json_object_get(args, "storage"));
	downtime = json_is_integer(json_object_get(args, "downtime")) ?
	    json_integer_value(json_object_get(args, "downtime")) :
	    VM_MIG_DOWNTIME_MS;
	timeout = json_is_integer(json_object_get(args, "timeout")) ?
	    json_integer_value(json_object_get(args, "timeout")) :
	    VM_MIG_TIMEOUT;
	bandwidth = json_integer_value(json_object_get(args, "bandwidth"));
	/*
	 * A clone on this host's own image store has its top copied; one
	 * on a shared store stays where it is.
	 */
	if (storage == NULL)
		storage = vm->def.image != NULL && vm->def.store == NULL ?
		    "copy" : "shared";
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
	if (bandwidth < 0 || bandwidth > 100000) {
		done_fail(done, arg, ERR_ARG, "--bandwidth %lld: 1 to 100000 "
		    "MiB/s, or 0 for no cap", (long long)bandwidth);
		return;
	}
	if (timeout < 0 || timeout > 86400) {
		done_fail(done, arg, ERR_ARG, "--timeout %lld: 0 (none) to "
		    "86400 s", (long long)timeout);
		return;
	}
	if (vm_migrate_busy(vm)) {
		done_fail(done, arg, ERR_BUSY, "VM %s is already migrating "
		    "(%s)", vm->def.name, vm_migrate_state_name(vm->mig->state));
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
	if (vm_migrate_check(&vm->def, copy, &cause) != 0 ||
	    vm_migrate_image_ready(vm, &cause) != 0) {
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
	m->bandwidth = (int)bandwidth;
	m->t0 = vm_migrate_now_ms();
	m->done = done;
	m->report = report;
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
	/* --timeout counts once RAM moves (vm_migrate_ram); till then: */
	vm_migrate_timer_arm(vm, VM_MIG_PREPARE_S);
	vm_migrate_poll_arm(vm);
	vm_migrate_dev_query(vm);	/* answered first: vm-migrate-dev.c */
	qmp_execute(vm->qmp, "query-named-block-nodes", json_pack("{s:b}",
	    "flat", 1), vm_migrate_sized, vm);
}
