/*
 * IPv4 addresses, subnets and MACs, parsed and formatted (addr.c): pure
 * functions, in host byte order. Parsers return 0 or -1 (with *cause
 * where one is taken); formatters fill and return the caller's buffer.
 */
#ifndef QDESK_NETCTL_ADDR_H
#define QDESK_NETCTL_ADDR_H

#include <stddef.h>
#include <stdint.h>

#define NETCTL_PREFIX_MIN	16
#define NETCTL_PREFIX_MAX	29
#define NETCTL_IPSTRLEN		16	/* "255.255.255.255" */
#define NETCTL_CIDRSTRLEN	19	/* "255.255.255.255/32" */
#define NETCTL_MACSTRLEN	18	/* "52:54:00:00:00:00" */

/* An IPv4 subnet; addresses are in host byte order. */
struct netctl_subnet {
	uint32_t	addr;		/* network address */
	int		prefix;
};

/* Strict dotted quad ("10.1.0.2"); 0 or -1. */
int		 netctl_ip_parse(const char *, uint32_t *);
char		*netctl_ip_format(uint32_t, char *, size_t);
/* "A.B.C.D/N" with any host bits and 0 <= N <= 32; 0 or -1. */
int		 netctl_cidr_parse(const char *, uint32_t *, int *);

/* A subnet for a qdesk network: valid, /16 to /29, host bits clear. */
int		 netctl_subnet_parse(const char *, struct netctl_subnet *,
		    char **);
char		*netctl_subnet_format(const struct netctl_subnet *, char *,
		    size_t);
uint32_t	 netctl_subnet_mask(const struct netctl_subnet *);
uint32_t	 netctl_subnet_gateway(const struct netctl_subnet *);
uint32_t	 netctl_subnet_broadcast(const struct netctl_subnet *);
/* Number of addresses NICs can get: all but network, gateway, broadcast. */
uint32_t	 netctl_subnet_hosts(const struct netctl_subnet *);
int		 netctl_subnet_contains(const struct netctl_subnet *,
		    uint32_t);
int		 netctl_subnets_overlap(const struct netctl_subnet *,
		    const struct netctl_subnet *);
/* The gateway with the prefix, "10.1.0.1/24", for netctl_addr_add(). */
char		*netctl_subnet_gateway_cidr(const struct netctl_subnet *,
		    char *, size_t);

int		 netctl_mac_parse(const char *, uint8_t [6]);
char		*netctl_mac_format(const uint8_t [6], char *, size_t);

#endif
