/*
 * IPv4 address management: MAC generation and the leases table (the
 * subnet arithmetic and the parsers are addr.c's).  The database is the only truth for addresses (each
 * candidate is looked up in the caller's transaction, so a lease written
 * earlier in the same transaction counts); MACs are also kept in a sorted
 * in-memory set so that a new one is checked against all in O(log n).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "cause.h"
#include "db.h"
#include "log.h"
#include "xmalloc.h"

#include "ipam.h"

/* QEMU's default MAC: never hand it out, an unconfigured guest has it. */
#define IPAM_MAC_QEMU	0x525400123456ULL
#define IPAM_MAC_OUI	0x525400000000ULL
#define IPAM_MAC_TRIES	64

/*
 * Where to start looking for a network's lowest free address: every
 * address below it is believed taken.  Releases lower it, allocations
 * raise it; a candidate is always checked in the transaction, so a stale
 * hint can cost order, never uniqueness (and see netctl_ipam_alloc_txn).
 */
struct ipam_hint {
	char		*network;
	uint32_t	 next;
};

struct netctl_ipam {
	struct db	*db;
	uint64_t	*macs;		/* sorted */
	size_t		 nmacs;
	size_t		 macsize;
	void		(*random)(void *, size_t);
	struct ipam_hint *hints;
	size_t		 nhints;
};

void
netctl_lease_clear(struct netctl_lease *l)
{
	if (l == NULL)
		return;
	free(l->network);
	free(l->vm);
	free(l->nic);
	memset(l, 0, sizeof *l);
}

void
netctl_leases_free(struct netctl_lease *l, size_t n)
{
	size_t	i;

	if (l == NULL)
		return;
	for (i = 0; i < n; i++)
		netctl_lease_clear(&l[i]);
	free(l);
}

static uint64_t
ipam_mac64(const uint8_t mac[6])
{
	uint64_t	m = 0;
	int		i;

	for (i = 0; i < 6; i++)
		m = m << 8 | mac[i];
	return (m);
}

static void
ipam_mac48(uint64_t m, uint8_t mac[6])
{
	int	i;

	for (i = 5; i >= 0; i--) {
		mac[i] = m & 0xff;
		m >>= 8;
	}
}

/* Index of m in the sorted MAC set, or where it would go; *found says. */
static size_t
ipam_mac_find(struct netctl_ipam *ipam, uint64_t m, int *found)
{
	size_t	lo = 0, hi = ipam->nmacs, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (ipam->macs[mid] < m)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < ipam->nmacs && ipam->macs[lo] == m;
	return (lo);
}

void
netctl_ipam_mac_reserve(struct netctl_ipam *ipam, const uint8_t mac[6])
{
	uint64_t	m = ipam_mac64(mac);
	size_t		i;
	int		found;

	i = ipam_mac_find(ipam, m, &found);
	if (found)
		return;
	if (ipam->nmacs == ipam->macsize) {
		ipam->macsize = ipam->macsize == 0 ? 64 : ipam->macsize * 2;
		ipam->macs = xrealloc(ipam->macs,
		    ipam->macsize * sizeof *ipam->macs);
	}
	memmove(&ipam->macs[i + 1], &ipam->macs[i],
	    (ipam->nmacs - i) * sizeof *ipam->macs);
	ipam->macs[i] = m;
	ipam->nmacs++;
}

void
netctl_ipam_mac_forget(struct netctl_ipam *ipam, const uint8_t mac[6])
{
	size_t	i;
	int	found;

	i = ipam_mac_find(ipam, ipam_mac64(mac), &found);
	if (!found)
		return;
	memmove(&ipam->macs[i], &ipam->macs[i + 1],
	    (ipam->nmacs - i - 1) * sizeof *ipam->macs);
	ipam->nmacs--;
}

int
netctl_ipam_mac_inuse(struct netctl_ipam *ipam, const uint8_t mac[6])
{
	int	found;

	ipam_mac_find(ipam, ipam_mac64(mac), &found);
	return (found);
}

void
netctl_ipam_set_random(struct netctl_ipam *ipam, void (*fn)(void *, size_t))
{
	ipam->random = fn != NULL ? fn : arc4random_buf;
}

