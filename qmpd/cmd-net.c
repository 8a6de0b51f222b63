/*
 * net.* commands, and the vm.nic_* commands that put VMs on networks.
 * A network is created and removed synchronously (netlink, LMDB, a
 * dnsmasq child) and answered once the nft ruleset has followed, from
 * nft's exit callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#include "link.h"
#include "net.h"
#include "netctl.h"
#include "route.h"

/* Look the network up by the "name" argument, or answer NotFound. */
static struct net *
cmd_net_get(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	struct net	*n;

	if ((n = net_find(name)) == NULL)
		cmd_error(req, ERR_NOTFOUND, "no network named %s", name);
	return (n);
}

/* A new network may not share addresses or an uplink with another. */
static int
cmd_net_conflict(const struct netctl_net *def, char **cause)
{
	struct net	*n;
	char		 a[NETCTL_CIDRSTRLEN], b[NETCTL_CIDRSTRLEN];

	TAILQ_FOREACH(n, &nets, entry) {
		if (netctl_subnets_overlap(&def->subnet, &n->n.subnet)) {
			xasprintf(cause, "subnet %s overlaps network %s (%s)",
			    netctl_subnet_format(&def->subnet, a, sizeof a),
			    n->n.name, netctl_subnet_format(&n->n.subnet, b,
			    sizeof b));
			return (-1);
		}
		if (def->uplink != NULL && n->n.uplink != NULL &&
		    strcmp(def->uplink, n->n.uplink) == 0) {
			xasprintf(cause, "uplink %s is taken by network %s",
			    def->uplink, n->n.name);
			return (-1);
		}
	}
	if (def->uplink != NULL && netctl_link_exists(def->uplink, NULL) != 1) {
		xasprintf(cause, "no interface named %s for the uplink",
		    def->uplink);
		return (-1);
	}
	/* Nor addresses the host already routes elsewhere (its LAN). */
	if (netctl_route_conflict(&def->subnet, def->uplink, cause) != 0)
		return (-1);
	return (0);
}

static void
cmd_net_create_done(const char *err, void *arg)
{
	struct cmd_req	*req = arg;
	struct net	*n;
	char		*cause = NULL;

	if ((n = net_find(cmd_arg_str(req, "name", ""))) == NULL) {
		cmd_error(req, ERR_INTERNAL, "the network went away");
		return;
	}
	if (err != NULL) {
		/* Nothing half-created: the network goes again. */
		if (net_destroy(n, &cause) != 0) {
			log_warnx("%s", cause);
			free(cause);
		}
		net_nft_update(NULL, NULL);
		cmd_error(req, ERR_INTERNAL, "%s", err);
		return;
	}
	n->pending = 0;
	cmd_reply(req, net_to_json(n, 1));
}

