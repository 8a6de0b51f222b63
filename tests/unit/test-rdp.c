/*
 * Unit tests of the RDP gateway's pure parts and its RFB client (against
 * a scripted server on a socketpair): .rdp files, desktop choice, key and
 * mouse mapping, the RFB handshake, raw / copyrect / resize / extended key
 * / LED state, and the key and pointer messages sent to QEMU.
 */
#include <sys/socket.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <freerdp/error.h>
#include <freerdp/input.h>

#include "check.h"
#include "compat.h"
#include "rdp.h"
#include "rdp-chan.h"
#include "rdp-int.h"

/* rdp_file_build refuses these, with a cause. */
static void
file_refused(const char *host, int port, const char *user, const char *desk)
{
	char	*cause = NULL;

	CHECK(rdp_file_build(host, port, user, desk, 0, &cause) == NULL);
	CHECK(cause != NULL);
	free(cause);
}

static void
test_file(void)
{
	char	*f, *cause = NULL;

	f = rdp_file_build("desk.example.org", 3389, "alice", "d1", 1, &cause);
	CHECK(f != NULL);
	CHECK(strstr(f, "full address:s:desk.example.org:3389\r\n") != NULL);
	CHECK(strstr(f, "username:s:d1\\alice\r\n") != NULL);
	CHECK(strstr(f, "domain:s:d1\r\n") != NULL);
	CHECK(strstr(f, "authentication level:i:0\r\n") != NULL);
	CHECK(strstr(f, "enablecredsspsupport:i:0\r\n") != NULL);
	CHECK(strstr(f, "prompt for credentials:i:1\r\n") != NULL);
	/* A window smaller than the desktop scales it (issue 12). */
	CHECK(strstr(f, "smart sizing:i:1\r\n") != NULL);
	CHECK(strstr(f, "dynamic resolution:i:1\r\n") != NULL);
	CHECK(strstr(f, "redirectclipboard:i:1\r\n") != NULL);
	free(f);

	f = rdp_file_build("::1", 13389, "bob", NULL, 0, &cause);
	CHECK(f != NULL);
	CHECK(strstr(f, "full address:s:[::1]:13389\r\n") != NULL);
	CHECK(strstr(f, "authentication level:i:2\r\n") != NULL);
	CHECK(strstr(f, "domain:s:\r\n") != NULL);
	CHECK(strstr(f, "username:s:bob\r\n") != NULL);
	free(f);
	file_refused("h", 3389, "a@b", "d1");
	file_refused("h", 3389, "alice", "x\\y");
	file_refused("h", 3389, "al\nice", "d1");
	file_refused("h", 0, "alice", "d1");
	file_refused("", 3389, "alice", "d1");
	file_refused("h", 3389, "alice", "d\r1");
}

static void
test_login(void)
{
	json_t		*list, *d;
	char		*w, *cause = NULL;
	const char	 tok[] = "Cookie: msts=d2\r\n";

	w = rdp_login_wanted("d1", NULL, 0);
	CHECK_STR(w, "d1");
	free(w);
	CHECK(rdp_login_wanted("", NULL, 0) == NULL);
	CHECK(rdp_login_wanted(NULL, NULL, 0) == NULL);
	w = rdp_login_wanted("", tok, sizeof tok - 1);
	CHECK_STR(w, "d2");
	free(w);
	w = rdp_login_wanted("d1", tok, sizeof tok - 1);
	CHECK_STR(w, "d1");	/* the domain wins */
	free(w);
	CHECK(rdp_login_wanted(NULL, "Cookie: msts=\r\n", 15) == NULL);
	CHECK(rdp_login_wanted(NULL, "Cookie: mstshash=x\r\n", 20) == NULL);

	list = json_pack("[{s:s,s:s},{s:s,s:s}]", "name", "d1", "state",
	    "running", "name", "d2", "state", "stopped");
	d = rdp_login_choose(list, NULL, "alice", &cause);
	CHECK(d != NULL);
	CHECK_STR(json_string_value(json_object_get(d, "name")), "d1");
	d = rdp_login_choose(list, "d2", "alice", &cause);
	CHECK(d != NULL);
	CHECK_STR(json_string_value(json_object_get(d, "state")), "stopped");
	d = rdp_login_choose(list, "d3", "alice", &cause);
	CHECK(d == NULL);
	CHECK(cause != NULL && strstr(cause, "no desktop named d3") != NULL);
	CHECK(cause != NULL && strstr(cause, "d1, d2") != NULL);
	free(cause);
	cause = NULL;
	json_decref(list);

	list = json_array();
	CHECK(rdp_login_choose(list, NULL, "bob", &cause) == NULL);
	CHECK(cause != NULL && strstr(cause, "qdesk desktop assign bob") !=
	    NULL);
	free(cause);
	json_decref(list);
}

