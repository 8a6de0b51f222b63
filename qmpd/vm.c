/*
 * The VM registry and its state machine: definitions in LMDB, one struct
 * vm per definition in memory, QEMU processes watched through pidfds.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "img.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "qmp.h"
#include "qmpd.h"
#include "sock.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_SPICE_PORT_BASE	5900
#define VM_SPICE_PORT_LAST	6899
#define VM_RESTART_WINDOW	60	/* seconds */
#define VM_RESTART_DELAY_MS	1000
#define VM_QUIT_GRACE_MS	5000	/* after "quit", SIGKILL */

struct vms	vms = TAILQ_HEAD_INITIALIZER(vms);

static void	vm_exited(struct vm *);
static void	vm_restart_maybe(struct vm *);

static int
vm_pidfd_open(pid_t pid)
{
	return (syscall(SYS_pidfd_open, pid, 0));
}

static int
vm_pidfd_signal(struct vm *vm, int sig)
{
	if (vm->pidfd != -1)
		return (syscall(SYS_pidfd_send_signal, vm->pidfd, sig, NULL,
		    0));
	errno = ESRCH;
	return (-1);
}

struct vm *
vm_find(const char *name)
{
	struct vm	*vm;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (strcmp(vm->def.name, name) == 0)
			return (vm);
	}
	return (NULL);
}

/*
 * Active: running in some way, or not yet gone. A VM said to have crashed
 * whose QEMU has still to exit (its pidfd is watched) counts: it can be
 * neither started again nor deleted, or that QEMU would be lost.
 */
int
vm_is_active(const struct vm *vm)
{
	return ((vm->state != VM_STOPPED && vm->state != VM_CRASHED) ||
	    vm->pidfd != -1);
}

static struct vm *
vm_alloc(void)
{
	struct vm	*vm;

	vm = xcalloc(1, sizeof *vm);
	vm->pidfd = -1;
	vm->pid = -1;
	vm->spice_clients = json_array();
	TAILQ_INIT(&vm->waiters);
	return (vm);
}

static void
vm_free(struct vm *vm)
{
	vm_def_clear(&vm->def);
	free(vm->reason);
	free(vm->exit_reason);
	json_decref(vm->spice_clients);
	json_decref(vm->last_io_error);
	if (vm->stop_timer != NULL)
		event_free(vm->stop_timer);
	if (vm->restart_timer != NULL)
		event_free(vm->restart_timer);
	free(vm);
}

/* The record in LMDB: the definition plus the last known run state. */
json_t *
vm_record(const struct vm *vm)
{
	return (json_pack("{s:o,s:s,s:s?}", "def", vm_def_to_json(&vm->def),
	    "state", vm_state_name(vm->state), "reason", vm->reason));
}

/* Write the VM's record with put (db_put, or db_put_nosync). */
static int
vm_write(struct vm *vm, int (*put)(struct db *, const char *, const char *,
    const json_t *, char **), char **cause)
{
	json_t	*rec;
	int	 rc;

	rec = vm_record(vm);
	rc = put(qmpd->db, DB_VMS, vm->def.name, rec, cause);
	json_decref(rec);
	return (rc);
}

int
vm_save(struct vm *vm, char **cause)
{
	return (vm_write(vm, db_put, cause));
}

/*
 * Run state only: not synced to disk. It survives kill -9 of qmpd (the
 * page cache holds it); after a host crash no QEMU is left to describe.
 */
static int
vm_save_state(struct vm *vm, char **cause)
{
	return (vm_write(vm, db_put_nosync, cause));
}

json_t *
vm_to_json(const struct vm *vm)
{
	json_t	*j;

	j = vm_def_to_json(&vm->def);
	json_object_set_new(j, "state", json_string(vm_state_name(vm->state)));
	json_object_set_new(j, "reason", vm->reason != NULL ?
	    json_string(vm->reason) : json_null());
	json_object_set_new(j, "pid", vm->pid > 0 ? json_integer(vm->pid) :
	    json_null());
	json_object_set_new(j, "accel_used", vm->accel_used[0] != '\0' &&
	    vm_is_active(vm) ? json_string(vm->accel_used) : json_null());
	json_object_set_new(j, "started", vm->started != 0 && vm_is_active(vm)
	    ? json_integer(vm->started) : json_null());
	if (strcmp(vm->def.display, "spice") == 0)
		json_object_set_new(j, "spice", json_pack("{s:s,s:i,s:b}",
		    "host", vm->def.listen, "port", vm->def.spice_port, "tls",
		    vm_is_active(vm) ? vm->spice_tls : spice_tls_dir() != NULL));
	else
		json_object_set_new(j, "spice", json_null());
	json_object_set(j, "spice_clients", vm->spice_clients);
	if (vm->last_io_error != NULL)
		json_object_set(j, "io_error", vm->last_io_error);
	vm_net_json(vm, j);
	return (j);
}

