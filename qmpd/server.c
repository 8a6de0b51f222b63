/*
 * The admin socket: one bufferevent per client, newline framing, a size
 * cap per line, backpressure for slow readers (tmux control.c style), and
 * the event stream for subscribers. A bad client is dropped alone.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "log.h"
#include "qmpd.h"
#include "sock.h"
#include "splice.h"
#include "xmalloc.h"

/* Stop reading a client's requests while this much output is queued. */
#define CLIENT_OUT_HIGH		(4 * 1024 * 1024)
#define CLIENT_OUT_LOW		(1024 * 1024)
/* A client this far behind is not reading at all: drop it. */
#define CLIENT_OUT_MAX		(64 * 1024 * 1024)
/* Requests taken from one client per turn of the loop, for fairness. */
#define CLIENT_LINES_PER_TURN	16

struct client {
	struct bufferevent	*bev;
	uid_t			 uid;
	gid_t			 gid;
	pid_t			 pid;
	enum role		 role;
	int			 subscribed;
	char			*sub_vm;
	int			 closing;
	int			 throttled;
	int			 dead;		/* freed by the reaper */
	int			 remote;	/* TCP (cluster-listen.c) */
	char			*name;		/* "uid N" or "CN at ADDR:PORT" */
	TAILQ_HEAD(, cmd_req)	 reqs;
	TAILQ_ENTRY(client)	 entry;
};

static TAILQ_HEAD(, client)	 clients = TAILQ_HEAD_INITIALIZER(clients);
static struct evconnlistener	*server_listener;
static char			*server_path;
static struct event		*server_reaper;

enum role
client_role(const struct client *c)
{
	return (c->role);
}

uid_t
client_uid(const struct client *c)
{
	return (c->uid);
}

const char *
client_name(const struct client *c)
{
	return (c->name);
}

void
client_req_add(struct client *c, struct cmd_req *req)
{
	TAILQ_INSERT_TAIL(&c->reqs, req, entry_client);
}

void
client_req_remove(struct client *c, struct cmd_req *req)
{
	TAILQ_REMOVE(&c->reqs, req, entry_client);
}

static void
client_free(struct client *c)
{
	struct cmd_req	*req, *req1;

	TAILQ_FOREACH_SAFE(req, &c->reqs, entry_client, req1) {
		TAILQ_REMOVE(&c->reqs, req, entry_client);
		cmd_req_detach(req);
	}
	TAILQ_REMOVE(&clients, c, entry);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c->sub_vm);
	free(c->name);
	free(c);
}

/*
 * Finish writing what is queued, then shut down our side and discard
 * whatever the client still sends until it closes: closing with unread
 * input would reset the connection before the client reads our error.
 */
static void
client_close_after_flush(struct client *c)
{
	struct timeval	tv = { 10, 0 };

	c->closing = 1;
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		shutdown(bufferevent_getfd(c->bev), SHUT_WR);
}

/*
 * A remote client cannot take an fd: after the line its connection
 * becomes the fd's byte stream, both ways (a desktop's VNC for a broker
 * on another host). The caller keeps its fd.
 */
static int
server_send_line_stream(struct client *c, const char *line, int fd)
{
	struct bufferevent	*bev = c->bev, *other;
	int			 dupfd;

	if ((dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1)
		return (-1);
	evutil_make_socket_nonblocking(dupfd);
	other = bufferevent_socket_new(qmpd->base, dupfd,
	    BEV_OPT_CLOSE_ON_FREE);
	evbuffer_add(bufferevent_get_output(bev), line, strlen(line));
	evbuffer_add(bufferevent_get_output(bev), "\n", 1);
	log_info("%s: the connection is a stream now", c->name);
	/* The client goes (by the reaper); its connection is the splice's. */
	c->bev = NULL;
	c->closing = c->dead = 1;
	event_active(server_reaper, EV_TIMEOUT, 0);
	splice_join(bev, other);
	return (0);
}

/*
 * Send a line with an fd attached to its first byte (SCM_RIGHTS). Only
 * when nothing else is queued, so the fd cannot overtake earlier lines;
 * the caller keeps its fd. Returns 0, or -1 when it could not be sent.
 */
int
server_send_line_fd(struct client *c, const char *line, int fd)
{
	struct evbuffer	*out;
	struct iovec	 iov[2];
	size_t		 len = strlen(line), total = len + 1;
	ssize_t		 n;

	if (c->closing || c->dead)
		return (-1);
	if (c->remote)
		return (server_send_line_stream(c, line, fd));
	out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) != 0)
		return (-1);
	iov[0].iov_base = (void *)line;
	iov[0].iov_len = len;
	iov[1].iov_base = (void *)"\n";
	iov[1].iov_len = 1;
	n = sock_send_fd(bufferevent_getfd(c->bev), iov, 2, fd);
	if (n <= 0)
		return (-1);
	/* The fd went with the first byte; the rest is ordinary output. */
	if ((size_t)n < total) {
		if ((size_t)n < len)
			evbuffer_add(out, line + n, len - n);
		evbuffer_add(out, "\n", 1);
	}
	return (0);
}

