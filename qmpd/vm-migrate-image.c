/*
 * Live migration of a desktop on the image store (issue 14): its disk is
 * a linked clone, NAME-disk, over template T in the host's own store.
 * With --storage copy (the default for such a desktop) only the clone's
 * top crosses: the source says which template it stands on and that
 * template's sha256; the target has T with the same sum (fetched from
 * the cluster as placement does when it lacks it: cluster-image.c),
 * makes a fresh clone over its T, indexed as the VM's disk, and exports
 * it; the source mirrors the top alone (blockdev-mirror sync "top",
 * vm-migrate-mirror.c). Afterwards vm_delete takes the clone of the side
 * that lost the desktop with its record: the source's after success,
 * the target's after a failure.
 *
 * A clone on a shared image store (vm create --from T --store S) moves
 * with --storage shared, its default: both hosts see S at the same path,
 * so nothing is copied; the target's index of S learns the clone (and T,
 * if it did not know it), the same files, and QEMU there opens the same
 * chain. The side that lost the desktop forgets the clone and leaves the
 * file (vm-disk.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cluster.h"
#include "compat.h"
#include "img.h"
#include "log.h"
#include "qmpd.h"
#include "store.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_MIG_SUM_SHOWN	12	/* hex digits of a sum in a message */

/* What migrates of a VM on the image store; vm_migrate_check's part. */
int
vm_migrate_image_check(const struct vm_def *def, int copy, char **cause)
{
	if (def->store != NULL && copy) {
		xasprintf(cause, "VM %s: its disk %s is on shared image store "
		    "%s, which the target sees: use --storage shared (its "
		    "default)", def->name, def->image, def->store);
		return (-1);
	}
	if (qmpd->cluster == NULL) {
		xasprintf(cause, "VM %s runs on the image store (%s): its "
		    "template comes through the cluster's template copy, so "
		    "it migrates between cluster hosts only", def->name,
		    def->image);
		return (-1);
	}
	if (!copy && def->store == NULL) {
		xasprintf(cause, "VM %s: its disk %s is on this host's own "
		    "image store, which the target does not see: use "
		    "--storage copy (its default), which copies the clone's "
		    "top", def->name, def->image);
		return (-1);
	}
	if (def->from == NULL) {
		xasprintf(cause, "VM %s: its disk %s names no template it was "
		    "cloned from", def->name, def->image);
		return (-1);
	}
	return (0);
}

/* The VM's own snapshots, which would stay behind: their names, or NULL. */
static char *
vm_migrate_image_snapshots(const struct vm *vm, struct imgstore *st)
{
	json_t		*list, *rec;
	size_t		 i;
	char		*names = NULL, *s;
	const char	*name;
	char		*why = NULL;

	if ((list = imgstore_list(st, &why)) == NULL) {
		free(why);
		return (NULL);
	}
	json_array_foreach(list, i, rec) {
		name = json_string_value(json_object_get(rec, "name"));
		if (name == NULL || !vm_disk_owns(vm, rec))
			continue;
		xasprintf(&s, "%s%s%s", names != NULL ? names : "",
		    names != NULL ? ", " : "", name);
		free(names);
		names = s;
	}
	json_decref(list);
	return (names);
}

/*
 * The source's offer: req gains "image" {name, template, sha256, format},
 * what the target needs to stand a clone on the same template. Refused:
 * a clone not directly over its template (snapshots in the chain) or
 * with snapshots beside it, and a template not hashed yet.
 */