/* Every state change is saved, broadcast, and checked against waiters. */
void
vm_set_state(struct vm *vm, enum vm_state state, const char *reason)
{
	char	*cause = NULL;
	json_t	*fields;

	if (vm->state == state && (reason == NULL || (vm->reason != NULL &&
	    strcmp(reason, vm->reason) == 0)))
		return;
	log_info("%s: %s -> %s%s%s", vm->def.name, vm_state_name(vm->state),
	    vm_state_name(state), reason != NULL ? ": " : "",
	    reason != NULL ? reason : "");
	vm->state = state;
	free(vm->reason);
	vm->reason = reason != NULL ? xstrdup(reason) : NULL;
	if (vm_save_state(vm, &cause) != 0) {
		log_warnx("%s: %s", vm->def.name, cause);
		free(cause);
	}
	fields = json_pack("{s:s,s:s?,s:o}", "state", vm_state_name(state),
	    "reason", reason, "pid", vm->pid > 0 ? json_integer(vm->pid) :
	    json_null());
	server_event("vm.state", vm->def.name, fields);
	json_decref(fields);
	vm_wait_notify(vm);
}

static int
vm_port_taken(int port, const struct vm *self)
{
	struct vm	*vm;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (vm != self && vm->def.spice_port == port)
			return (1);
	}
	return (0);
}

/* Can a listener bind this address and port right now? */
static int
vm_port_free(const char *addr, int port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 len;
	int			 fd, ok, one = 1;

	memset(&ss, 0, sizeof ss);
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		len = sizeof *sin;
	} else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		len = sizeof *sin6;
	} else
		return (0);
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return (0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return (ok);
}

/* The lowest SPICE port no other VM holds and nothing else listens on. */
static int
vm_port_alloc(struct vm *vm, char **cause)
{
	int	port;

	for (port = VM_SPICE_PORT_BASE; port <= VM_SPICE_PORT_LAST; port++) {
		if (!vm_port_taken(port, vm) &&
		    vm_port_free(vm->def.listen, port)) {
			vm->def.spice_port = port;
			return (0);
		}
	}
	xasprintf(cause, "no free SPICE port between %d and %d",
	    VM_SPICE_PORT_BASE, VM_SPICE_PORT_LAST);
	return (-1);
}

