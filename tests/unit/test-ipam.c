/*
 * netctl's pure parts: subnet parsing and arithmetic, IPAM on a temporary
 * LMDB (allocation order, release and reuse, exhaustion, one-transaction
 * allocation, persistence across reopen, MAC uniqueness), interface and
 * network name validation, and the generated dnsmasq and nft texts.
 */
#include <errno.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "db.h"
#include "dnsmasq.h"
#include "ipam.h"
#include "link.h"
#include "netctl.h"
#include "nft.h"
#include "xmalloc.h"

#include "check.h"

static uint32_t
ip(const char *s)
{
	uint32_t	a = 0;

	if (netctl_ip_parse(s, &a) != 0)
		fprintf(stderr, "bad test address %s\n", s);
	return (a);
}

static const char *
ipstr(uint32_t a)
{
	static char	buf[4][NETCTL_IPSTRLEN];
	static int	i;

	i = (i + 1) % 4;
	return (netctl_ip_format(a, buf[i], sizeof buf[i]));
}

static int
contains(const char *hay, const char *needle)
{
	return (hay != NULL && strstr(hay, needle) != NULL);
}

/* Parses s as a subnet, returning 0 or -1 and the cause in *cause. */
static int
subnet(const char *s, struct netctl_subnet *sn, char **cause)
{
	free(*cause);
	*cause = NULL;
	return (netctl_subnet_parse(s, sn, cause));
}

static void
test_parse(void)
{
	struct netctl_subnet	 sn, a, b;
	char			 buf[NETCTL_CIDRSTRLEN], *cause = NULL;
	uint32_t		 v;
	int			 prefix;

	CHECK(netctl_ip_parse("10.1.0.2", &v) == 0 && v == 0x0a010002);
	CHECK(netctl_ip_parse("255.255.255.255", &v) == 0 &&
	    v == 0xffffffff);
	CHECK(netctl_ip_parse("1.2.3", &v) == -1);
	CHECK(netctl_ip_parse("1.2.3.4.5", &v) == -1);
	CHECK(netctl_ip_parse("256.1.1.1", &v) == -1);
	CHECK(netctl_ip_parse("01.2.3.4", &v) == -1);
	CHECK(netctl_ip_parse(" 1.2.3.4", &v) == -1);
	CHECK(netctl_ip_parse("", &v) == -1);
	CHECK(netctl_ip_parse(NULL, &v) == -1);

	CHECK(netctl_cidr_parse("10.1.0.1/24", &v, &prefix) == 0 &&
	    v == 0x0a010001 && prefix == 24);
	CHECK(netctl_cidr_parse("10.1.0.0/0", &v, &prefix) == 0 &&
	    prefix == 0);
	CHECK(netctl_cidr_parse("10.1.0.0/33", &v, &prefix) == -1);
	CHECK(netctl_cidr_parse("10.1.0.0/", &v, &prefix) == -1);
	CHECK(netctl_cidr_parse("10.1.0.0/024", &v, &prefix) == -1);
	CHECK(netctl_cidr_parse("10.1.0.0/2a", &v, &prefix) == -1);
	CHECK(netctl_cidr_parse("10.1.0.0/-1", &v, &prefix) == -1);
	CHECK(netctl_cidr_parse("10.1.0.0", &v, &prefix) == -1);
	CHECK(netctl_cidr_parse("10.1.0.0/24/1", &v, &prefix) == -1);

	CHECK(subnet("10.1.0.0/24", &sn, &cause) == 0);
	CHECK(sn.addr == 0x0a010000 && sn.prefix == 24);
	CHECK_STR(netctl_subnet_format(&sn, buf, sizeof buf), "10.1.0.0/24");
	CHECK(subnet("172.16.0.0/16", &sn, &cause) == 0);
	CHECK(subnet("192.168.7.8/29", &sn, &cause) == 0);
	/* Any valid unicast range may be an office's, private or not. */
	CHECK(subnet("100.64.0.0/16", &sn, &cause) == 0);

	CHECK(subnet("10.1.0.5/24", &sn, &cause) == -1);
	CHECK(contains(cause, "host bits") && contains(cause, "10.1.0.0/24"));
	CHECK(subnet("10.0.0.0/15", &sn, &cause) == -1);
	CHECK(contains(cause, "between /16 and /29"));
	CHECK(subnet("10.1.0.0/30", &sn, &cause) == -1);
	CHECK(contains(cause, "between /16 and /29"));
	CHECK(subnet("127.0.0.0/16", &sn, &cause) == -1);
	CHECK(contains(cause, "loopback"));
	CHECK(subnet("0.0.0.0/16", &sn, &cause) == -1);
	CHECK(subnet("169.254.0.0/16", &sn, &cause) == -1);
	CHECK(contains(cause, "link-local"));
	CHECK(subnet("224.1.0.0/16", &sn, &cause) == -1);
	CHECK(contains(cause, "multicast"));
	CHECK(subnet("250.0.0.0/16", &sn, &cause) == -1);
	CHECK(subnet("garbage", &sn, &cause) == -1);
	CHECK(contains(cause, "invalid subnet garbage"));
	CHECK(subnet(NULL, &sn, &cause) == -1);
	free(cause);
	cause = NULL;

	/* Arithmetic. */
	CHECK(netctl_subnet_parse("10.1.0.0/24", &sn, NULL) == 0);
	CHECK_STR(ipstr(netctl_subnet_gateway(&sn)), "10.1.0.1");
	CHECK_STR(ipstr(netctl_subnet_broadcast(&sn)), "10.1.0.255");
	CHECK_STR(ipstr(netctl_subnet_mask(&sn)), "255.255.255.0");
	CHECK(netctl_subnet_hosts(&sn) == 253);
	CHECK_STR(netctl_subnet_gateway_cidr(&sn, buf, sizeof buf),
	    "10.1.0.1/24");
	CHECK(netctl_subnet_contains(&sn, ip("10.1.0.77")));
	CHECK(!netctl_subnet_contains(&sn, ip("10.1.1.1")));
	CHECK(netctl_subnet_parse("10.1.0.0/29", &sn, NULL) == 0);
	CHECK(netctl_subnet_hosts(&sn) == 5);
	CHECK_STR(ipstr(netctl_subnet_broadcast(&sn)), "10.1.0.7");
	CHECK(netctl_subnet_parse("10.9.0.0/16", &sn, NULL) == 0);
	CHECK(netctl_subnet_hosts(&sn) == 65533);
	CHECK_STR(ipstr(netctl_subnet_broadcast(&sn)), "10.9.255.255");

	/* Overlap, both ways round. */
	CHECK(netctl_subnet_parse("10.1.0.0/24", &a, NULL) == 0);
	CHECK(netctl_subnet_parse("10.1.0.0/16", &b, NULL) == 0);
	CHECK(netctl_subnets_overlap(&a, &b) && netctl_subnets_overlap(&b, &a));
	CHECK(netctl_subnet_parse("10.1.1.0/24", &b, NULL) == 0);
	CHECK(!netctl_subnets_overlap(&a, &b) &&
	    !netctl_subnets_overlap(&b, &a));
	CHECK(netctl_subnet_parse("10.1.0.248/29", &b, NULL) == 0);
	CHECK(netctl_subnets_overlap(&a, &b) && netctl_subnets_overlap(&b, &a));
	CHECK(netctl_subnet_parse("10.0.255.248/29", &b, NULL) == 0);
	CHECK(!netctl_subnets_overlap(&a, &b));
	CHECK(netctl_subnets_overlap(&a, &a));
}