/* Draws random 52:54:00 MACs until one is free (QEMU's default never is). */
int
netctl_ipam_mac_new(struct netctl_ipam *ipam, uint8_t mac[6], char **cause)
{
	uint8_t		r[3];
	uint64_t	m;
	int		i;

	for (i = 0; i < IPAM_MAC_TRIES; i++) {
		ipam->random(r, sizeof r);
		m = IPAM_MAC_OUI | (uint64_t)r[0] << 16 | r[1] << 8 | r[2];
		ipam_mac48(m, mac);
		if (m == IPAM_MAC_QEMU || netctl_ipam_mac_inuse(ipam, mac))
			continue;
		netctl_ipam_mac_reserve(ipam, mac);
		return (0);
	}
	netctl_cause(cause, "cannot find a free MAC address (%zu in use)",
	    ipam->nmacs);
	return (-1);
}

/* Splits a leases key "NETWORK/IP" and its JSON value into a lease. */
static int
ipam_lease_decode(const char *key, const json_t *val, struct netctl_lease *l)
{
	const char	*slash, *vm, *nic;
	uint32_t	 ip;
	uint8_t		 mac[6];

	memset(l, 0, sizeof *l);
	if ((slash = strrchr(key, '/')) == NULL || slash == key)
		return (-1);
	if (netctl_ip_parse(slash + 1, &ip) != 0)
		return (-1);
	if (!json_is_object(val) || netctl_mac_parse(json_string_value(
	    json_object_get(val, "mac")), mac) != 0)
		return (-1);
	if ((vm = json_string_value(json_object_get(val, "vm"))) == NULL)
		vm = "";
	if ((nic = json_string_value(json_object_get(val, "nic"))) == NULL)
		nic = "";
	l->network = xstrndup(key, slash - key);
	l->ip = ip;
	memcpy(l->mac, mac, sizeof l->mac);
	l->vm = xstrdup(vm);
	l->nic = xstrdup(nic);
	return (0);
}

static int
ipam_load_cb(const char *key, json_t *val, void *arg)
{
	struct netctl_ipam	*ipam = arg;
	struct netctl_lease	 l;

	if (ipam_lease_decode(key, val, &l) != 0) {
		log_warnx("leases: ignoring bad record %s", key);
		return (0);
	}
	netctl_ipam_mac_reserve(ipam, l.mac);
	netctl_lease_clear(&l);
	return (0);
}

/* Opens IPAM on db, loading the MACs of every lease. */
struct netctl_ipam *
netctl_ipam_open(struct db *db, char **cause)
{
	struct netctl_ipam	*ipam;

	ipam = xcalloc(1, sizeof *ipam);
	ipam->db = db;
	ipam->random = arc4random_buf;
	if (db_foreach(db, DB_LEASES, ipam_load_cb, ipam, cause) == -1) {
		netctl_ipam_free(ipam);
		return (NULL);
	}
	return (ipam);
}

void
netctl_ipam_free(struct netctl_ipam *ipam)
{
	size_t	i;

	if (ipam == NULL)
		return;
	for (i = 0; i < ipam->nhints; i++)
		free(ipam->hints[i].network);
	free(ipam->hints);
	free(ipam->macs);
	free(ipam);
}

static struct ipam_hint *
ipam_hint(struct netctl_ipam *ipam, const char *network)
{
	struct ipam_hint	*h;
	size_t			 i;

	for (i = 0; i < ipam->nhints; i++) {
		if (strcmp(ipam->hints[i].network, network) == 0)
			return (&ipam->hints[i]);
	}
	ipam->hints = xrealloc(ipam->hints,
	    (ipam->nhints + 1) * sizeof *ipam->hints);
	h = &ipam->hints[ipam->nhints++];
	h->network = xstrdup(network);
	h->next = 0;
	return (h);
}

/* A network name usable in a key: not empty, no slash. */
static int
ipam_check_network(const char *network, char **cause)
{
	if (network == NULL || *network == '\0' ||
	    strchr(network, '/') != NULL) {
		netctl_cause(cause, "invalid network name %s",
		    network == NULL ? "(none)" : network);
		return (-1);
	}
	return (0);
}

static char *
ipam_key(const char *network, uint32_t ip)
{
	char	 buf[NETCTL_IPSTRLEN];
	char	*key;

	xasprintf(&key, "%s/%s", network, netctl_ip_format(ip, buf,
	    sizeof buf));
	return (key);
}

