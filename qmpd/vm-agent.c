/*
 * A VM's guest agent (--agent): the host end of its virtio-serial port
 * org.qemu.guest_agent.0, and the qga.c client on it.
 *
 * QEMU inherits a listening unix socket (server=on, like QMP) whose path
 * is DIR/agent/NAME.sock: DIR/agent is root's, mode 0700, so the VM's
 * user can neither reach the socket nor put anything in its place, and
 * qmpd connects to it again after its own restart.  The client lives as
 * long as QEMU; the agent inside may come and go (qga.c resynchronises),
 * and QEMU closes our connection whenever the guest closes its end of the
 * port (qemu-ga restarting, or daemonising): qmpd connects again.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "qga.h"
#include "qmp.h"
#include "qmpd.h"
#include "sock.h"
#include "vm.h"
#include "xmalloc.h"

/* Each agent command and each sync attempt; a guest may never answer. */
#define VM_AGENT_TIMEOUT_MS	5000
/* QEMU drops the connection when the guest closes the port: come back. */
#define VM_AGENT_RECONNECT_MS	1000
/* What vm show reports is asked again this often while the agent answers. */
#define VM_AGENT_REFRESH_S	30

struct vm_agent {
	struct vm	*vm;
	struct qga	*qga;
	int		 lfd;		/* QEMU's socket, until spawn */
	struct event	*timer;		/* reconnect, or the next refresh */

	/* What the guest said last; vm show reads this, never the guest. */
	char		*os;
	char		*hostname;
	json_t		*ips;		/* array of address strings */
	int		 refreshing;

	int		 stop_rest;	/* vm stop: seconds after fallback */
	int		 thaw_pending;	/* thaw as soon as the agent answers */
	int		 freezing;	/* a snapshot of ours froze the guest */
};

/* A freeze on its way to the guest, for the snapshot that asked. */
struct vm_agent_freeze {
	char			 vm[VM_NAME_MAX];
	vm_agent_freeze_cb	 cb;
	void			*arg;
};

static void	vm_agent_thaw_send(struct vm_agent *);
static void	vm_agent_fsstatus(struct vm_agent *);

/* One step of a refresh: the command and what takes its answer. */
struct vm_agent_query {
	const char	*cmd;
	void		(*take)(struct vm_agent *, json_t *);
};

static void	vm_agent_take_os(struct vm_agent *, json_t *);
static void	vm_agent_take_hostname(struct vm_agent *, json_t *);
static void	vm_agent_take_ips(struct vm_agent *, json_t *);

/* Asked in this order, one at a time, each answer cached as it comes. */
static const struct vm_agent_query vm_agent_queries[] = {
	{ "guest-get-osinfo", vm_agent_take_os },
	{ "guest-get-host-name", vm_agent_take_hostname },
	{ "guest-network-get-interfaces", vm_agent_take_ips },
};

static void	vm_agent_connect(struct vm *);

/*
 * DIR/agent: made by root 0700 and checked (a directory, root's, no
 * access for anyone else), without following a link put in its place.
 */
