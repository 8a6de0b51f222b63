/* fuzz-sources: netctl/netctl.c netctl/addr.c netctl/ipam.c netctl/link.c netctl/nft.c netctl/dnsmasq.c common/db.c common/file.c common/textbuf.c common/log.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: jansson lmdb libnl-3.0 libnl-route-3.0 */
/*
 * libFuzzer harness for netctl's parsers, which see the admin's words
 * (subnets, MACs, modes, uplinks) and the networks table's records.
 * Beyond not crashing: whatever parses must format back to itself, a
 * subnet's arithmetic must stay inside it, and a network record that
 * loads must survive a JSON round trip and yield a ruleset and a dnsmasq
 * config that carry only names that passed validation.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "addr.h"
#include "dnsmasq.h"
#include "link.h"
#include "netctl.h"
#include "nft.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The word parsers on one NUL-terminated string. */
static void
fuzz_words(const char *s)
{
	struct netctl_subnet	 sn, again;
	char			 buf[64], *cause = NULL;
	uint32_t		 ip;
	uint8_t			 mac[6], mac2[6];
	int			 prefix;

	if (netctl_ip_parse(s, &ip) == 0) {
		netctl_ip_format(ip, buf, sizeof buf);
		if (strcmp(buf, s) != 0)
			abort();
	}
	if (netctl_cidr_parse(s, &ip, &prefix) == 0) {
		if (prefix < 0 || prefix > 32)
			abort();
	}
	if (netctl_subnet_parse(s, &sn, &cause) == 0) {
		if (cause != NULL)
			abort();
		if (sn.prefix < NETCTL_PREFIX_MIN ||
		    sn.prefix > NETCTL_PREFIX_MAX)
			abort();
		netctl_subnet_format(&sn, buf, sizeof buf);
		if (strcmp(buf, s) != 0)
			abort();
		if (netctl_subnet_parse(buf, &again, NULL) != 0 ||
		    again.addr != sn.addr || again.prefix != sn.prefix)
			abort();
		if (!netctl_subnet_contains(&sn, netctl_subnet_gateway(&sn)) ||
		    !netctl_subnet_contains(&sn,
		    netctl_subnet_broadcast(&sn)) ||
		    netctl_subnet_hosts(&sn) < 5 ||
		    !netctl_subnets_overlap(&sn, &again))
			abort();
	} else if (cause == NULL)
		abort();
	free(cause);
	if (netctl_mac_parse(s, mac) == 0) {
		netctl_mac_format(mac, buf, sizeof buf);
		if (strcasecmp(buf, s) != 0 || netctl_mac_parse(buf, mac2) != 0 ||
		    memcmp(mac, mac2, 6) != 0)
			abort();
	}
	if (netctl_name_owned(s) && (strlen(s) > NETCTL_IFNAME_MAX ||
	    strpbrk(s, "\"\\ /\n") != NULL))
		abort();
}

/* A networks-table record: load, round trip, generate. */
static void
fuzz_record(const uint8_t *data, size_t size)
{
	struct netctl_net	 net, back;
	json_t			*j, *j2;
	char			*text;

	if ((j = json_loadb((const char *)data, size, 0, NULL)) == NULL)
		return;
	if (netctl_net_from_json(&net, "fz", j, NULL) == 0) {
		if (!netctl_name_bridge(net.bridge))
			abort();
		j2 = netctl_net_to_json(&net);
		if (j2 == NULL || netctl_net_from_json(&back, "fz", j2,
		    NULL) != 0)
			abort();
		if (back.subnet.addr != net.subnet.addr ||
		    back.subnet.prefix != net.subnet.prefix ||
		    back.mode != net.mode || strcmp(back.bridge, net.bridge) ||
		    (net.uplink == NULL) != (back.uplink == NULL))
			abort();
		if ((text = netctl_nft_ruleset(&net, 1, NULL, 0, NULL)) == NULL)
			abort();
		free(text);
		text = netctl_dnsmasq_config(&net, "/run/qdesk");
		if ((net.mode == NETCTL_BRIDGE) != (text == NULL))
			abort();
		free(text);
		netctl_net_clear(&back);
		netctl_net_clear(&net);
		json_decref(j2);
	}
	json_decref(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s;

	if (size > 4096)
		return (0);
	s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	fuzz_words(s);
	free(s);
	fuzz_record(data, size);
	return (0);
}
