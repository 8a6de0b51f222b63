/*
 * netctl's links for real, in a private network namespace this test
 * unshares for itself (root only, else skipped): a bridge with its
 * gateway, three TAPs enslaved and up, a TAP gone with its last fd, the
 * bridge deleted, and every change to an interface qdesk does not own
 * (lo, a veth named eth0) refused with the interface left as it was.
 */
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>

#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>

#include "link.h"

#include "check.h"

/* The first line of a small file, or "". */
static const char *
readline(const char *path)
{
	static char	 buf[256];
	FILE		*f;
	size_t		 n;

	buf[0] = '\0';
	if ((f = fopen(path, "r")) == NULL)
		return (buf);
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	return (buf);
}

/* /sys/class/net/IF/FILE (our own sysfs, mounted in main). */
static const char *
sysfs(const char *ifname, const char *file)
{
	char	path[PATH_MAX];

	snprintf(path, sizeof path, "/sys/class/net/%s/%s", ifname, file);
	return (readline(path));
}

/* The name of ifname's master from sysfs, or "". */
static const char *
sysfs_master(const char *ifname)
{
	static char	 buf[PATH_MAX];
	char		 path[PATH_MAX], *slash;
	ssize_t		 n;

	snprintf(path, sizeof path, "/sys/class/net/%s/master", ifname);
	if ((n = readlink(path, buf, sizeof buf - 1)) == -1)
		return ("");
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	return (slash != NULL ? slash + 1 : buf);
}

static int
is_up(const char *ifname)
{
	struct ifreq	ifr;
	int		s, up = 0;

	if ((s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return (0);
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0)
		up = (ifr.ifr_flags & IFF_UP) != 0;
	close(s);
	return (up);
}

static int
exists(const char *ifname)
{
	return (if_nametoindex(ifname) != 0);
}

/* 1 if ifname has IPv4 address addr with prefix length prefix. */
static int
has_addr(const char *ifname, const char *addr, int prefix)
{
	struct ifaddrs		*ifa, *p;
	struct sockaddr_in	*sin, *mask;
	char			 buf[INET_ADDRSTRLEN];
	int			 found = 0;

	if (getifaddrs(&ifa) == -1)
		return (0);
	for (p = ifa; p != NULL; p = p->ifa_next) {
		if (p->ifa_addr == NULL || p->ifa_addr->sa_family != AF_INET ||
		    strcmp(p->ifa_name, ifname) != 0)
			continue;
		sin = (struct sockaddr_in *)p->ifa_addr;
		mask = (struct sockaddr_in *)p->ifa_netmask;
		inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
		if (strcmp(buf, addr) == 0 &&
		    __builtin_popcount(mask->sin_addr.s_addr) == prefix)
			found = 1;
	}
	freeifaddrs(ifa);
	return (found);
}

/* Runs f(name, cause) and checks it refused with -EPERM and a cause. */
#define CHECK_REFUSED(call) do {					\
	char	*cause_ = NULL;						\
	int	 rc_;							\
	rc_ = (call);							\
	CHECK(rc_ == -EPERM);						\
	CHECK(cause_ != NULL && strstr(cause_, "refusing") != NULL);	\
	free(cause_);							\
} while (0)

