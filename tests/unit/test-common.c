/*
 * common/'s small shared helpers: the atomic file writer (file.c) and fd
 * passing on a unix socket (sock.c).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "file.h"
#include "log.h"
#include "metrics.h"
#include "sock.h"
#include "xmalloc.h"

/* The whole content of path (NUL-terminated), or NULL. */
static char *
slurp(const char *path)
{
	char	buf[256];
	ssize_t	n;
	int	fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return (NULL);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		return (NULL);
	buf[n] = '\0';
	return (xstrdup(buf));
}

/* How many entries dir holds, "." and ".." aside. */
static int
entries(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir(dir)) == NULL)
		return (-1);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return (n);
}

/*
 * A new file and a replaced one get exactly their content and mode, no
 * temporary file stays, and a failure leaves the old content with a
 * one-line cause and errno.
 */
static void
test_file(void)
{
	char		 tmpl[] = "/tmp/test-common.XXXXXX", *dir, *path, *s;
	char		*cause = NULL;
	struct stat	 sb;

	CHECK((dir = mkdtemp(tmpl)) != NULL);
	xasprintf(&path, "%s/out.txt", dir);
	CHECK(file_write_atomic(path, "first\n", 6, 0640, (uid_t)-1,
	    (gid_t)-1, &cause) == 0);
	CHECK_STR((s = slurp(path)), "first\n");
	free(s);
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0640);
	CHECK(file_write_atomic(path, "second", 6, 0600, getuid(), getgid(),
	    NULL) == 0);
	CHECK_STR((s = slurp(path)), "second");
	free(s);
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0600);
	CHECK(file_write_atomic(path, "", 0, 0644, (uid_t)-1, (gid_t)-1,
	    NULL) == 0);
	CHECK(stat(path, &sb) == 0 && sb.st_size == 0);
	CHECK(entries(dir) == 1);

	/* A directory in the way: the rename fails, nothing is left. */
	free(path);
	xasprintf(&path, "%s/sub", dir);
	CHECK(mkdir(path, 0700) == 0);
	xasprintf(&s, "%s/inner", path);
	CHECK(mkdir(s, 0700) == 0);
	errno = 0;
	CHECK(file_write_atomic(path, "x", 1, 0644, (uid_t)-1, (gid_t)-1,
	    &cause) == -1);
	CHECK(errno != 0);
	CHECK(cause != NULL && strncmp(cause, "rename ", 7) == 0 &&
	    strstr(cause, path) != NULL);
	free(cause);
	cause = NULL;
	CHECK(entries(dir) == 2);
	CHECK(rmdir(s) == 0);
	CHECK(rmdir(path) == 0);
	free(s);
	free(path);

	/* No directory: the temporary file cannot even be made. */
	xasprintf(&path, "%s/none/out.txt", dir);
	errno = 0;
	CHECK(file_write_atomic(path, "x", 1, 0644, (uid_t)-1, (gid_t)-1,
	    &cause) == -1);
	CHECK(errno == ENOENT);
	CHECK(cause != NULL && strncmp(cause, "create ", 7) == 0 &&
	    strstr(cause, "No such file") != NULL);
	free(cause);
	free(path);

	xasprintf(&path, "%s/out.txt", dir);
	unlink(path);
	free(path);
	CHECK(rmdir(dir) == 0);
}

/*
 * sock_send_fd: the line arrives whole with a working fd on its first
 * byte, the sender keeps its own copy, and a full socket says EAGAIN.
 */