static void
test_input(void)
{
	struct rdp_inputstate	 in;
	uint32_t		 q, prev = 0;
	int			 down, mask, wheel, i;

	memset(&in, 0, sizeof in);
	CHECK(rdp_input_qnum(&in, KBD_FLAGS_DOWN, 0x1e, &down) == 0x1e);
	CHECK(down == 1);
	CHECK(rdp_input_qnum(&in, KBD_FLAGS_RELEASE, 0x1e, &down) == 0x1e);
	CHECK(down == 0);
	/* Right Ctrl (E0 1D) and keypad Enter (E0 1C). */
	CHECK(rdp_input_qnum(&in, KBD_FLAGS_EXTENDED, 0x1d, &down) == 0x9d);
	CHECK(rdp_input_qnum(&in, KBD_FLAGS_EXTENDED | KBD_FLAGS_RELEASE,
	    0x1c, &down) == 0x9c);
	CHECK(down == 0);
	/* Pause: E1 1D then 45 is one key. */
	CHECK(rdp_input_qnum(&in, KBD_FLAGS_EXTENDED1, 0x1d, &down) == 0);
	CHECK(rdp_input_qnum(&in, 0, 0x45, &down) == 0xc6);
	/* A lone NumLock is NumLock. */
	CHECK(rdp_input_qnum(&in, 0, 0x45, &down) == 0x45);
	CHECK(rdp_input_qnum(&in, 0, 0, &down) == 0);

	CHECK(rdp_input_keysym(0x1e) == 'a');
	CHECK(rdp_input_keysym(0x1c) == 0xff0d);
	CHECK(rdp_input_keysym(0xc8) == 0xff52);
	CHECK(rdp_input_keysym(0x7e) == 0);
	/* The table is sorted (bsearch). */
	for (i = 1; i < 256; i++) {
		q = rdp_input_keysym(i);
		if (q != 0)
			prev = i;
	}
	CHECK(prev == 0xdd);

	mask = rdp_input_mouse(&in, PTR_FLAGS_DOWN | PTR_FLAGS_BUTTON1,
	    &wheel);
	CHECK(mask == 1 && wheel == 0);
	mask = rdp_input_mouse(&in, PTR_FLAGS_DOWN | PTR_FLAGS_BUTTON2,
	    &wheel);
	CHECK(mask == 5);
	mask = rdp_input_mouse(&in, PTR_FLAGS_BUTTON1, &wheel);
	CHECK(mask == 4);
	mask = rdp_input_mouse(&in, PTR_FLAGS_MOVE, &wheel);
	CHECK(mask == 4);
	mask = rdp_input_mouse(&in, PTR_FLAGS_WHEEL | 0x78, &wheel);
	CHECK(mask == 4 && wheel == 8);
	mask = rdp_input_mouse(&in, PTR_FLAGS_WHEEL | PTR_FLAGS_WHEEL_NEGATIVE |
	    0x88, &wheel);
	CHECK(wheel == 16);

	CHECK(rdp_input_scale(100, 1024, 1024) == 100);
	CHECK(rdp_input_scale(512, 1024, 720) == 360);
	CHECK(rdp_input_scale(1023, 1024, 720) == 719);
	CHECK(rdp_input_scale(5, 0, 720) == 0);
}

/* Bytes a scripted RFB server sends. */
struct script {
	unsigned char	buf[8192];
	size_t		len;
};

