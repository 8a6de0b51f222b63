/*
 * The qdesk nftables ruleset, generated whole from the networks and the
 * running TAPs and swapped in with one "nft -f" transaction: declaring a
 * table, deleting it and declaring it again is atomic, so there is never a
 * moment without rules and nothing outside our two tables is touched.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "cause.h"
#include "log.h"
#include "textbuf.h"
#include "xmalloc.h"

#include "ipam.h"
#include "link.h"
#include "netctl.h"
#include "nft.h"

#define NFT_ERRMAX	2048	/* nft's stderr kept for the cause */


static const char nft_delete[] =
    "table inet qdesk\n"
    "delete table inet qdesk\n"
    "table bridge qdesk\n"
    "delete table bridge qdesk\n";

const char *
netctl_nft_ruleset_delete(void)
{
	return (nft_delete);
}

/* Forward and NAT rules of one network in the inet table. */
static void
nft_net_forward(struct textbuf *b, const struct netctl_net *net)
{
	char		 subnet[NETCTL_CIDRSTRLEN];
	const char	*br = net->bridge;

	netctl_subnet_format(&net->subnet, subnet, sizeof subnet);
	textbuf_printf(b, "\t\t# network %s (%s, %s)\n", net->name,
	    netctl_mode_name(net->mode), subnet);
	/* Nothing between two qdesk networks, whatever their modes. */
	textbuf_printf(b, "\t\tiifname \"%s\" oifname \"%s*\" oifname != \"%s\" "
	    "drop\n", br, NETCTL_BRIDGE_PREFIX, br);
	switch (net->mode) {
	case NETCTL_NAT:
		textbuf_printf(b, "\t\tiifname \"%s\" oifname != \"%s\" "
		    "ip saddr != %s drop\n", br, br, subnet);
		textbuf_printf(b, "\t\toifname \"%s\" iifname != \"%s\" "
		    "ct state established,related accept\n", br, br);
		textbuf_printf(b, "\t\toifname \"%s\" iifname != \"%s\" drop\n",
		    br, br);
		break;
	case NETCTL_ISOLATED:
		textbuf_printf(b, "\t\tiifname \"%s\" oifname != \"%s\" drop\n",
		    br, br);
		textbuf_printf(b, "\t\toifname \"%s\" iifname != \"%s\" drop\n",
		    br, br);
		break;
	case NETCTL_BRIDGE:
		break;
	}
}

/* The inet table: forward, input from guests, and masquerade. */
static void
nft_inet(struct textbuf *b, const struct netctl_net *nets, size_t n)
{
	char	subnet[NETCTL_CIDRSTRLEN];
	size_t	i;

	textbuf_printf(b, "table inet qdesk\n");
	textbuf_printf(b, "delete table inet qdesk\n");
	textbuf_printf(b, "table inet qdesk {\n");

	textbuf_printf(b, "\tchain forward {\n");
	textbuf_printf(b, "\t\ttype filter hook forward priority filter; "
	    "policy accept;\n");
	for (i = 0; i < n; i++)
		nft_net_forward(b, &nets[i]);
	textbuf_printf(b, "\t}\n");

	/*
	 * Guests on nat and isolated networks reach the host only for DHCP,
	 * DNS and ping (and replies); bridge mode is the admin's LAN.
	 */
	textbuf_printf(b, "\tchain guest_input {\n");
	textbuf_printf(b, "\t\tct state established,related accept\n");
	textbuf_printf(b, "\t\tudp dport { 53, 67 } accept\n");
	textbuf_printf(b, "\t\ttcp dport 53 accept\n");
	textbuf_printf(b, "\t\ticmp type { echo-request, destination-unreachable, "
	    "time-exceeded } accept\n");
	textbuf_printf(b, "\t\tmeta l4proto ipv6-icmp accept\n");
	textbuf_printf(b, "\t\tdrop\n");
	textbuf_printf(b, "\t}\n");
	textbuf_printf(b, "\tchain input {\n");
	textbuf_printf(b, "\t\ttype filter hook input priority filter; "
	    "policy accept;\n");
	for (i = 0; i < n; i++) {
		if (nets[i].mode == NETCTL_BRIDGE)
			continue;
		textbuf_printf(b, "\t\tiifname \"%s\" jump guest_input\n",
		    nets[i].bridge);
	}
	textbuf_printf(b, "\t}\n");

	textbuf_printf(b, "\tchain postrouting {\n");
	textbuf_printf(b, "\t\ttype nat hook postrouting priority srcnat; "
	    "policy accept;\n");
	for (i = 0; i < n; i++) {
		if (nets[i].mode != NETCTL_NAT)
			continue;
		netctl_subnet_format(&nets[i].subnet, subnet, sizeof subnet);
		textbuf_printf(b, "\t\tip saddr %s ip daddr != { %s, 224.0.0.0/4, "
		    "255.255.255.255 } oifname != \"%s\" masquerade\n", subnet,
		    subnet, nets[i].bridge);
	}
	textbuf_printf(b, "\t}\n");
	textbuf_printf(b, "}\n");
}