static void
vm_uuid(char *out)
{
	FILE	*f;

	if ((f = fopen("/proc/sys/kernel/random/uuid", "r")) == NULL ||
	    fgets(out, VM_UUID_LEN, f) == NULL)
		fatal("cannot read a uuid");
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

static int
vm_check_file(const char *what, const char *path, char **cause)
{
	struct stat	sb;

	if (path == NULL)
		return (0);
	if (stat(path, &sb) == -1) {
		xasprintf(cause, "%s %s: %s", what, path, strerror(errno));
		return (-1);
	}
	if (!S_ISREG(sb.st_mode)) {
		xasprintf(cause, "%s %s is not a regular file", what, path);
		return (-1);
	}
	return (0);
}

struct vm *
vm_create(json_t *args, char **cause)
{
	struct vm	*vm;
	const char	*name;
	int		 disk_made = 0;

	name = json_string_value(json_object_get(args, "name"));
	if (name != NULL && vm_find(name) != NULL) {
		xasprintf(cause, "a VM named %s already exists", name);
		return (NULL);
	}
	vm = vm_alloc();
	if (vm_def_from_json(&vm->def, args, cause) != 0)
		goto fail;
	if (vm->def.kernel == NULL && vm->def.disk == NULL &&
	    json_object_get(vm->def.extra, "from") == NULL) {
		xasprintf(cause, "VM %s needs something to boot: give --kernel, "
		    "--disk or --from", vm->def.name);
		goto fail;
	}
	if (vm_check_file("kernel", vm->def.kernel, cause) != 0 ||
	    vm_check_file("initrd", vm->def.initrd, cause) != 0 ||
	    vm_check_file("disk", vm->def.disk, cause) != 0 ||
	    vm_spawn_disk_unshared(vm, cause) != 0)
		goto fail;
	if (strcmp(vm->def.accel, "kvm") == 0 && !qmpd->kvm_ok) {
		xasprintf(cause, "accel kvm asked for, but /dev/kvm cannot "
		    "create a VM on this host: use --accel tcg or auto");
		goto fail;
	}
	vm_uuid(vm->def.uuid);
	vm->def.created = time(NULL);
	if (strcmp(vm->def.display, "spice") == 0 &&
	    vm_port_alloc(vm, cause) != 0)
		goto fail;
	vm->state = VM_STOPPED;
	if (vm_disk_create(vm, cause) != 0)
		goto fail;
	disk_made = 1;
	/* Saved with its NICs' addresses, leased in the same transaction. */
	if (vm_net_create(vm, cause) != 0)
		goto fail;
	TAILQ_INSERT_TAIL(&vms, vm, entry);
	log_info("%s: created", vm->def.name);
	return (vm);
fail:
	if (disk_made)
		vm_disk_delete(vm);
	vm_free(vm);
	return (NULL);
}

int
vm_delete(struct vm *vm, char **cause)
{
	struct db_txn	*t;

	if (vm_is_active(vm)) {
		xasprintf(cause, "VM %s is %s: stop it first", vm->def.name,
		    vm_state_name(vm->state));
		return (-1);
	}
	/* The record and its NICs' leases go together, or neither. */
	if ((t = db_begin(qmpd->db, cause)) == NULL)
		return (-1);
	if (db_txn_del(t, DB_VMS, vm->def.name, cause) < 0 ||
	    netctl_ipam_release_vm_txn(net_ipam, t, vm->def.name, cause) < 0) {
		db_abort(t);
		return (-1);
	}
	if (db_commit(t, cause) != 0)
		return (-1);
	vm_net_deleted(vm);
	vm_disk_delete(vm);
	/* The runtime dir holds only what QEMU made; remove it. */
	vm_rundir_remove(vm);
	vm_uid_free(vm->def.name);
	vm_wait_fail_all(vm, ERR_NOTFOUND, "the VM was deleted");
	TAILQ_REMOVE(&vms, vm, entry);
	log_info("%s: deleted", vm->def.name);
	server_event("vm.deleted", vm->def.name, NULL);
	vm_free(vm);
	return (0);
}

static void
vm_pidfd_cb(evutil_socket_t fd, short events, void *arg)
{
	vm_exited(arg);
}

/* Watch a QEMU process through its pidfd. */
static int
vm_watch(struct vm *vm, pid_t pid, char **cause)
{
	vm->pidfd = vm_pidfd_open(pid);
	if (vm->pidfd == -1) {
		xasprintf(cause, "pidfd_open %ld: %s", (long)pid,
		    strerror(errno));
		return (-1);
	}
	fcntl(vm->pidfd, F_SETFD, FD_CLOEXEC);
	vm->pid = pid;
	vm->pidfd_ev = event_new(qmpd->base, vm->pidfd, EV_READ, vm_pidfd_cb,
	    vm);
	event_add(vm->pidfd_ev, NULL);
	return (0);
}

/* A listening unix socket at path for QEMU's monitor. */
static int
vm_qmp_listen(const char *path, char **cause)
{
	return (sock_unix_listen(path, 0, 4, cause));
}

static const char *
vm_resolve_accel(struct vm *vm, char **cause)
{
	if (strcmp(vm->def.accel, "tcg") == 0)
		return ("tcg");
	if (qmpd->kvm_ok)
		return ("kvm");
	if (strcmp(vm->def.accel, "kvm") == 0) {
		xasprintf(cause, "VM %s wants kvm, but /dev/kvm cannot create "
		    "a VM on this host", vm->def.name);
		return (NULL);
	}
	return ("tcg");
}

/*
 * Every fd QEMU inherits, as the argv names them: the QMP socket, the
 * plain disk, each link of an image-store disk, each TAP.
 */
static int *
vm_start_fds(const struct vm_runtime_paths *rt, int *n)
{
	int	*fds;
	u_int	 i;

	fds = xcalloc(2 + (rt->image != NULL ? rt->image->n : 0) +
	    (rt->ntap_fds > 0 ? rt->ntap_fds : 0), sizeof *fds);
	*n = 0;
	fds[(*n)++] = rt->qmp_fd;
	if (rt->disk_fd != -1)
		fds[(*n)++] = rt->disk_fd;
	for (i = 0; rt->image != NULL && i < rt->image->n; i++)
		fds[(*n)++] = rt->image->links[i].fd;
	for (i = 0; rt->ntap_fds > 0 && i < (u_int)rt->ntap_fds; i++)
		fds[(*n)++] = rt->tap_fds[i];
	return (fds);
}

int
vm_start(struct vm *vm, char **cause)
{
	struct vm_runtime_paths	 rt;
	struct vm_disk		*image = NULL;
	char			*dir = NULL, *path = NULL, **argv = NULL;
	const char		*accel;
	int			 lfd = -1, cfd = -1, dfd = -1, *keep = NULL;
	int			 cerr = 0;
	int			 nkeep;
	pid_t			 pid;

	if (vm->pidfd != -1 && !(vm->state != VM_STOPPED &&
	    vm->state != VM_CRASHED)) {
		xasprintf(cause, "VM %s is %s but its QEMU (pid %ld) has not "
		    "exited yet: start it once it is gone", vm->def.name,
		    vm_state_name(vm->state), (long)vm->pid);
		return (-1);
	}
	if (vm_is_active(vm)) {
		xasprintf(cause, "VM %s is already %s", vm->def.name,
		    vm_state_name(vm->state));
		return (-1);
	}
	if ((accel = vm_resolve_accel(vm, cause)) == NULL)
		return (-1);
	if (vm_check_file("kernel", vm->def.kernel, cause) != 0 ||
	    vm_check_file("initrd", vm->def.initrd, cause) != 0 ||
	    vm_check_file("disk", vm->def.disk, cause) != 0 ||
	    vm_spawn_disk_unshared(vm, cause) != 0)
		return (-1);
	/* Another process may have taken the port since create. */
	if (strcmp(vm->def.display, "spice") == 0 &&
	    !vm_port_free(vm->def.listen, vm->def.spice_port) &&
	    vm_port_alloc(vm, cause) != 0)
		return (-1);
	if (vm_rundir(vm, &dir, cause) != 0)
		return (-1);

	/* From here onward, all failures need cleanup and use goto fail. */
	xasprintf(&path, "%s/qemu.pid", dir);
	unlink(path);
	free(path);
	xasprintf(&path, "%s/qmp.sock", dir);
	if ((lfd = vm_qmp_listen(path, cause)) == -1)
		goto fail;
	if (vm->def.disk != NULL &&
	    (dfd = open(vm->def.disk, O_RDWR | O_CLOEXEC)) == -1) {
		xasprintf(cause, "disk %s: %s", vm->def.disk, strerror(errno));
		goto fail;
	}
	if (dfd != -1 && vm_spawn_private(vm, dfd, vm->def.disk, cause) != 0)
		goto fail;
	if (vm_disk_open(vm, &image, cause) != 0)
		goto fail;
	rt.image = image;
	rt.dir = dir;
	rt.qmp_fd = lfd;
	rt.disk_fd = dfd;
	rt.accel = accel;
	if ((rt.spice_tls_dir = spice_tls_issue(vm, cause)) == NULL)
		goto fail;
	vm->spice_tls = 1;
	if (vm_net_open(vm, &rt, cause) != 0)
		goto fail;
	argv = vm_argv_build(&vm->def, &rt, qmpd->qemu_binary, cause);
	if (argv == NULL)
		goto fail;
	keep = vm_start_fds(&rt, &nkeep);
	if ((pid = vm_spawn(vm, argv, keep, nkeep, cause)) == -1)
		goto fail;
	/*
	 * Connect while qmpd still holds the listening socket too: the
	 * backlog keeps the connection until QEMU accepts it, and a QEMU
	 * that dies at once gives EOF (its log says why), not a refusal.
	 */
	cfd = qmp_connect_unix(path);
	cerr = errno;
	vm_net_opened(vm, 1);
	vm_disk_free(image);
	image = NULL;
	close(lfd);
	lfd = -1;
	if (dfd != -1) {
		close(dfd);
		dfd = -1;
	}
	vm->is_child = 1;
	vm->stop_asked = 0;
	vm->guest_shutdown = 0;
	free(vm->exit_reason);
	vm->exit_reason = NULL;
	json_array_clear(vm->spice_clients);
	strlcpy(vm->accel_used, accel, sizeof vm->accel_used);
	vm->started = time(NULL);
	if (vm_watch(vm, pid, cause) != 0) {
		kill(pid, SIGKILL);
		if (cfd != -1)
			close(cfd);
		goto fail;
	}
	vm_set_state(vm, VM_STARTING, NULL);
	if (cfd == -1 || vm_qmp_attach(vm, cfd, 1, cause) != 0) {
		char *why;

		if (cfd == -1)
			xasprintf(cause, "connect to %s: %s", path,
			    strerror(cerr));
		else
			close(cfd);
		/* Crashed, with why; the QEMU goes, its exit is still seen. */
		xasprintf(&why, "QMP attach failed: %s", *cause != NULL ?
		    *cause : "no reason given");
		log_warnx("%s: %s", vm->def.name, why);
		vm_set_state(vm, VM_CRASHED, why);
		free(why);
		free(*cause);
		*cause = NULL;
		vm_pidfd_signal(vm, SIGKILL);
		goto out_started;
	}
	log_info("%s: QEMU pid %ld (%s)", vm->def.name, (long)pid, accel);
out_started:
	free(keep);
	vm_argv_free(argv);
	free(path);
	free(dir);
	return (0);
fail:
	vm_net_opened(vm, 0);
	vm_disk_free(image);
	free(keep);
	if (lfd != -1)
		close(lfd);
	if (dfd != -1)
		close(dfd);
	vm_argv_free(argv);
	free(path);
	free(dir);
	return (-1);
}

static void
vm_stop_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;
	struct timeval	 tv = { VM_QUIT_GRACE_MS / 1000, 0 };

	if (vm->pidfd == -1)
		return;
	if (vm->qmp != NULL && vm->stop_asked == 1) {
		/* The guest ignored the power button: pull the plug. */
		log_info("%s: no clean shutdown in time, quitting QEMU",
		    vm->def.name);
		vm->stop_asked = 2;
		qmp_execute(vm->qmp, "quit", NULL, NULL, NULL);
		evtimer_add(vm->stop_timer, &tv);
		return;
	}
	log_warnx("%s: QEMU did not quit, killing it", vm->def.name);
	vm_pidfd_signal(vm, SIGKILL);
}

