/*
 * The CLI's side of the admin socket: plain blocking I/O, one request at a
 * time. Lines are read into a buffer that grows up to CLIENT_MAXLINE, as
 * a screenshot reply can be several MiB; while a reply is awaited, events
 * and lines for other ids are skipped and progress lines are shown.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "compat.h"
#include "proto.h"
#include "qdesk.h"
#include "xmalloc.h"

#define CLIENT_MAXLINE		(64 * 1024 * 1024)
#define CLIENT_BUFSIZE		(64 * 1024)

struct ctl_client {
	int		 fd;
	struct cluster_tls *tls;	/* --host: over TLS (cluster-tls.c) */
	char		*path;
	int		 timeout;	/* seconds per reply; 0: none */
	json_int_t	 next_id;
	int		 progress;	/* a progress line is on stderr */

	char		*buf;
	size_t		 size;
	size_t		 off;		/* start of unread data */
	size_t		 len;		/* end of data */
	size_t		 scan;		/* no newline before this */
};

/* Set by the SIGINT handler of commands that stream until interrupted. */
volatile sig_atomic_t client_interrupted;

/* Results of client_readline besides a line. */
#define CLIENT_LINE		1
#define CLIENT_GOTEOF		0
#define CLIENT_FAIL		(-1)
#define CLIENT_INTR		(-2)

/* What an admin should check when the socket cannot be reached. */
static const char *
client_hint(int error)
{
	switch (error) {
	case ENOENT:
	case ECONNREFUSED:
		return (" (is qmpd running? start it, or give its socket "
		    "with --socket or QDESK_SOCKET)");
	case EACCES:
	case EPERM:
		return (" (run qdesk as root or as a member of group qdesk)");
	default:
		return ("");
	}
}

/*
 * Read one line, waiting until deadline (monotonic ms, 0: no limit).
 * *line points into the buffer, NUL-terminated, valid until the next call.
 */
static int
client_readline(struct ctl_client *c, long long deadline, char **line,
    size_t *linelen, char **cause)
{
	struct pollfd	 pfd;
	char		*nl;
	ssize_t		 n;
	long long	 left;
	int		 ms;

	for (;;) {
		if (c->scan < c->off)
			c->scan = c->off;
		nl = memchr(c->buf + c->scan, '\n', c->len - c->scan);
		if (nl != NULL) {
			*nl = '\0';
			*line = c->buf + c->off;
			*linelen = nl - (c->buf + c->off);
			c->off = c->scan = nl - c->buf + 1;
			return (CLIENT_LINE);
		}
		c->scan = c->len;
		if (c->off != 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->scan -= c->off;
			c->off = 0;
		}
		if (c->len == c->size) {
			if (c->size >= CLIENT_MAXLINE) {
				xasprintf(cause, "qmpd at %s sent a line over "
				    "%d MiB", c->path, CLIENT_MAXLINE >> 20);
				return (CLIENT_FAIL);
			}
			c->size *= 2;
			c->buf = xrealloc(c->buf, c->size);
		}

		if (c->tls != NULL && cluster_tls_pending(c->tls) > 0)
			goto readable;
		ms = -1;
		if (deadline != 0) {
			if ((left = deadline - clock_mono_ms()) <= 0)
				goto timeout;
			ms = left > 60000 ? 60000 : (int)left;
		}
		pfd.fd = c->fd;
		pfd.events = POLLIN;
		switch (poll(&pfd, 1, ms)) {
		case -1:
			if (errno != EINTR)
				goto fail;
			if (client_interrupted)
				return (CLIENT_INTR);
			continue;
		case 0:
			continue;
		}
readable:
		if (c->tls != NULL)
			n = cluster_tls_read(c->tls, c->buf + c->len,
			    c->size - c->len);
		else
			n = read(c->fd, c->buf + c->len, c->size - c->len);
		if (n == -1) {
			if (errno == EINTR && client_interrupted)
				return (CLIENT_INTR);
			if (errno == EINTR || errno == EAGAIN)
				continue;
			goto fail;
		}
		if (n == 0) {
			if (c->len != 0) {
				xasprintf(cause, "qmpd at %s closed the "
				    "connection in the middle of a line",
				    c->path);
				return (CLIENT_FAIL);
			}
			return (CLIENT_GOTEOF);
		}
		c->len += n;
	}

timeout:
	xasprintf(cause, "no reply from qmpd at %s within %d s", c->path,
	    c->timeout);
	return (CLIENT_FAIL);
fail:
	xasprintf(cause, "lost qmpd at %s: %s", c->path, strerror(errno));
	return (CLIENT_FAIL);
}

