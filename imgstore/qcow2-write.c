/*
 * qcow2 v3 writer. Layout, in clusters of 64 KiB:
 *
 *   0        header, extensions (backing format, feature names), backing
 *            file name
 *   1        refcount table: one entry, pointing at cluster 2
 *   2        refcount block: 16-bit refcounts of 1 for clusters 0..3+n-1
 *   3..3+n-1 L1 table, all zero: nothing allocated, every read falls
 *            through to the backing file (or reads zeros)
 *
 * which is what qemu-img create writes, so qemu-img check finds neither
 * leaks nor errors.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "compat.h"
#include "qcow2-write.h"
#include "qcow2.h"
#include "xmalloc.h"

#define W_HEADER_LENGTH	112	/* v3 header with the compression type */
#define W_REFCOUNT_ORDER 4	/* 16-bit refcounts */

static const struct {
	uint8_t		 type;		/* 0 incompatible, 1 compatible,
					   2 autoclear */
	uint8_t		 bit;
	const char	*name;
} qcow2_write_features[] = {
	{ 0, 0, "dirty bit" },
	{ 0, 1, "corrupt bit" },
	{ 0, 2, "external data file" },
	{ 0, 3, "compression type" },
	{ 0, 4, "extended L2 entries" },
	{ 1, 0, "lazy refcounts" },
	{ 2, 0, "bitmaps" },
	{ 2, 1, "raw external data" },
};

void
qcow2_write_clear(struct qcow2_image *img)
{
	free(img->header);
	free(img->refblock);
	memset(img, 0, sizeof *img);
}

/* Append a header extension at *off in the header cluster. */
static void
qcow2_write_ext(uint8_t *h, size_t *off, uint32_t type, const void *data,
    uint32_t len)
{
	qcow2_put32(h + *off, type);
	qcow2_put32(h + *off + 4, len);
	if (len != 0)
		memcpy(h + *off + 8, data, len);
	*off += 8 + ((len + 7) & ~7U);
}

/*
 * Lay out the metadata clusters and fill them in; all checks on the
 * arguments happen here, before the caller creates any file.
 */
int
qcow2_write_build(const char *backing, const char *backing_fmt,
    uint64_t size, struct qcow2_image *img, char **cause)
{
	uint8_t		*h, ft[nitems(qcow2_write_features) * 48];
	uint64_t	 cs, l1_bytes, l1_clusters, nclusters, i;
	size_t		 off, blen = 0;
	char		*why, *bare;

	memset(img, 0, sizeof *img);
	cs = 1ULL << QCOW2_WRITE_CLUSTER_BITS;
	if (backing != NULL) {
		/* With no directory, only a bare name passes. */
		if ((bare = chain_backing_file(NULL, backing, &why)) == NULL) {
			xasprintf(cause, "refusing to write an overlay: %s",
			    why);
			free(why);
			return (-1);
		}
		free(bare);
		if (backing_fmt == NULL || (strcmp(backing_fmt, "qcow2") != 0 &&
		    strcmp(backing_fmt, "raw") != 0)) {
			xasprintf(cause, "backing format must be qcow2 or raw");
			return (-1);
		}
		blen = strlen(backing);
	}
	if (size > INT64_MAX - 511) {
		xasprintf(cause, "virtual size too large");
		return (-1);
	}
	size = (size + 511) & ~511ULL;
	img->l1_entries = qcow2_l1_entries(size, QCOW2_WRITE_CLUSTER_BITS, 0);
	l1_bytes = img->l1_entries * 8;
	if (l1_bytes > QCOW2_MAX_L1_BYTES) {
		xasprintf(cause, "virtual size of %llu bytes is too large",
		    (unsigned long long)size);
		return (-1);
	}
	l1_clusters = (l1_bytes + cs - 1) / cs;	/* none for size 0 */
	nclusters = 3 + l1_clusters;

	img->cluster_size = cs;
	img->size = size;
	img->reftable_offset = cs;
	img->refblock_offset = 2 * cs;
	img->l1_offset = 3 * cs;
	img->file_size = nclusters * cs;

	h = img->header = xcalloc(1, cs);
	qcow2_put32(h + 0, QCOW2_MAGIC);
	qcow2_put32(h + 4, 3);
	qcow2_put32(h + 20, QCOW2_WRITE_CLUSTER_BITS);
	qcow2_put64(h + 24, size);
	qcow2_put32(h + 32, 0);				/* no encryption */
	qcow2_put32(h + 36, img->l1_entries);
	qcow2_put64(h + 40, img->l1_offset);
	qcow2_put64(h + 48, img->reftable_offset);
	qcow2_put32(h + 56, 1);				/* reftable clusters */
	qcow2_put32(h + 60, 0);				/* no snapshots */
	qcow2_put64(h + 64, 0);
	qcow2_put64(h + 72, 0);				/* incompatible */
	qcow2_put64(h + 80, 0);				/* compatible */
	qcow2_put64(h + 88, 0);				/* autoclear */
	qcow2_put32(h + 96, W_REFCOUNT_ORDER);
	qcow2_put32(h + 100, W_HEADER_LENGTH);
	h[104] = 0;					/* zlib */

	off = W_HEADER_LENGTH;
	if (backing != NULL)
		qcow2_write_ext(h, &off, QCOW2_EXT_BACKING_FMT, backing_fmt,
		    strlen(backing_fmt));
	memset(ft, 0, sizeof ft);
	for (i = 0; i < nitems(qcow2_write_features); i++) {
		ft[i * 48] = qcow2_write_features[i].type;
		ft[i * 48 + 1] = qcow2_write_features[i].bit;
		memcpy(ft + i * 48 + 2, qcow2_write_features[i].name,
		    strlen(qcow2_write_features[i].name));
	}
	qcow2_write_ext(h, &off, QCOW2_EXT_FEATURES, ft, sizeof ft);
	qcow2_write_ext(h, &off, QCOW2_EXT_END, NULL, 0);
	if (backing != NULL) {
		qcow2_put64(h + 8, off);
		qcow2_put32(h + 16, blen);
		memcpy(h + off, backing, blen);
		off += blen;
	}
	img->header_len = off;

	qcow2_put64(img->reftable, img->refblock_offset);
	img->refblock_len = nclusters * 2;
	img->refblock = xcalloc(1, img->refblock_len);
	for (i = 0; i < nclusters; i++)
		qcow2_put16(img->refblock + i * 2, 1);
	return (0);
}