static void
test_mac(void)
{
	uint8_t	mac[6];
	char	buf[NETCTL_MACSTRLEN];

	CHECK(netctl_mac_parse("52:54:00:AB:cd:0f", mac) == 0);
	CHECK(mac[0] == 0x52 && mac[3] == 0xab && mac[5] == 0x0f);
	CHECK_STR(netctl_mac_format(mac, buf, sizeof buf),
	    "52:54:00:ab:cd:0f");
	CHECK(netctl_mac_parse("52:54:00:ab:cd", mac) == -1);
	CHECK(netctl_mac_parse("52:54:00:ab:cd:0g", mac) == -1);
	CHECK(netctl_mac_parse("52-54-00-ab-cd-0f", mac) == -1);
	CHECK(netctl_mac_parse("52:54:00:ab:cd:0f0", mac) == -1);
	CHECK(netctl_mac_parse(NULL, mac) == -1);
}

static void
test_names(void)
{
	struct netctl_net	 net, back;
	json_t			*j;
	char			 br[IFNAMSIZ], *cause = NULL;

	CHECK(netctl_name_owned("qbr0"));
	CHECK(netctl_name_owned("qtap12"));
	CHECK(netctl_name_owned("qbr123456789012"));	/* 15: fits */
	CHECK(!netctl_name_owned("qbr1234567890123"));	/* 16: too long */
	CHECK(!netctl_name_owned("qbr"));
	CHECK(!netctl_name_owned("qtap"));
	CHECK(!netctl_name_owned("eth0"));
	CHECK(!netctl_name_owned("lo"));
	CHECK(!netctl_name_owned("virbr0"));
	CHECK(!netctl_name_owned("xqbr0"));
	CHECK(!netctl_name_owned("qbr/0"));
	CHECK(!netctl_name_owned("qtap 1"));
	CHECK(!netctl_name_owned(""));
	CHECK(!netctl_name_owned(NULL));
	CHECK(netctl_name_bridge("qbr0") && !netctl_name_bridge("qtap0"));
	CHECK(netctl_name_tap("qtap0") && !netctl_name_tap("qbr0"));

	CHECK(netctl_name_check("qbr0", NULL, &cause) == 0 && cause == NULL);
	CHECK(netctl_name_check("eth0", NULL, &cause) == -EPERM);
	CHECK(contains(cause, "refusing to change interface eth0"));
	free(cause);
	cause = NULL;
	CHECK(netctl_name_check("qtap0", NETCTL_BRIDGE_PREFIX, &cause) ==
	    -EPERM);
	CHECK(contains(cause, "not a qdesk bridge"));
	free(cause);
	cause = NULL;
	CHECK(netctl_name_check("qtap0123456789ab", NULL, &cause) ==
	    -ENAMETOOLONG);
	CHECK(contains(cause, "at most 15"));
	free(cause);
	cause = NULL;
	CHECK(netctl_name_check("", NULL, NULL) == -EINVAL);

	/* Network names become bridge names. */
	CHECK(netctl_net_name_check("sales", NULL) == 0);
	CHECK(netctl_net_name_check("dept-2_a", NULL) == 0);
	CHECK(netctl_net_name_check("Sales", NULL) == -1);
	CHECK(netctl_net_name_check("-a", NULL) == -1);
	CHECK(netctl_net_name_check("a/b", NULL) == -1);
	CHECK(netctl_net_name_check("", NULL) == -1);
	CHECK(netctl_net_name_check("abcdefghijkl", NULL) == 0);
	CHECK(netctl_net_name_check("abcdefghijklm", &cause) == -1);
	CHECK(contains(cause, "too long"));
	free(cause);
	cause = NULL;
	CHECK(netctl_net_bridge_name("abcdefghijkl", br, sizeof br, NULL) ==
	    0);
	CHECK_STR(br, "qbrabcdefghijkl");
	CHECK(netctl_name_bridge(br));

	/* Whole definitions from the CLI's words. */
	CHECK(netctl_net_init(&net, "sales", "10.1.0.0/24", NULL, NULL,
	    &cause) == 0);
	CHECK(net.mode == NETCTL_NAT && net.uplink == NULL);
	CHECK_STR(net.bridge, "qbrsales");
	j = netctl_net_to_json(&net);
	CHECK(j != NULL);
	CHECK(netctl_net_from_json(&back, "sales", j, &cause) == 0);
	CHECK(back.subnet.addr == net.subnet.addr &&
	    back.subnet.prefix == 24 && back.mode == NETCTL_NAT);
	CHECK_STR(back.bridge, "qbrsales");
	netctl_net_clear(&back);
	json_object_set_new(j, "bridge", json_string("eth0"));
	CHECK(netctl_net_from_json(&back, "sales", j, &cause) == -1);
	CHECK(contains(cause, "bad record"));
	free(cause);
	cause = NULL;
	json_decref(j);
	netctl_net_clear(&net);

	CHECK(netctl_net_init(&net, "lan", "192.168.50.0/24", "bridge",
	    "eth1", NULL) == 0);
	CHECK(net.mode == NETCTL_BRIDGE);
	CHECK_STR(net.uplink, "eth1");
	j = netctl_net_to_json(&net);
	CHECK(netctl_net_from_json(&back, "lan", j, NULL) == 0);
	CHECK_STR(back.uplink, "eth1");
	netctl_net_clear(&back);
	json_decref(j);
	netctl_net_clear(&net);

	CHECK(netctl_net_init(&net, "lan", "10.2.0.0/24", "bridge", NULL,
	    &cause) == -1);
	CHECK(contains(cause, "needs an uplink"));
	free(cause);
	cause = NULL;
	CHECK(netctl_net_init(&net, "lan", "10.2.0.0/24", "bridge", "lo",
	    NULL) == -1);
	CHECK(netctl_net_init(&net, "lan", "10.2.0.0/24", "bridge", "qbrx",
	    NULL) == -1);
	CHECK(netctl_net_init(&net, "lan", "10.2.0.0/24", "nat", "eth1",
	    &cause) == -1);
	CHECK(contains(cause, "only for bridge mode"));
	free(cause);
	cause = NULL;
	CHECK(netctl_net_init(&net, "lan", "10.2.0.0/24", "routed", NULL,
	    &cause) == -1);
	CHECK(contains(cause, "unknown network mode routed"));
	free(cause);
	cause = NULL;
	CHECK(netctl_net_init(&net, "lan", "10.2.0.9/24", NULL, NULL,
	    NULL) == -1);
	CHECK(net.name == NULL && net.bridge == NULL);
}

