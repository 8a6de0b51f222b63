/*
 * Chain edits of the image store: a new overlay over an image (clone), a
 * fresh one in place of an image's own (reset, revert), an image's
 * content frozen under a new name (freeze, unfreeze), a flattened file in
 * place of a chain (replace); merging an image out of the middle of
 * its chain is store-merge.c's. Each writes what it needs complete first, changes the
 * records in one transaction and removes what it replaced last, so a
 * crash leaves only what imgstore_gc removes.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "db.h"
#include "log.h"
#include "names.h"
#include "qcow2-write.h"
#include "store-private.h"
#include "store.h"
#include "xmalloc.h"

/*
 * Walk the chain of a file of the store (cheap: one header per link) so
 * that no overlay is ever written over a broken or unsafe chain, or over
 * one already as deep as allowed; its virtual size goes in *size.
 */
static int
store_edit_walk(struct imgstore *st, const char *image, const char *file,
    const char *format, uint64_t *size, char **cause)
{
	struct chain	*c;
	char		*why = NULL;
	int		 rc;

	if (chain_walk(st->dir, file, format, &c, &why) != 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: %s", image,
		    why);
		free(why);
		return (rc);
	}
	if (c->n >= CHAIN_MAX_DEPTH) {
		chain_free(c);
		return (store_fail(cause, IMGSTORE_EINVAL, "image %s: its "
		    "chain is already %d images deep", image, CHAIN_MAX_DEPTH));
	}
	*size = c->links[0].size;
	chain_free(c);
	return (0);
}

/*
 * Look up parent and walk its chain before an overlay is written over
 * it; returns its record and virtual size.
 */
static int
store_edit_parent(struct imgstore *st, const char *parent, json_t **prec,
    uint64_t *size, char **cause)
{
	int	rc;

	if ((*prec = db_get(st->db, st->table, parent)) == NULL)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", parent));
	if (store_str(*prec, "file") == NULL ||
	    store_str(*prec, "format") == NULL)
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: bad "
		    "record", parent);
	else
		rc = store_edit_walk(st, parent, store_str(*prec, "file"),
		    store_str(*prec, "format"), size, cause);
	if (rc != 0) {
		json_decref(*prec);
		*prec = NULL;
	}
	return (rc);
}

/*
 * Write a fresh overlay over the parent's file, then index it: the parent
 * turns read-only first, so a failed commit can only over-protect it, and
 * a failed commit removes the new file.
 */
int
imgstore_clone(struct imgstore *st, const char *parent, const char *name,
    const char *kind, char **cause)
{
	return (imgstore_clone_for(st, parent, name, kind, NULL, cause));
}

/* A clone used by VM vm from the start: one commit, not two. */
int
imgstore_clone_for(struct imgstore *st, const char *parent, const char *name,
    const char *kind, const char *vm, char **cause)
{
	json_t		*prec = NULL, *rec = NULL;
	char		*file = NULL;
	const char	*pfile, *pformat;
	uint64_t	 size;
	int		 rc;

	if (imgstore_name_valid(name, cause) != 0)
		return (IMGSTORE_EINVAL);
	if (vm != NULL && names_valid(vm, "VM", cause) != 0)
		return (IMGSTORE_EINVAL);
	if (strcmp(kind, "clone") != 0 && strcmp(kind, "template") != 0 &&
	    strcmp(kind, "snapshot") != 0)
		return (store_fail(cause, IMGSTORE_EINVAL, "a new overlay is a "
		    "clone, a template or a snapshot, not a %s", kind));
	if ((rc = store_name_free(st, name, cause)) != 0)
		return (rc);
	if ((rc = store_edit_parent(st, parent, &prec, &size, cause)) != 0)
		return (rc);
	pfile = store_str(prec, "file");
	pformat = store_str(prec, "format");

	/* From here onward, all failures need cleanup and use goto fail. */
	file = imgstore_new_file(name, "qcow2");
	if (qcow2_write_overlay(st->dir, file, pfile, pformat, size,
	    cause) != 0) {
		rc = IMGSTORE_ERR;
		goto out;
	}
	rec = store_record(name, file, "qcow2", kind, parent,
	    (size + 511) & ~511ULL, store_allocated(st, file));
	if (vm != NULL)
		json_array_append_new(json_object_get(rec, "users"),
		    json_string(vm));
	if ((rc = store_commit_child(st, name, rec, parent, prec,
	    cause)) != 0)
		goto fail;
	goto out;
fail:
	if (unlinkat(st->dirfd, file, 0) == -1)
		log_warn("imgstore: unlink %s", file);
out:
	free(file);
	json_decref(rec);
	json_decref(prec);
	return (rc);
}

