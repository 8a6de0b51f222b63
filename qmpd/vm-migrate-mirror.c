/*
 * --storage copy (issue 14), on the source: disk0 mirrored to the
 * target's writable NBD export, write-blocking so it converges; RAM
 * follows once the mirror is READY, and the job ends at pre-switchover.
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

/* --storage copy: mirror disk0 to the target's NBD export. */
void
vm_migrate_mirror(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;
	json_t		*nbd = json_object_get(m->target, "nbd"), *node;
	char		 port[16];

	snprintf(port, sizeof port, "%lld", (long long)json_integer_value(
	    json_object_get(nbd, "port")));
	node = json_pack("{s:s,s:s,s:{s:s,s:O,s:s},s:O}", "driver", "nbd",
	    "node-name", VM_MIG_NBD_NODE, "server", "type", "inet", "host",
	    json_object_get(nbd, "host"), "port", port, "export",
	    json_object_get(nbd, "export"));
	/*
	 * A target whose export wants TLS: the stream's client credentials
	 * (vm_migrate_tls_peer), the target's certificate checked against
	 * the address, so the disk crosses the network encrypted too.
	 */
	if (json_is_true(json_object_get(nbd, "tls")))
		json_object_set_new(node, "tls-creds",
		    json_string(vm_migrate_tls_id()));
	qmp_execute(vm->qmp, "blockdev-add", node, vm_migrate_step_done, vm);
	/*
	 * write-blocking: guest writes reach both sides, so it converges.
	 * A clone on the image store sends its top alone: the target's
	 * export is a clone over the same template (vm-migrate-image.c).
	 */
	qmp_execute(vm->qmp, "blockdev-mirror", json_pack("{s:s,s:s,s:s,s:s,"
	    "s:s,s:I}", "job-id", VM_MIG_JOB, "device", "disk0", "target",
	    VM_MIG_NBD_NODE, "sync", vm->def.image != NULL ? "top" : "full",
	    "copy-mode", "write-blocking", "speed", m->bandwidth > 0 ?
	    vm_migrate_bandwidth(m) : 0), vm_migrate_step_done, vm);
	m->disk_t0 = vm_migrate_now_ms();
	/* No fixed bound for a copy of any size: one that stops moving. */
	vm_migrate_timer_arm(vm, VM_MIG_STALL_S);
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
	/* The disk's share of the total: a top alone against a whole disk. */
	vm->mig->disk_ms = vm_migrate_now_ms() - vm->mig->disk_t0;
	log_info("%s: disk copy ready (%llu MiB in %lld ms)", vm->def.name,
	    vm->mig->disk_bytes >> 20, vm->mig->disk_ms);
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
		vm_migrate_cancel(vm);
		return;
	}
	vm_migrate_fail(vm, VM_MIG_FAILED, "the disk copy ended: %s",
	    err != NULL ? err : "cancelled");
}
