/*
 * Helpers shared by the benchmark programs.
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define LCONN_MAXLINE	(64 * 1024 * 1024)
/*
 * No reply for this long: give up. A peer that died may not close the
 * connection when a child inherited its end (QEMU does, from qmpd).
 */
#define LCONN_TIMEOUT_MS	(300 * 1000)

uint64_t
now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

void
fatal(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", program_invocation_short_name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(saved));
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", program_invocation_short_name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* A connected unix stream socket, or -1 with errno set. */
int
unix_connect(const char *path)
{
	struct sockaddr_un	sun;
	int			fd, saved;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return (-1);
	}
	return (fd);
}

void
lconn_init(struct lconn *c, int fd)
{
	struct timeval	tv = { LCONN_TIMEOUT_MS / 1000, 0 };

	/* A timeout on the socket, not a poll per read: no extra syscall. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == -1)
		fatal("setsockopt SO_RCVTIMEO");
	c->fd = fd;
	c->size = 64 * 1024;
	if ((c->buf = malloc(c->size)) == NULL)
		fatal("malloc");
	c->off = c->len = 0;
}

/* Connect to qmpd's admin socket and read its hello, or exit. */
void
qmpd_connect(struct lconn *c, const char *sock)
{
	char	*line;
	int	 fd;

	if ((fd = unix_connect(sock)) == -1)
		fatal("connect %s", sock);
	lconn_init(c, fd);
	if ((line = lconn_readline(c, NULL)) == NULL ||
	    strstr(line, "\"qdesk\"") == NULL)
		fatalx("no hello from qmpd");
}

void
lconn_close(struct lconn *c)
{
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

/*
 * The next line, NUL-terminated, without its newline; valid until the
 * next call. NULL on EOF. Reads block, for LCONN_TIMEOUT_MS at most
 * (SO_RCVTIMEO, set by lconn_init).
 */
char *
lconn_readline(struct lconn *c, size_t *lenp)
{
	char	*nl, *line;
	ssize_t	 n;
	size_t	 scan = c->off;

	for (;;) {
		nl = memchr(c->buf + scan, '\n', c->len - scan);
		if (nl != NULL) {
			*nl = '\0';
			line = c->buf + c->off;
			if (lenp != NULL)
				*lenp = nl - line;
			c->off = nl - c->buf + 1;
			return (line);
		}
		scan = c->len;
		if (c->off > 0 && c->off == c->len) {
			c->off = c->len = scan = 0;
		} else if (c->len == c->size) {
			if (c->off > 0) {
				memmove(c->buf, c->buf + c->off,
				    c->len - c->off);
				c->len -= c->off;
				scan -= c->off;
				c->off = 0;
			} else {
				if (c->size >= LCONN_MAXLINE)
					fatalx("line too long");
				c->size *= 2;
				if ((c->buf = realloc(c->buf, c->size)) ==
				    NULL)
					fatal("realloc");
			}
		}
		n = read(c->fd, c->buf + c->len, c->size - c->len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			fatalx("no reply in %d s", LCONN_TIMEOUT_MS / 1000);
		if (n == -1)
			fatal("read");
		if (n == 0)
			return (NULL);
		c->len += n;
	}
}

void
lconn_write(struct lconn *c, const char *s, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		n = write(c->fd, s, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			fatal("write");
		s += n;
		len -= n;
	}
}

int
pidfd_open_pid(pid_t pid)
{
	return (syscall(SYS_pidfd_open, pid, 0));
}

/* Wait until the process behind pidfd has exited; 0, or -1 on timeout. */
int
pidfd_wait(int pidfd, int timeout_ms)
{
	struct pollfd	pfd = { .fd = pidfd, .events = POLLIN };
	int		rc;

	do
		rc = poll(&pfd, 1, timeout_ms);
	while (rc == -1 && errno == EINTR);
	return (rc == 1 ? 0 : -1);
}

/* Become user, as qmpd does for QEMU (supplementary groups included). */
int
drop_privs(const char *user)
{
	struct passwd	*pw;
	gid_t		 groups[64];
	int		 n = 64;

	if ((pw = getpwnam(user)) == NULL) {
		errno = ENOENT;
		return (-1);
	}
	if (getgrouplist(user, pw->pw_gid, groups, &n) == -1)
		n = 0;
	if (setgroups(n, groups) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		return (-1);
	return (0);
}

int
cmp_u64(const void *a, const void *b)
{
	uint64_t	x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x < y ? -1 : x > y);
}

/* The p-th percentile (0..100) of n samples, nearest rank; sorts v. */
uint64_t
pct(uint64_t *v, size_t n, double p)
{
	size_t	rank;

	if (n == 0)
		return (0);
	qsort(v, n, sizeof *v, cmp_u64);
	rank = (size_t)(p / 100.0 * n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (v[rank - 1]);
}

/* The integer "id" of a reply line, or -1 (hello, events). */
long long
reply_id(const char *line)
{
	if (strncmp(line, "{\"id\":", 6) != 0)
		return (-1);
	return (strtoll(line + 6, NULL, 10));
}

/* Replies are {"id":N,"return":...} or {"id":N,"error":{"class":...}}. */
int
reply_is_error(const char *line)
{
	const char	*p;

	if ((p = strchr(line, ',')) == NULL)
		return (1);
	return (strncmp(p, ",\"error\":", 9) == 0);
}
