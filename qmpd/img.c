/*
 * qmpd's side of the image store: the store itself, opened once, the
 * images jobs are working on, and the jobs run on behalf of a request
 * (qemu-img with progress to the client, then a commit to the index).
 */
#include <sys/wait.h>

#include <errno.h>
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
#include "proc.h"
#include "qmpd.h"
#include "store.h"
#include "vm.h"
#include "xmalloc.h"

struct imgstore		*img_store;
static json_t		*img_busy_names;	/* name -> what */

const char *
img_errclass(int rc)
{
	switch (rc) {
	case IMGSTORE_ENOTFOUND:
		return (ERR_NOTFOUND);
	case IMGSTORE_EEXISTS:
		return (ERR_EXISTS);
	case IMGSTORE_EBUSY:
		return (ERR_BUSY);
	case IMGSTORE_EINVAL:
		return (ERR_ARG);
	}
	return (ERR_INTERNAL);
}

const char *
img_busy(const char *name)
{
	return (json_string_value(json_object_get(img_busy_names, name)));
}

void
img_busy_set(const char *name, const char *what)
{
	json_object_set_new(img_busy_names, name, json_string(what));
}

void
img_busy_clear(const char *name)
{
	json_object_del(img_busy_names, name);
}

const char *
img_chain_busy(const char *name, const char **what)
{
	static char	 cur[IMGSTORE_NAME_MAX + 1];
	json_t		*rec;
	const char	*parent;
	char		*cause = NULL;
	int		 depth;

	strlcpy(cur, name, sizeof cur);
	for (depth = 0; depth < CHAIN_MAX_DEPTH; depth++) {
		if ((*what = img_busy(cur)) != NULL)
			return (cur);
		if ((rec = imgstore_get(img_store, cur, &cause)) == NULL) {
			free(cause);
			return (NULL);
		}
		parent = json_string_value(json_object_get(rec, "parent"));
		if (parent == NULL) {
			json_decref(rec);
			return (NULL);
		}
		strlcpy(cur, parent, sizeof cur);
		json_decref(rec);
	}
	return (NULL);
}

/* Open the store in DIR/images and say what a crash may have left there. */
/* Shared stores opened so far, by name. */
#define IMG_SHARED_MAX	4
static struct {
	char		*name;
	char		*path;
	struct imgstore	*st;
} img_shared[IMG_SHARED_MAX];

struct imgstore *
img_store_named(const char *name, char **cause)
{
	const char	*path;
	char		*table;
	size_t		 i;

	if (name == NULL)
		return (img_store);
	if (qmpd->cluster == NULL || (path = cluster_store_path(name)) ==
	    NULL) {
		xasprintf(cause, "no shared image store named %s here (qdesk "
		    "image store add %s PATH --shared, in a cluster)", name,
		    name);
		return (NULL);
	}
	for (i = 0; i < IMG_SHARED_MAX && img_shared[i].name != NULL; i++) {
		if (strcmp(img_shared[i].name, name) != 0)
			continue;
		if (strcmp(img_shared[i].path, path) == 0)
			return (img_shared[i].st);
		xasprintf(cause, "shared image store %s moved from %s to %s: "
		    "restart qmpd", name, img_shared[i].path, path);
		return (NULL);
	}
	if (i == IMG_SHARED_MAX) {
		xasprintf(cause, "shared image store %s: at most %d shared "
		    "stores are used by one host", name, IMG_SHARED_MAX);
		return (NULL);
	}
	/* Its own index: its names and gc never mix with this host's. */
	xasprintf(&table, "images:%s", name);
	img_shared[i].st = imgstore_open_table(qmpd->db, table, 1, path,
	    cause);
	free(table);
	if (img_shared[i].st == NULL)
		return (NULL);
	img_shared[i].name = xstrdup(name);
	img_shared[i].path = xstrdup(path);
	return (img_shared[i].st);
}

int
img_init(char **cause)
{
	json_t		*report, *p;
	char		*dir, *why = NULL;
	size_t		 i;

	img_busy_names = json_object();
	xasprintf(&dir, "%s/images", qmpd->state_dir);
	img_store = imgstore_open(qmpd->db, dir, cause);
	free(dir);
	if (img_store == NULL)
		return (-1);
	if (access(IMG_QEMU_IMG, X_OK) != 0)
		log_warnx("%s: %s: image import and flatten will fail "
		    "(install qemu-utils)", IMG_QEMU_IMG, strerror(errno));
	if (imgstore_verify(img_store, NULL, &report, &why) != 0) {
		log_warnx("image store: %s", why);
		free(why);
		return (0);
	}
	json_array_foreach(json_object_get(report, "problems"), i, p) {
		log_warnx("image store: %s%s%s", json_string_value(
		    json_object_get(p, "file")) != NULL ? json_string_value(
		    json_object_get(p, "file")) : "", json_string_value(
		    json_object_get(p, "file")) != NULL ? ": " : "",
		    json_string_value(json_object_get(p, "problem")));
	}
	json_decref(report);
	return (0);
}

/* done gets a store failure (cause freed). */
void
img_fail(done_cb done, void *arg, int rc, char *cause)
{
	done_fail(done, arg, img_errclass(rc), "%s", cause);
	free(cause);
}

/* done gets the record of name as it is now. */
void
img_record(done_cb done, void *arg, const char *name)
{
	img_record_in(img_store, done, arg, name);
}

void
img_record_in(struct imgstore *st, done_cb done, void *arg, const char *name)
{
	json_t	*rec;
	char	*cause = NULL;

	if ((rec = imgstore_get(st, name, &cause)) == NULL)
		img_fail(done, arg, IMGSTORE_ENOTFOUND, cause);
	else
		done_ok(done, arg, rec);
}