static void
put(struct script *s, const void *p, size_t n)
{
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void
put8(struct script *s, unsigned v)
{
	unsigned char	b = v;

	put(s, &b, 1);
}

static void
put16(struct script *s, unsigned v)
{
	put8(s, v >> 8);
	put8(s, v);
}

static void
put32(struct script *s, uint32_t v)
{
	put16(s, v >> 16);
	put16(s, v);
}

static void
rect(struct script *s, int x, int y, int w, int h, int32_t enc)
{
	put16(s, x);
	put16(s, y);
	put16(s, w);
	put16(s, h);
	put32(s, (uint32_t)enc);
}

/*
 * A FramebufferUpdate of one ExtendedDesktopSize rectangle: x is who
 * caused it, y the status; one screen with this id, or none when id < 0.
 */
static void
extdesk(struct script *s, int x, int y, int w, int h, int id)
{
	put8(s, 0);
	put8(s, 0);
	put16(s, 1);
	rect(s, x, y, w, h, -308);
	put32(s, id < 0 ? 0 : 0x01000000);	/* screens, padding */
	if (id < 0)
		return;
	put32(s, id);
	put16(s, 0);
	put16(s, 0);
	put16(s, w);
	put16(s, h);
	put32(s, 0);
}

static void
test_rfb(void)
{
	struct script	 s = { .len = 0 };
	struct rdp_rfb	*rfb;
	unsigned char	 got[256];
	char		*cause = NULL;
	int		 sv[2];
	ssize_t		 n;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	put(&s, "RFB 003.008\n", 12);
	put8(&s, 2);
	put8(&s, 2);		/* VNC auth */
	put8(&s, 1);		/* None */
	put32(&s, 0);
	put16(&s, 16);
	put16(&s, 8);
	put(&s, "0123456789abcdef", 16);
	put32(&s, 4);
	put(&s, "tiny", 4);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);

	rfb = rdp_rfb_create(sv[0]);
	CHECK(rdp_rfb_handshake(rfb, 2, &cause) == 0);
	if (cause != NULL) {
		fprintf(stderr, "handshake: %s\n", cause);
		free(cause);
		cause = NULL;
	}
	CHECK(rfb->width == 16 && rfb->height == 8);
	CHECK_STR(rfb->name, "tiny");
	CHECK(rfb->ndamage == 1);
	/* version 12, security 1, shared 1, pixel format 20, encodings
	 * 4 + 4 * 7, update request 10 */
	n = read(sv[1], got, sizeof got);
	CHECK(n == 12 + 1 + 1 + 20 + 32 + 10);
	/* No refresh nudge before frames flow, even to QEMU. */
	rfb->extkey = 1;
	CHECK(rdp_rfb_request(rfb, 1) == 0);
	CHECK(read(sv[1], got + 128, sizeof got - 128) == 10);
	CHECK(rfb->nudges == 0);
	rfb->extkey = 0;
	CHECK(memcmp(got, "RFB 003.008\n", 12) == 0);
	CHECK(got[12] == 1 && got[13] == 1);
	CHECK(got[14] == 0 && got[18] == 32 && got[21] == 1);
	CHECK(got[28] == 16 && got[29] == 8 && got[30] == 0);
	CHECK(got[34] == 2 && got[37] == 7);
	/* ExtendedDesktopSize (-308) is the last one asked for. */
	CHECK(got[62] == 0xff && got[63] == 0xff && got[64] == 0xfe &&
	    got[65] == 0xcc);
	CHECK(got[66] == 3 && got[67] == 0);	/* full, not incremental */

	/* An update: ext-key ack, 2x1 raw, copy it down, LED state. */
	s.len = 0;
	put8(&s, 0);
	put8(&s, 0);
	put16(&s, 4);
	rect(&s, 0, 0, 0, 0, -258);
	rect(&s, 1, 1, 2, 1, 0);
	put32(&s, 0x11223300);	/* little-endian 0x00332211 */
	put32(&s, 0x44556600);
	rect(&s, 5, 5, 2, 1, 1);
	put16(&s, 1);
	put16(&s, 1);
	rect(&s, 0, 0, 0, 0, -261);
	put8(&s, 4);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	rfb->ndamage = 0;
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rfb->updated == 1);
	CHECK(rfb->extkey == 1);
	CHECK(rfb->ledstate == 1 && rfb->leds == 4);
	CHECK(rfb->fb[1 * rfb->stride + 1] == 0x00332211);
	CHECK(rfb->fb[1 * rfb->stride + 2] == 0x00665544);
	CHECK(rfb->fb[5 * rfb->stride + 5] == 0x00332211);
	CHECK(rfb->fb[5 * rfb->stride + 6] == 0x00665544);
	CHECK(rfb->ndamage == 2);
	CHECK(rfb->damage[1].x == 5 && rfb->damage[1].w == 2);

	/*
	 * Frames flow: the request after an update carries the refresh
	 * nudge (rdp-rfb-nudge.c), once, in the same write: QEMU's
	 * extended key event releasing key 0, keysym 0.
	 */
	CHECK(rdp_rfb_request(rfb, 1) == 0);
	CHECK(read(sv[1], got, sizeof got) == 10 + RDP_RFB_NUDGE_LEN);
	CHECK(got[0] == 3 && got[1] == 1);
	CHECK(got[10] == 255 && got[11] == 0 && got[12] == 0 && got[13] == 0);
	for (n = 14; n < 10 + RDP_RFB_NUDGE_LEN; n++)
		CHECK(got[n] == 0);
	CHECK(rfb->nudges == 1);
	CHECK(rdp_rfb_request(rfb, 1) == 0);	/* no update since: alone */
	CHECK(read(sv[1], got, sizeof got) == 10);
	CHECK(rfb->nudges == 1);
	/* Never to a server that did not acknowledge QEMU's keys. */
	rfb->extkey = 0;
	CHECK(rdp_rfb_nudge(rfb, 1, got) == 0);
	rfb->extkey = 1;
	CHECK(rdp_rfb_nudge(rfb, 0, got) == 0);
	CHECK(rdp_rfb_nudge(rfb, 1, got) == RDP_RFB_NUDGE_LEN);

	/* The guest changes resolution. */
	s.len = 0;
	put8(&s, 0);
	put8(&s, 0);
	put16(&s, 1);
	rect(&s, 0, 0, 32, 24, -223);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rfb->resized == 1 && rfb->width == 32 && rfb->height == 24);
	CHECK(rfb->ndamage == 1 && rfb->damage[0].w == 32);

	/* ExtendedDesktopSize: QEMU's first says the size and screen id. */
	CHECK(rfb->extdesk == 0);
	CHECK(rdp_rfb_set_size(rfb, 40, 30) == -1);	/* not before */
	s.len = 0;
	extdesk(&s, 0, 0, 32, 24, 7);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	rfb->resized = 0;
	rfb->ndamage = 0;
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rfb->extdesk == 1 && rfb->screen_id == 7);
	/* The same size again keeps the picture: no resize, no damage. */
	CHECK(rfb->resized == 0 && rfb->ndamage == 0);
	CHECK(rfb->width == 32 && rfb->height == 24);

	/* Our SetDesktopSize, and QEMU's answers: forwarded, refused. */
	CHECK(rdp_rfb_set_size(rfb, 40, 30) == 0);
	CHECK(read(sv[1], got, 24) == 24);
	CHECK(got[0] == 251 && got[2] == 0 && got[3] == 40 && got[5] == 30);
	CHECK(got[6] == 1 && got[11] == 7 && got[17] == 40 && got[19] == 30);
	CHECK(rdp_rfb_set_size(rfb, RDP_FB_MAX + 1, 30) == -1);
	s.len = 0;
	extdesk(&s, 1, 4, 32, 24, -1);	/* this client, forwarded */
	extdesk(&s, 1, 3, 32, 24, -1);	/* this client, invalid layout */
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rfb->size_answers == 2 && rfb->size_status == 3);
	CHECK(RDP_RFB_SIZE_REFUSED(rfb->size_status));
	CHECK(!RDP_RFB_SIZE_REFUSED(4) && !RDP_RFB_SIZE_REFUSED(0));
	CHECK(rfb->resized == 0 && rfb->width == 32);
	/* The guest took a size (a server-side change), then 32x24 again. */
	s.len = 0;
	extdesk(&s, 0, 0, 40, 30, 7);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rfb->resized == 1 && rfb->width == 40 && rfb->height == 30);
	s.len = 0;
	extdesk(&s, 0, 0, 32, 24, 7);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rfb->width == 32 && rfb->height == 24);

	/* A rectangle outside the framebuffer is an error, not a crash. */
	s.len = 0;
	put8(&s, 0);
	put8(&s, 0);
	put16(&s, 1);
	rect(&s, 30, 0, 8, 1, 0);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	CHECK(rdp_rfb_process(rfb, &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "outside") != NULL);
	free(cause);
	cause = NULL;

	/* Keys as QEMU extended key events; the pointer clamped. */
	CHECK(rdp_rfb_key(rfb, 1, 0, 0x9c) == 0);
	CHECK(read(sv[1], got, 12) == 12);
	CHECK(got[0] == 255 && got[1] == 0 && got[3] == 1 && got[11] == 0x9c &&
	    got[10] == 0);
	CHECK(rdp_rfb_pointer(rfb, 5, 100, -3) == 0);
	CHECK(read(sv[1], got, 6) == 6);
	CHECK(got[0] == 5 && got[1] == 5 && got[3] == 31 && got[5] == 0);
	rfb->extkey = 0;
	CHECK(rdp_rfb_key(rfb, 0, 'a', 0x1e) == 0);
	CHECK(read(sv[1], got, 8) == 8);
	CHECK(got[0] == 4 && got[1] == 0 && got[7] == 'a');
	rdp_rfb_free(rfb);
	close(sv[1]);

	/* A server that refuses us says why. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	s.len = 0;
	put(&s, "RFB 003.008\n", 12);
	put8(&s, 0);
	put32(&s, 9);
	put(&s, "too many!", 9);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	rfb = rdp_rfb_create(sv[0]);
	CHECK(rdp_rfb_handshake(rfb, 2, &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "too many!") != NULL);
	free(cause);
	cause = NULL;
	rdp_rfb_free(rfb);
	close(sv[1]);

	/* QEMU going away mid-handshake is an error with a reason. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[1], "RFB 003.008\n", 12) == 12);
	close(sv[1]);
	rfb = rdp_rfb_create(sv[0]);
	CHECK(rdp_rfb_handshake(rfb, 2, &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "VNC connection") != NULL);
	free(cause);
	rdp_rfb_free(rfb);
}

/* A ServerInit of w x h named name, after a None security handshake. */
static void
server_init(struct script *s, int w, int h, const char *name)
{
	s->len = 0;
	put(s, "RFB 003.008\n", 12);
	put8(s, 1);
	put8(s, 1);		/* None */
	put32(s, 0);
	put16(s, w);
	put16(s, h);
	put(s, "0123456789abcdef", 16);
	put32(s, strlen(name));
	put(s, name, strlen(name));
}