static int
vm_agent_dir(char **dir, char **cause)
{
	struct stat	 st;

	xasprintf(dir, "%s/agent", qmpd->state_dir);
	if (mkdir(*dir, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", *dir, strerror(errno));
		goto fail;
	}
	if (lstat(*dir, &st) == -1) {
		xasprintf(cause, "%s: %s", *dir, strerror(errno));
		goto fail;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0) {
		xasprintf(cause, "%s must be a directory of qmpd's user with "
		    "mode 0700", *dir);
		goto fail;
	}
	return (0);
fail:
	free(*dir);
	*dir = NULL;
	return (-1);
}

static char *
vm_agent_path(const struct vm *vm)
{
	char	*path;

	xasprintf(&path, "%s/agent/%s.sock", qmpd->state_dir, vm->def.name);
	return (path);
}

/* Replace a cached string; NULL clears it. */
static void
vm_agent_set(char **field, const char *value)
{
	free(*field);
	*field = value != NULL ? xstrdup(value) : NULL;
}

/* The OS's pretty name, else its name, else the kernel it runs. */
static void
vm_agent_take_os(struct vm_agent *a, json_t *ret)
{
	const char	*s;
	char		*k = NULL;

	if ((s = json_string_value(json_object_get(ret, "pretty-name"))) ==
	    NULL && (s = json_string_value(json_object_get(ret, "name"))) ==
	    NULL && (s = json_string_value(json_object_get(ret,
	    "kernel-release"))) != NULL) {
		xasprintf(&k, "Linux %s", s);
		s = k;
	}
	vm_agent_set(&a->os, s);
	free(k);
}

static void
vm_agent_take_hostname(struct vm_agent *a, json_t *ret)
{
	vm_agent_set(&a->hostname, json_string_value(json_object_get(ret,
	    "host-name")));
}

/* Every address but loopback and IPv6 link-local, interfaces in order. */
static void
vm_agent_take_ips(struct vm_agent *a, json_t *ret)
{
	json_t		*ips, *ifc, *addr;
	const char	*name, *ip;
	size_t		 i, j;

	ips = json_array();
	json_array_foreach(ret, i, ifc) {
		name = json_string_value(json_object_get(ifc, "name"));
		if (name != NULL && strcmp(name, "lo") == 0)
			continue;
		json_array_foreach(json_object_get(ifc, "ip-addresses"), j,
		    addr) {
			ip = json_string_value(json_object_get(addr,
			    "ip-address"));
			if (ip == NULL || strncmp(ip, "127.", 4) == 0 ||
			    strcmp(ip, "::1") == 0 ||
			    strncasecmp(ip, "fe80:", 5) == 0)
				continue;
			json_array_append_new(ips, json_string(ip));
		}
	}
	json_decref(a->ips);
	a->ips = ips;
}

static void	vm_agent_query(struct vm_agent *, size_t);

/* One answer of a refresh: cache it, ask the next question. */
static void
vm_agent_query_done(struct qga *qga, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_agent		*a = arg;
	size_t			 i;

	for (i = 0; i < nitems(vm_agent_queries); i++)
		if (a->refreshing == (int)i + 1)
			break;
	if (i == nitems(vm_agent_queries) || a->qga != qga)
		return;
	if (errclass == NULL)
		vm_agent_queries[i].take(a, ret);
	else
		log_debug("%s: %s: %s", a->vm->def.name,
		    vm_agent_queries[i].cmd, errdesc);
	vm_agent_query(a, i + 1);
}

/* Ask question i of a refresh; past the last, wait for the next one. */
static void
vm_agent_query(struct vm_agent *a, size_t i)
{
	struct timeval	tv = { VM_AGENT_REFRESH_S, 0 };

	a->refreshing = 0;
	if (a->qga == NULL)
		return;
	if (i < nitems(vm_agent_queries)) {
		a->refreshing = i + 1;
		if (qga_execute(a->qga, vm_agent_queries[i].cmd, NULL, 0,
		    vm_agent_query_done, a) == 0)
			return;
		a->refreshing = 0;	/* not answering: READY will refresh */
		return;
	}
	evtimer_add(a->timer, &tv);
}

/* The refresh is due, or it is time to connect again to a live QEMU. */
static void
vm_agent_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm_agent	*a = arg;

	if (a->vm->pidfd == -1 || !a->vm->def.agent)
		return;
	if (a->qga == NULL || qga_get_state(a->qga) == QGA_CLOSED)
		vm_agent_connect(a->vm);
	else if (qga_get_state(a->qga) == QGA_READY && !a->refreshing)
		vm_agent_query(a, 0);
}

static struct vm_agent *
vm_agent_get(struct vm *vm)
{
	if (vm->agent == NULL) {
		vm->agent = xcalloc(1, sizeof *vm->agent);
		vm->agent->vm = vm;
		vm->agent->lfd = -1;
		vm->agent->timer = evtimer_new(qmpd->base, vm_agent_timer_cb,
		    vm->agent);
		if (vm->agent->timer == NULL)
			fatalx("%s: evtimer_new", __func__);
	}
	return (vm->agent);
}

