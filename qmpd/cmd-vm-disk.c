/*
 * vm.* commands on a VM's image-store disk: templates, snapshots, revert,
 * reset. A snapshot SNAP of VM NAME is the image NAME.SNAP, tagged with
 * "vm" and "snapshot" in its record; the VM's disk image keeps its name
 * and goes on as an overlay over the newest state (imgstore_freeze).
 *
 * A live snapshot freezes in the index first, then switches QEMU to the
 * new overlay: add-fd (the file is opened here), blockdev-add with
 * backing null, blockdev-snapshot on the device's current top node. If
 * QEMU refuses, the freeze is undone; QEMU never wrote the new overlay.
 * The guest's filesystems are frozen by its agent around blockdev-snapshot
 * (vm-agent.c) and always thawed; without an agent the reply says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "img.h"
#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "store.h"
#include "vm.h"
#include "xmalloc.h"

/* A live snapshot between its QMP steps. */
struct cmd_vm_snap {
	struct cmd_req	*req;
	char		 vm[VM_NAME_MAX];
	char		*image;		/* the VM's disk */
	char		*snapimg;	/* NAME.SNAP */
	char		*snap;
	char		*top;		/* the device's top node */
	char		 node[32];	/* the new overlay's node */
	int		 fd;		/* the new overlay's file */
	json_int_t	 fdset;		/* -1 until add-fd answered */
	int		 added;		/* blockdev-add done */
	int		 frozen;	/* guest filesystems frozen: thaw */
	char		*fsnote;	/* why they were not frozen */
};

/*
 * Why each command is refused for a clone on a shared image store: every
 * host indexes that store in a table of its own, and a live migration
 * hands over the clone and its template alone (vm-migrate-image.c).
 */
static const struct {
	const char	*cmd;
	const char	*why;
} cmd_vm_disk_shared[] = {
	{ "vm.reset_disk", "a reset there is not done yet" },
	{ "vm.revert", "it has no snapshots to revert to: snapshots are not "
	    "taken there" },
	{ "vm.snapshot", "a snapshot there would be in this host's index "
	    "alone and not move with the desktop: snapshots are not taken "
	    "there" },
	{ "vm.snapshot_rm", "it has no snapshots to remove: snapshots are "
	    "not taken there" },
	{ "vm.snapshots", "it has no snapshots: snapshots are not taken "
	    "there" },
	{ "vm.template", "templates are made in this host's own store (to "
	    "put one on the shared store: qdesk image import NAME FILE "
	    "--store STORE)" },
};

/* vm's disk is on a shared store: answer why req is refused. */
static void
cmd_vm_disk_shared_refuse(struct cmd_req *req, const struct vm *vm)
{
	const char	*why = "not done there yet";
	size_t		 i;

	for (i = 0; i < nitems(cmd_vm_disk_shared); i++)
		if (strcmp(cmd_vm_disk_shared[i].cmd, req->entry->name) == 0)
			why = cmd_vm_disk_shared[i].why;
	cmd_error(req, ERR_ARG, "VM %s: its disk %s is a clone on shared "
	    "image store %s: %s", vm->def.name, vm->def.image, vm->def.store,
	    why);
}

/* The VM named by "name" with an image-store disk, or answer why not. */
static struct vm *
cmd_vm_disk_get(struct cmd_req *req, const char **image)
{
	const char	*name = cmd_arg_str(req, "name", "");
	struct vm	*vm;

	if ((vm = vm_find(name)) == NULL) {
		cmd_error(req, ERR_NOTFOUND, "no VM named %s", name);
		return (NULL);
	}
	if ((*image = vm_disk_image(vm)) == NULL) {
		cmd_error(req, ERR_ARG, "VM %s has no disk from the image "
		    "store (create it with --from IMAGE)", name);
		return (NULL);
	}
	if (vm->def.store != NULL) {
		cmd_vm_disk_shared_refuse(req, vm);
		return (NULL);
	}
	return (vm);
}

