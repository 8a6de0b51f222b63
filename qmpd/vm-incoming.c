/*
 * Live migration, the target's side (issue 14). migrate.prepare makes the
 * VM here from the source's definition, with what is host-local made
 * afresh (SPICE port and certificate, the fds, with --storage copy an
 * empty disk of the same size), and starts its QEMU as the VM's own uid
 * with -incoming defer; then migrate-incoming on a port QEMU picks, and
 * with copy a writable NBD export of the new disk. The answer tells the
 * source where to send. On MIGRATION "completed" the target takes over
 * by itself: placement (vm_migrate_place), then cont; migrate.finish
 * tells the source how that went. A target that never ran is discarded
 * (vm_migrate_exited).
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cluster.h"
#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "vm-migrate.h"
#include "xmalloc.h"

#define VM_INCOMING_WAIT	3600	/* s, when the source set no timeout */

/*
 * The address QEMU's migration and NBD listeners bind: the cluster
 * file's "addr" (where other hosts reach this one), else loopback, for
 * two qmpds on one machine.
 */
const char *
vm_incoming_addr(void)
{
	if (qmpd->cluster != NULL && qmpd->cluster->addr != NULL)
		return (qmpd->cluster->addr);
	return ("127.0.0.1");
}

/* The cluster's answer to the switchover's swap; the VM may be gone. */
static void
vm_migrate_placed(const char *name, int ok, const char *why, void *arg)
{
	vm_migrate_place_cb	 cb = (vm_migrate_place_cb)arg;
	struct vm		*vm;

	if ((vm = vm_find(name)) == NULL || vm->mig == NULL ||
	    !vm->mig->incoming)
		return;
	cb(vm, ok, why);
}

/*
 * The switchover's placement step. Two qmpds without a cluster have no
 * placement to move: go on. In a cluster placement/NAME moves from the
 * source to this host by compare-and-swap (cluster-place.c); a failed
 * swap refuses and the source resumes, so exactly one QEMU runs the
 * desktop.
 */
void
vm_migrate_place(struct vm *vm, const char *from, vm_migrate_place_cb cb)
{
	char	*cause = NULL;
	int	 rv;

	if (qmpd->cluster == NULL) {
		cb(vm, 1, NULL);
		return;
	}
	rv = cluster_migrate_switch(vm->def.name, from, vm_migrate_placed,
	    (void *)cb, &cause);
	if (rv == 1)
		cb(vm, 1, NULL);
	else if (rv == -1) {
		cb(vm, 0, cause);
		free(cause);
	}
}

/* The prepare request failed before QEMU ran: the record goes. */
static void
vm_incoming_undo(struct vm *vm)
{
	char	*cause = NULL, *disk;

	disk = vm->mig != NULL && vm->mig->disk != NULL ?
	    xstrdup(vm->mig->disk) : NULL;
	vm_incoming_unnote(vm->def.name);
	if (vm_delete(vm, &cause) != 0) {
		log_warnx("%s", cause);
		free(cause);
	}
	if (disk != NULL)
		unlink(disk);
	free(disk);
}

/* Fail the prepare request of vm, whose QEMU then goes (and the VM). */
static void
vm_incoming_fail(struct vm *vm, const char *what, const char *desc)
{
	struct vm_mig	*m = vm->mig;

	if (m->reason == NULL)
		xasprintf(&m->reason, "%s: %s", what, desc);
	done_fail(m->done, m->done_arg, ERR_QEMU, "target %s", m->reason);
	m->done = NULL;
	if (vm_pidfd_signal(vm, SIGKILL) == -1)
		vm_incoming_undo(vm);
}

static void	vm_incoming_ready(struct vm *, int);

/* The ruleset lists the TAPs (vm-migrate-nic.c): now the answer. */
static void
vm_incoming_nic_ready(struct vm *vm, int nbd_port, const char *err)
{
	if (vm->mig == NULL || vm->mig->done == NULL)
		return;
	if (err != NULL)
		vm_incoming_fail(vm, "network rules", err);
	else
		vm_incoming_ready(vm, nbd_port);
}

