/*
 * Detaching from the terminal: fork, setsid, fork (so the daemon can
 * never acquire a controlling terminal again), stdio to /dev/null.
 */
#include <fcntl.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

void
daemon_detach(void)
{
	pid_t	pid;

	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid != 0)
		_exit(0);
	setsid();
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid != 0)
		_exit(0);
	daemon_null_stdio();
}

void
daemon_null_stdio(void)
{
	int	fd;

	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}
