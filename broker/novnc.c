/*
 * noVNC, from Debian's novnc package, for the browser console: its core/
 * and vendor/ trees (the RFB client and the zlib it imports, ES modules)
 * are read once at start into memory and served under /novnc/, so a
 * request never waits on the disk and nothing comes from a CDN. Only
 * regular files owned by root below the package's directory are taken
 * (safefile.c); a broker without the package runs, and the console page
 * says what to install.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "safefile.h"
#include "xmalloc.h"

#define NOVNC_DIR		"/usr/share/novnc"
#define NOVNC_PREFIX		"/novnc/"
#define NOVNC_FILE_MAX		(1024 * 1024)
#define NOVNC_TOTAL_MAX		(16 * 1024 * 1024)
#define NOVNC_DEPTH		4	/* vendor/pako/lib/zlib/x.js */

struct novnc_file {
	char			*path;		/* "core/rfb.js" */
	const char		*type;
	char			*data;
	size_t			 size;
};

static struct novnc_file	*novnc_files;
static size_t			 novnc_nfiles;
static size_t			 novnc_total;

/* What the served files are, by their ending. */
static const struct {
	const char	*ext;
	const char	*type;
} novnc_types[] = {
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
	{ ".svg", "image/svg+xml" },
	{ ".png", "image/png" },
};

static const char *
novnc_type(const char *name)
{
	size_t	i, n = strlen(name), e;

	for (i = 0; i < nitems(novnc_types); i++) {
		e = strlen(novnc_types[i].ext);
		if (n > e && strcmp(name + n - e, novnc_types[i].ext) == 0)
			return (novnc_types[i].type);
	}
	return (NULL);
}

/* Read the files below dirfd (called prefix) into the table. */
static int
novnc_walk(int dirfd, const char *prefix, int depth, char **cause)
{
	DIR		*d;
	struct dirent	*de;
	char		*path, *data;
	const char	*type;
	size_t		 len;
	int		 fd, rc = 0;

	if ((d = fdopendir(dirfd)) == NULL) {
		close(dirfd);
		xasprintf(cause, "%s/%s: cannot list it", NOVNC_DIR, prefix);
		return (-1);
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		xasprintf(&path, "%s/%s", prefix, de->d_name);
		if (de->d_type == DT_DIR && depth < NOVNC_DEPTH) {
			if ((fd = safefile_openat(dirfd, de->d_name,
			    O_RDONLY | O_DIRECTORY, 0, 0, cause)) == -1)
				rc = -1;
			else
				rc = novnc_walk(fd, path, depth + 1, cause);
		} else if (de->d_type == DT_REG &&
		    (type = novnc_type(de->d_name)) != NULL) {
			if ((fd = safefile_openat(dirfd, de->d_name, O_RDONLY,
			    0, 0, cause)) == -1 || (data = safefile_read_fd(fd,
			    de->d_name, NOVNC_FILE_MAX, &len, cause)) == NULL)
				rc = -1;
			else if ((novnc_total += len) > NOVNC_TOTAL_MAX) {
				xasprintf(cause, "%s: over %d MiB in all",
				    NOVNC_DIR, NOVNC_TOTAL_MAX >> 20);
				free(data);
				rc = -1;
			} else {
				novnc_files = xrealloc(novnc_files,
				    (novnc_nfiles + 1) * sizeof *novnc_files);
				novnc_files[novnc_nfiles].path = path;
				novnc_files[novnc_nfiles].type = type;
				novnc_files[novnc_nfiles].data = data;
				novnc_files[novnc_nfiles].size = len;
				novnc_nfiles++;
				path = NULL;
			}
			if (fd != -1)
				close(fd);
		}
		free(path);
	}
	closedir(d);
	return (rc);
}

/*
 * Read noVNC's core/ and vendor/ at start. Without the package the
 * console stays off (a warning here, a clear answer on the page).
 */
void
novnc_load(void)
{
	static const char	*trees[] = { "core", "vendor" };
	char			*cause = NULL;
	size_t			 i;
	int			 top, fd;

	if ((top = open(NOVNC_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1) {
		log_warnx("%s is missing: the browser console is off (apt-get "
		    "install novnc)", NOVNC_DIR);
		return;
	}
	for (i = 0; i < nitems(trees); i++) {
		if ((fd = safefile_openat(top, trees[i], O_RDONLY |
		    O_DIRECTORY, 0, 0, &cause)) == -1 ||
		    novnc_walk(fd, trees[i], 1, &cause) != 0) {
			log_warnx("noVNC: %s: the browser console is off",
			    cause);
			free(cause);
			novnc_unload();
			break;
		}
	}
	close(top);
	if (novnc_nfiles > 0)
		log_debug("noVNC: %zu files, %zu bytes from %s", novnc_nfiles,
		    novnc_total, NOVNC_DIR);
}

void
novnc_unload(void)
{
	size_t	i;

	for (i = 0; i < novnc_nfiles; i++) {
		free(novnc_files[i].path);
		free(novnc_files[i].data);
	}
	free(novnc_files);
	novnc_files = NULL;
	novnc_nfiles = novnc_total = 0;
}

/* Whether noVNC is there to serve. */
int
novnc_available(void)
{
	return (novnc_nfiles > 0);
}

/* GET /novnc/...: one of noVNC's files, cached by the browser a while. */
void
novnc_get(struct http_call *call)
{
	const char	*path = call->path + strlen(NOVNC_PREFIX);
	size_t		 i;

	if (strncmp(call->path, NOVNC_PREFIX, strlen(NOVNC_PREFIX)) != 0)
		path = "";
	for (i = 0; i < novnc_nfiles; i++) {
		if (strcmp(novnc_files[i].path, path) == 0) {
			http_header(call, "Cache-Control", "max-age=3600");
			http_reply_data(call, 200, novnc_files[i].type,
			    novnc_files[i].data, novnc_files[i].size);
			return;
		}
	}
	if (!novnc_available())
		http_reply_error(call, 501, "the browser console is not "
		    "installed on this broker (Debian package novnc)");
	else
		http_reply_error(call, 404, "no such page: %s", call->path);
}