int
vm_migrate_image_offer(struct vm *vm, json_t *req, char **cause)
{
	const char	*image = vm->def.image, *parent, *sum, *format;
	struct imgstore	*st;
	json_t		*rec = NULL, *tpl = NULL;
	char		*why = NULL, *snaps;
	int		 rv = -1;

	if (image == NULL)
		return (0);
	if ((st = img_store_named(vm->def.store, &why)) == NULL) {
		xasprintf(cause, "VM %s: %s", vm->def.name, why);
		goto out;
	}
	if ((rec = imgstore_get(st, image, &why)) == NULL) {
		xasprintf(cause, "VM %s: its disk: %s", vm->def.name, why);
		goto out;
	}
	parent = json_string_value(json_object_get(rec, "parent"));
	if (parent == NULL || strcmp(parent, vm->def.from) != 0) {
		xasprintf(cause, "VM %s: its disk %s stands on %s, not directly "
		    "on its template %s (a snapshot or a revert since; vm "
		    "snapshot-rm merges one away while the VM is stopped): "
		    "only a clone of its template migrates yet", vm->def.name,
		    image, parent != NULL ? parent : "nothing", vm->def.from);
		goto out;
	}
	if ((snaps = vm_migrate_image_snapshots(vm, st)) != NULL) {
		xasprintf(cause, "VM %s has snapshots (%s), which would stay on "
		    "this host: remove them first", vm->def.name, snaps);
		free(snaps);
		goto out;
	}
	if ((tpl = imgstore_get(st, parent, &why)) == NULL) {
		xasprintf(cause, "VM %s: its template: %s", vm->def.name, why);
		goto out;
	}
	if (json_string_value(json_object_get(tpl, "parent")) != NULL) {
		xasprintf(cause, "VM %s: its template %s stands on %s: only a "
		    "standalone template is copied between hosts", vm->def.name,
		    parent, json_string_value(json_object_get(tpl, "parent")));
		goto out;
	}
	format = json_string_value(json_object_get(rec, "format"));
	/* Shared: the same files there; the target indexes them. */
	if (vm->def.store != NULL) {
		json_object_set_new(req, "image", json_pack("{s:s,s:s,s:s,s:O,"
		    "s:O,s:O,s:O}", "name", image, "template", parent, "store",
		    vm->def.store, "file", json_object_get(rec, "file"),
		    "template_file", json_object_get(tpl, "file"),
		    "template_format", json_object_get(tpl, "format"),
		    "template_kind", json_object_get(tpl, "kind")));
		rv = 0;
		goto out;
	}
	if ((sum = cluster_image_sum(tpl)) == NULL) {
		xasprintf(cause, "VM %s: template %s is not hashed here yet "
		    "(qmpd does it within seconds of an import): try again",
		    vm->def.name, parent);
		goto out;
	}
	json_object_set_new(req, "image", json_pack("{s:s,s:s,s:s,s:s}",
	    "name", image, "template", parent, "sha256", sum, "format",
	    format != NULL ? format : "qcow2"));
	rv = 0;
out:
	free(why);
	json_decref(rec);
	json_decref(tpl);
	return (rv);
}

/*
 * The offer's refusals before anything is asked of the target (the offer
 * itself is made once QEMU said the disk's size).
 */
int
vm_migrate_image_ready(struct vm *vm, char **cause)
{
	json_t	*probe = json_object();
	int	 rv;

	rv = vm_migrate_image_offer(vm, probe, cause);
	json_decref(probe);
	return (rv);
}

/* ---- the target ---- */

struct vm_incoming_fetch {
	json_t				*args;
	done_cb				 done;
	void				*done_arg;
	char				*name;
	char				*template;
	int				 aborted;
	TAILQ_ENTRY(vm_incoming_fetch)	 entry;
};

/* Prepares waiting for their template, for migrate.abort to find. */
static TAILQ_HEAD(, vm_incoming_fetch) vm_incoming_fetches =
    TAILQ_HEAD_INITIALIZER(vm_incoming_fetches);

static void
vm_incoming_fetch_free(struct vm_incoming_fetch *f)
{
	TAILQ_REMOVE(&vm_incoming_fetches, f, entry);
	json_decref(f->args);
	free(f->name);
	free(f->template);
	free(f);
}

/*
 * The template came (or did not): prepare again, or say why not. A
 * source that gave up meanwhile (migrate.abort) gets no half here.
 */
