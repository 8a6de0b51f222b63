/*
 * qcow2 header parser and chain walker: real headers made by qemu-img at
 * test time, hostile buffers crafted from them, and hostile chains of
 * files in a scratch image store.
 */
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "check.h"
#include "sh.h"
#include "qcow2.h"
#include "xmalloc.h"

static char	*tdir;		/* scratch image store */

/* qemu-img create in the scratch store, quietly; returns its status. */
static int
mk(const char *args)
{
	return (sh("cd %s && qemu-img create -q -f qcow2 %s", tdir, args));
}

/* Read the start of a file of the scratch store into buf. */
static size_t
slurp(const char *file, uint8_t *buf, size_t len)
{
	char	*path;
	ssize_t	 n;
	int	 fd;

	xasprintf(&path, "%s/%s", tdir, file);
	fd = open(path, O_RDONLY);
	free(path);
	if (fd == -1)
		return (0);
	n = pread(fd, buf, len, 0);
	close(fd);
	return (n < 0 ? 0 : n);
}

/* Overwrite bytes of a file of the scratch store. */
static void
patch(const char *file, off_t off, const void *data, size_t len)
{
	char	*path;
	int	 fd;

	xasprintf(&path, "%s/%s", tdir, file);
	fd = open(path, O_WRONLY);
	free(path);
	if (fd == -1 || pwrite(fd, data, len, off) != (ssize_t)len)
		abort();
	close(fd);
}

/* Parse buf and expect a refusal whose cause contains want. */
static int
refused(const uint8_t *buf, size_t len, const char *want)
{
	struct qcow2_info	 info;
	char			*cause = NULL;
	int			 ok;

	if (qcow2_parse_header(buf, len, &info, &cause) == 0) {
		fprintf(stderr, "accepted, wanted \"%s\"\n", want);
		return (0);
	}
	ok = strstr(cause, want) != NULL;
	if (!ok)
		fprintf(stderr, "cause \"%s\", wanted \"%s\"\n", cause, want);
	free(cause);
	return (ok);
}

/* Walk a chain in the scratch store and expect a refusal containing want. */
static int
walk_refused(const char *file, const char *format, const char *want)
{
	struct chain	*c;
	char		*cause = NULL;
	int		 ok;

	if (chain_walk(tdir, file, format, &c, &cause) == 0) {
		fprintf(stderr, "%s: chain accepted, wanted \"%s\"\n", file,
		    want);
		chain_free(c);
		return (0);
	}
	ok = strstr(cause, want) != NULL;
	if (!ok)
		fprintf(stderr, "%s: cause \"%s\", wanted \"%s\"\n", file,
		    cause, want);
	free(cause);
	return (ok);
}