/* Refuse unless the VM is stopped; 1 if refused. */
static int
cmd_vm_disk_stopped(struct cmd_req *req, struct vm *vm, const char *doing)
{
	if (!vm_is_active(vm))
		return (0);
	cmd_error(req, ERR_STATE, "VM %s is %s: stop it to %s",
	    vm->def.name, vm_state_name(vm->state), doing);
	return (1);
}

/* Refuse if a job works on the VM's chain; 1 if refused. */
static int
cmd_vm_disk_busy(struct cmd_req *req, struct vm *vm, const char *image)
{
	const char	*busy, *what;

	if ((busy = img_chain_busy(image, &what)) == NULL)
		return (0);
	cmd_error(req, ERR_BUSY, "VM %s: image %s is being %s; try again when "
	    "that is done", vm->def.name, busy, what);
	return (1);
}

/* The record of VM vm's snapshot snap (image vm.snap), or answer why not. */
static json_t *
cmd_vm_disk_snapshot(struct cmd_req *req, struct vm *vm, const char *snap,
    char **snapimg)
{
	json_t		*rec;
	char		*cause = NULL;

	xasprintf(snapimg, "%s.%s", vm->def.name, snap);
	rec = imgstore_get(img_store, *snapimg, &cause);
	free(cause);
	if (rec == NULL || !vm_disk_owns(vm, rec)) {
		json_decref(rec);
		cmd_error(req, ERR_NOTFOUND, "VM %s has no snapshot %s (qdesk "
		    "vm snapshots %s)", vm->def.name, snap, vm->def.name);
		free(*snapimg);
		*snapimg = NULL;
		return (NULL);
	}
	return (rec);
}

static json_t *
cmd_vm_disk_done(struct vm *vm, const char *snap)
{
	return (json_pack("{s:s,s:s?}", "name", vm->def.name, "snapshot",
	    snap));
}

static void
cmd_vm_snap_free(struct cmd_vm_snap *s)
{
	struct vm	*vm;

	/* Always thawed, whatever became of the snapshot. */
	if (s->frozen && (vm = vm_find(s->vm)) != NULL)
		vm_agent_thaw(vm);
	free(s->fsnote);
	if (s->fd != -1)
		close(s->fd);
	free(s->image);
	free(s->snapimg);
	free(s->snap);
	free(s->top);
	free(s);
}

/*
 * A live snapshot failed. If QEMU answered, it still writes the old top:
 * the freeze is undone. If QEMU went away mid-way, the freeze stays (the
 * overlay over the frozen file reads the same disk whichever QEMU wrote
 * last), and the snapshot may hold writes made after it was asked for.
 */
static void
cmd_vm_snap_fail(struct cmd_vm_snap *s, struct qmp *qmp, const char *errclass,
    const char *errdesc)
{
	char	*cause = NULL;
	int	 gone;

	gone = errclass != NULL && (strcmp(errclass, "Disconnected") == 0 ||
	    strcmp(errclass, "Timeout") == 0);
	if (!gone && qmp != NULL) {
		if (s->added)
			qmp_execute(qmp, "blockdev-del", json_pack("{s:s}",
			    "node-name", s->node), NULL, NULL);
		if (s->fdset != -1)
			qmp_execute(qmp, "remove-fd", json_pack("{s:I}",
			    "fdset-id", s->fdset), NULL, NULL);
	}
	close(s->fd);
	s->fd = -1;
	img_busy_clear(s->image);
	if (gone) {
		log_warnx("%s: QEMU went away during snapshot %s: kept",
		    s->vm, s->snap);
		cmd_error(s->req, ERR_QEMU, "VM %s: QEMU went away during the "
		    "live snapshot (%s); snapshot %s was kept, but may hold "
		    "later writes", s->vm, errdesc, s->snap);
	} else if (imgstore_unfreeze(img_store, s->image, s->snapimg,
	    &cause) != 0) {
		log_warnx("%s: undoing snapshot %s: %s", s->vm, s->snap, cause);
		cmd_error(s->req, ERR_QEMU, "VM %s: live snapshot failed: %s; "
		    "and undoing it failed: %s", s->vm, errdesc, cause);
		free(cause);
	} else
		cmd_error(s->req, ERR_QEMU, "VM %s: live snapshot failed, "
		    "nothing changed: %s", s->vm, errdesc);
	cmd_vm_snap_free(s);
}