/*
 * Read the greeting on a fresh connection. Returns c, or NULL (c freed)
 * with *cause when it does not greet, or with *error when the daemon
 * answers with an error instead (it refused this user).
 */
static struct ctl_client *
client_greet(struct ctl_client *c, json_t **error, char **cause)
{
	json_t			*hello, *proto;
	const char		*path = c->path;
	char			*line;
	size_t			 len;
	int			 r;

	c->size = CLIENT_BUFSIZE;
	c->buf = xmalloc(c->size);
	r = client_readline(c, c->timeout == 0 ? 0 : clock_mono_ms() +
	    c->timeout * 1000LL, &line, &len, cause);
	if (r == CLIENT_GOTEOF)
		xasprintf(cause, "cannot reach qmpd at %s: it closed the "
		    "connection before greeting", path);
	if (r != CLIENT_LINE)
		goto fail;
	hello = json_loadb(line, len, 0, NULL);
	switch (proto_classify(hello)) {
	case PROTO_MSG_HELLO:
		proto = json_object_get(json_object_get(hello, "qdesk"),
		    "protocol");
		if (json_integer_value(proto) != PROTO_VERSION) {
			xasprintf(cause, "qmpd at %s speaks protocol %"
			    JSON_INTEGER_FORMAT ", this qdesk speaks %d: "
			    "install matching versions", path,
			    json_integer_value(proto), PROTO_VERSION);
			json_decref(hello);
			goto fail;
		}
		json_decref(hello);
		return (c);
	case PROTO_MSG_ERROR:
		*error = json_incref(json_object_get(hello, "error"));
		json_decref(hello);
		goto fail;
	default:
		xasprintf(cause, "cannot reach qmpd at %s: it does not speak "
		    "the qdesk protocol", path);
		json_decref(hello);
		goto fail;
	}

fail:
	client_free(c);
	return (NULL);
}

/* Connect to the unix socket at path and read the greeting. */
struct ctl_client *
client_connect(const char *path, int timeout, json_t **error, char **cause)
{
	struct sockaddr_un	 sun;
	struct ctl_client	*c;
	int			 fd;

	*error = NULL;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof sun.sun_path) >=
	    sizeof sun.sun_path) {
		xasprintf(cause, "cannot reach qmpd at %s: %s", path,
		    strerror(ENAMETOOLONG));
		return (NULL);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		xasprintf(cause, "cannot reach qmpd at %s: %s", path,
		    strerror(errno));
		return (NULL);
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		xasprintf(cause, "cannot reach qmpd at %s: %s%s", path,
		    strerror(errno), client_hint(errno));
		close(fd);
		return (NULL);
	}
	c = xcalloc(1, sizeof *c);
	c->fd = fd;
	c->path = xstrdup(path);
	c->timeout = timeout;
	return (client_greet(c, error, cause));
}

/* Connect to a host's mutual-TLS listener (--host, --cert) likewise. */
struct ctl_client *
client_connect_tls(const char *addr, const char *certdir, int timeout,
    json_t **error, char **cause)
{
	struct ctl_client	*c;
	struct cluster_tls	*t;
	int			 fd;

	*error = NULL;
	if ((t = cluster_tls_connect(addr, certdir, timeout, &fd,
	    cause)) == NULL)
		return (NULL);
	c = xcalloc(1, sizeof *c);
	c->fd = fd;
	c->tls = t;
	c->path = xstrdup(addr);
	c->timeout = timeout;
	return (client_greet(c, error, cause));
}

void
client_free(struct ctl_client *c)
{
	if (c == NULL)
		return;
	cluster_tls_free(c->tls);
	if (c->fd != -1)
		close(c->fd);
	free(c->buf);
	free(c->path);
	free(c);
}

/* Write all of buf; MSG_NOSIGNAL turns a gone daemon into EPIPE. */
static int
client_write(struct ctl_client *c, const char *buf, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		if (c->tls != NULL)
			n = cluster_tls_write(c->tls, buf, len);
		else
			n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		buf += n;
		len -= n;
	}
	return (0);
}

/* Show a progress line on a terminal; elsewhere progress is ignored. */
static void
client_progress(struct ctl_client *c, json_t *p)
{
	json_t		*what;
	double		 done, total;

	if (!isatty(STDERR_FILENO) || !json_is_object(p))
		return;
	what = json_object_get(p, "what");
	done = json_number_value(json_object_get(p, "done"));
	total = json_number_value(json_object_get(p, "total"));
	fprintf(stderr, "\r\033[K%s", json_is_string(what) ?
	    json_string_value(what) : "working");
	if (total > 0)
		fprintf(stderr, ": %3.0f%%", 100 * done / total);
	fflush(stderr);
	c->progress = 1;
}

