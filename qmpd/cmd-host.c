/*
 * host.* commands (cluster mode): the hosts of the cluster as this host
 * sees them, and draining one (no new placement there). Also
 * image.store_add, which names a store every host mounts at the same
 * path, so that desktops whose disks live there can fail over.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster.h"
#include "etcd.h"
#include "qmpd.h"
#include "xmalloc.h"

/* Answer NotSupported unless qmpd runs with --cluster. */
static int
cmd_host_cluster(struct cmd_req *req)
{
	if (qmpd->cluster != NULL)
		return (1);
	cmd_error(req, ERR_STATE, "%s needs cluster mode (qmpd --cluster "
	    "FILE)", req->entry->name);
	return (0);
}

static enum cmd_retval
cmd_host_list(struct cmd_req *req)
{
	if (!cmd_host_cluster(req))
		return (CMD_RETURN_DONE);
	cmd_reply(req, json_pack("{s:o,s:s}", "hosts", cluster_host_list(),
	    "self", cluster_name()));
	return (CMD_RETURN_DONE);
}

static void
cmd_host_put_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	if (errclass != NULL)
		cmd_error(arg, errclass, "etcd: %s", cause);
	else
		cmd_reply(arg, json_object());
}

/* drain/H present: no new placement on H. */
static enum cmd_retval
cmd_host_drain_set(struct cmd_req *req, int on)
{
	struct cluster_host	*h;
	const char		*name = cmd_arg_str(req, "name", "");
	char			*key, *val;

	if (!cmd_host_cluster(req))
		return (CMD_RETURN_DONE);
	h = cluster_host_find(name);
	if (h == NULL || (h->rec == NULL && h->member == NULL)) {
		cmd_error(req, ERR_NOTFOUND, "no host named %s in the cluster",
		    name);
		return (CMD_RETURN_DONE);
	}
	if (cluster_quorum_refuse(req))
		return (CMD_RETURN_DONE);
	if (on && cmd_arg_bool(req, "live", 0))
		return (cluster_drain_live(req, name));
	key = cluster_key("drain/%s", name);
	if (on) {
		xasprintf(&val, "{\"since\":%lld}", clock_wall_ms());
		etcd_put(cluster_etcd, key, val, 0, 0, cmd_host_put_cb, req);
		free(val);
	} else
		etcd_delete(cluster_etcd, key, 0, cmd_host_put_cb, req);
	free(key);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_host_drain(struct cmd_req *req)
{
	return (cmd_host_drain_set(req, 1));
}

static enum cmd_retval
cmd_host_undrain(struct cmd_req *req)
{
	return (cmd_host_drain_set(req, 0));
}

/* stores/NAME = {"path","shared"}: a store on a path every host mounts. */
static enum cmd_retval
cmd_host_store_add(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	const char	*path = cmd_arg_str(req, "path", "");
	const char	*action = cmd_arg_str(req, "action", "add");
	char		*key, *val;
	json_t		*v;

	if (!cmd_host_cluster(req))
		return (CMD_RETURN_DONE);
	if (strcmp(action, "add") != 0) {
		cmd_error(req, ERR_ARG, "image store %s: only add is known",
		    action);
		return (CMD_RETURN_DONE);
	}
	if (*path != '/' || strlen(path) < 2) {
		cmd_error(req, ERR_ARG, "store path must be absolute, not "
		    "\"%s\"", path);
		return (CMD_RETURN_DONE);
	}
	if (!cmd_arg_bool(req, "shared", 0)) {
		cmd_error(req, ERR_ARG, "a store in a cluster must be --shared "
		    "(on a path every host mounts)");
		return (CMD_RETURN_DONE);
	}
	v = json_pack("{s:s,s:b}", "path", path, "shared", 1);
	val = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	key = cluster_key("stores/%s", name);
	etcd_put(cluster_etcd, key, val, 0, 0, cmd_host_put_cb, req);
	free(key);
	free(val);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_host_evacuate(struct cmd_req *req)
{
	if (!cmd_host_cluster(req))
		return (CMD_RETURN_DONE);
	return (cluster_drain_evacuate(req));
}

/* image.fetch NAME: a host copies a template of ours (cluster-image.c). */
static enum cmd_retval
cmd_host_image_fetch(struct cmd_req *req)
{
	if (!cmd_host_cluster(req))
		return (CMD_RETURN_DONE);
	return (cluster_image_serve(req));
}

static const struct cmd_arg cmd_host_drain_args[] = {
	{ "name", ARG_STR, 1 },
	{ "live", ARG_BOOL, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_host_store_args[] = {
	{ "action", ARG_STR, 0 },
	{ "name", ARG_STR, 1 },
	{ "path", ARG_STR, 1 },
	{ "shared", ARG_BOOL, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_host_entries[] = {
	{ "host.list", NULL, ROLE_ADMIN, cmd_host_list },
	{ "host.drain", cmd_host_drain_args, ROLE_ADMIN, cmd_host_drain },
	{ "host.evacuate", cmd_name_args, ROLE_HOST, cmd_host_evacuate },
	{ "host.undrain", cmd_name_args, ROLE_ADMIN, cmd_host_undrain },
	{ "image.fetch", cmd_name_args, ROLE_HOST, cmd_host_image_fetch },
	{ "image.store", cmd_host_store_args, ROLE_ADMIN, cmd_host_store_add },
	{ NULL, NULL, 0, NULL }
};