/* 1 if network's address ip has a lease in txn. */
static int
ipam_used(struct db_txn *txn, const char *network, uint32_t ip)
{
	json_t	*j;
	char	*key;

	key = ipam_key(network, ip);
	j = db_txn_get(txn, DB_LEASES, key);
	free(key);
	if (j == NULL)
		return (0);
	json_decref(j);
	return (1);
}

/* The first address from..to without a lease in txn, or 0. */
static uint32_t
ipam_scan(struct db_txn *txn, const char *network, uint32_t from,
    uint32_t to)
{
	uint32_t	ip;

	for (ip = from; ip <= to; ip++) {
		if (!ipam_used(txn, network, ip))
			return (ip);
	}
	return (0);
}

int
netctl_ipam_alloc_txn(struct netctl_ipam *ipam, struct db_txn *txn,
    const char *network, const struct netctl_subnet *sn, const char *vm,
    const char *nic, struct netctl_lease *lease, char **cause)
{
	struct ipam_hint	*hint;
	char			 macstr[NETCTL_MACSTRLEN];
	char			*key;
	json_t			*j;
	uint32_t		 ip, first, last, start;
	uint8_t			 mac[6];

	memset(lease, 0, sizeof *lease);
	if (ipam_check_network(network, cause) != 0)
		return (-1);
	if (vm == NULL)
		vm = "";
	if (nic == NULL)
		nic = "";

	/*
	 * Lowest free address, skipping network, gateway and broadcast:
	 * from the hint, unless the address just below it is free (the
	 * transaction that took it aborted), and from the start again before
	 * calling the network full.
	 */
	first = netctl_subnet_gateway(sn) + 1;
	last = netctl_subnet_broadcast(sn) - 1;
	hint = ipam_hint(ipam, network);
	start = hint->next;
	if (start <= first || start > last + 1 ||
	    !ipam_used(txn, network, start - 1))
		start = first;
	if ((ip = ipam_scan(txn, network, start, last)) == 0 && start > first)
		ip = ipam_scan(txn, network, first, start - 1);
	if (ip == 0) {
		netctl_cause(cause, "network %s is full: all %u addresses are in "
		    "use", network, netctl_subnet_hosts(sn));
		return (-1);
	}
	key = ipam_key(network, ip);

	if (netctl_ipam_mac_new(ipam, mac, cause) != 0) {
		free(key);
		return (-1);
	}
	j = json_pack("{s:s, s:s, s:s}", "mac",
	    netctl_mac_format(mac, macstr, sizeof macstr), "vm", vm,
	    "nic", nic);
	if (j == NULL || db_txn_put(txn, DB_LEASES, key, j, cause) != 0) {
		if (j == NULL)
			netctl_cause(cause, "cannot encode lease %s", key);
		json_decref(j);
		free(key);
		netctl_ipam_mac_forget(ipam, mac);
		return (-1);
	}
	json_decref(j);
	free(key);
	hint->next = ip + 1;

	lease->network = xstrdup(network);
	lease->ip = ip;
	memcpy(lease->mac, mac, sizeof lease->mac);
	lease->vm = xstrdup(vm);
	lease->nic = xstrdup(nic);
	return (0);
}

/*
 * Records the lease of a NIC that comes from another host (a live
 * migration): the same address and MAC it had there, so the guest's
 * address stays valid. The address must be a host address of sn that no
 * one here leases, the MAC one no NIC here has; the MAC is reserved from
 * then on (netctl_ipam_mac_forget undoes it if the caller aborts).
 */
