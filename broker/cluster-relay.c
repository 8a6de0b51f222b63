/*
 * The cluster relay: in cluster mode the RDP gateway's session threads,
 * which speak to "qmpd" on a unix socket of their own (rdp-qmpd.c), are
 * given this socket instead (DIR/broker/cluster.sock). The loop answers
 * each request as a qmpd would, by sending it where cluster_call routes
 * it; desktop.vnc is answered with a local socket of the desktop's VNC
 * stream from its host (cluster_vnc_open) passed with SCM_RIGHTS, as
 * qmpd passes its fd. So the RDP gateway follows desktops to their hosts
 * without knowing about hosts.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "broker.h"
#include "log.h"
#include "proto.h"
#include "sock.h"
#include "xmalloc.h"

#define RELAY_TIMEOUT	60	/* seconds a routed request may take */

struct relay_conn {
	struct bufferevent	*bev;
	int			 pending;	/* requests in flight */
	int			 gone;		/* closed: free at the last */
};

/* A request in flight; its connection may be gone when it answers. */
struct relay_req {
	struct relay_conn	*conn;
	json_t			*id;
};

static struct evconnlistener	*relay_listener;
static char			*relay_path;

static void
relay_conn_unref(struct relay_conn *rc)
{
	if (rc->gone && rc->pending == 0) {
		if (rc->bev != NULL)
			bufferevent_free(rc->bev);
		free(rc);
	}
}

static void
relay_send(struct relay_conn *rc, char *line)
{
	if (!rc->gone) {
		evbuffer_add(bufferevent_get_output(rc->bev), line,
		    strlen(line));
		evbuffer_add(bufferevent_get_output(rc->bev), "\n", 1);
	}
	free(line);
}

static void
relay_req_end(struct relay_req *r)
{
	struct relay_conn	*rc = r->conn;

	json_decref(r->id);
	free(r);
	rc->pending--;
	relay_conn_unref(rc);
}

static void
relay_call_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct relay_req	*r = arg;

	if (errclass != NULL)
		relay_send(r->conn, proto_error(r->id, errclass, errdesc));
	else
		relay_send(r->conn, proto_return(r->id, ret));
	relay_req_end(r);
}

/* The VNC stream's local socket, passed on the answer's first byte. */
static void
relay_vnc_done(int fd, const char *errclass, const char *errdesc, void *arg)
{
	struct relay_req	*r = arg;
	struct relay_conn	*rc = r->conn;
	struct iovec		 iov[2];
	json_t			*ret;
	char			*line;

	if (fd == -1) {
		relay_send(rc, proto_error(r->id, errclass, errdesc));
		relay_req_end(r);
		return;
	}
	ret = json_pack("{s:s}", "fd", "attached");
	line = proto_return(r->id, ret);
	json_decref(ret);
	iov[0].iov_base = line;
	iov[0].iov_len = strlen(line);
	iov[1].iov_base = (void *)"\n";
	iov[1].iov_len = 1;
	/* The thread sent one request and waits: the socket takes it all. */
	if (!rc->gone && (evbuffer_get_length(bufferevent_get_output(
	    rc->bev)) != 0 || sock_send_fd(bufferevent_getfd(rc->bev), iov, 2,
	    fd) != (ssize_t)(iov[0].iov_len + 1)))
		log_warnx("cluster relay: could not pass the VNC socket");
	free(line);
	close(fd);
	relay_req_end(r);
}

static void
relay_read_cb(struct bufferevent *bev, void *arg)
{
	struct relay_conn	*rc = arg;
	struct proto_req	 preq;
	struct relay_req	*r;
	const char		*errclass, *login, *vm;
	char			*line, *cause = NULL;
	size_t			 len;

	while ((line = evbuffer_readln(bufferevent_get_input(bev), &len,
	    EVBUFFER_EOL_LF)) != NULL) {
		if (proto_parse_request(line, len, &preq, &errclass,
		    &cause) != 0) {
			relay_send(rc, proto_error(preq.id, errclass, cause));
			free(cause);
			cause = NULL;
			proto_req_clear(&preq);
			free(line);
			continue;
		}
		free(line);
		r = xcalloc(1, sizeof *r);
		r->conn = rc;
		r->id = preq.id != NULL ? json_incref(preq.id) : NULL;
		rc->pending++;
		if (strcmp(preq.cmd, "desktop.vnc") == 0 ||
		    strcmp(preq.cmd, "vm.vnc") == 0) {
			login = json_string_value(json_object_get(preq.args,
			    "login"));
			vm = json_string_value(json_object_get(preq.args,
			    "vm"));
			if (vm == NULL)
				vm = json_string_value(json_object_get(
				    preq.args, "name"));
			cluster_vnc_open(login != NULL ? login : "",
			    vm != NULL ? vm : "", relay_vnc_done, r);
		} else
			cluster_call(preq.cmd, json_incref(preq.args),
			    RELAY_TIMEOUT, relay_call_done, r);
		proto_req_clear(&preq);
	}
}

static void
relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct relay_conn	*rc = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		rc->gone = 1;
		relay_conn_unref(rc);
	}
}

static void
relay_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct relay_conn	*rc;
	char			*hello;

	rc = xcalloc(1, sizeof *rc);
	evutil_make_socket_nonblocking(fd);
	rc->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(rc->bev, relay_read_cb, NULL, relay_event_cb, rc);
	bufferevent_setwatermark(rc->bev, EV_READ, 0, PROTO_MAX_LINE);
	hello = proto_hello(QDESK_VERSION);
	relay_send(rc, hello);
	bufferevent_enable(rc->bev, EV_READ | EV_WRITE);
}

/*
 * Listen at path for the gateway's threads: made before the privilege
 * drop, for owner only (the broker's user after it).
 */
int
cluster_relay_open(const char *path, uid_t owner, gid_t group, char **cause)
{
	int	fd;

	if ((fd = sock_unix_listen(path, SOCK_NONBLOCK, 64, cause)) == -1)
		return (-1);
	if ((owner != (uid_t)-1 && chown(path, owner, group) == -1) ||
	    chmod(path, 0600) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		close(fd);
		return (-1);
	}
	relay_path = xstrdup(path);
	return (fd);
}

int
cluster_relay_start(struct event_base *base, int fd, char **cause)
{
	relay_listener = evconnlistener_new(base, relay_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 64, fd);
	if (relay_listener == NULL) {
		xasprintf(cause, "listen %s: %s", relay_path, strerror(errno));
		close(fd);
		return (-1);
	}
	return (0);
}

void
cluster_relay_stop(void)
{
	if (relay_listener != NULL)
		evconnlistener_free(relay_listener);
	relay_listener = NULL;
	if (relay_path != NULL)
		unlink(relay_path);
	free(relay_path);
	relay_path = NULL;
}