/* A random source the test controls: a list of 3-byte draws, cycled. */
static const uint8_t	*rng_draws;
static size_t		 rng_n, rng_i;

static void
rng_fixed(void *buf, size_t len)
{
	CHECK(len == 3);
	memcpy(buf, rng_draws + 3 * (rng_i++ % rng_n), 3);
}

static int
count_leases(struct netctl_ipam *ipam, const char *network)
{
	struct netctl_lease	*l;
	size_t			 n;
	int			 rc;

	rc = netctl_ipam_leases(ipam, network, &l, &n, NULL);
	netctl_leases_free(l, n);
	return (rc);
}

/*
 * Allocation on one network after another: lowest address first, release
 * and reuse, exhaustion, a lease deleted behind IPAM's back, listing and
 * lookup by MAC. Leaves desk1 two leases on a, desk3 to desk5 one each.
 */
static void
test_ipam_alloc(struct netctl_ipam *ipam, struct db *db,
    struct netctl_lease *l, const struct netctl_subnet *s29,
    const struct netctl_subnet *s24)
{
	struct netctl_lease	 x, *all;
	uint8_t			 saved[6];
	char			*cause = NULL;
	size_t			 i, j, n;

	/* Lowest first: network .0 and gateway .1 are never handed out. */
	for (i = 0; i < 3; i++) {
		CHECK(netctl_ipam_alloc(ipam, "a", s29, "desk1", i == 0 ?
		    "net0" : "net1", &l[i], &cause) == 0);
	}
	CHECK_STR(ipstr(l[0].ip), "10.1.0.2");
	CHECK_STR(ipstr(l[1].ip), "10.1.0.3");
	CHECK_STR(ipstr(l[2].ip), "10.1.0.4");
	CHECK_STR(l[0].network, "a");
	CHECK_STR(l[0].vm, "desk1");
	CHECK_STR(l[0].nic, "net0");
	for (i = 0; i < 3; i++) {
		CHECK(l[i].mac[0] == 0x52 && l[i].mac[1] == 0x54 &&
		    l[i].mac[2] == 0x00);
		CHECK(netctl_ipam_mac_inuse(ipam, l[i].mac));
		for (j = 0; j < i; j++)
			CHECK(memcmp(l[i].mac, l[j].mac, 6) != 0);
	}

	/* Networks are independent. */
	CHECK(netctl_ipam_alloc(ipam, "b", s24, "desk2", "net0", &x,
	    &cause) == 0);
	CHECK_STR(ipstr(x.ip), "10.2.0.2");
	netctl_lease_clear(&x);

	/* Release and reuse: the freed address is the lowest again. */
	memcpy(saved, l[1].mac, 6);
	CHECK(netctl_ipam_release(ipam, "a", l[1].ip, &cause) == 0);
	CHECK(!netctl_ipam_mac_inuse(ipam, saved));
	CHECK(netctl_ipam_release(ipam, "a", l[1].ip, &cause) == 1);
	netctl_lease_clear(&l[1]);
	CHECK(netctl_ipam_alloc(ipam, "a", s29, "desk3", "net0", &l[1],
	    &cause) == 0);
	CHECK_STR(ipstr(l[1].ip), "10.1.0.3");

	/* Exhaustion: .2 to .6 are the 5 addresses of a /29. */
	CHECK(netctl_ipam_alloc(ipam, "a", s29, "desk4", "net0", &l[3],
	    &cause) == 0);
	CHECK(netctl_ipam_alloc(ipam, "a", s29, "desk5", "net0", &l[4],
	    &cause) == 0);
	CHECK_STR(ipstr(l[4].ip), "10.1.0.6");
	CHECK(netctl_ipam_alloc(ipam, "a", s29, "desk6", "net0", &x,
	    &cause) == -1);
	CHECK_STR(cause, "network a is full: all 5 addresses are in use");
	free(cause);
	cause = NULL;
	CHECK(x.network == NULL);
	CHECK(count_leases(ipam, "a") == 5);
	/*
	 * A lease deleted behind IPAM's back (not through a release) is
	 * still found before the network is called full.
	 */
	CHECK(db_del(db, DB_LEASES, "a/10.1.0.4", &cause) == 0);
	CHECK(netctl_ipam_alloc(ipam, "a", s29, "desk6", "net0", &x,
	    &cause) == 0);
	CHECK_STR(ipstr(x.ip), "10.1.0.4");
	CHECK_STR(x.vm, "desk6");
	netctl_lease_clear(&x);
	CHECK(netctl_ipam_alloc(ipam, "a", s29, "desk6", "net1", &x,
	    &cause) == -1);
	free(cause);
	cause = NULL;
	/* Put desk1's second lease back as it was for the tests below. */
	CHECK(netctl_ipam_release(ipam, "a", ip("10.1.0.4"), &cause) == 0);
	netctl_lease_clear(&l[2]);
	CHECK(netctl_ipam_alloc(ipam, "a", s29, "desk1", "net1", &l[2],
	    &cause) == 0);
	CHECK_STR(ipstr(l[2].ip), "10.1.0.4");
	CHECK(netctl_ipam_alloc(ipam, "a/b", s29, "x", "y", &x,
	    &cause) == -1);
	free(cause);
	cause = NULL;

	/* Listing is sorted by address. */
	CHECK(netctl_ipam_leases(ipam, "a", &all, &n, NULL) == 5);
	for (i = 0; i + 1 < n; i++)
		CHECK(all[i].ip < all[i + 1].ip);
	CHECK_STR(all[0].vm, "desk1");
	CHECK_STR(all[1].vm, "desk3");
	netctl_leases_free(all, n);
	CHECK(count_leases(ipam, NULL) == 6);

	CHECK(netctl_ipam_find_mac(ipam, l[3].mac, &x, NULL) == 0);
	CHECK(x.ip == l[3].ip);
	CHECK_STR(x.vm, "desk4");
	netctl_lease_clear(&x);
	CHECK(netctl_ipam_find_mac(ipam, (const uint8_t *)"\x52\x54\0\0\0\0",
	    &x, NULL) == 1);
}

