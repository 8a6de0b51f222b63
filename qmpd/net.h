/*
 * qmpd's networks (net.c: bridges, dnsmasq supervision, the nft ruleset)
 * and the NICs of its VMs (vm-net.c: MACs and addresses, TAPs opened at
 * start and handed to QEMU, hotplug).  The pieces that act on the host
 * are netctl's; this is the daemon's glue around them.
 */
#ifndef QDESK_QMPD_NET_H
#define QDESK_QMPD_NET_H

#include <sys/types.h>

#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "compat.h"
#include "netctl.h"
#include "nft.h"
#include "qmpd.h"

/* A network the daemon runs: its definition and its dnsmasq. */
struct net {
	struct netctl_net	 n;
	int			 pending;	/* create not finished */
	pid_t			 dnsmasq;	/* -1: not running */
	time_t			 dnsmasq_started;
	int			 dnsmasq_quick;	/* deaths soon after start */
	int			 dnsmasq_clean;	/* restart with no leases */
	struct event		*dnsmasq_timer;	/* restart */
	struct event		*hup_timer;
	TAILQ_ENTRY(net)	 entry;
};
TAILQ_HEAD(nets, net);
extern struct nets		 nets;
extern struct netctl_ipam	*net_ipam;

/* net.c */
int	 net_init(char **cause);
void	 net_shutdown(void);
struct net *net_find(const char *name);
/* Brings up a new network (bridge, gateway, record, dnsmasq). */
struct net *net_create(const struct netctl_net *, char **cause);
/* Takes a network down and forgets it; the nft rules follow later. */
int	 net_destroy(struct net *, char **cause);
/*
 * A network's leases changed: rewrite dnsmasq's host files and make it
 * reread them; released is set when an address went away (dnsmasq then
 * restarts with an empty lease database, so the address is free at once).
 */
void	 net_leases_changed(const char *network, int released);
json_t	*net_to_json(const struct net *, int detail);
/*
 * Rebuilds the whole nft ruleset from the networks and the TAPs of active
 * VMs and applies it with nft -f - in a child; cb (may be NULL) gets NULL
 * once a ruleset that includes every change made before this call is in,
 * or nft's error.  Runs are serialised, never concurrent.
 */
typedef void (*net_nft_cb)(const char *err, void *arg);
void	 net_nft_update(net_nft_cb, void *arg);

#endif