/*
 * The desktop moved (rdp-follow.c): a fresh stream under the same
 * framebuffer. Half a message of the old stream and its negotiated
 * pseudo-encodings go; a ServerInit of the same size keeps the picture
 * (no resize for the client), another size is a resize.
 */
static void
test_rfb_reattach(void)
{
	struct script	 s = { .len = 0 };
	struct rdp_rfb	*rfb;
	unsigned char	 got[256];
	char		*cause = NULL;
	int		 sv[2], sv2[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	server_init(&s, 16, 8, "src");
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	rfb = rdp_rfb_create(sv[0]);
	CHECK(rdp_rfb_handshake(rfb, 2, &cause) == 0);
	CHECK(read(sv[1], got, sizeof got) > 0);
	rfb->fb[3] = 0x00abcdef;
	rfb->resized = 0;
	rfb->extkey = rfb->ledstate = 1;
	/* The old QEMU goes mid-update: 2 bytes of a 4-byte header. */
	CHECK(write(sv[1], "\0\0", 2) == 2);
	close(sv[1]);
	CHECK(rdp_rfb_process(rfb, &cause) == -1);
	free(cause);
	cause = NULL;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) == 0);
	server_init(&s, 16, 8, "dst");
	CHECK(write(sv2[1], s.buf, s.len) == (ssize_t)s.len);
	rdp_rfb_reattach(rfb, sv2[0]);
	CHECK(rfb->fd == sv2[0]);
	CHECK(rfb->extkey == 0 && rfb->ledstate == 0);
	CHECK(rdp_rfb_handshake(rfb, 2, &cause) == 0);
	CHECK_STR(rfb->name, "dst");
	CHECK(rfb->resized == 0);		/* same size: the picture stays */
	CHECK(rfb->fb[3] == 0x00abcdef);
	/* The new QEMU is asked for a full update. */
	CHECK(read(sv2[1], got, sizeof got) == 12 + 1 + 1 + 20 + 32 + 10);
	close(sv2[1]);

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) == 0);
	server_init(&s, 32, 16, "big");
	CHECK(write(sv2[1], s.buf, s.len) == (ssize_t)s.len);
	rdp_rfb_reattach(rfb, sv2[0]);
	CHECK(rdp_rfb_handshake(rfb, 2, &cause) == 0);
	CHECK(rfb->resized == 1 && rfb->width == 32 && rfb->height == 16);
	rdp_rfb_free(rfb);
	close(sv2[1]);
}