/* Tell event subscribers whether the agent answers. */
static void
vm_agent_emit(struct vm *vm, int connected)
{
	json_t	*data;

	data = json_pack("{s:b}", "connected", connected);
	notify_emit("vm.agent", vm->def.name, data);
	json_decref(data);
}

/* The agent answered a sync (READY), stopped answering, or is gone. */
static void
vm_agent_state_cb(struct qga *qga, enum qga_state state, const char *cause,
    void *arg)
{
	struct vm_agent	*a = arg;
	struct timeval	 tv;

	switch (state) {
	case QGA_READY:
		log_info("%s: guest agent connected", a->vm->def.name);
		vm_agent_emit(a->vm, 1);
		evtimer_del(a->timer);
		if (a->thaw_pending)
			vm_agent_thaw_send(a);
		else if (!a->freezing)
			vm_agent_fsstatus(a);
		if (!a->refreshing)
			vm_agent_query(a, 0);
		break;
	case QGA_SYNCING:
		a->refreshing = 0;
		log_info("%s: guest agent lost: %s", a->vm->def.name, cause);
		vm_agent_emit(a->vm, 0);
		break;
	case QGA_CLOSED:
		a->refreshing = 0;
		log_debug("%s: guest agent port closed: %s", a->vm->def.name,
		    cause);
		if (a->vm->pidfd != -1) {
			tv.tv_sec = VM_AGENT_RECONNECT_MS / 1000;
			tv.tv_usec = (VM_AGENT_RECONNECT_MS % 1000) * 1000;
			evtimer_add(a->timer, &tv);
		}
		break;
	}
}

/* Connect to QEMU's end of the port and start the client on it. */
static void
vm_agent_connect(struct vm *vm)
{
	static const struct qga_callbacks cbs = { vm_agent_state_cb };
	struct vm_agent	*a = vm_agent_get(vm);
	char		*path;
	int		 fd;

	qga_free(a->qga);
	a->qga = NULL;
	path = vm_agent_path(vm);
	if ((fd = qmp_connect_unix(path)) == -1) {
		log_warn("%s: guest agent socket %s", vm->def.name, path);
		free(path);
		return;
	}
	free(path);
	a->qga = qga_create(qmpd->base, fd, &cbs, a, VM_AGENT_TIMEOUT_MS);
}

/*
 * vm start: the listening socket QEMU inherits for the port (rt's
 * agent_fd, -1 for a VM without --agent).
 */
int
vm_agent_open(struct vm *vm, struct vm_runtime_paths *rt, char **cause)
{
	struct vm_agent	*a;
	char		*dir, *path;

	rt->agent_fd = -1;
	if (!vm->def.agent)
		return (0);
	if (vm_agent_dir(&dir, cause) != 0)
		return (-1);
	free(dir);
	a = vm_agent_get(vm);
	path = vm_agent_path(vm);
	a->lfd = sock_unix_listen(path, 0, 4, cause);
	free(path);
	if (a->lfd == -1)
		return (-1);
	rt->agent_fd = a->lfd;
	return (0);
}

/* vm start, after the spawn (or its failure): QEMU has the socket. */
void
vm_agent_opened(struct vm *vm, int spawned)
{
	struct vm_agent	*a = vm->agent;
	char		*path;

	if (a == NULL || a->lfd == -1)
		return;
	close(a->lfd);
	a->lfd = -1;
	if (spawned) {
		/* The backlog holds us until QEMU accepts, as for QMP. */
		vm_agent_connect(vm);
		return;
	}
	path = vm_agent_path(vm);
	unlink(path);
	free(path);
}

/* qmpd restarted and found the VM's QEMU: find its agent port again. */
void
vm_agent_attach(struct vm *vm)
{
	if (vm->def.agent)
		vm_agent_connect(vm);
}

/*
 * QEMU is gone (or qmpd is leaving it running, gone 0): drop the client;
 * the socket file goes with QEMU.
 */