/* What a reset or a revert swaps: the image's old file and parent, the new. */
struct store_swap {
	const char	*name;
	char		*target;	/* the parent to be */
	int		 moving;	/* target is not the parent now */
	json_int_t	 vsize;		/* the image's virtual size */
	char		*oldfile;
	char		*oldparent;	/* the parent moved away from */
	char		*oldpfile;	/* its file, once it has no child left */
	char		*file;		/* the new empty overlay */
	uint64_t	 size;		/* the target's virtual size */
};

/*
 * Check that image sw->name can be given a new overlay over target (its
 * own parent if NULL): a qcow2 overlay without children, not its own
 * parent. Fills the old half of sw.
 */
static int
store_edit_swap_check(struct imgstore *st, struct store_swap *sw,
    const char *target, char **cause)
{
	json_t		*rec;
	const char	*parent, *file = NULL, *format = NULL;
	int		 rc = 0;

	if ((rec = db_get(st->db, st->table, sw->name)) == NULL)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", sw->name));
	parent = store_str(rec, "parent");
	file = store_str(rec, "file");
	format = store_str(rec, "format");
	if (target == NULL)
		target = parent;
	if (target == NULL)
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s has no "
		    "parent to reset to", sw->name);
	else if (strcmp(target, sw->name) == 0)
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s cannot be "
		    "its own parent", sw->name);
	else if (store_int(rec, "children") != 0)
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s has children; "
		    "it cannot be reset", sw->name);
	else if (format == NULL || file == NULL || strcmp(format,
	    "qcow2") != 0)
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s is not a "
		    "qcow2 overlay", sw->name);
	else {
		sw->target = xstrdup(target);
		sw->moving = parent == NULL || strcmp(parent, target) != 0;
		sw->vsize = store_int(rec, "virtual_size");
		sw->oldfile = xstrdup(file);
		if (sw->moving && parent != NULL)
			sw->oldparent = xstrdup(parent);
	}
	json_decref(rec);
	return (rc);
}

/*
 * The record update of a swap, in one transaction: the image takes the
 * new overlay (and, moving, the new parent, one child count moving with
 * it), provided it still has its old file and no children.
 */
