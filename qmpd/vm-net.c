/*
 * The NICs of VMs.  A NIC is a struct vm_def_nic in the VM definition
 * (id, network, MAC, and an address except on bridge-mode networks), its
 * MAC and address leased in the same transaction that saves the
 * definition.  At start qmpd opens one TAP per NIC, named from its MAC
 * (qtap + the MAC's last three bytes, unique since all are 52:54:00),
 * enslaves it and hands the fd to QEMU; the guest runs (cont) only once
 * the nft ruleset lists the TAP, since the bridge table drops frames from
 * unlisted qdesk TAPs.  The TAP goes when QEMU closes it.  Hotplug is
 * vm-nic.c's.
 */
#include <sys/stat.h>

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
#include "link.h"
#include "net.h"
#include "netctl.h"

static TAILQ_HEAD(, vm_netrt)	vm_netrts = TAILQ_HEAD_INITIALIZER(vm_netrts);
static unsigned int		vm_net_gen;


/* The runtime view of a definition's NIC: device and TAP names, no fd. */
void
vm_net_nic_load(struct vm_nic *nic, const struct vm_def_nic *d)
{
	memset(nic, 0, sizeof *nic);
	nic->fd = -1;
	strlcpy(nic->id, d->id, sizeof nic->id);
	snprintf(nic->dev, sizeof nic->dev, "%s-nic", d->id);
	strlcpy(nic->network, d->network, sizeof nic->network);
	memcpy(nic->mac, d->mac, sizeof nic->mac);
	nic->ip = d->ip;
	snprintf(nic->tap, sizeof nic->tap, "%s%02x%02x%02x",
	    NETCTL_TAP_PREFIX, nic->mac[3], nic->mac[4], nic->mac[5]);
}

/* The definition's view of a NIC. */
void
vm_net_nic_def(const struct vm_nic *nic, struct vm_def_nic *d)
{
	memset(d, 0, sizeof *d);
	strlcpy(d->id, nic->id, sizeof d->id);
	strlcpy(d->network, nic->network, sizeof d->network);
	memcpy(d->mac, nic->mac, sizeof d->mac);
	d->ip = nic->ip;
}

json_t *
vm_net_nic_json(const struct vm_nic *nic)
{
	struct vm_def_nic	d;

	vm_net_nic_def(nic, &d);
	return (vm_def_nic_json(&d));
}

struct vm_netrt *
vm_net_rt_find(const char *name)
{
	struct vm_netrt	*x;

	TAILQ_FOREACH(x, &vm_netrts, entry) {
		if (strcmp(x->vm, name) == 0)
			return (x);
	}
	return (NULL);
}

struct vm_netrt *
vm_net_rt_new(const char *name)
{
	struct vm_netrt	*x;

	x = xcalloc(1, sizeof *x);
	strlcpy(x->vm, name, sizeof x->vm);
	x->rules = VM_NET_RULES_OK;
	TAILQ_INSERT_TAIL(&vm_netrts, x, entry);
	return (x);
}

/* Forgets an active VM's TAPs; fds still ours are closed (TAPs go). */
void
vm_net_rt_free(struct vm_netrt *x)
{
	size_t	i;

	TAILQ_REMOVE(&vm_netrts, x, entry);
	for (i = 0; i < x->nnics; i++) {
		if (x->nics[i].fd != -1)
			close(x->nics[i].fd);
	}
	free(x->nics);
	free(x->fds);
	free(x->rules_err);
	free(x);
}

void
vm_net_rt_add(struct vm_netrt *x, const struct vm_nic *nic)
{
	x->nics = xrealloc(x->nics, (x->nnics + 1) * sizeof *x->nics);
	x->nics[x->nnics++] = *nic;
}

void
vm_net_rt_remove(struct vm_netrt *x, const char *id)
{
	size_t	i;

	for (i = 0; i < x->nnics; i++) {
		if (strcmp(x->nics[i].id, id) != 0)
			continue;
		if (x->nics[i].fd != -1)
			close(x->nics[i].fd);
		memmove(&x->nics[i], &x->nics[i + 1],
		    (x->nnics - i - 1) * sizeof *x->nics);
		x->nnics--;
		return;
	}
}

