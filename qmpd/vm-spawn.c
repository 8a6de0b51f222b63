/*
 * Launching QEMU: fork, setsid, fork, drop to the VM user, exec. The
 * grandchild lives in its own session so it outlives qmpd; qmpd is a child
 * subreaper, so while it runs QEMU's exit status still reaches it. Not
 * -daemonize (seccomp spawn=deny kills a daemonizing QEMU) and not -runas
 * (elevateprivileges=deny kills that).
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qmpd.h"
#include "safefile.h"
#include "vm.h"
#include "xmalloc.h"

/* Make DIR/vms/NAME, owned by the VM user so QEMU can write its files. */
int
vm_rundir(const char *name, char **path, char **cause)
{
	char	*vmsdir;

	xasprintf(&vmsdir, "%s/vms", qmpd->state_dir);
	if (mkdir(vmsdir, 0711) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", vmsdir, strerror(errno));
		free(vmsdir);
		return (-1);
	}
	xasprintf(path, "%s/%s", vmsdir, name);
	free(vmsdir);
	if (mkdir(*path, 0750) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", *path, strerror(errno));
		goto fail;
	}
	if (chown(*path, qmpd->vm_uid, qmpd->vm_gid) == -1 ||
	    chmod(*path, 0750) == -1) {
		xasprintf(cause, "chown %s: %s", *path, strerror(errno));
		goto fail;
	}
	return (0);
fail:
	free(*path);
	*path = NULL;
	return (-1);
}

/* The uid that owns a VM's runtime files: its QEMU's. */
uid_t
vm_spawn_uid(const struct vm *vm)
{
	return (qmpd->vm_uid);
}

/*
 * Open file in the VM's runtime dir, which its QEMU's uid can write: no
 * link, no FIFO, a regular file of root's or that uid's (safefile.c).
 */
int
vm_rundir_open(const struct vm *vm, const char *file, int flags,
    char **cause)
{
	char	*path;
	int	 fd;

	xasprintf(&path, "%s/vms/%s/%s", qmpd->state_dir, vm->def.name, file);
	fd = safefile_open(path, flags, 0640, vm_spawn_uid(vm), cause);
	free(path);
	return (fd);
}

/* The whole of a small file of the VM's runtime dir, as vm_rundir_open. */
char *
vm_rundir_read(const struct vm *vm, const char *file, size_t max,
    char **cause)
{
	char	*buf;
	int	 fd;

	if ((fd = vm_rundir_open(vm, file, O_RDONLY, cause)) == -1)
		return (NULL);
	buf = safefile_read_fd(fd, file, max, NULL, cause);
	close(fd);
	return (buf);
}

/*
 * A fresh qemu.log for QEMU's stdout and stderr, made by root in the VM's
 * dir: whatever the VM's uid left under that name is removed, and the new
 * file is created exclusively, so no planted link or FIFO is opened.
 */
static int
vm_spawn_log(const struct vm *vm, char **cause)
{
	char	*dir;
	int	 dirfd, fd;

	xasprintf(&dir, "%s/vms/%s", qmpd->state_dir, vm->def.name);
	dirfd = safefile_open(dir, O_RDONLY | O_DIRECTORY, 0, vm_spawn_uid(vm),
	    cause);
	free(dir);
	if (dirfd == -1)
		return (-1);
	if (unlinkat(dirfd, "qemu.log", 0) == -1 && errno != ENOENT)
		log_debug("%s: unlink qemu.log: %s", vm->def.name,
		    strerror(errno));
	fd = safefile_openat(dirfd, "qemu.log", O_WRONLY | O_CREAT | O_EXCL,
	    0640, vm_spawn_uid(vm), cause);
	close(dirfd);
	return (fd);
}

/*
 * In the grandchild: std fds, privileges, the inherited fds, exec.
 * Reports errno on errfd (close-on-exec) when anything fails.
 */
