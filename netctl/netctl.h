/*
 * qdesk networks: the definition the daemon keeps in the networks table,
 * and the names derived from it.  The pieces that act on it live in
 * link.h (bridges, TAPs), ipam.h (addresses, MACs, leases), dnsmasq.h
 * (DHCP and DNS) and nft.h (NAT, isolation, anti-spoofing).
 */
#ifndef QDESK_NETCTL_H
#define QDESK_NETCTL_H

#include <net/if.h>

#include <jansson.h>

#include "ipam.h"

/* Network names become bridge names: "qbr" + name within IFNAMSIZ - 1. */
#define NETCTL_NETNAME_MAX	12

enum netctl_mode {
	NETCTL_NAT,		/* masquerade to the outside */
	NETCTL_ISOLATED,	/* nothing forwarded off the bridge */
	NETCTL_BRIDGE		/* an admin's uplink enslaved to the bridge */
};

/* A network; strings are owned (netctl_net_clear). */
struct netctl_net {
	char			*name;
	char			*bridge;
	struct netctl_subnet	 subnet;
	enum netctl_mode	 mode;
	char			*uplink;	/* bridge mode only, or NULL */
};

int		 netctl_mode_parse(const char *, enum netctl_mode *);
const char	*netctl_mode_name(enum netctl_mode);

/* A valid network name: [a-z0-9][a-z0-9_-]*, at most 12 characters. */
int		 netctl_net_name_check(const char *, char **);
/* The bridge of network name ("qbr" + name) into buf (IFNAMSIZ). */
int		 netctl_net_bridge_name(const char *, char *, size_t, char **);

/*
 * Fills net from the user's words, validating each; on failure net is
 * left cleared.  uplink is required for and only for bridge mode.
 */
int		 netctl_net_init(struct netctl_net *, const char *,
		    const char *, const char *, const char *, char **);
void		 netctl_net_clear(struct netctl_net *);
/* The networks table's JSON value for net, and back. */
json_t		*netctl_net_to_json(const struct netctl_net *);
int		 netctl_net_from_json(struct netctl_net *, const char *,
		    const json_t *, char **);

#endif
