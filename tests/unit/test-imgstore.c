/*
 * The image store over a real LMDB environment in a scratch directory:
 * add, clone, children counts, immutability, refusals, chains, reset,
 * users, verify (a corrupted header, a wrong count), gc (an orphan file,
 * a temporary file, a locked one, a dangling record) and a writer killed
 * at random moments. Chain edits are test-store-edit.c's.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "qcow2-write.h"
#include "qcow2.h"
#include "store-test.h"

/* Does a verify report hold a problem containing want? */
static int
has_problem(json_t *report, const char *want)
{
	json_t	*p;
	size_t	 i;

	json_array_foreach(json_object_get(report, "problems"), i, p) {
		if (strstr(str(p, "problem"), want) != NULL)
			return (1);
	}
	return (0);
}

/* The action a gc report gives for an item of that kind and file. */
static const char *
gc_action(json_t *report, const char *what, const char *file)
{
	json_t	*p;
	size_t	 i;

	json_array_foreach(json_object_get(report, "items"), i, p) {
		if (strcmp(str(p, "what"), what) == 0 && str(p, "file") != NULL &&
		    strcmp(str(p, "file"), file) == 0)
			return (str(p, "action"));
	}
	return ("");
}

static void
test_names(void)
{
	char	*cause = NULL, *f;

	CHECK(imgstore_name_valid("debian-12.5_x", &cause) == 0);
	CHECK(imgstore_name_valid("a", &cause) == 0);
	CHECK(imgstore_name_valid("a..b", &cause) == 0);
	EXPECT(imgstore_name_valid("", &cause), -1, "empty");
	EXPECT(imgstore_name_valid("Debian", &cause), -1,
	    "invalid");
	EXPECT(imgstore_name_valid("-x", &cause), -1,
	    "invalid");
	EXPECT(imgstore_name_valid(".x", &cause), -1,
	    "invalid");
	EXPECT(imgstore_name_valid("a/b", &cause), -1,
	    "invalid");
	EXPECT(imgstore_name_valid("0123456789012345678901234567890123"
	    "456789012345678901234567890123", &cause), -1, "limit");
	f = imgstore_new_file("desk1", "qcow2");
	CHECK(strncmp(f, "desk1-", 6) == 0 && strlen(f) == 6 + 8 + 6);
	CHECK(chain_bare_name(f));
	free(f);
}

/* Import a base with data in it; what add_file refuses. Returns its file. */
static char *
test_store_add(void)
{
	json_t	*rec;
	char	*cause = NULL, *bfile;

	/* A base imported by qemu-img, with data. */
	bfile = imgstore_new_file("debian", "qcow2");
	CHECK(sh("qemu-img create -q -f qcow2 %s/%s 1G", idir, bfile) == 0);
	CHECK(sh("qemu-io -f qcow2 -c 'write -P 0x11 0 1M' %s/%s >/dev/null",
	    idir, bfile) == 0);
	CHECK(sh("sha256sum < %s/%s > %s/base.sum", idir, bfile, tdir) == 0);
	CHECK(imgstore_add_file(st, "debian", bfile, "qcow2", "base", NULL,
	    &cause) == 0);
	rec = imgstore_get(st, "debian", &cause);
	CHECK(rec != NULL);
	CHECK_STR(str(rec, "name"), "debian");
	CHECK_STR(str(rec, "file"), bfile);
	CHECK_STR(str(rec, "format"), "qcow2");
	CHECK_STR(str(rec, "kind"), "base");
	CHECK(json_is_null(json_object_get(rec, "parent")));
	CHECK(num(rec, "virtual_size") == 1LL << 30);
	CHECK(num(rec, "allocated_size") > 0);
	CHECK(num(rec, "created") > 1700000000);
	CHECK(num(rec, "children") == 0);
	CHECK(json_array_size(json_object_get(rec, "users")) == 0);
	CHECK(str(rec, "id") != NULL && strlen(str(rec, "id")) == 16);
	json_decref(rec);

	/* Refusals at add time. */
	EXPECT(imgstore_add_file(st, "debian", bfile, "qcow2", "base",
	    NULL, &cause), IMGSTORE_EEXISTS, "already exists");
	EXPECT(imgstore_add_file(st, "debian2", bfile, "qcow2", "base",
	    NULL, &cause), IMGSTORE_EEXISTS, "already the file");
	EXPECT(imgstore_add_file(st, "x", "nothere.qcow2", "qcow2",
	    "base", NULL, &cause), IMGSTORE_EINVAL, "missing");
	EXPECT(imgstore_add_file(st, "x", bfile, "qcow2", "golden",
	    NULL, &cause), IMGSTORE_EINVAL, "unknown image kind");
	EXPECT(imgstore_add_file(st, "x", "../etc/passwd", "raw",
	    "base", NULL, &cause), IMGSTORE_EINVAL, "bad file name");
	cause = NULL;
	CHECK(sh("cd %s && qemu-img create -q -f qcow2 -u -b 'json:{\"file."
	    "filename\":\"/etc/shadow\"}' -F raw evil-1.qcow2 1G", idir) == 0);
	EXPECT(imgstore_add_file(st, "evil", "evil-1.qcow2", "qcow2",
	    "base", NULL, &cause), IMGSTORE_EINVAL, "json:");
	cause = NULL;
	CHECK(sh("cd %s && qemu-img create -q -f qcow2 -b %s -F qcow2 "
	    "ov-1.qcow2", idir, bfile) == 0);
	EXPECT(imgstore_add_file(st, "ov", "ov-1.qcow2", "qcow2",
	    "clone", NULL, &cause), IMGSTORE_EINVAL,
	    "name its parent");
	/* The same overlay, with its parent named, is fine. */
	CHECK(imgstore_add_file(st, "ov", "ov-1.qcow2", "qcow2", "snapshot",
	    "debian", &cause) == 0);
	CHECK(readonly(bfile));
	CHECK(imgstore_rm(st, "ov", &cause) == 0);
	CHECK(!exists("ov-1.qcow2"));
	CHECK(!readonly(bfile));
	CHECK(sh("rm -f %s/evil-1.qcow2", idir) == 0);
	return (bfile);
}

