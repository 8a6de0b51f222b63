/*
 * The qcow2 header, as far as the image store needs it: a pure parser that
 * reads a buffer holding the start of a file and refuses whatever QEMU
 * could be led astray by (encryption, external data files, features it
 * does not know, tables and strings that point outside the header).
 * Format: docs/interop/qcow2.txt in the QEMU tree.
 */
#ifndef QDESK_QCOW2_H
#define QDESK_QCOW2_H

#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC		0x514649fbU	/* "QFI\xfb" */
#define QCOW2_V2_HDRLEN		72
#define QCOW2_V3_HDRLEN		104

#define QCOW2_MIN_CLUSTER_BITS	9
#define QCOW2_MAX_CLUSTER_BITS	21
#define QCOW2_MAX_L1_BYTES	(32U << 20)	/* QEMU's QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_REFTABLE_BYTES (8U << 20)	/* QCOW_MAX_REFTABLE_SIZE */
#define QCOW2_MAX_SNAPSHOTS	65536
#define QCOW2_BACKING_MAX	1023		/* QEMU refuses longer names */
#define QCOW2_FORMAT_MAX	15		/* QEMU's backing_format[16] */

/* Header extension types. */
#define QCOW2_EXT_END		0x00000000U
#define QCOW2_EXT_BACKING_FMT	0xe2792acaU
#define QCOW2_EXT_FEATURES	0x6803f857U
#define QCOW2_EXT_BITMAPS	0x23852875U
#define QCOW2_EXT_CRYPTO	0x0537be77U
#define QCOW2_EXT_DATA_FILE	0x44415441U

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY		(1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT		(1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE	(1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION	(1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2		(1ULL << 4)
/* The bits this parser understands; any other one is refused. */
#define QCOW2_INCOMPAT_KNOWN	(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |\
	QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION |		\
	QCOW2_INCOMPAT_EXTL2)

#define QCOW2_COMPAT_LAZY_REFCOUNTS	(1ULL << 0)

struct qcow2_info {
	uint32_t	version;		/* 2 or 3 */
	uint32_t	cluster_bits;
	uint64_t	cluster_size;
	uint64_t	size;			/* virtual size, bytes */
	uint64_t	incompatible;
	uint64_t	compatible;
	uint64_t	autoclear;
	uint32_t	refcount_order;
	uint32_t	header_length;
	uint32_t	l1_size;		/* entries */
	uint64_t	l1_table_offset;
	uint32_t	nb_snapshots;
	int		dirty;			/* needs a refcount repair */
	int		has_backing;
	char		backing_file[QCOW2_BACKING_MAX + 1];	/* "" if none */
	int		has_backing_format;
	char		backing_format[QCOW2_FORMAT_MAX + 1];	/* "" if none */
};

/*
 * Parse the qcow2 header at the start of buf (len bytes; 64 KiB is plenty
 * for any image QEMU writes). Returns 0 and fills info, or -1 with *cause.
 */
int	qcow2_parse_header(const uint8_t *buf, size_t len,
	    struct qcow2_info *info, char **cause);

/* Returns 1 if buf starts with the qcow2 magic. */
int	qcow2_probe(const uint8_t *buf, size_t len);

/* The number of L1 entries a virtual size needs (at most 2^25). */
uint64_t qcow2_l1_entries(uint64_t size, uint32_t cluster_bits, int extl2);

/* Big-endian accessors shared with the writer. */
uint32_t qcow2_get32(const uint8_t *);
uint64_t qcow2_get64(const uint8_t *);
void	 qcow2_put16(uint8_t *, uint16_t);
void	 qcow2_put32(uint8_t *, uint32_t);
void	 qcow2_put64(uint8_t *, uint64_t);

#endif
