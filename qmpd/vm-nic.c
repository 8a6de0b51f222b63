/*
 * NIC hotplug and unplug on a running VM: a TAP and its nft rules, then
 * QMP getfd + netdev_add + device_add; device_del, the guest's
 * DEVICE_DELETED, netdev_del back. A stopped VM's NICs change in its
 * definition only. The lease and definition edits are vm-net.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#include "ipam.h"
#include "net.h"
#include "netctl.h"

#define VM_NIC_UNPLUG_TIMEOUT	20	/* seconds for the guest to let go */

/*
 * The definition's NICs changed: vm.nics {"nics"}, for whoever keeps a
 * copy of them elsewhere (a cluster's etcd, cluster-nic.c).
 */
static void
vm_nic_changed(struct vm *vm)
{
	json_t	*nics = json_array(), *fields;
	u_int	 i;

	for (i = 0; i < vm->def.nnics; i++)
		json_array_append_new(nics, vm_def_nic_json(&vm->def.nics[i]));
	fields = json_pack("{s:o}", "nics", nics);
	notify_emit("vm.nics", vm->def.name, fields);
	json_decref(fields);
}

/* A hotplug or unplug in flight. */
struct vm_nic_op {
	done_cb			 done;		/* NULL once answered */
	void			*arg;
	char			 vm[VM_NAME_MAX];
	struct vm_nic		 nic;
	char			 fdname[32];
	int			 unplug;
	struct event		*timer;
	TAILQ_ENTRY(vm_nic_op)	 entry;
};
static TAILQ_HEAD(, vm_nic_op)	vm_nic_ops = TAILQ_HEAD_INITIALIZER(vm_nic_ops);

static struct vm_nic_op *
vm_nic_op_new(struct vm *vm, const struct vm_nic *nic, done_cb done,
    void *arg)
{
	struct vm_nic_op	*op;

	op = xcalloc(1, sizeof *op);
	op->done = done;
	op->arg = arg;
	strlcpy(op->vm, vm->def.name, sizeof op->vm);
	op->nic = *nic;
	TAILQ_INSERT_TAIL(&vm_nic_ops, op, entry);
	return (op);
}

static void
vm_nic_op_free(struct vm_nic_op *op)
{
	TAILQ_REMOVE(&vm_nic_ops, op, entry);
	if (op->nic.fd != -1)
		close(op->nic.fd);
	if (op->timer != NULL)
		event_free(op->timer);
	free(op);
}

/*
 * Takes NIC id out of vm's definition and releases its lease, in one
 * transaction.
 */
static int
vm_nic_forget(struct vm *vm, const struct vm_nic *nic, char **cause)
{
	struct vm_def_nic	 old[VM_NICS_MAX];
	struct db_txn		*txn;
	u_int			 i, n, oldn = vm->def.nnics;

	memcpy(old, vm->def.nics, sizeof old);
	for (i = n = 0; i < oldn; i++) {
		if (strcmp(old[i].id, nic->id) != 0)
			vm->def.nics[n++] = old[i];
	}
	if (n == oldn)
		return (0);
	vm->def.nnics = n;
	if ((txn = db_begin(qmpd->db, cause)) == NULL)
		goto fail;
	if (nic->ip != 0 && netctl_ipam_release_txn(net_ipam, txn,
	    nic->network, nic->ip, cause) == -1)
		goto fail;
	if (vm_net_save_txn(vm, txn, cause) != 0)
		goto fail;
	if (db_commit(txn, cause) != 0) {
		txn = NULL;
		goto fail;
	}
	netctl_ipam_mac_forget(net_ipam, nic->mac);
	net_leases_changed(nic->network, 1);
	vm_nic_changed(vm);
	return (0);
fail:
	if (txn != NULL)
		db_abort(txn);
	memcpy(vm->def.nics, old, sizeof old);
	vm->def.nnics = oldn;
	return (-1);
}

