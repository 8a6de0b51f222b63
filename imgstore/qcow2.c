/*
 * A pure qcow2 header parser. Everything it reads comes from a buffer that
 * may be hostile: every offset is checked against the buffer before it is
 * used and every refusal says why, in words an admin can act on.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "qcow2.h"
#include "xmalloc.h"

/* Offsets of the header fields. */
#define H_MAGIC		0
#define H_VERSION	4
#define H_BACKING_OFF	8
#define H_BACKING_SIZE	16
#define H_CLUSTER_BITS	20
#define H_SIZE		24
#define H_CRYPT		32
#define H_L1_SIZE	36
#define H_L1_OFF	40
#define H_REFT_OFF	48
#define H_REFT_CLUSTERS	56
#define H_NB_SNAPSHOTS	60
#define H_SNAPSHOTS_OFF	64
#define H_INCOMPAT	72
#define H_COMPAT	80
#define H_AUTOCLEAR	88
#define H_REFCOUNT_ORDER 96
#define H_HEADER_LENGTH	100
#define H_COMPRESSION	104

#define FEATURE_ENTRY	48	/* type, bit, 46 bytes of name */

static const struct {
	int		 bit;
	const char	*name;
} qcow2_incompat_names[] = {
	{ 0, "dirty bit" },
	{ 1, "corrupt bit" },
	{ 2, "external data file" },
	{ 3, "compression type" },
	{ 4, "extended L2 entries" },
};

uint32_t
qcow2_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

uint64_t
qcow2_get64(const uint8_t *p)
{
	return ((uint64_t)qcow2_get32(p) << 32 | qcow2_get32(p + 4));
}

void
qcow2_put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

void
qcow2_put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

void
qcow2_put64(uint8_t *p, uint64_t v)
{
	qcow2_put32(p, v >> 32);
	qcow2_put32(p + 4, v);
}

int
qcow2_probe(const uint8_t *buf, size_t len)
{
	return (len >= 4 && qcow2_get32(buf) == QCOW2_MAGIC);
}

/*
 * L1 entries needed to map size bytes: each one points to an L2 table of
 * one cluster, whose entries (8 bytes, 16 with extended L2) map a cluster.
 */
uint64_t
qcow2_l1_entries(uint64_t size, uint32_t cluster_bits, int extl2)
{
	uint32_t	shift;

	shift = cluster_bits + cluster_bits - (extl2 ? 4 : 3);
	return ((size >> shift) + ((size & ((1ULL << shift) - 1)) != 0));
}