/*
 * The reader thread (rdp-rfb-pump.c): an update written in pieces is in
 * hand whole while nobody parses, and the reader asks for the next; only bytes in hand make the
 * stream ready; the reader follows a reattach; EOF is the usual cause.
 */
static void
test_rfb_pump(void)
{
	static struct script	 s;
	struct rdp_rfb		*rfb;
	unsigned char		 got[256];
	char			*cause = NULL;
	int			 sv[2], sv2[2], i, w = 40, h = 40;
	size_t			 off;
	ssize_t			 n;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	server_init(&s, w, h, "pump");
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	rfb = rdp_rfb_create(sv[0]);
	CHECK(rdp_rfb_pump(rfb, &cause) == 0);
	CHECK(rdp_rfb_pollfd(rfb) != rfb->fd);
	CHECK(rdp_rfb_handshake(rfb, 2, &cause) == 0);
	CHECK(read(sv[1], got, sizeof got) > 0);
	CHECK(rdp_rfb_ready(rfb, 1) == 0);	/* nothing in hand */

	/* 6400 bytes of pixels, written in pieces while nobody parses. */
	s.len = 0;
	put8(&s, 0);
	put8(&s, 0);
	put16(&s, 1);
	rect(&s, 0, 0, w, h, 0);
	for (i = 0; i < w * h; i++) {		/* little-endian i */
		put8(&s, i & 0xff);
		put8(&s, i >> 8);
		put16(&s, 0);
	}
	CHECK(rdp_rfb_msglen(s.buf, s.len) == s.len);
	CHECK(rdp_rfb_msglen(s.buf, s.len - 1) == 0);
	CHECK(rdp_rfb_msglen(s.buf, 3) == 0);
	/* All but the last byte: in hand, and not ready (not whole). */
	for (off = 0; off < s.len - 1; off += n)
		CHECK((n = write(sv[1], s.buf + off, s.len - 1 - off > 1000 ?
		    1000 : s.len - 1 - off)) > 0);
	usleep(50000);
	CHECK(rdp_rfb_ready(rfb, 1) == 0);
	CHECK(write(sv[1], s.buf + s.len - 1, 1) == 1);
	for (i = 0; i < 200 && !rdp_rfb_ready(rfb, 1); i++)
		usleep(10000);
	CHECK(rdp_rfb_ready(rfb, 1) == 1);
	rfb->ndamage = 0;
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rfb->updated == 1 && rfb->ndamage == 1);
	CHECK(rfb->fb[0] == 0 && rfb->fb[1] == 1);
	CHECK(rfb->fb[(size_t)(h - 1) * rfb->stride + w - 1] ==
	    (uint32_t)(w * h - 1));
	CHECK(rdp_rfb_ready(rfb, 1) == 0);
	/* The reader asked QEMU for the next update as this one came. */
	CHECK(read(sv[1], got, sizeof got) == 10);
	CHECK(got[0] == 3 && got[1] == 1 && got[6] == 0 && got[7] == w);

	/*
	 * Once QEMU acknowledged its extended keys, the reader's request
	 * carries the refresh nudge; the session's own request then goes
	 * alone (the reader nudged for that update).
	 */
	rfb->extkey = 1;
	s.len = 0;
	put8(&s, 0);
	put8(&s, 0);
	put16(&s, 1);
	rect(&s, 0, 0, 1, 1, 0);
	put32(&s, 7);
	CHECK(write(sv[1], s.buf, s.len) == (ssize_t)s.len);
	CHECK(read(sv[1], got, sizeof got) == 10 + RDP_RFB_NUDGE_LEN);
	CHECK(got[0] == 3 && got[10] == 255 && got[11] == 0);
	for (i = 0; i < 200 && !rdp_rfb_ready(rfb, 1); i++)
		usleep(10000);
	CHECK(rdp_rfb_process(rfb, &cause) == 0);
	CHECK(rfb->nudges == 1);
	CHECK(rdp_rfb_request(rfb, 1) == 0);
	CHECK(read(sv[1], got, sizeof got) == 10);
	CHECK(rfb->nudges == 1);

	/* The stream goes (-1: looking for the desktop), then a new one:
	 * a reader reads it. */
	rdp_rfb_reattach(rfb, -1);
	CHECK(rfb->pump == NULL);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) == 0);
	server_init(&s, w, h, "next");
	CHECK(write(sv2[1], s.buf, s.len) == (ssize_t)s.len);
	rdp_rfb_reattach(rfb, sv2[0]);
	CHECK(rfb->pump != NULL);
	CHECK(rdp_rfb_handshake(rfb, 2, &cause) == 0);
	CHECK_STR(rfb->name, "next");
	close(sv[1]);

	/* QEMU goes: ready, and the cause says so. */
	CHECK(read(sv2[1], got, sizeof got) > 0);
	close(sv2[1]);
	for (i = 0; i < 200 && !rdp_rfb_ready(rfb, 1); i++)
		usleep(10000);
	CHECK(rdp_rfb_process(rfb, &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "closed") != NULL);
	free(cause);
	rdp_rfb_free(rfb);
}