/* net.create: checked, brought up, answered once nft has its rules. */
static enum cmd_retval
cmd_net_create(struct cmd_req *req)
{
	struct netctl_net	 def;
	struct net		*n;
	const char		*name = cmd_arg_str(req, "name", "");
	char			*cause = NULL;

	if (netctl_net_init(&def, name, cmd_arg_str(req, "subnet", NULL),
	    cmd_arg_str(req, "mode", NULL), cmd_arg_str(req, "uplink", NULL),
	    &cause) != 0) {
		cmd_fail(req, ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	if (net_find(name) != NULL) {
		cmd_error(req, ERR_EXISTS, "a network named %s already exists",
		    name);
		goto out;
	}
	if (cmd_net_conflict(&def, &cause) != 0) {
		cmd_error(req, ERR_ARG, "%s", cause);
		goto out;
	}
	if ((n = net_create(&def, &cause)) == NULL) {
		cmd_error(req, ERR_INTERNAL, "%s", cause);
		goto out;
	}
	n->pending = 1;
	netctl_net_clear(&def);
	net_nft_update(cmd_net_create_done, req);
	return (CMD_RETURN_WAIT);
out:
	free(cause);
	netctl_net_clear(&def);
	return (CMD_RETURN_DONE);
}

static enum cmd_retval
cmd_net_list(struct cmd_req *req)
{
	struct net	*n;
	json_t		*a = json_array();

	TAILQ_FOREACH(n, &nets, entry)
		json_array_append_new(a, net_to_json(n, 0));
	cmd_reply(req, json_pack("{s:o}", "networks", a));
	return (CMD_RETURN_DONE);
}

static enum cmd_retval
cmd_net_show(struct cmd_req *req)
{
	struct net	*n;

	if ((n = cmd_net_get(req)) != NULL)
		cmd_reply(req, net_to_json(n, 1));
	return (CMD_RETURN_DONE);
}

static void
cmd_net_rm_done(const char *err, void *arg)
{
	struct cmd_req	*req = arg;

	/* The network is gone; rules left for it match nothing. */
	if (err != NULL)
		log_warnx("network %s: rules not updated: %s",
		    cmd_arg_str(req, "name", ""), err);
	cmd_reply(req, json_object());
}

/* net.rm: refused while any VM has a NIC on it. */
static enum cmd_retval
cmd_net_rm(struct cmd_req *req)
{
	struct net	*n;
	json_t		*users, *v;
	char		*cause = NULL, *list, *s;
	size_t		 i;

	if ((n = cmd_net_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	if (n->pending) {
		cmd_error(req, ERR_BUSY, "network %s is still being created",
		    n->n.name);
		return (CMD_RETURN_DONE);
	}
	users = vm_net_users(n->n.name);
	if (json_array_size(users) > 0) {
		list = xstrdup("");
		json_array_foreach(users, i, v) {
			xasprintf(&s, "%s%s%s", list, i == 0 ? "" : ", ",
			    json_string_value(v));
			free(list);
			list = s;
		}
		cmd_error(req, ERR_BUSY, "network %s is in use by VM%s %s: "
		    "remove their NICs first (vm nic-rm)", n->n.name,
		    json_array_size(users) > 1 ? "s" : "", list);
		free(list);
		json_decref(users);
		return (CMD_RETURN_DONE);
	}
	json_decref(users);
	if (net_destroy(n, &cause) != 0) {
		cmd_fail(req, ERR_INTERNAL, cause);
		return (CMD_RETURN_DONE);
	}
	net_nft_update(cmd_net_rm_done, req);
	return (CMD_RETURN_WAIT);
}

/* vm nic-add and nic-rm: op(vm, the argument named arg) on the VM. */
static enum cmd_retval
cmd_net_nic(struct cmd_req *req, const char *arg, void (*op)(struct vm *,
    const char *, done_cb, void *))
{
	struct vm	*vm;
	int		 rv;

	/* A desktop of the cluster: its etcd definition changes too. */
	if (qmpd->cluster != NULL && (rv = cluster_nic_cmd(req)) != -1)
		return (rv);
	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	op(vm, cmd_arg_str(req, arg, ""), cmd_done, req);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_net_nic_add(struct cmd_req *req)
{
	return (cmd_net_nic(req, "network", vm_nic_add));
}

static enum cmd_retval
cmd_net_nic_rm(struct cmd_req *req)
{
	return (cmd_net_nic(req, "mac", vm_nic_rm));
}

static const struct cmd_arg cmd_net_create_args[] = {
	{ "name", ARG_STR, 1 },
	{ "subnet", ARG_STR, 1 },
	{ "mode", ARG_STR, 0 },
	{ "uplink", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_net_nic_add_args[] = {
	{ "name", ARG_STR, 1 },
	{ "network", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_net_nic_rm_args[] = {
	{ "name", ARG_STR, 1 },
	{ "mac", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_net_entries[] = {
	{ "net.create", cmd_net_create_args, ROLE_ADMIN, cmd_net_create },
	{ "net.list", NULL, ROLE_ADMIN, cmd_net_list },
	{ "net.show", cmd_name_args, ROLE_ADMIN, cmd_net_show },
	{ "net.rm", cmd_name_args, ROLE_ADMIN, cmd_net_rm },
	{ "vm.nic_add", cmd_net_nic_add_args, ROLE_ADMIN, cmd_net_nic_add },
	{ "vm.nic_rm", cmd_net_nic_rm_args, ROLE_ADMIN, cmd_net_nic_rm },
	{ NULL, NULL, 0, NULL }
};