void
server_send_line(struct client *c, const char *line)
{
	struct evbuffer	*out;

	if (c->closing)
		return;
	out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) > CLIENT_OUT_MAX) {
		log_warnx("client %s (pid %ld) is not reading its replies: "
		    "dropped", c->name, (long)c->pid);
		/* Freed from the loop, never from under a caller. */
		c->closing = c->dead = 1;
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		event_active(server_reaper, EV_TIMEOUT, 0);
		return;
	}
	evbuffer_add(out, line, strlen(line));
	evbuffer_add(out, "\n", 1);
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct client	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	struct evbuffer	*out = bufferevent_get_output(bev);
	char		*line, *msg;
	size_t		 len;
	int		 n = 0;

	if (c->closing) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	while (!c->closing &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		cmd_dispatch(c, line, len);
		free(line);
		if (++n == CLIENT_LINES_PER_TURN && !c->closing &&
		    evbuffer_get_length(out) <= CLIENT_OUT_HIGH) {
			/*
			 * A client pipelining many requests (a boot storm)
			 * yields: QMP handshakes and other clients go first,
			 * the rest of its lines on the next turn.
			 */
			bufferevent_trigger(bev, EV_READ,
			    BEV_TRIG_IGNORE_WATERMARKS |
			    BEV_TRIG_DEFER_CALLBACKS);
			return;
		}
		if (evbuffer_get_length(out) > CLIENT_OUT_HIGH) {
			/* Read no more until this client drains its replies. */
			c->throttled = 1;
			bufferevent_disable(bev, EV_READ);
			bufferevent_setwatermark(bev, EV_WRITE, CLIENT_OUT_LOW,
			    0);
			break;
		}
	}
	if (!c->closing && evbuffer_get_length(in) > PROTO_MAX_LINE) {
		msg = proto_error(NULL, ERR_TOOLONG, "request line is over "
		    "the 1048576 byte limit; closing");
		server_send_line(c, msg);
		free(msg);
		evbuffer_drain(in, evbuffer_get_length(in));
		client_close_after_flush(c);
	}
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
	struct client	*c = arg;

	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			shutdown(bufferevent_getfd(bev), SHUT_WR);
		return;
	}
	if (c->throttled) {
		c->throttled = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		bufferevent_enable(bev, EV_READ);
		client_read_cb(bev, c);
	}
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client	*c = arg;

	if (!c->dead && (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR |
	    BEV_EVENT_TIMEOUT)))
		client_free(c);
}

/*
 * Is gid among the peer's groups? SO_PEERGROUPS gives the supplementary
 * groups the peer had when it connected, from the socket itself: unlike
 * /proc/PID/status, no pid that may have been reused by then.
 */
static int
server_peer_in_group(int fd, gid_t gid)
{
	gid_t		 stack[64], *groups = stack;
	socklen_t	 len = sizeof stack;
	size_t		 i, n;
	int		 found = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == -1) {
		if (errno != ERANGE)
			return (0);
		/* More than 64 groups: len says how much room they need. */
		groups = xmalloc(len);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups,
		    &len) == -1) {
			free(groups);
			return (0);
		}
	}
	n = len / sizeof *groups;
	for (i = 0; i < n; i++)
		if (groups[i] == gid)
			found = 1;
	if (groups != stack)
		free(groups);
	return (found);
}

/* The role of a peer, from the socket's credentials alone. */
static enum role
server_role(int fd, struct ucred *cred)
{
	if (cred->uid == 0)
		return (ROLE_ADMIN);
	if (qmpd->admin_gid != (gid_t)-1 && (cred->gid == qmpd->admin_gid ||
	    server_peer_in_group(fd, qmpd->admin_gid)))
		return (ROLE_ADMIN);
	if (qmpd->broker_uid != (uid_t)-1 && cred->uid == qmpd->broker_uid)
		return (ROLE_BROKER);
	return (ROLE_NONE);
}

/*
 * Refuse a peer with no role: one line saying why, if the socket takes it
 * now, then closed at once; nothing of it is kept or waited for.
 */