static void
vm_arm_stop_timer(struct vm *vm, int seconds)
{
	struct timeval	tv = { seconds, 0 };

	if (vm->stop_timer == NULL)
		vm->stop_timer = evtimer_new(qmpd->base, vm_stop_timer_cb, vm);
	evtimer_add(vm->stop_timer, &tv);
}

/*
 * Stop: ACPI power button, then "quit" after timeout seconds; with force,
 * "quit" at once. A paused guest cannot see the button, so it is quit.
 */
int
vm_stop(struct vm *vm, int force, int timeout, char **cause)
{
	if (!vm_is_active(vm)) {
		xasprintf(cause, "VM %s is not running (%s)", vm->def.name,
		    vm_state_name(vm->state));
		return (-1);
	}
	if (vm->qmp == NULL || qmp_get_state(vm->qmp) != QMP_READY)
		force = 1;
	if (vm->state == VM_PAUSED || vm->state == VM_STARTING)
		force = 1;
	if (force) {
		vm->stop_asked = 2;
		if (vm->qmp == NULL || qmp_execute(vm->qmp, "quit", NULL,
		    NULL, NULL) != 0)
			vm_pidfd_signal(vm, SIGKILL);
		vm_arm_stop_timer(vm, VM_QUIT_GRACE_MS / 1000);
	} else {
		vm->stop_asked = 1;
		qmp_execute(vm->qmp, "system_powerdown", NULL, NULL, NULL);
		vm_arm_stop_timer(vm, timeout);
	}
	vm_set_state(vm, VM_STOPPING, force ? "quit by admin" :
	    "ACPI power-down by admin");
	return (0);
}