/* A hotplug failed: undo everything, answer with why. */
static void
vm_nic_plug_fail(struct vm_nic_op *op, const char *errclass, const char *err)
{
	struct vm_netrt	*x;
	struct vm	*vm;
	char		*cause = NULL;

	if ((x = vm_net_rt_find(op->vm)) != NULL)
		vm_net_rt_remove(x, op->nic.id);
	if (op->nic.fd != -1) {
		close(op->nic.fd);
		op->nic.fd = -1;
	}
	if ((vm = vm_find(op->vm)) != NULL &&
	    vm_nic_forget(vm, &op->nic, &cause) != 0) {
		log_warnx("%s: NIC %s: %s", op->vm, op->nic.id, cause);
		free(cause);
	}
	net_nft_update(NULL, NULL);
	done_fail(op->done, op->arg, errclass, "%s: NIC on %s: %s", op->vm,
	    op->nic.network, err);
	vm_nic_op_free(op);
}

static void
vm_nic_plug_reply(struct vm_nic_op *op)
{
	json_t	*j;

	j = vm_net_nic_json(&op->nic);
	json_object_set_new(j, "name", json_string(op->vm));
	json_object_set_new(j, "tap", json_string(op->nic.tap));
	log_info("%s: NIC %s (%s) added on %s", op->vm, op->nic.id,
	    op->nic.tap, op->nic.network);
	done_ok(op->done, op->arg, j);
	op->done = NULL;
	vm_nic_op_free(op);
}

/* device_add answered: the guest has its NIC, or the netdev goes again. */
static void
vm_nic_plug_device(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_nic_op	*op = arg;
	struct vm		*vm;

	if (errclass != NULL) {
		/* The netdev holds the TAP: let it go. */
		if ((vm = vm_find(op->vm)) != NULL && vm->qmp == qmp)
			qmp_execute(qmp, "netdev_del", json_pack("{s:s}",
			    "id", op->nic.id), NULL, NULL);
		vm_nic_plug_fail(op, ERR_QEMU, errdesc);
		return;
	}
	vm_nic_plug_reply(op);
}

/* netdev_add answered: QEMU holds the TAP; now the device on it. */
static void
vm_nic_plug_netdev(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_nic_op	*op = arg;
	struct vm		*vm;
	json_t			*args;
	char			 mac[NETCTL_MACSTRLEN], bus[32];

	if (errclass != NULL) {
		qmp_execute(qmp, "closefd", json_pack("{s:s}", "fdname",
		    op->fdname), NULL, NULL);
		vm_nic_plug_fail(op, ERR_QEMU, errdesc);
		return;
	}
	args = json_pack("{s:s,s:s,s:s,s:s}", "driver", "virtio-net-pci",
	    "id", op->nic.dev, "netdev", op->nic.id, "mac",
	    netctl_mac_format(op->nic.mac, mac, sizeof mac));
	/* q35: the spare root port of this NIC id (vm-argv.c). */
	if ((vm = vm_find(op->vm)) != NULL &&
	    strcmp(vm->def.machine, "q35") == 0) {
		snprintf(bus, sizeof bus, "qdesk-rp%s", op->nic.id + 3);
		json_object_set_new(args, "bus", json_string(bus));
	}
	if (qmp_execute(qmp, "device_add", args, vm_nic_plug_device, op) != 0)
		vm_nic_plug_fail(op, ERR_QEMU, "QMP connection closed");
}

/* getfd answered: QEMU has the TAP's fd by name; a netdev on it. */
static void
vm_nic_plug_getfd(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_nic_op	*op = arg;

	if (errclass != NULL) {
		vm_nic_plug_fail(op, ERR_QEMU, errdesc);
		return;
	}
	if (qmp_execute(qmp, "netdev_add", json_pack("{s:s,s:s,s:s,s:b}",
	    "type", "tap", "id", op->nic.id, "fd", op->fdname, "vhost", 0),
	    vm_nic_plug_netdev, op) != 0)
		vm_nic_plug_fail(op, ERR_QEMU, "QMP connection closed");
}

