/*
 * A cluster desktop's NICs in its etcd definition (vms/VM's "nets": the
 * network of each NIC, in order, as vm create takes them; MACs and
 * addresses are each host's leases). vm nic-add and nic-rm change it by
 * compare-and-swap on the key's mod_revision, as every definition write
 * does, so a failover, a cold start on another host and vm show anywhere
 * see the NICs a running desktop has:
 *
 *   nic-add   etcd first, then the hotplug; a hotplug that fails writes
 *             etcd back. An etcd write that fails adds nothing: QEMU
 *             never has a NIC etcd does not know.
 *   nic-rm    on a running desktop QEMU first (the guest lets go), then
 *             etcd: while the guest holds the NIC etcd still lists it.
 *             On a stopped copy etcd first, then the copy.
 *
 * Between commands, cluster_nic_sync keeps the two in step: a copy whose
 * NICs changed here without etcd taking it (an unplug the guest finished
 * after the command answered, a write that failed) writes its own, and a
 * stopped copy on any host takes etcd's (keeping the leases of NICs
 * whose network stays), so a start there boots what the cluster defines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#include "net.h"
#include "netctl.h"

#define CLUSTER_NIC_RETRY_S	2	/* a failed write is tried again */

/* Desktops whose NICs a command or a write here is changing. */
static json_t		*nic_busy;
/* Desktops whose local NICs etcd has not taken yet. */
static json_t		*nic_dirty;
/* Set while a pull changes a stopped copy: its events are not news. */
static int		 nic_pulling;
static struct event	*nic_retry_ev;

/* A command or a sync's write in flight. */
struct nic_op {
	struct cmd_req	*req;		/* NULL for a sync */
	char		 name[VM_NAME_MAX];
	char		*network;	/* added, or the removed NIC's */
	char		*mac;		/* nic-rm's */
	json_t		*rec;		/* the vms/ value being written */
	json_t		*result;	/* the local answer, for nic-rm */
	char		*errclass;	/* nic-add's failure, while etcd */
	char		*cause;		/* goes back */
};

static void	nic_kick(void);

static int
nic_is_busy(const char *name)
{
	return (json_object_get(nic_busy, name) != NULL);
}

static void
nic_set(json_t **set, const char *name, int on)
{
	if (*set == NULL)
		*set = json_object();
	if (on)
		json_object_set_new(*set, name, json_true());
	else
		json_object_del(*set, name);
}

static struct nic_op *
nic_op_new(struct cmd_req *req, const char *name)
{
	struct nic_op	*op;

	op = xcalloc(1, sizeof *op);
	op->req = req;
	strlcpy(op->name, name, sizeof op->name);
	nic_set(&nic_busy, name, 1);
	return (op);
}

/* The op ends: the desktop is free for the sync again. */
static void
nic_op_free(struct nic_op *op)
{
	nic_set(&nic_busy, op->name, 0);
	free(op->network);
	free(op->mac);
	json_decref(op->rec);
	json_decref(op->result);
	free(op->errclass);
	free(op->cause);
	free(op);
}

/* The networks of vm's NICs, in order, as etcd's "nets" says them. */
static json_t *
nic_local_nets(const struct vm *vm)
{
	json_t	*a = json_array();
	u_int	 i;

	for (i = 0; i < vm->def.nnics; i++)
		json_array_append_new(a, json_string(vm->def.nics[i].network));
	return (a);
}

/* etcd's "nets" of p (borrowed; NULL: none). */
static json_t *
nic_etcd_nets(const struct cluster_place *p)
{
	return (json_object_get(cluster_place_def(p), "nets"));
}

/* Do a and b name the same networks as often (order aside)? */
static int
nic_same(json_t *a, json_t *b)
{
	int	keep[VM_NICS_MAX + 1];

	if (json_array_size(a) > VM_NICS_MAX)
		return (0);
	return (cluster_nic_plan(a, b, keep, NULL) == 0);
}