/*
 * Clones of the base, a snapshot over one, removal refused while there
 * are children or users, reset and list. Returns desk1's file.
 */
static char *
test_store_clones(const char *bfile)
{
	json_t		*rec, *list;
	struct chain	*c;
	char		*cause = NULL, *f1, *f2, *old, *path;

	/* Clones. */
	CHECK(imgstore_clone(st, "debian", "desk1", "clone", &cause) == 0);
	CHECK(imgstore_clone(st, "debian", "desk2", "clone", &cause) == 0);
	rec = imgstore_get(st, "desk1", &cause);
	CHECK(rec != NULL);
	CHECK_STR(str(rec, "parent"), "debian");
	CHECK_STR(str(rec, "kind"), "clone");
	CHECK_STR(str(rec, "format"), "qcow2");
	CHECK(num(rec, "virtual_size") == 1LL << 30);
	CHECK(num(rec, "children") == 0);
	json_decref(rec);
	CHECK(children_of("debian") == 2);
	CHECK(readonly(bfile));
	f1 = file_of("desk1");
	f2 = file_of("desk2");
	CHECK(strcmp(f1, f2) != 0);
	CHECK(strncmp(f1, "desk1-", 6) == 0 && exists(f1) && !readonly(f1));
	CHECK(sh("qemu-img check -q %s/%s", idir, f1) == 0);
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0x11 0 1M' %s/%s >/dev/null",
	    idir, f1) == 0);

	EXPECT(imgstore_clone(st, "nope", "x", "clone", &cause),
	    IMGSTORE_ENOTFOUND, "no image named nope");
	EXPECT(imgstore_clone(st, "debian", "desk1", "clone", &cause),
	    IMGSTORE_EEXISTS, "already exists");
	EXPECT(imgstore_clone(st, "debian", "x", "base", &cause),
	    IMGSTORE_EINVAL, "not a base");
	EXPECT(imgstore_clone(st, "debian", "X Y", "clone", &cause),
	    IMGSTORE_EINVAL, "invalid image name");

	/* A snapshot over a clone: a chain of three, named from the index. */
	CHECK(imgstore_clone(st, "desk1", "desk1.snap1", "snapshot",
	    &cause) == 0);
	CHECK(readonly(f1));
	CHECK(imgstore_chain(st, "desk1.snap1", &c, &cause) == 0);
	if (c != NULL) {
		CHECK(c->n == 3);
		CHECK_STR(c->links[0].name, "desk1.snap1");
		CHECK_STR(c->links[1].name, "desk1");
		CHECK_STR(c->links[2].name, "debian");
		CHECK_STR(c->links[1].file, f1);
		CHECK_STR(c->links[2].format, "qcow2");
		xasprintf(&path, "%s/%s", imgstore_dir(st), bfile);
		CHECK_STR(c->links[2].path, path);
		free(path);
		CHECK(c->links[0].size == 1ULL << 30);
		chain_free(c);
	}
	EXPECT(imgstore_chain(st, "nope", &c, &cause),
	    IMGSTORE_ENOTFOUND, "no image");

	/* Removal: refused with children or users. */
	EXPECT(imgstore_rm(st, "debian", &cause), IMGSTORE_EBUSY,
	    "has 2 children (desk1, desk2)");
	EXPECT(imgstore_rm(st, "desk1", &cause), IMGSTORE_EBUSY,
	    "has 1 child (desk1.snap1)");
	CHECK(imgstore_use(st, "desk2", "vm2", &cause) == 0);
	CHECK(imgstore_use(st, "desk2", "vm2", &cause) == 0);
	CHECK(imgstore_use(st, "desk2", "vm3", &cause) == 0);
	rec = imgstore_get(st, "desk2", &cause);
	CHECK(json_array_size(json_object_get(rec, "users")) == 2);
	json_decref(rec);
	EXPECT(imgstore_rm(st, "desk2", &cause), IMGSTORE_EBUSY,
	    "used by VM vm2, vm3");
	EXPECT(imgstore_use(st, "nope", "vm2", &cause),
	    IMGSTORE_ENOTFOUND, "no image");
	EXPECT(imgstore_use(st, "desk2", "Bad VM", &cause),
	    IMGSTORE_EINVAL, "VM name");
	CHECK(imgstore_unuse(st, "desk2", "vm2", &cause) == 0);
	CHECK(imgstore_unuse(st, "desk2", "vm3", &cause) == 0);
	CHECK(imgstore_unuse(st, "desk2", "vm3", &cause) == 0);
	CHECK(imgstore_rm(st, "desk2", &cause) == 0);
	CHECK(!exists(f2));
	CHECK(imgstore_get(st, "desk2", &cause) == NULL);
	free(cause);
	EXPECT(imgstore_rm(st, "desk2", &cause), IMGSTORE_ENOTFOUND,
	    "no image");
	CHECK(children_of("debian") == 1);
	CHECK(imgstore_rm(st, "desk1.snap1", &cause) == 0);
	CHECK(!readonly(f1));				/* no children left */
	CHECK(readonly(bfile));

	/* Reset: a new empty overlay, the old file and its data gone. */
	CHECK(sh("qemu-io -f qcow2 -c 'write -P 0xab 0 64k' %s/%s >/dev/null",
	    idir, f1) == 0);
	old = f1;
	CHECK(imgstore_reset(st, "desk1", &cause) == 0);
	f1 = file_of("desk1");
	CHECK(strcmp(f1, old) != 0 && exists(f1) && !exists(old));
	free(old);
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0x11 0 1M' %s/%s >/dev/null",
	    idir, f1) == 0);
	EXPECT(imgstore_reset(st, "debian", &cause), IMGSTORE_EINVAL,
	    "no parent");
	CHECK(sh("sha256sum < %s/%s | cmp -s - %s/base.sum", idir, bfile,
	    tdir) == 0);

	/* List, in name order. */
	CHECK(imgstore_clone(st, "debian", "aaa", "template", &cause) == 0);
	list = imgstore_list(st, &cause);
	CHECK(json_array_size(list) == 3);
	CHECK_STR(str(json_array_get(list, 0), "name"), "aaa");
	CHECK_STR(str(json_array_get(list, 1), "name"), "debian");
	CHECK_STR(str(json_array_get(list, 2), "name"), "desk1");
	json_decref(list);
	free(f2);
	return (f1);
}