static void __attribute__((noreturn))
vm_spawn_exec(char **argv, int logfd, const int *keep_fds, int nkeep,
    int errfd)
{
	int	 fd, err, i;

	if ((fd = open("/dev/null", O_RDONLY)) != -1) {
		dup2(fd, STDIN_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	dup2(logfd, STDOUT_FILENO);
	dup2(logfd, STDERR_FILENO);
	/*
	 * Only the fds named here (QMP socket, disks, TAPs) reach QEMU:
	 * whatever else qmpd holds (clients, LMDB, pipes) closes on exec.
	 */
	if (close_range(STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC) == -1) {
		for (fd = STDERR_FILENO + 1; fd < 65536; fd++)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	for (i = 0; i < nkeep; i++) {
		if (fcntl(keep_fds[i], F_SETFD, 0) == -1)
			goto fail;
	}
	if (setgroups(qmpd->vm_ngroups, qmpd->vm_groups) == -1 ||
	    setresgid(qmpd->vm_gid, qmpd->vm_gid, qmpd->vm_gid) == -1 ||
	    setresuid(qmpd->vm_uid, qmpd->vm_uid, qmpd->vm_uid) == -1)
		goto fail;
	if (qmpd->vm_uid != 0 && setuid(0) != -1) {
		errno = EPERM;
		goto fail;
	}
	umask(027);
	execv(argv[0], argv);
fail:
	err = errno;
	(void)write(errfd, &err, sizeof err);
	_exit(127);
}

struct vm_spawn_check {
	int	 fd;
	char	*name;
};

/*
 * The error pipe closed (exec worked) or carried errno (it did not).
 * Watched from the loop, so a slow exec never holds up other requests.
 */
static void
vm_spawn_check_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm_spawn_check	*c = arg;
	struct vm		*vm;
	ssize_t			 n;
	int			 err;
	char			*r;

	do
		n = read(c->fd, &err, sizeof err);
	while (n == -1 && errno == EINTR);
	if (n == sizeof err && (vm = vm_find(c->name)) != NULL) {
		xasprintf(&r, "cannot start %s as user %s: %s",
		    qmpd->qemu_binary, qmpd->vm_user, strerror(err));
		log_warnx("%s: %s", c->name, r);
		vm_set_state(vm, VM_CRASHED, r);
		free(r);
	}
	close(c->fd);
	free(c->name);
	free(c);
}

/*
 * Spawn QEMU for vm with argv. Returns the QEMU pid, or -1 with a cause.
 * The parent waits only for the short-lived middle child; whether exec
 * worked is learnt from the loop (vm_spawn_check_cb).
 */
pid_t
vm_spawn(struct vm *vm, char **argv, const int *keep_fds, int nkeep,
    char **cause)
{
	struct vm_spawn_check	*check;
	int			 logfd, errpipe[2] = { -1, -1 };
	int			 pidpipe[2] = { -1, -1 }, status;
	pid_t			 mid, pid = -1;
	sigset_t		 all, old;

	if ((logfd = vm_spawn_log(vm, cause)) == -1)
		return (-1);
	if (pipe2(errpipe, O_CLOEXEC) == -1 || pipe2(pidpipe, O_CLOEXEC)
	    == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		goto out;
	}
	/* No signal handler may run in the children before exec. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	mid = fork();
	if (mid == -1) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		xasprintf(cause, "fork: %s", strerror(errno));
		goto out;
	}
	if (mid == 0) {
		pid_t	gc;
		int	sig;

		for (sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		setsid();
		gc = fork();
		if (gc == 0) {
			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			vm_spawn_exec(argv, logfd, keep_fds, nkeep,
			    errpipe[1]);
		}
		(void)write(pidpipe[1], &gc, sizeof gc);
		_exit(gc == -1 ? 1 : 0);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(pidpipe[1]);
	pidpipe[1] = -1;
	close(errpipe[1]);
	errpipe[1] = -1;
	while (waitpid(mid, &status, 0) == -1 && errno == EINTR)
		;
	if (read(pidpipe[0], &pid, sizeof pid) != sizeof pid || pid <= 0) {
		xasprintf(cause, "could not fork QEMU");
		pid = -1;
		goto out;
	}
	check = xcalloc(1, sizeof *check);
	check->fd = errpipe[0];
	check->name = xstrdup(vm->def.name);
	errpipe[0] = -1;
	event_base_once(qmpd->base, check->fd, EV_READ, vm_spawn_check_cb,
	    check, NULL);
	log_debug("%s: QEMU is pid %ld", vm->def.name, (long)pid);
out:
	if (errpipe[0] != -1)
		close(errpipe[0]);
	if (errpipe[1] != -1)
		close(errpipe[1]);
	if (pidpipe[0] != -1)
		close(pidpipe[0]);
	if (pidpipe[1] != -1)
		close(pidpipe[1]);
	close(logfd);
	return (pid);
}