int
vm_kill(struct vm *vm, char **cause)
{
	if (vm->pidfd == -1) {
		xasprintf(cause, "VM %s has no QEMU process", vm->def.name);
		return (-1);
	}
	vm->stop_asked = 3;
	if (vm_pidfd_signal(vm, SIGKILL) == -1 && errno != ESRCH) {
		xasprintf(cause, "kill QEMU of %s: %s", vm->def.name,
		    strerror(errno));
		return (-1);
	}
	return (0);
}

static char *
vm_signal_reason(int sig)
{
	char	*s;

	xasprintf(&s, "QEMU killed by signal %d (%s)", sig, strsignal(sig));
	return (s);
}

/* Why a QEMU we did not ask to go went: its status, if it was ours. */
static char *
vm_exit_reason(struct vm *vm)
{
	int	 status;
	pid_t	 rc;

	if (vm->exit_reason != NULL)
		return (xstrdup(vm->exit_reason));
	do
		rc = waitpid(vm->pid, &status, WNOHANG);
	while (rc == -1 && errno == EINTR);
	if (rc == vm->pid) {
		if (WIFSIGNALED(status))
			return (vm_signal_reason(WTERMSIG(status)));
		if (WIFEXITED(status)) {
			char *s;

			xasprintf(&s, "QEMU exited with status %d",
			    WEXITSTATUS(status));
			return (s);
		}
	}
	return (xstrdup("QEMU exited unexpectedly"));
}

