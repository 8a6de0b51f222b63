/*
 * Base64 (RFC 4648, standard alphabet) decoding for vm.screenshot, whose
 * image arrives as a base64 string inside a JSON reply.
 */
#include <sys/types.h>

#include <stddef.h>

#include "qdesk.h"

/* The value of one base64 character, or -1. */
static int
base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (c - 'A');
	if (c >= 'a' && c <= 'z')
		return (c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (c - '0' + 52);
	if (c == '+')
		return (62);
	if (c == '/')
		return (63);
	return (-1);
}

/* An upper bound of the decoded size of inlen characters. */
size_t
base64_decoded_max(size_t inlen)
{
	return (inlen / 4 * 3 + 3);
}

/*
 * Decode in into out. Whitespace is skipped; padding is optional but
 * nothing may follow it. Returns the number of bytes written, or -1 on a
 * bad character, a dangling single character, or an out buffer too small.
 */
ssize_t
base64_decode(const char *in, size_t inlen, unsigned char *out,
    size_t outlen)
{
	unsigned int	 acc = 0;
	size_t		 i, o = 0, n = 0, pad = 0;
	int		 v;
	unsigned char	 c;

	for (i = 0; i < inlen; i++) {
		c = in[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		if (pad != 0 || (v = base64_value(c)) == -1)
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