/* Copy up to n bytes of a name from the image, keeping printable ASCII. */
static void
qcow2_clean(char *dst, size_t dstlen, const uint8_t *src, size_t n)
{
	size_t	i, j = 0;

	for (i = 0; i < n && src[i] != '\0' && j + 1 < dstlen; i++)
		dst[j++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[j] = '\0';
}

/*
 * Describe unknown incompatible feature bits for an error message, by the
 * names the image's own feature table gives them when it has one.
 */
static void
qcow2_unknown_features(uint64_t bits, const uint8_t *table, size_t tlen,
    char *out, size_t outlen)
{
	char	 name[48], one[80];
	size_t	 i;
	int	 bit;

	out[0] = '\0';
	for (bit = 0; bit < 64; bit++) {
		if ((bits & (1ULL << bit)) == 0)
			continue;
		name[0] = '\0';
		for (i = 0; table != NULL && i + FEATURE_ENTRY <= tlen;
		    i += FEATURE_ENTRY) {
			if (table[i] == 0 && table[i + 1] == bit) {
				qcow2_clean(name, sizeof name, table + i + 2,
				    FEATURE_ENTRY - 2);
				break;
			}
		}
		if (name[0] != '\0')
			snprintf(one, sizeof one, "%sbit %d (%s)",
			    out[0] != '\0' ? ", " : "", bit, name);
		else
			snprintf(one, sizeof one, "%sbit %d",
			    out[0] != '\0' ? ", " : "", bit);
		strlcat(out, one, outlen);
	}
}

/* The name QEMU gives a known incompatible feature bit. */
static const char *
qcow2_incompat_name(int bit)
{
	size_t	i;

	for (i = 0; i < nitems(qcow2_incompat_names); i++) {
		if (qcow2_incompat_names[i].bit == bit)
			return (qcow2_incompat_names[i].name);
	}
	return ("unknown");
}

/* Check that a table of n bytes at off is cluster aligned and addressable. */
static int
qcow2_check_table(const char *what, uint64_t off, uint64_t n,
    uint64_t cluster_size, char **cause)
{
	if (off & (cluster_size - 1)) {
		xasprintf(cause, "%s offset %#" PRIx64 " is not cluster "
		    "aligned", what, off);
		return (-1);
	}
	if (off > INT64_MAX || n > INT64_MAX - off) {
		xasprintf(cause, "%s at %#" PRIx64 " runs past the largest "
		    "possible file", what, off);
		return (-1);
	}
	return (0);
}

/*
 * Walk the header extensions between start and end, bounded by the buffer:
 * record the backing format and feature table, refuse encryption and
 * external data files, ignore the rest as QEMU does.
 */
static int
qcow2_parse_extensions(const uint8_t *buf, size_t len, uint64_t start,
    uint64_t end, struct qcow2_info *info, const uint8_t **features,
    size_t *featureslen, char **cause)
{
	uint64_t	off = start;
	uint32_t	type, elen;
	const uint8_t	*data;

	while (off < end) {
		if (end - off < 8) {
			xasprintf(cause, "header extension at %#" PRIx64
			    " is cut short", off);
			return (-1);
		}
		if (off + 8 > len) {
			xasprintf(cause, "header extensions run past the "
			    "%zu bytes read", len);
			return (-1);
		}
		type = qcow2_get32(buf + off);
		elen = qcow2_get32(buf + off + 4);
		if (type == QCOW2_EXT_END)
			return (0);
		if (elen > end - off - 8) {
			xasprintf(cause, "header extension %#x at %#" PRIx64
			    " is larger than the header", type, off);
			return (-1);
		}
		if (off + 8 + elen > len) {
			xasprintf(cause, "header extension %#x runs past the "
			    "%zu bytes read", type, len);
			return (-1);
		}
		data = buf + off + 8;
		switch (type) {
		case QCOW2_EXT_BACKING_FMT:
			if (info->has_backing_format) {
				xasprintf(cause, "two backing format "
				    "extensions");
				return (-1);
			}
			if (elen == 0 || elen > QCOW2_FORMAT_MAX) {
				xasprintf(cause, "backing format name of %u "
				    "bytes", elen);
				return (-1);
			}
			if (memchr(data, '\0', elen) != NULL) {
				xasprintf(cause, "backing format name holds a "
				    "NUL byte");
				return (-1);
			}
			memcpy(info->backing_format, data, elen);
			info->backing_format[elen] = '\0';
			info->has_backing_format = 1;
			break;
		case QCOW2_EXT_FEATURES:
			*features = data;
			*featureslen = elen;
			break;
		case QCOW2_EXT_CRYPTO:
			xasprintf(cause, "encrypted images are not supported");
			return (-1);
		case QCOW2_EXT_DATA_FILE:
			xasprintf(cause, "images with an external data file "
			    "are not supported");
			return (-1);
		default:
			/* Bitmaps and unknown extensions: QEMU skips them. */
			break;
		}
		off += 8 + (((uint64_t)elen + 7) & ~7ULL);
	}
	return (0);
}

/* The version 3 fields of the fixed header: features, refcounts, length. */
static int
qcow2_parse_v3(const uint8_t *buf, size_t len, struct qcow2_info *info,
    char **cause)
{
	if (len < QCOW2_V3_HDRLEN) {
		xasprintf(cause, "qcow2 v3 header truncated at %zu bytes", len);
		return (-1);
	}
	info->incompatible = qcow2_get64(buf + H_INCOMPAT);
	info->compatible = qcow2_get64(buf + H_COMPAT);
	info->autoclear = qcow2_get64(buf + H_AUTOCLEAR);
	info->refcount_order = qcow2_get32(buf + H_REFCOUNT_ORDER);
	info->header_length = qcow2_get32(buf + H_HEADER_LENGTH);
	if (info->header_length < QCOW2_V3_HDRLEN ||
	    info->header_length % 8 != 0 ||
	    info->header_length > info->cluster_size) {
		xasprintf(cause, "bad header length %u", info->header_length);
		return (-1);
	}
	if (info->header_length > len) {
		xasprintf(cause, "header length %u runs past the %zu bytes "
		    "read", info->header_length, len);
		return (-1);
	}
	if (info->refcount_order > 6) {
		xasprintf(cause, "refcount order %u out of range (0..6)",
		    info->refcount_order);
		return (-1);
	}
	return (0);
}

/*
 * The fixed header: magic, version, cluster size, the version 3 fields,
 * no encryption, a virtual size QEMU can address.
 */
static int
qcow2_parse_fixed(const uint8_t *buf, size_t len, struct qcow2_info *info,
    char **cause)
{
	uint32_t	crypt;

	if (!qcow2_probe(buf, len)) {
		xasprintf(cause, "not a qcow2 image (bad magic)");
		return (-1);
	}
	if (len < QCOW2_V2_HDRLEN) {
		xasprintf(cause, "qcow2 header truncated at %zu bytes", len);
		return (-1);
	}
	info->version = qcow2_get32(buf + H_VERSION);
	if (info->version != 2 && info->version != 3) {
		xasprintf(cause, "unsupported qcow2 version %u",
		    info->version);
		return (-1);
	}
	info->cluster_bits = qcow2_get32(buf + H_CLUSTER_BITS);
	if (info->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    info->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		xasprintf(cause, "cluster_bits %u out of range (%d..%d)",
		    info->cluster_bits, QCOW2_MIN_CLUSTER_BITS,
		    QCOW2_MAX_CLUSTER_BITS);
		return (-1);
	}
	info->cluster_size = 1ULL << info->cluster_bits;

	if (info->version == 2) {
		info->header_length = QCOW2_V2_HDRLEN;
		info->refcount_order = 4;
	} else if (qcow2_parse_v3(buf, len, info, cause) != 0)
		return (-1);

	crypt = qcow2_get32(buf + H_CRYPT);
	if (crypt != 0) {
		xasprintf(cause, "encrypted images are not supported "
		    "(crypt method %u)", crypt);
		return (-1);
	}

	info->size = qcow2_get64(buf + H_SIZE);
	if (info->size > INT64_MAX) {
		xasprintf(cause, "virtual size %" PRIu64 " too large",
		    info->size);
		return (-1);
	}
	if ((info->incompatible & QCOW2_INCOMPAT_EXTL2) &&
	    info->cluster_bits < 14) {
		xasprintf(cause, "extended L2 entries need clusters of at "
		    "least 16 KiB");
		return (-1);
	}
	return (0);
}

/*
 * The tables the header points at: the active L1 table must exist, fit
 * and cover the virtual size; the refcount and snapshot tables must be
 * aligned and of a sane size.
 */
static int
qcow2_parse_tables(const uint8_t *buf, struct qcow2_info *info, char **cause)
{
	uint64_t	reft_off, snap_off, need;
	uint32_t	reft_clusters;

	info->l1_size = qcow2_get32(buf + H_L1_SIZE);
	info->l1_table_offset = qcow2_get64(buf + H_L1_OFF);
	if (info->l1_size > QCOW2_MAX_L1_BYTES / 8) {
		xasprintf(cause, "L1 table of %u entries is too large",
		    info->l1_size);
		return (-1);
	}
	need = qcow2_l1_entries(info->size, info->cluster_bits,
	    (info->incompatible & QCOW2_INCOMPAT_EXTL2) != 0);
	if (info->l1_size < need) {
		xasprintf(cause, "L1 table of %u entries is too small for a "
		    "virtual size of %" PRIu64 " bytes (needs %" PRIu64 ")",
		    info->l1_size, info->size, need);
		return (-1);
	}
	if (qcow2_check_table("L1 table", info->l1_table_offset,
	    (uint64_t)info->l1_size * 8, info->cluster_size, cause) != 0)
		return (-1);
	if (info->l1_size != 0 && info->l1_table_offset == 0) {
		xasprintf(cause, "L1 table overlaps the header");
		return (-1);
	}

	reft_off = qcow2_get64(buf + H_REFT_OFF);
	reft_clusters = qcow2_get32(buf + H_REFT_CLUSTERS);
	if (reft_clusters == 0 || reft_off == 0) {
		xasprintf(cause, "no refcount table");
		return (-1);
	}
	if (reft_clusters > QCOW2_MAX_REFTABLE_BYTES / info->cluster_size) {
		xasprintf(cause, "refcount table of %u clusters is too large",
		    reft_clusters);
		return (-1);
	}
	if (qcow2_check_table("refcount table", reft_off,
	    (uint64_t)reft_clusters << info->cluster_bits, info->cluster_size,
	    cause) != 0)
		return (-1);

	info->nb_snapshots = qcow2_get32(buf + H_NB_SNAPSHOTS);
	snap_off = qcow2_get64(buf + H_SNAPSHOTS_OFF);
	if (info->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
		xasprintf(cause, "%u internal snapshots is too many",
		    info->nb_snapshots);
		return (-1);
	}
	if (info->nb_snapshots != 0) {
		if (snap_off == 0) {
			xasprintf(cause, "snapshot table overlaps the header");
			return (-1);
		}
		if (qcow2_check_table("snapshot table", snap_off, 0,
		    info->cluster_size, cause) != 0)
			return (-1);
	}
	return (0);
}

/* The compression type byte agrees with its feature bit. */
static int
qcow2_parse_compression(const uint8_t *buf, struct qcow2_info *info,
    char **cause)
{
	uint32_t	ct = 0;

	/* Byte 104, only with a long enough header. */
	if (info->version == 3 && info->header_length > H_COMPRESSION)
		ct = buf[H_COMPRESSION];
	if (ct > 1) {
		xasprintf(cause, "unknown compression type %u", ct);
		return (-1);
	}
	if ((ct != 0) != ((info->incompatible &
	    QCOW2_INCOMPAT_COMPRESSION) != 0)) {
		xasprintf(cause, "compression type %u disagrees with the "
		    "compression type feature bit", ct);
		return (-1);
	}
	return (0);
}

/*
 * The backing file name, which lies in the first cluster after the
 * header; *off is where it starts (0 if there is none).
 */
static int
qcow2_parse_backing(const uint8_t *buf, size_t len, struct qcow2_info *info,
    uint64_t *off, char **cause)
{
	uint64_t	backing_off;
	uint32_t	backing_size;

	*off = backing_off = qcow2_get64(buf + H_BACKING_OFF);
	backing_size = qcow2_get32(buf + H_BACKING_SIZE);
	if (backing_off == 0 && backing_size != 0) {
		xasprintf(cause, "backing file name of %u bytes without an "
		    "offset", backing_size);
		return (-1);
	}
	if (backing_off == 0)
		return (0);
	if (backing_size == 0) {
		xasprintf(cause, "empty backing file name");
		return (-1);
	}
	if (backing_size > QCOW2_BACKING_MAX) {
		xasprintf(cause, "backing file name of %u bytes is too long",
		    backing_size);
		return (-1);
	}
	if (backing_off < info->header_length ||
	    backing_off > info->cluster_size ||
	    backing_size > info->cluster_size - backing_off) {
		xasprintf(cause, "backing file name at %#" PRIx64 " lies "
		    "outside the header cluster", backing_off);
		return (-1);
	}
	if (backing_off > len || backing_size > len - backing_off) {
		xasprintf(cause, "backing file name at %#" PRIx64 " runs past "
		    "the %zu bytes read", backing_off, len);
		return (-1);
	}
	if (memchr(buf + backing_off, '\0', backing_size) != NULL) {
		xasprintf(cause, "backing file name holds a NUL byte");
		return (-1);
	}
	memcpy(info->backing_file, buf + backing_off, backing_size);
	info->backing_file[backing_size] = '\0';
	info->has_backing = 1;
	return (0);
}

/*
 * The incompatible feature bits once the extensions are read: refuse a
 * corrupt image, an external data file and any bit this parser does not
 * know, named from the image's own feature table.
 */
static int
qcow2_parse_features(struct qcow2_info *info, const uint8_t *features,
    size_t featureslen, char **cause)
{
	uint64_t	unknown;
	char		names[512];

	if (info->incompatible & QCOW2_INCOMPAT_CORRUPT) {
		xasprintf(cause, "image is marked corrupt (the %s is set; "
		    "run qemu-img check -r)", qcow2_incompat_name(1));
		return (-1);
	}
	if (info->incompatible & QCOW2_INCOMPAT_DATA_FILE) {
		xasprintf(cause, "images with an external data file are not "
		    "supported");
		return (-1);
	}
	unknown = info->incompatible & ~QCOW2_INCOMPAT_KNOWN;
	if (unknown != 0) {
		qcow2_unknown_features(unknown, features, featureslen, names,
		    sizeof names);
		xasprintf(cause, "unsupported incompatible features: %s",
		    names);
		return (-1);
	}
	info->dirty = (info->incompatible & QCOW2_INCOMPAT_DIRTY) != 0;
	return (0);
}

/*
 * Parse and check the fixed header, its extensions and the backing file
 * name, refusing anything QEMU would refuse or we cannot vouch for.
 */
int
qcow2_parse_header(const uint8_t *buf, size_t len, struct qcow2_info *info,
    char **cause)
{
	const uint8_t	*features = NULL;
	size_t		 featureslen = 0;
	uint64_t	 backing_off, end;

	memset(info, 0, sizeof *info);
	if (qcow2_parse_fixed(buf, len, info, cause) != 0 ||
	    qcow2_parse_tables(buf, info, cause) != 0 ||
	    qcow2_parse_compression(buf, info, cause) != 0 ||
	    qcow2_parse_backing(buf, len, info, &backing_off, cause) != 0)
		return (-1);
	/* Extensions end where the backing file name starts. */
	end = backing_off != 0 ? backing_off : info->cluster_size;
	if (qcow2_parse_extensions(buf, len, info->header_length, end, info,
	    &features, &featureslen, cause) != 0)
		return (-1);
	return (qcow2_parse_features(info, features, featureslen, cause));
}