/* The ruleset lists the new TAP: hand it to QEMU. */
static void
vm_nic_plug_rules(const char *err, void *arg)
{
	struct vm_nic_op	*op = arg;
	struct vm		*vm;

	if (err != NULL) {
		vm_nic_plug_fail(op, ERR_INTERNAL, err);
		return;
	}
	if ((vm = vm_find(op->vm)) == NULL || vm->qmp == NULL ||
	    (vm->state != VM_RUNNING && vm->state != VM_PAUSED)) {
		vm_nic_plug_fail(op, ERR_STATE, "the VM is no longer running");
		return;
	}
	snprintf(op->fdname, sizeof op->fdname, "qdesk-%s", op->nic.tap);
	if (qmp_execute_fd(vm->qmp, "getfd", json_pack("{s:s}", "fdname",
	    op->fdname), op->nic.fd, vm_nic_plug_getfd, op) != 0) {
		vm_nic_plug_fail(op, ERR_QEMU, "QMP is not connected");
		return;
	}
	/* QEMU gets a duplicate: the TAP lives on in QEMU only. */
	close(op->nic.fd);
	op->nic.fd = -1;
}

/*
 * A migrating VM's devices must stay as the target builds them (its PCI
 * layout was taken at the start, vm-migrate-dev.c): refuse, say why.
 */
static int
vm_nic_migrating(struct vm *vm, done_cb done, void *arg)
{
	if (!vm_migrate_busy(vm))
		return (0);
	done_fail(done, arg, ERR_BUSY, "VM %s is migrating: change its NICs "
	    "once vm migrate has answered", vm->def.name);
	return (1);
}

/* The id of a NIC of vm being added or removed, or NULL. */
const char *
vm_nic_busy(const struct vm *vm)
{
	struct vm_nic_op	*op;

	TAILQ_FOREACH(op, &vm_nic_ops, entry) {
		if (strcmp(op->vm, vm->def.name) == 0)
			return (op->nic.id);
	}
	return (NULL);
}

/*
 * vm.nic_add: a new NIC on network in the definition and, if the VM runs,
 * in QEMU; done gets the NIC, or why not.
 */
void
vm_nic_add(struct vm *vm, const char *network, done_cb done, void *arg)
{
	struct vm_nic_op	*op;
	struct vm_netrt		*x;
	struct db_txn		*txn;
	struct vm_nic		 nic;
	struct net		*n;
	json_t			*j;
	char			*cause = NULL, id[16];
	int			 active = vm_is_active(vm);

	if (vm_nic_migrating(vm, done, arg))
		return;
	if ((n = vm_net_usable(network, &cause)) == NULL) {
		done_fail(done, arg, net_find(network) == NULL ? ERR_NOTFOUND :
		    ERR_BUSY, "%s", cause);
		free(cause);
		return;
	}
	if (active && (vm->qmp == NULL || (vm->state != VM_RUNNING &&
	    vm->state != VM_PAUSED))) {
		done_fail(done, arg, ERR_STATE, "VM %s is %s: add the NIC once "
		    "it runs or is stopped", vm->def.name,
		    vm_state_name(vm->state));
		return;
	}
	if (vm->def.nnics >= VM_NICS_MAX) {
		done_fail(done, arg, ERR_ARG, "VM %s has %d NICs already, the "
		    "most it can have", vm->def.name, VM_NICS_MAX);
		return;
	}
	vm_net_next_id(vm->def.nics, vm->def.nnics, id, sizeof id);
	if ((txn = db_begin(qmpd->db, &cause)) == NULL)
		goto fail;
	if (vm_net_lease(vm, txn, n, id, &nic, &cause) != 0) {
		db_abort(txn);
		goto fail;
	}
	vm_net_nic_def(&nic, &vm->def.nics[vm->def.nnics++]);
	if (vm_net_save_txn(vm, txn, &cause) != 0 ||
	    db_commit(txn, &cause) != 0) {
		vm->def.nnics--;
		netctl_ipam_mac_forget(net_ipam, nic.mac);
		goto fail;
	}
	net_leases_changed(network, 0);
	vm_nic_changed(vm);

	if (!active) {
		j = vm_net_nic_json(&nic);
		json_object_set_new(j, "name", json_string(vm->def.name));
		log_info("%s: NIC %s added on %s", vm->def.name, nic.id,
		    network);
		done_ok(done, arg, j);
		return;
	}
	/* Hotplug: TAP, ruleset, then getfd + netdev_add + device_add. */
	op = vm_nic_op_new(vm, &nic, done, arg);
	if (vm_net_tap(&op->nic, &cause) != 0) {
		vm_nic_plug_fail(op, ERR_INTERNAL, cause);
		free(cause);
		return;
	}
	/* Ours until getfd: no helper process may inherit it. */
	fcntl(op->nic.fd, F_SETFD, FD_CLOEXEC);
	if ((x = vm_net_rt_find(vm->def.name)) == NULL)
		x = vm_net_rt_new(vm->def.name);
	nic.fd = -1;
	vm_net_rt_add(x, &nic);
	net_nft_update(vm_nic_plug_rules, op);
	return;
fail:
	done_fail(done, arg, ERR_ARG, "%s", cause);
	free(cause);
}

