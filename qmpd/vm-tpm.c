/*
 * A VM's TPM 2.0: one swtpm per VM, as libvirt runs it, started by qmpd
 * before QEMU as the VM's own user (never root), its state in
 * DIR/vms/NAME/tpm (swtpm_setup --createek makes it at the first start).
 * Its control channel is one end of a socketpair qmpd makes, QEMU gets
 * the other end as an fd: no socket file exists. Like QEMU it lives in a
 * session of its own, is watched through a pidfd, is found again after a
 * qmpd restart (pidfile and /proc cmdline), is stopped after QEMU, and
 * when it dies first the VM ends with that reason.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

#include <event2/event.h>

#include "daemon.h"
#include "file.h"
#include "log.h"
#include "proc.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_TPM_SWTPM	"/usr/bin/swtpm"
#define VM_TPM_SETUP	"/usr/bin/swtpm_setup"
#define VM_TPM_STATE	"tpm"			/* in DIR/vms/NAME */
#define VM_TPM_PERMALL	"tpm2-00.permall"	/* its TPM 2.0 state */

/* Files of the VM's dir that belong to its swtpm. */
static const char *vm_tpm_files[] = { "swtpm.pid", "swtpm.log",
    "swtpm_setup.log" };

/* DIR/vms/NAME/file (file NULL: the state dir). */
static char *
vm_tpm_path(const struct vm *vm, const char *file)
{
	char	*p;

	xasprintf(&p, "%s/vms/%s/%s", qmpd->state_dir, vm->def.name,
	    file != NULL ? file : VM_TPM_STATE);
	return (p);
}

/* Stop watching the swtpm: its pidfd goes, and its pid. */
static void
vm_tpm_unwatch(struct vm *vm)
{
	if (vm->tpm_ev != NULL) {
		event_free(vm->tpm_ev);
		vm->tpm_ev = NULL;
	}
	if (vm->tpm_pidfd != -1) {
		close(vm->tpm_pidfd);
		vm->tpm_pidfd = -1;
	}
	vm->tpm_pid = -1;
	free(vm->tpm_status);
	vm->tpm_status = NULL;
}

/* The last line swtpm (or swtpm_setup) wrote, or NULL. */
static char *
vm_tpm_log_tail(const struct vm *vm, const char *file)
{
	char	*path;
	int	 fd;

	path = vm_tpm_path(vm, file);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	free(path);
	return (file_last_line(fd, 256));
}

/* A swtpm that ended without its QEMU: the VM ends, with why. */
struct vm_tpm_orphan {
	char	 name[VM_NAME_MAX];
	pid_t	 qemu;
	char	*why;
};

/* The grace after a clean swtpm exit is over: is its QEMU gone too? */
static void
vm_tpm_orphan_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm_tpm_orphan	*o = arg;
	struct vm		*vm;

	if ((vm = vm_find(o->name)) != NULL && vm->pid == o->qemu &&
	    vm->pidfd != -1 && vm_is_active(vm)) {
		vm_set_state(vm, VM_CRASHED, o->why);
		vm_pidfd_signal(vm, SIGKILL);
	}
	free(o->why);
	free(o);
}

/*
 * The swtpm is gone. Expected after its QEMU (vm_tpm_stop unwatches
 * first). A clean exit is what swtpm does when QEMU closes the control
 * channel, that is when QEMU is going: its QEMU gets a moment to be
 * seen gone. Otherwise the VM cannot go on without its TPM: it ends,
 * with the swtpm's status as its reason.
 */
