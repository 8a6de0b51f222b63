/*
 * A QEMU is gone: why (its exit status when it was ours, the last line
 * of its log when it never started), stopped or crashed, its runtime
 * files cleaned up, and the VM's restart policy, rate limited.
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cluster.h"
#include "file.h"
#include "log.h"
#include "net.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_RESTART_WINDOW	60	/* seconds */
#define VM_RESTART_DELAY_MS	1000

/* A QEMU's wait status in words: killed by a signal, or its status. */
static char *
vm_exit_status(int status)
{
	char	*s;

	if (WIFSIGNALED(status))
		xasprintf(&s, "QEMU killed by signal %d (%s)",
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		xasprintf(&s, "QEMU exited with status %d",
		    WEXITSTATUS(status));
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
	if (rc == vm->pid && (WIFSIGNALED(status) || WIFEXITED(status)))
		return (vm_exit_status(status));
	return (xstrdup("QEMU exited unexpectedly"));
}

/* SIGCHLD reaped a QEMU before its pidfd fired: keep its status. */
void
vm_exit_reaped(pid_t pid, int status)
{
	struct vm	*vm;

	if (vm_tpm_reaped(pid, status))
		return;
	TAILQ_FOREACH(vm, &vms, entry) {
		if (vm->pid != pid)
			continue;
		free(vm->exit_reason);
		vm->exit_reason = vm_exit_status(status);
		return;
	}
}

/* The runtime files a QEMU left: pidfile and sockets. */
void
vm_exit_cleanup(struct vm *vm)
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
	vm_tpm_stop(vm);
}

/* The last line QEMU wrote to its log: why it refused to start. */
static char *
vm_exit_log_tail(struct vm *vm)
{
	char	*cause = NULL;
	int	 fd;

	/* In a dir the VM's uid owns: no link, no FIFO (safefile.c). */
	if ((fd = vm_rundir_open(vm, "qemu.log", O_RDONLY, &cause)) == -1) {
		if (cause != NULL)
			log_warnx("%s: %s", vm->def.name, cause);
		free(cause);
		return (NULL);
	}
	return (file_last_line(fd, 512));
}

/* QEMU is gone: decide stopped or crashed, and maybe restart. */
void
vm_exit_seen(struct vm *vm)
{
	char		*why, *reason = NULL;
	enum vm_state	 next;

	why = vm_exit_reason(vm);
	vm_unwatch(vm);
	if (vm->stop_timer != NULL)
		evtimer_del(vm->stop_timer);
	if (vm->qmp != NULL) {
		struct qmp *q = vm->qmp;

		vm->qmp = NULL;
		qmp_free(q);
	}
	vm->is_child = 0;
	vm_exit_cleanup(vm);
	vm_net_stopped(vm);
	vm_agent_stopped(vm, 1);
	/* A migrated source, or a target that never took over, goes. */
	if (vm->mig != NULL && vm_migrate_exited(vm)) {
		free(why);
		return;
	}

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
	    (reason = vm_exit_log_tail(vm)) != NULL) {
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
		vm_exit_restart(vm);
	vm->stop_asked = 0;
}

/* The restart delay is over: start the VM again unless someone did. */
static void
vm_exit_restart_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm	*vm = arg;
	char		*cause = NULL;

	if (vm_is_active(vm))
		return;
	/*
	 * In a cluster placement says where it runs: a host back from its
	 * death (or fenced) may find it crashed while another host runs it.
	 */
	if (qmpd->cluster != NULL && (!cluster_host_joined() ||
	    !cluster_place_mine(cluster_place_find(vm->def.name)))) {
		log_info("%s: not restarted: placement does not give it to "
		    "this host", vm->def.name);
		return;
	}
	log_info("%s: restarting (policy %s)", vm->def.name,
	    vm_restart_name(vm->def.restart));
	if (vm_start(vm, &cause) != 0) {
		log_warnx("%s: restart failed: %s", vm->def.name, cause);
		vm_set_state(vm, VM_CRASHED, cause);
		free(cause);
	}
}

/* Restart policy, rate limited: at most 5 restarts a minute. */
void
vm_exit_restart(struct vm *vm)
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
		vm->restart_timer = evtimer_new(qmpd->base,
		    vm_exit_restart_cb, vm);
	evtimer_add(vm->restart_timer, &tv);
}

