/*
 * A VNC connection to a VM's display without any VNC port: a socketpair,
 * one end handed to QEMU (QMP getfd + add_client; QEMU runs -vnc none),
 * the other end to the caller, which passes it on to the RDP gateway.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

/*
 * QEMU's end may hold this much unread: two 1920x1080 raw updates. With
 * the default (~200 KB) QEMU's main loop writes an 8 MB update in some
 * 40 steps, each a wakeup that waits for a CPU on a busy host, and QEMU
 * sends no update while the last is still queued (ui/vnc.c,
 * vnc_should_update). Memory is taken only for bytes in flight; the RDP
 * gateway's reader thread drains them at once.
 */
#define VM_VNC_SNDBUF	(16 * 1024 * 1024)

struct vm_vnc {
	int		 ours;		/* the end the caller gets */
	int		 theirs;	/* the end QEMU gets */
	char		 fdname[32];
	vm_vnc_cb	 cb;
	void		*arg;
};

static void
vm_vnc_finish(struct vm_vnc *v, const char *err)
{
	if (v->theirs != -1)
		close(v->theirs);
	if (err != NULL) {
		close(v->ours);
		v->cb(-1, err, v->arg);
	} else
		v->cb(v->ours, NULL, v->arg);
	free(v);
}

static void
vm_vnc_added(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	vm_vnc_finish(arg, errclass != NULL ? errdesc : NULL);
}

static void
vm_vnc_gotfd(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm_vnc	*v = arg;

	close(v->theirs);
	v->theirs = -1;
	if (errclass != NULL) {
		vm_vnc_finish(v, errdesc);
		return;
	}
	/* The gateway authenticated the user already: skip VNC auth. */
	if (qmp_execute(qmp, "add_client", json_pack("{s:s,s:s,s:b}",
	    "protocol", "vnc", "fdname", v->fdname, "skipauth", 1),
	    vm_vnc_added, v) != 0)
		vm_vnc_finish(v, "QMP connection closed");
}

/*
 * Give QEMU's end VM_VNC_SNDBUF of send buffer (FORCE: past wmem_max, as
 * root; else as much as wmem_max allows). QDESK_VNC_SNDBUF=0 in qmpd's
 * environment keeps the default: the transport bench's A/B knob.
 */
static void
vm_vnc_sndbuf(int fd)
{
	const char	*env = getenv("QDESK_VNC_SNDBUF");
	int		 size = VM_VNC_SNDBUF;

	if (env != NULL && strcmp(env, "0") == 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size,
	    sizeof size) == -1 &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) == -1)
		log_debug("VNC socket: SO_SNDBUF: %s", strerror(errno));
}

/*
 * Ask QEMU for a new VNC client connection; cb gets the caller's end of
 * the socketpair (it owns it) or an error. Returns -1 with a cause when
 * nothing was started (cb is then not called).
 */
int
vm_vnc_connect(struct vm *vm, vm_vnc_cb cb, void *arg, char **cause)
{
	static unsigned int	 seq;
	struct vm_vnc		*v;
	int			 sv[2];

	if (vm->qmp == NULL || (vm->state != VM_RUNNING &&
	    vm->state != VM_PAUSED)) {
		xasprintf(cause, "VM %s is %s", vm->def.name,
		    vm_state_name(vm->state));
		return (-1);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		xasprintf(cause, "socketpair: %s", strerror(errno));
		return (-1);
	}
	vm_vnc_sndbuf(sv[1]);
	v = xcalloc(1, sizeof *v);
	v->ours = sv[0];
	v->theirs = sv[1];
	v->cb = cb;
	v->arg = arg;
	snprintf(v->fdname, sizeof v->fdname, "qdesk-vnc-%u", ++seq);
	if (qmp_execute_fd(vm->qmp, "getfd", json_pack("{s:s}", "fdname",
	    v->fdname), v->theirs, vm_vnc_gotfd, v) != 0) {
		close(sv[0]);
		close(sv[1]);
		free(v);
		xasprintf(cause, "VM %s: QMP is not connected", vm->def.name);
		return (-1);
	}
	return (0);
}
