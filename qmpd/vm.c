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

#include "cluster.h"
#include "img.h"
#include "log.h"
#include "net.h"
#include "qmp.h"
#include "qmpd.h"
#include "sock.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_SPICE_PORT_BASE	5900	/* the default --spice-ports */
#define VM_SPICE_PORT_LAST	6899
#define VM_QUIT_GRACE_MS	5000	/* after "quit", SIGKILL */

struct vms	vms = TAILQ_HEAD_INITIALIZER(vms);

static int	vm_spice_first = VM_SPICE_PORT_BASE;
static int	vm_spice_last = VM_SPICE_PORT_LAST;


static int
vm_pidfd_open(pid_t pid)
{
	return (syscall(SYS_pidfd_open, pid, 0));
}

int
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

struct vm *
vm_alloc(void)
{
	struct vm	*vm;

	vm = xcalloc(1, sizeof *vm);
	vm->pidfd = -1;
	vm->pid = -1;
	vm->tpm_pidfd = -1;
	vm->tpm_pid = -1;
	vm->spice_clients = json_array();
	TAILQ_INIT(&vm->waiters);
	return (vm);
}

void
vm_free(struct vm *vm)
{
	vm_agent_free(vm);
	vm_migrate_free(vm);
	vm_def_clear(&vm->def);
	free(vm->reason);
	free(vm->exit_reason);
	free(vm->tpm_status);
	if (vm->tpm_ev != NULL)
		event_free(vm->tpm_ev);
	if (vm->tpm_pidfd != -1)
		close(vm->tpm_pidfd);
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
	return (json_pack("{s:o,s:s,s:s?,s:o*}", "def",
	    vm_def_to_json(&vm->def), "state", vm_state_name(vm->state),
	    "reason", vm->reason, "viewer", spice_via_record(vm)));
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
 * Set a string field of vm's definition (value copied; NULL clears it)
 * and save the definition; on failure the field is left as it was.
 */
int
vm_set_field(struct vm *vm, char **field, const char *value, char **cause)
{
	char	*old = *field;

	*field = value != NULL ? xstrdup(value) : NULL;
	if (vm_save(vm, cause) != 0) {
		free(*field);
		*field = old;
		return (-1);
	}
	free(old);
	return (0);
}

/* The same for a flag of the definition. */
int
vm_set_flag(struct vm *vm, int *flag, int value, char **cause)
{
	int	old = *flag;

	*flag = value;
	if (vm_save(vm, cause) != 0) {
		*flag = old;
		return (-1);
	}
	return (0);
}

/*
 * Run state only: not synced to disk. It survives kill -9 of qmpd (the
 * page cache holds it); after a host crash no QEMU is left to describe.
 */
int
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
		    "host", vm_spice_addr(vm), "port", vm->def.spice_port, "tls",
		    vm_is_active(vm) ? vm->spice_tls : spice_tls_dir() != NULL));
	else
		json_object_set_new(j, "spice", json_null());
	json_object_set(j, "spice_clients", vm->spice_clients);
	if (vm->last_io_error != NULL)
		json_object_set(j, "io_error", vm->last_io_error);
	vm_net_json(vm, j);
	vm_agent_json(vm, j);
	vm_migrate_json(vm, j);
	if (qmpd->cluster != NULL)
		json_object_set_new(j, "host", json_string(
		    cluster_place_host(vm->def.name) != NULL ?
		    cluster_place_host(vm->def.name) : qmpd->cluster->name));
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
	notify_emit("vm.state", vm->def.name, fields);
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

/*
 * Take --spice-ports FIRST-LAST. A port found free is bound by QEMU only
 * later, so two qmpds of one host (a migration target beside its source,
 * tests side by side) that share a range can both hand out the same port
 * and one QEMU fails to start: give each its own.
 */
int
vm_port_range(const char *spec, char **cause)
{
	char	*end;
	long	 first, last;

	errno = 0;
	first = strtol(spec, &end, 10);
	if (end == spec || *end != '-' || errno != 0)
		goto bad;
	last = strtol(end + 1, &end, 10);
	if (*end != '\0' || errno != 0 || first < 1024 || last < first ||
	    last > 65535)
		goto bad;
	vm_spice_first = first;
	vm_spice_last = last;
	return (0);
bad:
	xasprintf(cause, "--spice-ports %s: want FIRST-LAST, 1024 <= FIRST "
	    "<= LAST <= 65535", spec);
	return (-1);
}