/* The QMP connection of s's VM if it is still qmp, else NULL. */
static struct qmp *
cmd_vm_snap_qmp(struct cmd_vm_snap *s, struct qmp *qmp)
{
	struct vm	*vm;

	if ((vm = vm_find(s->vm)) == NULL || vm->qmp != qmp)
		return (NULL);
	return (qmp);
}

/* A step failed or the VM went away: 1 if the snapshot was ended. */
static int
cmd_vm_snap_failed(struct cmd_vm_snap *s, struct qmp *qmp,
    const char *errclass, const char *errdesc)
{
	struct qmp	*live = cmd_vm_snap_qmp(s, qmp);

	if (errclass == NULL && live != NULL)
		return (0);
	if (errclass == NULL) {
		errclass = "Disconnected";
		errdesc = "the VM went away";
	}
	cmd_vm_snap_fail(s, live, errclass, errdesc);
	return (1);
}

static void
cmd_vm_snap_switched(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct cmd_vm_snap	*s = arg;

	if (cmd_vm_snap_failed(s, qmp, errclass, errdesc))
		return;
	/* QEMU holds its own dup now; the set can go. */
	qmp_execute(qmp, "remove-fd", json_pack("{s:I}", "fdset-id",
	    s->fdset), NULL, NULL);
	img_busy_clear(s->image);
	log_info("%s: live snapshot %s (node %s over %s)", s->vm, s->snap,
	    s->node, s->top);
	cmd_reply(s->req, json_pack("{s:s,s:s,s:s,s:b,s:b,s:s?}", "name",
	    s->vm, "snapshot", s->snap, "image", s->snapimg, "live", 1,
	    "fsfreeze", s->frozen, "note", s->fsnote));
	cmd_vm_snap_free(s);
}

/* The guest's filesystems are frozen (or cannot be): switch now. */
static void
cmd_vm_snap_frozen(int frozen, const char *note, void *arg)
{
	struct cmd_vm_snap	*s = arg;
	struct vm		*vm;

	s->frozen = frozen;
	if (note != NULL)
		s->fsnote = xstrdup(note);
	if ((vm = vm_find(s->vm)) == NULL || vm->qmp == NULL) {
		cmd_vm_snap_fail(s, NULL, "Disconnected", "the VM went away");
		return;
	}
	if (qmp_execute(vm->qmp, "blockdev-snapshot", json_pack("{s:s,s:s}",
	    "node", s->top, "overlay", s->node), cmd_vm_snap_switched, s) != 0)
		cmd_vm_snap_fail(s, NULL, "Disconnected", "QMP closed");
}

static void
cmd_vm_snap_added(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct cmd_vm_snap	*s = arg;

	if (cmd_vm_snap_failed(s, qmp, errclass, errdesc))
		return;
	s->added = 1;
	vm_agent_freeze(vm_find(s->vm), cmd_vm_snap_frozen, s);
}

static void
cmd_vm_snap_fd_added(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct cmd_vm_snap	*s = arg;
	json_t		*args;
	char		*path;

	if (cmd_vm_snap_failed(s, qmp, errclass, errdesc))
		return;
	s->fdset = json_integer_value(json_object_get(ret, "fdset-id"));
	xasprintf(&path, "/dev/fdset/%lld", (long long)s->fdset);
	args = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s},s:n}", "driver",
	    "qcow2", "node-name", s->node, "discard", "unmap", "file",
	    "driver", "file", "filename", path, "discard", "unmap",
	    "backing");
	free(path);
	if (qmp_execute(qmp, "blockdev-add", args, cmd_vm_snap_added, s) != 0)
		cmd_vm_snap_fail(s, NULL, "Disconnected", "QMP closed");
}