/* block-export-add done (or no copy): tell the source where to send. */
static void
vm_incoming_ready(struct vm *vm, int nbd_port)
{
	struct vm_mig	*m = vm->mig;
	json_t		*ret, *spice = json_null(), *nbd = json_null();

	/* Frames of TAPs the ruleset does not list yet are dropped. */
	if (vm_migrate_nic_wait(vm, nbd_port, vm_incoming_nic_ready) != 0)
		return;

	if (strcmp(vm->def.display, "spice") == 0)
		spice = json_pack("{s:s,s:i,s:s}", "host",
		    vm_spice_addr(vm),
		    "tls-port", vm->def.spice_port, "subject",
		    spice_tls_subject(vm) != NULL ? spice_tls_subject(vm) : "");
	if (nbd_port > 0)
		nbd = json_pack("{s:s,s:i,s:s,s:b}", "host", vm_incoming_addr(),
		    "port", nbd_port, "export", "disk0", "tls", m->tls);
	ret = json_pack("{s:s,s:o,s:o,s:b}", "uri",
	    json_string_value(m->target), "nbd", nbd, "spice", spice, "tls",
	    m->tls);
	log_info("%s: incoming migration ready at %s", vm->def.name,
	    json_string_value(m->target));
	done_ok(m->done, m->done_arg, ret);
	m->done = NULL;
}

struct vm_incoming_step {
	struct vm	*vm;
	int		 nbd_port;
	const char	*what;
};

/* nbd-server-start and block-export-add: the copy's writable export. */
static void
vm_incoming_nbd_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_incoming_step	*st = arg;
	struct vm		*vm = st->vm;

	if (vm_find(vm->def.name) != vm || vm->mig == NULL ||
	    vm->mig->done == NULL) {
		free(st);
		return;
	}
	if (errclass != NULL)
		vm_incoming_fail(vm, st->what, errdesc);
	else if (strcmp(st->what, "block-export-add") == 0)
		vm_incoming_ready(vm, st->nbd_port);
	free(st);
}

/* A listening TCP socket for QEMU's NBD server, on addr, any port. */
static int
vm_incoming_listen(const char *addr, int *port, char **cause)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof sin;
	int			fd;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
		xasprintf(cause, "NBD address %s is not IPv4", addr);
		return (-1);
	}
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(fd, 4) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
		xasprintf(cause, "NBD listener on %s: %s", addr,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return (-1);
	}
	*port = ntohs(sin.sin_port);
	return (fd);
}

/* The copy's target: QEMU serves its new disk0 over NBD, writable. */
static void
vm_incoming_nbd(struct vm *vm)
{
	struct vm_incoming_step	*st;
	json_t			*args;
	char			*cause = NULL;
	int			 fd, port;

	if ((fd = vm_incoming_listen(vm_incoming_addr(), &port,
	    &cause)) == -1) {
		vm_incoming_fail(vm, "NBD", cause);
		free(cause);
		return;
	}
	qmp_execute_fd(vm->qmp, "getfd", json_pack("{s:s}", "fdname",
	    "mig-nbd"), fd, NULL, NULL);
	close(fd);
	st = xcalloc(1, sizeof *st);
	st->vm = vm;
	st->what = "nbd-server-start";
	args = json_pack("{s:{s:s,s:{s:s}}}", "addr", "type", "fd", "data",
	    "str", "mig-nbd");
	/*
	 * With the stream's TLS (a cluster with certificates) the export
	 * takes only a client with a certificate of the cluster CA: no one
	 * else on the network reads or writes the desktop's disk.
	 */
	if (vm->mig->tls)
		json_object_set_new(args, "tls-creds",
		    json_string(vm_migrate_tls_id()));
	qmp_execute(vm->qmp, "nbd-server-start", args, vm_incoming_nbd_done,
	    st);
	log_info("%s: NBD export of the copy at %s:%d%s", vm->def.name,
	    vm_incoming_addr(), port, vm->mig->tls ? " (TLS)" : "");
	st = xcalloc(1, sizeof *st);
	st->vm = vm;
	st->what = "block-export-add";
	st->nbd_port = port;
	qmp_execute(vm->qmp, "block-export-add", json_pack("{s:s,s:s,s:s,s:s,"
	    "s:b}", "type", "nbd", "id", "mig-disk0", "node-name", "disk0",
	    "name", "disk0", "writable", 1), vm_incoming_nbd_done, st);
}

