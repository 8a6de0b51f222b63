/*
 * The image store's chain edits over a real store: snapshots and
 * templates by freezing, reverts, the undo of a freeze, a flatten's
 * replace, and merging a snapshot away (the qemu-img rebase it plans, run
 * for real, then the drop). Every step keeps the content it promises,
 * read back through the chain with qemu-io, and verify happy.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "store-test.h"

/* 1 if the guest-visible content of image name reads pattern at 0. */
static int
reads(const char *name, int pattern)
{
	struct chain	*c;
	char		*cause = NULL, *spec = NULL, *tmp;
	u_int		 i;
	int		 rc;

	/* An explicit chain, as qmpd hands QEMU. */
	if (imgstore_chain(st, name, &c, &cause) != 0) {
		fprintf(stderr, "%s\n", cause);
		free(cause);
		return (0);
	}
	for (i = c->n; i-- > 0;) {
		xasprintf(&tmp, "{\"driver\":\"%s\",\"file\":{\"driver\":"
		    "\"file\",\"filename\":\"%s\"}%s%s%s}", c->links[i].format,
		    c->links[i].path, spec != NULL ? ",\"backing\":" : "",
		    spec != NULL ? spec : "", spec == NULL &&
		    strcmp(c->links[i].format, "qcow2") == 0 ?
		    ",\"backing\":null" : "");
		free(spec);
		spec = tmp;
	}
	rc = sh("qemu-io -r -c 'read -q -P 0x%02x 0 64k' 'json:%s' | "
	    "grep -q 'Pattern verification failed' && exit 1 || exit 0",
	    pattern, spec);
	free(spec);
	chain_free(c);
	return (rc == 0);
}

/* Write pattern at 0 of image name's top file, as a running VM would. */
static int
writes(const char *name, int pattern)
{
	char	*f = file_of(name);
	int	 rc;

	rc = sh("qemu-io -c 'write -q -P 0x%02x 0 64k' %s/%s", pattern, idir,
	    f);
	free(f);
	return (rc == 0);
}

/* argv as one line, an empty word as ''; allocated. */
static char *
argv_line(char **argv)
{
	char	*line = NULL, *tmp;

	for (; *argv != NULL; argv++) {
		xasprintf(&tmp, "%s%s%s", line != NULL ? line : "",
		    line != NULL ? " " : "", **argv != '\0' ? *argv : "''");
		free(line);
		line = tmp;
	}
	return (line);
}

/* Run argv (argv[0] a path) with its output thrown away; its status. */
static int
run_argv(char **argv)
{
	pid_t	pid;
	int	status, fd;

	if ((pid = fork()) == -1)
		return (-1);
	if (pid == 0) {
		if ((fd = open("/dev/null", O_WRONLY)) != -1)
			dup2(fd, STDOUT_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status))
		return (-1);
	return (WEXITSTATUS(status));
}

/*
 * Merge snapshot vm1.s2 out from between vm1-disk and vm1.s1 as qmpd
 * does: the one child, the qemu-img rebase it plans (refused for an image
 * with two children, none, or a child of another), run, then the drop.
 */
static void
test_merge_plan(void)
{
	json_t	*rec;
	char	*cause = NULL, *child = NULL, **argv = NULL, *line, *want;
	char	*snapf, *f, *s1f;

	CHECK(imgstore_clone(st, "vm1.s2", "extra", "clone", &cause) == 0);
	EXPECT(imgstore_merge_child(st, "vm1.s2", &child, &cause),
	    IMGSTORE_EBUSY, "more than one image based on it");
	CHECK(child == NULL);
	CHECK(imgstore_rm(st, "extra", &cause) == 0);
	EXPECT(imgstore_merge_child(st, "vm1-disk", &child, &cause),
	    IMGSTORE_ERR, "counts children that it does not hold");
	EXPECT(imgstore_merge_argv(st, "vm1.s1", "vm1-disk",
	    "/usr/bin/qemu-img", &argv, &cause), IMGSTORE_EINVAL,
	    "vm1-disk is not based on image vm1.s1");
	CHECK(argv == NULL);
	EXPECT(imgstore_merge_argv(st, "vm1.s2", "nope", "/usr/bin/qemu-img",
	    &argv, &cause), IMGSTORE_ENOTFOUND, "no image named nope");

	/* An image without a parent: the child ends up standing alone. */
	CHECK(imgstore_merge_argv(st, "fbase", "vm1.s1", "/usr/bin/qemu-img",
	    &argv, &cause) == 0);
	f = file_of("vm1.s1");
	xasprintf(&want, "/usr/bin/qemu-img rebase -p -f qcow2 -b '' %s/%s",
	    imgstore_dir(st), f);
	line = argv_line(argv);
	CHECK_STR(line, want);
	free(line);
	free(want);
	free(f);
	xfreev(argv);

	snapf = file_of("vm1.s2");
	CHECK(imgstore_merge_child(st, "vm1.s2", &child, &cause) == 0);
	CHECK_STR(child, "vm1-disk");
	EXPECT(imgstore_drop(st, "vm1.s2", &cause), IMGSTORE_EINVAL,
	    "does not back onto");
	CHECK(imgstore_merge_argv(st, "vm1.s2", child, "/usr/bin/qemu-img",
	    &argv, &cause) == 0);
	f = file_of("vm1-disk");
	s1f = file_of("vm1.s1");
	xasprintf(&want, "/usr/bin/qemu-img rebase -p -f qcow2 -b %s -F qcow2 "
	    "%s/%s", s1f, imgstore_dir(st), f);
	line = argv_line(argv);
	CHECK_STR(line, want);
	free(line);
	free(want);
	CHECK(run_argv(argv) == 0);
	xfreev(argv);
	CHECK(imgstore_drop(st, "vm1.s2", &cause) == 0);
	CHECK(!exists(snapf));
	rec = imgstore_get(st, "vm1-disk", &cause);
	CHECK_STR(str(rec, "parent"), "vm1.s1");
	CHECK_STR(str(rec, "file"), f);
	json_decref(rec);
	CHECK(children_of("vm1.s1") == 1);
	CHECK(reads("vm1-disk", 0x33));
	EXPECT(imgstore_drop(st, "fbase", &cause), IMGSTORE_EINVAL,
	    "does not back onto");
	free(child);
	free(snapf);
	free(f);
	free(s1f);
}