/* Whole server messages from their first bytes (rdp_rfb_msglen). */
static void
test_rfb_msglen(void)
{
	static const unsigned char bell[] = { 2 };
	static const unsigned char cut[] = { 3, 0, 0, 0, 0, 0, 0, 2, 'h', 'i' };
	static const unsigned char ext[] = { 3, 0, 0, 0, 0xff, 0xff, 0xff,
	    0xfe, 0, 0 };
	static const unsigned char audio[] = { 255, 1, 0, 2, 0, 0, 0, 3, 1, 2,
	    3 };
	static const unsigned char start[] = { 255, 1, 0, 1 };
	static const unsigned char map[] = { 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0,
	    0 };
	static struct script	 s;

	CHECK(rdp_rfb_msglen(bell, 0) == 0);
	CHECK(rdp_rfb_msglen(bell, 1) == 1);
	CHECK(rdp_rfb_msglen(cut, sizeof cut) == sizeof cut);
	CHECK(rdp_rfb_msglen(cut, sizeof cut - 1) == 0);
	CHECK(rdp_rfb_msglen(ext, sizeof ext) == sizeof ext);
	CHECK(rdp_rfb_msglen(audio, sizeof audio) == sizeof audio);
	CHECK(rdp_rfb_msglen(audio, 7) == 0);
	CHECK(rdp_rfb_msglen(start, 4) == 4);
	CHECK(rdp_rfb_msglen(map, sizeof map) == sizeof map);
	CHECK(rdp_rfb_msglen(map, sizeof map - 1) == 0);

	/* An update: copyrect, LED state, two screens, then LastRect. */
	s.len = 0;
	put8(&s, 0);
	put8(&s, 0);
	put16(&s, 5);
	rect(&s, 0, 0, 4, 4, 1);
	put32(&s, 0);
	rect(&s, 0, 0, 0, 0, -261);
	put8(&s, 2);
	rect(&s, 0, 0, 8, 8, -308);
	put32(&s, 2u << 24);
	put(&s, "0123456789abcdef0123456789abcdef", 32);
	rect(&s, 0, 0, 0, 0, -224);
	CHECK(rdp_rfb_msglen(s.buf, s.len) == s.len);
	CHECK(rdp_rfb_msglen(s.buf, s.len - 1) == 0);
	CHECK(rdp_rfb_msglen(s.buf, s.len - 13) == 0);
	put8(&s, 9);	/* the next message's first byte changes nothing */
	CHECK(rdp_rfb_msglen(s.buf, s.len) == s.len - 1);
}