/* query-migrate: the port QEMU's incoming listener got. */
static void
vm_incoming_port_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;
	json_t		*sa;
	const char	*port;
	char		*uri;

	if (vm->qmp != qmp || m == NULL || m->done == NULL)
		return;
	if (errclass != NULL) {
		vm_incoming_fail(vm, "query-migrate", errdesc);
		return;
	}
	sa = json_array_get(json_object_get(ret, "socket-address"), 0);
	if ((port = json_string_value(json_object_get(sa, "port"))) == NULL) {
		vm_incoming_fail(vm, "query-migrate", "no listening port");
		return;
	}
	xasprintf(&uri, "tcp:%s:%s", vm_incoming_addr(), port);
	json_decref(m->target);
	m->target = json_string(uri);
	free(uri);
	if (m->copy)
		vm_incoming_nbd(vm);
	else
		vm_incoming_ready(vm, 0);
}

static void
vm_incoming_step_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;

	if (errclass != NULL && vm->qmp == qmp && vm->mig != NULL &&
	    vm->mig->done != NULL)
		vm_incoming_fail(vm, "migrate-incoming", errdesc);
}

/* QMP is up on the -incoming defer QEMU: listen for the stream. */
void
vm_incoming_attached(struct vm *vm)
{
	char	*uri, *cause = NULL;
	int	 rv;

	qmp_execute(vm->qmp, "migrate-set-capabilities", json_pack(
	    "{s:[{s:s,s:b}]}", "capabilities", "capability", "events", "state",
	    1), vm_incoming_step_done, vm);
	/* With cluster certificates the stream is TLS, both ways checked. */
	if ((rv = vm_migrate_tls(vm, 1, NULL, vm_incoming_step_done,
	    &cause)) == -1) {
		vm_incoming_fail(vm, "TLS", cause);
		free(cause);
		return;
	}
	vm->mig->tls = rv == 0;
	/* The source's viewer links here while the stream runs. */
	vm_ticket_arm(vm, VM_INCOMING_WAIT);
	xasprintf(&uri, "tcp:%s:0", vm_incoming_addr());
	qmp_execute(vm->qmp, "migrate-incoming", json_pack("{s:s}", "uri",
	    uri), vm_incoming_step_done, vm);
	free(uri);
	qmp_execute(vm->qmp, "query-migrate", NULL, vm_incoming_port_done, vm);
}

/* migrate.finish's answer, once the switchover has ended either way. */
static void
vm_incoming_answer_finish(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;

	if (m->finish == NULL)
		return;
	m->downtime_ms = vm_migrate_downtime(m);
	if (m->state == VM_MIG_COMPLETED)
		done_ok(m->finish, m->finish_arg, json_pack("{s:s,s:I,s:I}",
		    "name", vm->def.name, "resume_ms",
		    (json_int_t)m->resume_ms, "resumed_at",
		    (json_int_t)m->resumed_at));
	else
		done_fail(m->finish, m->finish_arg, ERR_STATE, "the target did "
		    "not take over: %s", m->reason != NULL ? m->reason :
		    vm_migrate_state_name(m->state));
	m->finish = NULL;
}

/* cont after the switchover: the desktop runs here now. */
static void
vm_incoming_cont_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	struct vm_mig	*m = vm->mig;

	if (vm->qmp != qmp || m == NULL || m->state != VM_MIG_SWITCHOVER)
		return;
	if (errclass != NULL) {
		xasprintf(&m->reason, "cont: %s", errdesc);
		m->state = VM_MIG_FAILED;
		vm_incoming_answer_finish(vm);
		vm_pidfd_signal(vm, SIGKILL);
		return;
	}
	m->resume_ms = vm_migrate_now_ms() - m->completed_at;
	m->resumed_at = vm_migrate_wall_ms();
	m->state = VM_MIG_COMPLETED;
	m->progress = 100;
	if (m->timer != NULL)
		evtimer_del(m->timer);
	vm_incoming_unnote(vm->def.name);
	vm_set_state(vm, VM_RUNNING, NULL);
	vm_ticket_settle(vm);
	spice_via_settle(vm);
	log_info("%s: migrated here from %s, running %lld ms after the "
	    "stream ended", vm->def.name, m->peer_addr, m->resume_ms);
	if (m->copy)
		qmp_execute(vm->qmp, "nbd-server-stop", NULL, NULL, NULL);
	vm_incoming_answer_finish(vm);
}

