/*
 * The image store's index: records in the "images" table, files in the
 * store directory. Files are written complete before a record points at
 * them and removed only after the record is gone, so a crash leaves at
 * worst a file without a record, which imgstore_gc finds.
 */
#include <sys/types.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "compat.h"
#include "db.h"
#include "log.h"
#include "names.h"
#include "qcow2-write.h"
#include "qcow2.h"
#include "store.h"
#include "xmalloc.h"

struct imgstore {
	struct db	*db;
	char		*dir;		/* canonical */
	int		 dirfd;
	json_t		*writing;	/* temporary files a job is writing */
};

static const char *store_kinds[] = { "base", "template", "clone", "snapshot" };

/* Fill *cause and return code, for one-line failure paths. */
static int __attribute__((format(printf, 3, 4)))
store_fail(char **cause, int code, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	*cause = s;
	return (code);
}

static const char *
store_str(const json_t *rec, const char *key)
{
	return (json_string_value(json_object_get(rec, key)));
}

static json_int_t
store_int(const json_t *rec, const char *key)
{
	return (json_integer_value(json_object_get(rec, key)));
}

static int
store_kind_valid(const char *kind)
{
	size_t	i;

	for (i = 0; i < nitems(store_kinds); i++) {
		if (strcmp(store_kinds[i], kind) == 0)
			return (1);
	}
	return (0);
}

int
imgstore_name_valid(const char *name, char **cause)
{
	size_t	i, len = strlen(name);

	if (len == 0)
		return (store_fail(cause, -1, "image name is empty"));
	if (len > IMGSTORE_NAME_MAX)
		return (store_fail(cause, -1, "image name is %zu characters "
		    "long, the limit is %d", len, IMGSTORE_NAME_MAX));
	for (i = 0; i < len; i++) {
		char	c = name[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (i > 0 && (c == '.' || c == '_' || c == '-'))
			continue;
		return (store_fail(cause, -1, "invalid image name: use "
		    "lower-case letters, digits, '.', '_' and '-', starting "
		    "with a letter or digit"));
	}
	return (0);
}

/* Random lower-case hex, for ids and file names. */
static void
store_random_hex(char *out, size_t nbytes)
{
	static const char	 hex[] = "0123456789abcdef";
	uint8_t			 r[32];
	size_t			 i;

	if (nbytes > sizeof r)
		fatalx("store_random_hex: %zu bytes", nbytes);
	if (getrandom(r, nbytes, 0) != (ssize_t)nbytes)
		fatal("getrandom");
	for (i = 0; i < nbytes; i++) {
		out[i * 2] = hex[r[i] >> 4];
		out[i * 2 + 1] = hex[r[i] & 15];
	}
	out[nbytes * 2] = '\0';
}

char *
imgstore_new_file(const char *name, const char *format)
{
	char	 id[9], *file;

	store_random_hex(id, 4);
	xasprintf(&file, "%s-%s.%s", name, id, format);
	return (file);
}

char *
imgstore_path(struct imgstore *st, const char *file)
{
	char	*path;

	xasprintf(&path, "%s/%s", st->dir, file);
	return (path);
}

const char *
imgstore_dir(struct imgstore *st)
{
	return (st->dir);
}

/* Create the directory if needed and hold an fd on its canonical path. */
struct imgstore *
imgstore_open(struct db *db, const char *dir, char **cause)
{
	struct imgstore	*st;
	char		*real;
	int		 fd;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", dir, strerror(errno));
		return (NULL);
	}
	if ((real = realpath(dir, NULL)) == NULL) {
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		return (NULL);
	}
	if ((fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", real, strerror(errno));
		free(real);
		return (NULL);
	}
	st = xcalloc(1, sizeof *st);
	st->db = db;
	st->dir = real;
	st->dirfd = fd;
	st->writing = json_object();
	return (st);
}

void
imgstore_close(struct imgstore *st)
{
	if (st == NULL)
		return;
	close(st->dirfd);
	json_decref(st->writing);
	free(st->dir);
	free(st);
}

/* lstat a file of the store; returns -1 with errno if it cannot. */
static int
store_stat(struct imgstore *st, const char *file, struct stat *sb)
{
	return (fstatat(st->dirfd, file, sb, AT_SYMLINK_NOFOLLOW));
}

/* Bytes a file of the store occupies on disk, 0 if it is gone. */
static json_int_t
store_allocated(struct imgstore *st, const char *file)
{
	struct stat	sb;

	if (file == NULL || store_stat(st, file, &sb) == -1)
		return (0);
	return ((json_int_t)sb.st_blocks * 512);
}

/*
 * Change the permission bits of a regular file of the store, returning
 * the old ones in *old; never follows a link.
 */
static int
store_chmod(struct imgstore *st, const char *file, mode_t mode, mode_t *old)
{
	struct stat	sb;
	int		fd, rc;

	fd = openat(st->dirfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC);
	if (fd == -1)
		return (-1);
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
		close(fd);
		errno = EINVAL;
		return (-1);
	}
	if (old != NULL)
		*old = sb.st_mode & 07777;
	rc = (sb.st_mode & 07777) == mode ? 0 : fchmod(fd, mode);
	close(fd);
	return (rc);
}

/* Make a file of the store immutable (no write bits) or writable again. */
static int
store_set_immutable(struct imgstore *st, const char *file, int on,
    mode_t *old)
{
	struct stat	sb;

	if (store_stat(st, file, &sb) == -1)
		return (-1);
	if (on)
		return (store_chmod(st, file, sb.st_mode & 07555, old));
	return (store_chmod(st, file, (sb.st_mode & 07777) | S_IWUSR, old));
}

/* A new record. */
static json_t *
store_record(const char *name, const char *file, const char *format,
    const char *kind, const char *parent, uint64_t vsize, json_int_t asize)
{
	char	id[17];

	store_random_hex(id, 8);
	return (json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:I, s:I, s:I, "
	    "s:[], s:i}", "name", name, "id", id, "file", file, "format",
	    format, "kind", kind, "parent", parent, "virtual_size",
	    (json_int_t)vsize, "allocated_size", asize, "created",
	    (json_int_t)time(NULL), "users", "children", 0));
}