/*
 * Write nets (stolen) as p's NICs, CAS on the revision the watch saw;
 * cb gets op, whose rec is the value written.
 */
static void
nic_put(struct cluster_place *p, json_t *nets, etcd_cb cb, struct nic_op *op)
{
	json_t	*def;
	char	*key, *val;
	int64_t	 rev = p->def_rev;

	json_decref(op->rec);
	op->rec = json_deep_copy(p->def);
	def = json_object_get(op->rec, "def");
	if (json_array_size(nets) == 0) {
		json_object_del(def, "nets");
		json_decref(nets);
	} else
		json_object_set_new(def, "nets", nets);
	key = cluster_key("vms/%s", p->name);
	val = json_dumps(op->rec, JSON_COMPACT);
	/* A test's etcd that refuses it: a revision that never matches. */
	if (op->network != NULL && op->req != NULL && test_hook_fail("nic-cas",
	    op->network))
		rev = INT64_MAX;
	etcd_cas(cluster_etcd, key, rev, val, 0, cb, op);
	free(key);
	free(val);
}

/*
 * Why a CAS answer is no success (NULL: it is), for a one-line error. A
 * success is this host's view at once (the watch says the same soon), so
 * that the next write compares against it.
 */
static const char *
nic_put_failed(struct nic_op *op, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_place	*p;
	json_int_t		 rev;

	if (errclass != NULL)
		return (cause);
	if (!json_is_true(json_object_get(res, "succeeded")))
		return ("the definition changed meanwhile");
	rev = json_integer_value(json_object_get(json_object_get(res,
	    "header"), "revision"));
	if ((p = cluster_place_find(op->name)) != NULL && p->def != NULL &&
	    rev > p->def_rev) {
		json_decref(p->def);
		p->def = json_incref(op->rec);
		p->def_rev = rev;
	}
	return (NULL);
}

static void
nic_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	cluster_nic_sync_all();
}

/* Look at every desktop again in s seconds (0: once this event is over). */
static void
nic_again(int s)
{
	struct timeval	tv = { s, 0 };

	if (nic_retry_ev == NULL)
		nic_retry_ev = evtimer_new(qmpd->base, nic_retry_cb, NULL);
	if (s == 0 || !evtimer_pending(nic_retry_ev, NULL))
		evtimer_add(nic_retry_ev, &tv);
}

/* A write failed: again in a moment. */
static void
nic_retry(void)
{
	nic_again(CLUSTER_NIC_RETRY_S);
}

/*
 * Again once the caller is done: a NIC op of vm-nic.c that called us
 * still holds the desktop until it returns.
 */
static void
nic_kick(void)
{
	nic_again(0);
}

/* ---- the sync ---- */

static void
nic_push_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	struct nic_op	*op = arg;
	const char	*why;

	if ((why = nic_put_failed(op, res, errclass, cause)) != NULL) {
		log_warnx("cluster: %s: its NICs not written to etcd: %s "
		    "(again in %d s)", op->name, why, CLUSTER_NIC_RETRY_S);
		nic_retry();
	} else {
		log_info("cluster: %s: its NICs written to etcd", op->name);
		nic_set(&nic_dirty, op->name, 0);
	}
	nic_op_free(op);
}

/* A pull's NIC change that failed: the log says so. */
static void
nic_pull_done(void *arg, json_t *result, const char *errclass,
    const char *cause)
{
	if (errclass != NULL)
		log_warnx("cluster: %s: taking etcd's NICs: %s",
		    (const char *)arg, cause);
	json_decref(result);
}