static void
vm_incoming_placed(struct vm *vm, int ok, const char *why)
{
	struct vm_mig	*m = vm->mig;

	if (m == NULL || m->state != VM_MIG_SWITCHOVER || vm->qmp == NULL)
		return;
	if (qmpd->cluster != NULL)
		log_info("%s: placement %s in %lld ms of the downtime",
		    vm->def.name, ok ? "moved here" : "refused",
		    vm_migrate_now_ms() - m->completed_at);
	if (!ok) {
		xasprintf(&m->reason, "placement refused: %s", why);
		m->state = VM_MIG_FAILED;
		vm_incoming_answer_finish(vm);
		vm_pidfd_signal(vm, SIGKILL);
		return;
	}
	/* Placement names this host, QEMU is paused: test 76 dies here. */
	test_hook("die-before-cont", vm->def.name);
	/* With copy the export must go before the guest writes alone. */
	if (m->copy)
		qmp_execute(vm->qmp, "block-export-del", json_pack("{s:s,s:s}",
		    "id", "mig-disk0", "mode", "hard"), NULL, NULL);
	qmp_execute(vm->qmp, "cont", NULL, vm_incoming_cont_done, vm);
}

/* MIGRATION "completed" here: take over at once, the source is stopped. */
void
vm_incoming_completed(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;

	if (m->state != VM_MIG_PREPARING && m->state != VM_MIG_ACTIVE)
		return;
	m->completed_at = vm_migrate_now_ms();
	m->state = VM_MIG_SWITCHOVER;
	vm_migrate_place(vm, m->peer_addr, vm_incoming_placed);
}

/*
 * A half re-attached by a restarted qmpd whose switchover's placement
 * swap had landed (vm-incoming-recover.c): the source has let go, so the
 * desktop runs here.
 */
void
vm_incoming_takeover(struct vm *vm)
{
	vm->mig->completed_at = vm_migrate_now_ms();
	vm->mig->state = VM_MIG_SWITCHOVER;
	free(vm->mig->reason);
	vm->mig->reason = NULL;
	vm_incoming_placed(vm, 1, NULL);
}

/* migrate.finish: the source's figures; answered once it is decided. */
void
vm_incoming_finish(struct vm *vm, json_t *args, done_cb done, void *arg)
{
	struct vm_mig	*m = vm->mig;
	json_t		*src = json_object_get(args, "source");

	if (m == NULL || !m->incoming) {
		done_fail(done, arg, ERR_STATE, "VM %s is not migrating here",
		    vm->def.name);
		return;
	}
	if (m->finish != NULL) {
		done_fail(done, arg, ERR_BUSY, "VM %s: a finish is waiting "
		    "already", vm->def.name);
		return;
	}
	m->total_ms = json_integer_value(json_object_get(src, "total_ms"));
	m->qemu_downtime_ms = json_integer_value(json_object_get(src,
	    "qemu_downtime_ms"));
	m->ram_bytes = json_integer_value(json_object_get(src, "ram_bytes"));
	m->disk_bytes = json_integer_value(json_object_get(src, "disk_bytes"));
	m->downtime_limit = json_integer_value(json_object_get(src,
	    "downtime_limit"));
	m->stopped_at = json_integer_value(json_object_get(src,
	    "stopped_at"));
	m->finish = done;
	m->finish_arg = arg;
	if (m->state == VM_MIG_COMPLETED)
		vm_incoming_answer_finish(vm);
	else if (m->state == VM_MIG_FAILED)
		vm_incoming_answer_finish(vm);
	/* else the switchover answers (vm_incoming_cont_done). */
}

