/*
 * Bridges and TAPs through libnl-route: one netlink socket per process,
 * opened on first use, and a name check before every change.  libnl's
 * error codes become -errno and, through nl_geterror, a cause here, once.
 */
#include <sys/ioctl.h>

#include <linux/if_tun.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>

#include "cause.h"
#include "compat.h"
#include "log.h"
#include "xmalloc.h"

#include "ipam.h"
#include "link.h"

static struct nl_sock	*link_sock;

/* Maps a libnl error (negative NLE_*) to a negative errno. */
static int
link_nlerrno(int nlerr)
{
	static const struct {
		int	nle;
		int	errnum;
	} map[] = {
		{ NLE_INTR, EINTR },
		{ NLE_AGAIN, EAGAIN },
		{ NLE_NOMEM, ENOMEM },
		{ NLE_EXIST, EEXIST },
		{ NLE_INVAL, EINVAL },
		{ NLE_RANGE, ERANGE },
		{ NLE_MSGSIZE, EMSGSIZE },
		{ NLE_OPNOTSUPP, EOPNOTSUPP },
		{ NLE_AF_NOSUPPORT, EAFNOSUPPORT },
		{ NLE_OBJ_NOTFOUND, ENODEV },
		{ NLE_NODEV, ENODEV },
		{ NLE_BUSY, EBUSY },
		{ NLE_NOACCESS, EACCES },
		{ NLE_PERM, EPERM },
	};
	size_t	i;

	if (nlerr < 0)
		nlerr = -nlerr;
	for (i = 0; i < nitems(map); i++) {
		if (map[i].nle == nlerr)
			return (-map[i].errnum);
	}
	return (-EIO);
}

/* Fills cause, if not NULL, with "WHAT: reason", WHAT from fmt. */
static void
link_vcause(char **cause, const char *reason, const char *fmt, va_list ap)
{
	char	*what;

	if (cause == NULL)
		return;
	xvasprintf(&what, fmt, ap);
	xasprintf(cause, "%s: %s", what, reason);
	free(what);
}

/* Fills cause with what failed and libnl's reason; returns -errno. */
static int __attribute__((format(printf, 3, 4)))
link_nlfail(char **cause, int nlerr, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	link_vcause(cause, nl_geterror(nlerr), fmt, ap);
	va_end(ap);
	return (link_nlerrno(nlerr));
}

/* Fills cause with what failed and strerror(-error); returns error. */
static int __attribute__((format(printf, 3, 4)))
link_fail(char **cause, int error, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	link_vcause(cause, strerror(-error), fmt, ap);
	va_end(ap);
	return (error);
}

/* The shared netlink socket, connected on first use (SOCK_CLOEXEC). */
static int
link_socket(struct nl_sock **sk, char **cause)
{
	struct nl_sock	*s;
	int		 err;

	if (link_sock == NULL) {
		if ((s = nl_socket_alloc()) == NULL)
			return (link_fail(cause, -ENOMEM, "netlink socket"));
		if ((err = nl_connect(s, NETLINK_ROUTE)) < 0) {
			nl_socket_free(s);
			return (link_nlfail(cause, err, "netlink connect"));
		}
		link_sock = s;
	}
	*sk = link_sock;
	return (0);
}

void
netctl_link_close(void)
{
	if (link_sock != NULL) {
		nl_socket_free(link_sock);
		link_sock = NULL;
	}
}

/* An interface name the kernel accepts, in a conservative alphabet. */
static int
link_name_valid(const char *name)
{
	const char	*p;
	size_t		 len;

	if (name == NULL || (len = strlen(name)) == 0 ||
	    len > NETCTL_IFNAME_MAX)
		return (0);
	for (p = name; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
		    *p == '.')
			continue;
		return (0);
	}
	return (1);
}

static int
link_name_prefixed(const char *name, const char *prefix)
{
	size_t	plen = strlen(prefix);

	return (link_name_valid(name) && strlen(name) > plen &&
	    strncmp(name, prefix, plen) == 0);
}

int
netctl_name_bridge(const char *name)
{
	return (link_name_prefixed(name, NETCTL_BRIDGE_PREFIX));
}

int
netctl_name_tap(const char *name)
{
	return (link_name_prefixed(name, NETCTL_TAP_PREFIX));
}

int
netctl_name_owned(const char *name)
{
	return (netctl_name_bridge(name) || netctl_name_tap(name));
}

