/* The host's routes, against which a new network's subnet is checked. */
#ifndef QDESK_NETCTL_ROUTE_H
#define QDESK_NETCTL_ROUTE_H

#include "ipam.h"

/*
 * 1 (and a cause naming the route and its interface) if want overlaps a
 * route of the host's main table, other than the default route, routes
 * through qdesk bridges and routes through uplink (may be NULL); 0 if
 * not; -1 if the routes cannot be read.
 */
int	netctl_route_conflict(const struct netctl_subnet *want,
	    const char *uplink, char **cause);

#endif