/* migrate.abort: the source gave up; a target that never ran goes. */
int
vm_incoming_abort(struct vm *vm, const char *why, char **cause)
{
	struct vm_mig	*m = vm->mig;

	if (m == NULL || !m->incoming) {
		xasprintf(cause, "VM %s is not migrating here", vm->def.name);
		return (-1);
	}
	if (m->state == VM_MIG_COMPLETED) {
		xasprintf(cause, "VM %s runs here already", vm->def.name);
		return (-1);
	}
	free(m->reason);
	xasprintf(&m->reason, "the source aborted: %s", why);
	log_info("%s: incoming migration aborted by the source: %s",
	    vm->def.name, why);
	if (vm_pidfd_signal(vm, SIGKILL) == -1)
		vm_incoming_undo(vm);
	return (0);
}

/*
 * MIGRATION "active" here: the stream has begun, so the source's own
 * --timeout (from now on, as there) and a margin for the switchover.
 */
void
vm_incoming_streaming(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;
	struct timeval	 tv = { m->timeout + 60, 0 };

	if (m->timer == NULL || m->timeout <= 0 ||
	    m->state != VM_MIG_PREPARING)
		return;
	evtimer_del(m->timer);
	evtimer_add(m->timer, &tv);
}

/* The source never sent the stream (or never finished it): give up. */
static void
vm_incoming_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;
	char		*cause = NULL;

	if (vm->mig == NULL || vm->mig->state == VM_MIG_COMPLETED)
		return;
	if (vm_incoming_abort(vm, "no migration from the source in time",
	    &cause) != 0) {
		log_warnx("%s", cause);
		free(cause);
	}
}

/* --storage copy: an empty raw file of the source disk's size. */
static int
vm_incoming_disk(struct vm *vm, long long size, char **cause)
{
	char	*dir, *path;
	int	 fd;

	if (size <= 0) {
		xasprintf(cause, "disk_size %lld: the source must say how big "
		    "its disk is", size);
		return (-1);
	}
	xasprintf(&dir, "%s/disks", qmpd->state_dir);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", dir, strerror(errno));
		free(dir);
		return (-1);
	}
	xasprintf(&path, "%s/%s.raw", dir, vm->def.name);
	free(dir);
	/* No VM of that name is here: what that path holds is a leftover. */
	unlink(path);
	if ((fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1 || ftruncate(fd, size) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		unlink(path);
		free(path);
		return (-1);
	}
	close(fd);
	free(vm->def.disk);
	vm->def.disk = xstrdup(path);
	free(vm->def.disk_format);
	vm->def.disk_format = xstrdup("raw");
	vm->mig->disk = path;
	return (0);
}

/*
 * migrate.prepare {name, def, storage, disk_size, from, ticket, via, nets,
 * nvram_size, pci}: the VM here, its QEMU waiting for the stream (with the
 * source's SPICE password and its viewer's proxy ticket, if it had them);
 * done answers {uri, nbd, spice}.
 */