/* Take etcd's networks into vm, a stopped copy, keeping what stays. */
static void
nic_pull(struct vm *vm, json_t *etcd)
{
	json_t		*local = nic_local_nets(vm), *add, *v;
	char		 gone[VM_NICS_MAX][NETCTL_MACSTRLEN];
	char		*cause = NULL;
	const char	*k;
	int		 keep[VM_NICS_MAX];
	size_t		 i, ngone = 0;

	cluster_nic_plan(local, etcd, keep, &add);
	json_decref(local);
	/* By MAC, taken first: each removal reorders the definition. */
	for (i = 0; i < vm->def.nnics; i++) {
		if (!keep[i])
			netctl_mac_format(vm->def.nics[i].mac, gone[ngone++],
			    sizeof gone[0]);
	}
	log_info("cluster: %s: its NICs here become etcd's", vm->def.name);
	nic_pulling = 1;
	for (i = 0; i < ngone; i++)
		vm_nic_rm(vm, gone[i], nic_pull_done, vm->def.name);
	json_array_foreach(add, i, v) {
		k = json_string_value(v);
		if (vm_net_usable(k, &cause) == NULL) {
			log_warnx("cluster: %s: etcd gives it a NIC on %s: %s "
			    "here (qdesk net create %s)", vm->def.name, k,
			    cause, k);
			free(cause);
			cause = NULL;
			continue;
		}
		vm_nic_add(vm, k, nic_pull_done, vm->def.name);
	}
	nic_pulling = 0;
	json_decref(add);
}

/*
 * Bring vm's NICs and etcd's in step: a copy whose NICs changed here
 * without etcd taking it (an unplug the guest finished late, a write
 * that failed) writes its own, if it runs here or nowhere; any other
 * stopped copy takes etcd's.
 */
static void
nic_sync(struct cluster_place *p)
{
	struct vm	*vm;
	struct nic_op	*op;
	json_t		*local;

	if (p == NULL || p->def == NULL || (vm = vm_find(p->name)) == NULL ||
	    nic_is_busy(p->name) || vm_nic_busy(vm) != NULL ||
	    vm_migrate_busy(vm) || !cluster_host_joined() || cluster_fencing())
		return;
	local = nic_local_nets(vm);
	if (nic_same(local, nic_etcd_nets(p))) {
		nic_set(&nic_dirty, p->name, 0);
		json_decref(local);
		return;
	}
	if (json_object_get(nic_dirty, p->name) != NULL) {
		if (vm_is_active(vm) && !cluster_place_mine(p)) {
			json_decref(local);
			return;		/* not ours to say: killed soon */
		}
		op = nic_op_new(NULL, p->name);
		nic_put(p, local, nic_push_cb, op);
		return;
	}
	json_decref(local);
	/*
	 * A running copy that differs without a change here (a NIC added
	 * before etcd kept them) is left: the next nic-add or nic-rm writes
	 * it, and a stale copy that booted short of a network here never
	 * strips etcd's definition.
	 */
	if (!vm_is_active(vm))
		nic_pull(vm, nic_etcd_nets(p));
}

/* The watch saw p's definition or placement change. */
void
cluster_nic_sync(struct cluster_place *p)
{
	nic_sync(p);
}

void
cluster_nic_sync_all(void)
{
	struct cluster_place	*p, *p1;

	TAILQ_FOREACH_SAFE(p, &cluster_places, entry, p1)
		nic_sync(p);
}

/*
 * vm.nics: a NIC of a local VM came or went (vm-nic.c), outside a
 * command here: an unplug the guest finished late, a NIC whose unplug
 * ended with QEMU. etcd is told once the op that emitted it is over.
 */
void
cluster_nic_event(const char *event, const char *vm, json_t *fields,
    void *arg)
{
	struct cluster_place	*p;

	if (strcmp(event, "vm.nics") != 0 || vm == NULL || nic_pulling ||
	    nic_is_busy(vm))
		return;
	if ((p = cluster_place_find(vm)) == NULL || p->def == NULL)
		return;
	nic_set(&nic_dirty, vm, 1);
	nic_kick();
}

/* ---- the commands ---- */

/*
 * The NICs a command's new definition starts from: a running copy's own
 * (QEMU has them), else etcd's (the cluster's; a stopped copy here may
 * lag), less one NIC on network gone if not NULL.
 */