void
img_prune_users(const char *name)
{
	json_t		*rec, *u;
	char		*cause = NULL;
	const char	*vm;
	size_t		 i;

	if ((rec = imgstore_get(img_store, name, &cause)) == NULL) {
		free(cause);
		return;
	}
	json_array_foreach(json_object_get(rec, "users"), i, u) {
		if ((vm = json_string_value(u)) == NULL || vm_find(vm) != NULL)
			continue;
		log_info("image %s: VM %s is gone, no longer a user", name, vm);
		if (imgstore_unuse(img_store, name, vm, &cause) != 0) {
			log_warnx("image %s: %s", name, cause);
			free(cause);
			cause = NULL;
		}
	}
	json_decref(rec);
}

/* Tell the store which temporary file the job writes (see gc). */
static void
img_op_writing(struct img_op *op, int on)
{
	const char	*base;

	if (op->tmp == NULL)
		return;
	base = strrchr(op->tmp, '/');
	imgstore_writing(op->st, base != NULL ? base + 1 : op->tmp, on);
}

static void
img_op_free(struct img_op *op)
{
	free(op->name);
	free(op->also);
	free(op->file);
	free(op->tmp);
	free(op->oldfile);
	json_decref(op->reply);
	free(op);
}

struct img_op *
img_op_new(const char *name, const char *what, done_cb done,
    progress_cb progress, void *arg)
{
	struct img_op	*op;

	op = xcalloc(1, sizeof *op);
	op->done = done;
	op->progress = progress;
	op->arg = arg;
	op->name = xstrdup(name);
	op->what = what;
	op->last = -1;
	op->st = img_store;
	return (op);
}

static void
img_op_progress(double pct, void *arg)
{
	struct img_op	*op = arg;
	char		*what;

	if ((int)pct == op->last || op->progress == NULL)
		return;
	op->last = (int)pct;
	xasprintf(&what, "%s %s", op->what, op->name);
	op->progress(op->arg, json_pack("{s:s,s:f,s:i}", "what", what,
	    "done", pct, "total", 100));
	free(what);
}

/*
 * The job is over: on success move its file to the final name and let
 * commit index the result; on failure, or if commit refuses, the new
 * file goes.
 */
static void
img_op_done(int status, const char *output, void *arg)
{
	struct img_op	*op = arg;
	char		*path = NULL, *cause = NULL, st[64];
	int		 rc;

	img_busy_clear(op->name);
	if (op->also != NULL)
		img_busy_clear(op->also);
	img_op_writing(op, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (op->tmp != NULL)
			unlink(op->tmp);
		proc_status_text(status, st, sizeof st);
		done_fail(op->done, op->arg, ERR_INTERNAL, "%s %s failed "
		    "(qemu-img %s)%s%s", op->what, op->name, st,
		    output[0] != '\0' ? ": " : "", output);
		log_warnx("%s %s: qemu-img %s: %s", op->what, op->name, st,
		    output);
		goto out;
	}
	if (op->file != NULL) {
		path = imgstore_path(op->st, op->file);
		if (qcow2_write_rename(op->tmp, path) != 0) {
			done_fail(op->done, op->arg, ERR_INTERNAL, "%s: %s",
			    path, strerror(errno));
			unlink(op->tmp);
			goto out;
		}
	}
	if ((rc = op->commit(op, &cause)) != 0) {
		if (path != NULL)
			unlink(path);
		img_fail(op->done, op->arg, rc, cause);
		goto out;
	}
	log_info("image %s: %s done", op->name, op->what);
	if (op->reply != NULL) {
		done_ok(op->done, op->arg, op->reply);
		op->reply = NULL;
	} else
		img_record_in(op->st, op->done, op->arg, op->name);
out:
	free(path);
	img_op_free(op);
}

void
img_op_abort(struct img_op *op, const char *cause)
{
	done_fail(op->done, op->arg, ERR_INTERNAL, "%s", cause);
	if (op->tmp != NULL)
		unlink(op->tmp);
	img_op_free(op);
}

/* The job started (rc 0) or not: answer and free, or mark busy. */
static int
img_op_started(struct img_op *op, int rc, char *cause)
{
	if (rc != 0) {
		img_op_abort(op, cause);
		free(cause);
		return (-1);
	}
	img_busy_set(op->name, op->what);
	if (op->also != NULL)
		img_busy_set(op->also, op->what);
	img_op_writing(op, 1);
	return (0);
}

int
img_op_run(struct img_op *op, char **argv, int infd)
{
	char	*cause = NULL;
	int	 rc;

	rc = img_job_start(argv, infd, img_op_progress, img_op_done, op,
	    &cause);
	return (img_op_started(op, rc, cause));
}

int
img_op_run_qemu(struct img_op *op, uid_t uid,
    const struct img_job_node *nodes, u_int n, const char *cmd,
    json_t *cmdargs)
{
	char	*cause = NULL;
	int	 rc;

	rc = img_job_qemu(uid, nodes, n, cmd, cmdargs, img_op_progress,
	    img_op_done, op, &cause);
	return (img_op_started(op, rc, cause));
}

/* The VM whose disk is image name, even if the image forgot it. */
struct vm *
img_vm_on(const char *name)
{
	struct vm	*vm;
	const char	*image;

	TAILQ_FOREACH(vm, &vms, entry) {
		if ((image = vm_disk_image(vm)) != NULL &&
		    strcmp(image, name) == 0)
			return (vm);
	}
	return (NULL);
}
