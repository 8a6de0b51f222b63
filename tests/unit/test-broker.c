/*
 * Unit tests of the broker's pure pieces: proxy tickets (made, checked,
 * forged, expired, moved to another port or VM), the .vv file, the
 * small HTTP parsers, the login throttle, the connection limits,
 * WebSocket framing and one-time console tickets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "broker.h"

static const unsigned char key[32] = "0123456789abcdef0123456789abcde";
static const unsigned char key2[32] = "another key, another broker....";

/*
 * ticket_verify refuses ticket for port at now with key k, with a cause
 * that contains want (when not NULL).
 */
static void
ticket_refused(const unsigned char *k, const char *ticket, int port,
    time_t now, const char *want)
{
	char	vm[64], *cause = NULL;

	CHECK(ticket_verify(k, 32, ticket, port, now, vm, sizeof vm,
	    &cause) == -1);
	CHECK(cause != NULL);
	if (want != NULL)
		CHECK(cause != NULL && strstr(cause, want) != NULL);
	free(cause);
}

static void
test_ticket(void)
{
	char	 t[TICKET_MAX], t2[TICKET_MAX], vm[64], *cause = NULL;
	time_t	 now = 1700000000;

	CHECK(ticket_make(key, sizeof key, "desk-1", 5901, now + 60, t,
	    sizeof t) == 0);
	CHECK(strncmp(t, "qdesk-desk-1-1700000060-", 24) == 0);
	CHECK(strlen(t) == 24 + 64);

	/* Good within its time and the skew after it. */
	CHECK(ticket_verify(key, sizeof key, t, 5901, now, vm, sizeof vm,
	    &cause) == 0);
	CHECK_STR(vm, "desk-1");
	CHECK(ticket_verify(key, sizeof key, t, 5901, now + 60 + TICKET_SKEW,
	    vm, sizeof vm, &cause) == 0);

	/* Expired. */
	ticket_refused(key, t, 5901, now + 61 + TICKET_SKEW, "expired");

	/* Another port: the signature no longer matches. */
	ticket_refused(key, t, 5902, now, NULL);

	/* Another broker's key. */
	ticket_refused(key2, t, 5901, now, NULL);

	/* Another VM's name with this VM's signature. */
	strlcpy(t2, t, sizeof t2);
	memcpy(t2 + strlen("qdesk-desk-"), "2", 1);
	ticket_refused(key, t2, 5901, now, NULL);

	/* A later expiry with the old signature. */
	strlcpy(t2, t, sizeof t2);
	memcpy(t2 + strlen("qdesk-desk-1-"), "2", 1);
	ticket_refused(key, t2, 5901, now, NULL);

	/* A flipped MAC digit, upper case is the same MAC. */
	strlcpy(t2, t, sizeof t2);
	t2[strlen(t2) - 1] = t2[strlen(t2) - 1] == '0' ? '1' : '0';
	ticket_refused(key, t2, 5901, now, NULL);

	/* Malformed ones. */
	{
		const char *bad[] = { "", "qdesk-", "qdesk--1-00",
		    "127.0.0.1", "qdesk-desk-1-abc-00", "qdesk-Desk-1-5-00",
		    "pvespiceproxy:x:y", "qdesk-desk-1--5-00", NULL };
		int i;

		for (i = 0; bad[i] != NULL; i++)
			ticket_refused(key, bad[i], 5901, now, NULL);
	}

	/* Bad names are not signed at all; a tiny buffer is refused. */
	CHECK(ticket_make(key, sizeof key, "Bad Name", 5901, now, t,
	    sizeof t) == -1);
	CHECK(ticket_make(key, sizeof key, "d", 5901, now, t, 10) == -1);
}

