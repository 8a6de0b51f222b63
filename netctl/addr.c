/*
 * IPv4 addresses, subnets and MAC addresses: the pure half of netctl's
 * address management. Parsers take what an admin typed or a record holds
 * and say exactly what is wrong; no state, no I/O, fuzzed on their own
 * (tests/fuzz/fuzz-net-parse.c).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "cause.h"

#include "addr.h"

int
netctl_ip_parse(const char *s, uint32_t *ip)
{
	struct in_addr	in;

	/* inet_pton takes only four decimal parts, no leading zeros. */
	if (s == NULL || inet_pton(AF_INET, s, &in) != 1)
		return (-1);
	*ip = ntohl(in.s_addr);
	return (0);
}

char *
netctl_ip_format(uint32_t ip, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff,
	    (ip >> 8) & 0xff, ip & 0xff);
	return (buf);
}

int
netctl_cidr_parse(const char *s, uint32_t *ip, int *prefix)
{
	char		 buf[NETCTL_CIDRSTRLEN + 1];
	const char	*slash, *p;
	size_t		 len;
	int		 n = 0;

	if (s == NULL || (slash = strchr(s, '/')) == NULL)
		return (-1);
	len = slash - s;
	if (len >= NETCTL_IPSTRLEN)
		return (-1);
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (netctl_ip_parse(buf, ip) != 0)
		return (-1);
	p = slash + 1;
	if (p[0] == '\0' || strlen(p) > 2 || (p[0] == '0' && p[1] != '\0'))
		return (-1);
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return (-1);
		n = n * 10 + (*p - '0');
	}
	if (n > 32)
		return (-1);
	*prefix = n;
	return (0);
}

/* The netmask of a prefix length, 0 to 32. */
static uint32_t
addr_mask(int prefix)
{
	return (prefix == 0 ? 0 : 0xffffffffU << (32 - prefix));
}

/* Ranges no LAN can use: this network, loopback, link-local, multicast. */
static const char *
addr_reserved(uint32_t addr, int prefix)
{
	static const struct {
		uint32_t	 net;
		int		 prefix;
		const char	*what;
	} ranges[] = {
		{ 0x00000000, 8, "0.0.0.0/8 is \"this network\"" },
		{ 0x7f000000, 8, "127.0.0.0/8 is loopback" },
		{ 0xa9fe0000, 16, "169.254.0.0/16 is link-local" },
		{ 0xe0000000, 4, "224.0.0.0/4 is multicast" },
		{ 0xf0000000, 4, "240.0.0.0/4 is reserved" },
	};
	struct netctl_subnet	a, b;
	size_t			i;

	a.addr = addr;
	a.prefix = prefix;
	for (i = 0; i < nitems(ranges); i++) {
		b.addr = ranges[i].net;
		b.prefix = ranges[i].prefix;
		if (netctl_subnets_overlap(&a, &b))
			return (ranges[i].what);
	}
	return (NULL);
}

/* Parses and validates a network's subnet, saying exactly what is wrong. */
int
netctl_subnet_parse(const char *s, struct netctl_subnet *sn, char **cause)
{
	char		 buf[NETCTL_CIDRSTRLEN];
	const char	*why;
	uint32_t	 ip;
	int		 prefix;

	if (netctl_cidr_parse(s, &ip, &prefix) != 0) {
		netctl_cause(cause, "invalid subnet %s: expected an IPv4 CIDR "
		    "such as 10.1.0.0/24", s == NULL ? "(none)" : s);
		return (-1);
	}
	if (prefix < NETCTL_PREFIX_MIN || prefix > NETCTL_PREFIX_MAX) {
		netctl_cause(cause, "invalid subnet %s: the prefix must be "
		    "between /%d and /%d", s, NETCTL_PREFIX_MIN,
		    NETCTL_PREFIX_MAX);
		return (-1);
	}
	if ((ip & ~addr_mask(prefix)) != 0) {
		sn->addr = ip & addr_mask(prefix);
		sn->prefix = prefix;
		netctl_cause(cause, "invalid subnet %s: host bits are set "
		    "(the subnet is %s)", s,
		    netctl_subnet_format(sn, buf, sizeof buf));
		return (-1);
	}
	if ((why = addr_reserved(ip, prefix)) != NULL) {
		netctl_cause(cause, "invalid subnet %s: %s", s, why);
		return (-1);
	}
	sn->addr = ip;
	sn->prefix = prefix;
	return (0);
}

char *
netctl_subnet_format(const struct netctl_subnet *sn, char *buf, size_t len)
{
	char	ip[NETCTL_IPSTRLEN];

	snprintf(buf, len, "%s/%d", netctl_ip_format(sn->addr, ip, sizeof ip),
	    sn->prefix);
	return (buf);
}

uint32_t
netctl_subnet_mask(const struct netctl_subnet *sn)
{
	return (addr_mask(sn->prefix));
}

uint32_t
netctl_subnet_gateway(const struct netctl_subnet *sn)
{
	return (sn->addr + 1);
}

uint32_t
netctl_subnet_broadcast(const struct netctl_subnet *sn)
{
	return (sn->addr | ~addr_mask(sn->prefix));
}

uint32_t
netctl_subnet_hosts(const struct netctl_subnet *sn)
{
	return ((1U << (32 - sn->prefix)) - 3);
}

int
netctl_subnet_contains(const struct netctl_subnet *sn, uint32_t ip)
{
	return ((ip & addr_mask(sn->prefix)) == sn->addr);
}

/* Two subnets overlap when the shorter prefix's mask maps both alike. */
int
netctl_subnets_overlap(const struct netctl_subnet *a,
    const struct netctl_subnet *b)
{
	uint32_t	mask;

	mask = addr_mask(a->prefix < b->prefix ? a->prefix : b->prefix);
	return ((a->addr & mask) == (b->addr & mask));
}

char *
netctl_subnet_gateway_cidr(const struct netctl_subnet *sn, char *buf,
    size_t len)
{
	char	ip[NETCTL_IPSTRLEN];

	snprintf(buf, len, "%s/%d",
	    netctl_ip_format(netctl_subnet_gateway(sn), ip, sizeof ip),
	    sn->prefix);
	return (buf);
}

/* The value of a hex digit, or -1. */
static int
addr_hexdigit(char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/* Parses "52:54:00:ab:cd:ef" (either case, exactly six two-digit parts). */
int
netctl_mac_parse(const char *s, uint8_t mac[6])
{
	int	i, hi, lo;

	if (s == NULL || strlen(s) != NETCTL_MACSTRLEN - 1)
		return (-1);
	for (i = 0; i < 6; i++) {
		if (i > 0 && *s++ != ':')
			return (-1);
		if ((hi = addr_hexdigit(*s++)) == -1 ||
		    (lo = addr_hexdigit(*s++)) == -1)
			return (-1);
		mac[i] = hi << 4 | lo;
	}
	return (0);
}

char *
netctl_mac_format(const uint8_t mac[6], char *buf, size_t len)
{
	snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1],
	    mac[2], mac[3], mac[4], mac[5]);
	return (buf);
}
