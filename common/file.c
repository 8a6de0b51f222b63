/*
 * The one atomic file writer (file.h): a temporary file from mkostemp, so
 * two writers never share one, then fsync, rename and an fsync of the
 * directory, as a crash-safe replace needs on Linux file systems.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "file.h"
#include "xmalloc.h"

/* Write all of buf to fd, through short writes and EINTR. */
static int
file_write_all(int fd, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		p += n;
		len -= n;
	}
	return (0);
}

/* fsync the directory that holds path, so that a rename in it lasts. */
static int
file_sync_dir(const char *path)
{
	char	*copy;
	int	 fd, rc, saved;

	copy = xstrdup(path);
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd == -1)
		return (-1);
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return (rc);
}

int
file_write_atomic(const char *path, const void *buf, size_t len, mode_t mode,
    uid_t owner, gid_t group, char **cause)
{
	const char	*step;
	char		*tmp;
	int		 fd, saved;

	xasprintf(&tmp, "%s.XXXXXX", path);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		step = "create";
		goto fail;
	}
	step = "write";
	if (file_write_all(fd, buf, len) != 0)
		goto fail;
	step = "chown";
	if ((owner != (uid_t)-1 || group != (gid_t)-1) &&
	    fchown(fd, owner, group) == -1)
		goto fail;
	step = "chmod";
	if (fchmod(fd, mode) == -1)
		goto fail;
	step = "sync";
	if (fsync(fd) == -1)
		goto fail;
	step = "close";
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	step = "rename";
	if (rename(tmp, path) == -1)
		goto fail;
	free(tmp);
	if (file_sync_dir(path) == -1) {
		step = "sync the directory of";
		tmp = NULL;
		goto fail;
	}
	return (0);

fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	if (cause != NULL)
		xasprintf(cause, "%s %s: %s", step, path, strerror(saved));
	errno = saved;
	return (-1);
}

ssize_t
file_read_small(const char *path, char *buf, size_t size)
{
	ssize_t	 n;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (0);
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return (0);
	buf[n] = '\0';
	return (n);
}

char *
file_last_line(int fd, size_t max)
{
	FILE	*f;
	char	*line, *last, *s = NULL;

	if (fd == -1)
		return (NULL);
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return (NULL);
	}
	line = xmalloc(max);
	last = xcalloc(1, max);
	while (fgets(line, (int)max, f) != NULL)
		if (line[0] != '\n')
			strlcpy(last, line, max);
	fclose(f);
	last[strcspn(last, "\n")] = '\0';
	if (last[0] != '\0')
		s = xstrdup(last);
	free(line);
	free(last);
	return (s);
}
