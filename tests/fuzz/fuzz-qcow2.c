/* fuzz-sources: imgstore/qcow2.c imgstore/chain.c imgstore/qcow2-write.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: jansson */
/*
 * The image store's qcow2 header parser and chain walker, on hostile
 * bytes. An input is up to four files of an imaginary store, "a" to "d",
 * separated by FZ_SEP; "e" is a hard link to "a", "s" a symbolic link,
 * "p" a device. The harness parses the whole input as one header, walks
 * the chain from "a", and checks what comes out:
 *
 *   - an accepted header has sane fields, and rebuilding it with the
 *     store's writer parses back to the same backing file and size;
 *   - an accepted backing file string names a bare file of the store;
 *   - an accepted chain is 1..64 links of files a..d (never s, p, e
 *     after a), each qcow2 or raw, with no file twice.
 *
 * Seeds in tests/fuzz/seeds/fuzz-qcow2/: headers cut from qemu-img
 * images (the first KiB) and hostile ones, joined with FZ_SEP.
 */
#include <sys/types.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "qcow2-write.h"
#include "qcow2.h"

#define FZ_SEP		"QDFZ"
#define FZ_FILES	4
#define FZ_DIR		"/store"

struct fz_store {
	const uint8_t	*data[FZ_FILES];
	size_t		 len[FZ_FILES];
	int		 n;
};

/* Read a file of the imaginary store. */
static ssize_t
fz_read(void *arg, const char *file, uint8_t *buf, size_t len,
    struct chain_stat *st, char **cause)
{
	struct fz_store	*s = arg;
	size_t		 n;
	int		 i;

	if (strcmp(file, "s") == 0) {
		st->type = CHAIN_SYMLINK;
		return (0);
	}
	if (strcmp(file, "p") == 0) {
		st->type = CHAIN_OTHER;
		return (0);
	}
	if (strcmp(file, "e") == 0)
		file = "a";
	if (strlen(file) != 1 || file[0] < 'a' ||
	    (i = file[0] - 'a') >= s->n) {
		*cause = strdup("missing");
		if (*cause == NULL)
			abort();
		return (-1);
	}
	st->type = CHAIN_REG;
	st->dev = 1;
	st->ino = i + 1;
	st->size = s->len[i];
	n = s->len[i] < len ? s->len[i] : len;
	memcpy(buf, s->data[i], n);
	return (n);
}

/* Check the fields of an accepted header and rebuild it with the writer. */
static void
fz_header(const uint8_t *data, size_t size)
{
	struct qcow2_info	 info, again;
	struct qcow2_image	 img;
	char			*cause = NULL, *bare;

	if (qcow2_parse_header(data, size, &info, &cause) != 0) {
		if (cause == NULL)
			abort();
		free(cause);
		return;
	}
	if ((info.version != 2 && info.version != 3) ||
	    info.cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    info.cluster_bits > QCOW2_MAX_CLUSTER_BITS ||
	    info.cluster_size != 1ULL << info.cluster_bits ||
	    info.header_length > size || info.size > INT64_MAX ||
	    (uint64_t)info.l1_size * 8 > QCOW2_MAX_L1_BYTES)
		abort();
	if (info.has_backing != (info.backing_file[0] != '\0') ||
	    strlen(info.backing_file) > QCOW2_BACKING_MAX ||
	    info.has_backing_format != (info.backing_format[0] != '\0'))
		abort();

	bare = NULL;
	if (info.has_backing) {
		bare = chain_backing_file(FZ_DIR, info.backing_file, &cause);
		if (bare == NULL) {
			if (cause == NULL)
				abort();
			free(cause);
			cause = NULL;
		} else if (!chain_bare_name(bare))
			abort();
	}
	if (info.size > (1ULL << 50))
		info.size = 1ULL << 50;
	if (qcow2_write_build(bare, bare != NULL ? "qcow2" : NULL, info.size,
	    &img, &cause) != 0) {
		free(cause);
		free(bare);
		return;
	}
	if (qcow2_parse_header(img.header, img.header_len, &again,
	    &cause) != 0)
		abort();
	if (again.size != ((info.size + 511) & ~511ULL) ||
	    again.has_backing != (bare != NULL) ||
	    (bare != NULL && strcmp(again.backing_file, bare) != 0))
		abort();
	qcow2_write_clear(&img);
	free(bare);
}

/* Walk the chain from "a" over the files of the input. */
static void
fz_chain(const uint8_t *data, size_t size)
{
	struct fz_store	 s;
	struct chain_io	 io;
	struct chain	*c;
	const uint8_t	*p = data, *end = data + size, *sep;
	char		*cause = NULL;
	u_int		 i, j;

	memset(&s, 0, sizeof s);
	while (s.n < FZ_FILES) {
		sep = s.n + 1 < FZ_FILES ? memmem(p, end - p, FZ_SEP,
		    strlen(FZ_SEP)) : NULL;
		s.data[s.n] = p;
		s.len[s.n] = sep != NULL ? (size_t)(sep - p) : (size_t)(end - p);
		s.n++;
		if (sep == NULL)
			break;
		p = sep + strlen(FZ_SEP);
	}
	io.read = fz_read;
	io.arg = &s;
	if (chain_walk_io(&io, FZ_DIR, "a", "qcow2", &c, &cause) != 0) {
		if (cause == NULL || c != NULL)
			abort();
		free(cause);
		return;
	}
	if (c->n < 1 || c->n > CHAIN_MAX_DEPTH)
		abort();
	for (i = 0; i < c->n; i++) {
		if (strlen(c->links[i].file) != 1 ||
		    c->links[i].file[0] < 'a' || c->links[i].file[0] > 'd')
			abort();
		if (strcmp(c->links[i].format, "qcow2") != 0 &&
		    strcmp(c->links[i].format, "raw") != 0)
			abort();
		if (strncmp(c->links[i].path, FZ_DIR "/",
		    strlen(FZ_DIR) + 1) != 0)
			abort();
		for (j = 0; j < i; j++) {
			if (strcmp(c->links[i].file, c->links[j].file) == 0)
				abort();
		}
	}
	chain_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_header(data, size);
	fz_chain(data, size);
	return (0);
}
