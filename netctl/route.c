/*
 * The host's own IPv4 routes, read through libnl-route, so that a new
 * qdesk network never takes addresses the host already reaches somewhere
 * else: a desktop subnet on top of the office LAN would cut the host off
 * from part of it. Only the main table's unicast routes with a prefix
 * count (not the default route); routes through qdesk's own bridges are
 * our networks, which qmpd checks against its index, and routes through
 * the uplink a bridge-mode network is about to take are that LAN itself.
 */
#include <net/if.h>

#include <linux/rtnetlink.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <netlink/netlink.h>
#include <netlink/route/route.h>

#include "cause.h"
#include "compat.h"
#include "ipam.h"
#include "link.h"
#include "route.h"

struct route_walk {
	const struct netctl_subnet	*want;
	const char			*uplink;
	int				 found;
	struct netctl_subnet		 route;
	char				 dev[IF_NAMESIZE];
};

static void
route_walk_cb(struct nl_object *obj, void *arg)
{
	struct rtnl_route	*r = (struct rtnl_route *)obj;
	struct route_walk	*w = arg;
	struct rtnl_nexthop	*nh;
	struct nl_addr		*dst;
	struct netctl_subnet	 s;
	char			 dev[IF_NAMESIZE] = "";
	uint32_t		 a;

	if (w->found || rtnl_route_get_table(r) != RT_TABLE_MAIN ||
	    rtnl_route_get_type(r) != RTN_UNICAST ||
	    (dst = rtnl_route_get_dst(r)) == NULL ||
	    nl_addr_get_family(dst) != AF_INET ||
	    nl_addr_get_prefixlen(dst) == 0 ||
	    nl_addr_get_len(dst) != sizeof a)
		return;
	if (rtnl_route_get_nnexthops(r) > 0 &&
	    (nh = rtnl_route_nexthop_n(r, 0)) != NULL &&
	    if_indextoname(rtnl_route_nh_get_ifindex(nh), dev) == NULL)
		dev[0] = '\0';
	if (netctl_name_bridge(dev) ||
	    (w->uplink != NULL && strcmp(dev, w->uplink) == 0))
		return;
	memcpy(&a, nl_addr_get_binary_addr(dst), sizeof a);
	s.prefix = nl_addr_get_prefixlen(dst);
	s.addr = ntohl(a) & netctl_subnet_mask(&s);
	if (!netctl_subnets_overlap(w->want, &s))
		return;
	w->found = 1;
	w->route = s;
	strlcpy(w->dev, dev[0] != '\0' ? dev : "?", sizeof w->dev);
}

int
netctl_route_conflict(const struct netctl_subnet *want, const char *uplink,
    char **cause)
{
	struct nl_sock		*sk;
	struct nl_cache		*cache = NULL;
	struct route_walk	 w;
	char			 a[NETCTL_CIDRSTRLEN], b[NETCTL_CIDRSTRLEN];
	int			 err;

	if ((sk = nl_socket_alloc()) == NULL) {
		netctl_cause(cause, "netlink socket: out of memory");
		return (-1);
	}
	if ((err = nl_connect(sk, NETLINK_ROUTE)) < 0 ||
	    (err = rtnl_route_alloc_cache(sk, AF_INET, 0, &cache)) < 0) {
		netctl_cause(cause, "reading the host's routes: %s",
		    nl_geterror(err));
		nl_socket_free(sk);
		return (-1);
	}
	memset(&w, 0, sizeof w);
	w.want = want;
	w.uplink = uplink;
	nl_cache_foreach(cache, route_walk_cb, &w);
	nl_cache_free(cache);
	nl_socket_free(sk);
	if (!w.found)
		return (0);
	netctl_cause(cause, "subnet %s overlaps the host's route %s on %s",
	    netctl_subnet_format(want, a, sizeof a),
	    netctl_subnet_format(&w.route, b, sizeof b), w.dev);
	return (1);
}
