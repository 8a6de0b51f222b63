/*
 * vm.* commands. Those that need QEMU send a QMP request and answer in its
 * callback, or wait for the VM to reach a state (vm-wait.c).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "safefile.h"
#include "vm.h"
#include "xmalloc.h"

#define CMD_VM_START_TIMEOUT	120
#define CMD_VM_CONSOLE_MAX	(1024 * 1024)
#define CMD_VM_CONSOLE_TAIL	(64 * 1024)

/* Look the VM up by the "name" argument, or answer NotFound. */
struct vm *
cmd_vm_get(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	struct vm	*vm;

	if ((vm = vm_find(name)) == NULL)
		cmd_error(req, ERR_NOTFOUND, "no VM named %s", name);
	return (vm);
}

/*
 * The VM named, when the command is this host's to run: NULL with *rv
 * the answer when cluster mode routed it (cluster_cmd) or no VM has the
 * name.
 */
static struct vm *
cmd_vm_here(struct cmd_req *req, enum cmd_retval *rv)
{
	int	 r;

	*rv = CMD_RETURN_DONE;
	if (qmpd->cluster != NULL && (r = cluster_cmd(req)) != -1) {
		*rv = r;
		return (NULL);
	}
	return (cmd_vm_get(req));
}

static enum cmd_retval
cmd_vm_create(struct cmd_req *req)
{
	struct vm	*vm;
	char		*cause = NULL;
	const char	*name = cmd_arg_str(req, "name", "");

	if (qmpd->cluster != NULL)
		return (cluster_cmd(req));
	if (cmd_arg_str(req, "host", NULL) != NULL) {
		cmd_error(req, ERR_ARG, "--host needs cluster mode (qmpd "
		    "--cluster FILE)");
		return (CMD_RETURN_DONE);
	}
	if (vm_find(name) != NULL) {
		cmd_error(req, ERR_EXISTS, "a VM named %s already exists",
		    name);
		return (CMD_RETURN_DONE);
	}
	if ((vm = vm_create(req->args, &cause)) == NULL) {
		cmd_fail(req, ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	notify_emit("vm.created", vm->def.name, NULL);
	cmd_reply(req, vm_to_json(vm));
	return (CMD_RETURN_DONE);
}

static enum cmd_retval
cmd_vm_list(struct cmd_req *req)
{
	struct vm	*vm;
	json_t		*a = json_array();
	int		 rv;

	if (qmpd->cluster != NULL && (rv = cluster_cmd(req)) != -1)
		return (rv);
	TAILQ_FOREACH(vm, &vms, entry)
		json_array_append_new(a, vm_to_json(vm));
	cmd_reply(req, json_pack("{s:o}", "vms", a));
	return (CMD_RETURN_DONE);
}

/* A vm.show waiting for query-balloon. */
struct cmd_vm_show {
	struct cmd_req	*req;
	char		 name[VM_NAME_MAX];
};

/*
 * query-balloon's answer: the VM with its balloon's actual size in MiB
 * ("balloon_mib"); without it if QEMU said no, so show still answers.
 */
static void
cmd_vm_show_balloon(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct cmd_vm_show	*q = arg;
	struct vm		*vm;
	json_t			*j, *actual;

	if ((vm = vm_find(q->name)) == NULL)
		cmd_error(q->req, ERR_NOTFOUND, "VM %s went away", q->name);
	else {
		j = vm_to_json(vm);
		actual = json_object_get(ret, "actual");
		if (errclass == NULL && json_is_integer(actual))
			json_object_set_new(j, "balloon_mib", json_integer(
			    json_integer_value(actual) / (1024 * 1024)));
		else
			log_debug("%s: query-balloon: %s", q->name,
			    errdesc != NULL ? errdesc : "no actual size");
		cmd_reply(q->req, j);
	}
	free(q);
}

/*
 * The VM as vm_to_json gives it; a running VM with a balloon asks QEMU
 * for the balloon's size first, answering in the reply callback.
 */
static enum cmd_retval
cmd_vm_show(struct cmd_req *req)
{
	struct vm		*vm;
	struct cmd_vm_show	*q;
	enum cmd_retval		 rv;

	if ((vm = cmd_vm_here(req, &rv)) == NULL)
		return (rv);
	if (!vm->def.balloon || vm->qmp == NULL || (vm->state != VM_RUNNING &&
	    vm->state != VM_PAUSED)) {
		cmd_reply(req, vm_to_json(vm));
		return (CMD_RETURN_DONE);
	}
	q = xcalloc(1, sizeof *q);
	q->req = req;
	strlcpy(q->name, vm->def.name, sizeof q->name);
	if (qmp_execute(vm->qmp, "query-balloon", NULL, cmd_vm_show_balloon,
	    q) != 0) {
		free(q);
		cmd_reply(req, vm_to_json(vm));
		return (CMD_RETURN_DONE);
	}
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_vm_start(struct cmd_req *req)
{
	struct vm	*vm;
	char		*cause = NULL;
	enum cmd_retval	 rv;

	if ((vm = cmd_vm_here(req, &rv)) == NULL)
		return (rv);
	if (vm_start(vm, &cause) != 0) {
		cmd_fail(req, vm_is_active(vm) ? ERR_STATE : ERR_QEMU, cause);
		return (CMD_RETURN_DONE);
	}
	vm_wait_add(vm, VM_MASK(VM_RUNNING), VM_MASK(VM_STOPPED) |
	    VM_MASK(VM_CRASHED), CMD_VM_START_TIMEOUT, cmd_done, req);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_vm_stop(struct cmd_req *req)
{
	struct vm	*vm;
	char		*cause = NULL;
	int		 timeout = cmd_arg_int(req, "timeout", 60);
	enum cmd_retval	 rv;

	if ((vm = cmd_vm_here(req, &rv)) == NULL)
		return (rv);
	if (timeout < 1 || timeout > 3600) {
		cmd_error(req, ERR_ARG, "timeout must be 1 to 3600 seconds");
		return (CMD_RETURN_DONE);
	}
	if (vm_stop(vm, cmd_arg_bool(req, "force", 0), timeout, &cause) != 0) {
		cmd_fail(req, ERR_STATE, cause);
		return (CMD_RETURN_DONE);
	}
	vm_wait_add(vm, VM_MASK(VM_STOPPED), VM_MASK(VM_CRASHED),
	    timeout + 15, cmd_done, req);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_vm_kill(struct cmd_req *req)
{
	struct vm	*vm;
	char		*cause = NULL;

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	if (vm_kill(vm, &cause) != 0) {
		cmd_fail(req, ERR_STATE, cause);
		return (CMD_RETURN_DONE);
	}
	vm_wait_add(vm, VM_MASK(VM_STOPPED) | VM_MASK(VM_CRASHED), 0, 15,
	    cmd_done, req);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_vm_delete(struct cmd_req *req)
{
	struct vm	*vm;
	char		*cause = NULL;
	enum cmd_retval	 rv;

	if ((vm = cmd_vm_here(req, &rv)) == NULL)
		return (rv);
	if (vm_delete(vm, &cause) != 0) {
		cmd_fail(req, ERR_STATE, cause);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_object());
	return (CMD_RETURN_DONE);
}

/* A QMP command on behalf of a request, with the state it leads to. */
struct cmd_vm_qmp {
	struct cmd_req	*req;
	char		 name[VM_NAME_MAX];
	enum vm_state	 next;
	const char	*reason;
};

static void
cmd_vm_qmp_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct cmd_vm_qmp	*q = arg;
	struct vm		*vm;

	vm = vm_find(q->name);
	if (errclass != NULL)
		cmd_error(q->req, ERR_QEMU, "%s: %s", q->name, errdesc);
	else if (vm == NULL)
		cmd_error(q->req, ERR_NOTFOUND, "VM %s went away", q->name);
	else {
		if (vm->state != q->next && vm_is_active(vm))
			vm_set_state(vm, q->next, q->reason);
		cmd_reply(q->req, vm_to_json(vm));
	}
	free(q);
}

/* Run one QMP command if the VM is in a state that allows it. */
static enum cmd_retval
cmd_vm_qmp(struct cmd_req *req, unsigned int allowed, const char *qcmd,
    enum vm_state next, const char *reason)
{
	struct vm		*vm;
	struct cmd_vm_qmp	*q;

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	if ((VM_MASK(vm->state) & allowed) == 0 || vm->qmp == NULL) {
		cmd_error(req, ERR_STATE, "VM %s is %s", vm->def.name,
		    vm_state_name(vm->state));
		return (CMD_RETURN_DONE);
	}
	q = xcalloc(1, sizeof *q);
	q->req = req;
	strlcpy(q->name, vm->def.name, sizeof q->name);
	q->next = next;
	q->reason = reason;
	if (qmp_execute(vm->qmp, qcmd, NULL, cmd_vm_qmp_done, q) != 0) {
		free(q);
		cmd_error(req, ERR_QEMU, "VM %s: QMP is not connected",
		    vm->def.name);
		return (CMD_RETURN_DONE);
	}
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_vm_pause(struct cmd_req *req)
{
	return (cmd_vm_qmp(req, VM_MASK(VM_RUNNING), "stop", VM_PAUSED,
	    "paused by admin"));
}

static enum cmd_retval
cmd_vm_resume(struct cmd_req *req)
{
	struct vm	*vm = vm_find(cmd_arg_str(req, "name", ""));

	if (vm != NULL && vm->state == VM_PAUSED && vm->reason != NULL &&
	    strcmp(vm->reason, VM_MIG_POSTMIGRATE) == 0) {
		cmd_error(req, ERR_STATE, "VM %s migrated away: resuming this "
		    "copy could run the desktop twice", vm->def.name);
		return (CMD_RETURN_DONE);
	}
	return (cmd_vm_qmp(req, VM_MASK(VM_PAUSED), "cont", VM_RUNNING, NULL));
}

static enum cmd_retval
cmd_vm_reboot(struct cmd_req *req)
{
	return (cmd_vm_qmp(req, VM_MASK(VM_RUNNING), "system_reset",
	    VM_RUNNING, NULL));
}

static enum cmd_retval
cmd_vm_wait(struct cmd_req *req)
{
	struct vm	*vm;
	enum vm_state	 s;
	const char	*state = cmd_arg_str(req, "state", "");
	int		 timeout = cmd_arg_int(req, "timeout", 60);

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	if (vm_state_from_name(state, &s) != 0) {
		cmd_error(req, ERR_ARG, "unknown state '%s': use stopped, "
		    "starting, running, paused, stopping or crashed", state);
		return (CMD_RETURN_DONE);
	}
	if (timeout < 0 || timeout > 86400) {
		cmd_error(req, ERR_ARG, "timeout must be 0 to 86400 seconds");
		return (CMD_RETURN_DONE);
	}
	vm_wait_add(vm, VM_MASK(s), 0, timeout, cmd_done, req);
	return (CMD_RETURN_WAIT);
}

/* Serial output is bytes; JSON wants UTF-8. Keep ASCII, mark the rest. */
static json_t *
cmd_vm_text(const char *buf, size_t len)
{
	json_t	*s;
	char	*copy;
	size_t	 i;

	if ((s = json_stringn(buf, len)) != NULL)
		return (s);
	copy = xmalloc(len + 1);
	for (i = 0; i < len; i++) {
		unsigned char c = buf[i];
		copy[i] = (c == 0 || c >= 0x80) ? '?' : c;
	}
	s = json_stringn(copy, len);
	free(copy);
	return (s);
}

static enum cmd_retval
cmd_vm_console(struct cmd_req *req)
{
	struct vm	*vm;
	struct stat	 sb;
	char		*buf, *cause = NULL;
	json_int_t	 off;
	ssize_t		 n;
	size_t		 want;
	int		 fd;

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	if ((fd = vm_rundir_open(vm, "serial.log", O_RDONLY, &cause)) == -1 &&
	    errno != ENOENT) {
		cmd_error(req, ERR_INTERNAL, "%s: %s", vm->def.name, cause);
		free(cause);
		return (CMD_RETURN_DONE);
	}
	free(cause);
	if (fd == -1 || fstat(fd, &sb) == -1) {
		if (fd != -1)
			close(fd);
		cmd_reply(req, json_pack("{s:s,s:i,s:i}", "data", "",
		    "offset", 0, "size", 0));
		return (CMD_RETURN_DONE);
	}
	off = cmd_arg_int(req, "offset", -1);
	if (off < 0)
		off = sb.st_size > CMD_VM_CONSOLE_TAIL ?
		    sb.st_size - CMD_VM_CONSOLE_TAIL : 0;
	if (off > sb.st_size)
		off = sb.st_size;	/* the log was reset: start over */
	want = sb.st_size - off;
	if (want > CMD_VM_CONSOLE_MAX)
		want = CMD_VM_CONSOLE_MAX;
	buf = xmalloc(want + 1);
	n = pread(fd, buf, want, off);
	close(fd);
	if (n < 0)
		n = 0;
	cmd_reply(req, json_pack("{s:o,s:I,s:I}", "data", cmd_vm_text(buf, n),
	    "offset", (json_int_t)(off + n), "size", (json_int_t)sb.st_size));
	free(buf);
	return (CMD_RETURN_DONE);
}

static char *
cmd_vm_base64(const unsigned char *p, size_t len)
{
	static const char	 tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char			*out, *o;
	size_t			 i;

	out = o = xmalloc((len + 2) / 3 * 4 + 1);
	for (i = 0; i + 2 < len; i += 3) {
		*o++ = tab[p[i] >> 2];
		*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*o++ = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*o++ = tab[p[i + 2] & 63];
	}
	if (i < len) {
		*o++ = tab[p[i] >> 2];
		if (i + 1 < len) {
			*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*o++ = tab[(p[i + 1] & 15) << 2];
		} else {
			*o++ = tab[(p[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = '\0';
	return (out);
}

struct cmd_vm_shot {
	struct cmd_req	*req;
	char		*path;
	uid_t		 owner;
	char		 format[4];
};

static void
cmd_vm_screenshot_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct cmd_vm_shot	*s = arg;
	struct stat		 sb;
	unsigned char		*buf = NULL;
	char			*b64, *cause = NULL;
	int			 fd = -1;

	if (errclass != NULL) {
		cmd_error(s->req, ERR_QEMU, "screendump: %s", errdesc);
		goto out;
	}
	/* QEMU wrote it as the VM's uid: no link, no FIFO (safefile.c). */
	fd = safefile_open(s->path, O_RDONLY, 0, s->owner, &cause);
	if (fd == -1 || fstat(fd, &sb) == -1 || sb.st_size > (64 << 20)) {
		cmd_error(s->req, ERR_INTERNAL, "cannot read the screendump "
		    "%s%s%s", s->path, cause != NULL ? ": " : "",
		    cause != NULL ? cause : "");
		free(cause);
		goto out;
	}
	buf = xmalloc(sb.st_size + 1);
	if (read(fd, buf, sb.st_size) != sb.st_size) {
		cmd_error(s->req, ERR_INTERNAL, "short read of %s", s->path);
		goto out;
	}
	b64 = cmd_vm_base64(buf, sb.st_size);
	cmd_reply(s->req, json_pack("{s:s,s:I,s:s}", "format", s->format,
	    "size", (json_int_t)sb.st_size, "data", b64));
	free(b64);
out:
	if (fd != -1)
		close(fd);
	unlink(s->path);
	free(buf);
	free(s->path);
	free(s);
}

static enum cmd_retval
cmd_vm_screenshot(struct cmd_req *req)
{
	struct vm		*vm;
	struct cmd_vm_shot	*s;
	const char		*format = cmd_arg_str(req, "format", "png");

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	if (strcmp(format, "png") != 0 && strcmp(format, "ppm") != 0) {
		cmd_error(req, ERR_ARG, "format must be png or ppm");
		return (CMD_RETURN_DONE);
	}
	if (vm->qmp == NULL || !vm_is_active(vm)) {
		cmd_error(req, ERR_STATE, "VM %s is %s", vm->def.name,
		    vm_state_name(vm->state));
		return (CMD_RETURN_DONE);
	}
	s = xcalloc(1, sizeof *s);
	s->req = req;
	s->owner = vm_spawn_uid(vm);
	strlcpy(s->format, format, sizeof s->format);
	/* QEMU writes it as the VM user, inside the VM's own dir. */
	xasprintf(&s->path, "%s/vms/%s/screen.%s", qmpd->state_dir,
	    vm->def.name, format);
	unlink(s->path);
	qmp_execute(vm->qmp, "screendump", json_pack("{s:s,s:s}", "filename",
	    s->path, "format", format), cmd_vm_screenshot_done, s);
	return (CMD_RETURN_WAIT);
}

/* A SPICE console ticket for an admin (vm-ticket.c). */
static enum cmd_retval
cmd_vm_ticket(struct cmd_req *req)
{
	struct vm	*vm;

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	vm_ticket(vm, cmd_arg_int(req, "expires", 60), NULL, cmd_req_uid(req),
	    cmd_done, req);
	return (CMD_RETURN_WAIT);
}

/* A vm.vnc or desktop.vnc request waiting for QEMU to take its end. */
struct cmd_vm_vnc {
	struct cmd_req	*req;
	char		 name[VM_NAME_MAX];
	int		 audio;		/* its VNC server captures sound */
};

static void
cmd_vm_vnc_done(int fd, const char *err, void *arg)
{
	struct cmd_vm_vnc	*r = arg;

	if (fd == -1)
		cmd_error(r->req, ERR_QEMU, "add_client: %s", err);
	else {
		cmd_reply_fd(r->req, json_pack("{s:s,s:s,s:b}", "vm", r->name,
		    "fd", "attached", "audio", r->audio), fd);
		close(fd);
	}
	free(r);
}

/*
 * Answer req with a VNC connection to vm's console: the reply line
 * carries the fd (SCM_RIGHTS). For vm.vnc and the broker's desktop.vnc.
 */
enum cmd_retval
cmd_vm_vnc_reply(struct vm *vm, struct cmd_req *req)
{
	struct cmd_vm_vnc	*r;
	char			*cause = NULL;

	r = xcalloc(1, sizeof *r);
	r->req = req;
	strlcpy(r->name, vm->def.name, sizeof r->name);
	r->audio = vm->def.audio;
	if (vm_vnc_connect(vm, cmd_vm_vnc_done, r, &cause) != 0) {
		cmd_fail(req, ERR_STATE, cause);
		free(r);
		return (CMD_RETURN_DONE);
	}
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_vm_vnc(struct cmd_req *req)
{
	struct vm	*vm;

	if ((vm = cmd_vm_get(req)) == NULL)
		return (CMD_RETURN_DONE);
	return (cmd_vm_vnc_reply(vm, req));
}

static const struct cmd_arg cmd_vm_ticket_args[] = {
	{ "name", ARG_STR, 1 },
	{ "expires", ARG_INT, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_vm_create_args[] = {
	{ "name", ARG_STR, 1 },
	{ "memory", ARG_INT, 0 },
	{ "vcpus", ARG_INT, 0 },
	{ "accel", ARG_STR, 0 },
	{ "machine", ARG_STR, 0 },
	{ "cpu", ARG_STR, 0 },
	{ "kernel", ARG_STR, 0 },
	{ "initrd", ARG_STR, 0 },
	{ "append", ARG_STR, 0 },
	{ "disk", ARG_STR, 0 },
	{ "disk_format", ARG_STR, 0 },
	{ "display", ARG_STR, 0 },
	{ "listen", ARG_STR, 0 },
	{ "restart", ARG_STR, 0 },
	{ "autostart", ARG_BOOL, 0 },
	{ "profile", ARG_STR, 0 },
	{ "from", ARG_STR, 0 },		/* vm-disk.c */
	{ "store", ARG_STR, 0 },		/* vm-disk.c: a shared one */
	{ "nets", ARG_ARRAY, 0 },		/* vm-net.c */
	CMD_ARGS_VM_DEV,
	{ "host", ARG_STR, 0 },			/* cluster-place.c */
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_vm_stop_args[] = {
	{ "name", ARG_STR, 1 },
	{ "force", ARG_BOOL, 0 },
	{ "timeout", ARG_INT, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_vm_wait_args[] = {
	{ "name", ARG_STR, 1 },
	{ "state", ARG_STR, 1 },
	{ "timeout", ARG_INT, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_vm_console_args[] = {
	{ "name", ARG_STR, 1 },
	{ "offset", ARG_INT, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_vm_screenshot_args[] = {
	{ "name", ARG_STR, 1 },
	{ "format", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_vm_entries[] = {
	{ "vm.create", cmd_vm_create_args, ROLE_ADMIN, cmd_vm_create },
	{ "vm.list", NULL, ROLE_ADMIN, cmd_vm_list },
	{ "vm.show", cmd_name_args, ROLE_ADMIN, cmd_vm_show },
	{ "vm.start", cmd_name_args, ROLE_ADMIN, cmd_vm_start },
	{ "vm.stop", cmd_vm_stop_args, ROLE_ADMIN, cmd_vm_stop },
	{ "vm.kill", cmd_name_args, ROLE_ADMIN, cmd_vm_kill },
	{ "vm.reboot", cmd_name_args, ROLE_ADMIN, cmd_vm_reboot },
	{ "vm.pause", cmd_name_args, ROLE_ADMIN, cmd_vm_pause },
	{ "vm.resume", cmd_name_args, ROLE_ADMIN, cmd_vm_resume },
	{ "vm.delete", cmd_name_args, ROLE_ADMIN, cmd_vm_delete },
	{ "vm.console", cmd_vm_console_args, ROLE_ADMIN, cmd_vm_console },
	{ "vm.screenshot", cmd_vm_screenshot_args, ROLE_ADMIN,
	    cmd_vm_screenshot },
	{ "vm.wait", cmd_vm_wait_args, ROLE_ADMIN, cmd_vm_wait },
	{ "vm.ticket", cmd_vm_ticket_args, ROLE_ADMIN, cmd_vm_ticket },
	{ "vm.vnc", cmd_name_args, ROLE_ADMIN, cmd_vm_vnc },
	{ NULL, NULL, 0, NULL }
};