/*
 * Allocation inside the caller's transaction (all or nothing with the VM
 * definition), releasing a VM's leases, and many leases on a /16.
 */
static void
test_ipam_txn(struct netctl_ipam *ipam, struct db *db,
    struct netctl_lease *l, const struct netctl_subnet *s24,
    const struct netctl_subnet *s16)
{
	struct netctl_lease	 x, *all;
	struct db_txn		*txn;
	json_t			*vm;
	char			*cause = NULL;
	size_t			 i, n;

	/*
	 * One transaction: two NICs and the VM definition land together
	 * (distinct addresses though neither is committed), or not at all.
	 */
	txn = db_begin(db, &cause);
	CHECK(txn != NULL);
	CHECK(netctl_ipam_alloc_txn(ipam, txn, "c", s24, "desk7", "net0",
	    &l[5], &cause) == 0);
	CHECK(netctl_ipam_alloc_txn(ipam, txn, "c", s24, "desk7", "net1",
	    &l[6], &cause) == 0);
	CHECK_STR(ipstr(l[5].ip), "10.2.0.2");
	CHECK_STR(ipstr(l[6].ip), "10.2.0.3");
	vm = json_pack("{s:s}", "name", "desk7");
	CHECK(db_txn_put(txn, DB_VMS, "desk7", vm, &cause) == 0);
	db_abort(txn);
	CHECK(count_leases(ipam, "c") == 0);
	CHECK(db_get(db, DB_VMS, "desk7") == NULL);
	netctl_lease_clear(&l[5]);
	netctl_lease_clear(&l[6]);

	txn = db_begin(db, &cause);
	CHECK(netctl_ipam_alloc_txn(ipam, txn, "c", s24, "desk7", "net0",
	    &l[5], &cause) == 0);
	CHECK(netctl_ipam_alloc_txn(ipam, txn, "c", s24, "desk7", "net1",
	    &l[6], &cause) == 0);
	CHECK(db_txn_put(txn, DB_VMS, "desk7", vm, &cause) == 0);
	CHECK(db_commit(txn, &cause) == 0);
	json_decref(vm);
	CHECK(count_leases(ipam, "c") == 2);
	vm = db_get(db, DB_VMS, "desk7");
	CHECK(vm != NULL);
	json_decref(vm);

	/* Releasing a VM's leases inside a transaction with its record. */
	txn = db_begin(db, &cause);
	CHECK(netctl_ipam_release_vm_txn(ipam, txn, "desk7", &cause) == 2);
	CHECK(db_txn_del(txn, DB_VMS, "desk7", &cause) == 0);
	CHECK(db_commit(txn, &cause) == 0);
	CHECK(count_leases(ipam, "c") == 0);
	netctl_lease_clear(&l[5]);
	netctl_lease_clear(&l[6]);

	/* desk1 has two leases on a. */
	CHECK(netctl_ipam_release_vm(ipam, "desk1", &cause) == 2);
	CHECK(!netctl_ipam_mac_inuse(ipam, l[0].mac));
	CHECK(count_leases(ipam, "a") == 3);
	CHECK(netctl_ipam_release_vm(ipam, "nobody", &cause) == 0);

	/* Many on a /16, all distinct and in order. */
	for (i = 0; i < 300; i++) {
		CHECK(netctl_ipam_alloc(ipam, "big", s16, "many", "n", &x,
		    &cause) == 0);
		CHECK(x.ip == netctl_subnet_gateway(s16) + 1 + i);
		netctl_lease_clear(&x);
	}
	CHECK(netctl_ipam_leases(ipam, "big", &all, &n, NULL) == 300);
	for (i = 1; i < n; i++)
		CHECK(all[i].ip == all[i - 1].ip + 1);
	/* Crosses an octet: 10.3.0.255 and 10.3.1.0 are ordinary hosts. */
	CHECK_STR(ipstr(all[253].ip), "10.3.0.255");
	CHECK_STR(ipstr(all[254].ip), "10.3.1.0");
	netctl_leases_free(all, n);
}