static json_t *
nic_nets_base(struct cluster_place *p, struct vm *vm, const char *gone)
{
	json_t	*nets, *v;
	size_t	 i;

	if (vm != NULL && vm_is_active(vm))
		return (nic_local_nets(vm));
	nets = json_deep_copy(nic_etcd_nets(p));
	if (!json_is_array(nets)) {
		json_decref(nets);
		nets = json_array();
	}
	json_array_foreach(nets, i, v) {
		if (gone != NULL && json_is_string(v) &&
		    strcmp(json_string_value(v), gone) == 0) {
			json_array_remove(nets, i);
			break;
		}
	}
	return (nets);
}

/* A command's end: the answer, then the desktop is free for the sync. */
static void
nic_op_done(struct nic_op *op, json_t *result, const char *errclass,
    const char *cause)
{
	if (errclass != NULL)
		cmd_error(op->req, errclass, "%s", cause);
	else
		cmd_reply(op->req, result);
	nic_op_free(op);
	nic_kick();
}

/* etcd's definition back without the NIC that was not added: answer. */
static void
nic_add_revert_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct nic_op	*op = arg;
	struct vm	*vm = vm_find(op->name);
	const char	*why;

	if ((why = nic_put_failed(op, res, errclass, cause)) != NULL) {
		log_warnx("cluster: %s: etcd's definition still lists the NIC "
		    "on %s that was not added: %s", op->name, op->network, why);
		/* A running copy's NICs are QEMU's: written again soon. */
		if (vm != NULL && vm_is_active(vm)) {
			nic_set(&nic_dirty, op->name, 1);
			nic_retry();
		}
	}
	nic_op_done(op, NULL, op->errclass, op->cause);
}

/*
 * A command whose etcd write came first was refused by etcd: nothing was
 * done, and the admin is told so (what: "the NIC, nothing added").
 */
static void
nic_refused(struct nic_op *op, const char *cmd, const char *what,
    const char *errclass, const char *why)
{
	char	*msg;

	xasprintf(&msg, "vm %s %s: etcd did not take %s: %s%s", cmd,
	    op->name, what, why, errclass == NULL ? " (try again)" : "");
	nic_op_done(op, NULL, errclass != NULL ? errclass : ERR_STATE, msg);
	free(msg);
}

/* nic-add's hotplug (or a stopped copy's change) answered. */
static void
nic_add_done(void *arg, json_t *result, const char *errclass,
    const char *cause)
{
	struct nic_op		*op = arg;
	struct cluster_place	*p = cluster_place_find(op->name);

	if (errclass == NULL || p == NULL || p->def == NULL) {
		nic_op_done(op, result, errclass, cause);
		return;
	}
	/* etcd lists it, QEMU has not: etcd goes back, then the answer. */
	log_warnx("cluster: %s: NIC on %s not added (%s): etcd's definition "
	    "goes back", op->name, op->network, cause);
	op->errclass = xstrdup(errclass);
	op->cause = xstrdup(cause);
	nic_put(p, nic_nets_base(p, vm_find(op->name), op->network),
	    nic_add_revert_cb, op);
}

/* nic-add's etcd write answered: now QEMU, or nothing. */
static void
nic_add_put_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct nic_op	*op = arg;
	struct vm	*vm;
	const char	*why;

	if ((why = nic_put_failed(op, res, errclass, cause)) != NULL) {
		nic_refused(op, "nic-add", "the NIC, nothing added", errclass,
		    why);
		return;
	}
	log_info("cluster: %s: NIC on %s in etcd's definition", op->name,
	    op->network);
	if ((vm = vm_find(op->name)) == NULL) {
		/* Defined in etcd only: the host that starts it leases it. */
		nic_op_done(op, json_pack("{s:s,s:s}", "name", op->name,
		    "network", op->network), NULL, NULL);
		return;
	}
	if (test_hook_fail("nic-plug", op->network)) {
		nic_add_done(op, NULL, ERR_QEMU, "test hook: no hotplug");
		return;
	}
	vm_nic_add(vm, op->network, nic_add_done, op);
}