static void
test_real_headers(void)
{
	struct qcow2_info	 info;
	uint8_t			*buf;
	size_t			 n;
	char			*cause = NULL;

	buf = xmalloc(CHAIN_READ_SIZE);
	CHECK(mk("base.qcow2 1G") == 0);
	n = slurp("base.qcow2", buf, CHAIN_READ_SIZE);
	CHECK(qcow2_parse_header(buf, n, &info, &cause) == 0);
	CHECK(info.version == 3);
	CHECK(info.cluster_size == 65536);
	CHECK(info.size == 1ULL << 30);
	CHECK(!info.has_backing && !info.has_backing_format);
	CHECK(info.l1_size == 2);
	CHECK(!info.dirty);

	CHECK(mk("-b base.qcow2 -F qcow2 ov.qcow2") == 0);
	n = slurp("ov.qcow2", buf, CHAIN_READ_SIZE);
	CHECK(qcow2_parse_header(buf, n, &info, &cause) == 0);
	CHECK(info.has_backing && info.has_backing_format);
	CHECK_STR(info.backing_file, "base.qcow2");
	CHECK_STR(info.backing_format, "qcow2");
	CHECK(info.size == 1ULL << 30);

	CHECK(mk("-o compat=0.10 -b base.qcow2 -F qcow2 v2.qcow2") == 0);
	n = slurp("v2.qcow2", buf, CHAIN_READ_SIZE);
	CHECK(qcow2_parse_header(buf, n, &info, &cause) == 0);
	CHECK(info.version == 2);
	CHECK_STR(info.backing_file, "base.qcow2");
	CHECK_STR(info.backing_format, "qcow2");

	CHECK(mk("-o cluster_size=512 small.qcow2 1G") == 0);
	n = slurp("small.qcow2", buf, CHAIN_READ_SIZE);
	CHECK(qcow2_parse_header(buf, n, &info, &cause) == 0);
	CHECK(info.cluster_bits == 9);

	CHECK(mk("-o cluster_size=2M big.qcow2 20G") == 0);
	n = slurp("big.qcow2", buf, CHAIN_READ_SIZE);
	CHECK(qcow2_parse_header(buf, n, &info, &cause) == 0);
	CHECK(info.cluster_bits == 21);
	CHECK(info.size == 20ULL << 30);

	CHECK(mk("-o extended_l2=on xl2.qcow2 1G") == 0);
	n = slurp("xl2.qcow2", buf, CHAIN_READ_SIZE);
	CHECK(qcow2_parse_header(buf, n, &info, &cause) == 0);
	CHECK(info.incompatible & QCOW2_INCOMPAT_EXTL2);

	if (mk("-o compression_type=zstd zstd.qcow2 1G") == 0) {
		n = slurp("zstd.qcow2", buf, CHAIN_READ_SIZE);
		CHECK(qcow2_parse_header(buf, n, &info, &cause) == 0);
		CHECK(info.incompatible & QCOW2_INCOMPAT_COMPRESSION);
	}

	/* A raw file is not qcow2. */
	CHECK(sh("truncate -s 1M %s/disk.raw", tdir) == 0);
	n = slurp("disk.raw", buf, CHAIN_READ_SIZE);
	CHECK(refused(buf, n, "bad magic"));
	free(buf);
}

/*
 * Set the big-endian field of width bytes (4 or 8) at off in a copy of
 * the header and expect a refusal.
 */
static int
refused_at(const uint8_t *hdr, size_t len, size_t off, int width,
    uint64_t v, const char *want)
{
	uint8_t	*b;
	int	 ok;

	b = xmalloc(len);
	memcpy(b, hdr, len);
	if (width == 4)
		qcow2_put32(b + off, v);
	else
		qcow2_put64(b + off, v);
	ok = refused(b, len, want);
	free(b);
	return (ok);
}

