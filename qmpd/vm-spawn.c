/*
 * Launching QEMU: fork, setsid, fork, drop to the VM's own uid, exec. The
 * grandchild lives in its own session so it outlives qmpd; qmpd is a child
 * subreaper, so while it runs QEMU's exit status still reaches it. Not
 * -daemonize (seccomp spawn=deny kills a daemonizing QEMU) and not -runas
 * (elevateprivileges=deny kills that).
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
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
#include "proc.h"
#include "qmpd.h"
#include "safefile.h"
#include "vm.h"
#include "xmalloc.h"

/*
 * Remove what another uid left in a VM's runtime dir (the shared VM user
 * of an older qmpd, an earlier VM of this name): the new QEMU could not
 * write over it. Never chowned: a second name of a root file would be
 * given away. Closes dfd.
 */
static void
vm_rundir_sweep(int dfd, uid_t uid)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 sb;

	if ((d = fdopendir(dfd)) == NULL) {
		close(dfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) ==
		    -1 || sb.st_uid == uid || sb.st_uid == 0)
			continue;
		if (S_ISDIR(sb.st_mode))
			continue;
		unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

/*
 * Make DIR/vms/NAME, owned by the VM's own uid (allocated here when it
 * has none yet) and no one else's, so its QEMU can write its files there.
 */
int
vm_rundir(struct vm *vm, char **path, char **cause)
{
	char	*vmsdir;
	uid_t	 uid;
	int	 fd;

	if (vm_uid_get(vm, &uid, cause) != 0)
		return (-1);
	xasprintf(&vmsdir, "%s/vms", qmpd->state_dir);
	if (mkdir(vmsdir, 0711) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", vmsdir, strerror(errno));
		free(vmsdir);
		return (-1);
	}
	xasprintf(path, "%s/%s", vmsdir, vm->def.name);
	free(vmsdir);
	if (mkdir(*path, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", *path, strerror(errno));
		goto fail;
	}
	/* Left by an earlier uid of this name: owner SAFEFILE_ANY_OWNER. */
	if ((fd = safefile_open(*path, O_RDONLY | O_DIRECTORY, 0,
	    SAFEFILE_ANY_OWNER, cause)) == -1)
		goto fail;
	if (fchown(fd, uid, uid) == -1 || fchmod(fd, 0700) == -1) {
		xasprintf(cause, "chown %s: %s", *path, strerror(errno));
		close(fd);
		goto fail;
	}
	vm_rundir_sweep(fd, uid);
	return (0);
fail:
	free(*path);
	*path = NULL;
	return (-1);
}

/*
 * Empty and remove the VM's runtime dir (vm delete): its entries and
 * those of its tls/ are unlinked through dir fds, never followed.
 */
void
vm_rundir_remove(const struct vm *vm)
{
	static const char *subs[] = { "tls", "mig-tls" };
	char		*path, *cause = NULL;
	DIR		*d;
	struct dirent	*de;
	int		 fd, sub;
	size_t		 i;

	xasprintf(&path, "%s/vms/%s", qmpd->state_dir, vm->def.name);
	fd = safefile_open(path, O_RDONLY | O_DIRECTORY, 0, SAFEFILE_ANY_OWNER,
	    &cause);
	if (fd == -1) {
		if (errno != ENOENT)
			log_warnx("%s: %s", vm->def.name, cause);
		free(cause);
		free(path);
		return;
	}
	/* SPICE's x509-dir, and the migration stream's (vm-migrate-tls.c). */
	for (i = 0; i < nitems(subs); i++) {
		if ((sub = safefile_openat(fd, subs[i], O_RDONLY | O_DIRECTORY,
		    0, SAFEFILE_ANY_OWNER, &cause)) != -1 &&
		    (d = fdopendir(sub)) != NULL) {
			while ((de = readdir(d)) != NULL)
				if (strcmp(de->d_name, ".") != 0 &&
				    strcmp(de->d_name, "..") != 0)
					unlinkat(dirfd(d), de->d_name, 0);
			closedir(d);
			unlinkat(fd, subs[i], AT_REMOVEDIR);
		}
		free(cause);
		cause = NULL;
	}
	if ((d = fdopendir(fd)) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0 &&
			    unlinkat(dirfd(d), de->d_name, 0) == -1 &&
			    errno == EISDIR)
				unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
		closedir(d);
	} else
		close(fd);
	if (rmdir(path) == -1 && errno != ENOENT)
		log_warn("%s: rmdir %s", vm->def.name, path);
	free(path);
}