static int
store_edit_swap_commit(struct imgstore *st, struct store_swap *sw,
    char **cause)
{
	struct db_txn	*t;
	json_t		*cur, *oprec;
	json_int_t	 left = -1;
	int		 rc = IMGSTORE_ERR;

	if ((t = db_begin(st->db, cause)) == NULL)
		return (IMGSTORE_ERR);
	cur = db_txn_get(t, st->table, sw->name);
	if (cur == NULL || store_str(cur, "file") == NULL ||
	    strcmp(store_str(cur, "file"), sw->oldfile) != 0 ||
	    store_int(cur, "children") != 0) {
		rc = store_fail(cause, IMGSTORE_ERR, "image %s changed during "
		    "the reset", sw->name);
		goto fail;
	}
	json_object_set_new(cur, "file", json_string(sw->file));
	json_object_set_new(cur, "virtual_size", json_integer(
	    (json_int_t)((sw->size + 511) & ~511ULL)));
	json_object_set_new(cur, "allocated_size", json_integer(
	    store_allocated(st, sw->file)));
	if (sw->moving) {
		json_object_set_new(cur, "parent", json_string(sw->target));
		if (store_str(cur, "kind") != NULL &&
		    strcmp(store_str(cur, "kind"), "base") == 0)
			json_object_set_new(cur, "kind", json_string("clone"));
		if ((rc = store_count_child(st, t, sw->target, 1, NULL,
		    cause)) != 0 || (sw->oldparent != NULL &&
		    (rc = store_count_child(st, t, sw->oldparent, -1, &left,
		    cause)) != 0))
			goto fail;
		if (sw->oldparent != NULL && left == 0 && (oprec = db_txn_get(t,
		    st->table, sw->oldparent)) != NULL) {
			if (store_str(oprec, "file") != NULL)
				sw->oldpfile = xstrdup(store_str(oprec,
				    "file"));
			json_decref(oprec);
		}
	}
	if (db_txn_put(t, st->table, sw->name, cur, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto fail;
	}
	json_decref(cur);
	return (db_commit(t, cause) == 0 ? 0 : IMGSTORE_ERR);
fail:
	json_decref(cur);
	db_abort(t);
	return (rc);
}

/*
 * Swap the image's file for a new empty overlay over target (its own
 * parent for a reset) in one record update, then remove the old file:
 * O(1), and a crash leaves either the old or the new file indexed, never
 * neither. Moving to another parent moves one child count with it.
 */
static int
store_edit_swap(struct imgstore *st, const char *name, const char *target,
    char **cause)
{
	struct store_swap	 sw;
	json_t			*prec = NULL;
	const char		*pfile = NULL, *pformat;
	mode_t			 pmode = 0;
	int			 rc, chmodded = 0;

	memset(&sw, 0, sizeof sw);
	sw.name = name;
	if ((rc = store_edit_swap_check(st, &sw, target, cause)) != 0)
		goto out;
	if ((rc = store_edit_parent(st, sw.target, &prec, &sw.size,
	    cause)) != 0)
		goto out;
	if (sw.moving && (uint64_t)sw.vsize != ((sw.size + 511) & ~511ULL)) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s is %lld "
		    "bytes, image %s %llu: they do not fit", name,
		    (long long)sw.vsize, sw.target,
		    (unsigned long long)sw.size);
		goto out;
	}
	pfile = store_str(prec, "file");
	pformat = store_str(prec, "format");

	sw.file = imgstore_new_file(name, "qcow2");
	if (qcow2_write_overlay(st->dir, sw.file, pfile, pformat, sw.size,
	    cause) != 0) {
		rc = IMGSTORE_ERR;
		goto out;
	}
	/* From here onward, all failures need cleanup and use goto fail. */
	if (sw.moving) {
		if (store_set_immutable(st, pfile, 1, &pmode) != 0) {
			rc = store_fail(cause, IMGSTORE_ERR, "%s: cannot make "
			    "it read-only: %s", pfile, strerror(errno));
			goto fail;
		}
		chmodded = store_int(prec, "children") == 0;
	}
	if ((rc = store_edit_swap_commit(st, &sw, cause)) != 0)
		goto fail;
	if (unlinkat(st->dirfd, sw.oldfile, 0) == -1 && errno != ENOENT)
		log_warn("imgstore: unlink %s", sw.oldfile);
	if (sw.oldpfile != NULL && store_set_immutable(st, sw.oldpfile, 0,
	    NULL) != 0)
		log_warn("imgstore: %s: cannot make it writable", sw.oldpfile);
	goto out;
fail:
	if (unlinkat(st->dirfd, sw.file, 0) == -1)
		log_warn("imgstore: unlink %s", sw.file);
	if (chmodded)
		store_chmod(st, pfile, pmode, NULL);
out:
	free(sw.target);
	free(sw.oldfile);
	free(sw.oldparent);
	free(sw.oldpfile);
	free(sw.file);
	json_decref(prec);
	return (rc);
}

int
imgstore_reset(struct imgstore *st, const char *name, char **cause)
{
	return (store_edit_swap(st, name, NULL, cause));
}

/*
 * Point image name at target with a fresh empty overlay (revert to a
 * snapshot). target may be anywhere but name's own subtree: name has no
 * children, so only name itself is refused.
 */
