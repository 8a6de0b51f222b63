/*
 * qmpd/peer.c against a scripted qmpd on a socketpair-like unix socket:
 * the hello is skipped, replies go to their calls in order (return and
 * error), events in between are ignored, no callback fires inside
 * peer_call, and when the server hangs up the pending call gets
 * "Disconnected" before the close callback. Bad addresses: one line.
 * A stream call (image.fetch): what follows its answer is bytes, not
 * lines, handed over with the connection; a second call is refused.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "check.h"
#include "peer.h"
#include "qmpd.h"

struct qmpd	*qmpd;

static int	 answers, closed, disconnected, in_call, streaming;
static char	 streamed[256];
static size_t	 nstreamed;
static char	 sockpath[108];

/*
 * The fake qmpd: its hello and an event first, then per request line:
 * the first answered, the second refused, the third never (hang up).
 */
static void
server_cb(evutil_socket_t fd, short ev, void *arg)
{
	static int	 n;
	char		 buf[4096], *l;
	ssize_t		 r;

	if ((r = read(fd, buf, sizeof buf - 1)) <= 0)
		return;
	buf[r] = '\0';
	if (streaming) {
		/* The answer, then bytes that would be bad lines. */
		dprintf(fd, "{\"qdesk\":{\"version\":\"0\","
		    "\"protocol\":1}}\n{\"id\":1,\"return\":{\"size\":"
		    "13}}\nabc\n{not json");
		shutdown(fd, SHUT_RDWR);
		event_del(arg);
		return;
	}
	for (l = buf; (l = strchr(l, '\n')) != NULL; l++) {
		switch (++n) {
		case 1:
			dprintf(fd, "{\"qdesk\":{\"version\":\"0\","
			    "\"protocol\":1}}\n{\"event\":\"vm.state\","
			    "\"vm\":\"x\"}\n{\"id\":1,\"return\":"
			    "{\"uri\":\"tcp:1.2.3.4:5\"}}\n");
			break;
		case 2:
			dprintf(fd, "{\"id\":2,\"error\":{\"class\":"
			    "\"NotFound\",\"desc\":\"no VM named y\"}}\n");
			break;
		default:
			shutdown(fd, SHUT_RDWR);
			event_del(arg);
			return;
		}
	}
}

static void
accept_cb(evutil_socket_t lfd, short ev, void *arg)
{
	struct event	*e;
	int		 fd;

	if ((fd = accept(lfd, NULL, NULL)) == -1)
		return;
	e = event_new(qmpd->base, fd, EV_READ | EV_PERSIST, server_cb,
	    event_self_cbarg());
	event_add(e, NULL);
}

static void
reply_cb(struct peer *p, json_t *ret, const char *errclass, const char *desc,
    void *arg)
{
	CHECK(!in_call);
	answers++;
	if (strcmp(arg, "first") == 0) {
		CHECK(errclass == NULL);
		CHECK_STR(json_string_value(json_object_get(ret, "uri")),
		    "tcp:1.2.3.4:5");
	} else if (strcmp(arg, "second") == 0) {
		CHECK_STR(errclass, "NotFound");
		CHECK_STR(desc, "no VM named y");
	} else {
		CHECK_STR(errclass, "Disconnected");
		CHECK(closed == 0);
		disconnected++;
	}
}

static void
close_cb(struct peer *p, const char *cause, void *arg)
{
	CHECK(disconnected == 1);
	CHECK(cause != NULL);
	closed++;
	peer_free(p);
	event_base_loopbreak(qmpd->base);
}

static void
stream_read_cb(struct bufferevent *bev, void *arg)
{
	nstreamed += bufferevent_read(bev, streamed + nstreamed,
	    sizeof streamed - 1 - nstreamed);
}

static void
stream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	stream_read_cb(bev, arg);
	bufferevent_free(bev);
	event_base_loopbreak(qmpd->base);
}

static void
stream_reply_cb(struct peer *p, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct bufferevent	*bev;

	CHECK(errclass == NULL);
	CHECK(json_integer_value(json_object_get(ret, "size")) == 13);
	bev = peer_take_stream(p);
	CHECK(bev != NULL);
	answers++;
	peer_free(p);
	bufferevent_setcb(bev, stream_read_cb, NULL, stream_event_cb, NULL);
	bufferevent_enable(bev, EV_READ);
	/* Bytes that came with the answer. */
	stream_read_cb(bev, NULL);
}

int
main(void)
{
	struct sockaddr_un	 sun;
	struct event		*lev;
	struct peer		*p;
	char			*cause = NULL, addr[128];
	int			 lfd;

	qmpd = calloc(1, sizeof *qmpd);
	qmpd->base = event_base_new();
	snprintf(sockpath, sizeof sockpath, "/tmp/test-peer.%d.sock",
	    (int)getpid());
	unlink(sockpath);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, sockpath);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(lfd, (struct sockaddr *)&sun, sizeof sun) == 0);
	CHECK(listen(lfd, 4) == 0);
	lev = event_new(qmpd->base, lfd, EV_READ | EV_PERSIST, accept_cb, NULL);
	event_add(lev, NULL);

	CHECK(peer_open("tcp:1.2.3.4:5", close_cb, NULL, &cause) == NULL);
	CHECK_STR(cause, "bad peer address tcp:1.2.3.4:5: unix:PATH or "
	    "tls:ADDR:PORT");
	free(cause);
	cause = NULL;
	/* tls: needs the cluster file's certificates. */
	CHECK(peer_open("tls:127.0.0.1:1", close_cb, NULL, &cause) == NULL);
	CHECK(cause != NULL && strstr(cause, "--cluster") != NULL);
	free(cause);

	snprintf(addr, sizeof addr, "unix:%s", sockpath);
	p = peer_open(addr, close_cb, NULL, &cause);
	CHECK(p != NULL);
	in_call = 1;
	CHECK(peer_call(p, "migrate.prepare", json_pack("{s:s}", "name", "x"),
	    reply_cb, "first") == 0);
	CHECK(peer_call(p, "migrate.finish", NULL, reply_cb, "second") == 0);
	CHECK(peer_call(p, "migrate.abort", NULL, reply_cb, "third") == 0);
	in_call = 0;
	event_base_dispatch(qmpd->base);
	CHECK(answers == 3);
	CHECK(disconnected == 1);
	CHECK(closed == 1);

	/* A stream call: the bytes after its answer come as they are. */
	streaming = 1;
	answers = 0;
	p = peer_open(addr, NULL, NULL, &cause);
	CHECK(p != NULL);
	CHECK(peer_call_stream(p, "image.fetch", json_pack("{s:s}", "name",
	    "tpl"), stream_reply_cb, NULL) == 0);
	CHECK(peer_call_stream(p, "image.fetch", NULL, stream_reply_cb,
	    NULL) == -1);
	event_base_dispatch(qmpd->base);
	CHECK(answers == 1);
	streamed[nstreamed] = '\0';
	CHECK_STR(streamed, "abc\n{not json");

	event_free(lev);
	close(lfd);
	unlink(sockpath);
	return (check_exit());
}