void
vm_net_taps(struct netctl_nft_tap **tapsp, size_t *np)
{
	static struct netctl_nft_tap	*taps;
	struct vm_netrt			*x;
	size_t				 n = 0, i;

	TAILQ_FOREACH(x, &vm_netrts, entry)
		n += x->nnics;
	free(taps);
	taps = xcalloc(n + 1, sizeof *taps);
	n = 0;
	TAILQ_FOREACH(x, &vm_netrts, entry) {
		for (i = 0; i < x->nnics; i++) {
			taps[n].tap = x->nics[i].tap;
			memcpy(taps[n].mac, x->nics[i].mac, 6);
			taps[n].ip = x->nics[i].ip;
			n++;
		}
	}
	*tapsp = taps;
	*np = n;
}

json_t *
vm_net_users(const char *network)
{
	struct vm	*vm;
	json_t		*users = json_array();
	u_int		 i;

	TAILQ_FOREACH(vm, &vms, entry) {
		for (i = 0; i < vm->def.nnics; i++) {
			if (strcmp(vm->def.nics[i].network, network) == 0) {
				json_array_append_new(users,
				    json_string(vm->def.name));
				break;
			}
		}
	}
	return (users);
}

/* Writes vm's record inside txn. */
int
vm_net_save_txn(struct vm *vm, struct db_txn *txn, char **cause)
{
	json_t	*rec;
	int	 rc;

	rec = vm_record(vm);
	rc = db_txn_put(txn, DB_VMS, vm->def.name, rec, cause);
	json_decref(rec);
	return (rc);
}

/*
 * Leases a MAC (and on nat and isolated networks an address) for a new
 * NIC id of vm on network n, inside txn.
 */
int
vm_net_lease(struct vm *vm, struct db_txn *txn, struct net *n,
    const char *id, struct vm_nic *nic, char **cause)
{
	struct netctl_lease	 l;
	char			*why = NULL;

	struct vm_def_nic	 d;

	memset(&d, 0, sizeof d);
	if (n->n.mode == NETCTL_BRIDGE) {
		if (netctl_ipam_mac_new(net_ipam, d.mac, cause) != 0)
			return (-1);
	} else {
		if (netctl_ipam_alloc_txn(net_ipam, txn, n->n.name,
		    &n->n.subnet, vm->def.name, id, &l, &why) != 0) {
			xasprintf(cause, "%s", why);
			free(why);
			return (-1);
		}
		memcpy(d.mac, l.mac, sizeof d.mac);
		d.ip = l.ip;
		netctl_lease_clear(&l);
	}
	strlcpy(d.id, id, sizeof d.id);
	strlcpy(d.network, n->n.name, sizeof d.network);
	vm_net_nic_load(nic, &d);
	return (0);
}

/* A network a NIC can be put on now, or NULL with cause. */
struct net *
vm_net_usable(const char *name, char **cause)
{
	struct net	*n;

	if ((n = net_find(name)) == NULL) {
		xasprintf(cause, "no network named %s", name);
		return (NULL);
	}
	if (n->pending) {
		xasprintf(cause, "network %s is still being created", name);
		return (NULL);
	}
	return (n);
}

/* The lowest netN none of the n NICs uses. */
void
vm_net_next_id(const struct vm_def_nic *nics, u_int n, char *id, size_t len)
{
	u_int	i;
	int	k, used;

	for (k = 0;; k++) {
		snprintf(id, len, "net%d", k);
		used = 0;
		for (i = 0; i < n; i++) {
			if (strcmp(nics[i].id, id) == 0)
				used = 1;
		}
		if (!used)
			return;
	}
}

/*
 * vm.create with "nets": one NIC per network, leased in the transaction
 * that saves the new VM, so that a failure leaves neither behind.
 * Without "nets" this is vm_save().
 */
