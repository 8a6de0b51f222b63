/*
 * Opening files as root below directories another user can write (a VM's
 * runtime dir, the broker's key dir): never through a link planted there,
 * never a FIFO or device that would block or act on open, never a file
 * that is not owned by whom it should be.
 */
#ifndef QDESK_SAFEFILE_H
#define QDESK_SAFEFILE_H

#include <sys/types.h>

#include <stddef.h>

#define SAFEFILE_ANY_OWNER	((uid_t)-1)

/*
 * Open name in the directory dirfd (O_NOFOLLOW, O_NONBLOCK, O_CLOEXEC are
 * added; O_TRUNC is applied only once the file passed its checks). The
 * result is a regular file with a single link (a directory with
 * O_DIRECTORY) owned by root or by owner. A link is followed only where
 * root alone can write: when dirfd is a root-owned directory no one else
 * may write. Returns the fd or -1 with a cause naming the file.
 */
int	 safefile_openat(int dirfd, const char *name, int flags, mode_t mode,
	    uid_t owner, char **cause);

/* The same for a path: its directory is opened, then its last component. */
int	 safefile_open(const char *path, int flags, mode_t mode, uid_t owner,
	    char **cause);

/*
 * The whole of a small file at path, NUL-terminated (*len, if not NULL,
 * says how long), read through safefile_open; more than max bytes is an
 * error. The caller frees it (explicit_bzero first for keys).
 */
char	*safefile_read(const char *path, size_t max, uid_t owner, size_t *len,
	    char **cause);

/* The same for an fd already opened (and checked) by safefile_open. */
char	*safefile_read_fd(int fd, const char *what, size_t max, size_t *len,
	    char **cause);

#endif
