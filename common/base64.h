/* Base64 (RFC 4648): the CLI's screenshots, the etcd gateway's keys. */
#ifndef QDESK_BASE64_H
#define QDESK_BASE64_H

#include <sys/types.h>

#define BASE64_SPACE	0x1	/* skip whitespace between characters */
#define BASE64_URL	0x2	/* take '-' and '_' (RFC 4648 §5) too */

/* Encode len bytes, standard alphabet with padding: allocated, NUL-ended. */
char	*base64_encode(const void *, size_t len);

/* An upper bound of the decoded size of inlen characters. */
size_t	 base64_decoded_max(size_t inlen);

/*
 * Decode in into out. Padding is optional but nothing may follow it.
 * Returns the number of bytes written, or -1 on a bad character, a
 * dangling single character, bad padding or an out buffer too small.
 */
ssize_t	 base64_decode(const char *in, size_t inlen, unsigned char *out,
	    size_t outlen, int flags);

#endif