/* The node at the top of device vda, from query-block. */
static void
cmd_vm_snap_queried(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct cmd_vm_snap	*s = arg;
	json_t		*dev;
	const char	*qdev, *node;
	size_t		 i;

	if (cmd_vm_snap_failed(s, qmp, errclass, errdesc))
		return;
	json_array_foreach(ret, i, dev) {
		qdev = json_string_value(json_object_get(dev, "qdev"));
		node = json_string_value(json_object_get(json_object_get(dev,
		    "inserted"), "node-name"));
		if (qdev != NULL && node != NULL &&
		    strncmp(qdev, "/machine/peripheral/vda/", 24) == 0) {
			s->top = xstrdup(node);
			break;
		}
	}
	if (s->top == NULL) {
		cmd_vm_snap_fail(s, qmp, "GenericError", "no disk vda in "
		    "query-block");
		return;
	}
	if (qmp_execute_fd(qmp, "add-fd", json_pack("{s:s}", "opaque",
	    s->image), s->fd, cmd_vm_snap_fd_added, s) != 0)
		cmd_vm_snap_fail(s, NULL, "Disconnected", "QMP closed");
}

/* Freeze the index, open the new top, and start the QMP steps. */
static enum cmd_retval
cmd_vm_snapshot_live(struct cmd_req *req, struct vm *vm, const char *image,
    const char *snap, const char *snapimg, json_t *extra)
{
	struct cmd_vm_snap	*s;
	json_t		*rec;
	char		*cause = NULL, *path, *secret;
	int		 rc, fd;

	if ((rc = imgstore_freeze(img_store, image, snapimg, "snapshot",
	    extra, &cause)) != 0) {
		cmd_error(req, img_errclass(rc), "VM %s: %s", vm->def.name,
		    cause);
		free(cause);
		return (CMD_RETURN_DONE);
	}
	if ((rec = imgstore_get(img_store, image, &cause)) == NULL) {
		cmd_fail(req, ERR_INTERNAL, cause);
		return (CMD_RETURN_DONE);
	}
	path = imgstore_path(img_store, json_string_value(json_object_get(rec,
	    "file")));
	json_decref(rec);
	fd = open(path, O_RDWR | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd == -1) {
		cmd_error(req, ERR_INTERNAL, "%s: %s", path, strerror(errno));
		free(path);
		if (imgstore_unfreeze(img_store, image, snapimg, &cause) != 0) {
			log_warnx("%s: %s", vm->def.name, cause);
			free(cause);
		}
		return (CMD_RETURN_DONE);
	}
	free(path);
	s = xcalloc(1, sizeof *s);
	s->req = req;
	strlcpy(s->vm, vm->def.name, sizeof s->vm);
	s->image = xstrdup(image);
	s->snapimg = xstrdup(snapimg);
	s->snap = xstrdup(snap);
	s->fd = fd;
	s->fdset = -1;
	secret = vm_qmp_secret();
	snprintf(s->node, sizeof s->node, "ov-%.12s", secret);
	free(secret);
	img_busy_set(image, "snapshotted");
	if (qmp_execute(vm->qmp, "query-block", NULL, cmd_vm_snap_queried,
	    s) != 0) {
		cmd_vm_snap_fail(s, NULL, "GenericError",
		    "QMP is not connected");
		return (CMD_RETURN_DONE);
	}
	return (CMD_RETURN_WAIT);
}

/*
 * vm.snapshot: offline on a stopped VM (the index and a new empty file),
 * live on a running or paused one.
 */
