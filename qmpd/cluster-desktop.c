/*
 * Office users' desktops in cluster mode (issue 13). Users and their
 * assignments stay in each host's LMDB (a desktop's owner is its local
 * VM record's), so a desktop defined in etcd (vms/VM) is assigned on the
 * host it belongs to: its placement's host, else the host it is pinned
 * to (vm create --host). That host makes the local record then, stopped,
 * from the definition in etcd, as it would when placement starts it
 * there. The broker's start goes through placement like vm.start, so
 * the desktop never runs where placement does not say; a request for a
 * desktop that is on another host answers with that host's name.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "names.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

/* The host a cluster desktop belongs to: placed there, else pinned. */
static const char *
cluster_desktop_home(const char *name, const char *pin)
{
	const char	*host;

	if ((host = cluster_place_host(name)) != NULL)
		return (host);
	return (pin);
}

/* The desktop's place if etcd defines it (as this host's watch saw). */
static struct cluster_place *
cluster_desktop_place(const char *name)
{
	struct cluster_place	*p = cluster_place_find(name);

	return (p != NULL && p->def != NULL ? p : NULL);
}

/*
 * The broker's start of a stopped desktop defined in etcd: placement by
 * CAS, then its host starts it (this one, since the broker routes by
 * placement and pin). Shutdown and reboot act on the local QEMU, and a
 * stop is written back to placement by cluster_place_vm_event.
 */
int
cluster_desktop_power(struct cmd_req *req, struct vm *vm, const char *action)
{
	if (strcmp(action, "start") != 0 ||
	    cluster_desktop_place(vm->def.name) == NULL ||
	    (vm->state != VM_STOPPED && vm->state != VM_CRASHED))
		return (-1);
	log_info("cluster: %s: start for %s, through placement",
	    vm->def.name, cmd_arg_str(req, "login", ""));
	return (cluster_cmd_start(req, vm->def.name));
}

/*
 * A broker request for a desktop that has no record here: if etcd puts
 * it on another host, say which (the broker's view was behind).
 */
int
cluster_desktop_elsewhere(struct cmd_req *req, const char *name)
{
	struct cluster_place	*p = cluster_desktop_place(name);
	const char		*home;

	if (p == NULL || (home = cluster_desktop_home(name,
	    cluster_place_pin(p))) == NULL ||
	    strcmp(home, cluster_name()) == 0)
		return (-1);
	log_warnx("%s of desktop %.64s for %s: it is on host %s",
	    req->entry->name, name, cmd_arg_str(req, "login", ""), home);
	cmd_error(req, ERR_STATE, "desktop %.64s is on host %s", name, home);
	return (CMD_RETURN_DONE);
}

/*
 * Make the local record of a desktop (its vm.create arguments, its pin)
 * if it belongs here; else answer why not.
 */
static int
cluster_desktop_make(struct cmd_req *req, const char *name, json_t *def,
    const char *pin)
{
	struct vm	*vm;
	json_t		*args;
	const char	*home = cluster_desktop_home(name, pin);
	char		*cause = NULL;

	if (home == NULL) {
		cmd_error(req, ERR_STATE, "VM %s is neither pinned to a host "
		    "nor placed: assignments are kept per host, so create it "
		    "with --host H and assign it on H", name);
		return (-1);
	}
	if (strcmp(home, cluster_name()) != 0) {
		cmd_error(req, ERR_STATE, "VM %s is on host %s: assign it "
		    "there (assignments are kept per host)", name, home);
		return (-1);
	}
	args = json_deep_copy(def);
	vm = vm_create(args, &cause);
	json_decref(args);
	if (vm == NULL) {
		cmd_fail(req, ERR_STATE, cause);
		return (-1);
	}
	log_info("cluster: %s: made here (stopped) for its assignment",
	    name);
	notify_emit("vm.created", vm->def.name, NULL);
	return (0);
}

struct cluster_desktop_get {
	struct cmd_req	*req;
	char		*name;
};

/* vms/VM read from etcd itself: this host's watch had not shown it yet. */
static void
cluster_desktop_get_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_desktop_get	*g = arg;
	const char			*val;
	json_t				*rec = NULL;

	val = json_string_value(json_object_get(json_array_get(
	    json_object_get(res, "kvs"), 0), "value"));
	if (errclass != NULL)
		cmd_error(g->req, errclass, "reading VM %s in etcd: %s",
		    g->name, cause);
	else if (val == NULL || (rec = json_loads(val, 0, NULL)) == NULL)
		cmd_error(g->req, ERR_NOTFOUND, "no VM named %s", g->name);
	else if (vm_find(g->name) != NULL ||
	    cluster_desktop_make(g->req, g->name, json_object_get(rec, "def"),
	    json_string_value(json_object_get(rec, "host"))) == 0)
		g->req->entry->exec(g->req);	/* the VM is here now */
	json_decref(rec);
	free(g->name);
	free(g);
}

/*
 * desktop.assign of a VM with no record here: made here if it is this
 * host's, then assigned (the command runs again); -1: not in the
 * cluster either.
 */
int
cluster_desktop_assign(struct cmd_req *req, const char *name)
{
	struct cluster_desktop_get	*g;
	struct cluster_place		*p = cluster_desktop_place(name);
	char				*key, *cause = NULL;

	if (p != NULL) {
		if (cluster_desktop_make(req, name, cluster_place_def(p),
		    cluster_place_pin(p)) != 0)
			return (CMD_RETURN_DONE);
		return (req->entry->exec(req));
	}
	if (names_valid(name, "VM", &cause) != 0) {
		free(cause);
		return (-1);
	}
	g = xcalloc(1, sizeof *g);
	g->req = req;
	g->name = xstrdup(name);
	key = cluster_key("vms/%s", name);
	etcd_get(cluster_etcd, key, 0, cluster_desktop_get_cb, g);
	free(key);
	return (CMD_RETURN_WAIT);
}