static double
now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static int
cmp_double(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

/* Makes the veth pair eth0/vpeer, up, with libnl: not netctl's to make. */
static int
make_veth(void)
{
	struct nl_sock		*sk;
	struct rtnl_link	*l;
	int			 rc;

	if ((sk = nl_socket_alloc()) == NULL)
		return (-1);
	rc = nl_connect(sk, NETLINK_ROUTE);
	if (rc == 0)
		rc = rtnl_link_veth_add(sk, "eth0", "vpeer", getpid());
	if (rc == 0 && (l = rtnl_link_alloc()) != NULL) {
		rtnl_link_set_name(l, "eth0");
		rtnl_link_set_flags(l, IFF_UP);
		rc = rtnl_link_change(sk, l, l, 0);
		rtnl_link_put(l);
	}
	nl_socket_free(sk);
	return (rc);
}

static void
test_bridge_and_taps(void)
{
	const char	*taps[] = { "qtapt0", "qtapt1", "qtapt2" };
	char		 mac[32], master[IFNAMSIZ], *cause = NULL;
	int		 fds[3], fd, i;

	CHECK(netctl_link_exists("qbrt", NULL) == 0);
	CHECK(netctl_bridge_create("qbrt", &cause) == 0);
	CHECK(cause == NULL);
	CHECK(netctl_link_exists("qbrt", NULL) == 1);
	CHECK(exists("qbrt") && is_up("qbrt"));
	CHECK(strcmp(sysfs("qbrt", "bridge/stp_state"), "0") == 0);
	snprintf(mac, sizeof mac, "%s", sysfs("qbrt", "address"));
	CHECK(strncmp(mac, "02:71:64:", 9) == 0);
	CHECK(netctl_bridge_create("qbrt", &cause) == -EEXIST);
	CHECK(cause != NULL && strstr(cause, "qbrt") != NULL);
	free(cause);
	cause = NULL;

	CHECK(netctl_addr_add("qbrt", "10.55.0.1/24", &cause) == 0);
	CHECK(has_addr("qbrt", "10.55.0.1", 24));
	/* Again at daemon start: replaced, not an error. */
	CHECK(netctl_addr_add("qbrt", "10.55.0.1/24", &cause) == 0);
	CHECK(netctl_addr_add("qbrt", "10.55.0.1", &cause) == -EINVAL);
	free(cause);
	cause = NULL;
	CHECK(netctl_addr_add("qbrt", "10.55.0.1/24; rm", NULL) == -EINVAL);

	/* Three TAPs, three ways: attach (enslave + up at once), or both. */
	for (i = 0; i < 3; i++) {
		fds[i] = -1;
		CHECK(netctl_tap_open(taps[i], &fds[i], &cause) == 0);
		CHECK(fds[i] >= 0);
		/* The fd goes to QEMU: it must survive exec. */
		CHECK((fcntl(fds[i], F_GETFD) & FD_CLOEXEC) == 0);
		CHECK(exists(taps[i]));
		/* IFF_TAP | IFF_NO_PI | IFF_VNET_HDR */
		CHECK(strcmp(sysfs(taps[i], "tun_flags"), "0x5002") == 0);
	}
	CHECK(netctl_tap_attach(taps[0], "qbrt", &cause) == 0);
	CHECK(netctl_tap_attach(taps[1], "qbrt", &cause) == 0);
	CHECK(!is_up(taps[2]));
	CHECK(netctl_enslave(taps[2], "qbrt", &cause) == 0);
	CHECK(strcmp(sysfs_master(taps[2]), "qbrt") == 0);
	CHECK(!is_up(taps[2]));
	CHECK(netctl_link_up(taps[2], &cause) == 0);
	for (i = 0; i < 3; i++) {
		CHECK(strcmp(sysfs_master(taps[i]), "qbrt") == 0);
		CHECK(netctl_link_master(taps[i], master, NULL) == 0 &&
		    strcmp(master, "qbrt") == 0);
		CHECK(is_up(taps[i]));
	}
	CHECK(netctl_link_master("qbrt", master, NULL) == 0 &&
	    master[0] == '\0');
	/* The gateway's MAC stays put as ports join. */
	CHECK(strcmp(sysfs("qbrt", "address"), mac) == 0);

	/* A TAP in use cannot be taken twice. */
	CHECK(netctl_tap_open(taps[0], &fd, &cause) == -EBUSY);
	CHECK(fd == -1);
	CHECK(cause != NULL && strstr(cause, "in use") != NULL);
	free(cause);
	cause = NULL;

	/* The TAP goes with its last fd. */
	close(fds[1]);
	fds[1] = -1;
	CHECK(netctl_link_exists(taps[1], NULL) == 0);
	CHECK(!exists(taps[1]));

	CHECK(netctl_link_down(taps[0], &cause) == 0);
	CHECK(!is_up(taps[0]));

	/* Missing interfaces: -ENODEV and a cause naming them. */
	CHECK(netctl_link_up("qtapnone", &cause) == -ENODEV);
	CHECK(cause != NULL && strstr(cause, "qtapnone") != NULL);
	free(cause);
	cause = NULL;
	CHECK(netctl_tap_attach(taps[0], "qbrnone", NULL) == -ENODEV);
	CHECK(netctl_addr_add("qbrnone", "10.56.0.1/24", NULL) == -ENODEV);
	CHECK(netctl_bridge_delete("qbrnone", NULL) == -ENODEV);

	/* A TAP is not a bridge, even named like one. */
	CHECK(netctl_tap_open("qbrfake", &fd, NULL) == -EPERM);
	CHECK(netctl_enslave(taps[2], "qtapt0", NULL) == -EPERM);

	/* Deleting the bridge frees its ports; the TAPs live on. */
	CHECK(netctl_bridge_delete("qbrt", &cause) == 0);
	CHECK(!exists("qbrt"));
	CHECK(exists(taps[0]) && sysfs_master(taps[0])[0] == '\0');
	for (i = 0; i < 3; i++) {
		if (fds[i] != -1)
			close(fds[i]);
	}
	CHECK(!exists(taps[0]) && !exists(taps[2]));
}

static void
test_refusals(void)
{
	char	master[IFNAMSIZ], *cause = NULL;
	int	fd = -1;

	CHECK(make_veth() == 0);
	CHECK(exists("eth0") && exists("vpeer") && is_up("eth0"));
	CHECK(netctl_bridge_create("qbru", NULL) == 0);

	CHECK_REFUSED(netctl_link_delete("eth0", &cause_));
	CHECK_REFUSED(netctl_link_down("eth0", &cause_));
	CHECK_REFUSED(netctl_link_up("eth0", &cause_));
	CHECK_REFUSED(netctl_addr_add("eth0", "10.57.0.1/24", &cause_));
	CHECK_REFUSED(netctl_bridge_delete("eth0", &cause_));
	CHECK_REFUSED(netctl_bridge_create("eth0", &cause_));
	CHECK_REFUSED(netctl_tap_open("eth0", &fd, &cause_));
	CHECK_REFUSED(netctl_enslave("eth0", "qbru", &cause_));
	CHECK_REFUSED(netctl_tap_attach("eth0", "qbru", &cause_));
	CHECK_REFUSED(netctl_link_delete("lo", &cause_));
	CHECK_REFUSED(netctl_link_down("lo", &cause_));
	CHECK_REFUSED(netctl_addr_add("lo", "127.0.0.2/8", &cause_));
	CHECK_REFUSED(netctl_bridge_create("qtapx", &cause_));
	CHECK(fd == -1);
	/* Refused means untouched. */
	CHECK(exists("eth0") && is_up("eth0"));
	CHECK(strcmp(sysfs("eth0", "type"), "1") == 0);
	CHECK(sysfs_master("eth0")[0] == '\0');
	CHECK(!has_addr("eth0", "10.57.0.1", 24));
	CHECK(exists("lo") && is_up("lo"));
	CHECK(!has_addr("lo", "127.0.0.2", 8));

	CHECK(netctl_bridge_create("qbr0123456789abc", &cause) ==
	    -ENAMETOOLONG);
	CHECK(cause != NULL && strstr(cause, "15") != NULL);
	free(cause);
	cause = NULL;

	/* Bridge mode: an admin's uplink gets a master, nothing else. */
	CHECK(netctl_uplink_enslave("lo", "qbru", NULL) == -EINVAL);
	CHECK(netctl_uplink_enslave("qtapx", "qbru", NULL) == -EINVAL);
	CHECK(netctl_uplink_enslave("vpeer", "eth0", NULL) == -EPERM);
	CHECK(netctl_uplink_enslave("vpeer", "qbrnone", NULL) == -ENODEV);
	CHECK(netctl_uplink_enslave("vpeer", "qbru", &cause) == 0);
	CHECK(strcmp(sysfs_master("vpeer"), "qbru") == 0);
	CHECK(netctl_uplink_enslave("vpeer", "qbru", &cause) == 0);
	CHECK(netctl_link_master("vpeer", master, NULL) == 0 &&
	    strcmp(master, "qbru") == 0);
	CHECK(netctl_bridge_create("qbrv", NULL) == 0);
	CHECK(netctl_uplink_enslave("vpeer", "qbrv", NULL) == -EBUSY);
	CHECK(netctl_uplink_release("vpeer", "qbrv", NULL) == 0);
	CHECK(strcmp(sysfs_master("vpeer"), "qbru") == 0);
	CHECK(netctl_uplink_release("vpeer", "qbru", &cause) == 0);
	CHECK(sysfs_master("vpeer")[0] == '\0');
	CHECK(exists("vpeer") && exists("eth0"));

	CHECK(netctl_bridge_delete("qbru", NULL) == 0);
	CHECK(netctl_bridge_delete("qbrv", NULL) == 0);
	CHECK(exists("eth0"));
}

/* TAP open + attach per NIC, timed: informative, for the benchmark. */
static void
test_many(void)
{
	char	name[IFNAMSIZ];
	double	t[100], t0, total = 0;
	int	fds[100], i, ok = 1;

	CHECK(netctl_bridge_create("qbrm", NULL) == 0);
	for (i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "qtapm%d", i);
		t0 = now();
		if (netctl_tap_open(name, &fds[i], NULL) != 0 ||
		    netctl_tap_attach(name, "qbrm", NULL) != 0)
			ok = 0;
		t[i] = now() - t0;
		total += t[i];
	}
	CHECK(ok);
	CHECK(strcmp(sysfs_master("qtapm99"), "qbrm") == 0 &&
	    is_up("qtapm99"));
	qsort(t, 100, sizeof t[0], cmp_double);
	printf("100 TAPs opened, enslaved and up: %.1f ms, median %.0f us "
	    "per NIC\n", total * 1e3, t[50] * 1e6);
	for (i = 0; i < 100; i++)
		close(fds[i]);
	CHECK(!exists("qtapm0") && !exists("qtapm99"));
	CHECK(netctl_bridge_delete("qbrm", NULL) == 0);
}

