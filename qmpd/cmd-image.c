/*
 * image.* commands over the image store (imgstore/store.h). Quick ones
 * (clone, rm, list, verify, gc) answer at once: they touch headers and
 * the index, never image data. Import and flatten copy data: qemu-img
 * (import) or a QEMU block job as an unprivileged uid (flatten) runs as a
 * job the loop watches (img-job.c), its progress goes to the client, and
 * the image is busy until the job's end commits or drops it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "cluster.h"
#include "img.h"
#include "log.h"
#include "qcow2-write.h"
#include "qcow2.h"
#include "qmpd.h"
#include "store.h"
#include "vm.h"
#include "xmalloc.h"

/* Refuse to touch an image a job is working on; 1 if refused. */
static int
cmd_image_refuse_busy(struct cmd_req *req, const char *name)
{
	const char	*what;

	if ((what = img_busy(name)) == NULL)
		return (0);
	cmd_error(req, ERR_BUSY, "image %s is being %s; try again when that "
	    "is done", name, what);
	return (1);
}

static int
cmd_image_import_commit(struct img_op *op, char **cause)
{
	return (imgstore_add_file(op->st, op->name, op->file, "qcow2",
	    "base", NULL, cause));
}

/*
 * image.import: the file is checked (a standalone qcow2 or raw file) and
 * then converted by qemu-img from that same open file into a qcow2 file
 * of the store, under a temporary name until it is complete. With
 * --store S, into shared image store S (a template every host's desktops
 * may stand on: vm create --from T --store S).
 */
