/*
 * qcow2 writer: what it builds parses back, and what it writes QEMU itself
 * accepts: qemu-img check finds no error, qemu-img info --backing-chain
 * shows the chain, and qemu-io reads through and writes into the overlay
 * without touching the base.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "check.h"
#include "sh.h"
#include "qcow2-write.h"
#include "qcow2.h"
#include "xmalloc.h"

static char	*tdir;

/* Run a command and parse its standard output as JSON. */
static json_t *
sh_json(const char *fmt, ...)
{
	va_list		 ap;
	char		*cmd, buf[65536];
	size_t		 n;
	FILE		*f;
	json_error_t	 err;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) == -1)
		abort();
	va_end(ap);
	f = popen(cmd, "r");
	free(cmd);
	if (f == NULL)
		return (NULL);
	n = fread(buf, 1, sizeof buf - 1, f);
	pclose(f);
	buf[n] = '\0';
	return (json_loads(buf, 0, &err));
}

/* qemu-img check on a file of the scratch dir: 0 means no error, no leak. */
static int
check_image(const char *file)
{
	return (sh("qemu-img check -q %s/%s", tdir, file));
}

/* Count the temporary files the writer left in the scratch dir. */
static int
count_tmp(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir(tdir)) == NULL)
		return (-1);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, QCOW2_WRITE_TMP_PREFIX,
		    strlen(QCOW2_WRITE_TMP_PREFIX)) == 0)
			n++;
	}
	closedir(d);
	return (n);
}

static off_t
file_size(const char *file)
{
	struct stat	 sb;
	char		*path;
	int		 rc;

	xasprintf(&path, "%s/%s", tdir, file);
	rc = stat(path, &sb);
	free(path);
	return (rc == -1 ? -1 : sb.st_size);
}

static void
test_build(void)
{
	struct qcow2_image	 img;
	struct qcow2_info	 info;
	char			*cause = NULL;

	CHECK(qcow2_write_build("base-1234.qcow2", "qcow2", 20ULL << 30,
	    &img, &cause) == 0);
	CHECK(img.l1_entries == 40);
	CHECK(img.file_size == 4 * 65536);
	CHECK(qcow2_parse_header(img.header, img.header_len, &info,
	    &cause) == 0);
	CHECK(info.version == 3);
	CHECK(info.size == 20ULL << 30);
	CHECK(info.l1_size == 40);
	CHECK(info.l1_table_offset == 3 * 65536);
	CHECK_STR(info.backing_file, "base-1234.qcow2");
	CHECK_STR(info.backing_format, "qcow2");
	CHECK(img.refblock_len == 4 * 2);
	CHECK(qcow2_get64(img.reftable) == 2 * 65536);
	qcow2_write_clear(&img);

	/* 20 GiB + 1 byte needs a 41st entry; sizes round up to 512. */
	CHECK(qcow2_write_build(NULL, NULL, (20ULL << 30) + 1, &img,
	    &cause) == 0);
	CHECK(img.l1_entries == 41);
	CHECK(img.size == (20ULL << 30) + 512);
	CHECK(qcow2_parse_header(img.header, img.header_len, &info,
	    &cause) == 0);
	CHECK(!info.has_backing && !info.has_backing_format);
	qcow2_write_clear(&img);

	/* 64 TiB: an L1 of 1 MiB, 16 clusters, all in one refcount block. */
	CHECK(qcow2_write_build(NULL, NULL, 64ULL << 40, &img, &cause) == 0);
	CHECK(img.l1_entries == 131072);
	CHECK(img.file_size == (3 + 16) * 65536);
	qcow2_write_clear(&img);

	CHECK(qcow2_write_build(NULL, NULL, 0, &img, &cause) == 0);
	CHECK(img.l1_entries == 0);
	qcow2_write_clear(&img);

#define BAD(b, f, s, want) do {						\
	cause = NULL;							\
	CHECK(qcow2_write_build(b, f, s, &img, &cause) == -1);		\
	CHECK(cause != NULL && strstr(cause, want) != NULL);		\
	free(cause);							\
} while (0)
	BAD("../base.qcow2", "qcow2", 1 << 20, "'..'");
	BAD("/var/lib/qdesk/images/base.qcow2", "qcow2", 1 << 20,
	    "absolute path");
	BAD("json:{}", "raw", 1 << 20, "json:");
	BAD("base.qcow2", NULL, 1 << 20, "backing format");
	BAD("base.qcow2", "vmdk", 1 << 20, "backing format");
	BAD(NULL, NULL, 1ULL << 62, "too large");
	BAD(NULL, NULL, UINT64_MAX, "too large");