static void
test_vv(void)
{
	struct vv	 vv;
	char		*text, *cause = NULL;

	memset(&vv, 0, sizeof vv);
	vv.host = "qdesk-d1-1-ab";
	vv.port = 5901;
	vv.password = "pw";
	vv.title = "d1 (qdesk)";
	vv.proxy = "http://broker:3128";

	text = vv_build(&vv, &cause);
	CHECK(text != NULL);
	CHECK(strncmp(text, "[virt-viewer]\ntype=spice\n", 25) == 0);
	CHECK(strstr(text, "\nhost=qdesk-d1-1-ab\n") != NULL);
	CHECK(strstr(text, "\nport=5901\n") != NULL);
	CHECK(strstr(text, "\npassword=pw\n") != NULL);
	CHECK(strstr(text, "\ntitle=d1 (qdesk)\n") != NULL);
	CHECK(strstr(text, "\ndelete-this-file=1\n") != NULL);
	CHECK(strstr(text, "\nsecure-attention=ctrl+alt+end\n") != NULL);
	CHECK(strstr(text, "\ntoggle-fullscreen=shift+f11\n") != NULL);
	CHECK(strstr(text, "\nrelease-cursor=shift+f12\n") != NULL);
	CHECK(strstr(text, "\nproxy=http://broker:3128\n") != NULL);
	free(text);

	vv.proxy = NULL;
	text = vv_build(&vv, &cause);
	CHECK(text != NULL && strstr(text, "proxy=") == NULL);
	free(text);

	/* A newline would let a field add keys of its own. */
	vv.title = "d1\nhost=evil";
	CHECK(vv_build(&vv, &cause) == NULL && cause != NULL);
	free(cause);
	cause = NULL;
	vv.title = "d1";
	vv.port = 0;
	CHECK(vv_build(&vv, &cause) == NULL);
	free(cause);
	cause = NULL;

	/* TLS: tls-port, the certificate on one line, its subject. */
	vv.port = 5901;
	vv.tls = 1;
	CHECK(vv_build(&vv, &cause) == NULL && cause != NULL);
	free(cause);
	cause = NULL;
	vv.ca = "-----BEGIN CERTIFICATE-----\r\nMIIB\n-----END CERTIFICATE-----\n";
	vv.host_subject = "CN=qdesk-spice-h";
	text = vv_build(&vv, &cause);
	CHECK(text != NULL);
	CHECK(strstr(text, "\ntls-port=5901\n") != NULL);
	CHECK(strstr(text, "\nport=") == NULL);
	CHECK(strstr(text, "\nca=-----BEGIN CERTIFICATE-----\\nMIIB\\n"
	    "-----END CERTIFICATE-----\\n\n") != NULL);
	CHECK(strstr(text, "\nhost-subject=CN=qdesk-spice-h\n") != NULL);
	CHECK(strstr(text, "\nsecure-channels=all\n") != NULL);
	free(text);
	vv.host_subject = "CN=x\nhost=evil";
	CHECK(vv_build(&vv, &cause) == NULL);
	free(cause);
}

static void
test_httputil(void)
{
	char	out[80], host[80], arg[16];
	int	port;

	CHECK(httputil_cookie("a=1; qdesk_session=abc; b=2", "qdesk_session",
	    out, sizeof out) == 0);
	CHECK_STR(out, "abc");
	CHECK(httputil_cookie("qdesk_session=xyz", "qdesk_session", out,
	    sizeof out) == 0);
	CHECK_STR(out, "xyz");
	CHECK(httputil_cookie("xqdesk_session=1; qdesk_sessionx=2",
	    "qdesk_session", out, sizeof out) == -1);
	CHECK(httputil_cookie("", "qdesk_session", out, sizeof out) == -1);
	CHECK(httputil_cookie("qdesk_session=0123456789", "qdesk_session",
	    out, 5) == -1);

	CHECK(httputil_hostname("broker.example:8443", out, sizeof out) == 0);
	CHECK_STR(out, "broker.example");
	CHECK(httputil_hostname("10.0.0.1", out, sizeof out) == 0);
	CHECK_STR(out, "10.0.0.1");
	CHECK(httputil_hostname("[::1]:8443", out, sizeof out) == 0);
	CHECK_STR(out, "[::1]");
	CHECK(httputil_hostname("evil\r\nx", out, sizeof out) == -1);
	CHECK(httputil_hostname("a/b", out, sizeof out) == -1);
	CHECK(httputil_hostname("host:80x", out, sizeof out) == -1);
	CHECK(httputil_hostname("", out, sizeof out) == -1);
	CHECK(httputil_hostname(":8443", out, sizeof out) == -1);

	CHECK(httputil_target("qdesk-d1-5-ab:5901", host, sizeof host,
	    &port) == 0);
	CHECK_STR(host, "qdesk-d1-5-ab");
	CHECK(port == 5901);
	CHECK(httputil_target("host:0", host, sizeof host, &port) == -1);
	CHECK(httputil_target("host:65536", host, sizeof host, &port) == -1);
	CHECK(httputil_target("host", host, sizeof host, &port) == -1);
	CHECK(httputil_target(":5901", host, sizeof host, &port) == -1);
	CHECK(httputil_target("a b:5901", host, sizeof host, &port) == -1);
	CHECK(httputil_target("host:59x1", host, sizeof host, &port) == -1);

	CHECK(httputil_match("/api/desktops/*/start", "/api/desktops/d1/start",
	    arg, sizeof arg) == 1);
	CHECK_STR(arg, "d1");
	CHECK(httputil_match("/api/desktops/*/start", "/api/desktops//start",
	    arg, sizeof arg) == 0);
	CHECK(httputil_match("/api/desktops/*/start",
	    "/api/desktops/d1/start/x", arg, sizeof arg) == 0);
	CHECK(httputil_match("/api/desktops/*/console.vv",
	    "/api/desktops/d1/console", arg, sizeof arg) == 0);
	CHECK(httputil_match("/*", "/app.js", arg, sizeof arg) == 1);
	CHECK(httputil_match("/*", "/a/b", arg, sizeof arg) == 0);
	CHECK(httputil_match("/api/desktops/*/start",
	    "/api/desktops/a-very-long-name-here/start", arg, sizeof arg) == 0);
	CHECK(httputil_match("/", "/", arg, sizeof arg) == 1);
}

