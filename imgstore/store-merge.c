/*
 * Merging an image out of the middle of its chain (a snapshot removed
 * while one image is based on it), in two halves around a qemu-img job:
 * imgstore_merge_child and imgstore_merge_argv plan the job, which makes
 * the child's file back onto the image's parent directly, and
 * imgstore_drop then takes the image out of the index and its file away.
 */
#include <sys/types.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "db.h"
#include "log.h"
#include "store-private.h"
#include "store.h"
#include "xmalloc.h"

/*
 * How many images of all are based on name: 0, 1 or 2 (for two or more);
 * the first two found go in *child and *other, borrowed from all.
 */
static int
store_merge_children(json_t *all, const char *name, const char **child,
    const char **other)
{
	json_t		*rec;
	const char	*key, *p;
	int		 n = 0;

	*child = *other = NULL;
	json_object_foreach(all, key, rec) {
		p = store_str(rec, "parent");
		if (p == NULL || strcmp(p, name) != 0)
			continue;
		if (n++ == 0)
			*child = key;
		else {
			*other = key;
			return (2);
		}
	}
	return (n);
}

/*
 * The one image based on image name, which a merge of name writes into;
 * refused when more than one is, or when none is though the index counts
 * children.
 */
int
imgstore_merge_child(struct imgstore *st, const char *name, char **child,
    char **cause)
{
	json_t		*all;
	const char	*first, *other;
	int		 n, rc = 0;

	*child = NULL;
	if ((all = store_all(st, cause)) == NULL)
		return (IMGSTORE_ERR);
	n = store_merge_children(all, name, &first, &other);
	if (n > 1)
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s has more than "
		    "one image based on it (%s, %s, ...): remove or revert "
		    "away from them first", name, first, other);
	else if (n == 0)
		rc = store_fail(cause, IMGSTORE_ERR, "image %s: the index "
		    "counts children that it does not hold (qdesk image "
		    "verify)", name);
	else
		*child = xstrdup(first);
	json_decref(all);
	return (rc);
}

/*
 * The qemu-img rebase command line that merges image name into child,
 * its only child: once it ran, child holds what it read through name and
 * backs onto name's parent (or nothing) directly. Everything comes from
 * child's chain, walked on the files and matched against the index, so
 * qemu-img only ever reads a chain that is safe.
 */
int
imgstore_merge_argv(struct imgstore *st, const char *name, const char *child,
    const char *qemu_img, char ***argvp, char **cause)
{
	struct chain	*c;
	char		**argv;
	int		  n = 0, rc;

	*argvp = NULL;
	if ((rc = imgstore_chain(st, child, &c, cause)) != 0)
		return (rc);
	if (c->n < 2 || c->links[1].name == NULL ||
	    strcmp(c->links[1].name, name) != 0) {
		chain_free(c);
		return (store_fail(cause, IMGSTORE_EINVAL, "image %s is not "
		    "based on image %s", child, name));
	}
	argv = xcalloc(11, sizeof *argv);
	argv[n++] = xstrdup(qemu_img);
	argv[n++] = xstrdup("rebase");
	argv[n++] = xstrdup("-p");
	argv[n++] = xstrdup("-f");
	argv[n++] = xstrdup(c->links[0].format);
	argv[n++] = xstrdup("-b");
	if (c->n > 2) {
		argv[n++] = xstrdup(c->links[2].file);
		argv[n++] = xstrdup("-F");
		argv[n++] = xstrdup(c->links[2].format);
	} else
		argv[n++] = xstrdup("");
	argv[n++] = xstrdup(c->links[0].path);
	argv[n] = NULL;
	chain_free(c);
	*argvp = argv;
	return (0);
}

/*
 * Take image name out of the middle of its chain once its only child's
 * file backs onto name's parent directly (qemu-img rebase copied what
 * the child needed): the child inherits the parent, then name and its
 * file go.
 */
int
imgstore_drop(struct imgstore *st, const char *name, char **cause)
{
	struct db_txn	*t;
	struct chain	*c = NULL;
	json_t		*all = NULL, *rec, *crec = NULL, *prec;
	const char	*child, *other, *parent;
	char		*why = NULL, *file = NULL;
	int		 rc, n;

	if ((all = store_all(st, cause)) == NULL)
		return (IMGSTORE_ERR);
	if ((rec = json_object_get(all, name)) == NULL) {
		rc = store_fail(cause, IMGSTORE_ENOTFOUND, "no image named %s",
		    name);
		goto out;
	}
	n = store_merge_children(all, name, &child, &other);
	if (n > 1) {
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s has more "
		    "than one child", name);
		goto out;
	}
	if (n == 0 || json_array_size(json_object_get(rec, "users")) != 0) {
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s is not the "
		    "unused parent of one child", name);
		goto out;
	}
	crec = json_object_get(all, child);
	if (store_str(crec, "file") == NULL || store_str(crec, "format") ==
	    NULL || chain_walk(st->dir, store_str(crec, "file"),
	    store_str(crec, "format"), &c, &why) != 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: %s", child,
		    why != NULL ? why : "bad record");
		free(why);
		goto out;
	}
	parent = store_str(rec, "parent");
	prec = parent != NULL ? json_object_get(all, parent) : NULL;
	if (parent != NULL ? (c->n < 2 || prec == NULL ||
	    store_str(prec, "file") == NULL ||
	    strcmp(c->links[1].file, store_str(prec, "file")) != 0) :
	    c->n != 1) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "the file of image %s "
		    "does not back onto %s yet", child, parent != NULL ?
		    parent : "nothing");
		goto out;
	}
	if ((t = db_begin(st->db, cause)) == NULL) {
		rc = IMGSTORE_ERR;
		goto out;
	}
	crec = db_txn_get(t, st->table, child);
	if (crec == NULL) {
		db_abort(t);
		rc = store_fail(cause, IMGSTORE_ERR, "image %s went away",
		    child);
		goto out;
	}
	if (parent != NULL)
		json_object_set_new(crec, "parent", json_string(parent));
	else
		json_object_set_new(crec, "parent", json_null());
	if (db_txn_put(t, st->table, child, crec, cause) != 0 ||
	    db_txn_del(t, st->table, name, cause) != 0) {
		json_decref(crec);
		db_abort(t);
		rc = IMGSTORE_ERR;
		goto out;
	}
	json_decref(crec);
	file = store_str(rec, "file") != NULL ?
	    xstrdup(store_str(rec, "file")) : NULL;
	if (db_commit(t, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto out;
	}
	if (file != NULL && unlinkat(st->dirfd, file, 0) == -1 &&
	    errno != ENOENT)
		log_warn("imgstore: unlink %s", file);
	rc = 0;
out:
	free(file);
	chain_free(c);
	json_decref(all);
	return (rc);
}
