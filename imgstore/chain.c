/*
 * Backing chain walker: from a top image down to its base, one header at
 * a time, refusing any link that could make QEMU open something outside
 * the image store.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "compat.h"
#include "qcow2.h"
#include "xmalloc.h"

#define CHAIN_VIS_MAX	120	/* characters of an untrusted string shown */

/* Escape and cut an untrusted string so it can go into a one-line cause. */
char *
chain_vis(const char *s)
{
	static const char	 hex[] = "0123456789abcdef";
	char			*out;
	size_t			 i, j = 0;

	out = xmalloc(CHAIN_VIS_MAX * 4 + 8);
	for (i = 0; s[i] != '\0' && i < CHAIN_VIS_MAX; i++) {
		unsigned char	c = s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[j++] = c;
		else {
			out[j++] = '\\';
			out[j++] = 'x';
			out[j++] = hex[c >> 4];
			out[j++] = hex[c & 15];
		}
	}
	if (s[i] != '\0') {
		memcpy(out + j, "...", 3);
		j += 3;
	}
	out[j] = '\0';
	return (out);
}

/* A store file name: no directory, no protocol, not hidden, printable. */
int
chain_bare_name(const char *file)
{
	const char	*p;

	if (file[0] == '\0' || file[0] == '.' || strlen(file) > NAME_MAX)
		return (0);
	for (p = file; *p != '\0'; p++) {
		if (*p == '/' || *p == ':' || (unsigned char)*p < 0x20 ||
		    *p == 0x7f)
			return (0);
	}
	return (1);
}

/* Returns 1 if path has a ".." component. */
static int
chain_has_dotdot(const char *path)
{
	const char	*p = path;

	for (;;) {
		if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
			return (1);
		if ((p = strchr(p, '/')) == NULL)
			return (0);
		p++;
	}
}

/*
 * Decide what a backing file string designates: only a bare name, or an
 * absolute path naming a file directly in the store, is accepted.
 */
char *
chain_backing_file(const char *dir, const char *backing, char **cause)
{
	const char	*p, *colon, *slash, *rest;
	char		*v;
	size_t		 dlen;

	v = chain_vis(backing);
	if (backing[0] == '\0') {
		xasprintf(cause, "empty backing file name");
		goto fail;
	}
	for (p = backing; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			xasprintf(cause, "backing file \"%s\" has control "
			    "characters in its name", v);
			goto fail;
		}
	}
	if (strncmp(backing, "json:", 5) == 0) {
		xasprintf(cause, "backing file \"%s\" uses the json: "
		    "pseudo-protocol; only images in the store may be "
		    "backing files", v);
		goto fail;
	}
	/* QEMU takes "proto:..." before any '/' as a protocol. */
	colon = strchr(backing, ':');
	slash = strchr(backing, '/');
	if (colon != NULL && (slash == NULL || colon < slash)) {
		xasprintf(cause, "backing file \"%s\" uses the %.*s: "
		    "protocol; only images in the store may be backing files",
		    v, (int)(colon - backing > 32 ? 32 : colon - backing),
		    backing);
		goto fail;
	}
	if (colon != NULL) {
		xasprintf(cause, "backing file \"%s\" has a ':' in its name",
		    v);
		goto fail;
	}
	if (chain_has_dotdot(backing)) {
		xasprintf(cause, "backing file \"%s\" has a '..' component",
		    v);
		goto fail;
	}
	rest = backing;
	if (backing[0] == '/') {
		dlen = dir != NULL ? strlen(dir) : 0;
		if (dir == NULL || dlen == 0 ||
		    strncmp(backing, dir, dlen) != 0 || backing[dlen] != '/' ||
		    !chain_bare_name(backing + dlen + 1)) {
			xasprintf(cause, "backing file \"%s\" is an absolute "
			    "path outside the image store", v);
			goto fail;
		}
		rest = backing + dlen + 1;
	}
	if (strchr(rest, '/') != NULL) {
		xasprintf(cause, "backing file \"%s\" is not directly in the "
		    "image store", v);
		goto fail;
	}
	if (!chain_bare_name(rest)) {
		xasprintf(cause, "backing file \"%s\" is a hidden or "
		    "temporary file, or its name is too long", v);
		goto fail;
	}
	free(v);
	return (xstrdup(rest));
fail:
	free(v);
	return (NULL);
}

void
chain_free(struct chain *c)
{
	u_int	i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++) {
		free(c->links[i].name);
		free(c->links[i].file);
		free(c->links[i].path);
	}
	free(c->links);
	free(c);
}