static enum cmd_retval
cmd_image_import(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	const char	*file = cmd_arg_str(req, "file", "");
	const char	*format = cmd_arg_str(req, "format", NULL);
	const char	*store = cmd_arg_str(req, "store", NULL);
	struct imgstore	*st;
	struct img_op	*op;
	json_t		*rec;
	uint8_t		 head[8];
	uint64_t	 size;
	char		*cause = NULL;
	char		*argv[] = { IMG_QEMU_IMG, "convert", "-p", "-f",
			    NULL, "-O", "qcow2", "/dev/fd/3", NULL, NULL };
	int		 fd;

	if (imgstore_name_valid(name, &cause) != 0) {
		img_fail(cmd_done, req, IMGSTORE_EINVAL, cause);
		return (CMD_RETURN_DONE);
	}
	if (cmd_image_refuse_busy(req, name))
		return (CMD_RETURN_DONE);
	if ((st = img_store_named(store, &cause)) == NULL) {
		cmd_fail(req, ERR_NOTFOUND, cause);
		return (CMD_RETURN_DONE);
	}
	if ((rec = imgstore_get(st, name, &cause)) != NULL) {
		json_decref(rec);
		cmd_error(req, ERR_EXISTS, "an image named %s already exists",
		    name);
		return (CMD_RETURN_DONE);
	}
	free(cause);
	cause = NULL;
	if (format != NULL && strcmp(format, "raw") != 0 &&
	    strcmp(format, "qcow2") != 0) {
		cmd_error(req, ERR_ARG, "format must be raw or qcow2");
		return (CMD_RETURN_DONE);
	}
	if (file[0] != '/') {
		cmd_error(req, ERR_ARG, "file '%s' must be an absolute path",
		    file);
		return (CMD_RETURN_DONE);
	}
	fd = open(file, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1) {
		cmd_error(req, ERR_ARG, "%s: %s", file, strerror(errno));
		return (CMD_RETURN_DONE);
	}
	/* Without --format, the qcow2 magic decides; the check follows. */
	if (format == NULL)
		format = pread(fd, head, sizeof head, 0) == sizeof head &&
		    qcow2_probe(head, sizeof head) ? "qcow2" : "raw";
	if (chain_check_import_fd(fd, file, format, &size, &cause) != 0) {
		close(fd);
		cmd_error(req, ERR_ARG, "refused: %s", cause);
		free(cause);
		return (CMD_RETURN_DONE);
	}

	op = img_op_new(name, "importing", cmd_done, cmd_done_progress, req);
	op->commit = cmd_image_import_commit;
	op->st = st;
	op->file = imgstore_new_file(name, "qcow2");
	xasprintf(&op->tmp, "%s/%s%s", imgstore_dir(st),
	    QCOW2_WRITE_TMP_PREFIX, op->file);
	argv[4] = (char *)format;
	argv[8] = op->tmp;
	log_info("image %s: importing %s (%s, %llu bytes)", name, file, format,
	    (unsigned long long)size);
	img_op_run(op, argv, fd);
	close(fd);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
cmd_image_clone(struct cmd_req *req)
{
	const char	*parent = cmd_arg_str(req, "parent", "");
	const char	*name = cmd_arg_str(req, "name", "");
	struct vm	*vm;
	char		*cause = NULL;
	int		 rc;

	if (cmd_image_refuse_busy(req, parent) ||
	    cmd_image_refuse_busy(req, name))
		return (CMD_RETURN_DONE);
	if ((vm = img_vm_on(parent)) != NULL) {
		cmd_error(req, ERR_BUSY, "image %s is the disk of VM %s, which "
		    "writes it: clone a snapshot or a template of it (qdesk vm "
		    "template %s NAME)", parent, vm->def.name, vm->def.name);
		return (CMD_RETURN_DONE);
	}
	if ((rc = imgstore_clone(img_store, parent, name, "clone",
	    &cause)) != 0) {
		img_fail(cmd_done, req, rc, cause);
		return (CMD_RETURN_DONE);
	}
	img_record(cmd_done, req, name);
	return (CMD_RETURN_DONE);
}

/* This host's store, or --store S's index here (a shared one). */
static struct imgstore *
cmd_image_store(struct cmd_req *req)
{
	struct imgstore	*st;
	char		*cause = NULL;

	if ((st = img_store_named(cmd_arg_str(req, "store", NULL),
	    &cause)) == NULL)
		cmd_fail(req, ERR_NOTFOUND, cause);
	return (st);
}

static enum cmd_retval
cmd_image_list(struct cmd_req *req)
{
	struct imgstore	*st;
	json_t		*list;
	char		*cause = NULL;

	if ((st = cmd_image_store(req)) == NULL)
		return (CMD_RETURN_DONE);
	if ((list = imgstore_list(st, &cause)) == NULL) {
		img_fail(cmd_done, req, IMGSTORE_ERR, cause);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:o}", "images", list));
	return (CMD_RETURN_DONE);
}

/*
 * image.show: the record, then the chain from the top down to the base
 * as the files say it (each link's sizes and users), or why it is bad.
 */
static enum cmd_retval
cmd_image_show(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	struct imgstore	*st;
	struct chain	*c;
	json_t		*rec, *links, *lrec;
	char		*cause = NULL;
	const char	*what;
	u_int		 i;

	if ((st = cmd_image_store(req)) == NULL)
		return (CMD_RETURN_DONE);
	if ((rec = imgstore_get(st, name, &cause)) == NULL) {
		img_fail(cmd_done, req, IMGSTORE_ENOTFOUND, cause);
		return (CMD_RETURN_DONE);
	}
	if ((what = img_busy(name)) != NULL)
		json_object_set_new(rec, "busy", json_string(what));
	if (imgstore_chain(st, name, &c, &cause) != 0) {
		json_object_set_new(rec, "chain_error", json_string(cause));
		free(cause);
		cmd_reply(req, rec);
		return (CMD_RETURN_DONE);
	}
	links = json_array();
	for (i = 0; i < c->n; i++) {
		lrec = imgstore_get(st, c->links[i].name, &cause);
		if (lrec == NULL) {
			free(cause);
			cause = NULL;
			lrec = json_object();
		}
		json_array_append_new(links, json_pack("{s:s,s:O?,s:s,s:s,"
		    "s:I,s:O?,s:O?}", "name", c->links[i].name, "kind",
		    json_object_get(lrec, "kind"), "file", c->links[i].file,
		    "format", c->links[i].format, "virtual_size",
		    (json_int_t)c->links[i].size, "allocated_size",
		    json_object_get(lrec, "allocated_size"), "users",
		    json_object_get(lrec, "users")));
		json_decref(lrec);
	}
	chain_free(c);
	json_object_set_new(rec, "chain", links);
	cmd_reply(req, rec);
	return (CMD_RETURN_DONE);
}

static enum cmd_retval
cmd_image_rm(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	struct vm	*vm;
	char		*cause = NULL;
	int		 rc;

	if (cmd_image_refuse_busy(req, name))
		return (CMD_RETURN_DONE);
	if ((vm = img_vm_on(name)) != NULL) {
		cmd_error(req, ERR_BUSY, "image %s is the disk of VM %s; "
		    "delete the VM to remove it", name, vm->def.name);
		return (CMD_RETURN_DONE);
	}
	img_prune_users(name);
	if ((rc = imgstore_rm(img_store, name, &cause)) != 0) {
		img_fail(cmd_done, req, rc, cause);
		return (CMD_RETURN_DONE);
	}
	log_info("image %s: removed", name);
	if (qmpd->cluster != NULL)
		cluster_image_removed(name);	/* images/T, if ours */
	cmd_reply(req, json_object());
	return (CMD_RETURN_DONE);
}

/* Does a users array hold vm? */
static int
cmd_image_has_user(json_t *rec, const char *vm)
{
	json_t	*u;
	size_t	 i;

	json_array_foreach(json_object_get(rec, "users"), i, u) {
		if (json_string_value(u) != NULL &&
		    strcmp(json_string_value(u), vm) == 0)
			return (1);
	}
	return (0);
}

/*
 * VM definitions against the index: a VM's disk image must exist and
 * list the VM as a user; a user must be a VM. fix repairs the users and
 * says so in items; otherwise each disagreement is a problem.
 */
static void
cmd_image_check_users(const char *only, json_t *out, int fix)
{
	json_t		*list, *rec, *u;
	struct vm	*vm;
	const char	*image, *name, *user;
	char		*cause = NULL;
	size_t		 i, j;

	TAILQ_FOREACH(vm, &vms, entry) {
		if ((image = vm_disk_image(vm)) == NULL ||
		    (only != NULL && strcmp(only, image) != 0))
			continue;
		if ((rec = imgstore_get(img_store, image, &cause)) == NULL) {
			free(cause);
			cause = NULL;
			if (fix)
				json_array_append_new(out, json_pack(
				    "{s:s,s:n,s:s,s:s++}", "what",
				    "missing-disk", "file", "image", image,
				    "action", "kept: the disk of VM ",
				    vm->def.name, "; delete or re-create "
				    "the VM"));
			else
				json_array_append_new(out, json_pack(
				    "{s:s,s:n,s:s++}", "image", image, "file",
				    "problem", "the disk of VM ", vm->def.name,
				    ", but there is no such image"));
			continue;
		}
		if (!cmd_image_has_user(rec, vm->def.name)) {
			if (fix && imgstore_use(img_store, image, vm->def.name,
			    &cause) == 0)
				json_array_append_new(out, json_pack(
				    "{s:s,s:n,s:s,s:s}", "what", "users",
				    "file", "image", image, "action",
				    "added its VM as a user"));
			else if (!fix)
				json_array_append_new(out, json_pack(
				    "{s:s,s:O?,s:s++}", "image", image, "file",
				    json_object_get(rec, "file"), "problem",
				    "the disk of VM ", vm->def.name,
				    ", which is not among its users"));
			free(cause);
			cause = NULL;
		}
		json_decref(rec);
	}
	if ((list = imgstore_list(img_store, &cause)) == NULL) {
		free(cause);
		return;
	}
	json_array_foreach(list, i, rec) {
		name = json_string_value(json_object_get(rec, "name"));
		if (name == NULL || (only != NULL && strcmp(only, name) != 0))
			continue;
		json_array_foreach(json_object_get(rec, "users"), j, u) {
			if ((user = json_string_value(u)) == NULL ||
			    vm_find(user) != NULL)
				continue;
			if (!fix)
				json_array_append_new(out, json_pack(
				    "{s:s,s:O?,s:s++}", "image", name, "file",
				    json_object_get(rec, "file"), "problem",
				    "lists VM ", user, " as a user, but there "
				    "is no such VM"));
			else if (imgstore_unuse(img_store, name, user,
			    &cause) == 0)
				json_array_append_new(out, json_pack(
				    "{s:s,s:O?,s:s,s:s++}", "what", "users",
				    "file", json_object_get(rec, "file"),
				    "image", name, "action", "removed VM ",
				    user, ", which is gone"));
			free(cause);
			cause = NULL;
		}
	}
	json_decref(list);
}

static enum cmd_retval
cmd_image_verify(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", NULL);
	json_t		*report, *problems;
	char		*cause = NULL;
	int		 rc;

	if ((rc = imgstore_verify(img_store, name, &report, &cause)) != 0) {
		img_fail(cmd_done, req, rc, cause);
		return (CMD_RETURN_DONE);
	}
	problems = json_object_get(report, "problems");
	cmd_image_check_users(name, problems, 0);
	json_object_set_new(report, "ok", json_boolean(
	    json_array_size(problems) == 0));
	cmd_reply(req, report);
	return (CMD_RETURN_DONE);
}

/*
 * image.gc: the store's own gc (orphan and temporary files, dangling
 * records, modes), then VM users. Files of running jobs are locked by
 * qemu-img or QEMU, so gc leaves them alone.
 */
static enum cmd_retval
cmd_image_gc(struct cmd_req *req)
{
	int	 dry_run = cmd_arg_bool(req, "dry_run", 0), rc;
	json_t	*report, *items;
	char	*cause = NULL;

	if ((rc = imgstore_gc(img_store, dry_run, &report, &cause)) != 0) {
		img_fail(cmd_done, req, rc, cause);
		return (CMD_RETURN_DONE);
	}
	items = json_object_get(report, "items");
	if (!dry_run)
		cmd_image_check_users(NULL, items, 1);
	else {
		json_t	*problems = json_array(), *p;
		size_t	 i;

		cmd_image_check_users(NULL, problems, 0);
		json_array_foreach(problems, i, p)
			json_array_append_new(items, json_pack("{s:s,s:O?,"
			    "s:O?,s:s+}", "what", "users", "file",
			    json_object_get(p, "file"), "image",
			    json_object_get(p, "image"), "action",
			    "would fix: ", json_string_value(json_object_get(p,
			    "problem"))));
		json_decref(problems);
	}
	if (json_array_size(items) > 0)
		log_info("image gc%s: %zu items", dry_run ? " (dry run)" : "",
		    json_array_size(items));
	cmd_reply(req, report);
	return (CMD_RETURN_DONE);
}

static int
cmd_image_flatten_commit(struct img_op *op, char **cause)
{
	return (imgstore_replace(img_store, op->name, op->file, op->oldfile,
	    cause));
}

/*
 * image.flatten: a QEMU block job (img-job.c) reads the whole chain and
 * writes one standalone file; the image then takes that file and leaves its parent. Refused
 * while the image has children (they back onto its file) or a running
 * VM writes it.
 */
static enum cmd_retval
cmd_image_flatten(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	struct img_op	*op;
	struct chain	*c;
	struct vm	*vm;
	json_t		*rec;
	char		*cause = NULL;
	int		 rc;

	if (cmd_image_refuse_busy(req, name))
		return (CMD_RETURN_DONE);
	if ((rec = imgstore_get(img_store, name, &cause)) == NULL) {
		img_fail(cmd_done, req, IMGSTORE_ENOTFOUND, cause);
		return (CMD_RETURN_DONE);
	}
	if (json_string_value(json_object_get(rec, "parent")) == NULL) {
		/* Independent already: nothing to do, and that is fine. */
		cmd_reply(req, rec);
		return (CMD_RETURN_DONE);
	}
	if (json_integer_value(json_object_get(rec, "children")) > 0) {
		cmd_error(req, ERR_BUSY, "image %s has children, which back "
		    "onto its file: flatten them instead", name);
		json_decref(rec);
		return (CMD_RETURN_DONE);
	}
	if ((vm = img_vm_on(name)) != NULL && vm_is_active(vm)) {
		cmd_error(req, ERR_STATE, "VM %s runs on image %s: stop it "
		    "first", vm->def.name, name);
		json_decref(rec);
		return (CMD_RETURN_DONE);
	}
	if ((rc = imgstore_chain(img_store, name, &c, &cause)) != 0) {
		json_decref(rec);
		img_fail(cmd_done, req, rc, cause);
		return (CMD_RETURN_DONE);
	}
	op = img_op_new(name, "flattening", cmd_done, cmd_done_progress,
	    req);
	op->commit = cmd_image_flatten_commit;
	op->oldfile = xstrdup(json_string_value(json_object_get(rec, "file")));
	op->file = imgstore_new_file(name, "qcow2");
	xasprintf(&op->tmp, "%s/%s%s", imgstore_dir(img_store),
	    QCOW2_WRITE_TMP_PREFIX, op->file);
	json_decref(rec);
	log_info("image %s: flattening", name);
	/* Over metadata a guest wrote: QEMU as an unprivileged uid, on fds. */
	img_job_flatten(op, c, img_job_uid(name));
	chain_free(c);
	return (CMD_RETURN_WAIT);
}

static const struct cmd_arg cmd_image_import_args[] = {
	{ "name", ARG_STR, 1 },
	{ "file", ARG_STR, 1 },
	{ "format", ARG_STR, 0 },
	{ "store", ARG_STR, 0 },	/* a shared image store (img.c) */
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_image_store_args[] = {
	{ "store", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_image_show_args[] = {
	{ "name", ARG_STR, 1 },
	{ "store", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_image_clone_args[] = {
	{ "parent", ARG_STR, 1 },
	{ "name", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_image_verify_args[] = {
	{ "name", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_image_gc_args[] = {
	{ "dry_run", ARG_BOOL, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_image_entries[] = {
	{ "image.import", cmd_image_import_args, ROLE_ADMIN, cmd_image_import },
	{ "image.clone", cmd_image_clone_args, ROLE_ADMIN, cmd_image_clone },
	{ "image.list", cmd_image_store_args, ROLE_ADMIN, cmd_image_list },
	{ "image.show", cmd_image_show_args, ROLE_ADMIN, cmd_image_show },
	{ "image.rm", cmd_name_args, ROLE_ADMIN, cmd_image_rm },
	{ "image.verify", cmd_image_verify_args, ROLE_ADMIN, cmd_image_verify },
	{ "image.gc", cmd_image_gc_args, ROLE_ADMIN, cmd_image_gc },
	{ "image.flatten", cmd_name_args, ROLE_ADMIN, cmd_image_flatten },
	{ NULL, NULL, 0, NULL }
};