static void
test_throttle(void)
{
	struct throttle	*t = throttle_create(3, 10, 2);
	int		 i;

	/* Three failures at once, then a wait of about one refill. */
	CHECK(throttle_check(t, "10.0.0.1", 100) == 0);
	for (i = 0; i < 3; i++)
		throttle_fail(t, "10.0.0.1", 100);
	CHECK(throttle_check(t, "10.0.0.1", 100) == 11);
	CHECK(throttle_check(t, "10.0.0.2", 100) == 0);
	CHECK(throttle_check(t, "10.0.0.1", 105) == 6);
	CHECK(throttle_check(t, "10.0.0.1", 110) == 0);
	throttle_fail(t, "10.0.0.1", 110);
	CHECK(throttle_check(t, "10.0.0.1", 110) > 0);
	/* Tokens cap at the burst after a long quiet. */
	CHECK(throttle_check(t, "10.0.0.1", 10000) == 0);
	for (i = 0; i < 3; i++)
		throttle_fail(t, "10.0.0.1", 10000);
	CHECK(throttle_check(t, "10.0.0.1", 10000) > 0);
	/* Past the table's size the least recent address is forgotten. */
	throttle_fail(t, "10.0.0.2", 10000);
	throttle_fail(t, "10.0.0.3", 10000);
	CHECK(throttle_check(t, "10.0.0.1", 10000) == 0);
	throttle_free(t);
	throttle_free(NULL);

	/* Attempts charged as they arrive; a success gives its token back. */
	t = throttle_create(3, 10, 8);
	for (i = 0; i < 3; i++) {
		CHECK(throttle_check(t, "10.0.0.9", 100) == 0);
		throttle_fail(t, "10.0.0.9", 100);
	}
	CHECK(throttle_check(t, "10.0.0.9", 100) > 0);
	throttle_refund(t, "10.0.0.9", 100);
	CHECK(throttle_check(t, "10.0.0.9", 100) == 0);
	/* Never above the burst, and nothing for an unknown address. */
	for (i = 0; i < 10; i++)
		throttle_refund(t, "10.0.0.9", 100);
	for (i = 0; i < 3; i++)
		throttle_fail(t, "10.0.0.9", 100);
	CHECK(throttle_check(t, "10.0.0.9", 100) > 0);
	throttle_refund(t, "10.0.0.10", 100);
	CHECK(throttle_check(t, "10.0.0.10", 100) == 0);
	throttle_free(t);
}