/* SIGCHLD reaped a QEMU before its pidfd fired: keep its status. */
void
vm_reaped(pid_t pid, int status)
{
	struct vm	*vm;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (vm->pid != pid)
			continue;
		free(vm->exit_reason);
		if (WIFSIGNALED(status))
			vm->exit_reason = vm_signal_reason(WTERMSIG(status));
		else
			xasprintf(&vm->exit_reason, "QEMU exited with status "
			    "%d", WEXITSTATUS(status));
		return;
	}
}

static void
vm_cleanup_runtime(struct vm *vm)
{
	char	*p;

	xasprintf(&p, "%s/vms/%s/qemu.pid", qmpd->state_dir, vm->def.name);
	unlink(p);
	free(p);
	xasprintf(&p, "%s/vms/%s/qmp.sock", qmpd->state_dir, vm->def.name);
	unlink(p);
	free(p);
	xasprintf(&p, "%s/vms/%s/serial.sock", qmpd->state_dir, vm->def.name);
	unlink(p);
	free(p);
}

/* The last line QEMU wrote to its log: why it refused to start. */
static char *
vm_qemu_log_tail(struct vm *vm)
{
	char	 line[512], last[512] = "", *cause = NULL;
	FILE	*f;
	int	 fd;

	if ((fd = vm_rundir_open(vm, "qemu.log", O_RDONLY, &cause)) == -1 ||
	    (f = fdopen(fd, "r")) == NULL) {
		if (fd != -1)
			close(fd);
		if (cause != NULL)
			log_warnx("%s: %s", vm->def.name, cause);
		free(cause);
		return (NULL);
	}
	while (fgets(line, sizeof line, f) != NULL)
		if (line[0] != '\n')
			strlcpy(last, line, sizeof last);
	fclose(f);
	last[strcspn(last, "\n")] = '\0';
	if (last[0] == '\0')
		return (NULL);
	return (xstrdup(last));
}

/* QEMU is gone: decide stopped or crashed, and maybe restart. */
static void
vm_exited(struct vm *vm)
{
	char		*why, *reason = NULL;
	enum vm_state	 next;

	why = vm_exit_reason(vm);
	if (vm->pidfd_ev != NULL) {
		event_free(vm->pidfd_ev);
		vm->pidfd_ev = NULL;
	}
	if (vm->pidfd != -1) {
		close(vm->pidfd);
		vm->pidfd = -1;
	}
	if (vm->stop_timer != NULL)
		evtimer_del(vm->stop_timer);
	if (vm->qmp != NULL) {
		struct qmp *q = vm->qmp;

		vm->qmp = NULL;
		qmp_free(q);
	}
	vm->pid = -1;
	vm->is_child = 0;
	vm_cleanup_runtime(vm);
	vm_net_stopped(vm);

	if (vm->stop_asked == 3) {
		next = VM_STOPPED;
		reason = xstrdup("killed by admin");
	} else if (vm->stop_asked != 0) {
		next = VM_STOPPED;
		reason = xstrdup(vm->guest_shutdown ? "guest powered off" :
		    "quit by admin");
	} else if (vm->guest_shutdown) {
		next = VM_STOPPED;
		reason = xstrdup("guest powered off");
	} else if (vm->state == VM_CRASHED && vm->reason != NULL) {
		next = VM_CRASHED;
		reason = xstrdup(vm->reason);
	} else if (vm->state == VM_STARTING &&
	    (reason = vm_qemu_log_tail(vm)) != NULL) {
		next = VM_CRASHED;
	} else {
		next = VM_CRASHED;
		reason = xstrdup(why);
	}
	free(why);
	free(vm->exit_reason);
	vm->exit_reason = NULL;
	vm_set_state(vm, next, reason);
	free(reason);
	if (vm->stop_asked == 0)
		vm_restart_maybe(vm);
	vm->stop_asked = 0;
}