static void
vm_incoming_image_fetched(const char *cause, void *arg)
{
	struct vm_incoming_fetch	*f = arg;

	if (f->aborted)
		done_fail(f->done, f->done_arg, ERR_STATE, "target: the source "
		    "aborted while template %s came", f->template);
	else if (cause != NULL)
		done_fail(f->done, f->done_arg, ERR_STATE, "target: template %s "
		    "could not be had on host %s: %s", f->template,
		    cluster_name(), cause);
	else
		vm_incoming_prepare(f->args, f->done, f->done_arg);
	vm_incoming_fetch_free(f);
}

/* migrate.abort of a VM not here yet: 1 if its prepare waited. */
int
vm_incoming_image_abort(const char *name)
{
	struct vm_incoming_fetch	*f;
	int				 found = 0;

	TAILQ_FOREACH(f, &vm_incoming_fetches, entry) {
		if (strcmp(f->name, name) == 0 && !f->aborted) {
			f->aborted = 1;
			found = 1;
			log_info("%s: incoming migration aborted by the source "
			    "while template %s comes", name, f->template);
		}
	}
	return (found);
}

/*
 * Before a prepare with an image: the template here, fetched if this
 * host lacks it. Returns 0 to go on now, 1 if the prepare was taken
 * over (it runs again once the template came, or is answered).
 */
int
vm_incoming_image_need(json_t *args, done_cb done, void *arg)
{
	struct vm_incoming_fetch	*f;
	json_t				*img = json_object_get(args, "image");
	json_t				*rec;
	const char			*tpl;
	char				*cause = NULL;
	int				 rc;

	tpl = json_string_value(json_object_get(img, "template"));
	/* Once fetched, vm_incoming_image_clone checks what came. */
	if (tpl == NULL || qmpd->cluster == NULL ||
	    json_object_get(img, "store") != NULL ||
	    json_is_true(json_object_get(args, "template_fetched")))
		return (0);
	if ((rec = imgstore_get(img_store, tpl, &cause)) != NULL) {
		json_decref(rec);
		return (0);
	}
	free(cause);
	cause = NULL;
	f = xcalloc(1, sizeof *f);
	f->args = json_copy(args);
	json_object_set_new(f->args, "template_fetched", json_true());
	f->done = done;
	f->done_arg = arg;
	f->name = xstrdup(json_string_value(json_object_get(args, "name")) !=
	    NULL ? json_string_value(json_object_get(args, "name")) : "");
	f->template = xstrdup(tpl);
	TAILQ_INSERT_TAIL(&vm_incoming_fetches, f, entry);
	log_info("%s: incoming migration needs template %s: fetching it",
	    json_string_value(json_object_get(args, "name")), tpl);
	if ((rc = cluster_image_need(tpl, vm_incoming_image_fetched, f,
	    &cause)) == 0)
		return (1);
	vm_incoming_fetch_free(f);
	if (rc == 1)
		return (0);
	done_fail(done, arg, ERR_STATE, "target: template %s could not be had "
	    "on host %s: %s", tpl, cluster_name(), cause);
	free(cause);
	return (1);
}

/* A clone of that name with no VM here: what an earlier half left. */
static int
vm_incoming_image_leftover(struct vm *vm, const char *name, char **cause)
{
	json_t	*rec;
	char	*why = NULL;

	if ((rec = imgstore_get(img_store, name, &why)) == NULL) {
		free(why);
		return (0);
	}
	json_decref(rec);
	(void)imgstore_unuse(img_store, name, vm->def.name, &why);
	free(why);
	why = NULL;
	if (imgstore_rm(img_store, name, &why) != 0) {
		xasprintf(cause, "image %s is here already and cannot go: %s",
		    name, why);
		free(why);
		return (-1);
	}
	log_info("%s: image %s, left by an earlier VM of that name, removed",
	    vm->def.name, name);
	return (0);
}

/*
 * --storage copy of an image-store disk: a fresh clone over this host's
 * copy of the template, which must have the source's sum; it is the
 * VM's disk here, of the source's size. vm->mig->image names it until
 * the VM's record owns it.
 */
