/*
 * Opens by a privileged process below a directory another user can write.
 * That user can put a link to /etc/shadow, a FIFO or a second name of a
 * root file where root expects its own file: openat with O_NOFOLLOW and
 * O_NONBLOCK on a directory fd, then fstat decides, before any byte is
 * read, written or truncated.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safefile.h"
#include "xmalloc.h"

#define SAFEFILE_LINKS_MAX	8	/* links followed in root's own dirs */

/* Only root can have put a link here: root owns the dir, no one else writes. */
static int
safefile_dir_trusted(int dirfd)
{
	struct stat	sb;

	if (fstat(dirfd, &sb) == -1)
		return (0);
	return (sb.st_uid == 0 && (sb.st_mode & (S_IWGRP | S_IWOTH)) == 0);
}

/* Fill cause with what (and detail) and errno's text; returns -1, errno kept. */
static int
safefile_error(char **cause, const char *what, const char *detail, int err)
{
	if (detail != NULL)
		xasprintf(cause, "%s: %s: %s", what, detail, strerror(err));
	else
		xasprintf(cause, "%s: %s", what, strerror(err));
	errno = err;
	return (-1);
}

static int	safefile_open_in(int, const char *, const char *, int, mode_t,
		    uid_t, int, char **);

/*
 * Follow the link name in the trusted dirfd: its target's directory is
 * opened as it is named, its last component by the same rules again.
 */
static int
safefile_follow(int dirfd, const char *name, const char *what, int flags,
    mode_t mode, uid_t owner, int depth, char **cause)
{
	char	 target[PATH_MAX], *slash;
	ssize_t	 n;
	int	 tdir, fd, err;

	if (depth >= SAFEFILE_LINKS_MAX) {
		xasprintf(cause, "%s: too many symbolic links", what);
		errno = ELOOP;
		return (-1);
	}
	if ((n = readlinkat(dirfd, name, target, sizeof target - 1)) == -1)
		return (safefile_error(cause, what, NULL, errno));
	target[n] = '\0';
	if ((slash = strrchr(target, '/')) == NULL)
		return (safefile_open_in(dirfd, target, what, flags, mode,
		    owner, depth + 1, cause));
	if (slash[1] == '\0') {
		xasprintf(cause, "%s: links to a directory", what);
		errno = EISDIR;
		return (-1);
	}
	*slash = '\0';
	tdir = openat(dirfd, slash == target ? "/" : target,
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tdir == -1)
		return (safefile_error(cause, what, target, errno));
	fd = safefile_open_in(tdir, slash + 1, what, flags, mode, owner,
	    depth + 1, cause);
	err = errno;
	close(tdir);
	errno = err;
	return (fd);
}

/* safefile_openat, naming the file what in a cause; depth links so far. */
static int
safefile_open_in(int dirfd, const char *name, const char *what, int flags,
    mode_t mode, uid_t owner, int depth, char **cause)
{
	struct stat	sb;
	int		fd, fl, trusted, want_dir, err;

	if (*name == '\0' || strchr(name, '/') != NULL ||
	    strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		xasprintf(cause, "%s: not a file name", what);
		errno = EINVAL;
		return (-1);
	}
	want_dir = (flags & O_DIRECTORY) != 0;
	fd = openat(dirfd, name, (flags & ~O_TRUNC) | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC, mode);
	err = errno;
	trusted = safefile_dir_trusted(dirfd);
	if (fd == -1) {
		if ((err == ELOOP || (want_dir && err == ENOTDIR)) &&
		    (flags & O_CREAT) == 0 && trusted &&
		    fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(sb.st_mode))
			return (safefile_follow(dirfd, name, what, flags, mode,
			    owner, depth, cause));
		if (err == ELOOP)
			xasprintf(cause, "%s: is a symbolic link, refused",
			    what);
		else if (want_dir && err == ENOTDIR)
			xasprintf(cause, "%s: not a directory, refused", what);
		else if (err == ENXIO)
			xasprintf(cause, "%s: not a regular file, refused",
			    what);
		else
			return (safefile_error(cause, what, NULL, err));
		errno = err;
		return (-1);
	}
	err = EPERM;
	if (fstat(fd, &sb) == -1) {
		err = errno;
		safefile_error(cause, what, NULL, err);
		goto fail;
	}
	if (want_dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)) {
		xasprintf(cause, "%s: not a %s, refused", what, want_dir ?
		    "directory" : "regular file");
		goto fail;
	}
	if (owner != SAFEFILE_ANY_OWNER && sb.st_uid != 0 &&
	    sb.st_uid != owner) {
		xasprintf(cause, "%s: owned by uid %lu, not %lu, refused", what,
		    (u_long)sb.st_uid, (u_long)owner);
		goto fail;
	}
	/* A second name of someone else's file, made where we look. */
	if (!want_dir && !trusted && sb.st_nlink != 1) {
		xasprintf(cause, "%s: has %lu links, refused", what,
		    (u_long)sb.st_nlink);
		goto fail;
	}
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1 ||
	    ((flags & O_TRUNC) && !want_dir && ftruncate(fd, 0) == -1)) {
		err = errno;
		safefile_error(cause, what, NULL, err);
		goto fail;
	}
	return (fd);
fail:
	close(fd);
	errno = err;
	return (-1);
}

int
safefile_openat(int dirfd, const char *name, int flags, mode_t mode,
    uid_t owner, char **cause)
{
	return (safefile_open_in(dirfd, name, name, flags, mode, owner, 0,
	    cause));
}

int
safefile_open(const char *path, int flags, mode_t mode, uid_t owner,
    char **cause)
{
	const char	*base;
	char		*dir;
	int		 dirfd, fd, err;

	if ((base = strrchr(path, '/')) == NULL) {
		dir = xstrdup(".");
		base = path;
	} else if (base == path) {
		dir = xstrdup("/");
		base++;
	} else {
		dir = xstrndup(path, base - path);
		base++;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (dirfd == -1)
		return (safefile_error(cause, path, NULL, errno));
	fd = safefile_open_in(dirfd, base, path, flags, mode, owner, 0, cause);
	err = errno;
	close(dirfd);
	errno = err;
	return (fd);
}

char *
safefile_read_fd(int fd, const char *what, size_t max, size_t *len,
    char **cause)
{
	char	*buf;
	size_t	 have = 0;
	ssize_t	 n;

	buf = xmalloc(max + 2);
	for (;;) {
		n = read(fd, buf + have, max + 1 - have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			safefile_error(cause, what, NULL, errno);
			goto fail;
		}
		if (n == 0)
			break;
		have += n;
		if (have > max) {
			xasprintf(cause, "%s: larger than %zu bytes, refused",
			    what, max);
			errno = EFBIG;
			goto fail;
		}
	}
	buf[have] = '\0';
	if (len != NULL)
		*len = have;
	return (buf);
fail:
	explicit_bzero(buf, have);
	free(buf);
	return (NULL);
}

char *
safefile_read(const char *path, size_t max, uid_t owner, size_t *len,
    char **cause)
{
	char	*buf;
	int	 fd;

	if ((fd = safefile_open(path, O_RDONLY, 0, owner, cause)) == -1)
		return (NULL);
	buf = safefile_read_fd(fd, path, max, len, cause);
	close(fd);
	return (buf);
}