/* nic-rm's etcd write answered: the NIC is out of QEMU already. */
static void
nic_rm_put_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct nic_op	*op = arg;
	const char	*why;
	json_t		*result;
	char		*msg;

	if ((why = nic_put_failed(op, res, errclass, cause)) != NULL) {
		/* QEMU has let go: etcd is written again until it takes it. */
		nic_set(&nic_dirty, op->name, 1);
		nic_retry();
		xasprintf(&msg, "vm nic-rm %s: NIC %s is removed here, but "
		    "etcd's definition still lists it: %s (qmpd writes it "
		    "again in %d s)", op->name, op->mac, why,
		    CLUSTER_NIC_RETRY_S);
		nic_op_done(op, NULL, errclass != NULL ? errclass : ERR_STATE,
		    msg);
		free(msg);
		return;
	}
	nic_set(&nic_dirty, op->name, 0);
	result = op->result;
	op->result = NULL;
	nic_op_done(op, result, NULL, NULL);
}

/* nic-rm's unplug (or a stopped copy's change) answered: then etcd. */
static void
nic_rm_done(void *arg, json_t *result, const char *errclass,
    const char *cause)
{
	struct nic_op		*op = arg;
	struct cluster_place	*p = cluster_place_find(op->name);
	struct vm		*vm = vm_find(op->name);

	if (errclass != NULL || p == NULL || p->def == NULL || vm == NULL) {
		nic_op_done(op, result, errclass != NULL ? errclass :
		    ERR_NOTFOUND, errclass != NULL ? cause : "the VM went "
		    "away meanwhile");
		return;
	}
	op->result = result;
	nic_put(p, nic_nets_base(p, vm, op->network), nic_rm_put_cb, op);
}

/* A stopped copy's NIC goes once etcd's definition let it go. */
static void
nic_rm_local_done(void *arg, json_t *result, const char *errclass,
    const char *cause)
{
	nic_op_done(arg, result, errclass, cause);
}

/* nic-rm of a stopped copy: etcd first, then the copy, or nothing. */
static void
nic_rm_first_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct nic_op	*op = arg;
	struct vm	*vm;
	const char	*why;

	if ((why = nic_put_failed(op, res, errclass, cause)) != NULL) {
		nic_refused(op, "nic-rm", "the removal, nothing removed",
		    errclass, why);
		return;
	}
	if ((vm = vm_find(op->name)) == NULL) {
		nic_op_done(op, json_object(), NULL, NULL);
		return;
	}
	vm_nic_rm(vm, op->mac, nic_rm_local_done, op);
}

/* Is the command this host's: the desktop runs here or nowhere? */
static int
nic_here(struct cmd_req *req, struct cluster_place *p, struct vm *vm)
{
	const char	*at = cluster_place_at(p);

	if ((cluster_place_running(p) && !cluster_place_mine(p)) ||
	    (vm != NULL && vm_is_active(vm) && !cluster_place_mine(p))) {
		cmd_error(req, ERR_STATE, "VM %s runs on host %s: change its "
		    "NICs there (qdesk on %s)", p->name, at != NULL ? at :
		    "another host", at != NULL ? at : "that host");
		return (0);
	}
	if (nic_is_busy(p->name) || (vm != NULL && vm_nic_busy(vm) != NULL)) {
		cmd_error(req, ERR_BUSY, "VM %s: a NIC is being added or "
		    "removed: try again once that has answered", p->name);
		return (0);
	}
	if (vm != NULL && vm_migrate_busy(vm)) {
		cmd_error(req, ERR_BUSY, "VM %s is migrating: change its NICs "
		    "once vm migrate has answered", p->name);
		return (0);
	}
	return (1);
}