/* The device and netdev are gone from QEMU: forget the NIC. */
static void
vm_nic_unplug_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_nic_op	*op = arg;
	struct vm_netrt		*x;
	struct vm		*vm;
	char			*cause = NULL;

	if (errclass != NULL)
		log_warnx("%s: netdev_del %s: %s", op->vm, op->nic.id, errdesc);
	if ((x = vm_net_rt_find(op->vm)) != NULL)
		vm_net_rt_remove(x, op->nic.id);
	net_nft_update(NULL, NULL);
	if ((vm = vm_find(op->vm)) == NULL) {
		done_fail(op->done, op->arg, ERR_NOTFOUND, "VM %s went away",
		    op->vm);
	} else if (vm_nic_forget(vm, &op->nic, &cause) != 0) {
		done_fail(op->done, op->arg, ERR_INTERNAL, "%s", cause);
		free(cause);
	} else {
		log_info("%s: NIC %s (%s) removed", op->vm, op->nic.id,
		    op->nic.tap);
		done_ok(op->done, op->arg, json_object());
	}
	op->done = NULL;
	vm_nic_op_free(op);
}

/* The device is gone: the netdev and with it QEMU's TAP fd go too. */
static void
vm_nic_unplug_netdev(struct vm_nic_op *op)
{
	struct vm	*vm;

	if ((vm = vm_find(op->vm)) == NULL || vm->qmp == NULL ||
	    qmp_execute(vm->qmp, "netdev_del", json_pack("{s:s}", "id",
	    op->nic.id), vm_nic_unplug_done, op) != 0)
		vm_nic_unplug_done(NULL, NULL, "Disconnected", "no QMP", op);
}

/* QEMU's DEVICE_DELETED: the guest let a NIC go. */
void
vm_nic_deleted(struct vm *vm, json_t *data)
{
	struct vm_nic_op	*op;
	const char		*dev;

	dev = json_string_value(json_object_get(data, "device"));
	if (dev == NULL)
		return;
	TAILQ_FOREACH(op, &vm_nic_ops, entry) {
		if (op->unplug && strcmp(op->vm, vm->def.name) == 0 &&
		    strcmp(op->nic.dev, dev) == 0) {
			if (op->timer != NULL)
				evtimer_del(op->timer);
			vm_nic_unplug_netdev(op);
			return;
		}
	}
}

static void
vm_nic_unplug_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct vm_nic_op	*op = arg;

	/* Still waiting for the guest; the NIC goes when it lets go. */
	done_fail(op->done, op->arg, ERR_TIMEOUT, "%s: the guest has not "
	    "released NIC %s after %d s; it is removed when it does",
	    op->vm, op->nic.id, VM_NIC_UNPLUG_TIMEOUT);
	op->done = NULL;
}

