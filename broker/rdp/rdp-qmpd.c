/*
 * qmpd for the session threads: one request on a fresh unix connection,
 * read with a timeout. A thread never shares the broker's own qmpd
 * connection (that one belongs to the loop), and vm.vnc / desktop.vnc
 * want a connection of their own anyway: the VNC fd arrives with SCM_RIGHTS
 * on the reply line's first byte.
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "proto.h"
#include "rdp-int.h"
#include "sock.h"
#include "xmalloc.h"

#define RDP_QMPD_LINE_MAX	(256 * 1024)

struct rdp_qmpd_conn {
	int		 fd;
	char		*buf;
	size_t		 len;
	size_t		 size;
	int		 passed;	/* an fd that came with SCM_RIGHTS */
	time_t		 deadline;
};

/* Close the connection and any fd that came but was not taken. */
static void
rdp_qmpd_close(struct rdp_qmpd_conn *c)
{
	if (c->fd != -1)
		close(c->fd);
	if (c->passed != -1)
		close(c->passed);
	free(c->buf);
}

/* Receive more bytes, keeping the first fd that rides along. */
static int
rdp_qmpd_recv(struct rdp_qmpd_conn *c, char **cause)
{
	struct pollfd	 pfd = { .fd = c->fd, .events = POLLIN };
	ssize_t		 n;
	int		 left, npassed = c->passed != -1;

	left = (int)(c->deadline - time(NULL));
	if (left <= 0 || poll(&pfd, 1, left * 1000) <= 0) {
		xasprintf(cause, "qmpd did not answer");
		return (-1);
	}
	if (c->size - c->len < 4096) {
		if (c->size >= RDP_QMPD_LINE_MAX) {
			xasprintf(cause, "qmpd sent a line too long");
			return (-1);
		}
		c->size = c->size == 0 ? 8192 : c->size * 2;
		c->buf = xrealloc(c->buf, c->size);
	}
	n = sock_recv_fds(c->fd, c->buf + c->len, c->size - c->len - 1, 0,
	    &c->passed, &npassed, 1);
	if (n == -1) {
		xasprintf(cause, "qmpd connection: %s", strerror(errno));
		return (-1);
	}
	if (n == 0) {
		xasprintf(cause, "qmpd closed the connection");
		return (-1);
	}
	c->len += n;
	return (0);
}

/* The next line as JSON; the line is consumed from the buffer. */
static json_t *
rdp_qmpd_line(struct rdp_qmpd_conn *c, char **cause)
{
	json_error_t	 jerr;
	json_t		*j;
	char		*nl;
	size_t		 used;

	while ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
		if (rdp_qmpd_recv(c, cause) != 0)
			return (NULL);
	}
	used = nl - c->buf + 1;
	j = json_loadb(c->buf, used - 1, 0, &jerr);
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	if (j == NULL)
		xasprintf(cause, "qmpd sent bad JSON: %s", jerr.text);
	return (j);
}

/*
 * Send cmd with args (stolen) and wait for its answer. On an error reply,
 * *errclass is set to a copy of the class (the caller frees it) and
 * *cause to qmpd's description.
 */