/*
 * A disk file handed to QEMU as an fd is no one else's to open by path:
 * another VM's uid could read or change this desktop's data. Group and
 * others lose their bits (libvirt's dynamic ownership, minus the chown:
 * the file stays root's, so a uid handed out again later owns nothing).
 */
int
vm_spawn_private(const struct vm *vm, int fd, const char *path, char **cause)
{
	struct stat	sb;

	if (fstat(fd, &sb) == -1) {
		xasprintf(cause, "disk %s: %s", path, strerror(errno));
		return (-1);
	}
	if (!S_ISREG(sb.st_mode) || (sb.st_mode & 077) == 0)
		return (0);
	if (fchmod(fd, sb.st_mode & 07700) == -1) {
		xasprintf(cause, "disk %s: chmod: %s", path, strerror(errno));
		return (-1);
	}
	log_info("%s: disk %s made private to its owner (was %04o)",
	    vm->def.name, path, (u_int)(sb.st_mode & 07777));
	return (0);
}

/*
 * Is vm's plain disk the same file (device and inode, whatever the path)
 * as another VM's? Two QEMUs writing one file corrupt it, so that is
 * refused at create and at start, naming the other VM.
 */
int
vm_spawn_disk_unshared(const struct vm *vm, char **cause)
{
	struct vm	*o;
	struct stat	 sb, osb;

	if (vm->def.disk == NULL || stat(vm->def.disk, &sb) == -1)
		return (0);
	TAILQ_FOREACH(o, &vms, entry) {
		if (o == vm || o->def.disk == NULL ||
		    strcmp(o->def.name, vm->def.name) == 0 ||
		    stat(o->def.disk, &osb) == -1)
			continue;
		if (sb.st_dev == osb.st_dev && sb.st_ino == osb.st_ino) {
			xasprintf(cause, "disk %s is already the disk of VM %s "
			    "(%s): give each VM a file of its own",
			    vm->def.disk, o->def.name, o->def.disk);
			return (-1);
		}
	}
	return (0);
}

/* The uid that owns a VM's runtime files: its QEMU's. */
uid_t
vm_spawn_uid(const struct vm *vm)
{
	return (vm_uid_lookup(vm->def.name));
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
	int	 dfd, fd;

	xasprintf(&dir, "%s/vms/%s", qmpd->state_dir, vm->def.name);
	dfd = safefile_open(dir, O_RDONLY | O_DIRECTORY, 0, vm_spawn_uid(vm),
	    cause);
	free(dir);
	if (dfd == -1)
		return (-1);
	if (unlinkat(dfd, "qemu.log", 0) == -1 && errno != ENOENT)
		log_debug("%s: unlink qemu.log: %s", vm->def.name,
		    strerror(errno));
	fd = safefile_openat(dfd, "qemu.log", O_WRONLY | O_CREAT | O_EXCL,
	    0640, vm_spawn_uid(vm), cause);
	close(dfd);
	return (fd);
}

/*
 * glibc's malloc settings for QEMU. Its VNC server builds each update in
 * a fresh output buffer (ui/vnc-jobs.c hands the worker's buffer over to
 * the connection, which frees it once written): 8 MB at 1920x1080, and
 * with glibc's defaults every one is a new mmap, or heap that was trimmed
 * back, so each update page-faults and zeroes some 2000 pages. Measured
 * (bare QEMU 7.2, video-kvm.img, a VNC client asking for every update):
 * QEMU's VNC worker spent 8.3-9.9 ms of CPU an update with the defaults,
 * 1.1-1.3 ms with these. Blocks up to 32 MiB come from the heap and the
 * heap is not trimmed below 256 MiB of free top, so the freed buffers are
 * reused; the price is that QEMU keeps its heap's peak (some tens of MB
 * while a VNC client watches), against guests of hundreds of MB and more.
 * Whatever qmpd's own environment sets wins (GLIBC_TUNABLES= keeps
 * glibc's defaults: the A/B knob of bench/transport/README.md).
 */