/*
 * A NIC migrating in keeps its address and MAC: claimed inside the
 * caller's transaction, refused if either is taken here or the address
 * is no host address of the subnet (another subnet, its gateway).
 */
static void
test_ipam_claim(struct netctl_ipam *ipam, struct db *db,
    const struct netctl_subnet *s24)
{
	static const uint8_t	 mac[6] = { 0x52, 0x54, 0, 0x77, 0x66, 0x55 };
	static const uint8_t	 mac2[6] = { 0x52, 0x54, 0, 0x77, 0x66, 0x56 };
	struct netctl_lease	 x, y;
	struct db_txn		*txn;
	char			*cause = NULL;

	txn = db_begin(db, &cause);
	CHECK(txn != NULL);
	CHECK(netctl_ipam_claim_txn(ipam, txn, "m", s24, ip("10.2.0.40"),
	    mac, "mig", "net0", &cause) == 0);
	CHECK(netctl_ipam_mac_inuse(ipam, mac));
	/* The same address again, or the same MAC: another NIC's here. */
	CHECK(netctl_ipam_claim_txn(ipam, txn, "m", s24, ip("10.2.0.40"),
	    mac2, "mig2", "net0", &cause) == -1);
	CHECK(contains(cause, "leased to another NIC"));
	free(cause);
	cause = NULL;
	CHECK(netctl_ipam_claim_txn(ipam, txn, "m", s24, ip("10.2.0.41"),
	    mac, "mig2", "net0", &cause) == -1);
	CHECK(contains(cause, "another NIC's here"));
	free(cause);
	cause = NULL;
	/* Another subnet's address, the gateway, the broadcast. */
	CHECK(netctl_ipam_claim_txn(ipam, txn, "m", s24, ip("10.9.0.40"),
	    mac2, "mig2", "net0", &cause) == -1);
	CHECK(contains(cause, "not a host address of network m"));
	free(cause);
	cause = NULL;
	CHECK(netctl_ipam_claim_txn(ipam, txn, "m", s24, ip("10.2.0.1"),
	    mac2, "mig2", "net0", NULL) == -1);
	CHECK(netctl_ipam_claim_txn(ipam, txn, "m", s24, ip("10.2.0.255"),
	    mac2, "mig2", "net0", NULL) == -1);
	CHECK(db_commit(txn, &cause) == 0);
	CHECK(netctl_ipam_find_mac(ipam, mac, &x, NULL) == 0);
	CHECK_STR(ipstr(x.ip), "10.2.0.40");
	CHECK_STR(x.vm, "mig");
	netctl_lease_clear(&x);
	/* An allocation afterwards skips the claimed address. */
	CHECK(netctl_ipam_alloc(ipam, "m", s24, "other", "net0", &y,
	    &cause) == 0);
	CHECK(y.ip != ip("10.2.0.40"));
	netctl_ipam_mac_forget(ipam, y.mac);
	netctl_lease_clear(&y);
	CHECK(netctl_ipam_release_vm(ipam, "mig", &cause) == 1);
	CHECK(netctl_ipam_release_vm(ipam, "other", &cause) == 1);
	netctl_ipam_mac_forget(ipam, mac);
}

/* Make the random source give the n 3-byte draws at draws, in turn. */
static void
rng_draw(const uint8_t *draws, size_t n)
{
	rng_draws = draws;
	rng_n = n;
	rng_i = 0;
}