static void
test_send_fd(void)
{
	struct msghdr	 msg;
	struct cmsghdr	*cmsg;
	struct iovec	 iov[2], riov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	}		 cmsgbuf;
	char		 buf[64], big[65536];
	int		 sv[2], p[2], got = -1;
	ssize_t		 n;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	CHECK(pipe(p) == 0);
	iov[0].iov_base = "{\"fd\":1}";
	iov[0].iov_len = 8;
	iov[1].iov_base = "\n";
	iov[1].iov_len = 1;
	CHECK(sock_send_fd(sv[0], iov, 2, p[1]) == 9);
	CHECK(fcntl(p[1], F_GETFD) != -1);		/* still ours */

	memset(&msg, 0, sizeof msg);
	riov.iov_base = buf;
	riov.iov_len = sizeof buf;
	msg.msg_iov = &riov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof cmsgbuf.buf;
	n = recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC);
	CHECK(n == 9 && memcmp(buf, "{\"fd\":1}\n", 9) == 0);
	cmsg = CMSG_FIRSTHDR(&msg);
	CHECK(cmsg != NULL && cmsg->cmsg_type == SCM_RIGHTS);
	if (cmsg != NULL)
		memcpy(&got, CMSG_DATA(cmsg), sizeof got);
	CHECK(got != -1 && got != p[1]);
	CHECK(write(got, "z", 1) == 1);
	CHECK(read(p[0], buf, 1) == 1 && buf[0] == 'z');
	if (got != -1)
		close(got);

	/* Fill the socket: then EAGAIN, and no fd went anywhere. */
	memset(big, 'x', sizeof big);
	while (write(sv[0], big, sizeof big) > 0)
		;
	riov.iov_base = big;
	riov.iov_len = sizeof big;
	errno = 0;
	CHECK(sock_send_fd(sv[0], &riov, 1, p[1]) == -1);
	CHECK(errno == EAGAIN || errno == EWOULDBLOCK);

	/* A closed peer: EPIPE, and no SIGPIPE kills the test. */
	close(sv[1]);
	errno = 0;
	CHECK(sock_send_fd(sv[0], iov, 2, p[1]) == -1);
	CHECK(errno == EPIPE || errno == ECONNRESET);
	close(sv[0]);
	close(p[0]);
	close(p[1]);
}

/* Log fields: bare when safe, quoted and escaped otherwise. */
static void
test_log_fields(void)
{
	json_t	*f;
	char	*s;

	f = json_pack("{s:s,s:s,s:i,s:b,s:n,s:s}", "vm", "d1", "user",
	    "a b\"c", "pid", 42, "ok", 1, "gone", "reason", "");
	s = log_fields("vm.state", f);
	CHECK(strcmp(s, " event=vm.state vm=d1 user=\"a b\\\"c\" pid=42 "
	    "ok=true reason=\"\"") == 0);
	free(s);
	json_decref(f);
	s = log_fields("x=y", NULL);
	CHECK(strcmp(s, " event=\"x=y\"") == 0);
	free(s);
}

/* The exposition writer: escapes, integers, histograms cumulative. */
static void
test_metrics(void)
{
	static const double	 b[] = { 0.1, 1 };
	struct metrics_hist	 h = { b, 2, { 0 }, 0, 0 };
	struct textbuf		 tb = { 0 };
	char			*s;

	metrics_family(&tb, "a_total", "counter", "A \\ b\nc.");
	metrics_sample(&tb, "a_total", 3, NULL);
	metrics_sample(&tb, "a_total", 0.5, "vm", "x\"y\\z\n", "k", "v",
	    NULL);
	metrics_hist_observe(&h, 0.05);
	metrics_hist_observe(&h, 0.5);
	metrics_hist_observe(&h, 7);
	metrics_hist_write(&tb, "h", &h);
	metrics_scalar(&tb, "g", "gauge", "G.", 2);
	s = textbuf_finish(&tb);
	CHECK(strcmp(s,
	    "# HELP a_total A \\\\ b\\nc.\n"
	    "# TYPE a_total counter\n"
	    "a_total 3\n"
	    "a_total{vm=\"x\\\"y\\\\z\\n\",k=\"v\"} 0.5\n"
	    "h_bucket{le=\"0.1\"} 1\n"
	    "h_bucket{le=\"1\"} 2\n"
	    "h_bucket{le=\"+Inf\"} 3\n"
	    "h_sum 7.55\n"
	    "h_count 3\n"
	    "# HELP g G.\n"
	    "# TYPE g gauge\n"
	    "g 2\n") == 0);
	free(s);
}

int
main(void)
{
	test_file();
	test_send_fd();
	test_log_fields();
	test_metrics();
	return (check_exit());
}