/*
 * Refuses, with the reason, a name that is not qdesk's (of kind prefix,
 * or of either kind if prefix is NULL): the guard before every change.
 */
int
netctl_name_check(const char *name, const char *prefix, char **cause)
{
	int	ok;

	if (name == NULL || *name == '\0') {
		netctl_cause(cause, "empty interface name");
		return (-EINVAL);
	}
	if (strlen(name) > NETCTL_IFNAME_MAX) {
		netctl_cause(cause, "interface name %s is too long: at most %d "
		    "characters (IFNAMSIZ)", name, NETCTL_IFNAME_MAX);
		return (-ENAMETOOLONG);
	}
	if (!link_name_valid(name)) {
		netctl_cause(cause, "invalid interface name %s", name);
		return (-EINVAL);
	}
	if (prefix == NULL)
		ok = netctl_name_owned(name);
	else
		ok = link_name_prefixed(name, prefix);
	if (!ok) {
		netctl_cause(cause, "refusing to change interface %s: not a "
		    "qdesk %s (%s...)", name, prefix == NULL ? "interface" :
		    strcmp(prefix, NETCTL_TAP_PREFIX) == 0 ? "TAP" : "bridge",
		    prefix == NULL ? NETCTL_BRIDGE_PREFIX "... or "
		    NETCTL_TAP_PREFIX : prefix);
		return (-EPERM);
	}
	return (0);
}

/* Fetches link name from the kernel; -ENODEV (no cause) if absent. */
static int
link_get(struct nl_sock *sk, const char *name, struct rtnl_link **link,
    char **cause)
{
	int	err;

	*link = NULL;
	if ((err = rtnl_link_get_kernel(sk, 0, name, link)) < 0) {
		if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV)
			return (link_fail(cause, -ENODEV, "interface %s",
			    name));
		return (link_nlfail(cause, err, "interface %s", name));
	}
	return (0);
}

/* The ifindex of bridge name, checking that it is a bridge. */
static int
link_bridge_index(struct nl_sock *sk, const char *name, int *ifindex,
    char **cause)
{
	struct rtnl_link	*link;
	const char		*type;
	int			 error;

	if ((error = link_get(sk, name, &link, cause)) != 0)
		return (error);
	type = rtnl_link_get_type(link);
	if (type == NULL || strcmp(type, "bridge") != 0) {
		error = link_fail(cause, -EINVAL, "interface %s is not a "
		    "bridge", name);
	} else
		*ifindex = rtnl_link_get_ifindex(link);
	rtnl_link_put(link);
	return (error);
}

/* A stable locally administered MAC for a bridge, from its name. */
static void
link_bridge_mac(const char *name, uint8_t mac[6])
{
	uint32_t	h = 2166136261U;

	for (; *name != '\0'; name++)
		h = (h ^ (uint8_t)*name) * 16777619U;
	mac[0] = 0x02;		/* locally administered, unicast */
	mac[1] = 'q';
	mac[2] = 'd';
	mac[3] = h >> 16;
	mac[4] = h >> 8;
	mac[5] = h;
}

/*
 * Creates bridge name, up, with a fixed MAC so that the gateway's
 * address does not change as TAPs come and go.
 */
int
netctl_bridge_create(const char *name, char **cause)
{
	struct nl_sock		*sk;
	struct rtnl_link	*link = NULL;
	struct nl_addr		*addr = NULL;
	uint8_t			 mac[6];
	int			 error, err;

	if ((error = netctl_name_check(name, NETCTL_BRIDGE_PREFIX,
	    cause)) != 0)
		return (error);
	if ((error = link_socket(&sk, cause)) != 0)
		return (error);

	if ((link = rtnl_link_bridge_alloc()) == NULL) {
		error = link_fail(cause, -ENOMEM, "bridge %s", name);
		goto cleanup;
	}
	rtnl_link_set_name(link, name);
	link_bridge_mac(name, mac);
	if ((addr = nl_addr_build(AF_LLC, mac, sizeof mac)) == NULL) {
		error = link_fail(cause, -ENOMEM, "bridge %s", name);
		goto cleanup;
	}
	rtnl_link_set_addr(link, addr);
	rtnl_link_set_flags(link, IFF_UP);
	if ((err = rtnl_link_add(sk, link, NLM_F_CREATE | NLM_F_EXCL)) < 0) {
		error = link_nlfail(cause, err, "cannot create bridge %s",
		    name);
		goto cleanup;
	}
	error = 0;
cleanup:
	nl_addr_put(addr);
	rtnl_link_put(link);
	return (error);
}