void
vm_agent_stopped(struct vm *vm, int gone)
{
	struct vm_agent	*a = vm->agent;
	char		*path;

	if (a == NULL)
		return;
	evtimer_del(a->timer);
	qga_free(a->qga);
	a->qga = NULL;
	a->refreshing = 0;
	a->stop_rest = 0;
	a->thaw_pending = 0;
	a->freezing = 0;
	if (gone) {
		vm_agent_set(&a->os, NULL);
		vm_agent_set(&a->hostname, NULL);
		json_decref(a->ips);
		a->ips = NULL;
	}
	if (a->lfd != -1)
		close(a->lfd);
	a->lfd = -1;
	if (gone && vm->def.agent) {
		path = vm_agent_path(vm);
		unlink(path);
		free(path);
	}
}

/* vm_free: everything the agent side holds (the socket stays). */
void
vm_agent_free(struct vm *vm)
{
	struct vm_agent	*a = vm->agent;

	if (a == NULL)
		return;
	vm_agent_stopped(vm, 0);
	event_free(a->timer);
	free(a->os);
	free(a->hostname);
	json_decref(a->ips);
	free(a);
	vm->agent = NULL;
}

/* The client, when its agent has answered and is in sync; else NULL. */
struct qga *
vm_agent_ready(const struct vm *vm)
{
	if (vm->agent == NULL || vm->agent->qga == NULL ||
	    qga_get_state(vm->agent->qga) != QGA_READY)
		return (NULL);
	return (vm->agent->qga);
}

/*
 * vm show's "agent": whether the agent answers, and what it said last
 * (cached: never waits on the guest). Only for a VM with --agent.
 */
void
vm_agent_json(const struct vm *vm, json_t *j)
{
	const struct vm_agent	*a = vm->agent;

	if (!vm->def.agent)
		return;
	json_object_set_new(j, "agent", json_pack("{s:b,s:s?,s:s?,s:o}",
	    "connected", vm_agent_ready(vm) != NULL,
	    "os", a != NULL ? a->os : NULL,
	    "hostname", a != NULL ? a->hostname : NULL,
	    "ips", a != NULL && a->ips != NULL ? json_incref(a->ips) :
	    json_array()));
}

/*
 * vm stop: how long the ACPI power button alone gets. With --agent, half
 * the timeout; then vm_agent_stop_fallback asks the agent for the rest.
 */
int
vm_agent_stop_begin(struct vm *vm, int timeout)
{
	if (!vm->def.agent || timeout < 2)
		return (timeout);
	vm_agent_get(vm)->stop_rest = timeout - timeout / 2;
	return (timeout / 2);
}

static void
vm_agent_shutdown_sent(struct qga *qga, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_agent	*a = arg;

	if (errclass != NULL)
		log_warnx("%s: guest-shutdown: %s", a->vm->def.name, errdesc);
}

/*
 * The guest ignored the power button for the first half of a stop: ask
 * its agent to power off. Returns the seconds still to wait before the
 * quit, or 0 when there is no fallback (quit now).
 */
int
vm_agent_stop_fallback(struct vm *vm)
{
	struct vm_agent	*a = vm->agent;
	struct qga	*qga;
	int		 rest;

	if (a == NULL || a->stop_rest == 0)
		return (0);
	rest = a->stop_rest;
	a->stop_rest = 0;
	if ((qga = vm_agent_ready(vm)) == NULL) {
		log_info("%s: the guest ignores the power button and no guest "
		    "agent answers; quitting in %d s", vm->def.name, rest);
		return (rest);
	}
	log_info("%s: the guest ignores the power button: guest-shutdown "
	    "through the guest agent", vm->def.name);
	qga_execute(qga, "guest-shutdown", json_pack("{s:s}", "mode",
	    "powerdown"), QGA_NOREPLY, vm_agent_shutdown_sent, a);
	return (rest);
}

/* The freeze's answer: how many filesystems, or why none. */
static void
vm_agent_frozen(struct qga *qga, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_agent_freeze	*f = arg;
	struct vm		*vm = vm_find(f->vm);
	char			*note;

	if (errclass == NULL) {
		log_info("%s: guest agent froze %lld filesystems",
		    f->vm, (long long)json_integer_value(ret));
		f->cb(1, NULL, f->arg);
	} else {
		/* A late or half-done freeze must not stay: thaw anyway. */
		if (vm != NULL && vm->agent != NULL) {
			vm->agent->freezing = 0;
			vm->agent->thaw_pending = 1;
			if (vm_agent_ready(vm) != NULL)
				vm_agent_thaw_send(vm->agent);
		}
		xasprintf(&note, "the guest agent could not freeze the "
		    "filesystems (%s): the snapshot is crash-consistent",
		    errdesc);
		log_warnx("%s: %s", f->vm, note);
		f->cb(0, note, f->arg);
		free(note);
	}
	free(f);
}

