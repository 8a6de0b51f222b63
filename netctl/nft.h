/*
 * nftables rules for qdesk networks, in tables qdesk owns and nobody
 * else: "table inet qdesk" (NAT, isolation, nothing between two qdesk
 * bridges, guests reach only DHCP, DNS and ping on the host) and "table
 * bridge qdesk" (per TAP anti-spoofing: a guest sends only from its own
 * MAC and IPv4 address; frames from a qdesk TAP not listed are dropped).
 * The ruleset text replaces both tables in one atomic nft transaction.
 */
#ifndef QDESK_NETCTL_NFT_H
#define QDESK_NETCTL_NFT_H

#include <stddef.h>
#include <stdint.h>

struct netctl_net;

/* A TAP and the addresses its guest may send from. */
struct netctl_nft_tap {
	const char	*tap;		/* qtap... */
	uint8_t		 mac[6];
	uint32_t	 ip;		/* 0: no IPAM address, MAC check only */
};

/*
 * The whole ruleset for these networks and TAPs; NULL with cause if a
 * name is not a qdesk one.
 */
char		*netctl_nft_ruleset(const struct netctl_net *, size_t,
		    const struct netctl_nft_tap *, size_t, char **);
/* The text that removes both qdesk tables (and is fine if absent). */
const char	*netctl_nft_ruleset_delete(void);

/* "nft -f -": feed the ruleset on its stdin (for an asynchronous run). */
char *const	*netctl_nft_argv(void);
/*
 * Runs nft -f - (or nft -c -f - to check only) on ruleset and waits for
 * it; blocking, so for tests and start-up.  0 or -1 with nft's message.
 */
int		 netctl_nft_apply(const char *, char **);
int		 netctl_nft_check(const char *, char **);

#endif
