/*
 * TAPs per NIC, two ways, in one run (issue 4's benchmark): netctl (open
 * /dev/net/tun, TUNSETIFF, then one RTM_NEWLINK that enslaves the TAP and
 * brings it up: what qmpd does at every VM start) against the shell way,
 * `ip tuntap add` and `ip link set ... master ... up`, two processes per
 * NIC.  Each round attaches N NICs to one bridge and takes them down again
 * (untimed); the figures are medians over the rounds.
 *
 * usage: net-taps [-n NICS] [-r ROUNDS]     as root, in a namespace of
 * its own (bench/net-taps.sh makes one).
 */
#include <sys/wait.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "link.h"

#define BRIDGE	"qbrbench"

static uint64_t
net_now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static void __attribute__((noreturn))
net_die(const char *what, const char *cause)
{
	fprintf(stderr, "net-taps: %s: %s\n", what, cause != NULL ? cause :
	    strerror(errno));
	exit(1);
}

/* Runs argv and waits; the shell way's unit of work. */
static void
net_run(char *const argv[])
{
	pid_t	pid;
	int	status;

	if ((pid = fork()) == -1)
		net_die("fork", NULL);
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		net_die(argv[0], "failed");
}

static int
net_cmp(const void *a, const void *b)
{
	uint64_t	x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x < y ? -1 : x > y);
}

static uint64_t
net_median(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof *v, net_cmp);
	return (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

/* netctl: N TAPs attached; per-NIC times into per, the total returned. */
static uint64_t
net_round_netctl(int n, uint64_t *per)
{
	char		 name[IFNAMSIZ], *cause = NULL;
	uint64_t	 t0, t1, start;
	int		*fds, i;

	fds = calloc(n, sizeof *fds);
	start = net_now_us();
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof name, "qtapb%d", i);
		t0 = net_now_us();
		if (netctl_tap_open(name, &fds[i], &cause) != 0)
			net_die(name, cause);
		if (netctl_tap_attach(name, BRIDGE, &cause) != 0)
			net_die(name, cause);
		t1 = net_now_us();
		per[i] = t1 - t0;
	}
	t1 = net_now_us();
	for (i = 0; i < n; i++)
		close(fds[i]);		/* the TAPs go with their fds */
	free(fds);
	return (t1 - start);
}

/* ip: the same N NICs as persistent TAPs made by subprocesses. */
static uint64_t
net_round_ip(int n, uint64_t *per)
{
	char		 name[IFNAMSIZ];
	uint64_t	 t0, t1, start;
	int		 i;

	start = net_now_us();
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof name, "qtapc%d", i);
		char *add[] = { "ip", "tuntap", "add", "dev", name, "mode",
		    "tap", "vnet_hdr", NULL };
		char *set[] = { "ip", "link", "set", name, "master", BRIDGE,
		    "up", NULL };

		t0 = net_now_us();
		net_run(add);
		net_run(set);
		t1 = net_now_us();
		per[i] = t1 - t0;
	}
	t1 = net_now_us();
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof name, "qtapc%d", i);
		char *del[] = { "ip", "link", "del", name, NULL };

		net_run(del);
	}
	return (t1 - start);
}

int
main(int argc, char **argv)
{
	uint64_t	*per_a, *per_b, *tot_a, *tot_b, *all_a, *all_b;
	uint64_t	 ma, mb, ta, tb;
	char		*cause = NULL, label[64];
	int		 ch, n = 100, rounds = 5, r;

	while ((ch = getopt(argc, argv, "n:r:")) != -1) {
		switch (ch) {
		case 'n':
			n = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: net-taps [-n NICS] "
			    "[-r ROUNDS]\n");
			return (2);
		}
	}
	if (n < 1 || n > 1000 || rounds < 1 || rounds > 100) {
		fprintf(stderr, "net-taps: 1-1000 NICs, 1-100 rounds\n");
		return (2);
	}
	if (netctl_bridge_create(BRIDGE, &cause) != 0)
		net_die(BRIDGE, cause);
	per_a = calloc(n, sizeof *per_a);
	per_b = calloc(n, sizeof *per_b);
	all_a = calloc((size_t)n * rounds, sizeof *all_a);
	all_b = calloc((size_t)n * rounds, sizeof *all_b);
	tot_a = calloc(rounds, sizeof *tot_a);
	tot_b = calloc(rounds, sizeof *tot_b);
	/* Interleaved rounds, so that drift hits both ways alike. */
	for (r = 0; r < rounds; r++) {
		tot_a[r] = net_round_netctl(n, per_a);
		tot_b[r] = net_round_ip(n, per_b);
		memcpy(all_a + (size_t)r * n, per_a, n * sizeof *per_a);
		memcpy(all_b + (size_t)r * n, per_b, n * sizeof *per_b);
	}
	ma = net_median(all_a, (size_t)n * rounds);
	mb = net_median(all_b, (size_t)n * rounds);
	ta = net_median(tot_a, rounds);
	tb = net_median(tot_b, rounds);
	printf("%-44s %10s %10s %7s\n", "", "netctl", "ip", "ip/netctl");
	printf("%-44s %8.3f ms %7.3f ms %8.1fx\n",
	    "TAP create + enslave + up, per NIC (median)", ma / 1000.0,
	    mb / 1000.0, (double)mb / ma);
	snprintf(label, sizeof label, "%d NICs attached, total (median of %d)",
	    n, rounds);
	printf("%-44s %8.1f ms %7.1f ms %8.1fx\n", label, ta / 1000.0,
	    tb / 1000.0, (double)tb / ta);
	netctl_bridge_delete(BRIDGE, NULL);
	return (0);
}