/* The lowest SPICE port no other VM holds and nothing else listens on. */
int
vm_port_alloc(struct vm *vm, char **cause)
{
	int	port;

	for (port = vm_spice_first; port <= vm_spice_last; port++) {
		if (!vm_port_taken(port, vm) &&
		    vm_port_free(vm_spice_addr(vm), port)) {
			vm->def.spice_port = port;
			return (0);
		}
	}
	xasprintf(cause, "no free SPICE port between %d and %d: widen "
	    "--spice-ports", vm_spice_first, vm_spice_last);
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
	    vm->def.from == NULL) {
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
	if (vm_firmware_create(vm, cause) != 0)
		goto fail;
	/* Saved with its NICs' addresses, leased in the same transaction. */
	if (vm_net_create(vm, cause) != 0)
		goto fail;
	TAILQ_INSERT_TAIL(&vms, vm, entry);
	log_info("%s: created", vm->def.name);
	return (vm);
fail:
	if (disk_made) {
		vm_disk_delete(vm);
		vm_firmware_delete(vm);
	}
	/* The NVRAM gave it a uid and a dir: no VM keeps them. */
	if (vm->def.name[0] != '\0' &&
	    vm_uid_lookup(vm->def.name) != (uid_t)-1) {
		vm_rundir_remove(vm);
		vm_uid_free(vm->def.name);
	}
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
	vm_firmware_delete(vm);
	vm_tpm_delete(vm);
	/* The runtime dir holds only what QEMU made; remove it. */
	vm_rundir_remove(vm);
	vm_uid_free(vm->def.name);
	vm_wait_fail_all(vm, ERR_NOTFOUND, "the VM was deleted");
	TAILQ_REMOVE(&vms, vm, entry);
	log_info("%s: deleted", vm->def.name);
	notify_emit("vm.deleted", vm->def.name, NULL);
	vm_free(vm);
	return (0);
}

static void
vm_pidfd_cb(evutil_socket_t fd, short events, void *arg)
{
	vm_exit_seen(arg);
}

/* Watch a QEMU process through its pidfd. */
int
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

