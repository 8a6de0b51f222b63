/*
 * The image store's index: records in the "images" table, files in the
 * store directory. Files are written complete before a record points at
 * them and removed only after the record is gone, so a crash leaves at
 * worst a file without a record, which imgstore_gc finds.
 *
 * This file holds the records (open, add, remove, list, the chain QEMU
 * gets, users) and the helpers store-private.h shares; chain edits are
 * in store-edit.c, verify and gc in store-check.c.
 */
#include <sys/types.h>
#include <sys/random.h>
#include <sys/stat.h>

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
#include "store-private.h"
#include "store.h"
#include "xmalloc.h"

static const char *store_kinds[] = { "base", "template", "clone", "snapshot" };

/* Fill *cause and return code, for one-line failure paths. */
int
store_fail(char **cause, int code, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	xvasprintf(cause, fmt, ap);
	va_end(ap);
	return (code);
}

/* A string member of a record, borrowed, or NULL. */
const char *
store_str(const json_t *rec, const char *key)
{
	return (json_string_value(json_object_get(rec, key)));
}

/* An integer member of a record, 0 if absent. */
json_int_t
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
	return (imgstore_open_table(db, DB_IMAGES, 0, dir, cause));
}

/*
 * The same over table (a shared store: its own table, created here), and
 * shared: other hosts index files of dir too.
 */
struct imgstore *
imgstore_open_table(struct db *db, const char *table, int shared,
    const char *dir, char **cause)
{
	struct imgstore	*st;
	char		*real;
	int		 fd;

	if (strcmp(table, DB_IMAGES) != 0 && db_table_open(db, table,
	    cause) != 0)
		return (NULL);
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
	st->table = xstrdup(table);
	st->shared = shared;
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
	free(st->table);
	free(st);
}

/* lstat a file of the store; returns -1 with errno if it cannot. */
int
store_stat(struct imgstore *st, const char *file, struct stat *sb)
{
	return (fstatat(st->dirfd, file, sb, AT_SYMLINK_NOFOLLOW));
}

/* Bytes a file of the store occupies on disk, 0 if it is gone. */
json_int_t
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
int
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
int
store_set_immutable(struct imgstore *st, const char *file, int on,
    mode_t *old)
{
	struct stat	sb;

	if (store_stat(st, file, &sb) == -1)
		return (-1);
	/* Other hosts' clones may stand on it: a shared file stays so. */
	if (!on && st->shared)
		return (0);
	if (on)
		return (store_chmod(st, file, sb.st_mode & 07555, old));
	return (store_chmod(st, file, (sb.st_mode & 07777) | S_IWUSR, old));
}

/* A new record. */
json_t *
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
json_t *
store_all(struct imgstore *st, char **cause)
{
	struct store_all	a;

	a.recs = json_object();
	if (db_foreach(st->db, st->table, store_all_cb, &a, cause) == -1) {
		json_decref(a.recs);
		return (NULL);
	}
	return (a.recs);
}