static void
vm_tpm_exit_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm		*vm = arg;
	struct vm_tpm_orphan	*o;
	struct timeval		 tv = { 3, 0 };
	char			 buf[128], *why, *tail, *what;
	int			 status, clean = 0;

	if (waitpid(vm->tpm_pid, &status, WNOHANG) == vm->tpm_pid) {
		free(vm->tpm_status);
		vm->tpm_status = xstrdup(proc_status_text(status, buf,
		    sizeof buf));
		clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	} else if (vm->tpm_status != NULL)
		clean = strcmp(vm->tpm_status, proc_status_text(0, buf,
		    sizeof buf)) == 0;
	/* 125: swtpm_setup failed, before swtpm ran (vm_tpm_exec). */
	if (vm->tpm_status != NULL && strcmp(vm->tpm_status,
	    "exit status 125") == 0) {
		tail = vm_tpm_log_tail(vm, "swtpm_setup.log");
		xasprintf(&why, "TPM emulator exited: swtpm_setup failed%s%s",
		    tail != NULL ? ": " : "", tail != NULL ? tail : "");
	} else {
		/* No status when a previous qmpd started it. */
		if (vm->tpm_status != NULL)
			what = xstrdup(vm->tpm_status);
		else
			xasprintf(&what, "pid %ld is gone", (long)vm->tpm_pid);
		tail = vm_tpm_log_tail(vm, "swtpm.log");
		xasprintf(&why, "TPM emulator exited: %s%s%s", what,
		    tail != NULL ? ": " : "", tail != NULL ? tail : "");
		free(what);
	}
	free(tail);
	vm_tpm_unwatch(vm);
	if (vm->pidfd == -1 || !vm_is_active(vm)) {
		free(why);
		return;
	}
	if (clean) {
		log_debug("%s: %s; is its QEMU going?", vm->def.name, why);
		o = xcalloc(1, sizeof *o);
		strlcpy(o->name, vm->def.name, sizeof o->name);
		o->qemu = vm->pid;
		o->why = why;
		event_base_once(qmpd->base, -1, EV_TIMEOUT, vm_tpm_orphan_cb,
		    o, &tv);
		return;
	}
	log_warnx("%s: %s", vm->def.name, why);
	vm_set_state(vm, VM_CRASHED, why);
	vm_pidfd_signal(vm, SIGKILL);
	free(why);
}

/* Watch the swtpm pid through a pidfd. */
static int
vm_tpm_watch(struct vm *vm, pid_t pid, char **cause)
{
	vm->tpm_pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (vm->tpm_pidfd == -1) {
		xasprintf(cause, "TPM emulator: pidfd_open %ld: %s",
		    (long)pid, strerror(errno));
		return (-1);
	}
	fcntl(vm->tpm_pidfd, F_SETFD, FD_CLOEXEC);
	vm->tpm_pid = pid;
	vm->tpm_ev = event_new(qmpd->base, vm->tpm_pidfd, EV_READ,
	    vm_tpm_exit_cb, vm);
	event_add(vm->tpm_ev, NULL);
	return (0);
}

/* SIGCHLD reaped a swtpm: keep its status for vm_tpm_exit_cb. */
int
vm_tpm_reaped(pid_t pid, int status)
{
	struct vm	*vm;
	char		 buf[128];

	TAILQ_FOREACH(vm, &vms, entry) {
		if (vm->tpm_pid != pid)
			continue;
		free(vm->tpm_status);
		vm->tpm_status = xstrdup(proc_status_text(status, buf,
		    sizeof buf));
		return (1);
	}
	return (0);
}

/*
 * The state dir, made by root and given to the VM's user (0700), never
 * through a link the VM's user planted in its own dir.
 */
static int
vm_tpm_statedir(struct vm *vm, uid_t uid, char **cause)
{
	char	*rundir, *path;
	int	 fd;

	if (vm_rundir(vm, &rundir, cause) != 0)
		return (-1);
	free(rundir);
	path = vm_tpm_path(vm, NULL);
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", path, strerror(errno));
		free(path);
		return (-1);
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1 || fchown(fd, uid, uid) == -1 ||
	    fchmod(fd, 0700) == -1) {
		xasprintf(cause, "TPM state dir %s: %s", path,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		free(path);
		return (-1);
	}
	close(fd);
	free(path);
	return (0);
}

/*
 * In the grandchild, as the VM's user: swtpm_setup when the state is
 * new, then exec swtpm on the inherited control socket ctl. Any failure
 * exits, and qmpd learns it from the pidfd like any other swtpm death.
 */