/* Verify: all fine, then a corrupted header, then a wrong count. */
static void
test_store_verify(const char *f1)
{
	json_t		*rec, *report;
	struct chain	*c;
	char		*cause = NULL;

	CHECK(imgstore_verify(st, NULL, &report, &cause) == 0);
	CHECK(json_is_true(json_object_get(report, "ok")));
	CHECK(num(report, "checked") == 3);
	json_decref(report);
	CHECK(sh("printf '\\000\\000\\000\\011' | dd of=%s/%s bs=1 seek=4 "
	    "conv=notrunc status=none", idir, f1) == 0);
	CHECK(imgstore_verify(st, "desk1", &report, &cause) == 0);
	CHECK(json_is_false(json_object_get(report, "ok")));
	CHECK(has_problem(report, "unsupported qcow2 version 9"));
	json_decref(report);
	EXPECT(imgstore_chain(st, "desk1", &c, &cause), IMGSTORE_EINVAL,
	    "version 9");
	EXPECT(imgstore_clone(st, "desk1", "x", "clone", &cause),
	    IMGSTORE_EINVAL, "version 9");
	CHECK(sh("printf '\\000\\000\\000\\003' | dd of=%s/%s bs=1 seek=4 "
	    "conv=notrunc status=none", idir, f1) == 0);
	rec = db_get(db, DB_IMAGES, "debian");
	json_object_set_new(rec, "children", json_integer(5));
	CHECK(db_put(db, DB_IMAGES, "debian", rec, &cause) == 0);
	CHECK(imgstore_verify(st, NULL, &report, &cause) == 0);
	CHECK(has_problem(report, "counts 5 children, 2 images"));
	json_decref(report);
	json_object_set_new(rec, "children", json_integer(2));
	CHECK(db_put(db, DB_IMAGES, "debian", rec, &cause) == 0);
	json_decref(rec);
	EXPECT(imgstore_verify(st, "nope", &report, &cause),
	    IMGSTORE_ENOTFOUND, "no image");
}