/* Returns 1 if the record's file has write bits while it has children. */
static int
store_writable(struct imgstore *st, const char *file)
{
	struct stat	sb;

	if (store_stat(st, file, &sb) == -1)
		return (0);
	return ((sb.st_mode & 0222) != 0);
}

/*
 * Make sure reads see the last commit. A writer killed after writing its
 * meta page but before publishing the new transaction id leaves readers
 * on the snapshot before, until the next writer takes LMDB's robust write
 * lock and repairs the id; gc must not delete a file on such a view.
 */
static void
store_fresh_view(struct imgstore *st)
{
	struct db_txn	*t;
	char		*why = NULL;

	if ((t = db_begin(st->db, &why)) == NULL) {
		log_warnx("imgstore: %s", why);
		free(why);
		return;
	}
	db_abort(t);
}

struct store_all {
	json_t		*recs;		/* name -> record */
};

static int
store_all_cb(const char *key, json_t *val, void *arg)
{
	struct store_all	*a = arg;

	json_object_set(a->recs, key, val);
	return (0);
}

/* Every record, as an object keyed by name (a new reference). */
static json_t *
store_all(struct imgstore *st, char **cause)
{
	struct store_all	a;

	a.recs = json_object();
	if (db_foreach(st->db, DB_IMAGES, store_all_cb, &a, cause) == -1) {
		json_decref(a.recs);
		return (NULL);
	}
	return (a.recs);
}

/* The names of the images whose parent is name, for messages. */
static char *
store_children_names(struct imgstore *st, const char *name)
{
	json_t		*all, *rec;
	const char	*key, *p;
	char		*out = NULL, *tmp, *why = NULL;
	int		 n = 0;

	if ((all = store_all(st, &why)) == NULL) {
		free(why);
		return (xstrdup("?"));
	}
	json_object_foreach(all, key, rec) {
		p = store_str(rec, "parent");
		if (p == NULL || strcmp(p, name) != 0)
			continue;
		if (n++ == 5) {
			xasprintf(&tmp, "%s, ...", out);
			free(out);
			out = tmp;
			break;
		}
		if (out == NULL)
			out = xstrdup(key);
		else {
			xasprintf(&tmp, "%s, %s", out, key);
			free(out);
			out = tmp;
		}
	}
	json_decref(all);
	return (out != NULL ? out : xstrdup("none found"));
}

/* Is file already the file of some record? Returns its name or NULL. */
static char *
store_file_owner(struct imgstore *st, const char *file)
{
	json_t		*all, *rec;
	const char	*key, *f;
	char		*owner = NULL, *why = NULL;

	if ((all = store_all(st, &why)) == NULL) {
		free(why);
		return (NULL);
	}
	json_object_foreach(all, key, rec) {
		f = store_str(rec, "file");
		if (f != NULL && strcmp(f, file) == 0) {
			owner = xstrdup(key);
			break;
		}
	}
	json_decref(all);
	return (owner);
}

/*
 * Write the new record and bump its parent's children count in one
 * transaction; returns 0 or an IMGSTORE_E* code with *cause.
 */
static int
store_commit_child(struct imgstore *st, const char *name, json_t *rec,
    const char *parent, char **cause)
{
	struct db_txn	*t;
	json_t		*prec = NULL, *old;

	if ((t = db_begin(st->db, cause)) == NULL)
		return (IMGSTORE_ERR);
	if ((old = db_txn_get(t, DB_IMAGES, name)) != NULL) {
		json_decref(old);
		db_abort(t);
		return (store_fail(cause, IMGSTORE_EEXISTS, "an image named %s "
		    "already exists", name));
	}
	if (parent != NULL) {
		if ((prec = db_txn_get(t, DB_IMAGES, parent)) == NULL) {
			db_abort(t);
			return (store_fail(cause, IMGSTORE_ENOTFOUND, "no "
			    "image named %s", parent));
		}
		json_object_set_new(prec, "children", json_integer(
		    store_int(prec, "children") + 1));
		if (db_txn_put(t, DB_IMAGES, parent, prec, cause) != 0)
			goto fail;
	}
	if (db_txn_put(t, DB_IMAGES, name, rec, cause) != 0)
		goto fail;
	json_decref(prec);
	if (db_commit(t, cause) != 0)
		return (IMGSTORE_ERR);
	return (0);
fail:
	json_decref(prec);
	db_abort(t);
	return (IMGSTORE_ERR);
}

/*
 * Index a file already in the store: walk its chain, check it against
 * the parent named, then make the parent immutable and commit.
 */
int
imgstore_add_file(struct imgstore *st, const char *name, const char *file,
    const char *format, const char *kind, const char *parent, char **cause)
{
	struct chain	*c = NULL;
	json_t		*rec = NULL, *prec = NULL, *old;
	char		*why = NULL, *owner;
	const char	*pfile = NULL, *pformat;
	mode_t		 pmode = 0;
	int		 rc, chmodded = 0;

	if (imgstore_name_valid(name, cause) != 0)
		return (IMGSTORE_EINVAL);
	if (!store_kind_valid(kind))
		return (store_fail(cause, IMGSTORE_EINVAL, "unknown image kind "
		    "%s (base, template, clone or snapshot)", kind));
	if (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0)
		return (store_fail(cause, IMGSTORE_EINVAL, "unsupported format "
		    "(qcow2 or raw)"));
	if (!chain_bare_name(file))
		return (store_fail(cause, IMGSTORE_EINVAL, "bad file name for "
		    "the image store"));
	if ((old = db_get(st->db, DB_IMAGES, name)) != NULL) {
		json_decref(old);
		return (store_fail(cause, IMGSTORE_EEXISTS, "an image named %s "
		    "already exists", name));
	}
	if ((owner = store_file_owner(st, file)) != NULL) {
		rc = store_fail(cause, IMGSTORE_EEXISTS, "%s is already the "
		    "file of image %s", file, owner);
		free(owner);
		return (rc);
	}
	if (chain_walk(st->dir, file, format, &c, &why) != 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "%s", why);
		free(why);
		return (rc);
	}
	if (parent != NULL) {
		if ((prec = db_get(st->db, DB_IMAGES, parent)) == NULL) {
			rc = store_fail(cause, IMGSTORE_ENOTFOUND, "no image "
			    "named %s", parent);
			goto out;
		}
		pfile = store_str(prec, "file");
		pformat = store_str(prec, "format");
		if (c->n < 2 || pfile == NULL || pformat == NULL ||
		    strcmp(c->links[1].file, pfile) != 0 ||
		    strcmp(c->links[1].format, pformat) != 0) {
			rc = store_fail(cause, IMGSTORE_EINVAL, "the backing "
			    "file of %s is not %s, the file of image %s", file,
			    pfile != NULL ? pfile : "?", parent);
			goto out;
		}
	} else if (c->n != 1) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "%s has a backing "
		    "file (%s); name its parent image", file,
		    c->links[1].file);
		goto out;
	}
	rec = store_record(name, file, format, kind, parent,
	    c->links[0].size, store_allocated(st, file));

	if (parent != NULL) {
		if (store_set_immutable(st, pfile, 1, &pmode) != 0) {
			rc = store_fail(cause, IMGSTORE_ERR, "%s: cannot make "
			    "it read-only: %s", pfile, strerror(errno));
			goto out;
		}
		chmodded = store_int(prec, "children") == 0;
	}
	if ((rc = store_commit_child(st, name, rec, parent, cause)) != 0) {
		if (chmodded)
			store_chmod(st, pfile, pmode, NULL);
		goto out;
	}
	rc = 0;
