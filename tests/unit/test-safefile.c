/*
 * common/safefile.c: in a directory someone else can write, links, FIFOs
 * and second names of files are refused before anything is read,
 * written or truncated; in root's own directory a link is followed.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "safefile.h"

static char	top[64];

static void
put(const char *name, const char *text, mode_t mode)
{
	char	 path[256];
	FILE	*f;

	snprintf(path, sizeof path, "%s/%s", top, name);
	CHECK((f = fopen(path, "w")) != NULL);
	if (f == NULL)
		return;
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static off_t
size_of(const char *name)
{
	char		path[256];
	struct stat	sb;

	snprintf(path, sizeof path, "%s/%s", top, name);
	return (stat(path, &sb) == 0 ? sb.st_size : -1);
}

static void
refused(const char *dir, const char *name, int flags, uid_t owner,
    const char *why)
{
	char	 path[256], *cause = NULL;
	int	 fd;

	snprintf(path, sizeof path, "%s/%s/%s", top, dir, name);
	fd = safefile_open(path, flags, 0600, owner, &cause);
	CHECK(fd == -1);
	CHECK(cause != NULL && strstr(cause, why) != NULL);
	if (cause != NULL && strstr(cause, why) == NULL)
		fprintf(stderr, "cause: %s\n", cause);
	if (fd != -1)
		close(fd);
	free(cause);
}

int
main(void)
{
	char	 path[256], *cause = NULL, *text;
	size_t	 len;
	int	 fd, dirfd;

	strcpy(top, "/tmp/test-safefile.XXXXXX");
	CHECK(mkdtemp(top) != NULL);
	chmod(top, 0755);
	put("victim", "root's secret\n", 0600);
	put("mine", "12345\n", 0644);

	/* "open": a directory someone else may write (mode 1777 here). */
	snprintf(path, sizeof path, "%s/open", top);
	CHECK(mkdir(path, 01777) == 0);
	chmod(path, 01777);
	snprintf(path, sizeof path, "%s/open/link", top);
	CHECK(symlink("../victim", path) == 0);
	snprintf(path, sizeof path, "%s/open/fifo", top);
	CHECK(mkfifo(path, 0666) == 0);
	snprintf(path, sizeof path, "%s/open/hard", top);
	{
		char victim[256];

		snprintf(victim, sizeof victim, "%s/victim", top);
		CHECK(link(victim, path) == 0);
	}
	put("open/plain", "hello\n", 0644);

	refused("open", "link", O_WRONLY | O_TRUNC, SAFEFILE_ANY_OWNER,
	    "symbolic link");
	refused("open", "link", O_WRONLY | O_CREAT | O_TRUNC,
	    SAFEFILE_ANY_OWNER, "symbolic link");
	refused("open", "fifo", O_RDONLY, SAFEFILE_ANY_OWNER,
	    "not a regular file");
	refused("open", "fifo", O_WRONLY, SAFEFILE_ANY_OWNER,
	    "not a regular file");
	refused("open", "hard", O_WRONLY | O_TRUNC, SAFEFILE_ANY_OWNER,
	    "links");
	refused("open", "plain", O_RDONLY | O_DIRECTORY, SAFEFILE_ANY_OWNER,
	    "directory");
	CHECK(size_of("victim") == 14);

	/* Owned by someone else than root or the owner named. */
	snprintf(path, sizeof path, "%s/open/plain", top);
	CHECK(chown(path, 4242, 4242) == 0);
	refused("open", "plain", O_RDONLY, 4343, "owned by uid 4242");
	text = safefile_read(path, 100, 4242, &len, &cause);
	CHECK(text != NULL && len == 6 && strcmp(text, "hello\n") == 0);
	free(text);
	text = safefile_read(path, 3, 4242, &len, &cause);
	CHECK(text == NULL && cause != NULL && strstr(cause, "larger") != NULL);
	free(cause);
	cause = NULL;

	/* O_TRUNC applies to a file that passed. */
	fd = safefile_open(path, O_WRONLY | O_TRUNC, 0, 4242, &cause);
	CHECK(fd != -1);
	if (fd != -1)
		close(fd);
	CHECK(size_of("open/plain") == 0);

	/* Root's own directory: a link there was put by root; followed. */
	snprintf(path, sizeof path, "%s/rootlink", top);
	CHECK(symlink("mine", path) == 0);
	text = safefile_read(path, 100, SAFEFILE_ANY_OWNER, NULL, &cause);
	CHECK(text != NULL && strcmp(text, "12345\n") == 0);
	free(text);
	/* ...but not into a FIFO of the open directory. */
	snprintf(path, sizeof path, "%s/rootfifo", top);
	CHECK(symlink("open/fifo", path) == 0);
	refused(".", "rootfifo", O_RDONLY, SAFEFILE_ANY_OWNER,
	    "not a regular file");
	/* nor a link in the open dir reached through root's link. */
	snprintf(path, sizeof path, "%s/rootlink2", top);
	CHECK(symlink("open/link", path) == 0);
	refused(".", "rootlink2", O_RDONLY, SAFEFILE_ANY_OWNER,
	    "symbolic link");

	/* Directories. */
	CHECK((dirfd = open(top, O_RDONLY | O_DIRECTORY)) != -1);
	fd = safefile_openat(dirfd, "open", O_RDONLY | O_DIRECTORY, 0,
	    SAFEFILE_ANY_OWNER, &cause);
	CHECK(fd != -1);
	if (fd != -1) {
		int fd2;

		fd2 = safefile_openat(fd, "link", O_RDONLY | O_DIRECTORY, 0,
		    SAFEFILE_ANY_OWNER, &cause);
		CHECK(fd2 == -1);
		free(cause);
		cause = NULL;
		fd2 = safefile_openat(fd, "../victim", O_RDONLY, 0,
		    SAFEFILE_ANY_OWNER, &cause);
		CHECK(fd2 == -1 && strstr(cause, "not a file name") != NULL);
		free(cause);
		cause = NULL;
		close(fd);
	}
	close(dirfd);

	snprintf(path, sizeof path, "rm -rf %s", top);
	CHECK(system(path) == 0);
	return (check_exit());
}
