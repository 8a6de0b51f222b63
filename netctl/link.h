/*
 * Links owned by qdesk: bridges (qbr...) and TAPs (qtap...), changed
 * through one lazily opened libnl-route socket per process.  Every
 * function that changes an interface first checks that its name carries
 * the project's prefix and refuses otherwise: qmpd never changes an
 * interface it does not own.  The one exception, netctl_uplink_enslave(),
 * only sets an admin-named uplink's master to a qdesk bridge.
 *
 * All functions return 0 (or a count or boolean where said) on success and
 * -errno on failure; when cause is not NULL it is set to a message for the
 * user, which the caller frees.
 */
#ifndef QDESK_NETCTL_LINK_H
#define QDESK_NETCTL_LINK_H

#include <net/if.h>

#define NETCTL_BRIDGE_PREFIX	"qbr"
#define NETCTL_TAP_PREFIX	"qtap"
#define NETCTL_IFNAME_MAX	(IFNAMSIZ - 1)	/* 15 characters */

/* 1 if name is a valid interface name with a qdesk prefix, else 0. */
int	netctl_name_owned(const char *name);
/* 1 if name is a valid qdesk bridge name (qbr...), else 0. */
int	netctl_name_bridge(const char *name);
/* 1 if name is a valid qdesk TAP name (qtap...), else 0. */
int	netctl_name_tap(const char *name);
/* Checks name is owned and of the given kind; fills cause if not. */
int	netctl_name_check(const char *name, const char *prefix, char **cause);

int	netctl_bridge_create(const char *name, char **cause);
int	netctl_bridge_delete(const char *name, char **cause);
int	netctl_addr_add(const char *ifname, const char *cidr, char **cause);
int	netctl_link_up(const char *name, char **cause);
int	netctl_link_down(const char *name, char **cause);
/* 1 if the interface exists, 0 if not, -errno on error. Read-only. */
int	netctl_link_exists(const char *name, char **cause);
/* The name of name's master into master (IFNAMSIZ); "" if none. */
int	netctl_link_master(const char *name, char *master, char **cause);
int	netctl_link_delete(const char *name, char **cause);

/*
 * Creates TAP name and returns its fd in *fd, without O_CLOEXEC: the fd is
 * meant for QEMU, the caller sets FD_CLOEXEC if it wants.  The TAP is not
 * persistent: it disappears when the last fd on it is closed.
 */
int	netctl_tap_open(const char *name, int *fd, char **cause);
/* Enslaves TAP tap to bridge bridge (both qdesk-owned). */
int	netctl_enslave(const char *tap, const char *bridge, char **cause);
/* Enslaves tap to bridge and brings it up, in one netlink request. */
int	netctl_tap_attach(const char *tap, const char *bridge, char **cause);

/*
 * Bridge mode: sets the master of admin-named uplink to qdesk bridge
 * bridge, and nothing else; netctl_uplink_release() undoes it only when
 * the uplink's master is still that bridge.
 */
int	netctl_uplink_enslave(const char *uplink, const char *bridge,
	    char **cause);
int	netctl_uplink_release(const char *uplink, const char *bridge,
	    char **cause);

/* Turns on IPv4 forwarding in this network namespace (for NAT). */
int	netctl_ip_forward(char **cause);

/* Closes the shared netlink socket (reopened on next use). */
void	netctl_link_close(void);

#endif