/* Refuse name if a record has it already: IMGSTORE_EEXISTS or 0. */
int
store_name_free(struct imgstore *st, const char *name, char **cause)
{
	json_t	*old;

	if ((old = db_get(st->db, st->table, name)) == NULL)
		return (0);
	json_decref(old);
	return (store_fail(cause, IMGSTORE_EEXISTS, "an image named %s "
	    "already exists", name));
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
 * Begin a transaction and read the record of image name in it; on
 * failure no transaction is left open.
 */
int
store_txn_get(struct imgstore *st, const char *name, struct db_txn **t,
    json_t **rec, char **cause)
{
	if ((*t = db_begin(st->db, cause)) == NULL)
		return (IMGSTORE_ERR);
	if ((*rec = db_txn_get(*t, st->table, name)) == NULL) {
		db_abort(*t);
		*t = NULL;
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	}
	return (0);
}

/*
 * Commit rec as the new image name, a child of image parent (whose
 * record, read before, is prec) or of none, in one transaction that
 * counts it in the parent. The parent's file turns read-only first, so
 * a failed commit can only over-protect it; it gets its mode back if it
 * had no children before.
 */
int
store_commit_child(struct imgstore *st, const char *name, json_t *rec,
    const char *parent, const json_t *prec, char **cause)
{
	struct db_txn	*t;
	json_t		*old;
	const char	*pfile = NULL;
	mode_t		 pmode = 0;
	int		 rc, chmodded = 0;

	if (parent != NULL) {
		pfile = store_str(prec, "file");
		if (store_set_immutable(st, pfile, 1, &pmode) != 0)
			return (store_fail(cause, IMGSTORE_ERR, "%s: cannot make "
			    "it read-only: %s", pfile, strerror(errno)));
		chmodded = store_int(prec, "children") == 0;
	}
	if ((t = db_begin(st->db, cause)) == NULL) {
		rc = IMGSTORE_ERR;
		goto fail;
	}
	if ((old = db_txn_get(t, st->table, name)) != NULL) {
		json_decref(old);
		rc = store_fail(cause, IMGSTORE_EEXISTS, "an image named %s "
		    "already exists", name);
		goto abort;
	}
	if (parent != NULL &&
	    (rc = store_count_child(st, t, parent, 1, NULL, cause)) != 0)
		goto abort;
	if (db_txn_put(t, st->table, name, rec, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto abort;
	}
	if (db_commit(t, cause) != 0) {
		rc = IMGSTORE_ERR;
		goto fail;
	}
	return (0);
abort:
	db_abort(t);
fail:
	if (chmodded)
		store_chmod(st, pfile, pmode, NULL);
	return (rc);
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
	json_t		*rec = NULL, *prec = NULL;
	char		*why = NULL, *owner;
	const char	*pfile = NULL, *pformat;
	int		 rc;

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
	if ((rc = store_name_free(st, name, cause)) != 0)
		return (rc);
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
		if ((prec = db_get(st->db, st->table, parent)) == NULL) {
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
	rc = store_commit_child(st, name, rec, parent, prec, cause);
out:
	json_decref(rec);
	json_decref(prec);
	chain_free(c);
	return (rc);
}

/* Add delta to the children count of a record inside a transaction. */
int
store_count_child(struct imgstore *st, struct db_txn *t, const char *name,
    int delta, json_int_t *left, char **cause)
{
	json_t		*rec;
	json_int_t	 n;
	int		 rc;

	if ((rec = db_txn_get(t, st->table, name)) == NULL)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	n = store_int(rec, "children") + delta;
	if (n < 0)
		n = 0;
	json_object_set_new(rec, "children", json_integer(n));
	rc = db_txn_put(t, st->table, name, rec, cause) == 0 ? 0 :
	    IMGSTORE_ERR;
	if (left != NULL)
		*left = n;
	json_decref(rec);
	return (rc);
}

/* Refuse to remove an image that has children or users; rc or 0. */
static int	store_rm(struct imgstore *, const char *, int, char **);

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
	return (store_rm(st, name, 1, cause));
}

/*
 * Take image name out of this index and leave its file (a shared
 * store's clone whose desktop another host runs now, which indexes it).
 * Its users are let go; refused while it has children here.
 */
int
imgstore_forget(struct imgstore *st, const char *name, char **cause)
{
	return (store_rm(st, name, 0, cause));
}

static int
store_rm(struct imgstore *st, const char *name, int unlink_file,
    char **cause)
{
	struct db_txn	*t;
	json_t		*rec, *prec = NULL;
	char		*file = NULL, *pfile = NULL;
	const char	*parent;
	json_int_t	 left = -1;
	int		 rc;

	if ((rc = store_txn_get(st, name, &t, &rec, cause)) != 0)
		return (rc);
	if (!unlink_file)
		json_object_set_new(rec, "users", json_array());
	if ((rc = store_removable(st, name, rec, cause)) != 0)
		goto fail;
	if (unlink_file && store_str(rec, "file") != NULL)
		file = xstrdup(store_str(rec, "file"));
	if ((parent = store_str(rec, "parent")) != NULL &&
	    (prec = db_txn_get(t, st->table, parent)) != NULL) {
		left = store_int(prec, "children") - 1;
		if (left < 0)
			left = 0;
		json_object_set_new(prec, "children", json_integer(left));
		if (db_txn_put(t, st->table, parent, prec, cause) != 0) {
			rc = IMGSTORE_ERR;
			goto fail;
		}
		if (store_str(prec, "file") != NULL)
			pfile = xstrdup(store_str(prec, "file"));
	}
	if (db_txn_del(t, st->table, name, cause) != 0) {
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

	if ((rec = db_get(st->db, st->table, name)) == NULL) {
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
char *
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

/* Add or remove vm in the users of image name, in one transaction. */
static int
store_users(struct imgstore *st, const char *name, const char *vm, int add,
    char **cause)
{
	struct db_txn	*t;
	json_t		*rec, *users, *u;
	size_t		 i;
	int		 found = -1, rc;

	if (names_valid(vm, "VM", cause) != 0)
		return (IMGSTORE_EINVAL);
	if ((rc = store_txn_get(st, name, &t, &rec, cause)) != 0)
		return (rc);
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
	if (db_txn_put(t, st->table, name, rec, cause) != 0) {
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