/* One TAP's anti-spoofing chain in the bridge table. */
static void
nft_tap_chain(struct textbuf *b, size_t i, const struct netctl_nft_tap *t)
{
	char	mac[NETCTL_MACSTRLEN], ip[NETCTL_IPSTRLEN];

	netctl_mac_format(t->mac, mac, sizeof mac);
	textbuf_printf(b, "\tchain tap%zu {\n", i);
	textbuf_printf(b, "\t\t# %s: %s", t->tap, mac);
	if (t->ip != 0)
		textbuf_printf(b, " %s", netctl_ip_format(t->ip, ip, sizeof ip));
	textbuf_printf(b, "\n");
	textbuf_printf(b, "\t\tether saddr != %s drop\n", mac);
	/* Tagged frames would carry addresses the rules below miss. */
	textbuf_printf(b, "\t\tether type { 8021q, 8021ad } drop\n");
	/* No rogue DHCP server, no rogue IPv6 router. */
	textbuf_printf(b, "\t\tudp sport 67 drop\n");
	textbuf_printf(b, "\t\ticmpv6 type nd-router-advert drop\n");
	textbuf_printf(b, "\t\tarp saddr ether != %s drop\n", mac);
	if (t->ip == 0) {
		textbuf_printf(b, "\t}\n");
		return;
	}
	/* 0.0.0.0 for ARP probes and DHCP before the guest has its address. */
	textbuf_printf(b, "\t\tarp saddr ip != { 0.0.0.0, %s } drop\n", ip);
	textbuf_printf(b, "\t\tip saddr 0.0.0.0 udp sport 68 udp dport 67 "
	    "accept\n");
	textbuf_printf(b, "\t\tip saddr != %s drop\n", ip);
	textbuf_printf(b, "\t}\n");
}

/* The bridge table: frames from each TAP through its own chain. */
static void
nft_bridge(struct textbuf *b, const struct netctl_nft_tap *taps, size_t n)
{
	size_t	i;

	textbuf_printf(b, "table bridge qdesk\n");
	textbuf_printf(b, "delete table bridge qdesk\n");
	textbuf_printf(b, "table bridge qdesk {\n");
	for (i = 0; i < n; i++)
		nft_tap_chain(b, i, &taps[i]);
	textbuf_printf(b, "\tchain prerouting {\n");
	textbuf_printf(b, "\t\ttype filter hook prerouting priority filter; "
	    "policy accept;\n");
	if (n > 0) {
		textbuf_printf(b, "\t\tiifname vmap {");
		for (i = 0; i < n; i++) {
			textbuf_printf(b, "%s\n\t\t\t\"%s\" : goto tap%zu",
			    i == 0 ? "" : ",", taps[i].tap, i);
		}
		textbuf_printf(b, "\n\t\t}\n");
	}
	/*
	 * goto, not jump: a frame that passes its TAP's chain takes the
	 * policy (accept) instead of coming back here.  A qdesk TAP with no
	 * chain yet sends nothing.
	 */
	textbuf_printf(b, "\t\tiifname \"%s*\" drop\n", NETCTL_TAP_PREFIX);
	textbuf_printf(b, "\t}\n");
	textbuf_printf(b, "}\n");
}

/* Generates both tables, refusing any name that is not qdesk's. */
char *
netctl_nft_ruleset(const struct netctl_net *nets, size_t nnets,
    const struct netctl_nft_tap *taps, size_t ntaps, char **cause)
{
	struct textbuf	b;
	size_t		i, j;

	for (i = 0; i < nnets; i++) {
		if (netctl_net_name_check(nets[i].name, cause) != 0)
			return (NULL);
		if (!netctl_name_bridge(nets[i].bridge)) {
			netctl_cause(cause, "network %s: %s is not a qdesk "
			    "bridge", nets[i].name, nets[i].bridge == NULL ?
			    "(none)" : nets[i].bridge);
			return (NULL);
		}
	}
	for (i = 0; i < ntaps; i++) {
		if (!netctl_name_tap(taps[i].tap)) {
			netctl_cause(cause, "%s is not a qdesk TAP",
			    taps[i].tap == NULL ? "(none)" : taps[i].tap);
			return (NULL);
		}
		for (j = 0; j < i; j++) {
			if (strcmp(taps[i].tap, taps[j].tap) == 0) {
				netctl_cause(cause, "TAP %s listed twice",
				    taps[i].tap);
				return (NULL);
			}
		}
	}

	memset(&b, 0, sizeof b);
	textbuf_printf(&b, "# qdesk: generated by qmpd, replaced whole with "
	    "nft -f\n");
	nft_inet(&b, nets, nnets);
	nft_bridge(&b, taps, ntaps);
	return (textbuf_finish(&b));
}