int
vm_net_create(struct vm *vm, char **cause)
{
	struct vm_def	*def = &vm->def;
	struct db_txn	*txn;
	struct vm_nic	 made[VM_NICS_MAX];
	struct net	*n;
	char		 id[16];
	u_int		 i, j, count = 0;

	if (def->nnets == 0)
		return (vm_save(vm, cause));
	for (i = 0; i < def->nnets; i++) {
		if (vm_net_usable(def->nets[i], cause) == NULL)
			return (-1);
	}
	if ((txn = db_begin(qmpd->db, cause)) == NULL)
		return (-1);
	for (i = 0; i < def->nnets; i++) {
		n = net_find(def->nets[i]);
		vm_net_next_id(def->nics, def->nnics, id, sizeof id);
		if (vm_net_lease(vm, txn, n, id, &made[count], cause) != 0)
			goto fail;
		vm_net_nic_def(&made[count], &def->nics[def->nnics++]);
		count++;
	}
	if (vm_net_save_txn(vm, txn, cause) != 0)
		goto fail;
	if (db_commit(txn, cause) != 0) {
		txn = NULL;
		goto fail;
	}
	for (i = 0; i < def->nnets; i++)
		free(def->nets[i]);
	def->nnets = 0;
	for (i = 0; i < count; i++) {
		for (j = 0; j < i; j++) {
			if (strcmp(made[j].network, made[i].network) == 0)
				break;
		}
		if (j == i)
			net_leases_changed(made[i].network, 0);
	}
	return (0);
fail:
	def->nnics = 0;
	if (txn != NULL)
		db_abort(txn);
	for (i = 0; i < count; i++)
		netctl_ipam_mac_forget(net_ipam, made[i].mac);
	return (-1);
}

/* The VM's record and leases are gone: its MACs and run state go too. */
void
vm_net_deleted(struct vm *vm)
{
	struct vm_netrt	*x;
	u_int		 i;

	if ((x = vm_net_rt_find(vm->def.name)) != NULL)
		vm_net_rt_free(x);
	/* vm_delete released the leases with the record; forget the MACs. */
	for (i = 0; i < vm->def.nnics; i++) {
		netctl_ipam_mac_forget(net_ipam, vm->def.nics[i].mac);
		net_leases_changed(vm->def.nics[i].network, 1);
	}
}

/*
 * At daemon start, before re-attaching: every NIC's MAC is reserved,
 * leases no NIC owns are released (a crash between two transactions),
 * and the TAPs of VMs that were running are listed for the ruleset.
 */
void
vm_net_init(void)
{
	struct netctl_lease	*leases;
	struct vm_netrt		*x;
	struct vm_nic		 nic;
	struct vm		*vm;
	const struct vm_def_nic	*d;
	json_t			*v;
	char			*cause = NULL, ip[NETCTL_IPSTRLEN];
	size_t			 count, k;
	u_int			 i;
	int			 found;

	TAILQ_FOREACH(vm, &vms, entry) {
		for (i = 0; i < vm->def.nnics; i++)
			netctl_ipam_mac_reserve(net_ipam, vm->def.nics[i].mac);
	}

	if (netctl_ipam_leases(net_ipam, NULL, &leases, &count,
	    &cause) == -1) {
		log_warnx("leases: %s", cause);
		free(cause);
		cause = NULL;
		count = 0;
		leases = NULL;
	}
	for (k = 0; k < count; k++) {
		found = 0;
		if ((vm = vm_find(leases[k].vm)) != NULL) {
			for (i = 0; i < vm->def.nnics; i++) {
				d = &vm->def.nics[i];
				if (strcmp(d->network, leases[k].network) ==
				    0 && memcmp(d->mac, leases[k].mac, 6) == 0)
					found = 1;
			}
		}
		/* A record qmpd could not read keeps its leases. */
		if (vm == NULL && (v = db_get(qmpd->db, DB_VMS,
		    leases[k].vm)) != NULL) {
			json_decref(v);
			found = 1;
		}
		if (found)
			continue;
		log_warnx("network %s: releasing %s, which no NIC of VM %s "
		    "has", leases[k].network, netctl_ip_format(leases[k].ip,
		    ip, sizeof ip), leases[k].vm);
		if (netctl_ipam_release(net_ipam, leases[k].network,
		    leases[k].ip, &cause) == -1) {
			log_warnx("%s", cause);
			free(cause);
			cause = NULL;
		}
	}
	netctl_leases_free(leases, count);

	TAILQ_FOREACH(vm, &vms, entry) {
		if (!vm_is_active(vm))
			continue;
		x = NULL;
		for (i = 0; i < vm->def.nnics; i++) {
			vm_net_nic_load(&nic, &vm->def.nics[i]);
			if (netctl_link_exists(nic.tap, NULL) != 1)
				continue;
			if (x == NULL)
				x = vm_net_rt_new(vm->def.name);
			vm_net_rt_add(x, &nic);
		}
	}
}