int
imgstore_revert(struct imgstore *st, const char *name, const char *target,
    char **cause)
{
	return (store_edit_swap(st, name, target, cause));
}

/* What a freeze hands over: name's file goes to newname, name gets newfile. */
struct store_freeze {
	const char	*name;
	const char	*newname;
	const char	*kind;
	const json_t	*extra;		/* more fields for newname's record */
	char		*file;		/* name's file, frozen */
	char		*format;
	char		*newfile;	/* name's new empty overlay */
	uint64_t	 size;
};

/*
 * Check that image fz->name can be frozen as a new image fz->newname
 * (free, of a kind that freezes) and fill in its file and size.
 */
static int
store_edit_freeze_check(struct imgstore *st, struct store_freeze *fz,
    char **cause)
{
	json_t		*rec;
	const char	*file, *format;
	int		 rc;

	if (imgstore_name_valid(fz->newname, cause) != 0)
		return (IMGSTORE_EINVAL);
	if (strcmp(fz->kind, "snapshot") != 0 &&
	    strcmp(fz->kind, "template") != 0)
		return (store_fail(cause, IMGSTORE_EINVAL, "a frozen image is "
		    "a snapshot or a template, not a %s", fz->kind));
	if ((rc = store_name_free(st, fz->newname, cause)) != 0)
		return (rc);
	if ((rec = db_get(st->db, st->table, fz->name)) == NULL)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", fz->name));
	file = store_str(rec, "file");
	format = store_str(rec, "format");
	if (store_int(rec, "children") != 0)
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s has children, "
		    "so its content is frozen already", fz->name);
	else if (file == NULL || format == NULL)
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: bad record",
		    fz->name);
	else if ((rc = store_edit_walk(st, fz->name, file, format, &fz->size,
	    cause)) == 0) {
		fz->file = xstrdup(file);
		fz->format = xstrdup(format);
	}
	json_decref(rec);
	return (rc);
}

/*
 * The record update of a freeze, in one transaction: newname takes name's
 * file and name goes on over it with its new overlay, provided newname is
 * still free and name still has its file and no children.
 */
static int
store_edit_freeze_commit(struct imgstore *st, struct store_freeze *fz,
    char **cause)
{
	struct db_txn	*t;
	json_t		*cur = NULL, *nrec = NULL;
	int		 rc = IMGSTORE_ERR;

	if ((t = db_begin(st->db, cause)) == NULL)
		return (IMGSTORE_ERR);
	if ((nrec = db_txn_get(t, st->table, fz->newname)) != NULL) {
		rc = store_fail(cause, IMGSTORE_EEXISTS, "an image named %s "
		    "already exists", fz->newname);
		goto fail;
	}
	cur = db_txn_get(t, st->table, fz->name);
	if (cur == NULL || store_str(cur, "file") == NULL ||
	    strcmp(store_str(cur, "file"), fz->file) != 0 ||
	    store_int(cur, "children") != 0) {
		rc = store_fail(cause, IMGSTORE_ERR, "image %s changed while "
		    "it was being frozen", fz->name);
		goto fail;
	}
	nrec = store_record(fz->newname, fz->file, fz->format, fz->kind,
	    store_str(cur, "parent"), store_int(cur, "virtual_size"),
	    store_allocated(st, fz->file));
	json_object_set_new(nrec, "children", json_integer(1));
	if (fz->extra != NULL)
		json_object_update_missing(nrec, (json_t *)fz->extra);
	json_object_set_new(cur, "file", json_string(fz->newfile));
	json_object_set_new(cur, "format", json_string("qcow2"));
	json_object_set_new(cur, "parent", json_string(fz->newname));
	json_object_set_new(cur, "allocated_size", json_integer(
	    store_allocated(st, fz->newfile)));
	if (store_str(cur, "kind") != NULL &&
	    strcmp(store_str(cur, "kind"), "base") == 0)
		json_object_set_new(cur, "kind", json_string("clone"));
	if (db_txn_put(t, st->table, fz->newname, nrec, cause) != 0 ||
	    db_txn_put(t, st->table, fz->name, cur, cause) != 0)
		goto fail;
	json_decref(nrec);
	json_decref(cur);
	return (db_commit(t, cause) == 0 ? 0 : IMGSTORE_ERR);
fail:
	json_decref(nrec);
	json_decref(cur);
	db_abort(t);
	return (rc);
}

