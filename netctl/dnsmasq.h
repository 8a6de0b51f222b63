/*
 * DHCP and DNS for a qdesk network: one dnsmasq per network, in the
 * foreground as a child the daemon supervises.  Generation is pure; the
 * files live in a runtime directory, named after the network:
 *
 *	DIR/NAME.conf		the configuration (--conf-file)
 *	DIR/NAME.dhcp-hosts	MAC,IP[,NAME] per lease: static DHCP only
 *	DIR/NAME.hosts		IP NAME per lease: VM names resolve
 *	DIR/NAME.pid, DIR/NAME.leases
 *
 * After rewriting the two host files, SIGHUP makes dnsmasq reread them.
 */
#ifndef QDESK_NETCTL_DNSMASQ_H
#define QDESK_NETCTL_DNSMASQ_H

#include <stddef.h>

struct netctl_net;
struct netctl_lease;

/* The config text for net, with its files under rundir. */
char	*netctl_dnsmasq_config(const struct netctl_net *, const char *);
/* The dhcp-hostsfile and addn-hosts texts for a network's leases. */
char	*netctl_dnsmasq_dhcp_hosts(const struct netctl_lease *, size_t);
char	*netctl_dnsmasq_hosts(const struct netctl_lease *, size_t);
/* rundir/NAME.suffix, suffix one of "conf", "dhcp-hosts", ... */
char	*netctl_dnsmasq_path(const struct netctl_net *, const char *,
	    const char *);
/* dnsmasq --conf-file=... --keep-in-foreground; free netctl_argv_free. */
char	**netctl_dnsmasq_argv(const struct netctl_net *, const char *);
void	 netctl_argv_free(char **);
/*
 * Writes the three files for net into rundir (each replaced atomically).
 * Returns 0 or -1 with cause.
 */
int	 netctl_dnsmasq_write(const struct netctl_net *, const char *,
	    const struct netctl_lease *, size_t, char **);

#endif