out:
	json_decref(rec);
	json_decref(prec);
	chain_free(c);
	return (rc);
}

/*
 * Look up parent, walk its chain (cheap: one header per link) so that no
 * overlay is ever written over a broken or unsafe chain, and return its
 * record and virtual size.
 */
static int
store_parent(struct imgstore *st, const char *parent, json_t **prec,
    uint64_t *size, char **cause)
{
	struct chain	*c;
	char		*why = NULL;
	int		 rc;

	if ((*prec = db_get(st->db, DB_IMAGES, parent)) == NULL)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", parent));
	if (store_str(*prec, "file") == NULL ||
	    store_str(*prec, "format") == NULL) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: bad "
		    "record", parent);
		goto fail;
	}
	if (chain_walk(st->dir, store_str(*prec, "file"),
	    store_str(*prec, "format"), &c, &why) != 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: %s", parent,
		    why);
		free(why);
		goto fail;
	}
	if (c->n >= CHAIN_MAX_DEPTH) {
		chain_free(c);
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: its chain "
		    "is already %d images deep", parent, CHAIN_MAX_DEPTH);
		goto fail;
	}
	*size = c->links[0].size;
	chain_free(c);
	return (0);
fail:
	json_decref(*prec);
	*prec = NULL;
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
	json_t		*prec = NULL, *rec = NULL, *old;
	char		*file = NULL;
	const char	*pfile, *pformat;
	uint64_t	 size;
	mode_t		 pmode = 0;
	int		 rc, chmodded;

	if (imgstore_name_valid(name, cause) != 0)
		return (IMGSTORE_EINVAL);
	if (vm != NULL && names_valid(vm, "VM", cause) != 0)
		return (IMGSTORE_EINVAL);
	if (strcmp(kind, "clone") != 0 && strcmp(kind, "template") != 0 &&
	    strcmp(kind, "snapshot") != 0)
		return (store_fail(cause, IMGSTORE_EINVAL, "a new overlay is a "
		    "clone, a template or a snapshot, not a %s", kind));
	if ((old = db_get(st->db, DB_IMAGES, name)) != NULL) {
		json_decref(old);
		return (store_fail(cause, IMGSTORE_EEXISTS, "an image named %s "
		    "already exists", name));
	}
	if ((rc = store_parent(st, parent, &prec, &size, cause)) != 0)
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
	if (store_set_immutable(st, pfile, 1, &pmode) != 0) {
		rc = store_fail(cause, IMGSTORE_ERR, "%s: cannot make it "
		    "read-only: %s", pfile, strerror(errno));
		goto fail;
	}
	chmodded = store_int(prec, "children") == 0;
	if ((rc = store_commit_child(st, name, rec, parent, cause)) != 0) {
		if (chmodded)
			store_chmod(st, pfile, pmode, NULL);
		goto fail;
	}
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

/* Add delta to the children count of a record inside a transaction. */
static int
store_count_child(struct db_txn *t, const char *name, int delta,
    json_int_t *left, char **cause)
{
	json_t		*rec;
	json_int_t	 n;
	int		 rc;

	if ((rec = db_txn_get(t, DB_IMAGES, name)) == NULL)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	n = store_int(rec, "children") + delta;
	if (n < 0)
		n = 0;
	json_object_set_new(rec, "children", json_integer(n));
	rc = db_txn_put(t, DB_IMAGES, name, rec, cause) == 0 ? 0 :
	    IMGSTORE_ERR;
	if (left != NULL)
		*left = n;
	json_decref(rec);
	return (rc);
}

/*
 * Swap the image's file for a new empty overlay over target (its own
 * parent for a reset) in one record update, then remove the old file:
 * O(1), and a crash leaves either the old or the new file indexed, never
 * neither. Moving to another parent moves one child count with it.
 */