json_t *
rdp_qmpd_call(const char *path, const char *cmd, json_t *args, int timeout,
    int *fdp, char **errclass, char **cause)
{
	struct rdp_qmpd_conn	 c = { .fd = -1, .passed = -1 };
	struct sockaddr_un	 sun;
	json_t			*j = NULL, *ret = NULL, *id, *err;
	char			*line = NULL;
	size_t			 off, len;
	ssize_t			 n;

	*errclass = NULL;
	if (fdp != NULL)
		*fdp = -1;
	c.deadline = time(NULL) + timeout;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof sun.sun_path) >=
	    sizeof sun.sun_path) {
		xasprintf(cause, "qmpd socket path too long: %s", path);
		goto out;
	}
	if ((c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(c.fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		xasprintf(cause, "cannot reach qmpd at %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if ((j = rdp_qmpd_line(&c, cause)) == NULL)
		goto out;
	if (proto_classify(j) != PROTO_MSG_HELLO) {
		xasprintf(cause, "%s does not greet as qmpd", path);
		goto out;
	}
	json_decref(j);
	j = NULL;

	id = json_integer(1);
	line = proto_request(id, cmd, args);
	json_decref(id);
	json_decref(args);	/* proto_request took its own reference */
	args = NULL;
	len = strlen(line);
	line = xrealloc(line, len + 2);
	line[len++] = '\n';
	for (off = 0; off < len; off += n) {
		n = send(c.fd, line + off, len - off, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0) {
			xasprintf(cause, "qmpd connection: %s",
			    strerror(errno));
			goto out;
		}
	}

	/* Skip anything that is not our answer (events). */
	for (;;) {
		if ((j = rdp_qmpd_line(&c, cause)) == NULL)
			goto out;
		switch (proto_classify(j)) {
		case PROTO_MSG_RETURN:
			ret = json_incref(json_object_get(j, "return"));
			if (fdp != NULL) {
				*fdp = c.passed;
				c.passed = -1;
			}
			goto out;
		case PROTO_MSG_ERROR:
			err = json_object_get(j, "error");
			*errclass = xstrdup(json_string_value(
			    json_object_get(err, "class")) != NULL ?
			    json_string_value(json_object_get(err, "class")) :
			    ERR_INTERNAL);
			xasprintf(cause, "%s", json_string_value(
			    json_object_get(err, "desc")) != NULL ?
			    json_string_value(json_object_get(err, "desc")) :
			    "qmpd gave no reason");
			goto out;
		default:
			json_decref(j);
			j = NULL;
			break;
		}
	}
out:
	json_decref(args);
	json_decref(j);
	free(line);
	rdp_qmpd_close(&c);
	return (ret);
}

/*
 * The same request without waiting, for a session's loop that must go on
 * serving its client meanwhile: rdp_qmpd_start connects and sends (the
 * greeting is read with the answer: qmpd takes a request sent before it
 * greeted), the loop polls rdp_qmpd_req_fd and calls rdp_qmpd_req_read
 * when it is readable or the deadline has passed.
 */
struct rdp_qmpd_req {
	struct rdp_qmpd_conn	 c;
};

struct rdp_qmpd_req *
rdp_qmpd_start(const char *path, const char *cmd, json_t *args, int timeout,
    char **cause)
{
	struct rdp_qmpd_req	*r;
	struct sockaddr_un	 sun;
	json_t			*id;
	char			*line;
	size_t			 off, len;
	ssize_t			 n;

	r = xcalloc(1, sizeof *r);
	r->c.fd = -1;
	r->c.passed = -1;
	r->c.deadline = time(NULL) + timeout;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof sun.sun_path) >=
	    sizeof sun.sun_path) {
		xasprintf(cause, "qmpd socket path too long: %s", path);
		json_decref(args);
		rdp_qmpd_req_free(r);
		return (NULL);
	}
	/* A unix connect does not wait for the peer's accept. */
	if ((r->c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(r->c.fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		xasprintf(cause, "cannot reach qmpd at %s: %s", path,
		    strerror(errno));
		json_decref(args);
		rdp_qmpd_req_free(r);
		return (NULL);
	}
	id = json_integer(1);
	line = proto_request(id, cmd, args);
	json_decref(id);
	json_decref(args);
	len = strlen(line);
	line = xrealloc(line, len + 2);
	line[len++] = '\n';
	/* A fresh socket's buffer takes one request line whole. */
	for (off = 0; off < len; off += n) {
		n = send(r->c.fd, line + off, len - off, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0) {
			xasprintf(cause, "qmpd connection: %s",
			    strerror(errno));
			free(line);
			rdp_qmpd_req_free(r);
			return (NULL);
		}
	}
	free(line);
	return (r);
}

int
rdp_qmpd_req_fd(const struct rdp_qmpd_req *r)
{
	return (r->c.fd);
}

/*
 * What has arrived: 1 with the answer (*ret, or *errclass and *cause as
 * rdp_qmpd_call gives them; *fdp the fd that came with it), 0 when it is
 * not complete yet, -1 when the connection failed or the deadline passed
 * (*cause).
 */
int
rdp_qmpd_req_read(struct rdp_qmpd_req *r, json_t **ret, int *fdp,
    char **errclass, char **cause)
{
	struct rdp_qmpd_conn	*c = &r->c;
	json_error_t		 jerr;
	json_t			*j, *err;
	char			*nl;
	size_t			 used;
	ssize_t			 n;
	int			 npassed;

	*ret = NULL;
	*errclass = NULL;
	*fdp = -1;
	for (;;) {
		while ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
			if (c->size - c->len < 4096) {
				if (c->size >= RDP_QMPD_LINE_MAX) {
					xasprintf(cause, "qmpd sent a line "
					    "too long");
					return (-1);
				}
				c->size = c->size == 0 ? 8192 : c->size * 2;
				c->buf = xrealloc(c->buf, c->size);
			}
			npassed = c->passed != -1;
			n = sock_recv_fds(c->fd, c->buf + c->len, c->size -
			    c->len - 1, MSG_DONTWAIT, &c->passed, &npassed, 1);
			if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
				if (time(NULL) < c->deadline)
					return (0);
				xasprintf(cause, "qmpd did not answer");
				return (-1);
			}
			if (n <= 0) {
				xasprintf(cause, n == 0 ? "qmpd closed the "
				    "connection" : "qmpd connection: %s",
				    strerror(errno));
				return (-1);
			}
			c->len += n;
		}
		used = nl - c->buf + 1;
		j = json_loadb(c->buf, used - 1, 0, &jerr);
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		if (j == NULL) {
			xasprintf(cause, "qmpd sent bad JSON: %s", jerr.text);
			return (-1);
		}
		/* The greeting and events come before our answer. */
		switch (proto_classify(j)) {
		case PROTO_MSG_RETURN:
			*ret = json_incref(json_object_get(j, "return"));
			*fdp = c->passed;
			c->passed = -1;
			json_decref(j);
			return (1);
		case PROTO_MSG_ERROR:
			err = json_object_get(j, "error");
			*errclass = xstrdup(json_string_value(
			    json_object_get(err, "class")) != NULL ?
			    json_string_value(json_object_get(err, "class")) :
			    ERR_INTERNAL);
			xasprintf(cause, "%s", json_string_value(
			    json_object_get(err, "desc")) != NULL ?
			    json_string_value(json_object_get(err, "desc")) :
			    "qmpd gave no reason");
			json_decref(j);
			return (1);
		default:
			json_decref(j);
			break;
		}
	}
}

void
rdp_qmpd_req_free(struct rdp_qmpd_req *r)
{
	if (r == NULL)
		return;
	rdp_qmpd_close(&r->c);
	free(r);
}