static enum cmd_retval
cmd_vm_snapshot(struct cmd_req *req)
{
	const char	*snap = cmd_arg_str(req, "snapshot", ""), *image;
	struct vm	*vm;
	json_t		*extra, *old;
	char		*snapimg, *cause = NULL;
	enum cmd_retval	 ret = CMD_RETURN_DONE;
	int		 rc;

	if ((vm = cmd_vm_disk_get(req, &image)) == NULL)
		return (CMD_RETURN_DONE);
	if (imgstore_name_valid(snap, &cause) != 0) {
		cmd_error(req, ERR_ARG, "snapshot name: %s", cause);
		free(cause);
		return (CMD_RETURN_DONE);
	}
	if (cmd_vm_disk_busy(req, vm, image))
		return (CMD_RETURN_DONE);
	xasprintf(&snapimg, "%s.%s", vm->def.name, snap);
	if (imgstore_name_valid(snapimg, &cause) != 0) {
		cmd_error(req, ERR_ARG, "snapshot %s of VM %s: %s", snap,
		    vm->def.name, cause);
		goto out;
	}
	if ((old = imgstore_get(img_store, snapimg, &cause)) != NULL) {
		if (vm_disk_owns(vm, old))
			cmd_error(req, ERR_EXISTS, "VM %s already has a "
			    "snapshot %s", vm->def.name, snap);
		else
			cmd_error(req, ERR_EXISTS, "an image named %s already "
			    "exists; choose another snapshot name", snapimg);
		json_decref(old);
		goto out;
	}
	free(cause);
	cause = NULL;
	extra = json_pack("{s:s,s:s,s:s}", "vm", vm->def.name, "vm_uuid",
	    vm->def.uuid, "snapshot", snap);
	if (vm->state == VM_RUNNING || vm->state == VM_PAUSED) {
		if (vm->qmp == NULL || qmp_get_state(vm->qmp) != QMP_READY)
			cmd_error(req, ERR_STATE, "VM %s: QMP is not ready",
			    vm->def.name);
		else
			ret = cmd_vm_snapshot_live(req, vm, image, snap,
			    snapimg, extra);
	} else if (vm_is_active(vm))
		cmd_error(req, ERR_STATE, "VM %s is %s: snapshot it when it "
		    "runs or is stopped", vm->def.name,
		    vm_state_name(vm->state));
	else if ((rc = imgstore_freeze(img_store, image, snapimg, "snapshot",
	    extra, &cause)) != 0)
		cmd_error(req, img_errclass(rc), "VM %s: %s", vm->def.name,
		    cause);
	else {
		log_info("%s: snapshot %s", vm->def.name, snap);
		cmd_reply(req, json_pack("{s:s,s:s,s:s,s:b}", "name",
		    vm->def.name, "snapshot", snap, "image", snapimg, "live",
		    0));
	}
	json_decref(extra);
out:
	free(cause);
	free(snapimg);
	return (ret);
}

/* vm.snapshots: the VM's snapshots, oldest first, the current one marked. */
static enum cmd_retval
cmd_vm_snapshots(struct cmd_req *req)
{
	const char	*image, *name;
	struct vm	*vm;
	json_t		*list, *rec, *out, *disk;
	const char	*current = NULL;
	char		*cause = NULL;
	size_t		 i;

	if ((vm = cmd_vm_disk_get(req, &image)) == NULL)
		return (CMD_RETURN_DONE);
	if ((list = imgstore_list(img_store, &cause)) == NULL) {
		cmd_fail(req, ERR_INTERNAL, cause);
		return (CMD_RETURN_DONE);
	}
	if ((disk = imgstore_get(img_store, image, &cause)) != NULL)
		current = json_string_value(json_object_get(disk, "parent"));
	free(cause);
	out = json_array();
	json_array_foreach(list, i, rec) {
		name = json_string_value(json_object_get(rec, "name"));
		if (name == NULL || !vm_disk_owns(vm, rec))
			continue;
		json_array_append_new(out, json_pack("{s:O,s:s,s:O,s:O,s:O,"
		    "s:b}", "snapshot", json_object_get(rec, "snapshot"),
		    "image", name, "parent", json_object_get(rec, "parent"),
		    "created", json_object_get(rec, "created"),
		    "allocated_size", json_object_get(rec, "allocated_size"),
		    "current", current != NULL && strcmp(current, name) == 0));
	}
	json_decref(disk);
	json_decref(list);
	cmd_reply(req, json_pack("{s:o}", "snapshots", out));
	return (CMD_RETURN_DONE);
}