/*
 * Allocate for vm on network b with the random source giving draws (n
 * of them, in turn): the MAC it got, as text (static), or "(failed)".
 */
static const char *
alloc_drawn(struct netctl_ipam *ipam, const struct netctl_subnet *sn,
    const char *vm, const uint8_t *draws, size_t n)
{
	static char		 mac[NETCTL_MACSTRLEN];
	struct netctl_lease	 x;
	char			*cause = NULL;

	rng_draw(draws, n);
	if (netctl_ipam_alloc(ipam, "b", sn, vm, "net0", &x, &cause) != 0) {
		free(cause);
		return ("(failed)");
	}
	netctl_mac_format(x.mac, mac, sizeof mac);
	netctl_lease_clear(&x);
	return (mac);
}

/* New MACs are unique, never QEMU's default, never a reserved one. */
static void
test_ipam_macs(struct netctl_ipam *ipam, struct netctl_lease *l,
    const struct netctl_subnet *s24)
{
	static const uint8_t	 same[] = { 0xaa, 0xbb, 0xcc };
	static const uint8_t	 qemu_then_one[] = { 0x12, 0x34, 0x56,
				     0x00, 0x00, 0x01 };
	struct netctl_lease	 x;
	uint8_t			 saved[6];
	char			*cause = NULL;
	size_t			 n;

	/*
	 * MAC uniqueness: a draw equal to a MAC loaded from the database is
	 * skipped, QEMU's default 52:54:00:12:34:56 is skipped, and a random
	 * source stuck on one value gives a clear error, not a duplicate.
	 */
	rng_draw(&l[3].mac[3], 1);
	netctl_ipam_set_random(ipam, rng_fixed);
	CHECK(netctl_ipam_mac_new(ipam, saved, &cause) == -1);
	CHECK(contains(cause, "cannot find a free MAC address"));
	free(cause);
	cause = NULL;
	CHECK(rng_i > 1);

	CHECK_STR(alloc_drawn(ipam, s24, "desk9", qemu_then_one, 2),
	    "52:54:00:00:00:01");
	CHECK_STR(alloc_drawn(ipam, s24, "desk10", same, 1),
	    "52:54:00:aa:bb:cc");
	n = count_leases(ipam, "b");
	CHECK(netctl_ipam_alloc(ipam, "b", s24, "desk11", "net0", &x,
	    &cause) == -1);
	CHECK(contains(cause, "free MAC"));
	free(cause);
	cause = NULL;
	CHECK((size_t)count_leases(ipam, "b") == n);	/* nothing written */

	/* A reserved MAC (a bridge-mode NIC's) is not handed out either. */
	rng_draw(qemu_then_one + 3, 1);		/* 00:00:01, taken above */
	CHECK(netctl_ipam_mac_new(ipam, saved, NULL) == -1);
	netctl_ipam_set_random(ipam, NULL);
	CHECK(netctl_ipam_mac_new(ipam, saved, &cause) == 0);
	CHECK(netctl_ipam_mac_inuse(ipam, saved));
	netctl_ipam_mac_forget(ipam, saved);
	CHECK(!netctl_ipam_mac_inuse(ipam, saved));
}

static void
test_ipam(const char *dir)
{
	struct netctl_subnet	 s29, s24, s16;
	struct netctl_lease	 l[8], x;
	struct netctl_ipam	*ipam;
	struct db		*db;
	char			 path[512], mac[NETCTL_MACSTRLEN];
	char			*cause = NULL;
	size_t			 i;
	uint32_t		 a, b;

	memset(l, 0, sizeof l);
	snprintf(path, sizeof path, "%s/db", dir);
	db = db_open(path, &cause);
	CHECK(db != NULL);
	if (db == NULL)
		return;
	ipam = netctl_ipam_open(db, &cause);
	CHECK(ipam != NULL);
	CHECK(netctl_subnet_parse("10.1.0.0/29", &s29, NULL) == 0);
	CHECK(netctl_subnet_parse("10.2.0.0/24", &s24, NULL) == 0);
	CHECK(netctl_subnet_parse("10.3.0.0/16", &s16, NULL) == 0);
	test_ipam_alloc(ipam, db, l, &s29, &s24);
	test_ipam_txn(ipam, db, l, &s24, &s16);
	test_ipam_claim(ipam, db, &s24);

	/* Persistence: close everything, reopen, same leases and MACs. */
	a = l[3].ip;
	netctl_mac_format(l[3].mac, mac, sizeof mac);
	netctl_ipam_free(ipam);
	db_close(db);
	db = db_open(path, &cause);
	CHECK(db != NULL);
	if (db == NULL)
		goto out;
	ipam = netctl_ipam_open(db, &cause);
	CHECK(count_leases(ipam, "a") == 3);
	CHECK(count_leases(ipam, "big") == 300);
	CHECK(netctl_ipam_find_mac(ipam, l[3].mac, &x, NULL) == 0);
	CHECK(x.ip == a);
	CHECK_STR(x.vm, "desk4");
	netctl_lease_clear(&x);
	CHECK(netctl_ipam_mac_inuse(ipam, l[1].mac));	/* desk3 */
	CHECK(netctl_ipam_mac_inuse(ipam, l[3].mac));	/* desk4 */
	CHECK(netctl_ipam_mac_inuse(ipam, l[4].mac));	/* desk5 */
	CHECK(!netctl_ipam_mac_inuse(ipam, l[2].mac));	/* desk1's, freed */
	/* The next one on a still fills the lowest hole (.2, from desk1). */
	CHECK(netctl_ipam_alloc(ipam, "a", &s29, "desk8", "net0", &x,
	    &cause) == 0);
	CHECK_STR(ipstr(x.ip), "10.1.0.2");
	b = x.ip;
	netctl_lease_clear(&x);
	CHECK(b != a);

	test_ipam_macs(ipam, l, &s24);

	netctl_ipam_free(ipam);
	db_close(db);
out:
	for (i = 0; i < nitems(l); i++)
		netctl_lease_clear(&l[i]);
}