static enum cmd_retval
nic_add(struct cmd_req *req, struct cluster_place *p, struct vm *vm)
{
	const char	*network = cmd_arg_str(req, "network", "");
	struct nic_op	*op;
	json_t		*nets;
	char		*cause = NULL;

	if (vm != NULL && vm_net_usable(network, &cause) == NULL) {
		cmd_error(req, net_find(network) == NULL ? ERR_NOTFOUND :
		    ERR_BUSY, "%s", cause);
		free(cause);
		return (CMD_RETURN_DONE);
	}
	if (vm != NULL && vm_is_active(vm) && (vm->qmp == NULL ||
	    (vm->state != VM_RUNNING && vm->state != VM_PAUSED))) {
		cmd_error(req, ERR_STATE, "VM %s is %s: add the NIC once it "
		    "runs or is stopped", p->name, vm_state_name(vm->state));
		return (CMD_RETURN_DONE);
	}
	nets = nic_nets_base(p, vm, NULL);
	if (json_array_size(nets) >= VM_NICS_MAX ||
	    (vm != NULL && vm->def.nnics >= VM_NICS_MAX)) {
		cmd_error(req, ERR_ARG, "VM %s has %d NICs already, the most "
		    "it can have", p->name, VM_NICS_MAX);
		json_decref(nets);
		return (CMD_RETURN_DONE);
	}
	json_array_append_new(nets, json_string(network));
	op = nic_op_new(req, p->name);
	op->network = xstrdup(network);
	nic_put(p, nets, nic_add_put_cb, op);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
nic_rm(struct cmd_req *req, struct cluster_place *p, struct vm *vm)
{
	const char	*mac = cmd_arg_str(req, "mac", "");
	struct nic_op	*op;
	uint8_t		 m[6];
	u_int		 i;

	if (vm == NULL) {
		cmd_error(req, ERR_STATE, "VM %s has no copy on this host to "
		    "find MAC %s in (etcd names only its NICs' networks): "
		    "remove it on the host that last ran it", p->name, mac);
		return (CMD_RETURN_DONE);
	}
	op = nic_op_new(req, p->name);
	op->mac = xstrdup(mac);
	/* Its network: what a stopped copy's etcd definition loses. */
	for (i = 0; netctl_mac_parse(mac, m) == 0 && i < vm->def.nnics; i++) {
		if (memcmp(vm->def.nics[i].mac, m, sizeof m) == 0) {
			op->network = xstrdup(vm->def.nics[i].network);
			break;
		}
	}
	if (vm_is_active(vm) || op->network == NULL) {
		/* The unplug first (or vm-nic.c's answer to a bad MAC). */
		vm_nic_rm(vm, op->mac, nic_rm_done, op);
		return (CMD_RETURN_WAIT);
	}
	nic_put(p, nic_nets_base(p, vm, op->network), nic_rm_first_cb, op);
	return (CMD_RETURN_WAIT);
}

/*
 * vm.nic_add and vm.nic_rm of a desktop etcd defines; -1 when the VM is
 * only this host's (made before it joined a cluster): the local command.
 */
int
cluster_nic_cmd(struct cmd_req *req)
{
	const char		*name = cmd_arg_str(req, "name", "");
	struct cluster_place	*p = cluster_place_find(name);
	struct vm		*vm = vm_find(name);

	if (p == NULL || p->def == NULL)
		return (-1);
	if (!cluster_host_joined()) {
		cmd_error(req, ERR_STATE, "this host (%s) is not in the cluster "
		    "now (no lease in etcd): VM %s's definition cannot change",
		    cluster_name(), name);
		return (CMD_RETURN_DONE);
	}
	if (cluster_quorum_refuse(req))
		return (CMD_RETURN_DONE);
	if (!nic_here(req, p, vm))
		return (CMD_RETURN_DONE);
	if (strcmp(req->entry->name, "vm.nic_add") == 0)
		return (nic_add(req, p, vm));
	return (nic_rm(req, p, vm));
}