/* vm.revert: the disk becomes a fresh overlay over the snapshot. */
static enum cmd_retval
cmd_vm_revert(struct cmd_req *req)
{
	const char	*snap = cmd_arg_str(req, "snapshot", ""), *image;
	struct vm	*vm;
	json_t		*rec;
	char		*snapimg, *cause = NULL;
	int		 rc;

	if ((vm = cmd_vm_disk_get(req, &image)) == NULL ||
	    cmd_vm_disk_stopped(req, vm, "revert it") ||
	    cmd_vm_disk_busy(req, vm, image))
		return (CMD_RETURN_DONE);
	if ((rec = cmd_vm_disk_snapshot(req, vm, snap, &snapimg)) == NULL)
		return (CMD_RETURN_DONE);
	json_decref(rec);
	if ((rc = imgstore_revert(img_store, image, snapimg, &cause)) != 0) {
		cmd_error(req, img_errclass(rc), "VM %s: %s", vm->def.name,
		    cause);
		free(cause);
	} else {
		log_info("%s: reverted to snapshot %s", vm->def.name, snap);
		cmd_reply(req, cmd_vm_disk_done(vm, snap));
	}
	free(snapimg);
	return (CMD_RETURN_DONE);
}

static int
cmd_vm_merge_commit(struct img_op *op, char **cause)
{
	return (imgstore_drop(img_store, op->also, cause));
}

/*
 * vm.snapshot_rm: a snapshot nothing is based on just goes. One with a
 * single child (the disk, or the next snapshot) is merged into it first:
 * a QEMU block job (img-job.c, as the VM's uid, on fds) copies into the
 * child what it read through the snapshot and points it at the
 * snapshot's parent. Refused
 * while the VM runs on it, or when more than one image is based on it.
 */
static enum cmd_retval
cmd_vm_snapshot_rm(struct cmd_req *req)
{
	const char	*snap = cmd_arg_str(req, "snapshot", ""), *image;
	struct vm	*vm;
	struct img_op	*op;
	struct chain	*c = NULL;
	json_t		*rec;
	char		*snapimg, *cause = NULL, *child = NULL;
	json_int_t	 n;
	int		 rc;

	if ((vm = cmd_vm_disk_get(req, &image)) == NULL ||
	    cmd_vm_disk_busy(req, vm, image))
		return (CMD_RETURN_DONE);
	if ((rec = cmd_vm_disk_snapshot(req, vm, snap, &snapimg)) == NULL)
		return (CMD_RETURN_DONE);
	if (img_busy(snapimg) != NULL) {
		cmd_error(req, ERR_BUSY, "snapshot %s is being %s", snap,
		    img_busy(snapimg));
		goto out;
	}
	n = json_integer_value(json_object_get(rec, "children"));
	if (n == 0) {
		if ((rc = imgstore_rm(img_store, snapimg, &cause)) != 0)
			cmd_error(req, img_errclass(rc), "%s", cause);
		else {
			log_info("%s: snapshot %s removed", vm->def.name, snap);
			cmd_reply(req, cmd_vm_disk_done(vm, snap));
		}
		goto out;
	}
	if ((rc = imgstore_merge_child(img_store, snapimg, &child,
	    &cause)) != 0) {
		cmd_error(req, img_errclass(rc), "snapshot %s: %s", snap,
		    cause);
		goto out;
	}
	if (vm_is_active(vm)) {
		cmd_error(req, ERR_STATE, "VM %s is %s on top of snapshot %s: "
		    "stop it to merge the snapshot away", vm->def.name,
		    vm_state_name(vm->state), snap);
		goto out;
	}
	if (img_busy(child) != NULL) {
		cmd_error(req, ERR_BUSY, "image %s is being %s", child,
		    img_busy(child));
		goto out;
	}
	/* A merge cut short after its rebase: only the index is left. */
	if (imgstore_drop(img_store, snapimg, &cause) == 0) {
		log_info("%s: snapshot %s: finished an earlier merge",
		    vm->def.name, snap);
		cmd_reply(req, cmd_vm_disk_done(vm, snap));
		goto out;
	}
	free(cause);
	cause = NULL;
	/* The child's chain must be safe before QEMU reads it. */
	if ((rc = imgstore_chain(img_store, child, &c, &cause)) != 0) {
		cmd_error(req, img_errclass(rc), "%s", cause);
		goto out;
	}
	if (c->n < 2 || c->links[1].name == NULL ||
	    strcmp(c->links[1].name, snapimg) != 0) {
		cmd_error(req, ERR_INTERNAL, "image %s is not based on image "
		    "%s", child, snapimg);
		goto out;
	}
	op = img_op_new(child, "merging a snapshot into", cmd_done,
	    cmd_done_progress, req);
	op->also = xstrdup(snapimg);
	op->commit = cmd_vm_merge_commit;
	op->reply = cmd_vm_disk_done(vm, snap);
	log_info("%s: merging snapshot %s into %s", vm->def.name, snap, child);
	/* Over metadata the guest wrote: QEMU as the VM's uid, on fds. */
	img_job_merge(op, c, c->n > 2 ? 2 : -1, c->n > 2 ? c->links[2].file :
	    NULL, img_job_uid(child));
	json_decref(rec);
	chain_free(c);
	free(child);
	free(snapimg);
	return (CMD_RETURN_WAIT);
out:
	free(cause);
	json_decref(rec);
	chain_free(c);
	free(child);
	free(snapimg);
	return (CMD_RETURN_DONE);
}