static void
lease(struct netctl_lease *l, const char *addr, const char *mac,
    const char *vm)
{
	memset(l, 0, sizeof *l);
	l->network = xstrdup("sales");
	l->ip = ip(addr);
	CHECK(netctl_mac_parse(mac, l->mac) == 0);
	l->vm = xstrdup(vm);
	l->nic = xstrdup("net0");
}

static void
test_dnsmasq(const char *dir)
{
	struct netctl_net	 net;
	struct netctl_lease	 l[4];
	char			 path[512], buf[4096];
	char			*text, **argv, *cause = NULL;
	FILE			*f;
	glob_t			 g;
	size_t			 i, n;

	CHECK(netctl_net_init(&net, "sales", "10.1.0.0/24", "nat", NULL,
	    NULL) == 0);
	text = netctl_dnsmasq_config(&net, "/run/qdesk/net");
	CHECK(contains(text, "\nbind-interfaces\n"));
	CHECK(contains(text, "\ninterface=qbrsales\n"));
	CHECK(contains(text, "\nexcept-interface=lo\n"));
	CHECK(contains(text, "\nlisten-address=10.1.0.1\n"));
	CHECK(contains(text, "\ndhcp-range=10.1.0.0,static,255.255.255.0,"));
	CHECK(contains(text,
	    "\ndhcp-hostsfile=/run/qdesk/net/sales.dhcp-hosts\n"));
	CHECK(contains(text, "\naddn-hosts=/run/qdesk/net/sales.hosts\n"));
	CHECK(contains(text, "\npid-file=/run/qdesk/net/sales.pid\n"));
	CHECK(contains(text, "\ndhcp-leasefile=/run/qdesk/net/sales.leases\n"));
	CHECK(contains(text, "\nno-hosts\n"));
	CHECK(contains(text, "\ndhcp-lease-max=253\n"));
	CHECK(!contains(text, "no-resolv"));		/* nat: upstream DNS */
	CHECK(!contains(text, "option:router"));	/* nat: gateway routes */
	free(text);
	net.mode = NETCTL_ISOLATED;
	text = netctl_dnsmasq_config(&net, "/run/qdesk/net");
	CHECK(contains(text, "\nno-resolv\n"));
	CHECK(contains(text, "\ndhcp-option=option:router\n"));
	free(text);
	net.mode = NETCTL_BRIDGE;
	CHECK(netctl_dnsmasq_config(&net, "/run") == NULL);
	CHECK(netctl_dnsmasq_write(&net, dir, NULL, 0, &cause) == -1);
	CHECK(contains(cause, "bridge mode"));
	free(cause);
	cause = NULL;
	net.mode = NETCTL_NAT;

	/* A VM's name goes with its first lease; odd names resolve not. */
	lease(&l[0], "10.1.0.2", "52:54:00:00:00:02", "desk1");
	lease(&l[1], "10.1.0.3", "52:54:00:00:00:03", "desk2");
	lease(&l[2], "10.1.0.4", "52:54:00:00:00:04", "desk1");
	lease(&l[3], "10.1.0.5", "52:54:00:00:00:05", "bad_name.");
	text = netctl_dnsmasq_dhcp_hosts(l, 4);
	CHECK_STR(text,
	    "52:54:00:00:00:02,10.1.0.2,desk1\n"
	    "52:54:00:00:00:03,10.1.0.3,desk2\n"
	    "52:54:00:00:00:04,10.1.0.4\n"
	    "52:54:00:00:00:05,10.1.0.5\n");
	free(text);
	text = netctl_dnsmasq_hosts(l, 4);
	CHECK_STR(text,
	    "10.1.0.2 desk1\n"
	    "10.1.0.3 desk2\n"
	    "10.1.0.4 desk1\n");
	free(text);
	text = netctl_dnsmasq_hosts(l, 0);
	CHECK_STR(text, "");
	free(text);

	argv = netctl_dnsmasq_argv(&net, "/run/q");
	CHECK_STR(argv[0], "dnsmasq");
	CHECK_STR(argv[1], "--conf-file=/run/q/sales.conf");
	CHECK_STR(argv[2], "--keep-in-foreground");
	CHECK(argv[3] == NULL);
	netctl_argv_free(argv);

	/* The files land in the runtime directory, whole. */
	CHECK(netctl_dnsmasq_write(&net, dir, l, 4, &cause) == 0);
	snprintf(path, sizeof path, "%s/sales.dhcp-hosts", dir);
	if ((f = fopen(path, "r")) != NULL) {
		n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = '\0';
		fclose(f);
		CHECK(contains(buf, "52:54:00:00:00:03,10.1.0.3,desk2\n"));
	} else
		CHECK(!"dhcp-hosts written");
	snprintf(path, sizeof path, "%s/sales.conf", dir);
	CHECK(access(path, R_OK) == 0);
	/* No temporary file is left beside them. */
	snprintf(path, sizeof path, "%s/sales.*.*", dir);
	CHECK(glob(path, 0, NULL, &g) == GLOB_NOMATCH);
	globfree(&g);
	CHECK(netctl_dnsmasq_write(&net, "/nonexistent/dir", l, 4,
	    &cause) == -1);
	CHECK(contains(cause, "/nonexistent/dir/sales."));
	free(cause);

	for (i = 0; i < nitems(l); i++)
		netctl_lease_clear(&l[i]);
	netctl_net_clear(&net);
}