int
main(void)
{
	char	*cause = NULL;

	if (geteuid() != 0) {
		printf("SKIP: needs root for a private network namespace\n");
		return (77);
	}
	/*
	 * A network namespace of our own, and a mount namespace to mount a
	 * sysfs that shows it (as ip netns exec does); both go with us.
	 */
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) == -1) {
		printf("SKIP: unshare: %s\n", strerror(errno));
		return (77);
	}
	if (mount("none", "/", NULL, MS_REC | MS_SLAVE, NULL) == -1 ||
	    umount2("/sys", MNT_DETACH) == -1 ||
	    mount("sysfs", "/sys", "sysfs", 0, NULL) == -1) {
		printf("SKIP: private sysfs: %s\n", strerror(errno));
		return (77);
	}
	if (access("/dev/net/tun", R_OK | W_OK) == -1) {
		printf("SKIP: /dev/net/tun: %s\n", strerror(errno));
		return (77);
	}
	/* A fresh namespace has only lo, and down. */
	CHECK(!exists("eth0"));
	{
		struct nl_sock		*sk = nl_socket_alloc();
		struct rtnl_link	*l = rtnl_link_alloc();

		nl_connect(sk, NETLINK_ROUTE);
		rtnl_link_set_name(l, "lo");
		rtnl_link_set_flags(l, IFF_UP);
		CHECK(rtnl_link_change(sk, l, l, 0) == 0);
		rtnl_link_put(l);
		nl_socket_free(sk);
	}

	test_bridge_and_taps();
	test_refusals();
	test_many();

	CHECK(netctl_ip_forward(&cause) == 0);
	CHECK(strcmp(readline("/proc/sys/net/ipv4/ip_forward"), "1") == 0);
	netctl_link_close();
	return (check_exit());
}