static void
test_hostile_buffers(void)
{
	struct qcow2_info	 info;
	uint8_t			*base, *ov, *b;
	size_t			 nb, no;
	char			*cause = NULL;

	base = xcalloc(1, CHAIN_READ_SIZE);
	ov = xcalloc(1, CHAIN_READ_SIZE);
	nb = slurp("base.qcow2", base, CHAIN_READ_SIZE);
	no = slurp("ov.qcow2", ov, CHAIN_READ_SIZE);
	CHECK(qcow2_parse_header(base, nb, &info, &cause) == 0);
	CHECK(qcow2_parse_header(ov, no, &info, &cause) == 0);

	/* Truncated. */
	CHECK(refused(base, 0, "bad magic"));
	CHECK(refused(base, 3, "bad magic"));
	CHECK(refused(base, 50, "truncated"));
	CHECK(refused(base, 100, "truncated"));
	CHECK(refused(base, 110, "header length"));
	CHECK(refused(base, 200, "run"));	/* the feature table */
	CHECK(refused(ov, 0x200, "runs past"));	/* the backing name */

	/* Magic, version, cluster bits. */
	CHECK(refused_at(base, nb, 0, 4, 0x514649fa, "bad magic"));
	CHECK(refused_at(base, nb, 4, 4, 1, "version 1"));
	CHECK(refused_at(base, nb, 4, 4, 4, "version 4"));
	CHECK(refused_at(base, nb, 20, 4, 8, "cluster_bits 8"));
	CHECK(refused_at(base, nb, 20, 4, 22, "cluster_bits 22"));
	CHECK(refused_at(base, nb, 20, 4, 63, "cluster_bits 63"));
	CHECK(refused_at(base, nb, 20, 4, 0xffffffff, "cluster_bits"));

	/* Backing file name offset and size. */
	CHECK(refused_at(ov, no, 8, 8, 0x100000, "outside the header cluster"));
	CHECK(refused_at(ov, no, 8, 8, 0xfff8, "outside the header cluster"));
	CHECK(refused_at(ov, no, 8, 8, 16, "outside the header cluster"));
	CHECK(refused_at(ov, no, 8, 8, UINT64_MAX,
	    "outside the header cluster"));
	CHECK(refused_at(ov, no, 16, 4, 2000, "too long"));
	CHECK(refused_at(ov, no, 16, 4, 0, "empty backing file name"));
	CHECK(refused_at(base, nb, 16, 4, 5, "without an offset"));
	b = xmalloc(no);
	memcpy(b, ov, no);
	b[qcow2_get64(ov + 8) + 2] = '\0';
	CHECK(refused(b, no, "NUL"));
	free(b);

	/* Features. */
	CHECK(refused_at(base, nb, 72, 8, 1ULL << 5, "bit 5"));
	CHECK(refused_at(base, nb, 72, 8, 1ULL << 40, "bit 40"));
	CHECK(refused_at(base, nb, 72, 8, 1ULL << 1, "corrupt"));
	CHECK(refused_at(base, nb, 72, 8, 1ULL << 2, "external data file"));
	CHECK(refused_at(base, nb, 72, 8, 1ULL << 3, "compression type"));
	b = xmalloc(nb);
	memcpy(b, base, nb);
	qcow2_put64(b + 72, QCOW2_INCOMPAT_DIRTY);
	CHECK(qcow2_parse_header(b, nb, &info, &cause) == 0);
	CHECK(info.dirty);
	b[104] = 1;					/* zstd, no bit */
	CHECK(refused(b, nb, "compression type"));
	b[104] = 7;
	CHECK(refused(b, nb, "unknown compression type"));
	free(b);

	/* Encryption. */
	CHECK(refused_at(base, nb, 32, 4, 1, "encrypted"));
	CHECK(refused_at(base, nb, 32, 4, 2, "encrypted"));

	/* Sizes and tables. */
	CHECK(refused_at(base, nb, 24, 8, 1ULL << 63, "too large"));
	CHECK(refused_at(base, nb, 24, 8, UINT64_MAX, "too large"));
	CHECK(refused_at(base, nb, 36, 4, 0, "too small"));
	CHECK(refused_at(base, nb, 36, 4, 0x7fffffff, "too large"));
	CHECK(refused_at(base, nb, 24, 8, 1ULL << 62, "too small"));
	CHECK(refused_at(base, nb, 40, 8, 0x30001, "not cluster aligned"));
	CHECK(refused_at(base, nb, 40, 8, 0, "overlaps the header"));
	CHECK(refused_at(base, nb, 40, 8, 0xffffffffffff0000ULL, "past"));
	CHECK(refused_at(base, nb, 48, 8, 0, "no refcount table"));
	CHECK(refused_at(base, nb, 56, 4, 0, "no refcount table"));
	CHECK(refused_at(base, nb, 56, 4, 0x10000000, "too large"));
	CHECK(refused_at(base, nb, 48, 8, 0x10010, "not cluster aligned"));
	CHECK(refused_at(base, nb, 60, 4, 70000, "too many"));
	CHECK(refused_at(base, nb, 60, 4, 1, "overlaps the header"));
	CHECK(refused_at(base, nb, 100, 4, 0x10000000, "header length"));
	CHECK(refused_at(base, nb, 100, 4, 103, "header length"));
	CHECK(refused_at(base, nb, 100, 4, 105, "header length"));
	CHECK(refused_at(base, nb, 96, 4, 7, "refcount order"));

	/* Extensions: a huge length, encryption, an external data file. */
	CHECK(refused_at(base, nb, 116, 4, 0xfffffff0,
	    "larger than the header"));
	CHECK(refused_at(base, nb, 112, 4, QCOW2_EXT_CRYPTO, "encrypted"));
	CHECK(refused_at(base, nb, 112, 4, QCOW2_EXT_DATA_FILE, "data file"));
	CHECK(refused_at(ov, no, 116, 4, 0, "backing format name of 0"));
	CHECK(refused_at(ov, no, 116, 4, 16, "backing format name of 16"));

	/* An unknown incompatible bit named by the feature table. */
	b = xmalloc(nb);
	memcpy(b, base, nb);
	qcow2_put64(b + 72, 1ULL << 9);
	b[0x70 + 8 + 1] = 9;			/* "dirty bit" -> 9 */
	CHECK(refused(b, nb, "bit 9 (dirty bit)"));
	free(b);
	free(base);
	free(ov);
}

