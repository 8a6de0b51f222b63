/*
 * Helper for netctl/test-netctl-tools.sh, run inside the script's network
 * namespace: "setup DIR" makes two networks the way qmpd will (bridges
 * and gateways through netctl, leases through IPAM in DIR/db, dnsmasq
 * files and the nft ruleset in DIR) and prints "VM MAC IP" per lease;
 * "check FILE", "apply FILE" and "delete" run nft through netctl.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dnsmasq.h"
#include "ipam.h"
#include "link.h"
#include "netctl.h"
#include "nft.h"

static void
die(const char *what, char *cause)
{
	fprintf(stderr, "test-netctl-gen: %s: %s\n", what,
	    cause != NULL ? cause : "failed");
	exit(1);
}

static char *
slurp(const char *path)
{
	FILE	*f;
	char	*s;
	long	 n;

	if ((f = fopen(path, "r")) == NULL || fseek(f, 0, SEEK_END) != 0 ||
	    (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "test-netctl-gen: %s: %s\n", path,
		    strerror(errno));
		exit(1);
	}
	s = malloc(n + 1);
	if (s == NULL || fread(s, 1, n, f) != (size_t)n)
		exit(1);
	s[n] = '\0';
	fclose(f);
	return (s);
}

static int
setup(const char *dir)
{
	static const struct {
		const char	*name, *subnet, *mode;
	} defs[] = {
		{ "a", "10.77.0.0/24", "nat" },
		{ "b", "10.78.0.0/24", "isolated" },
	};
	static const struct {
		const char	*vm;
		size_t		 net;
		const char	*tap;
	} vms[] = {
		{ "desk1", 0, "qtapv0" },
		{ "desk2", 0, NULL },
		{ "desk3", 1, "qtapv1" },
	};
	struct netctl_net	 nets[2];
	struct netctl_lease	 l[3], *all;
	struct netctl_nft_tap	 taps[2];
	struct netctl_ipam	*ipam;
	struct db		*db;
	FILE			*f;
	char			 path[4096], gw[NETCTL_CIDRSTRLEN];
	char			 mac[NETCTL_MACSTRLEN], ip[NETCTL_IPSTRLEN];
	char			*cause = NULL, *text;
	size_t			 i, n, ntaps = 0;

	snprintf(path, sizeof path, "%s/db", dir);
	if ((db = db_open(path, &cause)) == NULL)
		die("db", cause);
	if ((ipam = netctl_ipam_open(db, &cause)) == NULL)
		die("ipam", cause);
	for (i = 0; i < 2; i++) {
		if (netctl_net_init(&nets[i], defs[i].name, defs[i].subnet,
		    defs[i].mode, NULL, &cause) != 0)
			die("net", cause);
		if (netctl_bridge_create(nets[i].bridge, &cause) != 0)
			die("bridge", cause);
		netctl_subnet_gateway_cidr(&nets[i].subnet, gw, sizeof gw);
		if (netctl_addr_add(nets[i].bridge, gw, &cause) != 0)
			die("gateway", cause);
	}
	if (netctl_ip_forward(&cause) != 0)
		die("ip_forward", cause);

	for (i = 0; i < 3; i++) {
		if (netctl_ipam_alloc(ipam, nets[vms[i].net].name,
		    &nets[vms[i].net].subnet, vms[i].vm, "net0", &l[i],
		    &cause) != 0)
			die("alloc", cause);
		printf("%s %s %s\n", l[i].vm,
		    netctl_mac_format(l[i].mac, mac, sizeof mac),
		    netctl_ip_format(l[i].ip, ip, sizeof ip));
		if (vms[i].tap != NULL) {
			taps[ntaps].tap = vms[i].tap;
			memcpy(taps[ntaps].mac, l[i].mac, 6);
			taps[ntaps].ip = l[i].ip;
			ntaps++;
		}
	}

	for (i = 0; i < 2; i++) {
		if (netctl_ipam_leases(ipam, nets[i].name, &all, &n,
		    &cause) == -1)
			die("leases", cause);
		if (netctl_dnsmasq_write(&nets[i], dir, all, n, &cause) != 0)
			die("dnsmasq", cause);
		netctl_leases_free(all, n);
	}

	if ((text = netctl_nft_ruleset(nets, 2, taps, ntaps, &cause)) == NULL)
		die("ruleset", cause);
	snprintf(path, sizeof path, "%s/ruleset.nft", dir);
	if ((f = fopen(path, "w")) == NULL || fputs(text, f) == EOF ||
	    fclose(f) != 0)
		die(path, strerror(errno));
	free(text);

	for (i = 0; i < 3; i++)
		netctl_lease_clear(&l[i]);
	for (i = 0; i < 2; i++)
		netctl_net_clear(&nets[i]);
	netctl_ipam_free(ipam);
	db_close(db);
	netctl_link_close();
	return (0);
}

int
main(int argc, char **argv)
{
	char	*cause = NULL, *text;
	int	 rc;

	if (argc == 3 && strcmp(argv[1], "setup") == 0)
		return (setup(argv[2]));
	if (argc == 3 && (strcmp(argv[1], "check") == 0 ||
	    strcmp(argv[1], "apply") == 0)) {
		text = slurp(argv[2]);
		if (strcmp(argv[1], "check") == 0)
			rc = netctl_nft_check(text, &cause);
		else
			rc = netctl_nft_apply(text, &cause);
		free(text);
		if (rc != 0)
			die(argv[1], cause);
		return (0);
	}
	if (argc == 2 && strcmp(argv[1], "delete") == 0) {
		if (netctl_nft_apply(netctl_nft_ruleset_delete(), &cause) != 0)
			die("delete", cause);
		return (0);
	}
	fprintf(stderr, "usage: test-netctl-gen setup DIR | check FILE | "
	    "apply FILE | delete\n");
	return (2);
}