int
vm_incoming_image_clone(struct vm *vm, json_t *args, long long size,
    char **cause)
{
	json_t		*img = json_object_get(args, "image"), *rec;
	const char	*name, *tpl, *sum, *here;
	char		*why = NULL;
	long long	 vsize;

	name = json_string_value(json_object_get(img, "name"));
	tpl = json_string_value(json_object_get(img, "template"));
	sum = json_string_value(json_object_get(img, "sha256"));
	if (name == NULL || tpl == NULL || sum == NULL) {
		xasprintf(cause, "the source sent no image, template and "
		    "sha256 for disk %s", vm->def.image);
		return (-1);
	}
	if (strcmp(name, vm->def.image) != 0 ||
	    strcmp(tpl, vm->def.from) != 0) {
		xasprintf(cause, "the source's image %s over %s is not the "
		    "definition's %s over %s", name, tpl, vm->def.image,
		    vm->def.from);
		return (-1);
	}
	if ((rec = imgstore_get(img_store, tpl, &why)) == NULL) {
		xasprintf(cause, "template %s is not on host %s: %s", tpl,
		    cluster_name(), why);
		free(why);
		return (-1);
	}
	here = cluster_image_sum(rec);
	if (here == NULL) {
		xasprintf(cause, "template %s on host %s is not hashed yet: "
		    "try again in a few seconds", tpl, cluster_name());
		json_decref(rec);
		return (-1);
	}
	if (strcmp(here, sum) != 0) {
		xasprintf(cause, "template %s on host %s is not the source's "
		    "(sha256 %.*s here, %.*s there): the desktop's disk stands "
		    "on the source's; nothing was started", tpl, cluster_name(),
		    VM_MIG_SUM_SHOWN, here, VM_MIG_SUM_SHOWN, sum);
		json_decref(rec);
		return (-1);
	}
	json_decref(rec);
	if (vm_incoming_image_leftover(vm, name, cause) != 0)
		return (-1);
	if (imgstore_clone_for(img_store, tpl, name, "clone", vm->def.name,
	    &why) != 0) {
		xasprintf(cause, "clone %s of %s: %s", name, tpl, why);
		free(why);
		return (-1);
	}
	vm->mig->image = xstrdup(name);
	if ((rec = imgstore_get(img_store, name, &why)) == NULL) {
		xasprintf(cause, "clone %s: %s", name, why);
		free(why);
		return (-1);
	}
	vsize = json_integer_value(json_object_get(rec, "virtual_size"));
	json_decref(rec);
	/* The mirror needs both ends of one size. */
	if (vsize != size) {
		xasprintf(cause, "disk %s is %lld bytes on the source, but a "
		    "clone of %s is %lld here (was it resized?)", name, size,
		    tpl, vsize);
		return (-1);
	}
	log_info("%s: disk %s cloned from %s (sha256 %.*s, the source's) for "
	    "the incoming top", vm->def.name, name, tpl, VM_MIG_SUM_SHOWN,
	    sum);
	return (0);
}

/*
 * --storage shared of a clone on shared image store S: this host's
 * index of S learns the source's files (the template too, if it did not
 * know it), and the clone is the VM's disk here. Nothing is written but
 * the index. vm->mig->adopted says so until the VM's record owns it.
 */