static void
test_backing_names(void)
{
	char	*cause = NULL, *f;

	f = chain_backing_file("/s/images", "base-1.qcow2", &cause);
	CHECK_STR(f, "base-1.qcow2");
	free(f);
	f = chain_backing_file("/s/images", "/s/images/base-1.qcow2", &cause);
	CHECK_STR(f, "base-1.qcow2");
	free(f);

#define BAD(name, want) do {						\
	cause = NULL;							\
	CHECK(chain_backing_file("/s/images", name, &cause) == NULL);	\
	CHECK(cause != NULL && strstr(cause, want) != NULL);		\
	free(cause);							\
} while (0)
	BAD("", "empty");
	BAD("/etc/shadow", "absolute path outside");
	BAD("/s/images2/base", "absolute path outside");
	BAD("/s/images/sub/base", "absolute path outside");
	BAD("/s/images/../x", "'..'");
	BAD("/s/images/.tmp-x", "absolute path outside");
	BAD("../base.qcow2", "'..'");
	BAD("a/../../base.qcow2", "'..'");
	BAD("..", "'..'");
	BAD("sub/base.qcow2", "not directly");
	BAD("./base.qcow2", "not directly");
	BAD(".tmp-base.qcow2.abc", "hidden or temporary");
	BAD(".", "hidden");
	BAD("json:{\"file.filename\":\"/etc/passwd\"}", "json:");
	BAD("nbd://evil:10809/x", "nbd: protocol");
	BAD("file:base.qcow2", "file: protocol");
	BAD("base\n.qcow2", "control characters");
	BAD("/s/images/a:b", "':'");
#undef BAD
	CHECK(chain_backing_file(NULL, "/s/images/base", &cause) == NULL);
	free(cause);
	CHECK(chain_bare_name("base-1.qcow2"));
	CHECK(!chain_bare_name(".x"));
	CHECK(!chain_bare_name("a/b"));
	CHECK(!chain_bare_name(""));
}

/* Patch the backing format extension's type so it is no longer one. */
static void
drop_backing_format(const char *file)
{
	uint8_t	t[4];

	qcow2_put32(t, 0x12345678);
	patch(file, 112, t, 4);
}