/* Append a link for file to the chain. */
static struct chain_link *
chain_add(struct chain *c, const char *dir, const char *file,
    const char *format, uint64_t size)
{
	struct chain_link	*l;

	c->links = xrealloc(c->links, (c->n + 1) * sizeof *c->links);
	l = &c->links[c->n++];
	memset(l, 0, sizeof *l);
	l->file = xstrdup(file);
	if (dir != NULL)
		xasprintf(&l->path, "%s/%s", dir, file);
	else
		l->path = xstrdup(file);
	strlcpy(l->format, format, sizeof l->format);
	l->size = size;
	return (l);
}

/*
 * Walk from file down to the base through io, checking each link before
 * following it; the seen[] identities catch cycles, hard links included.
 */
int
chain_walk_io(const struct chain_io *io, const char *dir, const char *file,
    const char *format, struct chain **out, char **cause)
{
	struct chain		*c;
	struct chain_stat	 st, seen[CHAIN_MAX_DEPTH];
	struct qcow2_info	 info;
	uint8_t			*buf;
	char			*name, *fmt, *next, *why = NULL, *v;
	ssize_t			 got;
	u_int			 i;

	*out = NULL;
	if (!chain_bare_name(file)) {
		v = chain_vis(file);
		xasprintf(cause, "\"%s\" is not a file name in the image "
		    "store", v);
		free(v);
		return (-1);
	}
	c = xcalloc(1, sizeof *c);
	buf = xmalloc(CHAIN_READ_SIZE);
	name = xstrdup(file);
	fmt = xstrdup(format);
	for (;;) {
		if (strcmp(fmt, "qcow2") != 0 && strcmp(fmt, "raw") != 0) {
			v = chain_vis(fmt);
			xasprintf(cause, "%s: unsupported format \"%s\" (only "
			    "qcow2 and raw)", name, v);
			free(v);
			goto fail;
		}
		if (c->n == CHAIN_MAX_DEPTH) {
			xasprintf(cause, "%s: backing chain deeper than %d "
			    "images", file, CHAIN_MAX_DEPTH);
			goto fail;
		}
		memset(&st, 0, sizeof st);
		got = io->read(io->arg, name, buf,
		    strcmp(fmt, "qcow2") == 0 ? CHAIN_READ_SIZE : 0, &st,
		    &why);
		if (got < 0) {
			if (c->n == 0)
				xasprintf(cause, "%s", why);
			else
				xasprintf(cause, "%s: backing file: %s",
				    c->links[c->n - 1].file, why);
			goto fail;
		}
		if (st.type != CHAIN_REG) {
			xasprintf(cause, "%s%s%s is %s, not a regular file",
			    c->n != 0 ? c->links[c->n - 1].file : "",
			    c->n != 0 ? ": backing file " : "", name,
			    st.type == CHAIN_SYMLINK ? "a symbolic link" :
			    "a device or special file");
			goto fail;
		}
		for (i = 0; i < c->n; i++) {
			if (seen[i].dev != st.dev || seen[i].ino != st.ino)
				continue;
			if (c->n == 1)
				xasprintf(cause, "%s: backing file %s loops "
				    "back to the image itself", file, name);
			else
				xasprintf(cause, "%s: backing chain has a "
				    "cycle: %s backs onto %s again",
				    file, c->links[c->n - 1].file, name);
			goto fail;
		}
		seen[c->n] = st;

		if (strcmp(fmt, "raw") == 0) {
			chain_add(c, dir, name, fmt, st.size);
			break;
		}
		if (qcow2_parse_header(buf, got, &info, &why) != 0) {
			xasprintf(cause, "%s: %s", name, why);
			goto fail;
		}
		chain_add(c, dir, name, fmt, info.size);
		if (!info.has_backing)
			break;
		if (!info.has_backing_format) {
			v = chain_vis(info.backing_file);
			xasprintf(cause, "%s: backing file \"%s\" has no "
			    "backing format (QEMU would probe it)", name, v);
			free(v);
			goto fail;
		}
		if ((next = chain_backing_file(dir, info.backing_file,
		    &why)) == NULL) {
			xasprintf(cause, "%s: %s", name, why);
			goto fail;
		}
		free(name);
		name = next;
		free(fmt);
		fmt = xstrdup(info.backing_format);
	}
	free(name);
	free(fmt);
	free(buf);
	*out = c;
	return (0);
fail:
	free(why);
	free(name);
	free(fmt);
	free(buf);
	chain_free(c);
	return (-1);
}

/* Fill a chain_stat from a struct stat. */
static void
chain_fill_stat(struct chain_stat *cs, const struct stat *sb)
{
	if (S_ISREG(sb->st_mode))
		cs->type = CHAIN_REG;
	else if (S_ISLNK(sb->st_mode))
		cs->type = CHAIN_SYMLINK;
	else
		cs->type = CHAIN_OTHER;
	cs->dev = sb->st_dev;
	cs->ino = sb->st_ino;
	cs->size = sb->st_size;
}