/*
 * A socket and a new link object that names link name (no ifindex: the
 * kernel finds it by IFLA_IFNAME), for one request on it; the caller
 * puts the link.
 */
static int
link_named(const char *name, struct nl_sock **sk, struct rtnl_link **link,
    char **cause)
{
	int	error;

	*link = NULL;
	if ((error = link_socket(sk, cause)) != 0)
		return (error);
	if ((*link = rtnl_link_alloc()) == NULL)
		return (link_fail(cause, -ENOMEM, "interface %s", name));
	rtnl_link_set_name(*link, name);
	return (0);
}

/* Deletes link name, which the caller has checked is ours. */
static int
link_delete(const char *name, char **cause)
{
	struct nl_sock		*sk;
	struct rtnl_link	*link;
	int			 error, err;

	if ((error = link_named(name, &sk, &link, cause)) != 0)
		return (error);
	if ((err = rtnl_link_delete(sk, link)) < 0)
		error = link_nlfail(cause, err, "cannot delete interface %s",
		    name);
	rtnl_link_put(link);
	return (error);
}

int
netctl_bridge_delete(const char *name, char **cause)
{
	int	error;

	if ((error = netctl_name_check(name, NETCTL_BRIDGE_PREFIX,
	    cause)) != 0)
		return (error);
	return (link_delete(name, cause));
}

int
netctl_link_delete(const char *name, char **cause)
{
	int	error;

	if ((error = netctl_name_check(name, NULL, cause)) != 0)
		return (error);
	return (link_delete(name, cause));
}

/*
 * Adds address cidr ("10.1.0.1/24") with its broadcast to ifname; an
 * existing identical address is replaced, so this can run again at start.
 */
int
netctl_addr_add(const char *ifname, const char *cidr, char **cause)
{
	struct nl_sock		*sk;
	struct rtnl_link	*link = NULL;
	struct rtnl_addr	*addr = NULL;
	struct nl_addr		*local = NULL, *bcast = NULL;
	uint32_t		 ip, be;
	int			 prefix, error, err;

	if ((error = netctl_name_check(ifname, NULL, cause)) != 0)
		return (error);
	if (netctl_cidr_parse(cidr, &ip, &prefix) != 0 || prefix == 0) {
		return (link_fail(cause, -EINVAL, "address %s for %s",
		    cidr == NULL ? "(none)" : cidr, ifname));
	}
	if ((error = link_socket(&sk, cause)) != 0)
		return (error);
	if ((error = link_get(sk, ifname, &link, cause)) != 0)
		goto cleanup;

	if ((addr = rtnl_addr_alloc()) == NULL) {
		error = link_fail(cause, -ENOMEM, "address %s", cidr);
		goto cleanup;
	}
	rtnl_addr_set_ifindex(addr, rtnl_link_get_ifindex(link));
	be = htonl(ip);
	if ((local = nl_addr_build(AF_INET, &be, sizeof be)) == NULL) {
		error = link_fail(cause, -ENOMEM, "address %s", cidr);
		goto cleanup;
	}
	nl_addr_set_prefixlen(local, prefix);
	if ((err = rtnl_addr_set_local(addr, local)) < 0) {
		error = link_nlfail(cause, err, "address %s", cidr);
		goto cleanup;
	}
	if (prefix < 31) {
		be = htonl(ip | ~(0xffffffffU << (32 - prefix)));
		if ((bcast = nl_addr_build(AF_INET, &be, sizeof be)) == NULL) {
			error = link_fail(cause, -ENOMEM, "address %s", cidr);
			goto cleanup;
		}
		if ((err = rtnl_addr_set_broadcast(addr, bcast)) < 0) {
			error = link_nlfail(cause, err, "address %s", cidr);
			goto cleanup;
		}
	}
	if ((err = rtnl_addr_add(sk, addr, NLM_F_REPLACE)) < 0) {
		error = link_nlfail(cause, err, "cannot add address %s to %s",
		    cidr, ifname);
		goto cleanup;
	}
	error = 0;
cleanup:
	nl_addr_put(bcast);
	nl_addr_put(local);
	rtnl_addr_put(addr);
	rtnl_link_put(link);
	return (error);
}

