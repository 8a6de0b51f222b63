/*
 * A desktop's VNC stream from its cluster host (cluster_vnc_open in
 * broker.h): a connection of its own to the host's mutual-TLS listener,
 * desktop.vnc asked on it, and after the answer the same connection
 * carries the VNC bytes (qmpd's server.c turns it into a stream). The
 * caller gets a local socket of that stream, just as a local qmpd would
 * hand one over with SCM_RIGHTS, so the browser console needs nothing
 * else to follow its desktop to another host.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "broker.h"
#include "log.h"
#include "proto.h"
#include "splice.h"
#include "xmalloc.h"

#define STREAM_TIMEOUT		10	/* seconds to get the stream */

struct cluster_stream {
	struct bufferevent	*bev;
	cluster_vnc_cb		 cb;
	void			*arg;
	char			*login;
	char			*vm;
	char			*host;
	char			*cn;
	int			 greeted;
};

static void
stream_free(struct cluster_stream *s)
{
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	free(s->login);
	free(s->vm);
	free(s->host);
	free(s->cn);
	free(s);
}

static void
stream_fail(struct cluster_stream *s, const char *errclass, const char *fmt,
    ...)
{
	va_list	 ap;
	char	*desc;

	va_start(ap, fmt);
	xvasprintf(&desc, fmt, ap);
	va_end(ap);
	log_warnx("cluster: VNC of %s from host %s: %s", s->vm, s->host, desc);
	s->cb(-1, errclass, desc, s->arg);
	free(desc);
	stream_free(s);
}

/* The answer: the stream follows on this connection; hand over a socket. */
static void
stream_ready(struct cluster_stream *s)
{
	struct bufferevent	*local;
	int			 sp[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
	    sp) == -1) {
		stream_fail(s, "Internal", "socketpair: %s", strerror(errno));
		return;
	}
	local = bufferevent_socket_new(bufferevent_get_base(s->bev), sp[0],
	    BEV_OPT_CLOSE_ON_FREE);
	log_info("cluster: VNC of %s streams from host %s", s->vm, s->host);
	splice_join(s->bev, local);
	s->bev = NULL;
	s->cb(sp[1], NULL, NULL, s->arg);
	stream_free(s);
}

/* qmpd's greeting, then the answer to desktop.vnc. */
static void
stream_read_cb(struct bufferevent *bev, void *arg)
{
	struct cluster_stream	*s = arg;
	json_t			*j, *id, *err;
	char			*line, *req;
	size_t			 len;

	while ((line = evbuffer_readln(bufferevent_get_input(bev), &len,
	    EVBUFFER_EOL_LF)) != NULL) {
		j = json_loadb(line, len, 0, NULL);
		free(line);
		switch (proto_classify(j)) {
		case PROTO_MSG_HELLO:
			if (s->greeted++)
				break;
			id = json_integer(1);
			req = proto_request(id, "desktop.vnc", json_pack(
			    "{s:s,s:s}", "login", s->login, "vm", s->vm));
			json_decref(id);
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "%s\n", req);
			free(req);
			break;
		case PROTO_MSG_RETURN:
			json_decref(j);
			stream_ready(s);
			return;
		case PROTO_MSG_ERROR:
			err = json_object_get(j, "error");
			stream_fail(s, json_string_value(json_object_get(err,
			    "class")) != NULL ? json_string_value(
			    json_object_get(err, "class")) : "Internal", "%s",
			    json_string_value(json_object_get(err, "desc")) !=
			    NULL ? json_string_value(json_object_get(err,
			    "desc")) : "qmpd gave no reason");
			json_decref(j);
			return;
		default:
			break;		/* an event */
		}
		json_decref(j);
	}
	if (evbuffer_get_length(bufferevent_get_input(bev)) > PROTO_MAX_LINE)
		stream_fail(s, "Internal", "an over-long line");
}

static void
stream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct cluster_stream	*s = arg;
	unsigned long		 e;
	char			 why[300] = "";

	if (what & BEV_EVENT_CONNECTED) {
		if (cluster_check_peer(bev, s->cn, why, sizeof why) != 0)
			stream_fail(s, QMPC_ERR_DOWN, "%s", why);
		return;
	}
	if ((e = bufferevent_get_openssl_error(bev)) != 0)
		ERR_error_string_n(e, why, sizeof why);
	else if (what & BEV_EVENT_TIMEOUT)
		snprintf(why, sizeof why, "no answer within %d s",
		    STREAM_TIMEOUT);
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof why, "connection closed");
	else
		snprintf(why, sizeof why, "%s",
		    strerror(EVUTIL_SOCKET_ERROR()));
	stream_fail(s, QMPC_ERR_DOWN, "%s", why);
}

void
cluster_vnc_open(const char *login, const char *vm, cluster_vnc_cb cb,
    void *arg)
{
	struct cluster_stream	*s;
	struct sockaddr_storage	 ss;
	struct timeval		 tv = { STREAM_TIMEOUT, 0 };
	const char		*listen, *host;
	char			*why = NULL;
	int			 sslen = sizeof ss;

	s = xcalloc(1, sizeof *s);
	s->cb = cb;
	s->arg = arg;
	s->login = xstrdup(login);
	s->vm = xstrdup(vm);
	if ((listen = cluster_listen_of(vm, &host, &why)) == NULL) {
		s->host = xstrdup("?");
		stream_fail(s, QMPC_ERR_DOWN, "%s", why);
		free(why);
		return;
	}
	s->host = xstrdup(host);
	xasprintf(&s->cn, "host:%s", host);
	memset(&ss, 0, sizeof ss);
	if (evutil_parse_sockaddr_port(listen, (struct sockaddr *)&ss,
	    &sslen) != 0) {
		stream_fail(s, QMPC_ERR_DOWN, "listen \"%s\" is not ADDR:PORT",
		    listen);
		return;
	}
	s->bev = bufferevent_openssl_socket_new(broker->base, -1,
	    SSL_new(broker->cluster_tls), BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	bufferevent_setcb(s->bev, stream_read_cb, NULL, stream_event_cb, s);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&ss,
	    sslen) != 0) {
		stream_fail(s, QMPC_ERR_DOWN, "connect %s: %s", listen,
		    strerror(errno));
		return;
	}
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}