static int
store_reset(struct imgstore *st, const char *name, const char *target,
    char **cause)
{
	struct db_txn	*t;
	json_t		*rec = NULL, *prec = NULL, *cur = NULL, *oprec;
	char		*file = NULL, *oldfile = NULL, *oldparent = NULL;
	char		*oldpfile = NULL;
	const char	*parent, *pfile, *pformat;
	uint64_t	 size;
	mode_t		 pmode = 0;
	json_int_t	 left = -1;
	int		 rc, moving, chmodded = 0;

	if ((rec = db_get(st->db, DB_IMAGES, name)) == NULL)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	parent = store_str(rec, "parent");
	if (target == NULL && parent == NULL) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s has no "
		    "parent to reset to", name);
		goto out;
	}
	if (target == NULL)
		target = parent;
	moving = parent == NULL || strcmp(parent, target) != 0;
	if (strcmp(target, name) == 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s cannot be "
		    "its own parent", name);
		goto out;
	}
	if (store_int(rec, "children") != 0) {
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s has children; "
		    "it cannot be reset", name);
		goto out;
	}
	if (store_str(rec, "format") == NULL ||
	    store_str(rec, "file") == NULL ||
	    strcmp(store_str(rec, "format"), "qcow2") != 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s is not a "
		    "qcow2 overlay", name);
		goto out;
	}
	if ((rc = store_parent(st, target, &prec, &size, cause)) != 0)
		goto out;
	if (moving && (uint64_t)store_int(rec, "virtual_size") !=
	    ((size + 511) & ~511ULL)) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s is %lld "
		    "bytes, image %s %llu: they do not fit", name,
		    (long long)store_int(rec, "virtual_size"), target,
		    (unsigned long long)size);
		goto out;
	}
	pfile = store_str(prec, "file");
	pformat = store_str(prec, "format");
	oldfile = xstrdup(store_str(rec, "file"));
	if (moving && parent != NULL)
		oldparent = xstrdup(parent);

	file = imgstore_new_file(name, "qcow2");
	if (qcow2_write_overlay(st->dir, file, pfile, pformat, size,
	    cause) != 0) {
		rc = IMGSTORE_ERR;
		goto out;
	}
	if (moving) {
		if (store_set_immutable(st, pfile, 1, &pmode) != 0) {
			rc = store_fail(cause, IMGSTORE_ERR, "%s: cannot make "
			    "it read-only: %s", pfile, strerror(errno));
			goto fail;
		}
		chmodded = store_int(prec, "children") == 0;
	}
	if ((t = db_begin(st->db, cause)) == NULL) {
		rc = IMGSTORE_ERR;
		goto fail;
	}
	cur = db_txn_get(t, DB_IMAGES, name);
	if (cur == NULL || store_str(cur, "file") == NULL ||
	    strcmp(store_str(cur, "file"), oldfile) != 0 ||
	    store_int(cur, "children") != 0) {
		db_abort(t);
		rc = store_fail(cause, IMGSTORE_ERR, "image %s changed during "
		    "the reset", name);
		goto fail;
	}
	json_object_set_new(cur, "file", json_string(file));
	json_object_set_new(cur, "virtual_size", json_integer(
	    (json_int_t)((size + 511) & ~511ULL)));
	json_object_set_new(cur, "allocated_size", json_integer(
	    store_allocated(st, file)));
	if (moving) {
		json_object_set_new(cur, "parent", json_string(target));
		if (store_str(cur, "kind") != NULL &&
		    strcmp(store_str(cur, "kind"), "base") == 0)
			json_object_set_new(cur, "kind", json_string("clone"));
		if ((rc = store_count_child(t, target, 1, NULL, cause)) != 0 ||
		    (oldparent != NULL && (rc = store_count_child(t, oldparent,
		    -1, &left, cause)) != 0)) {
			db_abort(t);
			goto fail;
		}
		if (oldparent != NULL && left == 0 && (oprec = db_txn_get(t,
		    DB_IMAGES, oldparent)) != NULL) {
			if (store_str(oprec, "file") != NULL)
				oldpfile = xstrdup(store_str(oprec, "file"));
			json_decref(oprec);
		}
	}
	if (db_txn_put(t, DB_IMAGES, name, cur, cause) != 0) {
		db_abort(t);
		rc = IMGSTORE_ERR;
		goto fail;
	}
	if (db_commit(t, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto fail;
	}
	if (unlinkat(st->dirfd, oldfile, 0) == -1 && errno != ENOENT)
		log_warn("imgstore: unlink %s", oldfile);
	if (oldpfile != NULL && store_set_immutable(st, oldpfile, 0,
	    NULL) != 0)
		log_warn("imgstore: %s: cannot make it writable", oldpfile);
	rc = 0;
	goto out;
fail:
	if (unlinkat(st->dirfd, file, 0) == -1)
		log_warn("imgstore: unlink %s", file);
	if (chmodded)
		store_chmod(st, pfile, pmode, NULL);
out:
	free(file);
	free(oldfile);
	free(oldparent);
	free(oldpfile);
	json_decref(cur);
	json_decref(rec);
	json_decref(prec);
	return (rc);
}