/*
 * Freeze what image name holds as a new image newname (a snapshot or a
 * template) and let name go on as an empty overlay over it: the file
 * changes hands instead of being copied, so this is O(1). The frozen file
 * turns read-only before the commit; a failed commit takes both steps
 * back. Users stay with name.
 */
int
imgstore_freeze(struct imgstore *st, const char *name, const char *newname,
    const char *kind, const json_t *extra, char **cause)
{
	struct store_freeze	fz;
	mode_t			mode = 0;
	int			rc;

	memset(&fz, 0, sizeof fz);
	fz.name = name;
	fz.newname = newname;
	fz.kind = kind;
	fz.extra = extra;
	if ((rc = store_edit_freeze_check(st, &fz, cause)) != 0)
		goto out;
	fz.newfile = imgstore_new_file(name, "qcow2");
	if (qcow2_write_overlay(st->dir, fz.newfile, fz.file, fz.format,
	    fz.size, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto out;
	}
	/* From here onward, all failures need cleanup and use goto fail. */
	if (store_set_immutable(st, fz.file, 1, &mode) != 0) {
		rc = store_fail(cause, IMGSTORE_ERR, "%s: cannot make it "
		    "read-only: %s", fz.file, strerror(errno));
		goto fail;
	}
	if ((rc = store_edit_freeze_commit(st, &fz, cause)) == 0)
		goto out;
	store_chmod(st, fz.file, mode, NULL);
fail:
	if (unlinkat(st->dirfd, fz.newfile, 0) == -1)
		log_warn("imgstore: unlink %s", fz.newfile);
out:
	free(fz.file);
	free(fz.format);
	free(fz.newfile);
	return (rc);
}

/*
 * Take a freeze back while nothing has been written to name's new
 * overlay (a live snapshot QEMU refused): name gets its old file again
 * and newname goes, in one transaction; then the empty overlay goes.
 */
int
imgstore_unfreeze(struct imgstore *st, const char *name, const char *newname,
    char **cause)
{
	struct db_txn	*t;
	json_t		*rec = NULL, *nrec = NULL, *v;
	char		*top = NULL, *file = NULL;
	int		 rc;

	if ((t = db_begin(st->db, cause)) == NULL)
		return (IMGSTORE_ERR);
	rec = db_txn_get(t, st->table, name);
	nrec = db_txn_get(t, st->table, newname);
	if (rec == NULL || nrec == NULL) {
		rc = store_fail(cause, IMGSTORE_ENOTFOUND, "no image named %s",
		    rec == NULL ? name : newname);
		goto fail;
	}
	if (store_str(rec, "parent") == NULL ||
	    strcmp(store_str(rec, "parent"), newname) != 0 ||
	    store_int(rec, "children") != 0 ||
	    store_int(nrec, "children") != 1 ||
	    json_array_size(json_object_get(nrec, "users")) != 0 ||
	    store_str(rec, "file") == NULL || store_str(nrec, "file") == NULL) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s is not a "
		    "fresh overlay over %s alone", name, newname);
		goto fail;
	}
	top = xstrdup(store_str(rec, "file"));
	file = xstrdup(store_str(nrec, "file"));
	json_object_set_new(rec, "file", json_string(file));
	json_object_set(rec, "format", json_object_get(nrec, "format"));
	if ((v = json_object_get(nrec, "parent")) != NULL && !json_is_null(v))
		json_object_set(rec, "parent", v);
	else
		json_object_set_new(rec, "parent", json_null());
	json_object_set_new(rec, "allocated_size", json_integer(
	    store_allocated(st, file)));
	if (db_txn_put(t, st->table, name, rec, cause) != 0 ||
	    db_txn_del(t, st->table, newname, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto fail;
	}
	json_decref(rec);
	json_decref(nrec);
	if (db_commit(t, cause) != 0) {
		free(top);
		free(file);
		return (IMGSTORE_ERR);
	}
	if (unlinkat(st->dirfd, top, 0) == -1 && errno != ENOENT)
		log_warn("imgstore: unlink %s", top);
	if (store_set_immutable(st, file, 0, NULL) != 0)
		log_warn("imgstore: %s: cannot make it writable", file);
	free(top);
	free(file);
	return (0);
fail:
	db_abort(t);
	json_decref(rec);
	json_decref(nrec);
	return (rc);
}

