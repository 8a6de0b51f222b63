/*
 * Checks of the image store against its files: imgstore_verify reports
 * what disagrees (records, chains, child counts, modes, files no record
 * points at) and imgstore_gc removes what a crash can leave behind
 * (temporary and orphan files, records without a file) and puts file
 * modes back in line. Files a job of ours or another process is still
 * writing are left alone.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "db.h"
#include "log.h"
#include "qcow2-write.h"
#include "store-private.h"
#include "store.h"
#include "xmalloc.h"

/* Returns 1 if the record's file has write bits while it has children. */
static int
store_check_writable(struct imgstore *st, const char *file)
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
store_check_fresh_view(struct imgstore *st)
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

/* Append a problem to a verify report. */
static void
store_check_problem(json_t *problems, const char *image, const char *file,
    const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	xvasprintf(&s, fmt, ap);
	va_end(ap);
	json_array_append_new(problems, json_pack("{s:s?, s:s?, s:s}",
	    "image", image, "file", file, "problem", s));
	free(s);
}

/* Check one record against its files and the rest of the index. */
static void
store_check_one(struct imgstore *st, const char *name, json_t *rec,
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
		store_check_problem(problems, name, file, "bad record");
		return;
	}
	parent = store_str(rec, "parent");
	if (parent != NULL && json_object_get(all, parent) == NULL)
		store_check_problem(problems, name, file, "parent %s is not in the "
		    "index", parent);
	json_object_foreach(all, key, other) {
		p = store_str(other, "parent");
		if (p != NULL && strcmp(p, name) == 0)
			children++;
	}
	if (children != store_int(rec, "children"))
		store_check_problem(problems, name, file, "the index counts %lld "
		    "children, %lld images name it as their parent",
		    (long long)store_int(rec, "children"), (long long)children);
	if (children > 0 && store_check_writable(st, file))
		store_check_problem(problems, name, file, "it has children but its "
		    "file is writable");

	if (chain_walk(st->dir, file, format, &c, &why) != 0) {
		store_check_problem(problems, name, file, "%s", why);
		free(why);
		return;
	}
	if ((uint64_t)store_int(rec, "virtual_size") != c->links[0].size)
		store_check_problem(problems, name, file, "the index says a virtual "
		    "size of %lld bytes, the file %llu",
		    (long long)store_int(rec, "virtual_size"),
		    (unsigned long long)c->links[0].size);
	if ((why = store_match_chain(c, name, all)) != NULL) {
		store_check_problem(problems, name, file, "%s", why);
		free(why);
	}
	chain_free(c);
}

/* Does some record use file? */
static int
store_check_file_used(json_t *all, const char *file)
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
store_check_locked(struct imgstore *st, const char *file)
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
store_check_is_tmp(const char *file)
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
	store_check_fresh_view(st);
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
		store_check_one(st, name, rec, all, problems);
		n = 1;
		goto done;
	}
	json_object_foreach(all, key, rec) {
		store_check_one(st, key, rec, all, problems);
		n++;
	}
	/* Files nothing points at: what a crash can leave behind. */
	if ((fd = dup(st->dirfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		store_check_problem(problems, NULL, NULL, "cannot read %s: %s",
		    st->dir, strerror(errno));
		goto done;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (store_check_is_tmp(de->d_name)) {
			/* A locked one is still being written. */
			if (!store_check_locked(st, de->d_name))
				store_check_problem(problems, NULL, de->d_name,
				    "temporary file left behind (image gc "
				    "removes it)");
		}
		else if (!store_check_file_used(all, de->d_name))
			store_check_problem(problems, NULL, de->d_name, "no image "
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
store_check_item(json_t *items, const char *what, const char *file,
    const char *image, const char *action)
{
	json_array_append_new(items, json_pack("{s:s, s:s?, s:s?, s:s}",
	    "what", what, "file", file, "image", image, "action", action));
}

/* Remove files of the store without a record; returns -1 if unreadable. */
static int
store_check_gc_files(struct imgstore *st, json_t *all, int dry_run, json_t *items)
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
		if (store_check_is_tmp(de->d_name))
			what = "temp-file";
		else if (!store_check_file_used(all, de->d_name))
			what = "orphan-file";
		else
			continue;
		if (store_stat(st, de->d_name, &sb) == -1)
			continue;
		if (S_ISDIR(sb.st_mode))
			action = "kept: a directory";
		else if (store_check_locked(st, de->d_name))
			action = "kept: locked by a running process";
		else if (dry_run)
			action = "would remove";
		else if (unlinkat(st->dirfd, de->d_name, 0) == -1)
			action = "kept: cannot remove it";
		else
			action = "removed";
		store_check_item(items, what, de->d_name, NULL, action);
	}
	closedir(d);
	return (0);
}

/*
 * Remove records whose file is gone, in one transaction that also counts
 * them out of their parents; records with children or users stay.
 */
static int
store_check_gc_records(struct imgstore *st, json_t *all, int dry_run,
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
			store_check_item(items, "dangling-record", file, key,
			    "kept: it has children");
			continue;
		}
		if (json_array_size(json_object_get(rec, "users")) > 0) {
			store_check_item(items, "dangling-record", file, key,
			    "kept: a VM uses it");
			continue;
		}
		if (dry_run) {
			store_check_item(items, "dangling-record", file, key,
			    "would remove");
			continue;
		}
		if (t == NULL && (t = db_begin(st->db, cause)) == NULL)
			return (-1);
		if (db_txn_del(t, st->table, key, cause) < 0)
			goto fail;
		parent = store_str(rec, "parent");
		if (parent != NULL &&
		    (prec = db_txn_get(t, st->table, parent)) != NULL) {
			json_object_set_new(prec, "children", json_integer(
			    store_int(prec, "children") > 0 ?
			    store_int(prec, "children") - 1 : 0));
			if (db_txn_put(t, st->table, parent, prec, cause) != 0) {
				json_decref(prec);
				goto fail;
			}
			json_decref(prec);
		}
		store_check_item(items, "dangling-record", file, key, "removed");
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
store_check_gc_modes(struct imgstore *st, json_t *all, int dry_run, json_t *items)
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
			store_check_item(items, "mode", file, key, want_ro ?
			    "would make read-only" : "would make writable");
		else if (store_set_immutable(st, file, want_ro, NULL) != 0)
			store_check_item(items, "mode", file, key, "kept: cannot "
			    "change its mode");
		else
			store_check_item(items, "mode", file, key, want_ro ?
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
	store_check_fresh_view(st);
	if ((all = store_all(st, cause)) == NULL)
		return (IMGSTORE_ERR);
	items = json_array();
	if (store_check_gc_files(st, all, dry_run, items) != 0) {
		json_decref(items);
		json_decref(all);
		return (store_fail(cause, IMGSTORE_ERR, "cannot read %s: %s",
		    st->dir, strerror(errno)));
	}
	if (store_check_gc_records(st, all, dry_run, items, cause) < 0) {
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
	store_check_gc_modes(st, all, dry_run, items);
	json_decref(all);
	*report = json_pack("{s:b, s:o}", "dry_run", dry_run, "items", items);
	return (0);
}