int
imgstore_reset(struct imgstore *st, const char *name, char **cause)
{
	return (store_reset(st, name, NULL, cause));
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
	return (store_reset(st, name, target, cause));
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
	struct db_txn	*t;
	struct chain	*c = NULL;
	json_t		*rec = NULL, *cur = NULL, *nrec = NULL, *old;
	char		*file = NULL, *newfile = NULL, *why = NULL;
	const char	*format, *parent;
	uint64_t	 size;
	mode_t		 mode = 0;
	int		 rc;

	if (imgstore_name_valid(newname, cause) != 0)
		return (IMGSTORE_EINVAL);
	if (strcmp(kind, "snapshot") != 0 && strcmp(kind, "template") != 0)
		return (store_fail(cause, IMGSTORE_EINVAL, "a frozen image is "
		    "a snapshot or a template, not a %s", kind));
	if ((old = db_get(st->db, DB_IMAGES, newname)) != NULL) {
		json_decref(old);
		return (store_fail(cause, IMGSTORE_EEXISTS, "an image named %s "
		    "already exists", newname));
	}
	if ((rec = db_get(st->db, DB_IMAGES, name)) == NULL)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	if (store_int(rec, "children") != 0) {
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s has children, "
		    "so its content is frozen already", name);
		goto out;
	}
	format = store_str(rec, "format");
	if (store_str(rec, "file") == NULL || format == NULL) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: bad record",
		    name);
		goto out;
	}
	file = xstrdup(store_str(rec, "file"));
	if (chain_walk(st->dir, file, format, &c, &why) != 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: %s", name,
		    why);
		free(why);
		goto out;
	}
	if (c->n >= CHAIN_MAX_DEPTH) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: its chain "
		    "is already %d images deep", name, CHAIN_MAX_DEPTH);
		goto out;
	}
	size = c->links[0].size;

	/* From here onward, all failures need cleanup and use goto fail. */
	newfile = imgstore_new_file(name, "qcow2");
	if (qcow2_write_overlay(st->dir, newfile, file, format, size,
	    cause) != 0) {
		rc = IMGSTORE_ERR;
		goto out;
	}
	if (store_set_immutable(st, file, 1, &mode) != 0) {
		rc = store_fail(cause, IMGSTORE_ERR, "%s: cannot make it "
		    "read-only: %s", file, strerror(errno));
		goto fail;
	}
	if ((t = db_begin(st->db, cause)) == NULL) {
		rc = IMGSTORE_ERR;
		goto fail_mode;
	}
	if ((old = db_txn_get(t, DB_IMAGES, newname)) != NULL) {
		json_decref(old);
		db_abort(t);
		rc = store_fail(cause, IMGSTORE_EEXISTS, "an image named %s "
		    "already exists", newname);
		goto fail_mode;
	}
	cur = db_txn_get(t, DB_IMAGES, name);
	if (cur == NULL || store_str(cur, "file") == NULL ||
	    strcmp(store_str(cur, "file"), file) != 0 ||
	    store_int(cur, "children") != 0) {
		db_abort(t);
		rc = store_fail(cause, IMGSTORE_ERR, "image %s changed while "
		    "it was being frozen", name);
		goto fail_mode;
	}
	parent = store_str(cur, "parent");
	nrec = store_record(newname, file, format, kind, parent,
	    store_int(cur, "virtual_size"), store_allocated(st, file));
	json_object_set_new(nrec, "children", json_integer(1));
	if (extra != NULL)
		json_object_update_missing(nrec, (json_t *)extra);
	json_object_set_new(cur, "file", json_string(newfile));
	json_object_set_new(cur, "format", json_string("qcow2"));
	json_object_set_new(cur, "parent", json_string(newname));
	json_object_set_new(cur, "allocated_size", json_integer(
	    store_allocated(st, newfile)));
	if (store_str(cur, "kind") != NULL &&
	    strcmp(store_str(cur, "kind"), "base") == 0)
		json_object_set_new(cur, "kind", json_string("clone"));
	if (db_txn_put(t, DB_IMAGES, newname, nrec, cause) != 0 ||
	    db_txn_put(t, DB_IMAGES, name, cur, cause) != 0) {
		db_abort(t);
		rc = IMGSTORE_ERR;
		goto fail_mode;
	}
	if (db_commit(t, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto fail_mode;
	}
	rc = 0;
	goto out;
fail_mode:
	store_chmod(st, file, mode, NULL);
fail:
	if (unlinkat(st->dirfd, newfile, 0) == -1)
		log_warn("imgstore: unlink %s", newfile);
out:
	chain_free(c);
	json_decref(nrec);
	json_decref(cur);
	json_decref(rec);
	free(file);
	free(newfile);
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
	rec = db_txn_get(t, DB_IMAGES, name);
	nrec = db_txn_get(t, DB_IMAGES, newname);
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
	if (db_txn_put(t, DB_IMAGES, name, rec, cause) != 0 ||
	    db_txn_del(t, DB_IMAGES, newname, cause) != 0) {
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
	if ((t = db_begin(st->db, cause)) == NULL) {
		chain_free(c);
		return (IMGSTORE_ERR);
	}
	if ((rec = db_txn_get(t, DB_IMAGES, name)) == NULL) {
		rc = store_fail(cause, IMGSTORE_ENOTFOUND, "no image named %s",
		    name);
		goto fail;
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
		if ((rc = store_count_child(t, parent, -1, &left,
		    cause)) != 0)
			goto fail;
		if (left == 0 && (prec = db_txn_get(t, DB_IMAGES,
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
	if (db_txn_put(t, DB_IMAGES, name, rec, cause) != 0) {
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
	json_t		*all = NULL, *rec, *crec = NULL, *other, *prec;
	const char	*key, *p, *child = NULL, *parent;
	char		*why = NULL, *file = NULL;
	int		 rc;

	if ((all = store_all(st, cause)) == NULL)
		return (IMGSTORE_ERR);
	if ((rec = json_object_get(all, name)) == NULL) {
		rc = store_fail(cause, IMGSTORE_ENOTFOUND, "no image named %s",
		    name);
		goto out;
	}
	json_object_foreach(all, key, other) {
		p = store_str(other, "parent");
		if (p == NULL || strcmp(p, name) != 0)
			continue;
		if (child != NULL) {
			rc = store_fail(cause, IMGSTORE_EBUSY, "image %s has "
			    "more than one child", name);
			goto out;
		}
		child = key;
	}
	if (child == NULL || json_array_size(json_object_get(rec,
	    "users")) != 0) {
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
	crec = db_txn_get(t, DB_IMAGES, child);
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
	if (db_txn_put(t, DB_IMAGES, child, crec, cause) != 0 ||
	    db_txn_del(t, DB_IMAGES, name, cause) != 0) {
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

/* Refuse to remove an image that has children or users; rc or 0. */
static int
store_removable(struct imgstore *st, const char *name, json_t *rec,
    char **cause)
{
	json_t		*users = json_object_get(rec, "users"), *u;
	json_int_t	 n = store_int(rec, "children");
	char		*names, *list = NULL, *tmp;
	size_t		 i;
	int		 rc;

	if (n > 0) {
		names = store_children_names(st, name);
		rc = store_fail(cause, IMGSTORE_EBUSY, "image %s has %lld "
		    "%s (%s); remove them first", name, (long long)n,
		    n == 1 ? "child" : "children", names);
		free(names);
		return (rc);
	}
	if (json_array_size(users) == 0)
		return (0);
	json_array_foreach(users, i, u) {
		if (list == NULL)
			list = xstrdup(json_string_value(u) ?
			    json_string_value(u) : "?");
		else {
			xasprintf(&tmp, "%s, %s", list, json_string_value(u) ?
			    json_string_value(u) : "?");
			free(list);
			list = tmp;
		}
	}
	rc = store_fail(cause, IMGSTORE_EBUSY, "image %s is used by VM %s",
	    name, list);
	free(list);
	return (rc);
}

/*
 * Delete the record (and count the parent's child out) in one
 * transaction, then the file; a crash in between leaves an orphan file
 * for imgstore_gc, never a record without its file.
 */
int
imgstore_rm(struct imgstore *st, const char *name, char **cause)
{
	struct db_txn	*t;
	json_t		*rec, *prec = NULL;
	char		*file = NULL, *pfile = NULL;
	const char	*parent;
	json_int_t	 left = -1;
	int		 rc;

	if ((t = db_begin(st->db, cause)) == NULL)
		return (IMGSTORE_ERR);
	if ((rec = db_txn_get(t, DB_IMAGES, name)) == NULL) {
		db_abort(t);
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	}
	if ((rc = store_removable(st, name, rec, cause)) != 0)
		goto fail;
	if (store_str(rec, "file") != NULL)
		file = xstrdup(store_str(rec, "file"));
	if ((parent = store_str(rec, "parent")) != NULL &&
	    (prec = db_txn_get(t, DB_IMAGES, parent)) != NULL) {
		left = store_int(prec, "children") - 1;
		if (left < 0)
			left = 0;
		json_object_set_new(prec, "children", json_integer(left));
		if (db_txn_put(t, DB_IMAGES, parent, prec, cause) != 0) {
			rc = IMGSTORE_ERR;
			goto fail;
		}
		if (store_str(prec, "file") != NULL)
			pfile = xstrdup(store_str(prec, "file"));
	}
	if (db_txn_del(t, DB_IMAGES, name, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto fail;
	}
	json_decref(rec);
	json_decref(prec);
	if (db_commit(t, cause) != 0) {
		free(file);
		free(pfile);
		return (IMGSTORE_ERR);
	}
	if (file != NULL && unlinkat(st->dirfd, file, 0) == -1 &&
	    errno != ENOENT)
		log_warn("imgstore: unlink %s", file);
	if (left == 0 && pfile != NULL &&
	    store_set_immutable(st, pfile, 0, NULL) != 0)
		log_warn("imgstore: %s: cannot make it writable", pfile);
	free(file);
	free(pfile);
	return (0);
fail:
	db_abort(t);
	json_decref(rec);
	json_decref(prec);
	free(file);
	return (rc);
}

json_t *
imgstore_get(struct imgstore *st, const char *name, char **cause)
{
	json_t	*rec;

	if ((rec = db_get(st->db, DB_IMAGES, name)) == NULL) {
		xasprintf(cause, "no image named %s", name);
		return (NULL);
	}
	json_object_set_new(rec, "allocated_size", json_integer(
	    store_allocated(st, store_str(rec, "file"))));
	return (rec);
}

/* Every record in name order, with sizes on disk as they are now. */
json_t *
imgstore_list(struct imgstore *st, char **cause)
{
	json_t		*all, *list, *rec;
	const char	*key;

	if ((all = store_all(st, cause)) == NULL)
		return (NULL);
	list = json_array();
	/* jansson keeps insertion order: LMDB's key order. */
	json_object_foreach(all, key, rec) {
		json_object_set_new(rec, "allocated_size", json_integer(
		    store_allocated(st, store_str(rec, "file"))));
		json_array_append(list, rec);
	}
	json_decref(all);
	return (list);
}

/*
 * Match a chain walked on the files against the index, starting at the
 * record of name, and name its links; returns NULL or the disagreement.
 */
static char *
store_match_chain(struct chain *c, const char *name, json_t *all)
{
	json_t		*rec;
	const char	*file, *format, *parent;
	const char	*cur = name;
	char		*why = NULL;
	u_int		 i;

	for (i = 0; i < c->n; i++) {
		if ((rec = json_object_get(all, cur)) == NULL) {
			xasprintf(&why, "%s backs onto image %s, which is not "
			    "in the index", i == 0 ? name :
			    c->links[i - 1].name, cur);
			return (why);
		}
		file = store_str(rec, "file");
		format = store_str(rec, "format");
		if (file == NULL || format == NULL ||
		    strcmp(file, c->links[i].file) != 0 ||
		    strcmp(format, c->links[i].format) != 0) {
			xasprintf(&why, "the index says image %s is %s (%s), "
			    "the files say %s (%s)", cur, file ? file : "?",
			    format ? format : "?", c->links[i].file,
			    c->links[i].format);
			return (why);
		}
		free(c->links[i].name);
		c->links[i].name = xstrdup(cur);
		parent = store_str(rec, "parent");
		if (i + 1 == c->n) {
			if (parent != NULL) {
				xasprintf(&why, "the index says image %s has "
				    "parent %s, but its file has no backing "
				    "file", cur, parent);
				return (why);
			}
			break;
		}
		if (parent == NULL) {
			xasprintf(&why, "the index says image %s has no "
			    "parent, but its file backs onto %s", cur,
			    c->links[i + 1].file);
			return (why);
		}
		cur = parent;
	}
	return (NULL);
}

/*
 * The chain QEMU gets: walked on the files (so it is safe) and matched
 * against the index (so every node has an image name).
 */
int
imgstore_chain(struct imgstore *st, const char *name, struct chain **out,
    char **cause)
{
	json_t		*all, *rec;
	struct chain	*c;
	char		*why = NULL;
	int		 rc;

	*out = NULL;
	if ((all = store_all(st, cause)) == NULL)
		return (IMGSTORE_ERR);
	if ((rec = json_object_get(all, name)) == NULL) {
		json_decref(all);
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	}
	if (store_str(rec, "file") == NULL || store_str(rec, "format") == NULL) {
		json_decref(all);
		return (store_fail(cause, IMGSTORE_EINVAL, "image %s: bad "
		    "record", name));
	}
	if (chain_walk(st->dir, store_str(rec, "file"),
	    store_str(rec, "format"), &c, &why) != 0) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: %s", name,
		    why);
		free(why);
		json_decref(all);
		return (rc);
	}
	if ((why = store_match_chain(c, name, all)) != NULL) {
		rc = store_fail(cause, IMGSTORE_EINVAL, "image %s: %s", name,
		    why);
		free(why);
		chain_free(c);
		json_decref(all);
		return (rc);
	}
	json_decref(all);
	*out = c;
	return (0);
}

/* Append a problem to a verify report. */
static void
store_problem(json_t *problems, const char *image, const char *file,
    const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	json_array_append_new(problems, json_pack("{s:s?, s:s?, s:s}",
	    "image", image, "file", file, "problem", s));
	free(s);
}

/* Check one record against its files and the rest of the index. */
static void
store_verify_one(struct imgstore *st, const char *name, json_t *rec,
    json_t *all, json_t *problems)
{
	struct chain	*c;
	json_t		*other;
	const char	*file, *format, *parent, *key, *p;
	char		*why = NULL;
	json_int_t	 children = 0;

	file = store_str(rec, "file");
	format = store_str(rec, "format");
	if (file == NULL || format == NULL || !chain_bare_name(file)) {
		store_problem(problems, name, file, "bad record");
		return;
	}
	parent = store_str(rec, "parent");
	if (parent != NULL && json_object_get(all, parent) == NULL)
		store_problem(problems, name, file, "parent %s is not in the "
		    "index", parent);
	json_object_foreach(all, key, other) {
		p = store_str(other, "parent");
		if (p != NULL && strcmp(p, name) == 0)
			children++;
	}
	if (children != store_int(rec, "children"))
		store_problem(problems, name, file, "the index counts %lld "
		    "children, %lld images name it as their parent",
		    (long long)store_int(rec, "children"), (long long)children);
	if (children > 0 && store_writable(st, file))
		store_problem(problems, name, file, "it has children but its "
		    "file is writable");

	if (chain_walk(st->dir, file, format, &c, &why) != 0) {
		store_problem(problems, name, file, "%s", why);
		free(why);
		return;
	}
	if ((uint64_t)store_int(rec, "virtual_size") != c->links[0].size)
		store_problem(problems, name, file, "the index says a virtual "
		    "size of %lld bytes, the file %llu",
		    (long long)store_int(rec, "virtual_size"),
		    (unsigned long long)c->links[0].size);
	if ((why = store_match_chain(c, name, all)) != NULL) {
		store_problem(problems, name, file, "%s", why);
		free(why);
	}
	chain_free(c);
}

/* Does some record use file? */
static int
store_file_used(json_t *all, const char *file)
{
	json_t		*rec;
	const char	*key, *f;

	json_object_foreach(all, key, rec) {
		f = store_str(rec, "file");
		if (f != NULL && strcmp(f, file) == 0)
			return (1);
	}
	return (0);
}

/*
 * Returns 1 if a file of the store is locked by a process (a QEMU or a
 * writer still at work) or a job of ours writes it: gc leaves it alone.
 */
static int
store_locked(struct imgstore *st, const char *file)
{
	int	fd, locked;

	if (json_object_get(st->writing, file) != NULL)
		return (1);
	fd = openat(st->dirfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC);
	if (fd == -1)
		return (0);
	locked = qcow2_write_locked(fd);
	close(fd);
	return (locked);
}

/*
 * A job of ours writes file: gc and verify leave it alone even before the
 * writer has created or locked it (qemu-img convert creates its target,
 * closes it and opens it again, unlocked in between).
 */
void
imgstore_writing(struct imgstore *st, const char *file, int on)
{
	if (on)
		json_object_set_new(st->writing, file, json_true());
	else
		json_object_del(st->writing, file);
}

static int
store_is_tmp(const char *file)
{
	return (strncmp(file, QCOW2_WRITE_TMP_PREFIX,
	    strlen(QCOW2_WRITE_TMP_PREFIX)) == 0);
}

/*
 * Check one image or all of them, then, for the whole store, the files
 * no record points at; problems go in the report, not in *cause.
 */
int
imgstore_verify(struct imgstore *st, const char *name, json_t **report,
    char **cause)
{
	json_t		*all, *rec, *problems;
	const char	*key;
	DIR		*d;
	struct dirent	*de;
	int		 n = 0, fd;

	*report = NULL;
	store_fresh_view(st);
	if ((all = store_all(st, cause)) == NULL)
		return (IMGSTORE_ERR);
	problems = json_array();
	if (name != NULL) {
		if ((rec = json_object_get(all, name)) == NULL) {
			json_decref(all);
			json_decref(problems);
			return (store_fail(cause, IMGSTORE_ENOTFOUND, "no "
			    "image named %s", name));
		}
		store_verify_one(st, name, rec, all, problems);
		n = 1;
		goto done;
	}
	json_object_foreach(all, key, rec) {
		store_verify_one(st, key, rec, all, problems);
		n++;
	}
	/* Files nothing points at: what a crash can leave behind. */
	if ((fd = dup(st->dirfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		store_problem(problems, NULL, NULL, "cannot read %s: %s",
		    st->dir, strerror(errno));
		goto done;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (store_is_tmp(de->d_name)) {
			/* A locked one is still being written. */
			if (!store_locked(st, de->d_name))
				store_problem(problems, NULL, de->d_name,
				    "temporary file left behind (image gc "
				    "removes it)");
		}
		else if (!store_file_used(all, de->d_name))
			store_problem(problems, NULL, de->d_name, "no image "
			    "has this file (image gc removes it)");
	}
	closedir(d);
done:
	*report = json_pack("{s:i, s:b, s:o}", "checked", n, "ok",
	    json_array_size(problems) == 0, "problems", problems);
	json_decref(all);
	return (0);
}

/* Append an item to a gc report. */
static void
store_item(json_t *items, const char *what, const char *file,
    const char *image, const char *action)
{
	json_array_append_new(items, json_pack("{s:s, s:s?, s:s?, s:s}",
	    "what", what, "file", file, "image", image, "action", action));
}

/* Remove files of the store without a record; returns -1 if unreadable. */
static int
store_gc_files(struct imgstore *st, json_t *all, int dry_run, json_t *items)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 sb;
	const char	*what, *action;
	int		 fd;

	if ((fd = dup(st->dirfd)) == -1)
		return (-1);
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return (-1);
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (store_is_tmp(de->d_name))
			what = "temp-file";
		else if (!store_file_used(all, de->d_name))
			what = "orphan-file";
		else
			continue;
		if (store_stat(st, de->d_name, &sb) == -1)
			continue;
		if (S_ISDIR(sb.st_mode))
			action = "kept: a directory";
		else if (store_locked(st, de->d_name))
			action = "kept: locked by a running process";
		else if (dry_run)
			action = "would remove";
		else if (unlinkat(st->dirfd, de->d_name, 0) == -1)
			action = "kept: cannot remove it";
		else
			action = "removed";
		store_item(items, what, de->d_name, NULL, action);
	}
	closedir(d);
	return (0);
}

/*
 * Remove records whose file is gone, in one transaction that also counts
 * them out of their parents; records with children or users stay.
 */
static int
store_gc_records(struct imgstore *st, json_t *all, int dry_run,
    json_t *items, char **cause)
{
	struct db_txn	*t = NULL;
	json_t		*rec, *prec;
	const char	*key, *file, *parent;
	struct stat	 sb;
	int		 n = 0;

	json_object_foreach(all, key, rec) {
		file = store_str(rec, "file");
		if (file != NULL && store_stat(st, file, &sb) == 0)
			continue;
		if (store_int(rec, "children") > 0) {
			store_item(items, "dangling-record", file, key,
			    "kept: it has children");
			continue;
		}
		if (json_array_size(json_object_get(rec, "users")) > 0) {
			store_item(items, "dangling-record", file, key,
			    "kept: a VM uses it");
			continue;
		}
		if (dry_run) {
			store_item(items, "dangling-record", file, key,
			    "would remove");
			continue;
		}
		if (t == NULL && (t = db_begin(st->db, cause)) == NULL)
			return (-1);
		if (db_txn_del(t, DB_IMAGES, key, cause) < 0)
			goto fail;
		parent = store_str(rec, "parent");
		if (parent != NULL &&
		    (prec = db_txn_get(t, DB_IMAGES, parent)) != NULL) {
			json_object_set_new(prec, "children", json_integer(
			    store_int(prec, "children") > 0 ?
			    store_int(prec, "children") - 1 : 0));
			if (db_txn_put(t, DB_IMAGES, parent, prec, cause) != 0) {
				json_decref(prec);
				goto fail;
			}
			json_decref(prec);
		}
		store_item(items, "dangling-record", file, key, "removed");
		n++;
	}
	if (t != NULL && db_commit(t, cause) != 0)
		return (-1);
	return (n);
fail:
	db_abort(t);
	return (-1);
}

/*
 * Put file modes back in line with the rule (read-only exactly when an
 * image has children): a crash between a chmod and its commit, or a
 * removal, can leave them off by one.
 */
static void
store_gc_modes(struct imgstore *st, json_t *all, int dry_run, json_t *items)
{
	json_t		*rec;
	const char	*key, *file;
	struct stat	 sb;
	int		 ro, want_ro;

	json_object_foreach(all, key, rec) {
		file = store_str(rec, "file");
		if (file == NULL || store_stat(st, file, &sb) == -1 ||
		    !S_ISREG(sb.st_mode))
			continue;
		ro = (sb.st_mode & 0222) == 0;
		want_ro = store_int(rec, "children") > 0;
		if (ro == want_ro)
			continue;
		if (dry_run)
			store_item(items, "mode", file, key, want_ro ?
			    "would make read-only" : "would make writable");
		else if (store_set_immutable(st, file, want_ro, NULL) != 0)
			store_item(items, "mode", file, key, "kept: cannot "
			    "change its mode");
		else
			store_item(items, "mode", file, key, want_ro ?
			    "made read-only" : "made writable");
	}
}

/* Files first, then records, then modes from the index as gc left it. */
int
imgstore_gc(struct imgstore *st, int dry_run, json_t **report,
    char **cause)
{
	json_t	*all, *items;

	*report = NULL;
	store_fresh_view(st);
	if ((all = store_all(st, cause)) == NULL)
		return (IMGSTORE_ERR);
	items = json_array();
	if (store_gc_files(st, all, dry_run, items) != 0) {
		json_decref(items);
		json_decref(all);
		return (store_fail(cause, IMGSTORE_ERR, "cannot read %s: %s",
		    st->dir, strerror(errno)));
	}
	if (store_gc_records(st, all, dry_run, items, cause) < 0) {
		json_decref(items);
		json_decref(all);
		return (IMGSTORE_ERR);
	}
	json_decref(all);
	/* Modes after the records, from the index as it now is. */
	if ((all = store_all(st, cause)) == NULL) {
		json_decref(items);
		return (IMGSTORE_ERR);
	}
	store_gc_modes(st, all, dry_run, items);
	json_decref(all);
	*report = json_pack("{s:b, s:o}", "dry_run", dry_run, "items", items);
	return (0);
}

/* Add or remove vm in the users of image name, in one transaction. */
static int
store_users(struct imgstore *st, const char *name, const char *vm, int add,
    char **cause)
{
	struct db_txn	*t;
	json_t		*rec, *users, *u;
	size_t		 i;
	int		 found = -1;

	if (names_valid(vm, "VM", cause) != 0)
		return (IMGSTORE_EINVAL);
	if ((t = db_begin(st->db, cause)) == NULL)
		return (IMGSTORE_ERR);
	if ((rec = db_txn_get(t, DB_IMAGES, name)) == NULL) {
		db_abort(t);
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	}
	if (!json_is_array(users = json_object_get(rec, "users"))) {
		users = json_array();
		json_object_set_new(rec, "users", users);
	}
	json_array_foreach(users, i, u) {
		if (json_string_value(u) != NULL &&
		    strcmp(json_string_value(u), vm) == 0)
			found = i;
	}
	if ((add && found != -1) || (!add && found == -1)) {
		json_decref(rec);
		db_abort(t);
		return (0);
	}
	if (add)
		json_array_append_new(users, json_string(vm));
	else
		json_array_remove(users, found);
	if (db_txn_put(t, DB_IMAGES, name, rec, cause) != 0) {
		json_decref(rec);
		db_abort(t);
		return (IMGSTORE_ERR);
	}
	json_decref(rec);
	return (db_commit(t, cause) == 0 ? 0 : IMGSTORE_ERR);
}

int
imgstore_use(struct imgstore *st, const char *name, const char *vm,
    char **cause)
{
	return (store_users(st, name, vm, 1, cause));
}

int
imgstore_unuse(struct imgstore *st, const char *name, const char *vm,
    char **cause)
{
	return (store_users(st, name, vm, 0, cause));
}