#undef BAD
}

/* The chain qemu-img reports for file, as an array, top first. */
static json_t *
qemu_chain(const char *file)
{
	json_t	*j;

	j = sh_json("qemu-img info --backing-chain --output=json %s/%s",
	    tdir, file);
	if (j != NULL && !json_is_array(j)) {
		json_decref(j);
		j = NULL;
	}
	return (j);
}

/* The string member key of element i of a qemu-img info array. */
static const char *
qemu_str(json_t *chain, size_t i, const char *key)
{
	return (json_string_value(json_object_get(json_array_get(chain, i),
	    key)));
}

static void
test_qemu(void)
{
	json_t		*j;
	char		*cause = NULL, *p;
	struct chain	*c;

	/* A standalone image. */
	CHECK(qcow2_write_empty(tdir, "empty.qcow2", 1ULL << 30,
	    &cause) == 0);
	CHECK(check_image("empty.qcow2") == 0);
	j = sh_json("qemu-img info --output=json %s/empty.qcow2", tdir);
	CHECK(j != NULL);
	CHECK_STR(json_string_value(json_object_get(j, "format")), "qcow2");
	CHECK(json_integer_value(json_object_get(j, "virtual-size")) ==
	    1LL << 30);
	CHECK(json_object_get(j, "backing-filename") == NULL);
	json_decref(j);
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0 0 1M' %s/empty.qcow2 "
	    ">/dev/null", tdir) == 0);

	/* An overlay over a qemu-img base with data in it. */
	CHECK(sh("qemu-img create -q -f qcow2 %s/base-1234.qcow2 1G", tdir)
	    == 0);
	CHECK(sh("qemu-io -f qcow2 -c 'write -P 0x11 0 1M' %s/base-1234.qcow2"
	    " >/dev/null", tdir) == 0);
	CHECK(sh("sha256sum < %s/base-1234.qcow2 > %s/base.sum", tdir, tdir)
	    == 0);
	CHECK(qcow2_write_overlay(tdir, "clone-abcd.qcow2", "base-1234.qcow2",
	    "qcow2", 1ULL << 30, &cause) == 0);
	CHECK(file_size("clone-abcd.qcow2") == 4 * 65536);
	CHECK(check_image("clone-abcd.qcow2") == 0);
	j = qemu_chain("clone-abcd.qcow2");
	CHECK(j != NULL && json_array_size(j) == 2);
	if (j != NULL) {
		p = NULL;
		CHECK((p = strstr(qemu_str(j, 0, "filename"),
		    "/clone-abcd.qcow2")) != NULL);
		CHECK_STR(qemu_str(j, 0, "format"), "qcow2");
		CHECK_STR(qemu_str(j, 0, "backing-filename"),
		    "base-1234.qcow2");
		CHECK_STR(qemu_str(j, 0, "backing-filename-format"), "qcow2");
		CHECK(strstr(qemu_str(j, 1, "filename"), "/base-1234.qcow2")
		    != NULL);
		CHECK(json_object_get(json_array_get(j, 1),
		    "backing-filename") == NULL);
		json_decref(j);
	}
	/* Reads fall through to the base; writes stay in the overlay. */
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0x11 0 1M' -c 'read -P 0 1M 1M'"
	    " %s/clone-abcd.qcow2 >/dev/null", tdir) == 0);
	CHECK(sh("qemu-io -f qcow2 -c 'write -P 0xab 0 64k' "
	    "%s/clone-abcd.qcow2 >/dev/null", tdir) == 0);
	CHECK(check_image("clone-abcd.qcow2") == 0);
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0xab 0 64k' "
	    "-c 'read -P 0x11 64k 960k' %s/clone-abcd.qcow2 >/dev/null", tdir)
	    == 0);
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0x11 0 1M' %s/base-1234.qcow2 "
	    ">/dev/null", tdir) == 0);
	CHECK(sh("sha256sum < %s/base-1234.qcow2 | cmp -s - %s/base.sum",
	    tdir, tdir) == 0);
	CHECK(check_image("base-1234.qcow2") == 0);

	/* A third level, over the clone, and our own walker agrees. */
	CHECK(qcow2_write_overlay(tdir, "snap-1.qcow2", "clone-abcd.qcow2",
	    "qcow2", 1ULL << 30, &cause) == 0);
	CHECK(check_image("snap-1.qcow2") == 0);
	j = qemu_chain("snap-1.qcow2");
	CHECK(j != NULL && json_array_size(j) == 3);
	json_decref(j);
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0xab 0 64k' "
	    "-c 'read -P 0x11 64k 960k' %s/snap-1.qcow2 >/dev/null", tdir)
	    == 0);
	CHECK(chain_walk(tdir, "snap-1.qcow2", "qcow2", &c, &cause) == 0);
	if (c != NULL) {
		CHECK(c->n == 3);
		CHECK_STR(c->links[2].file, "base-1234.qcow2");
		chain_free(c);
	}

	/* Over a raw base. */
	CHECK(sh("head -c 1048576 /dev/zero | tr '\\0' '\\042' > "
	    "%s/disk-1.raw", tdir) == 0);
	CHECK(qcow2_write_overlay(tdir, "onraw.qcow2", "disk-1.raw", "raw",
	    1 << 20, &cause) == 0);
	CHECK(check_image("onraw.qcow2") == 0);
	j = qemu_chain("onraw.qcow2");
	CHECK(j != NULL && json_array_size(j) == 2);
	if (j != NULL) {
		CHECK_STR(qemu_str(j, 0, "backing-filename-format"), "raw");
		CHECK_STR(qemu_str(j, 1, "format"), "raw");
		json_decref(j);
	}
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0x22 0 1M' %s/onraw.qcow2 "
	    ">/dev/null", tdir) == 0);

	/* Big and odd sizes. */
	CHECK(qcow2_write_overlay(tdir, "big.qcow2", "base-1234.qcow2",
	    "qcow2", 20ULL << 30, &cause) == 0);
	CHECK(check_image("big.qcow2") == 0);
	CHECK(qcow2_write_empty(tdir, "huge.qcow2", 64ULL << 40, &cause) == 0);
	CHECK(check_image("huge.qcow2") == 0);
	CHECK(sh("qemu-io -f qcow2 -c 'write -P 0xcd 60T 64k' "
	    "-c 'read -P 0xcd 60T 64k' %s/huge.qcow2 >/dev/null", tdir) == 0);
	CHECK(check_image("huge.qcow2") == 0);
	CHECK(qcow2_write_empty(tdir, "odd.qcow2", 1000, &cause) == 0);
	CHECK(check_image("odd.qcow2") == 0);
	CHECK(qcow2_write_empty(tdir, "zero.qcow2", 0, &cause) == 0);
	CHECK(check_image("zero.qcow2") == 0);

	/* Never over an existing file, never a temporary file left behind. */
	cause = NULL;
	CHECK(qcow2_write_empty(tdir, "clone-abcd.qcow2", 1 << 20,
	    &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "already exists") != NULL);
	free(cause);
	CHECK(sh("qemu-io -f qcow2 -c 'read -P 0xab 0 64k' "
	    "%s/clone-abcd.qcow2 >/dev/null", tdir) == 0);
	cause = NULL;
	CHECK(qcow2_write_empty(tdir, "../escape.qcow2", 1 << 20, &cause)
	    == -1);
	free(cause);
	cause = NULL;
	CHECK(qcow2_write_empty("/nonexistent/dir", "x.qcow2", 1 << 20,
	    &cause) == -1);
	free(cause);
	CHECK(count_tmp() == 0);
}

int
main(void)
{
	char	tmpl[] = "/tmp/test-qcow2-write.XXXXXX";

	if (sh_need_qemu_tools(1) != 0)
		return (1);
	if ((tdir = mkdtemp(tmpl)) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	test_build();
	test_qemu();
	sh("rm -rf %s", tdir);
	return (check_exit());
}