static void
vm_restart_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;
	char		*cause = NULL;

	if (vm_is_active(vm))
		return;
	log_info("%s: restarting (policy %s)", vm->def.name,
	    vm_restart_name(vm->def.restart));
	if (vm_start(vm, &cause) != 0) {
		log_warnx("%s: restart failed: %s", vm->def.name, cause);
		vm_set_state(vm, VM_CRASHED, cause);
		free(cause);
	}
}

/* Restart policy, rate limited: at most 5 restarts a minute. */
static void
vm_restart_maybe(struct vm *vm)
{
	struct timeval	tv = { 0, VM_RESTART_DELAY_MS * 1000 };
	time_t		now = time(NULL);
	size_t		i, recent = 0;

	if (vm->def.restart == VM_RESTART_NO)
		return;
	if (vm->state != VM_CRASHED && vm->def.restart != VM_RESTART_ALWAYS)
		return;
	for (i = 0; i < nitems(vm->restarts); i++)
		if (vm->restarts[i] != 0 &&
		    now - vm->restarts[i] < VM_RESTART_WINDOW)
			recent++;
	if (recent >= nitems(vm->restarts)) {
		char *r;

		xasprintf(&r, "%s; not restarted: %zu restarts in the last "
		    "%d s", vm->reason ? vm->reason : "crashed", recent,
		    VM_RESTART_WINDOW);
		vm_set_state(vm, vm->state, r);
		free(r);
		return;
	}
	memmove(vm->restarts + 1, vm->restarts,
	    sizeof vm->restarts - sizeof vm->restarts[0]);
	vm->restarts[0] = now;
	if (vm->restart_timer == NULL)
		vm->restart_timer = evtimer_new(qmpd->base, vm_restart_cb, vm);
	evtimer_add(vm->restart_timer, &tv);
}

/* Load every definition from LMDB; runtime state is settled by reattach. */
static int
vm_load_one(const char *key, json_t *rec, void *arg)
{
	struct vm	*vm;
	char		*cause = NULL;
	const char	*state;

	vm = vm_alloc();
	if (vm_def_from_json(&vm->def, json_object_get(rec, "def"),
	    &cause) != 0) {
		log_warnx("VM record %s is unreadable, skipped: %s", key,
		    cause);
		free(cause);
		vm_free(vm);
		return (0);
	}
	state = json_string_value(json_object_get(rec, "state"));
	if (state == NULL || vm_state_from_name(state, &vm->state) != 0)
		vm->state = VM_STOPPED;
	if (json_is_string(json_object_get(rec, "reason")))
		vm->reason = xstrdup(json_string_value(json_object_get(rec,
		    "reason")));
	TAILQ_INSERT_TAIL(&vms, vm, entry);
	return (0);
}

int
vm_load_all(char **cause)
{
	int	n;

	if ((n = db_foreach(qmpd->db, DB_VMS, vm_load_one, NULL, cause)) < 0)
		return (-1);
	log_info("%d VM definitions loaded", n);
	return (0);
}

/* Does /proc/PID/cmdline belong to this VM's QEMU? */
static int
vm_cmdline_matches(struct vm *vm, pid_t pid)
{
	char	 path[64], buf[8192], want[128];
	ssize_t	 n, i;
	int	 fd, name_ok = 0, uuid_ok = 0, tls = 0;
	char	*p;

	snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (0);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return (0);
	buf[n] = '\0';
	snprintf(want, sizeof want, "guest=%s,debug-threads=on",
	    vm->def.name);
	for (i = 0; i < n; i += strlen(p) + 1) {
		p = buf + i;
		if (strcmp(p, want) == 0)
			name_ok = 1;
		if (strcmp(p, vm->def.uuid) == 0)
			uuid_ok = 1;
		if (strncmp(p, "tls-port=", 9) == 0)
			tls = 1;
	}
	if (name_ok && uuid_ok)
		vm->spice_tls = tls;
	return (name_ok && uuid_ok);
}

/*
 * This VM's QEMU without its pidfile: the process of the VM's own uid
 * whose command line names the VM (name and uuid). -1 if none.
 */
static pid_t
vm_find_qemu(struct vm *vm)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 sb;
	uid_t		 uid;
	pid_t		 pid, found = -1;

	if ((uid = vm_uid_lookup(vm->def.name)) == (uid_t)-1 ||
	    (d = opendir("/proc")) == NULL)
		return (-1);
	while (found == -1 && (de = readdir(d)) != NULL) {
		if ((pid = atoi(de->d_name)) <= 0 ||
		    fstatat(dirfd(d), de->d_name, &sb, 0) == -1 ||
		    sb.st_uid != uid)
			continue;
		if (vm_cmdline_matches(vm, pid))
			found = pid;
	}
	closedir(d);
	return (found);
}