/*
 * One RTM_NEWLINK on link name, found by name: set or clear IFF_UP
 * (up > 0 or up == 0; up < 0 leaves it) and set its master (master >= 0;
 * 0 releases it; master < 0 leaves it).  No ownership check: callers do.
 */
static int
link_change(const char *name, int up, int master, char **cause)
{
	struct nl_sock		*sk;
	struct rtnl_link	*link;
	int			 error, err;

	if ((error = link_named(name, &sk, &link, cause)) != 0)
		goto cleanup;
	if (up > 0)
		rtnl_link_set_flags(link, IFF_UP);
	else if (up == 0)
		rtnl_link_unset_flags(link, IFF_UP);
	if (master >= 0)
		rtnl_link_set_master(link, master);
	if ((err = rtnl_link_change(sk, link, link, 0)) < 0) {
		if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) {
			error = link_fail(cause, -ENODEV, "interface %s",
			    name);
		} else {
			error = link_nlfail(cause, err, "cannot change "
			    "interface %s", name);
		}
		goto cleanup;
	}
	error = 0;
cleanup:
	rtnl_link_put(link);
	return (error);
}

int
netctl_link_up(const char *name, char **cause)
{
	int	error;

	if ((error = netctl_name_check(name, NULL, cause)) != 0)
		return (error);
	return (link_change(name, 1, -1, cause));
}

int
netctl_link_down(const char *name, char **cause)
{
	int	error;

	if ((error = netctl_name_check(name, NULL, cause)) != 0)
		return (error);
	return (link_change(name, 0, -1, cause));
}

int
netctl_link_exists(const char *name, char **cause)
{
	struct nl_sock		*sk;
	struct rtnl_link	*link;
	int			 error;

	if (name == NULL || *name == '\0')
		return (link_fail(cause, -EINVAL, "empty interface name"));
	if (strlen(name) > NETCTL_IFNAME_MAX)
		return (0);
	if ((error = link_socket(&sk, cause)) != 0)
		return (error);
	error = link_get(sk, name, &link, NULL);
	if (error == -ENODEV)
		return (0);
	if (error != 0)
		return (link_fail(cause, error, "interface %s", name));
	rtnl_link_put(link);
	return (1);
}

int
netctl_link_master(const char *name, char *master, char **cause)
{
	struct nl_sock		*sk;
	struct rtnl_link	*link = NULL, *m = NULL;
	int			 error, idx;

	*master = '\0';
	if ((error = link_socket(&sk, cause)) != 0)
		return (error);
	if ((error = link_get(sk, name, &link, cause)) != 0)
		goto cleanup;
	if ((idx = rtnl_link_get_master(link)) > 0) {
		if ((error = rtnl_link_get_kernel(sk, idx, NULL, &m)) < 0) {
			error = link_nlfail(cause, error, "master of %s",
			    name);
			goto cleanup;
		}
		strlcpy(master, rtnl_link_get_name(m), IFNAMSIZ);
	}
	error = 0;
cleanup:
	rtnl_link_put(m);
	rtnl_link_put(link);
	return (error);
}

/*
 * Opens /dev/net/tun and creates TAP name on it with a virtio-net header,
 * the fd QEMU takes with -netdev tap,fd=N.  The fd is not close-on-exec.
 */
int
netctl_tap_open(const char *name, int *fdp, char **cause)
{
	struct ifreq	ifr;
	int		fd = -1, error;

	*fdp = -1;
	if ((error = netctl_name_check(name, NETCTL_TAP_PREFIX, cause)) != 0)
		return (error);
	/* Not O_CLOEXEC: this fd is for QEMU; the caller decides. */
	if ((fd = open("/dev/net/tun", O_RDWR)) == -1) {
		error = -errno;
		if (error == -ENOENT || error == -ENODEV) {
			error = link_fail(cause, error, "cannot open "
			    "/dev/net/tun (is the tun module loaded?)");
		} else
			error = link_fail(cause, error, "/dev/net/tun");
		goto cleanup;
	}
	memset(&ifr, 0, sizeof ifr);
	strlcpy(ifr.ifr_name, name, sizeof ifr.ifr_name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) == -1) {
		error = -errno;
		if (error == -EBUSY) {
			error = link_fail(cause, error, "cannot create TAP %s "
			    "(in use by another process)", name);
		} else if (error == -EINVAL) {
			error = link_fail(cause, error, "cannot create TAP %s "
			    "(an interface of another kind has that name?)",
			    name);
		} else {
			error = link_fail(cause, error, "cannot create TAP %s",
			    name);
		}
		goto cleanup;
	}
	/* A TAP left persistent by someone goes away with this fd too. */
	if (ioctl(fd, TUNSETPERSIST, 0) == -1) {
		error = link_fail(cause, -errno, "TAP %s: TUNSETPERSIST",
		    name);
		goto cleanup;
	}
	*fdp = fd;
	fd = -1;
	error = 0;