int
vm_incoming_image_adopt(struct vm *vm, json_t *args, char **cause)
{
	json_t		*img = json_object_get(args, "image"), *rec;
	struct imgstore	*st;
	const char	*name, *tpl, *file, *tfile, *tformat, *tkind, *store;
	const char	*have;
	char		*why = NULL, *path;
	int		 rc;

	name = json_string_value(json_object_get(img, "name"));
	tpl = json_string_value(json_object_get(img, "template"));
	store = json_string_value(json_object_get(img, "store"));
	file = json_string_value(json_object_get(img, "file"));
	tfile = json_string_value(json_object_get(img, "template_file"));
	tformat = json_string_value(json_object_get(img, "template_format"));
	tkind = json_string_value(json_object_get(img, "template_kind"));
	if (name == NULL || tpl == NULL || store == NULL || file == NULL ||
	    tfile == NULL || tformat == NULL || tkind == NULL) {
		xasprintf(cause, "the source sent no shared store, clone and "
		    "template files for disk %s", vm->def.image);
		return (-1);
	}
	if (strcmp(name, vm->def.image) != 0 || strcmp(tpl, vm->def.from) != 0
	    || vm->def.store == NULL || strcmp(store, vm->def.store) != 0) {
		xasprintf(cause, "the source's image %s over %s on store %s is "
		    "not the definition's", name, tpl, store);
		return (-1);
	}
	if ((st = img_store_named(store, &why)) == NULL) {
		xasprintf(cause, "host %s: %s", cluster_name(), why);
		free(why);
		return (-1);
	}
	path = imgstore_path(st, file);
	rc = access(path, R_OK);
	if (rc != 0)
		xasprintf(cause, "the clone %s is not at %s on host %s: is "
		    "store %s mounted there?", name, path, cluster_name(),
		    store);
	free(path);
	if (rc != 0)
		return (-1);
	/* Its template: known here already, by the same file, or learnt. */
	if ((rec = imgstore_get(st, tpl, &why)) != NULL) {
		have = json_string_value(json_object_get(rec, "file"));
		rc = have == NULL || strcmp(have, tfile) != 0;
		if (rc)
			xasprintf(cause, "template %s on store %s is file %s "
			    "here but %s on the source", tpl, store, have != NULL
			    ? have : "?", tfile);
		json_decref(rec);
		if (rc)
			return (-1);
	} else {
		free(why);
		why = NULL;
		if (imgstore_add_file(st, tpl, tfile, tformat, tkind, NULL,
		    &why) != 0) {
			xasprintf(cause, "template %s on store %s: %s", tpl,
			    store, why);
			free(why);
			return (-1);
		}
		log_info("%s: template %s of shared store %s indexed here",
		    vm->def.name, tpl, store);
	}
	/* A record of that name an earlier half left: forgotten, not rm. */
	if ((rec = imgstore_get(st, name, &why)) != NULL) {
		json_decref(rec);
		if (imgstore_forget(st, name, &why) != 0) {
			xasprintf(cause, "image %s on store %s is here already: "
			    "%s", name, store, why);
			free(why);
			return (-1);
		}
	}
	free(why);
	why = NULL;
	if (imgstore_add_file(st, name, file, "qcow2", "clone", tpl,
	    &why) != 0 || imgstore_use(st, name, vm->def.name, &why) != 0) {
		xasprintf(cause, "clone %s on store %s: %s", name, store, why);
		free(why);
		why = NULL;
		if (imgstore_forget(st, name, &why) != 0)
			free(why);
		return (-1);
	}
	vm->mig->adopted = 1;
	log_info("%s: disk %s on shared store %s indexed here (file %s over "
	    "%s)", vm->def.name, name, store, file, tfile);
	return (0);
}

/* Clone image of VM vmname, made here for an incoming half, goes. */
void
vm_incoming_image_drop(const char *vmname, const char *image)
{
	char	*why = NULL;

	(void)imgstore_unuse(img_store, image, vmname, &why);
	free(why);
	why = NULL;
	if (imgstore_rm(img_store, image, &why) != 0) {
		log_warnx("%s: clone %s kept: %s", vmname, image, why);
		free(why);
	} else
		log_info("%s: clone %s of an incoming half removed", vmname,
		    image);
}

/* A prepare that failed before the VM was listed: its clone goes. */
void
vm_incoming_image_undo(struct vm *vm)
{
	struct imgstore	*st;
	char		*why = NULL;

	if (vm->mig != NULL && vm->mig->image != NULL)
		vm_incoming_image_drop(vm->def.name, vm->mig->image);
	/* A shared store's clone is the source's still: forgotten here. */
	if (vm->mig != NULL && vm->mig->adopted &&
	    (st = img_store_named(vm->def.store, &why)) != NULL &&
	    imgstore_forget(st, vm->def.image, &why) != 0)
		log_warnx("%s: %s", vm->def.name, why);
	free(why);
}
