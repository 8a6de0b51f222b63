/* fuzz-sources: broker/rdp/rdp-rfb.c broker/rdp/rdp-rfb-pump.c broker/rdp/rdp-rfb-nudge.c broker/rdp/rdp-clip-keep.c broker/rdp/rdp-clip.c broker/rdp/rdp-clip-cache.c broker/rdp/rdp-sound.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: freerdp-server2 freerdp2 winpr2 zlib jansson */
/*
 * The RDP gateway's VNC client (rdp-rfb.c) on what a VNC server sends
 * after a good handshake: framebuffer updates, cut text (classic and the
 * extended clipboard, which goes on to rdp-clip.c) and QEMU's audio
 * messages (on to rdp-sound.c), all from the input, over a real socket as
 * the session thread reads it. No input may crash, read out of bounds or
 * hang; each message is applied or the connection is given up. Seeds
 * cover ExtendedDesktopSize (-308): server changes, answers to our
 * SetDesktopSize, several screens, a short list and a huge size.
 * rdp_rfb_msglen (the reader thread's framing) reads every prefix of the
 * input without going past it, and never calls a message whole before
 * its bytes are.
 */
#include <sys/socket.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rdp/rdp-chan.h"
#include "rdp/rdp-int.h"

/* What the client writes back (its handshake, clipboard answers). */
static void *
fuzz_drain(void *arg)
{
	int	fd = *(int *)arg;
	char	buf[4096];

	while (read(fd, buf, sizeof buf) > 0)
		;
	return (NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char hello[] =
	    "RFB 003.008\n"
	    "\x01\x01"			/* one security type: None */
	    "\x00\x00\x00\x00"		/* security result: OK */
	    "\x00\x40\x00\x30"		/* ServerInit: 64x48 */
	    "\x20\x18\x00\x01\x00\xff\x00\xff\x00\xff\x10\x08\x00\x00\x00\x00"
	    "\x00\x00\x00\x04QEMU";
	struct rdp_rfb	*rfb;
	pthread_t	 t;
	char		*cause = NULL;
	int		 sv[2], i;

	size_t		 n, k;

	if (size > 60000)
		return (0);
	/* Every prefix up to the first message's length: 0, then whole. */
	n = rdp_rfb_msglen(data, size);
	if (n > size)
		abort();
	for (k = 0; k < size && k < 64; k++)
		if ((n = rdp_rfb_msglen(data, k)) > k)
			abort();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		abort();
	if (write(sv[1], hello, sizeof hello - 1) != sizeof hello - 1 ||
	    (size > 0 && write(sv[1], data, size) != (ssize_t)size))
		abort();
	shutdown(sv[1], SHUT_WR);
	pthread_create(&t, NULL, fuzz_drain, &sv[1]);

	rfb = rdp_rfb_create(sv[0]);
	rfb->clip = rdp_clip_create();
	rfb->sound = rdp_sound_create();
	if (rdp_rfb_handshake(rfb, 1, &cause) != 0)
		abort();	/* the fixed prefix is a good handshake */
	for (i = 0; i < 10000; i++) {
		if (rdp_rfb_process(rfb, &cause) != 0) {
			if (cause == NULL)
				abort();
			free(cause);
			cause = NULL;
			break;
		}
		if (rfb->ndamage > RDP_RFB_DAMAGE || rfb->width <= 0 ||
		    rfb->height <= 0 || rfb->width > RDP_FB_MAX ||
		    rfb->height > RDP_FB_MAX)
			abort();
		/* What the Display Control channel sends back. */
		if (rfb->extdesk)
			(void)rdp_rfb_set_size(rfb, rfb->width, rfb->height);
	}
	rdp_clip_free(rfb->clip);
	rdp_sound_free(rfb->sound);
	rdp_rfb_free(rfb);	/* closes sv[0]: the drain ends */
	pthread_join(t, NULL);
	close(sv[1]);
	return (0);
}