/* gc: orphan, temporary, locked and job files, dangling records, modes. */
static void
test_store_gc(const char *bfile)
{
	json_t	*rec, *report;
	char	*cause = NULL, *old, *path;
	int	 fd;

	/*
	 * gc. An orphan file (a crash between a clone's rename and its
	 * commit), a temporary file, one still locked by its writer, and a
	 * dangling record.
	 */
	CHECK(qcow2_write_overlay(idir, "crash-0000.qcow2", bfile, "qcow2",
	    1ULL << 30, &cause) == 0);
	CHECK(sh("echo x > %s/.tmp-half-1111.qcow2.abcdef", idir) == 0);
	xasprintf(&path, "%s/.tmp-busy-2222.qcow2.abcdef", idir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	free(path);
	CHECK(fd != -1 && qcow2_write_lock(fd) == 0);
	CHECK(imgstore_clone(st, "debian", "gone", "clone", &cause) == 0);
	old = file_of("gone");
	CHECK(sh("rm -f %s/%s", idir, old) == 0);
	CHECK(imgstore_verify(st, NULL, &report, &cause) == 0);
	CHECK(has_problem(report, "no image has this file"));
	CHECK(has_problem(report, "temporary file"));
	CHECK(has_problem(report, "missing"));
	json_decref(report);

	CHECK(imgstore_gc(st, 1, &report, &cause) == 0);
	CHECK_STR(gc_action(report, "orphan-file", "crash-0000.qcow2"),
	    "would remove");
	CHECK_STR(gc_action(report, "temp-file",
	    ".tmp-half-1111.qcow2.abcdef"), "would remove");
	CHECK_STR(gc_action(report, "temp-file",
	    ".tmp-busy-2222.qcow2.abcdef"),
	    "kept: locked by a running process");
	CHECK_STR(gc_action(report, "dangling-record", old), "would remove");
	json_decref(report);
	CHECK(exists("crash-0000.qcow2"));
	rec = imgstore_get(st, "gone", &cause);
	CHECK(rec != NULL);
	json_decref(rec);

	CHECK(imgstore_gc(st, 0, &report, &cause) == 0);
	CHECK_STR(gc_action(report, "orphan-file", "crash-0000.qcow2"),
	    "removed");
	CHECK_STR(gc_action(report, "dangling-record", old), "removed");
	json_decref(report);
	CHECK(!exists("crash-0000.qcow2"));
	CHECK(!exists(".tmp-half-1111.qcow2.abcdef"));
	CHECK(exists(".tmp-busy-2222.qcow2.abcdef"));
	CHECK(imgstore_get(st, "gone", &cause) == NULL);
	free(cause);
	cause = NULL;
	free(old);
	CHECK(children_of("debian") == 2);
	close(fd);
	CHECK(imgstore_gc(st, 0, &report, &cause) == 0);
	CHECK_STR(gc_action(report, "temp-file",
	    ".tmp-busy-2222.qcow2.abcdef"), "removed");
	json_decref(report);

	/* A file a job of ours writes is kept, unlocked or not yet there. */
	CHECK(sh("echo x > %s/.tmp-job-3333.qcow2", idir) == 0);
	imgstore_writing(st, ".tmp-job-3333.qcow2", 1);
	CHECK(imgstore_verify(st, NULL, &report, &cause) == 0);
	CHECK(json_is_true(json_object_get(report, "ok")));
	json_decref(report);
	CHECK(imgstore_gc(st, 0, &report, &cause) == 0);
	CHECK(strncmp(gc_action(report, "temp-file", ".tmp-job-3333.qcow2"),
	    "kept", 4) == 0);
	json_decref(report);
	CHECK(exists(".tmp-job-3333.qcow2"));
	imgstore_writing(st, ".tmp-job-3333.qcow2", 0);
	CHECK(imgstore_gc(st, 0, &report, &cause) == 0);
	CHECK_STR(gc_action(report, "temp-file", ".tmp-job-3333.qcow2"),
	    "removed");
	json_decref(report);

	/* A parent left read-only by a crash before its clone's commit. */
	CHECK(imgstore_rm(st, "aaa", &cause) == 0);
	CHECK(imgstore_rm(st, "desk1", &cause) == 0);
	CHECK(!readonly(bfile));
	CHECK(sh("chmod a-w %s/%s", idir, bfile) == 0);
	CHECK(imgstore_gc(st, 0, &report, &cause) == 0);
	CHECK_STR(gc_action(report, "mode", bfile), "made writable");
	json_decref(report);
	CHECK(!readonly(bfile));
	CHECK(imgstore_verify(st, NULL, &report, &cause) == 0);
	CHECK(json_is_true(json_object_get(report, "ok")));
	json_decref(report);
	CHECK(imgstore_gc(st, 0, &report, &cause) == 0);
	CHECK(json_array_size(json_object_get(report, "items")) == 0);
	json_decref(report);
}

/* A file of directory dir is read-only (no write bits). */
static int
shared_readonly(const char *dir, const char *file)
{
	struct stat	 sb;
	char		*path;
	int		 rc;

	xasprintf(&path, "%s/%s", dir, file);
	rc = lstat(path, &sb) == 0 && (sb.st_mode & 0222) == 0;
	free(path);
	return (rc);
}

static int
shared_exists(const char *dir, const char *file)
{
	struct stat	 sb;
	char		*path;
	int		 rc;

	xasprintf(&path, "%s/%s", dir, file);
	rc = lstat(path, &sb) == 0;
	free(path);
	return (rc);
}

/*
 * A shared store seen by two hosts (two tables over one directory): a
 * clone made by one is learnt by the other's index (a migration), the
 * first forgets it and leaves the file, the template stays read-only
 * though that index counts no child of it; the second removes it.
 */
static void
test_shared(void)
{
	struct imgstore	*a, *b, *c;
	json_t		*rec;
	char		*sdir, *tfile, *cfile, *cause = NULL;

	xasprintf(&sdir, "%s/shared", tdir);
	a = imgstore_open_table(db, "images:s", 1, sdir, &cause);
	CHECK(a != NULL);
	b = imgstore_open_table(db, "images:s2", 1, sdir, &cause);
	CHECK(b != NULL);
	if (a == NULL || b == NULL)
		return;
	tfile = imgstore_new_file("stpl", "qcow2");
	CHECK(sh("qemu-img create -q -f qcow2 %s/%s 64M", sdir, tfile) == 0);
	CHECK(imgstore_add_file(a, "stpl", tfile, "qcow2", "template", NULL,
	    &cause) == 0);
	CHECK(imgstore_clone_for(a, "stpl", "sdesk-disk", "clone", "sdesk",
	    &cause) == 0);
	rec = imgstore_get(a, "sdesk-disk", &cause);
	CHECK(rec != NULL);
	cfile = xstrdup(rec != NULL ? str(rec, "file") : "?");
	json_decref(rec);
	CHECK(shared_readonly(sdir, tfile));
	/* Tables of their own: neither this host's store nor the other's. */
	CHECK((rec = imgstore_get(st, "stpl", &cause)) == NULL);
	free(cause);
	CHECK((rec = imgstore_get(b, "sdesk-disk", &cause)) == NULL);
	free(cause);
	cause = NULL;

	/* The other host learns the same files. */
	CHECK(imgstore_add_file(b, "stpl", tfile, "qcow2", "template", NULL,
	    &cause) == 0);
	CHECK(imgstore_add_file(b, "sdesk-disk", cfile, "qcow2", "clone",
	    "stpl", &cause) == 0);
	CHECK(imgstore_use(b, "sdesk-disk", "sdesk", &cause) == 0);
	CHECK(children_of("stpl") == -1);

	/* A third learns the template from its file, never the clone. */
	c = imgstore_open_table(db, "images:s3", 1, sdir, &cause);
	CHECK(c != NULL);
	if (c != NULL) {
		CHECK(imgstore_learn(c, "stpl", &cause) == 0);
		CHECK(imgstore_learn(c, "stpl", &cause) == 0);
		rec = imgstore_get(c, "stpl", &cause);
		CHECK(rec != NULL && strcmp(str(rec, "file"), tfile) == 0);
		json_decref(rec);
		EXPECT(imgstore_learn(c, "sdesk-disk", &cause),
		    IMGSTORE_EINVAL, "backing file");
		EXPECT(imgstore_learn(c, "nothere", &cause),
		    IMGSTORE_ENOTFOUND, "no file");
		imgstore_close(c);
	}
	EXPECT(imgstore_learn(st, "stpl", &cause), IMGSTORE_ENOTFOUND,
	    "no image named");

	/* The first forgets it, users and all; the file stays. */
	CHECK(imgstore_forget(a, "sdesk-disk", &cause) == 0);
	CHECK((rec = imgstore_get(a, "sdesk-disk", &cause)) == NULL);
	free(cause);
	cause = NULL;
	CHECK(shared_exists(sdir, cfile));
	rec = imgstore_get(a, "stpl", &cause);
	CHECK(rec != NULL && num(rec, "children") == 0);
	json_decref(rec);
	CHECK(shared_readonly(sdir, tfile));
	EXPECT(imgstore_forget(a, "sdesk-disk", &cause), IMGSTORE_ENOTFOUND,
	    "no image");

	/* The second removes it: the file goes, the template stays. */
	EXPECT(imgstore_rm(b, "sdesk-disk", &cause), IMGSTORE_EBUSY,
	    "used by VM sdesk");
	CHECK(imgstore_unuse(b, "sdesk-disk", "sdesk", &cause) == 0);
	CHECK(imgstore_rm(b, "sdesk-disk", &cause) == 0);
	CHECK(!shared_exists(sdir, cfile));
	CHECK(shared_exists(sdir, tfile) && shared_readonly(sdir, tfile));
	imgstore_close(a);
	imgstore_close(b);
	free(tfile);
	free(cfile);
	free(sdir);
}

/* The store's records, clones, checks and gc over one base. */
static void
test_store(void)
{
	char	*cause = NULL, *bfile, *f1;
	int	 rc;

	bfile = test_store_add();
	f1 = test_store_clones(bfile);
	test_store_verify(f1);
	test_store_gc(bfile);

	/* Nothing but the base left, and it was never written to. */
	CHECK(sh("sha256sum < %s/%s | cmp -s - %s/base.sum", idir, bfile,
	    tdir) == 0);
	rc = imgstore_rm(st, "debian", &cause);
	CHECK(rc == 0);
	CHECK(!exists(bfile));
	free(f1);
	free(bfile);
}

/*
 * The child of test_crash: clone over base in a loop until killed, each
 * clone removing the one before last, as a busy daemon would.
 */
static int
clone_loop(const char *dir)
{
	struct db	*cdb;
	struct imgstore	*cst;
	char		*cause = NULL, *p, name[64];
	int		 i;

	xasprintf(&p, "%s/db", dir);
	cdb = db_open(p, &cause);
	free(p);
	xasprintf(&p, "%s/images", dir);
	cst = cdb != NULL ? imgstore_open(cdb, p, &cause) : NULL;
	free(p);
	if (cst == NULL)
		return (1);
	for (i = 0;; i++) {
		snprintf(name, sizeof name, "loop%d-%d", (int)getpid(), i);
		if (imgstore_clone(cst, "crashbase", name, "clone",
		    &cause) != 0)
			return (1);
		/*
		 * loop-0 stays: the parent waits to see it before it
		 * kills, and a starved parent polling every 10 ms would
		 * never find it if it went with the third clone.
		 */
		if (i >= 3) {
			snprintf(name, sizeof name, "loop%d-%d", (int)getpid(),
			    i - 2);
			if (imgstore_rm(cst, name, &cause) != 0)
				return (1);
		}
	}
}

/*
 * kill -9 a process cloning in a loop, again and again at random moments,
 * then check that verify and gc find the index and the files consistent
 * once gc has removed what the kills left half done.
 */
static void
test_crash(const char *self)
{
	json_t		*report, *gcreport, *list, *rec;
	char		*cause = NULL, *bfile;
	size_t		 i;
	pid_t		 pid;
	int		 round, status, wait;
	struct timespec	 ts;
	char		 first[64];

	bfile = imgstore_new_file("crashbase", "qcow2");
	CHECK(qcow2_write_empty(idir, bfile, 1 << 30, &cause) == 0);
	CHECK(imgstore_add_file(st, "crashbase", bfile, "qcow2", "base",
	    NULL, &cause) == 0);
	srandom(getpid());
	for (round = 0; round < 8; round++) {
		/* Each round starts from a clean store: gc what the last left. */
		CHECK(imgstore_gc(st, 0, &report, &cause) == 0);
		json_decref(report);
		if ((pid = fork()) == 0) {
			execl(self, self, "--clone-loop", tdir, (char *)NULL);
			_exit(127);
		}
		/*
		 * The kill lands 20-80 ms after the child's first clone is
		 * in the index, not after the fork: on a busy machine the
		 * exec alone can take longer, and no clone would survive.
		 */
		snprintf(first, sizeof first, "loop%d-0", (int)pid);
		for (wait = 0; wait < 3000; wait++) {
			if ((rec = imgstore_get(st, first, &cause)) != NULL)
				break;
			free(cause);
			cause = NULL;
			ts.tv_sec = 0;
			ts.tv_nsec = 10 * 1000000L;
			nanosleep(&ts, NULL);
		}
		CHECK(rec != NULL);
		json_decref(rec);
		ts.tv_sec = 0;
		ts.tv_nsec = (20 + random() % 60) * 1000000L;
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	}

	CHECK(imgstore_gc(st, 0, &gcreport, &cause) == 0);
	CHECK(imgstore_verify(st, NULL, &report, &cause) == 0);
	CHECK(json_is_true(json_object_get(report, "ok")));
	if (!json_is_true(json_object_get(report, "ok"))) {
		fprintf(stderr, "gc: ");
		json_dumpf(gcreport, stderr, JSON_COMPACT);
		fprintf(stderr, "\nverify: ");
		json_dumpf(report, stderr, JSON_COMPACT);
		fprintf(stderr, "\n");
	}
	json_decref(gcreport);
	json_decref(report);
	/* A second gc finds nothing left to do. */
	CHECK(imgstore_gc(st, 0, &report, &cause) == 0);
	CHECK(json_array_size(json_object_get(report, "items")) == 0);
	json_decref(report);

	/* Every record's file is there and a valid overlay. */
	list = imgstore_list(st, &cause);
	CHECK(json_array_size(list) >= 2);
	json_array_foreach(list, i, rec) {
		CHECK(exists(str(rec, "file")));
		if (strcmp(str(rec, "name"), "crashbase") != 0)
			CHECK(sh("qemu-img check -q %s/%s", idir,
			    str(rec, "file")) == 0);
	}
	json_decref(list);
	rec = imgstore_get(st, "crashbase", &cause);
	CHECK(num(rec, "children") >= 1);
	json_decref(rec);
	free(bfile);
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--clone-loop") == 0)
		return (clone_loop(argv[2]));
	if (store_test_open("test-imgstore") != 0)
		return (1);
	test_names();
	test_store();
	test_shared();
	test_crash("/proc/self/exe");
	store_test_close();
	return (check_exit());
}
