/*
 * Network definitions: modes, names and their JSON form in the networks
 * table.  Every string that reaches a bridge name, a file name or an
 * nftables rule has been through netctl_net_name_check() first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "cause.h"
#include "xmalloc.h"

#include "link.h"
#include "netctl.h"

static const char *netctl_modes[] = {
	[NETCTL_NAT] = "nat",
	[NETCTL_ISOLATED] = "isolated",
	[NETCTL_BRIDGE] = "bridge",
};

int
netctl_mode_parse(const char *s, enum netctl_mode *mode)
{
	size_t	i;

	for (i = 0; s != NULL && i < nitems(netctl_modes); i++) {
		if (strcmp(s, netctl_modes[i]) == 0) {
			*mode = i;
			return (0);
		}
	}
	return (-1);
}

const char *
netctl_mode_name(enum netctl_mode mode)
{
	if ((size_t)mode >= nitems(netctl_modes))
		return ("unknown");
	return (netctl_modes[mode]);
}

/* Checks a network name, which becomes part of a bridge and file names. */
int
netctl_net_name_check(const char *name, char **cause)
{
	const char	*p;

	if (name == NULL || *name == '\0') {
		netctl_cause(cause, "empty network name");
		return (-1);
	}
	if (strlen(name) > NETCTL_NETNAME_MAX) {
		netctl_cause(cause, "network name %s is too long: at most %d "
		    "characters (its bridge %s<name> must fit in IFNAMSIZ)",
		    name, NETCTL_NETNAME_MAX, NETCTL_BRIDGE_PREFIX);
		return (-1);
	}
	for (p = name; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
			continue;
		if (p != name && (*p == '-' || *p == '_'))
			continue;
		netctl_cause(cause, "invalid network name %s: use lower-case "
		    "letters, digits, - and _, starting with a letter or "
		    "digit", name);
		return (-1);
	}
	return (0);
}

int
netctl_net_bridge_name(const char *name, char *buf, size_t len,
    char **cause)
{
	if (netctl_net_name_check(name, cause) != 0)
		return (-1);
	if ((size_t)snprintf(buf, len, "%s%s", NETCTL_BRIDGE_PREFIX,
	    name) >= len) {
		netctl_cause(cause, "bridge name for %s does not fit", name);
		return (-1);
	}
	return (0);
}

/* Checks an admin's uplink name: a plain interface name, not ours. */
static int
netctl_uplink_check(const char *uplink, char **cause)
{
	const char	*p;

	if (uplink == NULL || *uplink == '\0' ||
	    strlen(uplink) > NETCTL_IFNAME_MAX) {
		netctl_cause(cause, "invalid uplink %s: an interface name of 1 "
		    "to %d characters", uplink == NULL ? "(none)" : uplink,
		    NETCTL_IFNAME_MAX);
		return (-1);
	}
	for (p = uplink; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 0x7f || *p == '/' || *p == ':' ||
		    *p == '"' || *p == '\\') {
			netctl_cause(cause, "invalid uplink name %s", uplink);
			return (-1);
		}
	}
	if (strcmp(uplink, "lo") == 0 || netctl_name_owned(uplink)) {
		netctl_cause(cause, "uplink %s cannot be %s", uplink,
		    strcmp(uplink, "lo") == 0 ? "the loopback interface" :
		    "a qdesk interface");
		return (-1);
	}
	return (0);
}

/* Builds a network from the CLI's words, each checked with a clear error. */
int
netctl_net_init(struct netctl_net *net, const char *name, const char *subnet,
    const char *mode, const char *uplink, char **cause)
{
	char	bridge[IFNAMSIZ];

	memset(net, 0, sizeof *net);
	if (netctl_net_bridge_name(name, bridge, sizeof bridge, cause) != 0)
		return (-1);
	if (netctl_subnet_parse(subnet, &net->subnet, cause) != 0)
		return (-1);
	net->mode = NETCTL_NAT;
	if (mode != NULL && netctl_mode_parse(mode, &net->mode) != 0) {
		netctl_cause(cause, "unknown network mode %s: use nat, isolated "
		    "or bridge", mode);
		return (-1);
	}
	if (net->mode == NETCTL_BRIDGE) {
		if (uplink == NULL) {
			netctl_cause(cause, "bridge mode needs an uplink");
			return (-1);
		}
		if (netctl_uplink_check(uplink, cause) != 0)
			return (-1);
		net->uplink = xstrdup(uplink);
	} else if (uplink != NULL) {
		netctl_cause(cause, "an uplink is only for bridge mode");
		return (-1);
	}
	net->name = xstrdup(name);
	net->bridge = xstrdup(bridge);
	return (0);
}

void
netctl_net_clear(struct netctl_net *net)
{
	if (net == NULL)
		return;
	free(net->name);
	free(net->bridge);
	free(net->uplink);
	memset(net, 0, sizeof *net);
}

json_t *
netctl_net_to_json(const struct netctl_net *net)
{
	char	 subnet[NETCTL_CIDRSTRLEN];
	json_t	*j;

	j = json_pack("{s:s, s:s, s:s}", "bridge", net->bridge, "subnet",
	    netctl_subnet_format(&net->subnet, subnet, sizeof subnet), "mode",
	    netctl_mode_name(net->mode));
	if (j != NULL && net->uplink != NULL)
		json_object_set_new(j, "uplink", json_string(net->uplink));
	return (j);
}

/* Reads network name's record back, validating it as if typed anew. */
int
netctl_net_from_json(struct netctl_net *net, const char *name,
    const json_t *j, char **cause)
{
	const char	*bridge;
	char		*why = NULL;

	memset(net, 0, sizeof *net);
	if (netctl_net_init(net, name,
	    json_string_value(json_object_get(j, "subnet")),
	    json_string_value(json_object_get(j, "mode")),
	    json_string_value(json_object_get(j, "uplink")), &why) != 0) {
		netctl_cause(cause, "network %s: bad record: %s", name, why);
		free(why);
		return (-1);
	}
	bridge = json_string_value(json_object_get(j, "bridge"));
	if (bridge != NULL && strcmp(bridge, net->bridge) != 0) {
		netctl_cause(cause, "network %s: bad record: bridge %s is not %s",
		    name, bridge, net->bridge);
		netctl_net_clear(net);
		return (-1);
	}
	return (0);
}
