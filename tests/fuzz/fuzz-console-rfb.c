/* fuzz-sources: broker/console-rfb.c */
/* fuzz-libs: */
/*
 * The browser console's reading of the client's RFB stream: the bytes
 * fed in pieces of sizes the input picks (as WebSocket frames split
 * them). Every call takes at least one byte and never more than given,
 * the broker's request only ever goes in between two messages, and the
 * same bytes fed whole or in pieces end in the same state.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct console_rfb	 a, b;
	unsigned char		 req[10];
	size_t			 off, n, piece;

	if (size < 2)
		return (0);
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	piece = data[0] % 17 + 1;
	data++;
	size--;
	for (off = 0; off < size; off += n) {
		n = console_rfb_scan(&a, data + off, size - off <
		    piece ? size - off : piece);
		if (n == 0 || n > piece)
			abort();
		if (console_rfb_idle(&a)) {
			console_rfb_request(&a, req);
			if (req[0] != 3 || req[1] != 1)
				abort();
		}
	}
	for (off = 0; off < size; off += n)
		if ((n = console_rfb_scan(&b, data + off, size - off)) == 0)
			abort();
	if (a.state != b.state || a.have != b.have || a.skip != b.skip ||
	    a.requests != b.requests)
		abort();
	return (0);
}
