/* fuzz-sources: broker/rdp/rdp-clip.c broker/rdp/rdp-clip-cache.c broker/rdp/rdp-rfb.c broker/rdp/rdp-rfb-pump.c broker/rdp/rdp-rfb-nudge.c broker/rdp/rdp-clip-keep.c broker/rdp/rdp-sound.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: freerdp-server2 freerdp2 winpr2 zlib jansson */
/*
 * The RDP gateway's clipboard conversions and the VNC extended clipboard
 * messages (rdp-clip.c), all fed by the guest or the client: a payload
 * from QEMU (flags, zlib stream), UTF-16LE text from the RDP client, UTF-8
 * or Latin-1 from the guest. No input may crash or read out of bounds;
 * outputs stay within RDP_CLIP_MAX; a text survives UTF-8 -> UTF-16 ->
 * UTF-8 (valid UTF-8 without CR) and a PROVIDE we build parses back to it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rdp/rdp-chan.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t	 flags;
	char		*text, *cause = NULL, *u8, *l1, *back;
	unsigned char	*u16, *msg;
	size_t		 tlen, n, n16, nback;

	if (rdp_clip_ext_parse(data, size, &flags, &text, &tlen, &cause) == 0) {
		if (text != NULL && (tlen > RDP_CLIP_MAX || strlen(text) > tlen))
			abort();
		free(text);
	} else {
		if (cause == NULL || text != NULL)
			abort();
		free(cause);
	}

	if ((u8 = rdp_clip_utf16_to_utf8(data, size, &n)) != NULL) {
		if (n > RDP_CLIP_MAX || strlen(u8) != n)
			abort();
		/* Our UTF-8 (no CR before LF) goes back and forth intact. */
		u16 = rdp_clip_utf8_to_utf16(u8, n, &n16);
		back = rdp_clip_utf16_to_utf8(u16, n16, &nback);
		if (back == NULL || (memchr(u8, '\r', n) == NULL &&
		    (nback != n || memcmp(back, u8, n) != 0)))
			abort();
		/* And through the extended clipboard. */
		msg = rdp_clip_ext_build(RDP_CLIP_EXT_PROVIDE |
		    RDP_CLIP_EXT_TEXT, u8, n, &n16);
		if (n16 < 12 || rdp_clip_ext_parse(msg + 8, n16 - 8, &flags,
		    &text, &tlen, &cause) != 0)
			abort();
		if (n > 0 && u8[n - 1] != '\0' && (tlen != n ||
		    memcmp(text, u8, n) != 0))
			abort();
		free(text);
		free(msg);
		free(back);
		free(u16);
		free(u8);
	}

	u8 = rdp_clip_latin1_to_utf8(data, size, &n);
	l1 = rdp_clip_utf8_to_latin1(u8, n, &tlen);
	if (tlen != size || memcmp(l1, data, size) != 0)
		abort();
	free(l1);
	free(u8);
	l1 = rdp_clip_utf8_to_latin1((const char *)data, size, &tlen);
	if (tlen > size)
		abort();
	free(l1);
	return (0);
}