#define VM_SPAWN_TUNABLES	"glibc.malloc.mmap_threshold=33554432:" \
				"glibc.malloc.trim_threshold=268435456"

/*
 * In the grandchild: std fds, privileges, the inherited fds, exec.
 * Reports errno on errfd (close-on-exec) when anything fails.
 */
static void __attribute__((noreturn))
vm_spawn_exec(char **argv, int logfd, const int *keep_fds, int nkeep,
    uid_t uid, int errfd)
{
	const gid_t	*groups;
	int		 fd, err, i, ngroups;

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
	/* The VM's own uid, and as gid the same number; kvm beside it. */
	groups = vm_uid_groups(&ngroups);
	if (uid == 0 || uid == (uid_t)-1) {
		errno = EPERM;
		goto fail;
	}
	if (setgroups(ngroups, groups) == -1 ||
	    setresgid(uid, uid, uid) == -1 ||
	    setresuid(uid, uid, uid) == -1)
		goto fail;
	if (setuid(0) != -1) {
		errno = EPERM;
		goto fail;
	}
	umask(077);
	if (setenv("GLIBC_TUNABLES", VM_SPAWN_TUNABLES, 0) == -1)
		goto fail;
	execv(argv[0], argv);
fail:
	err = errno;
	(void)write(errfd, &err, sizeof err);
	_exit(127);
}

struct vm_spawn_check {
	int	 fd;
	char	*name;
	uid_t	 uid;
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
		xasprintf(&r, "cannot start %s as uid %lu: %s",
		    qmpd->qemu_binary, (u_long)c->uid, strerror(err));
		log_warnx("%s: %s", c->name, r);
		vm_set_state(vm, VM_CRASHED, r);
		free(r);
	}
	close(c->fd);
	free(c->name);
	free(c);
}

/* What the grandchild needs to become QEMU. */
struct vm_spawn_child {
	char		**argv;
	int		  logfd;
	const int	 *keep_fds;
	int		  nkeep;
	uid_t		  uid;
	int		  errfd;
};

static void
vm_spawn_child(void *arg)
{
	struct vm_spawn_child	*c = arg;

	vm_spawn_exec(c->argv, c->logfd, c->keep_fds, c->nkeep, c->uid,
	    c->errfd);
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
	struct vm_spawn_child	 child;
	uid_t			 uid;
	int			 logfd, errpipe[2] = { -1, -1 };
	pid_t			 pid = -1;

	if ((uid = vm_spawn_uid(vm)) == (uid_t)-1) {
		xasprintf(cause, "VM %s has no uid to run as", vm->def.name);
		return (-1);
	}
	if ((logfd = vm_spawn_log(vm, cause)) == -1)
		return (-1);
	if (pipe2(errpipe, O_CLOEXEC) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		goto out;
	}
	child.argv = argv;
	child.logfd = logfd;
	child.keep_fds = keep_fds;
	child.nkeep = nkeep;
	child.uid = uid;
	child.errfd = errpipe[1];
	pid = proc_fork_session(vm_spawn_child, &child, "QEMU", cause);
	close(errpipe[1]);
	errpipe[1] = -1;
	if (pid == -1)
		goto out;
	check = xcalloc(1, sizeof *check);
	check->fd = errpipe[0];
	check->name = xstrdup(vm->def.name);
	check->uid = uid;
	errpipe[0] = -1;
	event_base_once(qmpd->base, check->fd, EV_READ, vm_spawn_check_cb,
	    check, NULL);
	log_debug("%s: QEMU is pid %ld", vm->def.name, (long)pid);
out:
	if (errpipe[0] != -1)
		close(errpipe[0]);
	if (errpipe[1] != -1)
		close(errpipe[1]);
	close(logfd);
	return (pid);
}