static void
test_chains(void)
{
	struct chain	*c;
	char		*cause = NULL, *path;
	int		 i;
	uint64_t	 size;

	/* base <- mid <- top, and a raw base. */
	CHECK(mk("-b base.qcow2 -F qcow2 mid.qcow2") == 0);
	CHECK(mk("-b mid.qcow2 -F qcow2 top.qcow2 2G") == 0);
	CHECK(chain_walk(tdir, "top.qcow2", "qcow2", &c, &cause) == 0);
	if (c != NULL) {
		CHECK(c->n == 3);
		CHECK_STR(c->links[0].file, "top.qcow2");
		CHECK_STR(c->links[1].file, "mid.qcow2");
		CHECK_STR(c->links[2].file, "base.qcow2");
		CHECK(c->links[0].size == 2ULL << 30);
		CHECK(c->links[2].size == 1ULL << 30);
		CHECK_STR(c->links[2].format, "qcow2");
		CHECK(c->links[0].path[0] == '/');
		CHECK(strstr(c->links[1].path, "/mid.qcow2") != NULL);
		CHECK(c->links[0].name == NULL);
		chain_free(c);
	}
	CHECK(mk("-b disk.raw -F raw onraw.qcow2") == 0);
	CHECK(chain_walk(tdir, "onraw.qcow2", "qcow2", &c, &cause) == 0);
	if (c != NULL) {
		CHECK(c->n == 2);
		CHECK_STR(c->links[1].format, "raw");
		CHECK(c->links[1].size == 1 << 20);
		chain_free(c);
	}
	/* A raw top is a chain of one, even if its bytes look like qcow2. */
	CHECK(chain_walk(tdir, "mid.qcow2", "raw", &c, &cause) == 0);
	if (c != NULL) {
		CHECK(c->n == 1);
		chain_free(c);
	}

	/* An absolute path is fine only if it names a file of the store. */
	path = realpath(tdir, NULL);
	CHECK(sh("cd %s && qemu-img create -q -f qcow2 -u -b %s/base.qcow2 "
	    "-F qcow2 absin.qcow2 1G", tdir, path) == 0);
	CHECK(chain_walk(tdir, "absin.qcow2", "qcow2", &c, &cause) == 0);
	if (c != NULL) {
		CHECK(c->n == 2);
		CHECK_STR(c->links[1].file, "base.qcow2");
		chain_free(c);
	}
	free(path);
	CHECK(mk("-u -b /tmp/elsewhere/base.qcow2 -F qcow2 abs.qcow2 1G") == 0);
	CHECK(walk_refused("abs.qcow2", "qcow2", "absolute path outside"));
	CHECK(mk("-u -b /dev/sda -F raw dev.qcow2 1G") == 0);
	CHECK(walk_refused("dev.qcow2", "qcow2", "absolute path outside"));
	CHECK(mk("-u -b ../base.qcow2 -F qcow2 dotdot.qcow2 1G") == 0);
	CHECK(walk_refused("dotdot.qcow2", "qcow2", "'..'"));
	CHECK(mk("-u -b sub/base.qcow2 -F qcow2 sub.qcow2 1G") == 0);
	CHECK(walk_refused("sub.qcow2", "qcow2", "not directly"));
	CHECK(mk("-u -b 'json:{\"file.filename\":\"/etc/passwd\"}' -F raw "
	    "json.qcow2 1G") == 0);
	CHECK(walk_refused("json.qcow2", "qcow2", "json: pseudo-protocol"));
	CHECK(mk("-u -b nbd://127.0.0.1:10809/x -F raw nbd.qcow2 1G") == 0);
	CHECK(walk_refused("nbd.qcow2", "qcow2", "nbd: protocol"));

	/* Loops: onto itself, a cycle of two, a hard link of itself. */
	CHECK(mk("-u -b self.qcow2 -F qcow2 self0.qcow2 1G") == 0);
	CHECK(sh("mv %s/self0.qcow2 %s/self.qcow2", tdir, tdir) == 0);
	CHECK(walk_refused("self.qcow2", "qcow2", "loops back to the image"));
	CHECK(mk("-u -b cyc-b.qcow2 -F qcow2 cyc-a.qcow2 1G") == 0);
	CHECK(mk("-u -b cyc-a.qcow2 -F qcow2 cyc-b.qcow2 1G") == 0);
	CHECK(walk_refused("cyc-a.qcow2", "qcow2", "cycle"));
	CHECK(mk("-u -b hl-b.qcow2 -F qcow2 hl-a.qcow2 1G") == 0);
	CHECK(sh("ln %s/hl-a.qcow2 %s/hl-b.qcow2", tdir, tdir) == 0);
	CHECK(walk_refused("hl-a.qcow2", "qcow2", "loops back"));

	/* Backing format missing. */
	CHECK(mk("-b base.qcow2 -F qcow2 nofmt.qcow2") == 0);
	drop_backing_format("nofmt.qcow2");
	CHECK(walk_refused("nofmt.qcow2", "qcow2", "no backing format"));
	CHECK(mk("-u -b base.qcow2 -F vmdk vmdk.qcow2 1G") == 0);
	CHECK(walk_refused("vmdk.qcow2", "qcow2", "unsupported format"));

	/* Links that are not regular files. */
	CHECK(sh("ln -s base.qcow2 %s/link.qcow2", tdir) == 0);
	CHECK(mk("-u -b link.qcow2 -F qcow2 onlink.qcow2 1G") == 0);
	CHECK(walk_refused("onlink.qcow2", "qcow2", "symbolic link"));
	CHECK(walk_refused("link.qcow2", "qcow2", "symbolic link"));
	CHECK(sh("mkfifo %s/fifo", tdir) == 0);
	CHECK(mk("-u -b fifo -F raw onfifo.qcow2 1G") == 0);
	CHECK(walk_refused("onfifo.qcow2", "qcow2", "device or special"));
	if (geteuid() == 0) {
		xasprintf(&path, "%s/null", tdir);
		CHECK(mknod(path, S_IFCHR | 0600, makedev(1, 3)) == 0);
		free(path);
		CHECK(mk("-u -b null -F raw onnull.qcow2 1G") == 0);
		CHECK(walk_refused("onnull.qcow2", "qcow2",
		    "device or special"));
	}
	CHECK(mk("-u -b gone.qcow2 -F qcow2 ongone.qcow2 1G") == 0);
	CHECK(walk_refused("ongone.qcow2", "qcow2", "missing"));

	/* A malformed header in the middle of a chain names that file. */
	CHECK(mk("-b base.qcow2 -F qcow2 bad.qcow2") == 0);
	CHECK(mk("-b bad.qcow2 -F qcow2 onbad.qcow2") == 0);
	patch("bad.qcow2", 4, "\0\0\0\x09", 4);
	CHECK(walk_refused("onbad.qcow2", "qcow2", "bad.qcow2: unsupported "
	    "qcow2 version 9"));

	/* Depth: 64 links pass, 65 do not. */
	CHECK(mk("d0.qcow2 1M") == 0);
	for (i = 1; i <= CHAIN_MAX_DEPTH; i++) {
		char	args[128];

		snprintf(args, sizeof args, "-u -b d%d.qcow2 -F qcow2 "
		    "d%d.qcow2 1M", i - 1, i);
		CHECK(mk(args) == 0);
	}
	CHECK(chain_walk(tdir, "d63.qcow2", "qcow2", &c, &cause) == 0);
	if (c != NULL) {
		CHECK(c->n == CHAIN_MAX_DEPTH);
		chain_free(c);
	}
	CHECK(walk_refused("d64.qcow2", "qcow2", "deeper than 64"));

	/* The top itself. */
	CHECK(walk_refused("nothere.qcow2", "qcow2", "missing"));
	CHECK(walk_refused("../x.qcow2", "qcow2", "not a file name"));
	CHECK(walk_refused("base.qcow2", "vmdk", "unsupported format"));
	CHECK(walk_refused("disk.raw", "qcow2", "bad magic"));

	/* Import: a standalone image passes, one with a backing file not. */
	xasprintf(&path, "%s/base.qcow2", tdir);
	CHECK(chain_check_import(path, "qcow2", &size, &cause) == 0);
	CHECK(size == 1ULL << 30);
	free(path);
	xasprintf(&path, "%s/mid.qcow2", tdir);
	cause = NULL;
	CHECK(chain_check_import(path, "qcow2", &size, &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "has a backing file") != NULL);
	free(cause);
	free(path);
	xasprintf(&path, "%s/fifo", tdir);
	cause = NULL;
	CHECK(chain_check_import(path, "raw", &size, &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "not a regular file") != NULL);
	free(cause);
	free(path);
}

int
main(void)
{
	char	tmpl[] = "/tmp/test-qcow2.XXXXXX";

	if (sh_need_qemu_tools(0) != 0)
		return (1);
	if ((tdir = mkdtemp(tmpl)) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	test_backing_names();
	test_real_headers();
	test_hostile_buffers();
	test_chains();
	sh("rm -rf %s", tdir);
	return (check_exit());
}
