/* fuzz-sources: broker/ws.c broker/onetime.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: openssl libevent jansson */
/*
 * The browser console's WebSocket framing, as console-ws.c drives it: a
 * stream of client bytes taken frame by frame (fed in two pieces at a
 * point the input picks, as TCP may split it), each frame's bounds within
 * the buffer, control frames short, close codes checked; the handshake
 * key and header token checks on the same bytes. No input may crash or
 * read out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

static void
fuzz_stream(const uint8_t *data, size_t size, size_t cut, int from_client)
{
	struct ws_parser	 p = { .max_payload = 4096 };
	struct ws_frame		 f;
	unsigned char		*buf;
	size_t			 have, off = 0;
	int			 rc;

	buf = malloc(size + 1);
	memcpy(buf, data, size);
	have = cut;	/* the first piece, then all */
	for (;;) {
		rc = ws_parse(&p, buf + off, have - off, from_client, &f);
		if (rc == 0) {
			if (have == size)
				break;
			have = size;
			continue;
		}
		if (rc == -1) {
			if (f.cause == NULL || f.close_code < 1000)
				abort();
			break;
		}
		if (f.header_len + f.payload_len > have - off)
			abort();
		if (f.opcode >= WS_OP_CLOSE && f.payload_len > 125)
			abort();
		ws_unmask(buf + off + f.header_len, f.payload_len, f.mask);
		if (f.opcode == WS_OP_CLOSE)
			ws_close_code(buf + off + f.header_len, f.payload_len);
		off += f.header_len + f.payload_len;
	}
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		*s, acc[WS_ACCEPT_LEN + 1];
	unsigned char	 hdr[WS_HEADER_MAX];
	size_t		 cut;

	if (size == 0)
		return (0);
	cut = data[0] % size;
	fuzz_stream(data + 1, size - 1, cut > size - 1 ? size - 1 : cut, 1);
	fuzz_stream(data + 1, size - 1, size - 1, 0);

	s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	ws_accept_key(s, acc, sizeof acc);
	ws_header_has(s, "upgrade");
	ws_header(hdr, data[0], size * 1000003ULL);
	free(s);
	return (0);
}