cleanup:
	if (fd != -1)
		close(fd);
	return (error);
}

/* Enslaves tap to bridge and, if up, brings it up in the same request. */
static int
link_tap_attach(const char *tap, const char *bridge, int up, char **cause)
{
	struct nl_sock	*sk;
	int		 error, master;

	if ((error = netctl_name_check(tap, NETCTL_TAP_PREFIX, cause)) != 0)
		return (error);
	if ((error = netctl_name_check(bridge, NETCTL_BRIDGE_PREFIX,
	    cause)) != 0)
		return (error);
	if ((error = link_socket(&sk, cause)) != 0)
		return (error);
	if ((error = link_bridge_index(sk, bridge, &master, cause)) != 0)
		return (error);
	return (link_change(tap, up ? 1 : -1, master, cause));
}

int
netctl_enslave(const char *tap, const char *bridge, char **cause)
{
	return (link_tap_attach(tap, bridge, 0, cause));
}

int
netctl_tap_attach(const char *tap, const char *bridge, char **cause)
{
	return (link_tap_attach(tap, bridge, 1, cause));
}

/*
 * Bridge mode: the only change qdesk makes to an interface it does not
 * own is setting an admin-named uplink's master to a qdesk bridge.
 */
/*
 * The uplink's current master and the bridge's index, after checking
 * that uplink is an admin's interface (not ours) and bridge is ours.
 */
static int
link_uplink_masters(const char *uplink, const char *bridge, int *master,
    int *cur, char **cause)
{
	struct nl_sock		*sk;
	struct rtnl_link	*link = NULL;
	int			 error;

	if (!link_name_valid(uplink) || netctl_name_owned(uplink)) {
		return (link_fail(cause, -EINVAL, "invalid uplink %s",
		    uplink == NULL ? "(none)" : uplink));
	}
	if ((error = netctl_name_check(bridge, NETCTL_BRIDGE_PREFIX,
	    cause)) != 0)
		return (error);
	if ((error = link_socket(&sk, cause)) != 0)
		return (error);
	if ((error = link_bridge_index(sk, bridge, master, cause)) != 0)
		return (error);
	if ((error = link_get(sk, uplink, &link, cause)) != 0)
		return (error);
	*cur = rtnl_link_get_master(link);
	rtnl_link_put(link);
	return (0);
}

int
netctl_uplink_enslave(const char *uplink, const char *bridge, char **cause)
{
	int	error, master, cur;

	if (uplink != NULL && strcmp(uplink, "lo") == 0)
		return (link_fail(cause, -EINVAL, "invalid uplink %s",
		    uplink));
	if ((error = link_uplink_masters(uplink, bridge, &master, &cur,
	    cause)) != 0)
		return (error);
	if (cur == master)
		return (0);
	if (cur > 0) {
		return (link_fail(cause, -EBUSY, "uplink %s already has a "
		    "master", uplink));
	}
	return (link_change(uplink, -1, master, cause));
}

int
netctl_uplink_release(const char *uplink, const char *bridge, char **cause)
{
	int	error, master, cur;

	if ((error = link_uplink_masters(uplink, bridge, &master, &cur,
	    cause)) != 0)
		return (error);
	if (cur != master)
		return (0);
	return (link_change(uplink, -1, 0, cause));
}

int
netctl_ip_forward(char **cause)
{
	const char	*path = "/proc/sys/net/ipv4/ip_forward";
	ssize_t		 n;
	int		 fd, error = 0;

	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return (link_fail(cause, -errno, "%s", path));
	if ((n = write(fd, "1\n", 2)) != 2)
		error = n == -1 ? -errno : -EIO;
	close(fd);
	if (error != 0)
		return (link_fail(cause, error, "%s", path));
	return (0);
}