int
netctl_ipam_claim_txn(struct netctl_ipam *ipam, struct db_txn *txn,
    const char *network, const struct netctl_subnet *sn, uint32_t ip,
    const uint8_t mac[6], const char *vm, const char *nic, char **cause)
{
	char	 ipstr[NETCTL_IPSTRLEN], macstr[NETCTL_MACSTRLEN];
	char	*key;
	json_t	*j;

	if (ipam_check_network(network, cause) != 0)
		return (-1);
	netctl_ip_format(ip, ipstr, sizeof ipstr);
	netctl_mac_format(mac, macstr, sizeof macstr);
	if (!netctl_subnet_contains(sn, ip) ||
	    ip <= netctl_subnet_gateway(sn) ||
	    ip >= netctl_subnet_broadcast(sn)) {
		netctl_cause(cause, "address %s is not a host address of "
		    "network %s here", ipstr, network);
		return (-1);
	}
	if (ipam_used(txn, network, ip)) {
		netctl_cause(cause, "address %s of network %s is leased to "
		    "another NIC here", ipstr, network);
		return (-1);
	}
	if (netctl_ipam_mac_inuse(ipam, mac)) {
		netctl_cause(cause, "MAC %s is another NIC's here", macstr);
		return (-1);
	}
	j = json_pack("{s:s, s:s, s:s}", "mac", macstr, "vm",
	    vm != NULL ? vm : "", "nic", nic != NULL ? nic : "");
	key = ipam_key(network, ip);
	if (j == NULL || db_txn_put(txn, DB_LEASES, key, j, cause) != 0) {
		if (j == NULL)
			netctl_cause(cause, "cannot encode lease %s", key);
		json_decref(j);
		free(key);
		return (-1);
	}
	json_decref(j);
	free(key);
	netctl_ipam_mac_reserve(ipam, mac);
	return (0);
}

int
netctl_ipam_alloc(struct netctl_ipam *ipam, const char *network,
    const struct netctl_subnet *sn, const char *vm, const char *nic,
    struct netctl_lease *lease, char **cause)
{
	struct db_txn	*txn;

	memset(lease, 0, sizeof *lease);
	if ((txn = db_begin(ipam->db, cause)) == NULL)
		return (-1);
	if (netctl_ipam_alloc_txn(ipam, txn, network, sn, vm, nic, lease,
	    cause) != 0) {
		db_abort(txn);
		return (-1);
	}
	if (db_commit(txn, cause) != 0) {
		netctl_ipam_mac_forget(ipam, lease->mac);
		netctl_lease_clear(lease);
		return (-1);
	}
	return (0);
}

/*
 * Deletes one lease inside txn.  Its MAC stays reserved in memory: the
 * transaction may yet abort, and a stale reservation costs nothing.
 */
int
netctl_ipam_release_txn(struct netctl_ipam *ipam, struct db_txn *txn,
    const char *network, uint32_t ip, char **cause)
{
	struct ipam_hint	*hint;
	char			*key;
	int			 rc;

	if (ipam_check_network(network, cause) != 0)
		return (-1);
	key = ipam_key(network, ip);
	rc = db_txn_del(txn, DB_LEASES, key, cause);
	free(key);
	if (rc == 0) {
		/* Lowering is always safe, whether txn commits or not. */
		hint = ipam_hint(ipam, network);
		if (hint->next == 0 || ip < hint->next)
			hint->next = ip;
	}
	return (rc);
}

/* Deletes one lease in its own transaction, then frees its MAC too. */
int
netctl_ipam_release(struct netctl_ipam *ipam, const char *network,
    uint32_t ip, char **cause)
{
	struct netctl_lease	 l;
	struct db_txn		*txn;
	json_t			*j;
	char			*key;
	int			 rc, havemac = 0;

	if (ipam_check_network(network, cause) != 0)
		return (-1);
	if ((txn = db_begin(ipam->db, cause)) == NULL)
		return (-1);
	key = ipam_key(network, ip);
	if ((j = db_txn_get(txn, DB_LEASES, key)) != NULL) {
		if (ipam_lease_decode(key, j, &l) == 0)
			havemac = 1;
		json_decref(j);
	}
	free(key);
	if ((rc = netctl_ipam_release_txn(ipam, txn, network, ip,
	    cause)) != 0) {
		db_abort(txn);
		if (havemac)
			netctl_lease_clear(&l);
		return (rc);
	}
	if (db_commit(txn, cause) != 0)
		rc = -1;
	if (havemac) {
		if (rc == 0)
			netctl_ipam_mac_forget(ipam, l.mac);
		netctl_lease_clear(&l);
	}
	return (rc);
}

struct ipam_collect {
	const char		*network;	/* filter, or NULL */
	const char		*vm;		/* filter, or NULL */
	const uint8_t		*mac;		/* filter, or NULL; stops */
	struct netctl_lease	*leases;
	size_t			 n;
	size_t			 size;
};

