/*
 * RFC 6455 WebSocket framing for the browser console, pure: the opening
 * handshake's checks and accept key, a frame header parser that enforces
 * the protocol's rules (client frames masked, no reserved bits, control
 * frames short and whole, fragments in order, minimal lengths, a size
 * cap), unmasking, and frame headers for what the server sends.
 *
 * Why not libwebsockets: it wants to own the listening socket and its own
 * event loop (or a foreign-loop glue that still runs its own HTTP parser
 * and TLS), while the portal is evhttp's, with the session cookie, CSRF,
 * route table and connection limits already there. The console only
 * needs binary frames one way and the other, pings and a close: taking
 * evhttp's connection once the request is checked and framing it here
 * keeps one HTTP stack, and a parser this small is fuzzed whole
 * (tests/fuzz/fuzz-ws.c).
 */
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "broker.h"

#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Whether the comma-separated header value holds token, any case. */
int
ws_header_has(const char *value, const char *token)
{
	size_t		 tlen = strlen(token), n;
	const char	*p = value, *end;

	if (value == NULL)
		return (0);
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		end = p;
		while (*end != '\0' && *end != ',')
			end++;
		n = end - p;
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == tlen && strncasecmp(p, token, tlen) == 0)
			return (1);
		p = end;
	}
	return (0);
}

/*
 * The Sec-WebSocket-Accept value for a client's key, which must be the
 * base64 of 16 bytes; -1 for a bad key.
 */
int
ws_accept_key(const char *key, char *out, size_t outlen)
{
	unsigned char	 raw[32], sum[SHA_DIGEST_LENGTH];
	char		 buf[64];
	size_t		 len;
	int		 n;

	if (key == NULL || outlen < WS_ACCEPT_LEN + 1)
		return (-1);
	len = strlen(key);
	if (len != 24 || key[22] != '=' || key[23] != '=')
		return (-1);
	if ((n = EVP_DecodeBlock(raw, (const unsigned char *)key,
	    (int)len)) != 18)	/* 16 bytes and two '=' of padding */
		return (-1);
	memcpy(buf, key, len);
	memcpy(buf + len, WS_GUID, strlen(WS_GUID));
	SHA1((unsigned char *)buf, len + strlen(WS_GUID), sum);
	EVP_EncodeBlock((unsigned char *)out, sum, sizeof sum);
	return (0);
}

/* The protocol rules a frame header breaks, as a close code and cause. */
static int
ws_fail(struct ws_frame *f, int code, const char *why)
{
	f->close_code = code;
	f->cause = why;
	return (-1);
}

/*
 * Parse one frame header from the len bytes at buf. Returns 1 with *f
 * filled when the header and the whole payload are there, 0 when more
 * bytes are needed, -1 when the frame breaks the protocol (f->close_code
 * and f->cause say how). The parser's fragment state moves on only for
 * a whole frame. Client frames (from_client) must be masked.
 */
int
ws_parse(struct ws_parser *p, const unsigned char *buf, size_t len,
    int from_client, struct ws_frame *f)
{
	uint64_t	plen;
	size_t		hlen = 2, i;
	int		op, fin, masked, control;

	memset(f, 0, sizeof *f);
	if (len < 2)
		return (0);
	fin = (buf[0] & 0x80) != 0;
	op = buf[0] & 0x0f;
	masked = (buf[1] & 0x80) != 0;
	plen = buf[1] & 0x7f;
	if (buf[0] & 0x70)
		return (ws_fail(f, WS_CLOSE_PROTOCOL, "reserved bits set"));
	switch (op) {
	case WS_OP_CONT:
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		control = 0;
		break;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		control = 1;
		break;
	default:
		return (ws_fail(f, WS_CLOSE_PROTOCOL, "unknown opcode"));
	}
	if (from_client && !masked)
		return (ws_fail(f, WS_CLOSE_PROTOCOL, "unmasked client frame"));
	if (!from_client && masked)
		return (ws_fail(f, WS_CLOSE_PROTOCOL, "masked server frame"));
	if (control && (!fin || plen > 125))
		return (ws_fail(f, WS_CLOSE_PROTOCOL, "control frame "
		    "fragmented or over 125 bytes"));
	if (!control) {
		if (op == WS_OP_CONT && !p->in_message)
			return (ws_fail(f, WS_CLOSE_PROTOCOL, "continuation "
			    "without a message"));
		if (op != WS_OP_CONT && p->in_message)
			return (ws_fail(f, WS_CLOSE_PROTOCOL, "new message "
			    "inside a fragmented one"));
	}
	if (plen == 126) {
		if (len < 4)
			return (0);
		plen = ((uint64_t)buf[2] << 8) | buf[3];
		hlen = 4;
		if (plen < 126)
			return (ws_fail(f, WS_CLOSE_PROTOCOL, "length not "
			    "minimally encoded"));
	} else if (plen == 127) {
		if (len < 10)
			return (0);
		plen = 0;
		for (i = 0; i < 8; i++)
			plen = (plen << 8) | buf[2 + i];
		hlen = 10;
		if (plen >> 63)
			return (ws_fail(f, WS_CLOSE_PROTOCOL, "length with "
			    "its top bit set"));
		if (plen <= 0xffff)
			return (ws_fail(f, WS_CLOSE_PROTOCOL, "length not "
			    "minimally encoded"));
	}
	if (plen > p->max_payload)
		return (ws_fail(f, WS_CLOSE_TOO_BIG, "frame over the size "
		    "limit"));
	if (masked) {
		if (len < hlen + 4)
			return (0);
		memcpy(f->mask, buf + hlen, 4);
		hlen += 4;
	}
	if (len - hlen < plen)
		return (0);

	f->opcode = op;
	f->fin = fin;
	f->masked = masked;
	f->header_len = hlen;
	f->payload_len = (size_t)plen;
	if (!control) {
		if (op != WS_OP_CONT)
			p->message_op = op;
		f->message_op = p->message_op;
		p->in_message = !fin;
	}
	return (1);
}

/* Unmask (or mask) len bytes in place, as the frame's mask says. */
void
ws_unmask(unsigned char *data, size_t len, const unsigned char mask[4])
{
	size_t	i;

	for (i = 0; i < len; i++)
		data[i] ^= mask[i & 3];
}

/*
 * The header of an unmasked, final server frame of opcode op and len
 * payload bytes, into out (WS_HEADER_MAX bytes); returns its length.
 */
size_t
ws_header(unsigned char *out, int op, uint64_t len)
{
	size_t	i;

	out[0] = 0x80 | (op & 0x0f);
	if (len < 126) {
		out[1] = (unsigned char)len;
		return (2);
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		return (4);
	}
	out[1] = 127;
	for (i = 0; i < 8; i++)
		out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return (10);
}

/*
 * A close frame's payload: its status code, or WS_CLOSE_NONE when it has
 * none; -1 when the payload is one byte or the code is not one a peer may
 * send (RFC 6455 7.4).
 */
int
ws_close_code(const unsigned char *payload, size_t len)
{
	int	code;

	if (len == 0)
		return (WS_CLOSE_NONE);
	if (len == 1)
		return (-1);
	code = (payload[0] << 8) | payload[1];
	if (code < 1000 || code >= 5000)
		return (-1);
	switch (code) {
	case 1004:
	case 1005:
	case 1006:
	case 1015:
		return (-1);
	}
	if (code > 1014 && code < 3000)
		return (-1);
	return (code);
}