/* Clipboard conversions and the extended clipboard (rdp-clip.c). */
/* The Display Control layout -> size, and the debouncing of bursts. */
static void
test_disp(void)
{
	DISPLAY_CONTROL_MONITOR_LAYOUT	 m[2];
	struct rdp_disp_debounce	 d;
	int				 w = 0, h = 0;

	memset(m, 0, sizeof m);
	CHECK(rdp_disp_layout_size(m, 0, &w, &h) == -1);
	CHECK(rdp_disp_layout_size(NULL, 1, &w, &h) == -1);
	m[0].Width = 1001;
	m[0].Height = 700;
	CHECK(rdp_disp_layout_size(m, 1, &w, &h) == 0);
	CHECK(w == 1000 && h == 700);		/* width even */
	m[1].Flags = DISPLAY_CONTROL_MONITOR_PRIMARY;
	m[1].Width = 640;
	m[1].Height = 480;
	CHECK(rdp_disp_layout_size(m, 2, &w, &h) == 0);
	CHECK(w == 640 && h == 480);		/* the primary one */
	m[0].Width = 100000;
	m[0].Height = 3;
	CHECK(rdp_disp_layout_size(m, 1, &w, &h) == 0);
	CHECK(w == RDP_FB_MAX && h == RDP_DISP_MIN);	/* capped */

	memset(&d, 0, sizeof d);
	CHECK(rdp_disp_debounce_timeout(&d, 0) == -1);
	CHECK(rdp_disp_debounce_due(&d, 1000, 800, 600, &w, &h) == 0);
	/* A drag: a layout every 200 ms; nothing until quiet or 1 s. */
	rdp_disp_debounce_offer(&d, 900, 700, 1000);
	CHECK(rdp_disp_debounce_timeout(&d, 1000) == RDP_DISP_QUIET_MS);
	CHECK(rdp_disp_debounce_due(&d, 1100, 800, 600, &w, &h) == 0);
	rdp_disp_debounce_offer(&d, 950, 700, 1200);
	rdp_disp_debounce_offer(&d, 1000, 700, 1400);
	CHECK(rdp_disp_debounce_due(&d, 1600, 800, 600, &w, &h) == 0);
	rdp_disp_debounce_offer(&d, 1010, 700, 1600);
	CHECK(rdp_disp_debounce_timeout(&d, 1600) == RDP_DISP_QUIET_MS);
	rdp_disp_debounce_offer(&d, 1024, 700, 1800);
	CHECK(rdp_disp_debounce_timeout(&d, 1800) == RDP_DISP_MAX_MS - 800);
	CHECK(rdp_disp_debounce_due(&d, 1999, 800, 600, &w, &h) == 0);
	CHECK(rdp_disp_debounce_due(&d, 2000, 800, 600, &w, &h) == 1);
	CHECK(w == 1024 && h == 700);		/* the newest, after 1 s */
	CHECK(rdp_disp_debounce_due(&d, 2500, 800, 600, &w, &h) == 0);
	/* The same size again, or the current one: not asked. */
	rdp_disp_debounce_offer(&d, 1024, 700, 3000);
	CHECK(rdp_disp_debounce_due(&d, 3300, 800, 600, &w, &h) == 0);
	rdp_disp_debounce_offer(&d, 800, 600, 4000);
	CHECK(rdp_disp_debounce_due(&d, 4300, 800, 600, &w, &h) == 0);
	CHECK(rdp_disp_debounce_timeout(&d, 4300) == -1);
	/* One layout alone goes after the quiet time. */
	rdp_disp_debounce_offer(&d, 640, 480, 5000);
	CHECK(rdp_disp_debounce_due(&d, 5299, 800, 600, &w, &h) == 0);
	CHECK(rdp_disp_debounce_due(&d, 5300, 800, 600, &w, &h) == 1);
	CHECK(w == 640 && h == 480);
}