/*
 * On test_freeze's disk vm1-disk (over snapshots vm1.s2 and vm1.s1): a
 * freeze taken back, the drop of a merged snapshot, a template and a
 * flatten's replace.
 */
static void
test_merge(void)
{
	json_t	*rec;
	char	*cause = NULL, *f, *old;

	/* A freeze taken back (QEMU refused the live snapshot). */
	old = file_of("vm1-disk");
	CHECK(imgstore_freeze(st, "vm1-disk", "vm1.s3", "snapshot", NULL,
	    &cause) == 0);
	f = file_of("vm1-disk");
	CHECK(imgstore_unfreeze(st, "vm1-disk", "vm1.s3", &cause) == 0);
	CHECK(!exists(f));
	free(f);
	f = file_of("vm1-disk");
	CHECK_STR(f, old);
	CHECK(!readonly(f));
	free(f);
	CHECK(imgstore_get(st, "vm1.s3", &cause) == NULL);
	free(cause);
	cause = NULL;
	EXPECT(imgstore_unfreeze(st, "vm1-disk", "vm1.s1", &cause),
	    IMGSTORE_EINVAL, "fresh overlay");

	free(old);
	old = NULL;
	test_merge_plan();

	/* Template from a disk, then flatten a clone of it. */
	CHECK(imgstore_freeze(st, "vm1-disk", "tpl", "template", NULL,
	    &cause) == 0);
	CHECK(imgstore_clone(st, "tpl", "flat", "clone", &cause) == 0);
	old = (free(old), file_of("flat"));
	f = imgstore_new_file("flat", "qcow2");
	CHECK(sh("cd %s && qemu-img convert -O qcow2 %s %s", idir, old,
	    f) == 0);
	EXPECT(imgstore_replace(st, "flat", f, "wrong.qcow2", &cause),
	    IMGSTORE_EBUSY, "changed meanwhile");
	CHECK(imgstore_replace(st, "flat", f, old, &cause) == 0);
	CHECK(!exists(old));
	rec = imgstore_get(st, "flat", &cause);
	CHECK(json_is_null(json_object_get(rec, "parent")));
	CHECK_STR(str(rec, "file"), f);
	json_decref(rec);
	CHECK(children_of("tpl") == 1);
	CHECK(reads("flat", 0x33));
	free(f);
	f = file_of("vm1.s1");
	EXPECT(imgstore_replace(st, "vm1-disk", f, "x", &cause),
	    IMGSTORE_EINVAL, "still has a backing file");
	free(f);
	free(old);
}

/*
 * Snapshots and templates by freezing, reverts, the undo of a freeze, a
 * flatten's replace and the drop of a merged snapshot: every step keeps
 * the content it promises and verify happy.
 */