/*
 * Give image name a new standalone file with the same content (a
 * flatten's result, already complete in the store) in place of oldfile;
 * its parent loses a child. Refused if the image gained children or
 * changed file meanwhile: their backing files name the old one.
 */
int
imgstore_replace(struct imgstore *st, const char *name, const char *file,
    const char *oldfile, char **cause)
{
	struct db_txn	*t;
	struct chain	*c = NULL;
	json_t		*rec = NULL, *prec;
	char		*why = NULL, *parent = NULL, *pfile = NULL;
	json_int_t	 left = -1;
	int		 rc;

	if (!chain_bare_name(file))
		return (store_fail(cause, IMGSTORE_EINVAL, "bad file name for "
		    "the image store"));
	if (chain_walk(st->dir, file, "qcow2", &c, &why) != 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "%s", why);
		free(why);
		return (rc);
	}
	if (c->n != 1) {
		chain_free(c);
		return (store_fail(cause, IMGSTORE_EINVAL, "%s still has a "
		    "backing file", file));
	}
	if ((rc = store_txn_get(st, name, &t, &rec, cause)) != 0) {
		chain_free(c);
		return (rc);
	}
	if (store_str(rec, "file") == NULL ||
	    strcmp(store_str(rec, "file"), oldfile) != 0) {
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s changed "
		    "meanwhile", name);
		goto fail;
	}
	if (store_int(rec, "children") != 0) {
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s got children "
		    "meanwhile; they back onto its old file", name);
		goto fail;
	}
	if ((uint64_t)store_int(rec, "virtual_size") != c->links[0].size) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "%s is %llu bytes, "
		    "image %s %lld", file, (unsigned long long)c->links[0].size,
		    name, (long long)store_int(rec, "virtual_size"));
		goto fail;
	}
	if (store_str(rec, "parent") != NULL) {
		parent = xstrdup(store_str(rec, "parent"));
		if ((rc = store_count_child(st, t, parent, -1, &left,
		    cause)) != 0)
			goto fail;
		if (left == 0 && (prec = db_txn_get(t, st->table,
		    parent)) != NULL) {
			if (store_str(prec, "file") != NULL)
				pfile = xstrdup(store_str(prec, "file"));
			json_decref(prec);
		}
	}
	json_object_set_new(rec, "file", json_string(file));
	json_object_set_new(rec, "format", json_string("qcow2"));
	json_object_set_new(rec, "parent", json_null());
	json_object_set_new(rec, "allocated_size", json_integer(
	    store_allocated(st, file)));
	if (db_txn_put(t, st->table, name, rec, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto fail;
	}
	json_decref(rec);
	chain_free(c);
	free(parent);
	if (db_commit(t, cause) != 0) {
		free(pfile);
		return (IMGSTORE_ERR);
	}
	if (unlinkat(st->dirfd, oldfile, 0) == -1 && errno != ENOENT)
		log_warn("imgstore: unlink %s", oldfile);
	if (pfile != NULL && store_set_immutable(st, pfile, 0, NULL) != 0)
		log_warn("imgstore: %s: cannot make it writable", pfile);
	free(pfile);
	return (0);
fail:
	db_abort(t);
	json_decref(rec);
	chain_free(c);
	free(parent);
	free(pfile);
	return (rc);
}
