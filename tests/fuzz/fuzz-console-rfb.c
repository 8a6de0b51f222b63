/* fuzz-sources: broker/console-rfb.c */
/* fuzz-libs: */
/*
 * The browser console's reading of the client's RFB stream: the bytes
 * fed in pieces of sizes the input picks (as WebSocket frames split
 * them), with continuous updates offered or not (the input's second
 * byte). Every call takes at least one byte and never more than given,
 * the broker's request only ever goes in between two messages, kept
 * bytes are whole EnableContinuousUpdates, and the same bytes fed whole
 * or in pieces end in the same state. The same bytes as QEMU's side of
 * the handshake: every call takes at least one, ServerInit's end at most
 * once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct console_rfb	 a, b, s;
	unsigned char		 req[10];
	size_t			 off, n, piece, kept, kepta, keptb;
	int			 pass, cont, inits;

	if (size < 3)
		return (0);
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	piece = data[0] % 17 + 1;
	cont = data[1] & 1;
	data += 2;
	size -= 2;
	a.continuous = b.continuous = cont;
	for (off = 0, kept = kepta = 0; off < size; off += n) {
		n = console_rfb_scan(&a, data + off, size - off <
		    piece ? size - off : piece, &pass);
		if (n == 0 || n > piece)
			abort();
		if (!pass) {
			if (!cont || (kept == 0 && data[off] != RFB_CONTINUOUS))
				abort();
			kept += n;
			if (kept > 10)
				abort();
			if (!a.drop) {		/* its end */
				if (kept != 10)
					abort();
				kept = 0;
			}
		} else if (kept != 0)
			abort();		/* passed from inside it */
		kepta += pass ? 0 : n;
		if (console_rfb_idle(&a)) {
			console_rfb_request(&a, req);
			if (req[0] != 3 || req[1] != 1)
				abort();
		}
	}
	for (off = 0, keptb = 0; off < size; off += n) {
		if ((n = console_rfb_scan(&b, data + off, size - off,
		    &pass)) == 0)
			abort();
		keptb += pass ? 0 : n;
	}
	if (a.state != b.state || a.have != b.have || a.skip != b.skip ||
	    a.requests != b.requests || kepta != keptb ||
	    a.dropped != b.dropped)
		abort();

	/* QEMU's side, after the browser's picks above. */
	s = a;
	for (off = 0, inits = 0; off < size; off += n) {
		n = console_rfb_server_scan(&s, data + off, size - off <
		    piece ? size - off : piece);
		if (n == 0 || n > piece)
			abort();
		if (console_rfb_server_init(&s) && inits++ == 0 &&
		    !console_rfb_server_done(&s))
			abort();
	}
	return (0);
}
