/*
 * Self-fencing. A host that cannot prove it holds its lease must assume
 * the others will restart its desktops: it kills every local QEMU at
 * once (SIGKILL, no shutdown to wait for), and says when, to the
 * millisecond, so the log can be held against the other hosts' logs.
 * The keeper reports the loss when no renewal has held for lease_ttl
 * counted from when that renewal was sent, which is no later than etcd
 * can expire it; the others then wait fence_delay more before they
 * restart anything. The same fence falls on desktops a restarted qmpd
 * re-attached to if it has not joined within lease_ttl.
 *
 * QEMUs outlive qmpd, so a qmpd that dies cannot fence: its watchdog
 * does. It is a child forked at join that qmpd tells, at every refresh,
 * until when the lease surely holds; once that moment passes with no
 * newer word (qmpd gone, hung or stopped) it kills every QEMU of the
 * state dir, unless a new qmpd of the same state dir has joined first
 * (SIGUSR1: stand down).
 */
#include <sys/syscall.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "cluster.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

static struct event	*fence_ev;
static int		 fence_done;	/* fenced, not joined since */

int
cluster_fencing(void)
{
	return (fence_done);
}

/* Kill every local desktop now; they may be restarted elsewhere. */
void
cluster_fence(const char *why)
{
	struct vm	*vm;
	char		*cause;
	int		 n = 0;

	fence_done = 1;
	log_warnx("cluster: fence at %s (wall_ms %lld): %s: killing every "
	    "local desktop", cluster_stamp(), clock_wall_ms(), why);
	TAILQ_FOREACH(vm, &vms, entry) {
		boot_queue_cancel(vm->def.name, "this host lost its lease");
		if (vm->pidfd == -1)
			continue;
		cause = NULL;
		if (vm_kill(vm, &cause) != 0) {
			log_warnx("cluster: fence: %s: %s", vm->def.name, cause);
			free(cause);
			continue;
		}
		n++;
	}
	log_warnx("cluster: fenced at %s (wall_ms %lld): %d desktop(s) "
	    "killed", cluster_stamp(), clock_wall_ms(), n);
}

static void
fence_cb(evutil_socket_t fd, short events, void *arg)
{
	if (!cluster_host_joined())
		cluster_fence("no lease held since start-up");
}

/* Fence in seconds unless this host has joined by then. */
void
cluster_fence_arm(int seconds)
{
	struct timeval	tv = { seconds, 0 };

	if (fence_ev == NULL)
		fence_ev = evtimer_new(qmpd->base, fence_cb, NULL);
	evtimer_add(fence_ev, &tv);
}

void
cluster_fence_disarm(void)
{
	fence_done = 0;
	if (fence_ev != NULL)
		evtimer_del(fence_ev);
}

/* ---- the watchdog ---- */

static pid_t			 wd_pid = -1;
static int			 wd_fd = -1;
static volatile sig_atomic_t	 wd_standdown;

static void
wd_usr1(int sig)
{
	wd_standdown = 1;
}

/* pid's command line, its NULs as spaces, into buf; -1 if it is gone. */
static int
wd_cmdline(long pid, char *buf, size_t len)
{
	char	 path[64];
	FILE	*f;
	size_t	 n, i;

	snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
	if (pid <= 0 || (f = fopen(path, "r")) == NULL)
		return (-1);
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	for (i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return (0);
}

/* Live QEMUs of the state dir: pidfile, and a command line naming it. */
static int
wd_qemus(const char *dir, int kill9)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[4096], want[4096], cmd[8192];
	FILE		*f;
	long		 pid;
	int		 found = 0;

	snprintf(path, sizeof path, "%s/vms", dir);
	if ((d = opendir(path)) == NULL)
		return (0);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/vms/%s/qemu.pid", dir,
		    de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
		if (wd_cmdline(pid, cmd, sizeof cmd) != 0)
			continue;
		snprintf(want, sizeof want, "%s/vms/%s/", dir, de->d_name);
		if (strstr(cmd, want) == NULL)
			continue;
		found++;
		if (kill9)
			kill((pid_t)pid, SIGKILL);
	}
	closedir(d);
	return (found);
}

/* Kill every QEMU of dir now, saying why and when. */
static void
wd_fence(const char *dir, const char *why)
{
	int	n;

	if ((n = wd_qemus(dir, 1)) == 0)
		return;
	log_warnx("cluster: watchdog: %s and its lease may expire: fenced at "
	    "%s (wall_ms %lld): %d QEMU(s) killed", why, cluster_stamp(),
	    clock_wall_ms(), n);
}