/* Read the start of an open file, up to len bytes. */
static ssize_t
chain_pread(int fd, uint8_t *buf, size_t len)
{
	size_t	off = 0;
	ssize_t	n;

	while (off < len) {
		n = pread(fd, buf + off, len - off, off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return (-1);
		if (n == 0)
			break;
		off += n;
	}
	return (off);
}

/*
 * Read a file of the store directory (an fd in arg): lstat first so that
 * a device or fifo is never even opened, then open without following
 * links and check it is still the file that was looked at.
 */
static ssize_t
chain_file_read(void *arg, const char *file, uint8_t *buf, size_t len,
    struct chain_stat *st, char **cause)
{
	int		 dirfd = *(int *)arg, fd;
	struct stat	 sb, sb2;
	ssize_t		 n;

	if (fstatat(dirfd, file, &sb, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT)
			xasprintf(cause, "%s is missing from the image store",
			    file);
		else
			xasprintf(cause, "%s: %s", file, strerror(errno));
		return (-1);
	}
	chain_fill_stat(st, &sb);
	if (st->type != CHAIN_REG)
		return (0);
	fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC);
	if (fd == -1) {
		xasprintf(cause, "%s: %s", file, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &sb2) == -1 || sb2.st_dev != sb.st_dev ||
	    sb2.st_ino != sb.st_ino || !S_ISREG(sb2.st_mode)) {
		xasprintf(cause, "%s changed while it was read", file);
		close(fd);
		return (-1);
	}
	chain_fill_stat(st, &sb2);
	n = chain_pread(fd, buf, len);
	if (n == -1)
		xasprintf(cause, "%s: %s", file, strerror(errno));
	close(fd);
	return (n);
}

/* Walk a chain on the files of dir, through a directory fd. */
int
chain_walk(const char *dir, const char *file, const char *format,
    struct chain **out, char **cause)
{
	struct chain_io	 io;
	char		*real;
	int		 dirfd, rc;

	*out = NULL;
	if ((real = realpath(dir, NULL)) == NULL) {
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		return (-1);
	}
	if ((dirfd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", real, strerror(errno));
		free(real);
		return (-1);
	}
	io.read = chain_file_read;
	io.arg = &dirfd;
	rc = chain_walk_io(&io, real, file, format, out, cause);
	close(dirfd);
	free(real);
	return (rc);
}

/*
 * Check an image outside the store before its bytes are copied in: it
 * must stand alone, since qemu-img convert would read any backing file,
 * wherever it points.
 */
int
chain_check_import(const char *path, const char *format, uint64_t *size,
    char **cause)
{
	struct stat	sb;
	int		fd, rc;

	if (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0) {
		xasprintf(cause, "unsupported format (only qcow2 and raw)");
		return (-1);
	}
	if (stat(path, &sb) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	if (!S_ISREG(sb.st_mode)) {
		xasprintf(cause, "%s is not a regular file", path);
		return (-1);
	}
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	rc = chain_check_import_fd(fd, path, format, size, cause);
	close(fd);
	return (rc);
}

/*
 * The same on a file already open (the daemon hands qemu-img that very
 * file), named path in causes.
 */
int
chain_check_import_fd(int fd, const char *path, const char *format,
    uint64_t *size, char **cause)
{
	struct qcow2_info	 info;
	struct stat		 sb;
	uint8_t			*buf;
	ssize_t			 n;
	char			*why = NULL, *v;

	if (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0) {
		xasprintf(cause, "unsupported format (only qcow2 and raw)");
		return (-1);
	}
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
		xasprintf(cause, "%s is not a regular file", path);
		return (-1);
	}
	buf = xmalloc(CHAIN_READ_SIZE);
	if ((n = chain_pread(fd, buf, CHAIN_READ_SIZE)) == -1) {
		xasprintf(cause, "%s: cannot read", path);
		goto fail;
	}
	if (strcmp(format, "raw") == 0) {
		*size = sb.st_size;
		free(buf);
		return (0);
	}
	if (qcow2_parse_header(buf, n, &info, &why) != 0) {
		xasprintf(cause, "%s: %s", path, why);
		free(why);
		goto fail;
	}
	if (info.has_backing) {
		v = chain_vis(info.backing_file);
		xasprintf(cause, "%s has a backing file (\"%s\"); import a "
		    "standalone image (qemu-img convert it first)", path, v);
		free(v);
		goto fail;
	}
	*size = info.size;
	free(buf);
	return (0);
fail:
	free(buf);
	return (-1);
}