static void
client_progress_end(struct ctl_client *c)
{
	if (c->progress) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
		c->progress = 0;
	}
}

/*
 * Send one request and wait for its reply: *reply is the "return" value
 * (CLIENT_RETURN) or the "error" object (CLIENT_ERROR), owned by the
 * caller. Progress lines for this request restart the timeout: a long
 * import that reports is alive.
 */
enum client_status
client_call(struct ctl_client *c, const char *cmd, json_t *args,
    json_t **reply, char **cause)
{
	enum client_status	 st = CLIENT_FAILED;
	json_t			*id, *msg = NULL, *v;
	json_int_t		 myid = ++c->next_id;
	long long		 deadline;
	char			*req, *line;
	size_t			 len;
	int			 r;

	*reply = NULL;
	id = json_integer(myid);
	req = proto_request(id, cmd, args);
	json_decref(id);
	xasprintf(&line, "%s\n", req);
	free(req);
	r = client_write(c, line, strlen(line));
	free(line);
	if (r != 0) {
		xasprintf(cause, "lost qmpd at %s: %s", c->path,
		    strerror(errno));
		return (CLIENT_FAILED);
	}

	deadline = c->timeout == 0 ? 0 : clock_mono_ms() + c->timeout * 1000LL;
	for (;;) {
		r = client_readline(c, deadline, &line, &len, cause);
		if (r == CLIENT_INTR) {
			st = CLIENT_INTERRUPTED;
			break;
		}
		if (r == CLIENT_GOTEOF)
			xasprintf(cause, "qmpd at %s closed the connection "
			    "without answering", c->path);
		if (r != CLIENT_LINE)
			break;
		if ((msg = json_loadb(line, len, 0, NULL)) == NULL) {
			xasprintf(cause, "qmpd at %s sent a line that is not "
			    "JSON", c->path);
			break;
		}
		v = json_object_get(msg, "id");
		if (!json_is_integer(v) || json_integer_value(v) != myid) {
			json_decref(msg);	/* an event, or not ours */
			continue;
		}
		if ((v = json_object_get(msg, "progress")) != NULL) {
			client_progress(c, v);
			if (deadline != 0)
				deadline = clock_mono_ms() + c->timeout * 1000LL;
			json_decref(msg);
			continue;
		}
		switch (proto_classify(msg)) {
		case PROTO_MSG_RETURN:
			*reply = json_incref(json_object_get(msg, "return"));
			st = CLIENT_RETURN;
			break;
		case PROTO_MSG_ERROR:
			*reply = json_incref(json_object_get(msg, "error"));
			st = CLIENT_ERROR;
			break;
		default:
			xasprintf(cause, "qmpd at %s sent a reply with "
			    "neither return nor error", c->path);
			break;
		}
		break;
	}
	client_progress_end(c);
	json_decref(msg);
	return (st);
}

/*
 * Read the next line with no time limit, for event streams: *msg is the
 * parsed line and *line its text (valid until the next call).
 */
enum client_status
client_next(struct ctl_client *c, json_t **msg, char **line, char **cause)
{
	size_t	len;
	int	r;

	*msg = NULL;
	r = client_readline(c, 0, line, &len, cause);
	if (r == CLIENT_INTR)
		return (CLIENT_INTERRUPTED);
	if (r == CLIENT_GOTEOF)
		return (CLIENT_EOF);
	if (r != CLIENT_LINE)
		return (CLIENT_FAILED);
	if ((*msg = json_loadb(*line, len, 0, NULL)) == NULL) {
		xasprintf(cause, "qmpd at %s sent a line that is not JSON",
		    c->path);
		return (CLIENT_FAILED);
	}
	return (CLIENT_RETURN);
}

/*
 * Print a daemon error as "qdesk: CLASS: desc"; the exit status is 1, or
 * 4 when the host ran out of something (ResourceExhausted: fix the host,
 * not the command).
 */
int
client_error_exit(json_t *error)
{
	json_t	*class, *desc;

	class = json_object_get(error, "class");
	desc = json_object_get(error, "desc");
	fprintf(stderr, "qdesk: %s: %s\n", json_is_string(class) ?
	    json_string_value(class) : "Error", json_is_string(desc) ?
	    json_string_value(desc) : "(no description)");
	if (json_is_string(class) &&
	    strcmp(json_string_value(class), ERR_RESOURCE) == 0)
		return (EXIT_RESOURCE);
	return (EXIT_DAEMON);
}