/* Stop watching the VM's QEMU: its pidfd goes, and its pid. */
void
vm_unwatch(struct vm *vm)
{
	if (vm->pidfd_ev != NULL) {
		event_free(vm->pidfd_ev);
		vm->pidfd_ev = NULL;
	}
	if (vm->pidfd != -1) {
		close(vm->pidfd);
		vm->pidfd = -1;
	}
	vm->pid = -1;
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
 * plain disk, each link of an image-store disk, each TAP, the agent port.
 */
static int *
vm_start_fds(const struct vm_runtime_paths *rt, int *n)
{
	int	*fds;
	u_int	 i;

	fds = xcalloc(5 + (rt->image != NULL ? rt->image->n : 0) +
	    (rt->ntap_fds > 0 ? rt->ntap_fds : 0), sizeof *fds);
	*n = 0;
	fds[(*n)++] = rt->qmp_fd;
	if (rt->disk_fd != -1)
		fds[(*n)++] = rt->disk_fd;
	if (rt->nvram_fd != -1)
		fds[(*n)++] = rt->nvram_fd;
	if (rt->tpm_fd != -1)
		fds[(*n)++] = rt->tpm_fd;
	for (i = 0; rt->image != NULL && i < rt->image->n; i++)
		fds[(*n)++] = rt->image->links[i].fd;
	for (i = 0; rt->ntap_fds > 0 && i < (u_int)rt->ntap_fds; i++)
		fds[(*n)++] = rt->tap_fds[i];
	if (rt->agent_fd != -1)
		fds[(*n)++] = rt->agent_fd;
	return (fds);
}

/*
 * What a start needs before anything is opened: a VM that is not running
 * (and whose last QEMU is gone), its accelerator, its files, a free
 * SPICE port.
 */
static int
vm_start_check(struct vm *vm, const char **accel, char **cause)
{
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
	if ((*accel = vm_resolve_accel(vm, cause)) == NULL)
		return (-1);
	if (vm_check_file("kernel", vm->def.kernel, cause) != 0 ||
	    vm_check_file("initrd", vm->def.initrd, cause) != 0 ||
	    vm_check_file("disk", vm->def.disk, cause) != 0 ||
	    vm_spawn_disk_unshared(vm, cause) != 0)
		return (-1);
	/* Another process may have taken the port since create. */
	if (strcmp(vm->def.display, "spice") == 0 &&
	    !vm_port_free(vm_spice_addr(vm), vm->def.spice_port) &&
	    vm_port_alloc(vm, cause) != 0)
		return (-1);
	return (0);
}

/* A new QEMU runs: forget what the last run left. */
static void
vm_start_fresh(struct vm *vm, const char *accel)
{
	vm->is_child = 1;
	vm->stop_asked = 0;
	vm->guest_shutdown = 0;
	free(vm->exit_reason);
	vm->exit_reason = NULL;
	json_array_clear(vm->spice_clients);
	strlcpy(vm->accel_used, accel, sizeof vm->accel_used);
	vm->started = time(NULL);
}

/*
 * The new QEMU (pid) is starting: attach its QMP (cfd, or -1 and the
 * errno cerr of connecting to path). A failed attach leaves the VM
 * crashed, with why, and kills the QEMU, whose exit is still seen.
 */
static void
vm_start_qmp(struct vm *vm, pid_t pid, int cfd, int cerr, const char *path,
    const char *accel)
{
	char	*cause = NULL, *why;

	vm_set_state(vm, VM_STARTING, NULL);
	if (cfd != -1 && vm_qmp_attach(vm, cfd, 1, &cause) == 0) {
		log_info("%s: QEMU pid %ld (%s)", vm->def.name, (long)pid,
		    accel);
		return;
	}
	if (cfd == -1)
		xasprintf(&cause, "connect to %s: %s", path, strerror(cerr));
	else
		close(cfd);
	xasprintf(&why, "QMP attach failed: %s", cause != NULL ? cause :
	    "no reason given");
	log_warnx("%s: %s", vm->def.name, why);
	vm_set_state(vm, VM_CRASHED, why);
	free(why);
	free(cause);
	vm_pidfd_signal(vm, SIGKILL);
}

int
vm_start(struct vm *vm, char **cause)
{
	struct vm_runtime_paths	 rt;
	struct vm_disk		*image = NULL;
	char			*dir = NULL, *path = NULL, **argv = NULL;
	const char		*accel;
	int			 lfd = -1, cfd = -1, dfd = -1, *keep = NULL;
	int			 nvfd = -1, tpmfd = -1;
	int			 cerr = 0;
	int			 nkeep;
	pid_t			 pid;

	/*
	 * A VM that migrated here and ran is booted afresh: its finished
	 * record would start QEMU with -incoming and wait for a stream no
	 * source sends (a stop and start, a restart after a crash).
	 */
	if (vm->mig != NULL && vm->mig->incoming && !vm_migrate_busy(vm))
		vm_migrate_free(vm);
	if (vm_start_check(vm, &accel, cause) != 0 ||
	    vm_rundir(vm, &dir, cause) != 0)
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
	if (vm_firmware_open(vm, &nvfd, cause) != 0)
		goto fail;
	rt.nvram_fd = nvfd;
	if (vm_tpm_start(vm, &tpmfd, cause) != 0)
		goto fail;
	rt.tpm_fd = tpmfd;
	rt.image = image;
	rt.dir = dir;
	rt.qmp_fd = lfd;
	rt.disk_fd = dfd;
	rt.accel = accel;
	rt.incoming = vm->mig != NULL && vm->mig->incoming;
	rt.pins = rt.incoming ? vm->mig->pins : NULL;
	rt.spice_addr = vm_spice_addr(vm);
	if ((rt.spice_tls_dir = spice_tls_issue(vm, cause)) == NULL)
		goto fail;
	vm->spice_tls = 1;
	if (vm_net_open(vm, &rt, cause) != 0 ||
	    vm_agent_open(vm, &rt, cause) != 0)
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
	vm_agent_opened(vm, 1);
	vm_disk_free(image);
	image = NULL;
	close(lfd);
	lfd = -1;
	if (dfd != -1) {
		close(dfd);
		dfd = -1;
	}
	if (nvfd != -1) {
		close(nvfd);
		nvfd = -1;
	}
	if (tpmfd != -1) {
		close(tpmfd);
		tpmfd = -1;
	}
	vm_start_fresh(vm, accel);
	if (vm_watch(vm, pid, cause) != 0) {
		kill(pid, SIGKILL);
		if (cfd != -1)
			close(cfd);
		goto fail;
	}
	vm_start_qmp(vm, pid, cfd, cerr, path, accel);
	free(keep);
	vm_argv_free(argv);
	free(path);
	free(dir);
	return (0);
fail:
	vm_net_opened(vm, 0);
	vm_agent_opened(vm, 0);
	vm_disk_free(image);
	free(keep);
	if (lfd != -1)
		close(lfd);
	if (dfd != -1)
		close(dfd);
	if (nvfd != -1)
		close(nvfd);
	if (tpmfd != -1)
		close(tpmfd);
	vm_tpm_stop(vm);
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
	int		 rest;

	if (vm->pidfd == -1)
		return;
	/* With --agent, half-way: the agent's guest-shutdown first. */
	if (vm->qmp != NULL && vm->stop_asked == 1 &&
	    (rest = vm_agent_stop_fallback(vm)) > 0) {
		tv.tv_sec = rest;
		evtimer_add(vm->stop_timer, &tv);
		return;
	}
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
 * "quit" at once. With --agent, half-way the agent's guest-shutdown. A
 * paused guest cannot see the button, so it is quit.
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
		vm_arm_stop_timer(vm, vm_agent_stop_begin(vm, timeout));
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

/* Daemon exit: drop every QMP connection, leave every QEMU running. */
void
vm_shutdown_all(void)
{
	struct vm	*vm;

	TAILQ_FOREACH(vm, &vms, entry) {
		vm_wait_fail_all(vm, ERR_INTERNAL, "qmpd is shutting down");
		vm_agent_stopped(vm, 0);
		if (vm->qmp != NULL) {
			struct qmp *q = vm->qmp;

			vm->qmp = NULL;
			qmp_free(q);
		}
	}
}

/*
 * The address a VM's SPICE server listens on. A definition that says
 * nothing means loopback, which in a cluster no broker in another
 * namespace or on another machine can reach: there it is this host's
 * cluster address, chosen when QEMU starts on a host, so it stays right
 * after the desktop moves (failover, migration).
 */
const char *
vm_spice_addr(const struct vm *vm)
{
	if (qmpd->cluster != NULL && qmpd->cluster->addr != NULL &&
	    strcmp(vm->def.listen, "127.0.0.1") == 0)
		return (qmpd->cluster->addr);
	return (vm->def.listen);
}