/* device_del answered: wait for the guest to let go (DEVICE_DELETED). */
static void
vm_nic_unplug_device(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_nic_op	*op = arg;
	struct timeval		 tv = { VM_NIC_UNPLUG_TIMEOUT, 0 };

	if (errclass != NULL) {
		/* No such device (never plugged): the netdev may still be. */
		if (strcmp(errclass, "DeviceNotFound") == 0) {
			vm_nic_unplug_netdev(op);
			return;
		}
		done_fail(op->done, op->arg, ERR_QEMU, "%s: device_del %s: %s",
		    op->vm, op->nic.dev, errdesc);
		op->done = NULL;
		vm_nic_op_free(op);
		return;
	}
	op->timer = evtimer_new(qmpd->base, vm_nic_unplug_timeout, op);
	evtimer_add(op->timer, &tv);
}

/*
 * vm.nic_rm: the NIC by MAC out of the definition and, if the VM runs,
 * out of QEMU; done hears when it is gone, or why not.
 */
void
vm_nic_rm(struct vm *vm, const char *macstr, done_cb done, void *arg)
{
	struct vm_nic_op	*op;
	struct vm_nic		 nic;
	uint8_t			 mac[6];
	char			*cause = NULL;
	u_int			 i;
	int			 found = 0;

	if (vm_nic_migrating(vm, done, arg))
		return;
	if (netctl_mac_parse(macstr, mac) != 0) {
		done_fail(done, arg, ERR_ARG, "invalid MAC address %s", macstr);
		return;
	}
	for (i = 0; i < vm->def.nnics && !found; i++) {
		if (memcmp(vm->def.nics[i].mac, mac, sizeof mac) == 0) {
			vm_net_nic_load(&nic, &vm->def.nics[i]);
			found = 1;
		}
	}
	if (!found) {
		done_fail(done, arg, ERR_NOTFOUND, "VM %s has no NIC with MAC "
		    "%s", vm->def.name, macstr);
		return;
	}
	TAILQ_FOREACH(op, &vm_nic_ops, entry) {
		if (strcmp(op->vm, vm->def.name) == 0 &&
		    strcmp(op->nic.id, nic.id) == 0) {
			done_fail(done, arg, ERR_BUSY, "VM %s: NIC %s is being "
			    "%s", vm->def.name, nic.id, op->unplug ?
			    "removed" : "added");
			return;
		}
	}
	if (!vm_is_active(vm)) {
		if (vm_nic_forget(vm, &nic, &cause) != 0) {
			done_fail(done, arg, ERR_INTERNAL, "%s", cause);
			free(cause);
			return;
		}
		log_info("%s: NIC %s removed", vm->def.name, nic.id);
		done_ok(done, arg, json_object());
		return;
	}
	if (vm->qmp == NULL || (vm->state != VM_RUNNING &&
	    vm->state != VM_PAUSED)) {
		done_fail(done, arg, ERR_STATE, "VM %s is %s: remove the NIC "
		    "once it runs or is stopped", vm->def.name,
		    vm_state_name(vm->state));
		return;
	}
	op = vm_nic_op_new(vm, &nic, done, arg);
	op->unplug = 1;
	if (qmp_execute(vm->qmp, "device_del", json_pack("{s:s}", "id",
	    nic.dev), vm_nic_unplug_device, op) != 0) {
		done_fail(done, arg, ERR_QEMU, "VM %s: QMP is not connected",
		    vm->def.name);
		op->done = NULL;
		vm_nic_op_free(op);
	}
}

/* QEMU is gone: a NIC the guest was asked to let go of is gone for good. */
void
vm_nic_stopped(struct vm *vm)
{
	struct vm_nic_op	*op, *next;

	TAILQ_FOREACH_SAFE(op, &vm_nic_ops, entry, next) {
		if (op->unplug && strcmp(op->vm, vm->def.name) == 0) {
			if (op->timer != NULL)
				evtimer_del(op->timer);
			vm_nic_unplug_done(NULL, NULL, NULL, NULL, op);
		}
	}
}
