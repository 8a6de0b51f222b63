/*
 * qmp-floor: the floor a VM manager cannot beat. Exec qemu-system-x86_64
 * with the argv given after "--" (qmpd's own argv with plain paths for the
 * QMP socket and the disk), connect to its QMP socket as soon as it
 * exists, read the greeting, send qmp_capabilities and cont, and print how
 * long that took. Optionally time QMP round trips and the way out: SIGKILL
 * or QMP "quit" until the process is gone (pidfd).
 *
 * usage: qmp-floor -s QMPSOCK [-u USER] [-l LOG] [-k kill|quit|none]
 *            [-d] [-p] [-q N] -- QEMU-ARGV...
 *   -d    QEMU in a session of its own (setsid), as qmpd starts it: with
 *         sched autogroup on, a session is a unit of CPU fairness
 *   -p    no cont: QEMU stays paused (an idle monitor for -q)
 *   -q N  N query-status round trips after the handshake
 * prints "start_us N", then "qmp_rtt_p50_us", "qmp_rtt_p99_us" (-q),
 * then "stop_us N" (kill, quit) or "pid N" (none).
 */
#include <sys/inotify.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define FLOOR_TIMEOUT_US	(60 * 1000000ULL)

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: qmp-floor -s QMPSOCK [-u USER] [-l LOG] "
	    "[-k kill|quit|none] [-d] [-p] [-q N] -- QEMU-ARGV...\n");
	exit(2);
}

/* In the child: std fds, the VM user, exec. */
static void __attribute__((noreturn))
floor_exec(char **argv, const char *user, const char *logpath, int session)
{
	int	fd;

	if (session)
		setsid();
	if ((fd = open("/dev/null", O_RDONLY)) != -1) {
		dup2(fd, STDIN_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	if (logpath != NULL &&
	    (fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0640)) != -1) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	if (user != NULL && drop_privs(user) == -1) {
		perror("qmp-floor: drop privileges");
		_exit(127);
	}
	execv(argv[0], argv);
	perror("qmp-floor: exec");
	_exit(127);
}

/*
 * Connect to the QMP socket QEMU is about to create: wait on inotify for
 * it to appear, then retry while it is bound but not yet listening.
 */
static int
floor_connect(const char *path, int inofd, int pidfd, uint64_t t0)
{
	struct pollfd	pfd[2];
	char		buf[4096];
	int		fd, err;

	for (;;) {
		if ((fd = unix_connect(path)) != -1)
			return (fd);
		err = errno;
		if (err != ENOENT && err != ECONNREFUSED)
			fatal("connect %s", path);
		if (now_us() - t0 > FLOOR_TIMEOUT_US)
			fatalx("no QMP socket at %s", path);
		pfd[0].fd = pidfd;
		pfd[0].events = POLLIN;
		pfd[1].fd = inofd;
		pfd[1].events = POLLIN;
		/* Bound, not listening yet: that gap is microseconds. */
		if (poll(pfd, 2, err == ENOENT ? 20 : 0) > 0) {
			if (pfd[0].revents & POLLIN)
				fatalx("QEMU exited before its QMP socket "
				    "came up");
			if (pfd[1].revents & POLLIN)
				(void)read(inofd, buf, sizeof buf);
		}
		if (err == ECONNREFUSED)
			usleep(100);
	}
}

/* Send one QMP command and wait for its reply, skipping events. */
static void
floor_qmp(struct lconn *c, const char *cmd)
{
	char	*line;

	lconn_write(c, cmd, strlen(cmd));
	for (;;) {
		if ((line = lconn_readline(c, NULL)) == NULL)
			fatalx("QMP closed during %s", cmd);
		if (strncmp(line, "{\"return\"", 9) == 0)
			return;
		if (strncmp(line, "{\"error\"", 8) == 0)
			fatalx("QMP %s: %s", cmd, line);
	}
}

int
main(int argc, char **argv)
{
	struct lconn	 c;
	const char	*sock = NULL, *user = NULL, *logpath = NULL;
	const char	*stop = "kill";
	char		*dir, *line;
	uint64_t	 t0, t1, *rtt;
	int		 ch, inofd, pidfd, fd, status, nq = 0, i, paused = 0;
	int		 session = 0;
	pid_t		 pid;

	while ((ch = getopt(argc, argv, "s:u:l:k:dpq:")) != -1) {
		switch (ch) {
		case 's':
			sock = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'l':
			logpath = optarg;
			break;
		case 'k':
			stop = optarg;
			break;
		case 'd':
			session = 1;
			break;
		case 'p':
			paused = 1;
			break;
		case 'q':
			nq = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (sock == NULL || argc < 1 || (strcmp(stop, "kill") != 0 &&
	    strcmp(stop, "quit") != 0 && strcmp(stop, "none") != 0))
		usage();

	unlink(sock);
	if ((dir = strdup(sock)) == NULL)
		fatal("strdup");
	if ((inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1)
		fatal("inotify_init1");
	if (inotify_add_watch(inofd, dirname(dir), IN_CREATE) == -1)
		fatal("inotify_add_watch %s", dir);

	t0 = now_us();
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid == 0)
		floor_exec(argv, user, logpath, session);
	if ((pidfd = pidfd_open_pid(pid)) == -1)
		fatal("pidfd_open");
	fd = floor_connect(sock, inofd, pidfd, t0);
	lconn_init(&c, fd);
	if ((line = lconn_readline(&c, NULL)) == NULL ||
	    strstr(line, "\"QMP\"") == NULL)
		fatalx("no QMP greeting");
	floor_qmp(&c, "{\"execute\":\"qmp_capabilities\"}\n");
	if (!paused)
		floor_qmp(&c, "{\"execute\":\"cont\"}\n");
	t1 = now_us();
	printf("start_us %llu\n", (unsigned long long)(t1 - t0));

	if (nq > 0) {
		if ((rtt = calloc(nq, sizeof *rtt)) == NULL)
			fatal("calloc");
		for (i = 0; i < nq; i++) {
			t0 = now_us();
			floor_qmp(&c, "{\"execute\":\"query-status\"}\n");
			rtt[i] = now_us() - t0;
		}
		printf("qmp_rtt_p50_us %llu\n", (unsigned long long)
		    pct(rtt, nq, 50));
		printf("qmp_rtt_p99_us %llu\n", (unsigned long long)
		    pct(rtt, nq, 99));
		free(rtt);
	}

	if (strcmp(stop, "none") == 0) {
		printf("pid %ld\n", (long)pid);
		return (0);
	}
	t0 = now_us();
	if (strcmp(stop, "kill") == 0)
		kill(pid, SIGKILL);
	else
		lconn_write(&c, "{\"execute\":\"quit\"}\n", 19);
	if (pidfd_wait(pidfd, 30000) != 0) {
		kill(pid, SIGKILL);
		fatalx("QEMU pid %ld did not go away", (long)pid);
	}
	t1 = now_us();
	printf("stop_us %llu\n", (unsigned long long)(t1 - t0));
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	lconn_close(&c);
	return (0);
}