static void
test_connlimit(void)
{
	struct connlimit	*cl = connlimit_create(5, 3);
	char			*cause = NULL;
	int			 i;

	/* Three from one address, the fourth refused, others still in. */
	for (i = 0; i < 3; i++)
		CHECK(connlimit_add(cl, "10.0.0.1", &cause) == 0);
	CHECK(connlimit_add(cl, "10.0.0.1", &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "from this address") != NULL);
	free(cause);
	cause = NULL;
	CHECK(connlimit_add(cl, "10.0.0.2", &cause) == 0);
	CHECK(connlimit_add(cl, "10.0.0.3", &cause) == 0);
	/* Five in all: nobody else, whoever it is. */
	CHECK(connlimit_add(cl, "10.0.0.4", &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "5 connections") != NULL);
	free(cause);
	cause = NULL;
	CHECK(connlimit_count(cl, NULL) == 5);
	CHECK(connlimit_count(cl, "10.0.0.1") == 3);
	/* One ends: its address may open one again. */
	connlimit_del(cl, "10.0.0.1");
	CHECK(connlimit_count(cl, "10.0.0.1") == 2);
	CHECK(connlimit_add(cl, "10.0.0.1", &cause) == 0);
	/* Unknown addresses are ignored; emptied ones are forgotten. */
	connlimit_del(cl, "10.9.9.9");
	CHECK(connlimit_count(cl, NULL) == 5);
	connlimit_del(cl, "10.0.0.2");
	CHECK(connlimit_count(cl, "10.0.0.2") == 0);
	CHECK(connlimit_count(cl, NULL) == 4);
	connlimit_free(cl);
	connlimit_free(NULL);
}


/* A masked client frame of op and payload, as a browser sends it. */
static size_t
frame(unsigned char *out, int fin, int op, const char *payload, size_t len)
{
	static const unsigned char mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	size_t	h, i;

	h = ws_header(out, op, len);
	if (!fin)
		out[0] &= 0x7f;
	out[1] |= 0x80;
	memcpy(out + h, mask, 4);
	h += 4;
	for (i = 0; i < len; i++)
		out[h + i] = payload[i] ^ mask[i & 3];
	return (h + len);
}