static int
ipam_collect_cb(const char *key, json_t *val, void *arg)
{
	struct ipam_collect	*c = arg;
	struct netctl_lease	 l;

	if (ipam_lease_decode(key, val, &l) != 0)
		return (0);
	if ((c->network != NULL && strcmp(l.network, c->network) != 0) ||
	    (c->vm != NULL && strcmp(l.vm, c->vm) != 0) ||
	    (c->mac != NULL && memcmp(l.mac, c->mac, sizeof l.mac) != 0)) {
		netctl_lease_clear(&l);
		return (0);
	}
	if (c->n == c->size) {
		c->size = c->size == 0 ? 16 : c->size * 2;
		c->leases = xrealloc(c->leases, c->size * sizeof *c->leases);
	}
	c->leases[c->n++] = l;
	return (c->mac != NULL);
}

static int
ipam_lease_cmp(const void *a, const void *b)
{
	const struct netctl_lease	*la = a, *lb = b;
	int				 rc;

	if ((rc = strcmp(la->network, lb->network)) != 0)
		return (rc);
	if (la->ip != lb->ip)
		return (la->ip < lb->ip ? -1 : 1);
	return (0);
}

/* Reads the matching committed leases, sorted by network and address. */
static int
ipam_collect(struct netctl_ipam *ipam, struct ipam_collect *c, char **cause)
{
	if (db_foreach(ipam->db, DB_LEASES, ipam_collect_cb, c, cause) == -1) {
		netctl_leases_free(c->leases, c->n);
		c->leases = NULL;
		c->n = 0;
		return (-1);
	}
	if (c->n > 1)
		qsort(c->leases, c->n, sizeof *c->leases, ipam_lease_cmp);
	return (0);
}

int
netctl_ipam_leases(struct netctl_ipam *ipam, const char *network,
    struct netctl_lease **leases, size_t *n, char **cause)
{
	struct ipam_collect	c;

	*leases = NULL;
	*n = 0;
	memset(&c, 0, sizeof c);
	c.network = network;
	if (ipam_collect(ipam, &c, cause) != 0)
		return (-1);
	*leases = c.leases;
	*n = c.n;
	return ((int)c.n);
}

int
netctl_ipam_find_mac(struct netctl_ipam *ipam, const uint8_t mac[6],
    struct netctl_lease *lease, char **cause)
{
	struct ipam_collect	c;

	memset(lease, 0, sizeof *lease);
	memset(&c, 0, sizeof c);
	c.mac = mac;
	if (ipam_collect(ipam, &c, cause) != 0)
		return (-1);
	if (c.n == 0)
		return (1);
	*lease = c.leases[0];
	free(c.leases);
	return (0);
}

/*
 * Deletes every committed lease of vm inside txn; the list is read from
 * the committed state (qmpd is the only writer, so it is txn's base).
 */
int
netctl_ipam_release_vm_txn(struct netctl_ipam *ipam, struct db_txn *txn,
    const char *vm, char **cause)
{
	struct ipam_collect	c;
	size_t			i;
	int			rc = 0;

	memset(&c, 0, sizeof c);
	c.vm = vm;
	if (ipam_collect(ipam, &c, cause) != 0)
		return (-1);
	for (i = 0; i < c.n; i++) {
		if (netctl_ipam_release_txn(ipam, txn, c.leases[i].network,
		    c.leases[i].ip, cause) == -1) {
			rc = -1;
			break;
		}
	}
	netctl_leases_free(c.leases, c.n);
	return (rc == 0 ? (int)c.n : -1);
}

int
netctl_ipam_release_vm(struct netctl_ipam *ipam, const char *vm,
    char **cause)
{
	struct ipam_collect	 c;
	struct db_txn		*txn;
	size_t			 i;

	memset(&c, 0, sizeof c);
	c.vm = vm;
	if (ipam_collect(ipam, &c, cause) != 0)
		return (-1);
	if ((txn = db_begin(ipam->db, cause)) == NULL)
		goto fail;
	for (i = 0; i < c.n; i++) {
		if (netctl_ipam_release_txn(ipam, txn, c.leases[i].network,
		    c.leases[i].ip, cause) == -1) {
			db_abort(txn);
			goto fail;
		}
	}
	if (db_commit(txn, cause) != 0)
		goto fail;
	for (i = 0; i < c.n; i++)
		netctl_ipam_mac_forget(ipam, c.leases[i].mac);
	netctl_leases_free(c.leases, c.n);
	return ((int)i);
fail:
	netctl_leases_free(c.leases, c.n);
	return (-1);
}
