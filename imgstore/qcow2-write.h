/*
 * The image store's own qcow2 v3 writer: an empty image, standalone or an
 * overlay over a backing file of the store. Only metadata is written (a
 * header cluster, one refcount table cluster, one refcount block and an
 * all-zero L1 table), so the cost does not depend on the backing file's
 * size. The file appears under its final name complete and synced, or not
 * at all.
 */
#ifndef QDESK_QCOW2_WRITE_H
#define QDESK_QCOW2_WRITE_H

#include <stddef.h>
#include <stdint.h>

#define QCOW2_WRITE_CLUSTER_BITS	16	/* 64 KiB, QEMU's default */
#define QCOW2_WRITE_TMP_PREFIX		".tmp-"

/* The metadata of a new image, built in memory before any file exists. */
struct qcow2_image {
	uint64_t	 cluster_size;
	uint64_t	 size;			/* virtual size */
	uint64_t	 l1_entries;
	uint64_t	 l1_offset;
	uint64_t	 reftable_offset;
	uint64_t	 refblock_offset;
	uint64_t	 file_size;		/* all clusters, L1 included */
	uint8_t		*header;		/* at offset 0 */
	size_t		 header_len;
	uint8_t		 reftable[8];		/* at reftable_offset */
	uint8_t		*refblock;		/* at refblock_offset */
	size_t		 refblock_len;
};

/*
 * Build the metadata of an image of size bytes (rounded up to 512), over
 * backing (a bare file name in the same directory, of format backing_fmt)
 * or standalone if backing is NULL. Pure. Returns 0 or -1 with *cause.
 */
int	qcow2_write_build(const char *backing, const char *backing_fmt,
	    uint64_t size, struct qcow2_image *, char **cause);
void	qcow2_write_clear(struct qcow2_image *);

/*
 * Create dir/file as an empty overlay over dir/backing: written under a
 * temporary name, synced, then renamed, never replacing an existing file.
 */
int	qcow2_write_overlay(const char *dir, const char *file,
	    const char *backing, const char *backing_fmt, uint64_t size,
	    char **cause);

/* Create dir/file as an empty standalone qcow2 image of size bytes. */
int	qcow2_write_empty(const char *dir, const char *file, uint64_t size,
	    char **cause);

/* rename(2) that never replaces an existing file. */
int	qcow2_write_rename(const char *from, const char *to);

/*
 * Lock a file being written (an OFD lock, released on close), and tell
 * whether any process, QEMU included, holds a lock on a file.
 */
int	qcow2_write_lock(int fd);
int	qcow2_write_locked(int fd);

#endif