void
vm_incoming_prepare(json_t *args, done_cb done, void *arg)
{
	struct vm	*vm;
	struct vm_mig	*m;
	struct stat	 sb;
	struct timeval	 tv = { 0, 0 };
	const char	*name, *storage, *from;
	char		*cause = NULL;
	int		 copy;

	/* A clone's template first: fetched here if this host lacks it. */
	if (vm_incoming_image_need(args, done, arg))
		return;
	name = json_string_value(json_object_get(args, "name"));
	storage = json_string_value(json_object_get(args, "storage"));
	from = json_string_value(json_object_get(args, "from"));
	if (name == NULL || !json_is_object(json_object_get(args, "def"))) {
		done_fail(done, arg, ERR_ARG, "migrate.prepare needs a name "
		    "and a def");
		return;
	}
	/* In a cluster a stopped record of a VM that ran here is stale. */
	if ((vm = vm_find(name)) != NULL && qmpd->cluster != NULL &&
	    !vm_is_active(vm) && !vm_migrate_busy(vm) &&
	    cluster_place_host(name) != NULL && vm_delete(vm, &cause) != 0) {
		done_fail(done, arg, ERR_STATE, "target: %s", cause);
		free(cause);
		return;
	}
	if (vm_find(name) != NULL) {
		done_fail(done, arg, ERR_EXISTS, "a VM named %s already exists "
		    "on the target", name);
		return;
	}
	copy = storage != NULL && strcmp(storage, "copy") == 0;
	vm = vm_alloc();
	if (vm_def_from_json(&vm->def, json_object_get(args, "def"),
	    &cause) != 0 || vm_migrate_check(&vm->def, copy, &cause) != 0 ||
	    vm_migrate_nic_check(&vm->def, json_object_get(args, "nets"),
	    &cause) != 0)
		goto fail;
	if (strcmp(vm->def.name, name) != 0) {
		xasprintf(&cause, "the definition is of %s, not %s",
		    vm->def.name, name);
		goto fail;
	}
	/* Tests: a QEMU that differs from the source's (vm-incoming-why.c). */
	if (test_hook_armed("incoming-differ", name))
		vm->def.memory += 64;
	if (!copy && vm->def.disk != NULL && stat(vm->def.disk, &sb) == -1) {
		xasprintf(&cause, "disk %s: %s on the target: is it on shared "
		    "storage? (--storage copy copies it)", vm->def.disk,
		    strerror(errno));
		goto fail;
	}
	m = vm->mig = xcalloc(1, sizeof *m);
	m->incoming = 1;
	m->state = VM_MIG_PREPARING;
	m->peer_addr = xstrdup(from != NULL ? from : "?");
	m->copy = copy;
	m->t0 = vm_migrate_now_ms();
	m->timeout = json_integer_value(json_object_get(args, "timeout"));
	if (vm_migrate_dev_take(vm, args, &cause) != 0)	/* PCI layout */
		goto fail;
	if (copy && vm->def.image != NULL && vm_incoming_image_clone(vm, args,
	    json_integer_value(json_object_get(args, "disk_size")), &cause) != 0)
		goto fail;
	if (!copy && vm->def.image != NULL && vm_incoming_image_adopt(vm, args,
	    &cause) != 0)
		goto fail;
	if (copy && vm->def.image == NULL && vm_incoming_disk(vm,
	    json_integer_value(json_object_get(args, "disk_size")), &cause) != 0)
		goto fail;
	if (strcmp(vm->def.display, "spice") == 0 &&
	    vm_port_alloc(vm, &cause) != 0)
		goto fail;
	if (json_is_object(json_object_get(args, "ticket")) &&
	    vm_ticket_take(name, json_object_get(args, "ticket"),
	    &cause) != 0)
		goto fail;
	if (spice_via_expect(name, json_string_value(json_object_get(args,
	    "via")), &cause) != 0)
		goto fail;
	vm->state = VM_STOPPED;
	/* The note first: a qmpd killed after the save finds the half. */
	if (vm_incoming_note(vm, &cause) != 0 ||
	    vm_migrate_nic_save(vm, &cause) != 0)	/* with its leases */
		goto fail;
	TAILQ_INSERT_TAIL(&vms, vm, entry);
	log_info("%s: incoming migration from %s (%s storage)", name,
	    m->peer_addr, copy ? "copied" : "shared");
	m->done = done;
	m->done_arg = arg;
	/*
	 * Until the stream starts: the source's bounds for preparing and
	 * the disk copy (which has none but its progress), with a margin.
	 */
	tv.tv_sec = m->copy ? VM_INCOMING_WAIT : VM_MIG_PREPARE_S + 60;
	m->timer = evtimer_new(qmpd->base, vm_incoming_timeout_cb, vm);
	evtimer_add(m->timer, &tv);
	/* The TPM's state and the NVRAM come in the stream: a place for them. */
	if (vm_migrate_tpm_prepare(vm, args, &cause) != 0 ||
	    vm_start(vm, &cause) != 0) {
		m->done = NULL;
		done_fail(done, arg, ERR_QEMU, "target: %s", cause);
		free(cause);
		vm_incoming_undo(vm);
		return;
	}
	/* vm_qmp_attach calls vm_incoming_attached; a dead QEMU answers. */
	return;
fail:
	done_fail(done, arg, ERR_ARG, "target: %s", cause);
	free(cause);
	/* No VM of this name was here: a note of it is this prepare's. */
	vm_incoming_unnote(name);
	if (vm->mig != NULL && vm->mig->disk != NULL)
		unlink(vm->mig->disk);
	vm_incoming_image_undo(vm);
	vm_free(vm);
}