static void
test_freeze(void)
{
	json_t		*rec, *report, *extra;
	char		*cause = NULL, *bfile, *f, *old;

	bfile = imgstore_new_file("fbase", "qcow2");
	CHECK(sh("qemu-img create -q -f qcow2 %s/%s 64M", idir, bfile) == 0);
	CHECK(sh("qemu-io -f qcow2 -c 'write -q -P 0x11 0 1M' %s/%s", idir,
	    bfile) == 0);
	CHECK(imgstore_add_file(st, "fbase", bfile, "qcow2", "base", NULL,
	    &cause) == 0);
	CHECK(imgstore_clone_for(st, "fbase", "vm1-disk", "clone", "vm1",
	    &cause) == 0);
	rec = imgstore_get(st, "vm1-disk", &cause);
	CHECK(json_array_size(json_object_get(rec, "users")) == 1);
	CHECK_STR(json_string_value(json_array_get(json_object_get(rec,
	    "users"), 0)), "vm1");
	json_decref(rec);
	EXPECT(imgstore_rm(st, "vm1-disk", &cause), IMGSTORE_EBUSY,
	    "used by VM vm1");
	EXPECT(imgstore_clone_for(st, "fbase", "x", "clone", "Bad VM",
	    &cause), IMGSTORE_EINVAL, "VM");
	CHECK(imgstore_unuse(st, "vm1-disk", "vm1", &cause) == 0);
	CHECK(writes("vm1-disk", 0x22));
	old = file_of("vm1-disk");

	/* Snapshot s1: the file changes hands, the disk goes on, empty. */
	extra = json_pack("{s:s,s:s}", "vm", "vm1", "snapshot", "s1");
	CHECK(imgstore_freeze(st, "vm1-disk", "vm1.s1", "snapshot", extra,
	    &cause) == 0);
	json_decref(extra);
	rec = imgstore_get(st, "vm1.s1", &cause);
	CHECK(rec != NULL);
	CHECK_STR(str(rec, "file"), old);
	CHECK_STR(str(rec, "kind"), "snapshot");
	CHECK_STR(str(rec, "parent"), "fbase");
	CHECK_STR(str(rec, "vm"), "vm1");
	CHECK_STR(str(rec, "snapshot"), "s1");
	CHECK(num(rec, "children") == 1);
	CHECK(num(rec, "virtual_size") == 64 << 20);
	json_decref(rec);
	rec = imgstore_get(st, "vm1-disk", &cause);
	CHECK_STR(str(rec, "parent"), "vm1.s1");
	CHECK(strcmp(str(rec, "file"), old) != 0);
	json_decref(rec);
	CHECK(children_of("fbase") == 1);
	CHECK(readonly(old));
	CHECK(reads("vm1-disk", 0x22));
	EXPECT(imgstore_freeze(st, "vm1-disk", "vm1.s1", "snapshot", NULL,
	    &cause), IMGSTORE_EEXISTS, "already exists");
	EXPECT(imgstore_freeze(st, "vm1.s1", "x", "snapshot", NULL, &cause),
	    IMGSTORE_EBUSY, "has children");
	EXPECT(imgstore_freeze(st, "vm1-disk", "x", "clone", NULL, &cause),
	    IMGSTORE_EINVAL, "not a clone");

	/* Write after the snapshot, take s2, write again. */
	CHECK(writes("vm1-disk", 0x33));
	CHECK(imgstore_freeze(st, "vm1-disk", "vm1.s2", "snapshot", NULL,
	    &cause) == 0);
	CHECK(writes("vm1-disk", 0x44));
	CHECK(reads("vm1-disk", 0x44));

	/* Revert to s1: s2 stays, childless; then to s2, then back. */
	CHECK(imgstore_revert(st, "vm1-disk", "vm1.s1", &cause) == 0);
	CHECK(reads("vm1-disk", 0x22));
	CHECK(children_of("vm1.s2") == 0);
	CHECK(children_of("vm1.s1") == 2);
	f = file_of("vm1.s2");
	CHECK(!readonly(f));
	free(f);
	CHECK(imgstore_revert(st, "vm1-disk", "vm1.s2", &cause) == 0);
	CHECK(reads("vm1-disk", 0x33));
	f = file_of("vm1.s2");
	CHECK(readonly(f));
	free(f);
	EXPECT(imgstore_revert(st, "vm1-disk", "vm1-disk", &cause),
	    IMGSTORE_EINVAL, "its own parent");
	EXPECT(imgstore_revert(st, "vm1.s1", "fbase", &cause),
	    IMGSTORE_EBUSY, "has children");
	CHECK(imgstore_verify(st, NULL, &report, &cause) == 0);
	CHECK(json_is_true(json_object_get(report, "ok")));
	json_decref(report);

	free(old);
	test_merge();

	CHECK(imgstore_verify(st, NULL, &report, &cause) == 0);
	CHECK(json_is_true(json_object_get(report, "ok")));
	if (!json_is_true(json_object_get(report, "ok")))
		json_dumpf(report, stderr, JSON_INDENT(2));
	json_decref(report);
	CHECK(imgstore_rm(st, "flat", &cause) == 0);
	CHECK(imgstore_rm(st, "vm1-disk", &cause) == 0);
	CHECK(imgstore_rm(st, "tpl", &cause) == 0);
	CHECK(imgstore_rm(st, "vm1.s1", &cause) == 0);
	CHECK(imgstore_rm(st, "fbase", &cause) == 0);
	CHECK(!exists(bfile));
	free(bfile);
}

int
main(void)
{
	if (store_test_open("test-store-edit") != 0)
		return (1);
	test_freeze();
	store_test_close();
	return (check_exit());
}