static void
test_nft(void)
{
	struct netctl_net	 nets[3];
	struct netctl_nft_tap	 taps[2];
	char			*text, *cause = NULL;

	CHECK(netctl_net_init(&nets[0], "sales", "10.1.0.0/24", "nat", NULL,
	    NULL) == 0);
	CHECK(netctl_net_init(&nets[1], "lab", "10.2.0.0/24", "isolated",
	    NULL, NULL) == 0);
	CHECK(netctl_net_init(&nets[2], "lan", "192.168.9.0/24", "bridge",
	    "eth1", NULL) == 0);
	memset(taps, 0, sizeof taps);
	taps[0].tap = "qtap1";
	CHECK(netctl_mac_parse("52:54:00:aa:00:01", taps[0].mac) == 0);
	taps[0].ip = ip("10.1.0.2");
	taps[1].tap = "qtap2";
	CHECK(netctl_mac_parse("52:54:00:aa:00:02", taps[1].mac) == 0);

	text = netctl_nft_ruleset(nets, 3, taps, 2, &cause);
	CHECK(text != NULL);
	/* Atomic replacement of our tables only. */
	CHECK(contains(text, "table inet qdesk\ndelete table inet qdesk\n"
	    "table inet qdesk {\n"));
	CHECK(contains(text, "table bridge qdesk\ndelete table bridge qdesk\n"
	    "table bridge qdesk {\n"));
	CHECK(!contains(text, "flush ruleset"));
	/* nat */
	CHECK(contains(text, "ip saddr 10.1.0.0/24 ip daddr != { 10.1.0.0/24,"
	    " 224.0.0.0/4, 255.255.255.255 } oifname != \"qbrsales\" "
	    "masquerade"));
	CHECK(contains(text, "oifname \"qbrsales\" iifname != \"qbrsales\" "
	    "ct state established,related accept"));
	/* isolated: nothing off the bridge, and no masquerade */
	CHECK(contains(text, "iifname \"qbrlab\" oifname != \"qbrlab\" drop"));
	CHECK(contains(text, "oifname \"qbrlab\" iifname != \"qbrlab\" drop"));
	CHECK(!contains(text, "ip saddr 10.2.0.0/24 ip daddr"));
	/* between bridges, every network */
	CHECK(contains(text, "iifname \"qbrsales\" oifname \"qbr*\" "
	    "oifname != \"qbrsales\" drop"));
	CHECK(contains(text, "iifname \"qbrlan\" oifname \"qbr*\" "
	    "oifname != \"qbrlan\" drop"));
	/* host input limited on nat and isolated, not on the admin's LAN */
	CHECK(contains(text, "iifname \"qbrsales\" jump guest_input"));
	CHECK(contains(text, "iifname \"qbrlab\" jump guest_input"));
	CHECK(!contains(text, "iifname \"qbrlan\" jump guest_input"));
	/* anti-spoofing */
	CHECK(contains(text, "\"qtap1\" : goto tap0"));
	CHECK(contains(text, "\"qtap2\" : goto tap1"));
	CHECK(contains(text, "ether saddr != 52:54:00:aa:00:01 drop"));
	CHECK(contains(text, "arp saddr ip != { 0.0.0.0, 10.1.0.2 } drop"));
	CHECK(contains(text, "ip saddr != 10.1.0.2 drop"));
	CHECK(contains(text, "ether saddr != 52:54:00:aa:00:02 drop"));
	CHECK(contains(text, "iifname \"qtap*\" drop"));
	free(text);

	/* Nothing but qdesk names reaches the text. */
	taps[1].tap = "eth0";
	CHECK(netctl_nft_ruleset(nets, 3, taps, 2, &cause) == NULL);
	CHECK(contains(cause, "eth0 is not a qdesk TAP"));
	free(cause);
	cause = NULL;
	taps[1].tap = "qtap1";
	CHECK(netctl_nft_ruleset(nets, 3, taps, 2, &cause) == NULL);
	CHECK(contains(cause, "listed twice"));
	free(cause);
	cause = NULL;
	free(nets[0].bridge);
	nets[0].bridge = xstrdup("br0\" accept");
	CHECK(netctl_nft_ruleset(nets, 3, taps, 1, &cause) == NULL);
	free(cause);
	cause = NULL;

	text = netctl_nft_ruleset(NULL, 0, NULL, 0, &cause);
	CHECK(contains(text, "chain forward"));
	CHECK(!contains(text, "vmap"));
	free(text);
	CHECK(contains(netctl_nft_ruleset_delete(), "delete table bridge qdesk"));
	CHECK_STR(netctl_nft_argv()[0], "nft");
	CHECK_STR(netctl_nft_argv()[1], "-f");
	CHECK_STR(netctl_nft_argv()[2], "-");
	CHECK(netctl_nft_argv()[3] == NULL);

	netctl_net_clear(&nets[0]);
	netctl_net_clear(&nets[1]);
	netctl_net_clear(&nets[2]);
}

int
main(void)
{
	char	dir[] = "/tmp/qdt-ipam-XXXXXX", cmd[64];

	test_parse();
	test_mac();
	test_names();
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	test_ipam(dir);
	test_dnsmasq(dir);
	test_nft();
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return (check_exit());
}