/* Find this VM's QEMU from a previous qmpd, and attach to it. */
static int
vm_reattach(struct vm *vm, char **cause)
{
	char	*path, *text, *end;
	long	 pid = -1;
	int	 fd;

	/* Written by QEMU, in a dir its uid owns: read without trusting it. */
	if ((text = vm_rundir_read(vm, "qemu.pid", 32, cause)) != NULL) {
		pid = strtol(text, &end, 10);
		if (end == text || (*end != '\0' && *end != '\n'))
			pid = -1;
		free(text);
	}
	if (pid <= 0 || !vm_cmdline_matches(vm, pid) ||
	    !vm_uid_matches(vm, pid, NULL)) {
		/* A lost or false pidfile must not lose a live QEMU. */
		if ((pid = vm_find_qemu(vm)) <= 0) {
			if (*cause == NULL)
				xasprintf(cause, "QEMU exited while qmpd was "
				    "not running");
			return (-1);
		}
		if (*cause != NULL)
			log_warnx("%s: %s; found its QEMU as pid %ld all the "
			    "same", vm->def.name, *cause, pid);
		free(*cause);
		*cause = NULL;
	}
	if (vm_watch(vm, pid, cause) != 0)
		return (-1);
	xasprintf(&path, "%s/vms/%s/qmp.sock", qmpd->state_dir, vm->def.name);
	fd = qmp_connect_unix(path);
	free(path);
	if (fd == -1 || vm_qmp_attach(vm, fd, 0, cause) != 0) {
		if (fd != -1)
			close(fd);
		if (*cause == NULL)
			xasprintf(cause, "cannot reach the QMP socket of "
			    "pid %ld", pid);
		return (-1);
	}
	log_info("%s: re-attached to QEMU pid %ld", vm->def.name, pid);
	return (0);
}

void
vm_reattach_all(void)
{
	struct vm	*vm;
	char		*cause;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (!vm_is_active(vm))
			continue;
		cause = NULL;
		if (vm_reattach(vm, &cause) == 0) {
			free(cause);
			continue;
		}
		log_warnx("%s: %s", vm->def.name, cause);
		/* Alive but unreachable: it goes, and its exit is seen. */
		if (vm->pidfd != -1 && vm_pidfd_signal(vm, SIGKILL) == 0) {
			vm_set_state(vm, VM_CRASHED, cause);
			free(cause);
			continue;
		}
		/* It was running when qmpd went away, and is gone now. */
		if (vm->pidfd_ev != NULL) {
			event_free(vm->pidfd_ev);
			vm->pidfd_ev = NULL;
		}
		if (vm->pidfd != -1)
			close(vm->pidfd);
		vm->pidfd = -1;
		vm->pid = -1;
		vm_cleanup_runtime(vm);
		vm_set_state(vm, vm->state == VM_STOPPING ? VM_STOPPED :
		    VM_CRASHED, cause);
		free(cause);
		if (vm->state == VM_CRASHED)
			vm_restart_maybe(vm);
	}
}

static void
vm_autostart_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm;
	char		*cause = NULL;
	char		*name = arg;

	if ((vm = vm_find(name)) != NULL && !vm_is_active(vm)) {
		if (boot_queue_start(vm, NULL, 0, &cause) != 0) {
			log_warnx("%s: autostart failed: %s", name, cause);
			free(cause);
		}
	}
	free(name);
}

/* Autostart VMs are started staggered, so a host boot is no storm. */
void
vm_autostart_all(void)
{
	struct vm	*vm;
	int		 n = 0;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (!vm->def.autostart || vm_is_active(vm))
			continue;
		/* 250 ms apart; tv_usec must stay below a second. */
		event_base_once(qmpd->base, -1, EV_TIMEOUT, vm_autostart_cb,
		    xstrdup(vm->def.name), &(struct timeval){ n / 4,
		    (n % 4) * 250000 });
		n++;
	}
}

/* Daemon exit: drop every QMP connection, leave every QEMU running. */
void
vm_shutdown_all(void)
{
	struct vm	*vm;

	TAILQ_FOREACH(vm, &vms, entry) {
		vm_wait_fail_all(vm, ERR_INTERNAL, "qmpd is shutting down");
		if (vm->qmp != NULL) {
			struct qmp *q = vm->qmp;

			vm->qmp = NULL;
			qmp_free(q);
		}
	}
}