static void
test_clip(void)
{
	/* "a€\r\nb😀" as RDP sends it, then a NUL and junk after it. */
	static const unsigned char u16[] = { 'a', 0, 0xac, 0x20, '\r', 0,
	    '\n', 0, 'b', 0, 0x3d, 0xd8, 0x00, 0xde, 0, 0, 'x', 0 };
	const char	*want = "a\xe2\x82\xac\nb\xf0\x9f\x98\x80";
	unsigned char	*w, *msg, bad[] = { 0x00, 0xd8, 'z', 0 };
	char		*u8, *text, *cause = NULL;
	size_t		 n, wn, tlen;
	uint32_t	 flags;

	u8 = rdp_clip_utf16_to_utf8(u16, sizeof u16, &n);
	CHECK(u8 != NULL && n == strlen(want) && strcmp(u8, want) == 0);
	/* Back: LF becomes CRLF again, NUL-terminated. */
	w = rdp_clip_utf8_to_utf16(u8, n, &wn);
	CHECK(wn == 16 && memcmp(w, u16, 16) == 0);
	free(w);
	free(u8);
	/* A lone high surrogate is U+FFFD, not a crash or a drop. */
	u8 = rdp_clip_utf16_to_utf8(bad, sizeof bad, &n);
	CHECK(u8 != NULL && strcmp(u8, "\xef\xbf\xbdz") == 0);
	free(u8);
	/* Latin-1 both ways; what Latin-1 lacks becomes '?'. */
	u8 = rdp_clip_latin1_to_utf8((const unsigned char *)"caf\xe9", 4, &n);
	CHECK(strcmp(u8, "caf\xc3\xa9") == 0 && n == 5);
	free(u8);
	u8 = rdp_clip_utf8_to_latin1("\xc3\xa9\xe2\x82\xac", 5, &n);
	CHECK(n == 2 && strcmp(u8, "\xe9?") == 0);
	free(u8);

	/* PROVIDE round trip: ClientCutText, negative length, flags. */
	msg = rdp_clip_ext_build(RDP_CLIP_EXT_PROVIDE | RDP_CLIP_EXT_TEXT,
	    want, strlen(want), &n);
	CHECK(msg[0] == 6 && n > 12);
	CHECK((int32_t)((uint32_t)msg[4] << 24 | msg[5] << 16 | msg[6] << 8 |
	    msg[7]) == -(int32_t)(n - 8));
	CHECK(rdp_clip_ext_parse(msg + 8, n - 8, &flags, &text, &tlen,
	    &cause) == 0);
	CHECK(flags == (RDP_CLIP_EXT_PROVIDE | RDP_CLIP_EXT_TEXT));
	CHECK(text != NULL && tlen == strlen(want) && strcmp(text, want) == 0);
	free(text);
	free(msg);
	/* Caps name PROVIDE too but carry no data; garbage zlib fails. */
	msg = rdp_clip_ext_build(RDP_CLIP_EXT_CAPS | RDP_CLIP_EXT_PROVIDE |
	    RDP_CLIP_EXT_TEXT, NULL, 0, &n);
	CHECK(n == 16);
	CHECK(rdp_clip_ext_parse(msg + 8, n - 8, &flags, &text, &tlen,
	    &cause) == 0 && text == NULL);
	msg[8] = 0x10;	/* PROVIDE without CAPS: the limit is not zlib */
	CHECK(rdp_clip_ext_parse(msg + 8, n - 8, &flags, &text, &tlen,
	    &cause) == -1 && cause != NULL);
	free(cause);
	free(msg);
}

int
main(void)
{
	test_clip();
	test_file();
	test_login();
	test_input();
	test_rfb();
	test_rfb_reattach();
	test_rfb_pump();
	test_rfb_msglen();
	test_disp();
	return (check_exit());
}
