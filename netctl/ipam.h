/*
 * IPv4 address management for qdesk networks: MAC generation and the
 * leases table of the state database, keyed by "NETWORK/IP" with {"mac",
 * "vm", "nic"} values.  Addresses are handed out lowest first and never
 * to two NICs; allocation can run inside the caller's transaction so that
 * a NIC's address and its VM definition are committed together.  The
 * address and subnet arithmetic is addr.h's.
 */
#ifndef QDESK_NETCTL_IPAM_H
#define QDESK_NETCTL_IPAM_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct db;
struct db_txn;

/* One lease; netctl_lease_clear() frees its strings. */
struct netctl_lease {
	char		*network;
	uint32_t	 ip;
	uint8_t		 mac[6];
	char		*vm;
	char		*nic;
};
void		 netctl_lease_clear(struct netctl_lease *);
void		 netctl_leases_free(struct netctl_lease *, size_t);

/*
 * The IPAM handle: the database plus the set of MAC addresses in use,
 * loaded from the leases at open.  NICs without a lease (bridge mode)
 * have their MACs added with netctl_ipam_mac_reserve() or made with
 * netctl_ipam_mac_new().
 */
struct netctl_ipam;

struct netctl_ipam *netctl_ipam_open(struct db *, char **);
void		 netctl_ipam_free(struct netctl_ipam *);

/*
 * Gives NIC nic of VM vm the lowest free address of network's subnet and
 * a new unique MAC, and records the lease; fills *lease (cleared by the
 * caller).  The _txn form writes inside the caller's transaction.
 * Returns 0 or -1 with cause ("network NAME is full: ...").
 */
int		 netctl_ipam_alloc(struct netctl_ipam *, const char *,
		    const struct netctl_subnet *, const char *, const char *,
		    struct netctl_lease *, char **);
int		 netctl_ipam_alloc_txn(struct netctl_ipam *, struct db_txn *,
		    const char *, const struct netctl_subnet *, const char *,
		    const char *, struct netctl_lease *, char **);
/*
 * Records a lease of a given address and MAC (a NIC migrating from
 * another host) inside txn, reserving the MAC; refused if either is
 * taken here or the address is not a host address of the subnet.
 */
int		 netctl_ipam_claim_txn(struct netctl_ipam *, struct db_txn *,
		    const char *, const struct netctl_subnet *, uint32_t,
		    const uint8_t [6], const char *, const char *, char **);
/* Frees one address: 0, 1 if there was no such lease, -1 on error. */
int		 netctl_ipam_release(struct netctl_ipam *, const char *,
		    uint32_t, char **);
int		 netctl_ipam_release_txn(struct netctl_ipam *, struct db_txn *,
		    const char *, uint32_t, char **);
/*
 * Frees every lease of VM vm (committed ones, for the _txn form):
 * returns how many, or -1.
 */
int		 netctl_ipam_release_vm(struct netctl_ipam *, const char *,
		    char **);
int		 netctl_ipam_release_vm_txn(struct netctl_ipam *,
		    struct db_txn *, const char *, char **);
/*
 * The leases of network (all networks if NULL), sorted by network then
 * address, in a new array (netctl_leases_free).  Returns the count or -1.
 */
int		 netctl_ipam_leases(struct netctl_ipam *, const char *,
		    struct netctl_lease **, size_t *, char **);
/* The lease with MAC mac into *lease: 0, 1 if none, -1 on error. */
int		 netctl_ipam_find_mac(struct netctl_ipam *, const uint8_t [6],
		    struct netctl_lease *, char **);

/* A new random 52:54:00 MAC not in use, reserved from now on. */
int		 netctl_ipam_mac_new(struct netctl_ipam *, uint8_t [6],
		    char **);
void		 netctl_ipam_mac_reserve(struct netctl_ipam *,
		    const uint8_t [6]);
void		 netctl_ipam_mac_forget(struct netctl_ipam *,
		    const uint8_t [6]);
int		 netctl_ipam_mac_inuse(struct netctl_ipam *,
		    const uint8_t [6]);
/* Replaces the random source (tests only); NULL restores arc4random. */
void		 netctl_ipam_set_random(struct netctl_ipam *,
		    void (*)(void *, size_t));

#endif