static void
server_refuse(int fd, struct ucred *cred)
{
	char	*line;

	log_warnx("refused uid %ld (pid %ld): not root, not in group qdesk, "
	    "not the broker", (long)cred->uid, (long)cred->pid);
	line = proto_error(NULL, ERR_DENIED, "permission denied: qmpd "
	    "accepts root, group qdesk and the broker");
	/* Best effort: a fresh socket's buffer holds one short line. */
	if (send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL) != -1)
		send(fd, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	free(line);
	close(fd);
}

static void
server_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct client	*c;
	struct ucred	 cred;
	socklen_t	 len = sizeof cred;
	enum role	 role;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("SO_PEERCRED");
		close(fd);
		return;
	}
	if ((role = server_role(fd, &cred)) == ROLE_NONE) {
		server_refuse(fd, &cred);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	c = server_client_new(bufferevent_socket_new(qmpd->base, fd,
	    BEV_OPT_CLOSE_ON_FREE), role, NULL);
	xasprintf(&c->name, "uid %ld", (long)cred.uid);
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->pid = cred.pid;
}

/*
 * A client on bev (taken): the unix socket's, or a TLS connection whose
 * role its certificate gave (remote names it: cluster-listen.c). It is
 * greeted.
 */
struct client *
server_client_new(struct bufferevent *bev, enum role role, const char *remote)
{
	struct client	*c;
	char		*line;

	c = xcalloc(1, sizeof *c);
	TAILQ_INIT(&c->reqs);
	c->uid = (uid_t)-1;
	c->gid = (gid_t)-1;
	c->role = role;
	c->remote = remote != NULL;
	c->name = remote != NULL ? xstrdup(remote) : NULL;
	c->bev = bev;
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb,
	    client_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, PROTO_MAX_LINE + 65536);
	TAILQ_INSERT_TAIL(&clients, c, entry);
	line = proto_hello(QDESK_VERSION);
	server_send_line(c, line);
	free(line);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return (c);
}

static void
server_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	struct client	*c, *c1;

	TAILQ_FOREACH_SAFE(c, &clients, entry, c1) {
		if (c->dead)
			client_free(c);
	}
}

static void
server_error_cb(struct evconnlistener *l, void *arg)
{
	log_warn("accept on the admin socket");
}

int
server_listen(const char *path, char **cause)
{
	int	fd;

	if ((fd = sock_unix_listen(path, SOCK_NONBLOCK, 128, cause)) == -1)
		return (-1);
	if (chmod(path, 0660) == -1 ||
	    (qmpd->admin_gid != (gid_t)-1 &&
	    chown(path, 0, qmpd->admin_gid) == -1))
		log_warn("permissions of %s", path);
	if (qmpd->broker_uid != (uid_t)-1)
		chmod(path, 0666);	/* the broker is then told apart by uid */
	server_listener = evconnlistener_new(qmpd->base, server_accept_cb,
	    NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128, fd);
	if (server_listener == NULL) {
		xasprintf(cause, "listen %s: %s", path, strerror(errno));
		close(fd);
		return (-1);
	}
	evconnlistener_set_error_cb(server_listener, server_error_cb);
	server_reaper = event_new(qmpd->base, -1, 0, server_reap_cb, NULL);
	server_path = xstrdup(path);
	return (0);
}

void
server_close(void)
{
	struct client	*c, *c1;

	if (server_listener != NULL) {
		evconnlistener_free(server_listener);
		server_listener = NULL;
		unlink(server_path);
		free(server_path);
	}
	TAILQ_FOREACH_SAFE(c, &clients, entry, c1)
		client_free(c);
}

void
server_subscribe(struct client *c, const char *vm)
{
	c->subscribed = 1;
	free(c->sub_vm);
	c->sub_vm = vm != NULL ? xstrdup(vm) : NULL;
}

/*
 * The admin event stream, one of qmpd's listeners: broadcast
 * {"event":E,"vm":V,...fields,"ts":T} to subscribers.
 */
void
server_event(const char *event, const char *vm, json_t *fields, void *arg)
{
	struct client	*c, *c1;
	struct timespec	 ts;
	json_t		*j;
	char		*line;

	clock_gettime(CLOCK_REALTIME, &ts);
	j = json_pack("{s:s,s:s?,s:f}", "event", event, "vm", vm, "ts",
	    ts.tv_sec + ts.tv_nsec / 1e9);
	if (fields != NULL)
		json_object_update_missing(j, fields);
	line = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (line == NULL)
		return;
	TAILQ_FOREACH_SAFE(c, &clients, entry, c1) {
		if (!c->subscribed || c->closing || c->dead)
			continue;
		if (c->sub_vm != NULL && (vm == NULL ||
		    strcmp(c->sub_vm, vm) != 0))
			continue;
		server_send_line(c, line);
	}
	free(line);
}