/*
 * vm.template: seal a stopped VM's disk as template NAME. The content
 * moves into the template (read-only from now on) and the VM goes on on
 * an empty overlay over it, so the VM still boots as it was.
 */
static enum cmd_retval
cmd_vm_template(struct cmd_req *req)
{
	const char	*tname = cmd_arg_str(req, "image", ""), *image;
	struct vm	*vm;
	json_t		*extra;
	char		*cause = NULL;
	int		 rc;

	if ((vm = cmd_vm_disk_get(req, &image)) == NULL ||
	    cmd_vm_disk_stopped(req, vm, "make a template of its disk") ||
	    cmd_vm_disk_busy(req, vm, image))
		return (CMD_RETURN_DONE);
	extra = json_pack("{s:s}", "made_from", vm->def.name);
	rc = imgstore_freeze(img_store, image, tname, "template", extra,
	    &cause);
	json_decref(extra);
	if (rc != 0) {
		cmd_error(req, img_errclass(rc), "VM %s: %s", vm->def.name,
		    cause);
		free(cause);
		return (CMD_RETURN_DONE);
	}
	log_info("%s: disk sealed as template %s", vm->def.name, tname);
	cmd_reply(req, json_pack("{s:s,s:s}", "name", vm->def.name, "image",
	    tname));
	return (CMD_RETURN_DONE);
}

static enum cmd_retval
cmd_vm_reset_disk(struct cmd_req *req)
{
	const char	*image;
	struct vm	*vm;
	char		*cause = NULL;

	if ((vm = cmd_vm_disk_get(req, &image)) == NULL)
		return (CMD_RETURN_DONE);
	if (vm_disk_reset(vm, &cause) != 0) {
		cmd_fail(req, vm_is_active(vm) ? ERR_STATE : img_busy(image) ?
		    ERR_BUSY : ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, cmd_vm_disk_done(vm, NULL));
	return (CMD_RETURN_DONE);
}

static const struct cmd_arg cmd_vm_disk_snap_args[] = {
	{ "name", ARG_STR, 1 },
	{ "snapshot", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_vm_disk_template_args[] = {
	{ "name", ARG_STR, 1 },
	{ "image", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_vm_disk_entries[] = {
	{ "vm.template", cmd_vm_disk_template_args, ROLE_ADMIN,
	    cmd_vm_template },
	{ "vm.snapshot", cmd_vm_disk_snap_args, ROLE_ADMIN, cmd_vm_snapshot },
	{ "vm.snapshots", cmd_name_args, ROLE_ADMIN,
	    cmd_vm_snapshots },
	{ "vm.revert", cmd_vm_disk_snap_args, ROLE_ADMIN, cmd_vm_revert },
	{ "vm.snapshot_rm", cmd_vm_disk_snap_args, ROLE_ADMIN,
	    cmd_vm_snapshot_rm },
	{ "vm.reset_disk", cmd_name_args, ROLE_ADMIN,
	    cmd_vm_reset_disk },
	{ NULL, NULL, 0, NULL }
};
