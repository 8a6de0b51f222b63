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
#include "vm.h"

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

/* vm-net.c: the NICs of VMs (def.nics): leases, TAPs at start. */
struct vm;
struct vm_def_nic;
struct vm_runtime_paths;
struct db_txn;
/* One NIC, parsed from the definition. */
struct vm_nic {
	char		 id[16];		/* net0: the netdev id */
	char		 dev[24];		/* net0-nic: the device id */
	char		 network[NETCTL_NETNAME_MAX + 1];
	char		 tap[IFNAMSIZ];
	uint8_t		 mac[6];
	uint32_t	 ip;			/* 0 on bridge-mode networks */
	int		 fd;			/* until QEMU has it */
};

enum vm_net_rules {
	VM_NET_RULES_PENDING,
	VM_NET_RULES_OK,
	VM_NET_RULES_FAILED
};

/* The TAPs of an active VM, and whether the ruleset lists them yet. */
struct vm_netrt {
	char			 vm[VM_NAME_MAX];
	unsigned int		 gen;
	struct vm_nic		*nics;
	size_t			 nnics;
	int			*fds;		/* for the argv builder */
	enum vm_net_rules	 rules;
	char			*rules_err;
	int			 cont_waiting;
	TAILQ_ENTRY(vm_netrt)	 entry;
};
void	 vm_net_init(void);
void	 vm_net_relink(void);
int	 vm_net_create(struct vm *, char **cause);
void	 vm_net_deleted(struct vm *);
int	 vm_net_open(struct vm *, struct vm_runtime_paths *, char **cause);
void	 vm_net_opened(struct vm *, int spawned);
int	 vm_net_cont_wait(struct vm *);
void	 vm_net_stopped(struct vm *);
void	 vm_net_json(const struct vm *, json_t *);
/* The VMs with a NIC on network, as a JSON array of names. */
json_t	*vm_net_users(const char *network);
/* The TAPs of active VMs for the ruleset; borrowed until the next change. */
void	 vm_net_taps(struct netctl_nft_tap **, size_t *);
/* For vm-nic.c: a NIC's runtime view, the TAPs of active VMs, leases. */
void	 vm_net_nic_load(struct vm_nic *, const struct vm_def_nic *);
void	 vm_net_nic_def(const struct vm_nic *, struct vm_def_nic *);
json_t	*vm_net_nic_json(const struct vm_nic *);
struct vm_netrt *vm_net_rt_find(const char *vm);
struct vm_netrt *vm_net_rt_new(const char *vm);
void	 vm_net_rt_free(struct vm_netrt *);
void	 vm_net_rt_add(struct vm_netrt *, const struct vm_nic *);
void	 vm_net_rt_remove(struct vm_netrt *, const char *id);
int	 vm_net_save_txn(struct vm *, struct db_txn *, char **cause);
int	 vm_net_lease(struct vm *, struct db_txn *, struct net *,
	    const char *id, struct vm_nic *, char **cause);
struct net *vm_net_usable(const char *network, char **cause);
void	 vm_net_next_id(const struct vm_def_nic *, u_int n, char *id,
	    size_t len);
int	 vm_net_tap(struct vm_nic *, char **cause);

/* vm-nic.c: NIC hotplug and unplug. */
void	 vm_nic_add(struct vm *, const char *network, done_cb, void *arg);
void	 vm_nic_rm(struct vm *, const char *mac, done_cb, void *arg);
void	 vm_nic_deleted(struct vm *, json_t *data);
void	 vm_nic_stopped(struct vm *);

#endif
