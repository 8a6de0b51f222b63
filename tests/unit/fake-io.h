/*
 * What the scripted fake peers of the QMP and guest agent tests
 * (qmp-fake.c, test-qga.c) share: a clock, a write of every byte and
 * the input cut into lines.
 */
#ifndef FAKE_IO_H
#define FAKE_IO_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Milliseconds on the monotonic clock. */
static inline double
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec * 1e3 + ts.tv_nsec / 1e6);
}

/* Write all of s to fd through short writes; give up on an error. */
static inline void
fd_write_all(int fd, const char *s, size_t len)
{
	size_t	 off = 0;
	ssize_t	 n;

	while (off < len) {
		n = write(fd, s + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return;
		off += n;
	}
}

/* What a fake peer has read and not yet used up as whole lines. */
struct fake_in {
	char	*buf;
	size_t	 len;
};

/*
 * Add the n bytes read to in and hand each whole line (without its
 * newline) to line; a partial line waits for the next read.
 */
static inline void
fake_in_feed(struct fake_in *in, const char *buf, size_t n,
    void (*line)(void *, char *, size_t), void *arg)
{
	char	*start, *nl;

	in->buf = realloc(in->buf, in->len + n);
	memcpy(in->buf + in->len, buf, n);
	in->len += n;
	start = in->buf;
	while ((nl = memchr(start, '\n', in->len - (start - in->buf))) !=
	    NULL) {
		line(arg, start, nl - start);
		start = nl + 1;
	}
	in->len -= start - in->buf;
	memmove(in->buf, start, in->len);
}

#endif