static void __attribute__((noreturn))
vm_tpm_exec(const struct vm *vm, uid_t uid, int ctl)
{
	char	*dir, *state, *pidf, *logf, *setupf, *ctrl, *home, *p;
	char	*setup_argv[] = { VM_TPM_SETUP, "--tpm2", "--tpmstate",
		    NULL, "--createek", "--not-overwrite", NULL };
	char	*env[3];
	pid_t	 pid;
	int	 fd, status;
	struct stat sb;

	dir = vm_tpm_path(vm, NULL);
	xasprintf(&state, "dir=%s", dir);
	p = vm_tpm_path(vm, "swtpm.pid");
	xasprintf(&pidf, "file=%s", p);
	free(p);
	p = vm_tpm_path(vm, "swtpm.log");
	xasprintf(&logf, "file=%s", p);
	free(p);
	setupf = vm_tpm_path(vm, "swtpm_setup.log");
	xasprintf(&ctrl, "type=unixio,clientfd=%d", ctl);
	xasprintf(&home, "HOME=%s/vms/%s", qmpd->state_dir, vm->def.name);
	env[0] = "PATH=/usr/bin:/bin";
	env[1] = home;
	env[2] = NULL;
	daemon_null_stdio();
	if (uid == 0 || uid == (uid_t)-1 || setgroups(0, NULL) == -1 ||
	    setresgid(uid, uid, uid) == -1 ||
	    setresuid(uid, uid, uid) == -1 || setuid(0) != -1)
		_exit(126);
	umask(077);
	/*
	 * Only the control socket reaches swtpm (and swtpm_setup), as only
	 * the fds named in vm-spawn.c reach QEMU: without this it held
	 * whatever qmpd had open without O_CLOEXEC (its etcd connections,
	 * the fds its own parent left it) for the VM's whole life.
	 */
	if (close_range(STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC) == -1)
		for (fd = STDERR_FILENO + 1; fd < 65536; fd++)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (fcntl(ctl, F_SETFD, 0) == -1)
		_exit(126);
	if (chdir(dir) == -1)
		_exit(126);
	/*
	 * A migration's target starts empty: the source's state arrives in
	 * the stream (vm-migrate-tpm.c), and an EK made here would be lost.
	 */
	if (!vm_migrate_tpm_incoming(vm) && stat(VM_TPM_PERMALL, &sb) == -1) {
		setup_argv[3] = dir;
		if ((pid = fork()) == 0) {
			fd = open(setupf, O_WRONLY | O_CREAT | O_TRUNC |
			    O_NOFOLLOW | O_CLOEXEC, 0600);
			if (fd != -1) {
				dup2(fd, STDOUT_FILENO);
				dup2(fd, STDERR_FILENO);
			}
			close(ctl);
			execve(setup_argv[0], setup_argv, env);
			_exit(127);
		}
		while (pid != -1 && waitpid(pid, &status, 0) == -1 &&
		    errno == EINTR)
			;
		if (pid == -1 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			_exit(125);
	}
	execve(VM_TPM_SWTPM, (char *[]){ VM_TPM_SWTPM, "socket", "--tpm2",
	    "--tpmstate", state, "--ctrl", ctrl, "--pid", pidf, "--log", logf,
	    NULL }, env);
	_exit(127);
}

/* What the grandchild needs to become this VM's swtpm. */
struct vm_tpm_child {
	const struct vm	*vm;
	uid_t		 uid;
	int		 ctl;
};

static void
vm_tpm_child(void *arg)
{
	struct vm_tpm_child	*c = arg;

	vm_tpm_exec(c->vm, c->uid, c->ctl);
}

/*
 * vm start: a swtpm for a VM with a TPM, in a session of its own so it
 * outlives qmpd like its QEMU. *qemu_fd is QEMU's end of the control
 * socket (-1 without a TPM); the caller closes it once QEMU has it.
 */
int
vm_tpm_start(struct vm *vm, int *qemu_fd, char **cause)
{
	struct vm_tpm_child	 child;
	int		 sv[2] = { -1, -1 };
	pid_t		 pid = -1;
	uid_t		 uid;
	char		*p;
	size_t		 i;

	*qemu_fd = -1;
	if (!vm->def.tpm)
		return (0);
	if (vm->tpm_pidfd != -1) {
		xasprintf(cause, "VM %s: the TPM emulator of its last run "
		    "(pid %ld) has not exited yet", vm->def.name,
		    (long)vm->tpm_pid);
		return (-1);
	}
	if (access(VM_TPM_SWTPM, X_OK) == -1 ||
	    access(VM_TPM_SETUP, X_OK) == -1) {
		xasprintf(cause, "VM %s has a TPM but %s or %s is missing "
		    "(apt-get install swtpm swtpm-tools)", vm->def.name,
		    VM_TPM_SWTPM, VM_TPM_SETUP);
		return (-1);
	}
	if (vm_uid_get(vm, &uid, cause) != 0 ||
	    vm_tpm_statedir(vm, uid, cause) != 0)
		return (-1);
	for (i = 0; i < nitems(vm_tpm_files); i++) {
		p = vm_tpm_path(vm, vm_tpm_files[i]);
		unlink(p);
		free(p);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		xasprintf(cause, "TPM emulator: %s", strerror(errno));
		goto fail;
	}
	child.vm = vm;
	child.uid = uid;
	child.ctl = sv[0];
	if ((pid = proc_fork_session(vm_tpm_child, &child, "the TPM emulator",
	    cause)) == -1)
		goto fail;
	if (vm_tpm_watch(vm, pid, cause) != 0) {
		kill(pid, SIGKILL);
		goto fail;
	}
	log_info("%s: TPM emulator pid %ld", vm->def.name, (long)pid);
	close(sv[0]);
	*qemu_fd = sv[1];
	return (0);
fail:
	for (i = 0; i < 2; i++)
		if (sv[i] != -1)
			close(sv[i]);
	return (-1);
}

/* Is pid the swtpm of this VM (its state dir on its command line)? */
static int
vm_tpm_cmdline(const struct vm *vm, pid_t pid)
{
	char	 buf[8192], *want, *p;
	ssize_t	 n, i;
	int	 bin = 0, dir = 0;

	if ((n = proc_cmdline(pid, buf, sizeof buf)) == 0)
		return (0);
	p = vm_tpm_path(vm, NULL);
	xasprintf(&want, "dir=%s", p);
	free(p);
	for (i = 0; i < n; i += strlen(buf + i) + 1) {
		if (i == 0 && strcmp(buf, VM_TPM_SWTPM) == 0)
			bin = 1;
		if (strcmp(buf + i, want) == 0)
			dir = 1;
	}
	free(want);
	return (bin && dir);
}

/* The pid in the VM's swtpm.pid, if it is this VM's swtpm, or -1. */
static pid_t
vm_tpm_find(const struct vm *vm)
{
	char	*path, buf[32];
	ssize_t	 n;
	long	 pid;
	int	 fd;

	path = vm_tpm_path(vm, "swtpm.pid");
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	free(path);
	if (fd == -1)
		return (-1);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return (-1);
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	if (pid <= 1 || !vm_tpm_cmdline(vm, pid) ||
	    !vm_uid_matches(vm, pid, NULL))
		return (-1);
	return (pid);
}

/*
 * qmpd start, after its QEMU was re-attached: watch its swtpm again. A
 * QEMU whose swtpm died while qmpd was away ends with that reason.
 */
void
vm_tpm_attach(struct vm *vm)
{
	char	*cause = NULL;
	pid_t	 pid;

	if (!vm->def.tpm || vm->tpm_pidfd != -1)
		return;
	if ((pid = vm_tpm_find(vm)) != -1 && vm_tpm_watch(vm, pid,
	    &cause) == 0) {
		log_info("%s: re-attached to TPM emulator pid %ld",
		    vm->def.name, (long)pid);
		return;
	}
	free(cause);
	vm_set_state(vm, VM_CRASHED, "TPM emulator exited while qmpd was "
	    "not running");
	vm_pidfd_signal(vm, SIGKILL);
}

/*
 * QEMU is gone (or never started): its swtpm goes too. Unwatched first,
 * so its exit is not taken for a failure; found by its pidfile when
 * qmpd was not watching it.
 */
void
vm_tpm_stop(struct vm *vm)
{
	pid_t	pid;

	if (vm->tpm_pidfd != -1) {
		syscall(SYS_pidfd_send_signal, vm->tpm_pidfd, SIGTERM, NULL,
		    0);
		log_debug("%s: TPM emulator pid %ld stopped", vm->def.name,
		    (long)vm->tpm_pid);
		vm_tpm_unwatch(vm);
		return;
	}
	if (vm->def.tpm && (pid = vm_tpm_find(vm)) != -1) {
		kill(pid, SIGTERM);
		log_info("%s: TPM emulator pid %ld stopped", vm->def.name,
		    (long)pid);
	}
}

/* vm delete: the TPM's state and files go with the VM. */
void
vm_tpm_delete(struct vm *vm)
{
	struct dirent	*de;
	DIR		*d;
	char		*path;
	size_t		 i;
	int		 fd;

	vm_tpm_stop(vm);
	for (i = 0; i < nitems(vm_tpm_files); i++) {
		path = vm_tpm_path(vm, vm_tpm_files[i]);
		unlink(path);
		free(path);
	}
	path = vm_tpm_path(vm, NULL);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd != -1 && (d = fdopendir(fd)) != NULL) {
		/* unlinkat never follows a link: only the entries go. */
		while ((de = readdir(d)) != NULL)
			if (strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0)
				unlinkat(fd, de->d_name, 0);
		closedir(d);
	} else if (fd != -1)
		close(fd);
	if (rmdir(path) == -1 && errno != ENOENT)
		log_warn("%s", path);
	free(path);
}
