/*
 * What the scripted fake peers of the QMP and guest agent tests
 * (qmp-fake.c, test-qga.c) share: a clock and a write of every byte.
 */
#ifndef FAKE_IO_H
#define FAKE_IO_H

#include <errno.h>
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

#endif
