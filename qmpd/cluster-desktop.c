/*
 * Office users' desktops in cluster mode (issue 13). Users and their
 * assignments are etcd's (userdb-etcd.c: owners/VM), so any host assigns
 * any desktop etcd defines (vms/VM) and lists a user's desktops wherever
 * they run. The broker's start goes through placement like vm.start, so
 * the desktop never runs where placement does not say, and its host
 * makes the local record then; a request for a desktop that is on
 * another host answers with that host's name.
 */
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "log.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"

/* The host a cluster desktop belongs to: placed there, else pinned. */
static const char *
cluster_desktop_home(const char *name, const char *pin)
{
	const char	*host;

	if ((host = cluster_place_host(name)) != NULL)
		return (host);
	return (pin);
}

#define CLUSTER_DESKTOP_MOVED_MS	30000	/* a watch lags less */

/* Desktops that migrated away from here: {vm: {host, at (ms)}}. */
static json_t	*cluster_desktop_moved_to;

/*
 * VM name migrated from here to host: for a moment this host's watch
 * may still place it here, and a broker asking (the RDP gateway looking
 * for the desktop's console) must hear where it went, not that it is
 * stopped.
 */
void
cluster_desktop_moved(const char *name, const char *host)
{
	if (cluster_desktop_moved_to == NULL)
		cluster_desktop_moved_to = json_object();
	json_object_set_new(cluster_desktop_moved_to, name, json_pack(
	    "{s:s,s:I}", "host", host, "at", (json_int_t)vm_migrate_now_ms()));
}

/* Where name went, if it left here a moment ago; else NULL. */
static const char *
cluster_desktop_went(const char *name)
{
	json_t	*m;

	m = cluster_desktop_moved_to == NULL ? NULL :
	    json_object_get(cluster_desktop_moved_to, name);
	if (m == NULL)
		return (NULL);
	if (vm_migrate_now_ms() - json_integer_value(json_object_get(m,
	    "at")) > CLUSTER_DESKTOP_MOVED_MS) {
		json_object_del(cluster_desktop_moved_to, name);
		return (NULL);
	}
	return (json_string_value(json_object_get(m, "host")));
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
 * it on another host, say which (the broker's view was behind); if it is
 * the user's and placed nowhere yet, a start places it (placement picks
 * the host), anything else waits for that.
 */
int
cluster_desktop_elsewhere(struct cmd_req *req, const char *name)
{
	struct cluster_place	*p = cluster_desktop_place(name);
	const char		*home, *owner;
	const char		*login = cmd_arg_str(req, "login", "");

	if (p == NULL)
		return (-1);
	home = cluster_desktop_home(name, cluster_place_pin(p));
	/* Our watch has not seen the migration's swap yet. */
	if ((home == NULL || strcmp(home, cluster_name()) == 0) &&
	    cluster_desktop_went(name) != NULL)
		home = cluster_desktop_went(name);
	owner = userdb_owner(name, NULL);
	if ((home == NULL || strcmp(home, cluster_name()) == 0) &&
	    owner != NULL && strcmp(owner, login) == 0) {
		if (strcmp(req->entry->name, "desktop.power") == 0 &&
		    strcmp(cmd_arg_str(req, "action", ""), "start") == 0) {
			log_info("cluster: %s: start for %s, through "
			    "placement", name, login);
			return (cluster_cmd_start(req, name));
		}
		cmd_error(req, ERR_STATE, "desktop %.64s is not running: "
		    "start it first", name);
		return (CMD_RETURN_DONE);
	}
	if (home == NULL || strcmp(home, cluster_name()) == 0)
		return (-1);
	log_warnx("%s of desktop %.64s for %s: it is on host %s",
	    req->entry->name, name, cmd_arg_str(req, "login", ""), home);
	cmd_error(req, ERR_STATE, "desktop %.64s is on host %s", name, home);
	return (CMD_RETURN_DONE);
}

/* Does etcd define VM name (as this host's watch saw)? */
int
cluster_desktop_defined(const char *name)
{
	return (cluster_desktop_place(name) != NULL);
}

/* A desktop with no record here, as etcd tells it: state, pool, host. */
json_t *
cluster_desktop_json(const char *name)
{
	struct cluster_place	*p = cluster_desktop_place(name);
	json_t			*def = cluster_place_def(p);

	return (json_pack("{s:s,s:O?,s:s?}", "state", p == NULL ? "unknown" :
	    cluster_place_running(p) ? "running" : "stopped", "pool",
	    json_object_get(def, "pool"), "host", cluster_place_at(p)));
}
