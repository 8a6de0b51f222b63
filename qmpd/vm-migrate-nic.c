/*
 * Live migration of a desktop's NICs (issue 14). Networks are host-local:
 * each host has its own bridge, dnsmasq and leases for a network name.
 * The source sends, with migrate.prepare, what each of its NICs'
 * networks is (mode, subnet); the target refuses before anything starts
 * if it has no network of that name or one that differs in a way the
 * guest would notice (another mode, another subnet), then records the
 * same leases (address and MAC) in the transaction that saves the VM, so
 * its dnsmasq renews the guest's address, and opens the TAPs on its own
 * bridges (vm_net_open, at start, with the same ids in the same order, so
 * the device state in the stream matches). The source's answer waits
 * until the target's ruleset lists those TAPs: the bridge drops frames
 * of unlisted TAPs. After the switchover QEMU's announce-self (automatic
 * after an incoming migration) makes the bridges learn the MAC at once;
 * the source's TAPs go with its QEMU and its leases with its record
 * (vm_delete). A target that never runs deletes its record, and its
 * leases go with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#include "ipam.h"
#include "net.h"
#include "netctl.h"

/* This host, as a refusal names it. */
static const char *
vm_migrate_nic_here(void)
{
	return (qmpd->cluster != NULL ? cluster_name() : "the target");
}

/*
 * The source: {NETWORK: {mode, subnet, ...}} for each network a NIC of
 * def is on, for the target to compare with its own; NULL without NICs.
 */
json_t *
vm_migrate_nic_nets(const struct vm_def *def, char **cause)
{
	struct net	*n;
	json_t		*nets;
	u_int		 i;

	if (def->nnics == 0)
		return (NULL);
	nets = json_object();
	for (i = 0; i < def->nnics; i++) {
		if ((n = net_find(def->nics[i].network)) == NULL) {
			xasprintf(cause, "NIC %s of %s is on network %s, which "
			    "this host does not have", def->nics[i].id,
			    def->name, def->nics[i].network);
			json_decref(nets);
			return (NULL);
		}
		json_object_set_new(nets, n->n.name,
		    netctl_net_to_json(&n->n));
	}
	return (nets);
}

/*
 * The target, before anything starts: each NIC's network is here, up,
 * of the source's mode, and (except bridge mode, where the LAN hands out
 * addresses) of its subnet; each MAC is free here.
 */
int
vm_migrate_nic_check(const struct vm_def *def, const json_t *nets,
    char **cause)
{
	const struct vm_def_nic	*d;
	struct net		*n;
	json_t			*src;
	const char		*mode, *subnet;
	char			 buf[NETCTL_CIDRSTRLEN], mac[NETCTL_MACSTRLEN];
	u_int			 i;

	for (i = 0; i < def->nnics; i++) {
		d = &def->nics[i];
		if ((n = net_find(d->network)) == NULL) {
			xasprintf(cause, "host %s has no network %s for NIC %s "
			    "of %s (qdesk net create %s, of the same mode and "
			    "subnet, on %s)", vm_migrate_nic_here(), d->network,
			    d->id, def->name, d->network,
			    vm_migrate_nic_here());
			return (-1);
		}
		if (n->pending) {
			xasprintf(cause, "network %s on host %s is still being "
			    "created", d->network, vm_migrate_nic_here());
			return (-1);
		}
		src = json_object_get(nets, d->network);
		mode = json_string_value(json_object_get(src, "mode"));
		subnet = json_string_value(json_object_get(src, "subnet"));
		if (mode == NULL || subnet == NULL) {
			xasprintf(cause, "the source did not say what network "
			    "%s is", d->network);
			return (-1);
		}
		if (strcmp(mode, netctl_mode_name(n->n.mode)) != 0) {
			xasprintf(cause, "network %s is %s on host %s but %s "
			    "on the source", d->network,
			    netctl_mode_name(n->n.mode), vm_migrate_nic_here(),
			    mode);
			return (-1);
		}
		netctl_subnet_format(&n->n.subnet, buf, sizeof buf);
		if (n->n.mode != NETCTL_BRIDGE && strcmp(subnet, buf) != 0) {
			xasprintf(cause, "network %s is %s on host %s but %s "
			    "on the source: the guest's address would be wrong "
			    "there", d->network, buf, vm_migrate_nic_here(),
			    subnet);
			return (-1);
		}
		if (netctl_ipam_mac_inuse(net_ipam, d->mac)) {
			xasprintf(cause, "MAC %s of NIC %s is another NIC's on "
			    "host %s", netctl_mac_format(d->mac, mac,
			    sizeof mac), d->id, vm_migrate_nic_here());
			return (-1);
		}
	}
	return (0);
}

/*
 * The target: the VM's record and its NICs' leases (the source's
 * addresses and MACs) in one transaction, so a failure leaves neither;
 * dnsmasq then hands each MAC its address again. Without NICs, vm_save.
 */
int
vm_migrate_nic_save(struct vm *vm, char **cause)
{
	const struct vm_def_nic	*d;
	struct db_txn		*txn;
	struct net		*n;
	u_int			 i, k, count = 0;

	if (vm->def.nnics == 0)
		return (vm_save(vm, cause));
	if ((txn = db_begin(qmpd->db, cause)) == NULL)
		return (-1);
	for (i = 0; i < vm->def.nnics; i++) {
		d = &vm->def.nics[i];
		if ((n = vm_net_usable(d->network, cause)) == NULL)
			goto fail;
		if (d->ip == 0) {
			/* Bridge mode: the MAC only, no lease. */
			if (netctl_ipam_mac_inuse(net_ipam, d->mac)) {
				xasprintf(cause, "MAC of NIC %s is another "
				    "NIC's here", d->id);
				goto fail;
			}
			netctl_ipam_mac_reserve(net_ipam, d->mac);
		} else if (netctl_ipam_claim_txn(net_ipam, txn, n->n.name,
		    &n->n.subnet, d->ip, d->mac, vm->def.name, d->id,
		    cause) != 0)
			goto fail;
		count++;
	}
	if (vm_net_save_txn(vm, txn, cause) != 0)
		goto fail;
	if (db_commit(txn, cause) != 0) {
		txn = NULL;
		goto fail;
	}
	for (i = 0; i < vm->def.nnics; i++) {
		for (k = 0; k < i; k++) {
			if (strcmp(vm->def.nics[k].network,
			    vm->def.nics[i].network) == 0)
				break;
		}
		if (k == i && vm->def.nics[i].ip != 0)
			net_leases_changed(vm->def.nics[i].network, 0);
	}
	return (0);
fail:
	if (txn != NULL)
		db_abort(txn);
	for (i = 0; i < count; i++)
		netctl_ipam_mac_forget(net_ipam, vm->def.nics[i].mac);
	return (-1);
}

/*
 * The target, before it tells the source where to send: 0 if the
 * ruleset lists the VM's TAPs (or it has none); else 1, and cb(vm, arg,
 * NULL) once it does, or cb(vm, arg, why) if it failed.
 */
int
vm_migrate_nic_wait(struct vm *vm, int arg, vm_net_rules_cb cb)
{
	struct vm_netrt	*x;

	if ((x = vm_net_rt_find(vm->def.name)) == NULL)
		return (0);
	switch (x->rules) {
	case VM_NET_RULES_OK:
		return (0);
	case VM_NET_RULES_PENDING:
		x->rules_cb = cb;
		x->rules_arg = arg;
		return (1);
	case VM_NET_RULES_FAILED:
		cb(vm, arg, x->rules_err);
		return (1);
	}
	return (0);
}