/* pwrite all of buf at off. */
static int
qcow2_write_all(int fd, const uint8_t *buf, size_t len, off_t off)
{
	ssize_t	n;

	while (len > 0) {
		n = pwrite(fd, buf, len, off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return (-1);
		buf += n;
		len -= n;
		off += n;
	}
	return (0);
}

/* A write lock request on every byte of a file, for F_OFD_*LK. */
static void
qcow2_write_flock(struct flock *fl)
{
	memset(fl, 0, sizeof *fl);
	fl->l_type = F_WRLCK;
	fl->l_whence = SEEK_SET;
}

/* Take an OFD write lock on the whole file, held until it is closed. */
int
qcow2_write_lock(int fd)
{
	struct flock	fl;

	qcow2_write_flock(&fl);
	return (fcntl(fd, F_OFD_SETLK, &fl));
}

/* Returns 1 if some process holds a lock on any byte of the file. */
int
qcow2_write_locked(int fd)
{
	struct flock	fl;

	qcow2_write_flock(&fl);
	if (fcntl(fd, F_OFD_GETLK, &fl) == -1)
		return (0);
	return (fl.l_type != F_UNLCK);
}

/*
 * Rename without ever replacing an existing file; where the file system
 * lacks RENAME_NOREPLACE, a hard link does the same job.
 */
int
qcow2_write_rename(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return (0);
	if (errno != EINVAL && errno != ENOSYS)
		return (-1);
	if (link(from, to) == -1)
		return (-1);
	unlink(from);
	return (0);
}

/* Make a rename in dir durable. */
static int
qcow2_write_sync_dir(const char *dir)
{
	int	fd, rc;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return (-1);
	rc = fsync(fd);
	close(fd);
	return (rc);
}

/*
 * Write an image to a temporary name in dir, sync it and rename it to
 * file; on any failure the temporary file is removed.
 */
static int
qcow2_write_file(const char *dir, const char *file, const char *backing,
    const char *backing_fmt, uint64_t size, char **cause)
{
	struct qcow2_image	 img;
	char			*tmp = NULL, *path = NULL;
	const char		*what;
	int			 fd = -1;

	if (!chain_bare_name(file)) {
		xasprintf(cause, "bad image file name");
		return (-1);
	}
	if (qcow2_write_build(backing, backing_fmt, size, &img, cause) != 0)
		return (-1);
	xasprintf(&path, "%s/%s", dir, file);
	xasprintf(&tmp, "%s/%s%s.XXXXXX", dir, QCOW2_WRITE_TMP_PREFIX, file);

	/* From here onward, all failures need cleanup and use goto fail. */
	what = "create";
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	/* A lock tells imgstore_gc the file is still being written. */
	what = "lock";
	if (qcow2_write_lock(fd) == -1)
		goto fail;
	what = "write";
	if (ftruncate(fd, img.file_size) == -1)
		goto fail;
	if (qcow2_write_all(fd, img.header, img.header_len, 0) == -1 ||
	    qcow2_write_all(fd, img.reftable, sizeof img.reftable,
	    img.reftable_offset) == -1 ||
	    qcow2_write_all(fd, img.refblock, img.refblock_len,
	    img.refblock_offset) == -1)
		goto fail;
	what = "sync";
	if (fsync(fd) == -1)
		goto fail;
	what = "rename";
	if (qcow2_write_rename(tmp, path) == -1)
		goto fail;
	free(tmp);
	tmp = NULL;
	if (qcow2_write_sync_dir(dir) == -1) {
		/* Failure means no file: take the new name back. */
		xasprintf(cause, "%s: sync directory: %s", dir,
		    strerror(errno));
		unlink(path);
		close(fd);
		free(path);
		qcow2_write_clear(&img);
		return (-1);
	}
	close(fd);
	free(path);
	qcow2_write_clear(&img);
	return (0);

fail:
	if (errno == EEXIST)
		xasprintf(cause, "%s already exists", path);
	else
		xasprintf(cause, "%s: %s: %s", path, what, strerror(errno));
	if (fd != -1)
		close(fd);
	if (tmp != NULL)
		unlink(tmp);
	free(tmp);
	free(path);
	qcow2_write_clear(&img);
	return (-1);
}

int
qcow2_write_overlay(const char *dir, const char *file, const char *backing,
    const char *backing_fmt, uint64_t size, char **cause)
{
	if (backing == NULL) {
		xasprintf(cause, "an overlay needs a backing file");
		return (-1);
	}
	return (qcow2_write_file(dir, file, backing, backing_fmt, size,
	    cause));
}

int
qcow2_write_empty(const char *dir, const char *file, uint64_t size,
    char **cause)
{
	return (qcow2_write_file(dir, file, NULL, NULL, size, cause));
}