/*
 * The child: read until when the lease holds; kill when that passes
 * with no newer word from qmpd, whether qmpd is gone (EOF) or only not
 * answering (hung, SIGSTOPped, starved): either way nobody renews the
 * lease, and the other hosts will restart a shared-store desktop once it
 * expired, so its QEMU here must be dead by then.
 */
static void __attribute__((noreturn))
wd_main(int fd, const char *dir)
{
	char		 buf[256];
	long long	 held = 0, v, left;
	ssize_t		 n;
	char		*p, *nl;
	size_t		 len = 0;
	struct pollfd	 pfd;
	struct timespec	 nap = { 0, 100 * 1000 * 1000 };

	signal(SIGUSR1, wd_usr1);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	for (;;) {
		if (wd_standdown)
			_exit(0);
		left = held == 0 ? -1 : held - clock_mono_ms();
		if (left == 0 || left < -1)
			left = 0;
		pfd.fd = fd;
		pfd.events = POLLIN;
		/* Past the deadline: look again every 100 ms. */
		switch (poll(&pfd, 1, left == 0 ? 100 : (int)left)) {
		case -1:
			if (errno != EINTR)
				goto gone;
			continue;
		case 0:
			wd_fence(dir, "qmpd has not renewed its lease");
			continue;
		}
		n = read(fd, buf + len, sizeof buf - 1 - len);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		len += n;
		buf[len] = '\0';
		p = buf;
		while ((nl = strchr(p, '\n')) != NULL) {
			if (sscanf(p, "H %lld", &v) == 1)
				held = v;
			p = nl + 1;
		}
		len = strlen(p);
		memmove(buf, p, len + 1);
	}
gone:
	for (;;) {
		if (wd_standdown || wd_qemus(dir, 0) == 0)
			_exit(0);
		if (clock_mono_ms() >= held) {
			wd_fence(dir, "qmpd is gone");
			_exit(0);
		}
		nanosleep(&nap, NULL);
	}
}

/* The watchdog a previous qmpd of this state dir left: stand it down. */
static void
wd_relieve(const char *pidfile)
{
	FILE	*f;
	long	 pid = 0;
	char	 cmd[4096];

	if ((f = fopen(pidfile, "r")) == NULL)
		return;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	if (pid <= 0 || pid == wd_pid)
		return;
	if (wd_cmdline(pid, cmd, sizeof cmd) != 0 || strstr(cmd, "qmpd") ==
	    NULL || strstr(cmd, qmpd->state_dir) ==
	    NULL)
		return;
	log_info("cluster: standing down the watchdog %ld of the previous "
	    "qmpd", pid);
	kill((pid_t)pid, SIGUSR1);
}

/*
 * Tell the watchdog (started, and any predecessor's stood down, on the
 * first call after this host joined) until when the lease holds.
 */
void
cluster_fence_watchdog(long long held_until)
{
	char	*pidfile, line[64];
	int	 p[2];
	FILE	*f;
	pid_t	 pid;

	if (wd_fd == -1) {
		xasprintf(&pidfile, "%s/cluster-watchdog.pid",
		    qmpd->state_dir);
		wd_relieve(pidfile);
		if (pipe2(p, O_CLOEXEC) == -1) {
			log_warn("cluster: watchdog pipe");
			free(pidfile);
			return;
		}
		if ((pid = fork()) == -1) {
			log_warn("cluster: watchdog fork");
			close(p[0]);
			close(p[1]);
			free(pidfile);
			return;
		}
		if (pid == 0) {
			dup2(p[0], 3);
			syscall(SYS_close_range, 4, ~0U, 0);
			wd_main(3, qmpd->state_dir);
		}
		close(p[0]);
		wd_fd = p[1];
		wd_pid = pid;
		fcntl(wd_fd, F_SETFL, O_NONBLOCK);
		if ((f = fopen(pidfile, "w")) != NULL) {
			fprintf(f, "%ld\n", (long)pid);
			fclose(f);
		}
		free(pidfile);
		log_info("cluster: watchdog %ld started", (long)pid);
	}
	snprintf(line, sizeof line, "H %lld\n", held_until);
	if (write(wd_fd, line, strlen(line)) == -1 && errno != EAGAIN)
		log_warn("cluster: watchdog");
}