/*
 * Freeze the guest's filesystems before a live snapshot. cb gets frozen
 * 1, or 0 with a note saying why not (no agent, not answering, paused,
 * refused); cb may run before this returns. A freeze must be followed by
 * vm_agent_thaw, whatever happens to the snapshot.
 */
void
vm_agent_freeze(struct vm *vm, vm_agent_freeze_cb cb, void *arg)
{
	struct vm_agent_freeze	*f;
	struct qga		*qga;
	const char		*why = NULL;
	char			*note;

	if (!vm->def.agent)
		why = "has no guest agent (--agent)";
	else if (vm->state != VM_RUNNING)
		why = "is not running";
	else if ((qga = vm_agent_ready(vm)) == NULL)
		why = "has no guest agent answering";
	if (why == NULL) {
		f = xcalloc(1, sizeof *f);
		strlcpy(f->vm, vm->def.name, sizeof f->vm);
		f->cb = cb;
		f->arg = arg;
		if (qga_execute(qga, "guest-fsfreeze-freeze", NULL, 0,
		    vm_agent_frozen, f) == 0) {
			vm->agent->freezing = 1;
			return;
		}
		free(f);
		why = "has no guest agent answering";
	}
	xasprintf(&note, "VM %s %s: its filesystems were not frozen, the "
	    "snapshot is crash-consistent", vm->def.name, why);
	log_warnx("%s: live snapshot: %s", vm->def.name, note);
	cb(0, note, arg);
	free(note);
}

static void
vm_agent_thawed(struct qga *qga, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_agent	*a = arg;

	if (errclass == NULL) {
		a->thaw_pending = 0;
		log_info("%s: guest agent thawed %lld filesystems",
		    a->vm->def.name, (long long)json_integer_value(ret));
	} else
		log_warnx("%s: guest-fsfreeze-thaw: %s%s", a->vm->def.name,
		    errdesc, a->thaw_pending ? " (will ask again)" : "");
}

static void
vm_agent_thaw_send(struct vm_agent *a)
{
	if (a->qga == NULL || qga_execute(a->qga, "guest-fsfreeze-thaw",
	    NULL, 0, vm_agent_thawed, a) != 0)
		log_warnx("%s: cannot thaw yet: the guest agent is not "
		    "answering; thawing when it does", a->vm->def.name);
}

/*
 * After a frozen live snapshot, whether it worked or not. If the agent
 * does not answer now, it is asked again as soon as it does.
 */
void
vm_agent_thaw(struct vm *vm)
{
	struct vm_agent	*a = vm->agent;

	if (a == NULL)
		return;
	a->freezing = 0;
	a->thaw_pending = 1;
	vm_agent_thaw_send(a);
}

/* What guest-fsfreeze-status says on connecting: frozen, and not by us? */
static void
vm_agent_fsstatus_done(struct qga *qga, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_agent	*a = arg;

	if (errclass != NULL || a->qga != qga || a->freezing ||
	    a->thaw_pending || !json_is_string(ret) ||
	    strcmp(json_string_value(ret), "frozen") != 0)
		return;
	log_warnx("%s: the guest's filesystems were left frozen (qmpd went "
	    "away during a live snapshot?): thawing", a->vm->def.name);
	a->thaw_pending = 1;
	vm_agent_thaw_send(a);
}

/*
 * On connecting: a guest no snapshot of ours has frozen must not stay
 * frozen (a previous qmpd died between freeze and thaw).
 */
static void
vm_agent_fsstatus(struct vm_agent *a)
{
	if (a->qga != NULL)
		qga_execute(a->qga, "guest-fsfreeze-status", NULL, 0,
		    vm_agent_fsstatus_done, a);
}
