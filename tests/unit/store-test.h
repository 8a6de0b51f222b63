/*
 * What the image store's tests share (test-imgstore.c, test-store-edit.c):
 * a store over a real LMDB environment in a scratch directory, and ways
 * to look at its records and files.
 */
#ifndef QDESK_TEST_STORE_H
#define QDESK_TEST_STORE_H

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "db.h"
#include "sh.h"
#include "store.h"
#include "xmalloc.h"

static char		*tdir, *idir;
static struct db	*db;
static struct imgstore	*st;

static inline const char *
str(json_t *rec, const char *key)
{
	return (json_string_value(json_object_get(rec, key)));
}

static inline json_int_t
num(json_t *rec, const char *key)
{
	return (json_integer_value(json_object_get(rec, key)));
}

/* The file of image name, from its record (allocated). */
static inline char *
file_of(const char *name)
{
	json_t	*rec;
	char	*cause = NULL, *f;

	if ((rec = imgstore_get(st, name, &cause)) == NULL) {
		free(cause);
		return (xstrdup("?"));
	}
	f = xstrdup(str(rec, "file"));
	json_decref(rec);
	return (f);
}

/* The children count of image name's record, -1 if it has none. */
static inline json_int_t
children_of(const char *name)
{
	json_t		*rec;
	json_int_t	 n;
	char		*cause = NULL;

	if ((rec = imgstore_get(st, name, &cause)) == NULL) {
		free(cause);
		return (-1);
	}
	n = num(rec, "children");
	json_decref(rec);
	return (n);
}

/* lstat a file of the store: 0, or -1. */
static inline int
stat_of(const char *file, struct stat *sb)
{
	char	*path;
	int	 rc;

	xasprintf(&path, "%s/%s", idir, file);
	rc = lstat(path, sb);
	free(path);
	return (rc);
}

static inline int
exists(const char *file)
{
	struct stat	sb;

	return (stat_of(file, &sb) == 0);
}

/* 1 if the file has no write bits. */
static inline int
readonly(const char *file)
{
	struct stat	sb;

	return (stat_of(file, &sb) == 0 && (sb.st_mode & 0222) == 0);
}

/* Expect rc and a cause containing want; frees the cause. */
static inline int
expect(int rc, int want_rc, char *cause, const char *want)
{
	int	ok;

	ok = rc == want_rc && cause != NULL && strstr(cause, want) != NULL;
	if (!ok)
		fprintf(stderr, "rc %d (wanted %d), cause \"%s\" (wanted "
		    "\"%s\")\n", rc, want_rc, cause ? cause : "(null)", want);
	free(cause);
	return (ok);
}

/* Evaluate call (which fills cause) first, then check what it left. */
#define EXPECT(call, want_rc, want) do {				\
	int	expect_rc_;						\
									\
	cause = NULL;							\
	expect_rc_ = (call);						\
	CHECK(expect(expect_rc_, want_rc, cause, want));		\
} while (0)

/*
 * Open a store in a new scratch directory /tmp/NAME.XXXXXX, after making
 * sure QEMU's tools are there; 0 or -1 (said why).
 */
static inline int
store_test_open(const char *name)
{
	char	*tmpl, *dbdir, *cause = NULL;

	if (sh_need_qemu_tools(1) != 0)
		return (-1);
	xasprintf(&tmpl, "/tmp/%s.XXXXXX", name);
	if ((tdir = mkdtemp(tmpl)) == NULL) {
		perror("mkdtemp");
		return (-1);
	}
	xasprintf(&dbdir, "%s/db", tdir);
	xasprintf(&idir, "%s/images", tdir);
	if ((db = db_open(dbdir, &cause)) == NULL ||
	    (st = imgstore_open(db, idir, &cause)) == NULL) {
		fprintf(stderr, "%s\n", cause);
		free(dbdir);
		return (-1);
	}
	free(dbdir);
	return (0);
}

/* Close the store and remove its scratch directory. */
static inline void
store_test_close(void)
{
	imgstore_close(st);
	db_close(db);
	sh("rm -rf %s", tdir);
	free(tdir);
	free(idir);
}

#endif