static void
test_ws(void)
{
	struct ws_parser	 p = { .max_payload = 70000 };
	struct ws_frame		 f;
	unsigned char		 b[80000], *big;
	char			 acc[WS_ACCEPT_LEN + 1];
	size_t			 n, i;

	/* RFC 6455 1.3's example key. */
	CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", acc, sizeof acc) == 0);
	CHECK(strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
	CHECK(ws_accept_key("short", acc, sizeof acc) == -1);
	CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ!=", acc, sizeof acc) == -1);
	CHECK(ws_accept_key(NULL, acc, sizeof acc) == -1);
	CHECK(ws_header_has("keep-alive, Upgrade", "upgrade"));
	CHECK(!ws_header_has("keep-alive, Upgraded", "upgrade"));
	CHECK(!ws_header_has(NULL, "upgrade"));

	/* A binary frame, whole, then short of a byte. */
	n = frame(b, 1, WS_OP_BINARY, "RFB", 3);
	CHECK(ws_parse(&p, b, n, 1, &f) == 1);
	CHECK(f.opcode == WS_OP_BINARY && f.payload_len == 3 &&
	    f.header_len == 6);
	ws_unmask(b + f.header_len, 3, f.mask);
	CHECK(memcmp(b + f.header_len, "RFB", 3) == 0);
	for (i = 0; i < n; i++)
		CHECK(ws_parse(&p, b, i, 1, &f) == 0);

	/* Unmasked from a client, reserved bits, unknown opcodes. */
	n = ws_header(b, WS_OP_BINARY, 0);
	CHECK(ws_parse(&p, b, n, 1, &f) == -1 &&
	    f.close_code == WS_CLOSE_PROTOCOL);
	CHECK(ws_parse(&p, b, n, 0, &f) == 1);
	n = frame(b, 1, WS_OP_BINARY, "x", 1);
	b[0] |= 0x40;
	CHECK(ws_parse(&p, b, n, 1, &f) == -1);
	n = frame(b, 1, 0x3, "x", 1);
	CHECK(ws_parse(&p, b, n, 1, &f) == -1);

	/* Control frames: whole and short only. */
	n = frame(b, 0, WS_OP_PING, "x", 1);
	CHECK(ws_parse(&p, b, n, 1, &f) == -1);
	memset(b + 1000, 'a', 200);
	n = frame(b, 1, WS_OP_PING, (char *)b + 1000, 126);
	CHECK(ws_parse(&p, b, n, 1, &f) == -1);
	n = frame(b, 1, WS_OP_PING, "hi", 2);
	CHECK(ws_parse(&p, b, n, 1, &f) == 1 && f.opcode == WS_OP_PING);

	/* Fragments: in order, a ping between them, no stray continuation. */
	n = frame(b, 1, WS_OP_CONT, "x", 1);
	CHECK(ws_parse(&p, b, n, 1, &f) == -1);
	n = frame(b, 0, WS_OP_BINARY, "ab", 2);
	CHECK(ws_parse(&p, b, n, 1, &f) == 1 && !f.fin);
	n = frame(b, 1, WS_OP_PING, "", 0);
	CHECK(ws_parse(&p, b, n, 1, &f) == 1);
	n = frame(b, 1, WS_OP_BINARY, "c", 1);
	CHECK(ws_parse(&p, b, n, 1, &f) == -1);
	n = frame(b, 1, WS_OP_CONT, "c", 1);
	CHECK(ws_parse(&p, b, n, 1, &f) == 1 && f.message_op == WS_OP_BINARY);
	CHECK(!p.in_message);

	/* Lengths: 16 and 64 bits, minimal only, capped. */
	big = calloc(1, 200000);
	n = frame(big, 1, WS_OP_BINARY, (char *)big + 100000, 300);
	CHECK(ws_parse(&p, big, n, 1, &f) == 1 && f.payload_len == 300 &&
	    f.header_len == 8);
	n = frame(big, 1, WS_OP_BINARY, (char *)big + 100000, 66000);
	CHECK(ws_parse(&p, big, n, 1, &f) == 1 && f.payload_len == 66000 &&
	    f.header_len == 14);
	n = frame(big, 1, WS_OP_BINARY, (char *)big + 100000, 70001);
	CHECK(ws_parse(&p, big, n, 1, &f) == -1 &&
	    f.close_code == WS_CLOSE_TOO_BIG);
	/* The cap holds on the header alone, before the payload arrives. */
	CHECK(ws_parse(&p, big, 14, 1, &f) == -1);
	b[0] = 0x82; b[1] = 0x80 | 126; b[2] = 0; b[3] = 100;
	CHECK(ws_parse(&p, b, 8, 1, &f) == -1);
	b[0] = 0x82; b[1] = 0x80 | 127;
	memset(b + 2, 0, 8);
	b[9] = 200;
	CHECK(ws_parse(&p, b, 14, 1, &f) == -1);
	b[2] = 0x80;
	CHECK(ws_parse(&p, b, 14, 1, &f) == -1);
	free(big);

	/* Close codes a peer may send. */
	CHECK(ws_close_code((const unsigned char *)"", 0) == WS_CLOSE_NONE);
	CHECK(ws_close_code((const unsigned char *)"\x03", 1) == -1);
	CHECK(ws_close_code((const unsigned char *)"\x03\xe8", 2) == 1000);
	CHECK(ws_close_code((const unsigned char *)"\x03\xed", 2) == -1);
	CHECK(ws_close_code((const unsigned char *)"\x0f\xa0", 2) == 4000);
	CHECK(ws_close_code((const unsigned char *)"\x00\x01", 2) == -1);
}

/* Feed s to the RFB scanner one boundary at a time; say where they fell. */
static size_t
rfb_feed(struct console_rfb *r, const unsigned char *s, size_t len,
    size_t *ends, size_t max)
{
	size_t	off = 0, n, k = 0;
	int	pass;

	while (off < len) {
		n = console_rfb_scan(r, s + off, len - off, &pass);
		CHECK(n > 0 && pass);
		off += n;
		if (console_rfb_idle(r) && k < max)
			ends[k++] = off;
	}
	return (k);
}

static void
test_console_rfb(void)
{
	/* noVNC's start: version, None, shared, pixel format, encodings. */
	static const unsigned char start[] = "RFB 003.008\n" "\x01" "\x01"
	    "\x00\0\0\0" "\x20\x18\0\x01\0\xff\0\xff\0\xff\x10\x08\0\0\0\0"
	    "\x02\0\0\x02" "\0\0\0\x07" "\xff\xff\xfe\xcc"
	    "\x03\0\0\0\0\0\x02\xd0\x01\x90";
	/* QEMU key, pointer, extended cut text, desktop size, fence. */
	static const unsigned char msgs[] =
	    "\xff\0\0\x01\0\0\0\x78\0\0\0\x2d"
	    "\x05\0\0\x10\0\x20"
	    "\x06\0\0\0\xff\xff\xff\xfc" "abcd"
	    "\xfb\0\x03\x20\x02\x58\x01\0" "0123456789abcdef"
	    "\xf8\0\0\0\0\0\0\0\x02" "hi"
	    "\x03\x01\0\0\0\0\x03\x20\x02\x58";
	struct console_rfb	 r;
	unsigned char		 req[10];
	size_t			 ends[16], k, i, n;
	int			 pass;

	memset(&r, 0, sizeof r);
	k = rfb_feed(&r, start, sizeof start - 1, ends, 16);
	/* Idle only after the first update request, at its end. */
	CHECK(k == 1 && ends[0] == sizeof start - 1);
	console_rfb_request(&r, req);
	CHECK(memcmp(req, "\x03\x01\0\0\0\0\x02\xd0\x01\x90", 10) == 0);
	k = rfb_feed(&r, msgs, sizeof msgs - 1, ends, 16);
	CHECK(k == 6);
	CHECK(ends[0] == 12 && ends[1] == 18 && ends[2] == 30 &&
	    ends[3] == 54 && ends[4] == 65 && ends[5] == sizeof msgs - 1);
	CHECK(r.count[RFB_UPDATE_REQUEST] == 2 &&
	    r.count[RFB_POINTER_EVENT] == 1 && r.count[RFB_KEY_EVENT] == 1);
	console_rfb_request(&r, req);
	CHECK(req[1] == 1 && req[7] == 0x20);

	/* Byte by byte, the same boundaries: never idle mid-message. */
	memset(&r, 0, sizeof r);
	rfb_feed(&r, start, sizeof start - 1, ends, 16);
	for (i = 0, k = 0; i < sizeof msgs - 1; i++) {
		CHECK(console_rfb_scan(&r, msgs + i, 1, &pass) == 1);
		if (console_rfb_idle(&r))
			ends[k++] = i + 1;
	}
	CHECK(k == 6 && ends[2] == 30 && ends[3] == 54);

	/* RFB 3.3, another security type, an unknown message: off. */
	memset(&r, 0, sizeof r);
	n = console_rfb_scan(&r, (const unsigned char *)"RFB 003.003\nxyz", 15,
	    &pass);
	CHECK(n == 15 && !console_rfb_idle(&r));
	memset(&r, 0, sizeof r);
	rfb_feed(&r, (const unsigned char *)"RFB 003.008\n\x13", 13, ends, 16);
	CHECK(console_rfb_scan(&r, start + 14, 50, &pass) == 50);
	CHECK(!console_rfb_idle(&r));
	memset(&r, 0, sizeof r);
	rfb_feed(&r, start, sizeof start - 1, ends, 16);
	CHECK(console_rfb_scan(&r, (const unsigned char *)"\x07" "ab",
	    3, &pass) == 3);
	CHECK(!console_rfb_idle(&r));
	/* VNC authentication: 16 bytes of response before ClientInit. */
	memset(&r, 0, sizeof r);
	rfb_feed(&r, (const unsigned char *)"RFB 003.008\n\x02"
	    "0123456789abcdef\x01\x03\0\0\0\0\0\0\x10\0\x10", 40, ends, 16);
	CHECK(console_rfb_idle(&r));
}

/*
 * Continuous updates: QEMU's handshake followed to the end of ServerInit
 * (None and VNC authentication, in any pieces), then the browser's
 * EnableContinuousUpdates kept back, alone, whatever surrounds it.
 */
static void
test_console_rfb_continuous(void)
{
	/* QEMU: version, types [None], SecurityResult, ServerInit "vm1". */
	static const unsigned char srv[] = "RFB 003.008\n" "\x01\x01"
	    "\0\0\0\0" "\x02\xd0\x01\x90" "\x20\x18\0\x01\0\xff\0\xff\0\xff"
	    "\x10\x08\0\0\0\0" "\0\0\0\x03" "vm1";
	static const unsigned char cli[] = "RFB 003.008\n" "\x01" "\x01";
	/* A key, EnableContinuousUpdates, a pointer, in one frame. */
	static const unsigned char msgs[] = "\x04\x01\0\0\0\0\0\x78"
	    "\x96\x01\0\0\0\0\x02\xd0\x01\x90" "\x05\0\0\x10\0\x20";
	struct console_rfb	 r;
	size_t			 n, off, i, kept, passed;
	int			 pass;

	/* Byte by byte, interleaved as on the wire. */
	memset(&r, 0, sizeof r);
	CHECK(console_rfb_server_scan(&r, srv, 12) == 12);
	CHECK(console_rfb_scan(&r, cli, 12, &pass) == 12 && pass);
	CHECK(console_rfb_server_scan(&r, srv + 12, 2) == 2);
	CHECK(console_rfb_scan(&r, cli + 12, 1, &pass) == 1);
	CHECK(!console_rfb_server_init(&r));
	for (i = 14; i < sizeof srv - 2; i++)
		CHECK(console_rfb_server_scan(&r, srv + i, 1) == 1 &&
		    !console_rfb_server_init(&r));
	CHECK(console_rfb_server_scan(&r, srv + i, 1) == 1);
	CHECK(console_rfb_server_init(&r) && console_rfb_server_done(&r));
	/* After it, everything passes unlooked at. */
	CHECK(console_rfb_server_scan(&r, srv, 7) == 7);
	/* Whole, with bytes behind ServerInit: it stops at its end. */
	memset(&r, 0, sizeof r);
	rfb_feed(&r, cli, 13, NULL, 0);
	CHECK(console_rfb_server_scan(&r, srv, sizeof srv - 1) ==
	    sizeof srv - 1 && console_rfb_server_init(&r));
	memset(&r, 0, sizeof r);
	rfb_feed(&r, cli, 13, NULL, 0);
	CHECK(console_rfb_server_scan(&r, (const unsigned char *)
	    "RFB 003.008\n\x01\x01\0\0\0\0\x02\xd0\x01\x90\x20\x18\0\x01\0\xff"
	    "\0\xff\0\xff\x10\x08\0\0\0\0\0\0\0\0\x00\x01", 44) == 42);
	CHECK(console_rfb_server_init(&r));

	/* A refused login, RFB 3.7, VNC authentication. */
	memset(&r, 0, sizeof r);
	rfb_feed(&r, cli, 13, NULL, 0);
	CHECK(console_rfb_server_scan(&r, (const unsigned char *)
	    "RFB 003.008\n\x01\x01\0\0\0\x01" "abc", 21) == 21);
	CHECK(!console_rfb_server_init(&r) && console_rfb_server_done(&r));
	memset(&r, 0, sizeof r);
	CHECK(console_rfb_server_scan(&r, (const unsigned char *)
	    "RFB 003.007\n", 12) == 12 && console_rfb_server_done(&r) &&
	    !console_rfb_server_init(&r));
	memset(&r, 0, sizeof r);
	rfb_feed(&r, (const unsigned char *)"RFB 003.008\n\x02", 13, NULL, 0);
	CHECK(console_rfb_server_scan(&r, (const unsigned char *)
	    "RFB 003.008\n\x01\x02" "0123456789abcdef", 30) == 30);
	CHECK(!console_rfb_server_init(&r));
	CHECK(console_rfb_server_scan(&r, srv + 14, sizeof srv - 15) ==
	    sizeof srv - 15 && console_rfb_server_init(&r));

	/* Without the offer, EnableContinuousUpdates passes (as before). */
	memset(&r, 0, sizeof r);
	rfb_feed(&r, cli, 13, NULL, 0);
	rfb_feed(&r, (const unsigned char *)"\x01"
		    "\x03\0\0\0\0\0\x02\xd0\x01\x90", 11, NULL, 0);
	for (off = 0, passed = 0; off < sizeof msgs - 1; off += n) {
		n = console_rfb_scan(&r, msgs + off, sizeof msgs - 1 - off,
		    &pass);
		passed += pass ? n : 0;
	}
	CHECK(passed == sizeof msgs - 1 && r.dropped == 0);
	/* With it: kept, and nothing else; in one piece or byte by byte. */
	for (i = 0; i < 2; i++) {
		memset(&r, 0, sizeof r);
		rfb_feed(&r, cli, 13, NULL, 0);
		rfb_feed(&r, (const unsigned char *)"\x01"
		    "\x03\0\0\0\0\0\x02\xd0\x01\x90", 11, NULL, 0);
		r.continuous = 1;
		kept = passed = 0;
		for (off = 0; off < sizeof msgs - 1; off += n) {
			n = console_rfb_scan(&r, msgs + off, i == 0 ?
			    sizeof msgs - 1 - off : 1, &pass);
			CHECK(n > 0);
			if (pass)
				passed += n;
			else {
				/* Only its 10 bytes, from its first. */
				CHECK(off >= 8 && off + n <= 18);
				kept += n;
			}
		}
		CHECK(kept == 10 && passed == sizeof msgs - 1 - 10);
		CHECK(r.dropped == 1 && console_rfb_idle(&r));
		CHECK(r.count[RFB_POINTER_EVENT] == 1);
	}
}

static void
test_onetime(void)
{
	struct onetime	*ot = onetime_create(3);
	char		 t[4][ONETIME_LEN + 1], *cause = NULL;
	time_t		 now = 1700000000;
	int		 i;

	for (i = 0; i < 4; i++)
		snprintf(t[i], sizeof t[i], "%064d", i);
	onetime_add(ot, t[0], "alice", "d1", now + 60, now);
	/* Once: the second use fails. */
	CHECK(onetime_take(ot, t[0], "alice", "d1", now, &cause) == 0);
	CHECK(onetime_take(ot, t[0], "alice", "d1", now, &cause) == -1);
	CHECK(strstr(cause, "already used") != NULL);
	free(cause);
	cause = NULL;
	/* Another user's or desktop's: refused, and used up. */
	onetime_add(ot, t[1], "alice", "d1", now + 60, now);
	CHECK(onetime_take(ot, t[1], "bob", "d1", now, &cause) == -1);
	CHECK(strstr(cause, "not this user's") != NULL);
	free(cause);
	cause = NULL;
	CHECK(onetime_take(ot, t[1], "alice", "d1", now, &cause) == -1);
	free(cause);
	cause = NULL;
	onetime_add(ot, t[1], "alice", "d1", now + 60, now);
	CHECK(onetime_take(ot, t[1], "alice", "d2", now, &cause) == -1);
	CHECK(strstr(cause, "another desktop") != NULL);
	free(cause);
	cause = NULL;
	/* Stale. */
	onetime_add(ot, t[2], "alice", "d1", now + 60, now);
	CHECK(onetime_take(ot, t[2], "alice", "d1", now + 61, &cause) == -1);
	CHECK(strstr(cause, "expired") != NULL);
	free(cause);
	cause = NULL;
	/* Malformed. */
	CHECK(onetime_take(ot, "abc", "alice", "d1", now, &cause) == -1);
	free(cause);
	cause = NULL;
	CHECK(onetime_take(ot, NULL, "alice", "d1", now, &cause) == -1);
	free(cause);
	cause = NULL;
	/* The cap drops the oldest; expiry drops the stale. */
	for (i = 0; i < 4; i++)
		onetime_add(ot, t[i], "alice", "d1", now + 10 + i, now);
	CHECK(onetime_count(ot, now) == 3);
	CHECK(onetime_take(ot, t[0], "alice", "d1", now, &cause) == -1);
	free(cause);
	cause = NULL;
	CHECK(onetime_count(ot, now + 12) == 2);
	CHECK(onetime_take(ot, t[3], "alice", "d1", now, &cause) == 0);
	onetime_free(ot);
	onetime_free(NULL);
}

int
main(void)
{
	test_connlimit();
	test_throttle();
	test_ticket();
	test_vv();
	test_httputil();
	test_ws();
	test_console_rfb();
	test_console_rfb_continuous();
	test_onetime();
	return (check_exit());
}