/*
 * At daemon start, once the bridges are back: a running VM's TAP whose
 * bridge the host lost (and qmpd recreated) is enslaved to it again.
 */
void
vm_net_relink(void)
{
	struct vm_netrt	*x;
	struct net	*n;
	char		 master[IFNAMSIZ], *cause = NULL;
	size_t		 i;

	TAILQ_FOREACH(x, &vm_netrts, entry) {
		for (i = 0; i < x->nnics; i++) {
			if ((n = net_find(x->nics[i].network)) == NULL ||
			    netctl_link_master(x->nics[i].tap, master,
			    NULL) != 0 || strcmp(master, n->n.bridge) == 0)
				continue;
			if (netctl_tap_attach(x->nics[i].tap, n->n.bridge,
			    &cause) != 0) {
				log_warnx("%s: %s", x->vm, cause);
				free(cause);
				cause = NULL;
				continue;
			}
			log_info("%s: %s back on %s", x->vm, x->nics[i].tap,
			    n->n.bridge);
		}
	}
}

/* A starting VM whose TAPs have no rules must not run: crashed, quit. */
static void
vm_net_fail_start(struct vm *vm, const char *err)
{
	char	*r;
	char	*cause = NULL;

	xasprintf(&r, "network rules: %s", err);
	vm_set_state(vm, VM_CRASHED, r);
	free(r);
	if ((vm->qmp == NULL || qmp_execute(vm->qmp, "quit", NULL, NULL,
	    NULL) != 0) && vm_kill(vm, &cause) != 0) {
		log_warnx("%s: %s", vm->def.name, cause);
		free(cause);
	}
}

struct vm_net_token {
	char		vm[VM_NAME_MAX];
	unsigned int	gen;
};

/* The ruleset with a starting VM's TAPs is in (or failed). */
static void
vm_net_rules_done(const char *err, void *arg)
{
	struct vm_net_token	*t = arg;
	struct vm_netrt		*x;
	struct vm		*vm;

	x = vm_net_rt_find(t->vm);
	vm = vm_find(t->vm);
	if (x == NULL || x->gen != t->gen) {
		free(t);
		return;
	}
	free(t);
	if (err != NULL) {
		x->rules = VM_NET_RULES_FAILED;
		free(x->rules_err);
		x->rules_err = xstrdup(err);
	} else
		x->rules = VM_NET_RULES_OK;
	/* An incoming migration's answer to its source waits for this. */
	if (x->rules_cb != NULL && vm != NULL) {
		vm_net_rules_cb	cb = x->rules_cb;

		x->rules_cb = NULL;
		/* x may be gone after it (a failed prepare deletes the VM). */
		cb(vm, x->rules_arg, err);
		return;
	}
	if (!x->cont_waiting || vm == NULL)
		return;
	x->cont_waiting = 0;
	if (vm->state != VM_STARTING || vm->qmp == NULL)
		return;
	if (err != NULL)
		vm_net_fail_start(vm, err);
	else
		vm_qmp_cont(vm);
}

/* Opens and attaches the TAP of nic; 0 or -1 with cause. */
int
vm_net_tap(struct vm_nic *nic, char **cause)
{
	struct net	*n;
	char		*why = NULL;

	if ((n = vm_net_usable(nic->network, cause)) == NULL)
		return (-1);
	if (netctl_tap_open(nic->tap, &nic->fd, &why) != 0)
		goto fail;
	if (netctl_tap_attach(nic->tap, n->n.bridge, &why) != 0) {
		close(nic->fd);
		nic->fd = -1;
		goto fail;
	}
	return (0);
fail:
	xasprintf(cause, "NIC %s on %s: %s", nic->id, nic->network, why);
	free(why);
	return (-1);
}