char *const *
netctl_nft_argv(void)
{
	static char *const argv[] = { "nft", "-f", "-", NULL };

	return (argv);
}

/*
 * Runs nft with argv, text on its stdin, and waits; a socket rather than
 * a pipe for stdin so that an early exit cannot raise SIGPIPE here.
 */
static int
nft_run(char *const argv[], const char *text, char **cause)
{
	struct pollfd	 pfd[2];
	char		 err[NFT_ERRMAX], sink[512], *p;
	size_t		 len = strlen(text), off = 0, errlen = 0;
	ssize_t		 n;
	pid_t		 pid;
	int		 in[2] = { -1, -1 }, out[2] = { -1, -1 };
	int		 status, nfds, rc = -1, devnull;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) == -1 ||
	    pipe2(out, O_CLOEXEC) == -1) {
		netctl_cause(cause, "nft: %s", strerror(errno));
		goto cleanup;
	}
	if ((pid = fork()) == -1) {
		netctl_cause(cause, "nft: fork: %s", strerror(errno));
		goto cleanup;
	}
	if (pid == 0) {
		devnull = open("/dev/null", O_WRONLY);
		if (dup2(in[1], STDIN_FILENO) == -1 ||
		    dup2(devnull == -1 ? out[1] : devnull, STDOUT_FILENO) ==
		    -1 || dup2(out[1], STDERR_FILENO) == -1)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		execv("/usr/sbin/nft", argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s (install the "
		    "nftables package)\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[1]);
	in[1] = -1;
	close(out[1]);
	out[1] = -1;
	if (len == 0)
		shutdown(in[0], SHUT_WR);

	/* Feed stdin and drain stderr together until nft closes it. */
	for (;;) {
		nfds = 0;
		pfd[nfds].fd = out[0];
		pfd[nfds++].events = POLLIN;
		if (off < len) {
			pfd[nfds].fd = in[0];
			pfd[nfds++].events = POLLOUT;
		}
		if (poll(pfd, nfds, -1) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (nfds == 2 && (pfd[1].revents & (POLLOUT | POLLERR |
		    POLLHUP))) {
			n = send(in[0], text + off, len - off,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				off += n;
			else if (n == -1 && errno != EAGAIN && errno != EINTR)
				off = len;	/* nft is gone: stop feeding */
			if (off == len)
				shutdown(in[0], SHUT_WR);
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			/* Keep the start of nft's message, discard the rest. */
			if (errlen < sizeof err - 1) {
				n = read(out[0], err + errlen,
				    sizeof err - 1 - errlen);
				if (n > 0)
					errlen += n;
			} else
				n = read(out[0], sink, sizeof sink);
			if (n == 0 || (n == -1 && errno != EINTR))
				break;
		}
	}
	err[errlen] = '\0';

	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			netctl_cause(cause, "nft: waitpid: %s", strerror(errno));
			goto cleanup;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		rc = 0;
		goto cleanup;
	}
	/* nft's first line says what; trailing newlines go. */
	while (errlen > 0 && (err[errlen - 1] == '\n' ||
	    err[errlen - 1] == ' '))
		err[--errlen] = '\0';
	for (p = err; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	}
	if (WIFEXITED(status)) {
		netctl_cause(cause, "nft failed (exit %d): %s",
		    WEXITSTATUS(status), errlen > 0 ? err : "no message");
	} else {
		netctl_cause(cause, "nft killed by signal %d",
		    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	}
cleanup:
	if (in[0] != -1)
		close(in[0]);
	if (in[1] != -1)
		close(in[1]);
	if (out[0] != -1)
		close(out[0]);
	if (out[1] != -1)
		close(out[1]);
	return (rc);
}

int
netctl_nft_apply(const char *ruleset, char **cause)
{
	return (nft_run(netctl_nft_argv(), ruleset, cause));
}

int
netctl_nft_check(const char *ruleset, char **cause)
{
	static char *const argv[] = { "nft", "-c", "-f", "-", NULL };

	return (nft_run(argv, ruleset, cause));
}
