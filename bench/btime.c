/*
 * btime: time a command with CLOCK_MONOTONIC, from just before fork to
 * when it has exited and, optionally, when some processes are gone
 * (pidfd) and some files contain a pattern (a guest's serial log).
 *
 * usage: btime [-n N] [-o] -- CMD...
 *            prints N samples in microseconds, one a line
 *        btime [-g PID]... [-p PATTERN [-f FILE]...] [-t SEC] [-o] -- CMD...
 *            prints "total_us T cmd_us C gone_us G files_us F"
 * The command's stdout goes to /dev/null unless -o; its stderr is kept.
 * Exit status 1 if the command failed or the wait timed out.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "util.h"

#define BTIME_MAX	1024

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: btime [-n N] [-o] -- CMD...\n"
	    "       btime [-g PID]... [-p PATTERN [-f FILE]...] [-t SEC] [-o] "
	    "-- CMD...\n");
	exit(2);
}

static pid_t
btime_spawn(char **argv, int keep_stdout)
{
	pid_t	pid;
	int	fd;

	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid == 0) {
		if (!keep_stdout &&
		    (fd = open("/dev/null", O_WRONLY)) != -1) {
			dup2(fd, STDOUT_FILENO);
			close(fd);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "btime: exec %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	return (pid);
}

static int
btime_reap(pid_t pid)
{
	int	status;

	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			fatal("waitpid");
	return (WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1);
}

/* Does the file hold the pattern yet? Serial logs are small. */
static int
btime_file_has(const char *path, const char *pattern)
{
	static char	 buf[1 << 20];
	ssize_t		 n;

	if ((n = file_read_small(path, buf, sizeof buf)) == 0)
		return (0);
	return (memmem(buf, n, pattern, strlen(pattern)) != NULL);
}

int
main(int argc, char **argv)
{
	const char	*pattern = NULL, *files[BTIME_MAX];
	uint64_t	 t0, t_cmd = 0, t_gone = 0, t_files = 0, t, deadline;
	pid_t		 pid, gpids[BTIME_MAX];
	int		 pidfds[BTIME_MAX], fdone[BTIME_MAX];
	int		 ch, i, n = 1, ng = 0, nf = 0, keep = 0, rc = 0;
	int		 left_g, left_f, timeout = 300, cmdfd, np;
	struct pollfd	 pfd[BTIME_MAX + 1];

	while ((ch = getopt(argc, argv, "n:og:p:f:t:")) != -1) {
		switch (ch) {
		case 'n':
			n = atoi(optarg);
			break;
		case 'o':
			keep = 1;
			break;
		case 'g':
			if (ng == BTIME_MAX)
				usage();
			gpids[ng++] = atoi(optarg);
			break;
		case 'p':
			pattern = optarg;
			break;
		case 'f':
			if (nf == BTIME_MAX)
				usage();
			files[nf++] = optarg;
			break;
		case 't':
			timeout = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1 || n < 1 || (nf > 0 && pattern == NULL))
		usage();

	if (ng == 0 && nf == 0) {
		for (i = 0; i < n; i++) {
			t0 = now_us();
			pid = btime_spawn(argv, keep);
			if (btime_reap(pid) != 0)
				rc = 1;
			printf("%llu\n", (unsigned long long)(now_us() - t0));
		}
		return (rc);
	}

	/* Open the pidfds first: a pid that is gone already counts as 0. */
	for (i = 0; i < ng; i++)
		pidfds[i] = pidfd_open_pid(gpids[i]);
	for (i = 0; i < nf; i++)
		fdone[i] = 0;
	t0 = now_us();
	deadline = t0 + (uint64_t)timeout * 1000000;
	pid = btime_spawn(argv, keep);
	if ((cmdfd = pidfd_open_pid(pid)) == -1)
		fatal("pidfd_open");
	for (;;) {
		/* Wake on any exit; poll the files every millisecond. */
		np = 0;
		if (cmdfd != -1) {
			pfd[np].fd = cmdfd;
			pfd[np++].events = POLLIN;
		}
		for (i = 0; i < ng && np < BTIME_MAX; i++) {
			if (pidfds[i] == -1)
				continue;
			pfd[np].fd = pidfds[i];
			pfd[np++].events = POLLIN;
		}
		left_f = 0;
		for (i = 0; i < nf; i++)
			left_f += !fdone[i];
		if (np > 0 || left_f > 0)
			(void)poll(pfd, np, left_f > 0 ? 1 : 1000);
		t = now_us();
		if (cmdfd != -1 && pidfd_wait(cmdfd, 0) == 0) {
			if (btime_reap(pid) != 0)
				rc = 1;
			close(cmdfd);
			cmdfd = -1;
			t_cmd = t - t0;
		}
		left_g = 0;
		for (i = 0; i < ng; i++) {
			if (pidfds[i] == -1)
				continue;
			if (pidfd_wait(pidfds[i], 0) == 0) {
				close(pidfds[i]);
				pidfds[i] = -1;
				t_gone = t - t0;
			} else
				left_g++;
		}
		left_f = 0;
		for (i = 0; i < nf; i++) {
			if (fdone[i])
				continue;
			if (btime_file_has(files[i], pattern)) {
				fdone[i] = 1;
				t_files = t - t0;
			} else
				left_f++;
		}
		if (cmdfd == -1 && left_g == 0 && left_f == 0)
			break;
		if (t > deadline) {
			fprintf(stderr, "btime: timed out: command %s, %d "
			    "processes, %d files left\n", cmdfd == -1 ? "done" :
			    "running", left_g, left_f);
			if (cmdfd != -1)
				kill(pid, SIGKILL);
			return (1);
		}
	}
	t = t_cmd;
	if (t_gone > t)
		t = t_gone;
	if (t_files > t)
		t = t_files;
	printf("total_us %llu cmd_us %llu gone_us %llu files_us %llu\n",
	    (unsigned long long)t, (unsigned long long)t_cmd,
	    (unsigned long long)t_gone, (unsigned long long)t_files);
	return (rc);
}