/*
 * vm_start: one TAP per NIC, enslaved and up, its fd (not close-on-exec:
 * QEMU inherits it) in rt; the ruleset update starts now, and cont waits
 * for it (vm_net_cont_wait).
 */
int
vm_net_open(struct vm *vm, struct vm_runtime_paths *rt, char **cause)
{
	struct vm_net_token	*t;
	struct vm_netrt		*x;
	struct vm_nic		 nic;
	u_int			 i;

	rt->tap_fds = NULL;
	rt->ntap_fds = 0;
	if ((x = vm_net_rt_find(vm->def.name)) != NULL)
		vm_net_rt_free(x);
	if (vm->def.nnics == 0)
		return (0);
	x = vm_net_rt_new(vm->def.name);
	x->fds = xcalloc(vm->def.nnics, sizeof *x->fds);
	for (i = 0; i < vm->def.nnics; i++) {
		vm_net_nic_load(&nic, &vm->def.nics[i]);
		if (vm_net_tap(&nic, cause) != 0) {
			vm_net_rt_free(x);
			return (-1);
		}
		vm_net_rt_add(x, &nic);
		x->fds[i] = nic.fd;
	}
	x->gen = ++vm_net_gen;
	x->rules = VM_NET_RULES_PENDING;
	t = xcalloc(1, sizeof *t);
	strlcpy(t->vm, vm->def.name, sizeof t->vm);
	t->gen = x->gen;
	net_nft_update(vm_net_rules_done, t);
	rt->tap_fds = x->fds;
	rt->ntap_fds = x->nnics;
	return (0);
}

/* After the spawn: QEMU has the TAPs, or (spawned 0) nobody will. */
void
vm_net_opened(struct vm *vm, int spawned)
{
	struct vm_netrt	*x;
	size_t		 i;

	if ((x = vm_net_rt_find(vm->def.name)) == NULL)
		return;
	if (!spawned) {
		vm_net_rt_free(x);
		net_nft_update(NULL, NULL);
		return;
	}
	for (i = 0; i < x->nnics; i++) {
		if (x->nics[i].fd != -1) {
			close(x->nics[i].fd);
			x->nics[i].fd = -1;
		}
	}
	free(x->fds);
	x->fds = NULL;
}

/* Before cont: 1 if it must wait for the ruleset (which then sends it). */
int
vm_net_cont_wait(struct vm *vm)
{
	struct vm_netrt	*x;

	if ((x = vm_net_rt_find(vm->def.name)) == NULL)
		return (0);
	switch (x->rules) {
	case VM_NET_RULES_OK:
		return (0);
	case VM_NET_RULES_PENDING:
		x->cont_waiting = 1;
		return (1);
	case VM_NET_RULES_FAILED:
		vm_net_fail_start(vm, x->rules_err);
		return (1);
	}
	return (0);
}

/*
 * QEMU is gone, and its TAPs with it: so are their rules, and a NIC the
 * guest was asked to let go of is gone for good.
 */
void
vm_net_stopped(struct vm *vm)
{
	struct vm_netrt		*x;

	vm_nic_stopped(vm);
	if ((x = vm_net_rt_find(vm->def.name)) == NULL)
		return;
	vm_net_rt_free(x);
	net_nft_update(NULL, NULL);
}

/* vm show: each NIC with its TAP while the VM runs. */
void
vm_net_json(const struct vm *vm, json_t *j)
{
	struct vm_netrt	*x;
	json_t		*a, *c;
	size_t		 k;
	u_int		 i;
	const char	*tap;

	if (vm->def.nnics == 0)
		return;
	x = vm_net_rt_find(vm->def.name);
	a = json_array();
	for (i = 0; i < vm->def.nnics; i++) {
		c = vm_def_nic_json(&vm->def.nics[i]);
		tap = NULL;
		for (k = 0; x != NULL && k < x->nnics; k++) {
			if (strcmp(x->nics[k].id, vm->def.nics[i].id) == 0)
				tap = x->nics[k].tap;
		}
		json_object_set_new(c, "tap", tap != NULL ? json_string(tap) :
		    json_null());
		json_array_append_new(a, c);
	}
	json_object_set_new(j, "nics", a);
}

