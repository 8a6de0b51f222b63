/*
 * Files written whole or not at all, even across a crash; small files read
 * whole; the last line of a log.
 */
#ifndef QDESK_FILE_H
#define QDESK_FILE_H

#include <sys/types.h>

/*
 * Replace path with the len bytes at buf: written to a new temporary
 * file beside it with mode (exactly; owner and group too unless -1),
 * synced, renamed over path, and the directory synced so that the rename
 * lasts. Returns 0, or -1 with errno set and, if cause is not NULL, a
 * one-line "STEP PATH: reason" in it; path is then as it was, unless only
 * the last step, the sync of the directory, failed.
 */
int	file_write_atomic(const char *path, const void *buf, size_t len,
	    mode_t mode, uid_t owner, gid_t group, char **cause);

/*
 * Read at most size - 1 bytes of path (a /proc file, a serial log) into
 * buf and NUL-terminate them: the count, or 0 when the file is missing,
 * unreadable or empty.
 */
ssize_t	file_read_small(const char *path, char *buf, size_t size);

/*
 * The last non-empty line of the file open on fd (which it closes), cut
 * to max - 1 bytes, without its newline: allocated, or NULL when there is
 * none.  For "why did it stop" from a helper's log.
 */
char	*file_last_line(int fd, size_t max);

#endif
