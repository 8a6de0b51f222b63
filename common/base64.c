/*
 * Base64 (RFC 4648): one encoder and one decoder for the CLI (a
 * screenshot arrives as base64 inside a JSON reply) and the etcd client
 * (the gateway's keys and values travel in it).
 */
#include <sys/types.h>

#include <stddef.h>

#include "base64.h"
#include "xmalloc.h"

static const char base64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
base64_encode(const void *data, size_t len)
{
	const unsigned char	*p = data;
	char			*out, *o;
	size_t			 i;
	unsigned int		 v;

	out = o = xmalloc(4 * ((len + 2) / 3) + 1);
	for (i = 0; i + 2 < len; i += 3) {
		v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
		*o++ = base64_chars[v >> 18];
		*o++ = base64_chars[(v >> 12) & 63];
		*o++ = base64_chars[(v >> 6) & 63];
		*o++ = base64_chars[v & 63];
	}
	if (i < len) {
		v = p[i] << 16;
		if (i + 1 < len)
			v |= p[i + 1] << 8;
		*o++ = base64_chars[v >> 18];
		*o++ = base64_chars[(v >> 12) & 63];
		*o++ = i + 1 < len ? base64_chars[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return (out);
}

/* The value of one base64 character, or -1. */
static int
base64_value(unsigned char c, int flags)
{
	if (c >= 'A' && c <= 'Z')
		return (c - 'A');
	if (c >= 'a' && c <= 'z')
		return (c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (c - '0' + 52);
	if (c == '+' || (c == '-' && (flags & BASE64_URL)))
		return (62);
	if (c == '/' || (c == '_' && (flags & BASE64_URL)))
		return (63);
	return (-1);
}

size_t
base64_decoded_max(size_t inlen)
{
	return (inlen / 4 * 3 + 3);
}

ssize_t
base64_decode(const char *in, size_t inlen, unsigned char *out,
    size_t outlen, int flags)
{
	unsigned int	 acc = 0;
	size_t		 i, o = 0, n = 0, pad = 0;
	int		 v;
	unsigned char	 c;

	for (i = 0; i < inlen; i++) {
		c = in[i];
		if ((flags & BASE64_SPACE) &&
		    (c == ' ' || c == '\t' || c == '\r' || c == '\n'))
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		if (pad != 0 || (v = base64_value(c, flags)) == -1)
			return (-1);
		acc = (acc << 6) | v;
		if (++n == 4) {
			if (outlen - o < 3)
				return (-1);
			out[o++] = acc >> 16;
			out[o++] = acc >> 8;
			out[o++] = acc;
			acc = 0;
			n = 0;
		}
	}
	/* A final group of 2 or 3 characters carries 1 or 2 bytes. */
	if (n == 1 || pad > 2 || (pad != 0 && n + pad != 4))
		return (-1);
	if (n == 2) {
		if (outlen - o < 1)
			return (-1);
		out[o++] = acc >> 4;
	} else if (n == 3) {
		if (outlen - o < 2)
			return (-1);
		out[o++] = acc >> 10;
		out[o++] = acc >> 2;
	}
	return (o);
}
