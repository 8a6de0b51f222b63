/*
 * The browser console: GET /api/desktops/NAME/console.ws?ticket=T. The
 * request needs the session cookie, an Origin that is this very host and
 * a one-time ticket (onetime.c) for that user and desktop. qmpd then
 * hands over a VNC connection to the desktop's console (desktop.vnc, the
 * fd on its reply line, as the RDP gateway gets it: no VNC port exists),
 * the broker answers 101 and takes evhttp's connection over, and from
 * then on RFB bytes go both ways as binary WebSocket frames (ws.c).
 * evhttp's connection, and so its TLS session and its place in the
 * broker's connection limits, lives until the console closes.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <linux/sockios.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/rand.h>

#include "broker.h"
#include "log.h"
#include "proto.h"
#include "sock.h"
#include "xmalloc.h"

#define CONSOLE_WS_QMPD_TIMEOUT	30
#define CONSOLE_WS_LINE_MAX	(64 * 1024)
#define CONSOLE_WS_FRAME_MAX	(1024 * 1024)	/* a client frame's payload */
#define CONSOLE_WS_READ_MAX	(64 * 1024)	/* VNC bytes per frame */
#define CONSOLE_WS_HIGH		(1024 * 1024)	/* output held before pausing */
#define CONSOLE_WS_PING		30		/* seconds between pings */
#define CONSOLE_WS_SILENCE	3		/* pings unanswered: gone */
#define CONSOLE_WS_CLOSING	5		/* seconds for a close to go */
#define CONSOLE_WS_AHEAD	(16 * 1024)	/* unsent bytes: link is full */
#define CONSOLE_WS_RETRY_MS	20		/* full link: look again */

/*
 * QDESK_CONSOLE_TRACE=1 in the broker's environment: one log line for
 * every WebSocket frame and RFB message either way, and every read from
 * QEMU, to see what a console sends when its screen is still. Off by
 * default: a video row would log thousands of lines a second.
 */
#define console_ws_trace(c, fmt, ...) do {				\
	if (console_ws_tracing)						\
		log_info("console %s trace: " fmt, (c)->vm, __VA_ARGS__); \
} while (0)

/* A desktop.vnc request on its own qmpd connection, waiting for the fd. */
struct console_ws_req {
	struct http_call	*call;
	int			 fd;
	struct event		*ev;
	char			 buf[CONSOLE_WS_LINE_MAX];
	size_t			 len;
	int			 greeted;
	int			 vnc;		/* the fd that came along */
	char			 accept[WS_ACCEPT_LEN + 1];
	char			*protocol;	/* "binary" when offered */
};

/* A console: the browser's side and QEMU's VNC side. */
struct console_ws {
	struct evhttp_connection *evcon;
	struct bufferevent	*client;	/* evhttp's, taken over */
	struct bufferevent	*vnc;
	struct event		*ping;
	struct ws_parser	 parser;
	struct console_rfb	 rfb;		/* the browser's RFB messages */
	int			 ask;		/* a request of ours to add */
	struct event		*retry;		/* ask again once the link
						   drains (continuous) */
	uint64_t		 asked;		/* requests the broker added */
	uint64_t		 chunks;	/* reads from QEMU */
	char			*login;
	char			 vm[64];
	char			 peer[64];
	int			 unanswered;	/* pings with nothing heard */
	int			 closing;	/* our close frame is out */
	time_t			 started;
	uint64_t		 in;		/* bytes browser -> guest */
	uint64_t		 out;		/* bytes guest -> browser */
	LIST_ENTRY(console_ws)	 entry;
};

static struct onetime			*console_ws_tickets;
static int				 console_ws_tracing = -1;
static LIST_HEAD(, console_ws)		 console_ws_all =
    LIST_HEAD_INITIALIZER(console_ws_all);

static void	console_ws_client_read(struct bufferevent *, void *);
static void	console_ws_vnc_read(struct bufferevent *, void *);
static void	console_ws_keep(struct console_ws *);

/*
 * A fresh one-time ticket for login's console of vm, valid until
 * *expires: the page puts it in the WebSocket URL.
 */
char *
console_ws_ticket(const char *login, const char *vm, time_t *expires)
{
	unsigned char	 raw[ONETIME_LEN / 2];
	char		*ticket;
	size_t		 i;
	time_t		 now = time(NULL);

	if (console_ws_tickets == NULL)
		console_ws_tickets = onetime_create(ONETIME_MAX);
	if (RAND_bytes(raw, sizeof raw) != 1)
		fatalx("RAND_bytes failed");
	ticket = xmalloc(ONETIME_LEN + 1);
	for (i = 0; i < sizeof raw; i++)
		snprintf(ticket + 2 * i, 3, "%02x", raw[i]);
	explicit_bzero(raw, sizeof raw);
	*expires = now + broker->console_ttl;
	onetime_add(console_ws_tickets, ticket, login, vm, *expires, now);
	return (ticket);
}

/* Free a console; evhttp's connection goes with it, and its TLS. */
static void
console_ws_free(struct console_ws *c)
{
	log_info("user %s from %s: browser console of %s closed after %lld s "
	    "(%llu bytes in, %llu out; browser: %llu update requests, %llu "
	    "keys, %llu pointer; broker: %llu requests%s; QEMU: %llu reads)",
	    c->login, c->peer, c->vm, (long long)(time(NULL) - c->started),
	    (unsigned long long)c->in, (unsigned long long)c->out,
	    (unsigned long long)c->rfb.count[RFB_UPDATE_REQUEST],
	    (unsigned long long)c->rfb.count[RFB_KEY_EVENT],
	    (unsigned long long)c->rfb.count[RFB_POINTER_EVENT],
	    (unsigned long long)c->asked, c->rfb.continuous ?
	    ", continuous" : "", (unsigned long long)c->chunks);
	LIST_REMOVE(c, entry);
	if (c->ping != NULL)
		event_free(c->ping);
	if (c->retry != NULL)
		event_free(c->retry);
	if (c->vnc != NULL)
		bufferevent_free(c->vnc);
	/* Our callbacks off first: evhttp must not hear of this. */
	bufferevent_setcb(c->client, NULL, NULL, NULL, NULL);
	evhttp_connection_free(c->evcon);
	free(c->login);
	free(c);
}

/* Queue one unmasked frame to the browser. */
static void
console_ws_send(struct console_ws *c, int op, const void *data, size_t len)
{
	unsigned char	hdr[WS_HEADER_MAX];
	struct evbuffer	*out = bufferevent_get_output(c->client);

	console_ws_trace(c, "to the browser: frame op %d, %zu bytes", op, len);
	evbuffer_add(out, hdr, ws_header(hdr, op, len));
	if (len > 0)
		evbuffer_add(out, data, len);
}

/*
 * Start the closing handshake with code (and stop reading the guest); the
 * console goes once the frame is flushed or CONSOLE_WS_CLOSING passes.
 */
static void
console_ws_close(struct console_ws *c, int code, const char *why)
{
	unsigned char	 payload[2];
	struct timeval	 tv = { CONSOLE_WS_CLOSING, 0 };

	if (c->closing)
		return;
	c->closing = 1;
	if (why != NULL)
		log_info("user %s from %s: browser console of %s: %s", c->login,
		    c->peer, c->vm, why);
	if (c->vnc != NULL)
		bufferevent_disable(c->vnc, EV_READ);
	bufferevent_disable(c->client, EV_READ);
	if (code != WS_CLOSE_NONE) {
		payload[0] = code >> 8;
		payload[1] = code & 0xff;
		console_ws_send(c, WS_OP_CLOSE, payload, 2);
	} else
		console_ws_send(c, WS_OP_CLOSE, NULL, 0);
	evtimer_add(c->ping, &tv);
}

/* Output flushed: resume the other side, or end a closed console. */
static void
console_ws_client_write(struct bufferevent *bev, void *arg)
{
	struct console_ws	*c = arg;

	if (c->closing) {
		console_ws_free(c);
		return;
	}
	if (c->vnc != NULL)
		bufferevent_enable(c->vnc, EV_READ);
	console_ws_keep(c);
}

static void
console_ws_vnc_write(struct bufferevent *bev, void *arg)
{
	struct console_ws	*c = arg;

	if (!c->closing)
		bufferevent_enable(c->client, EV_READ);
}

/* The browser's connection failed or closed without a close frame. */
static void
console_ws_client_event(struct bufferevent *bev, short events, void *arg)
{
	struct console_ws	*c = arg;

	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (!c->closing)
			log_info("user %s from %s: browser console of %s: "
			    "the browser went away", c->login, c->peer, c->vm);
		console_ws_free(c);
	}
}

/* QEMU closed the VNC connection: the desktop stopped, or was reset. */
static void
console_ws_vnc_event(struct bufferevent *bev, short events, void *arg)
{
	struct console_ws	*c = arg;

	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		/* Send what the guest said last before the close. */
		console_ws_vnc_read(bev, c);
		console_ws_close(c, WS_CLOSE_GOING, "the desktop's console "
		    "closed");
	}
}

/*
 * Bytes for the browser not yet on the wire: ours, and the kernel's not
 * yet sent (in flight is fine: that is the link's length, not a queue).
 */
static size_t
console_ws_unsent(struct console_ws *c)
{
	size_t		n = evbuffer_get_length(bufferevent_get_output(
			    c->client));
	evutil_socket_t	fd = bufferevent_getfd(c->client);
	int		q;

	if (fd != -1 && ioctl(fd, SIOCOUTQNSD, &q) == 0 && q > 0)
		n += q;
	return (n);
}

/*
 * Keep an update request outstanding at QEMU on the browser's behalf.
 * noVNC asks for the next update only once it has drawn the last, so
 * without this every change after an update waits a round trip of the
 * link; QEMU keeps one request as a flag, so an extra one costs nothing.
 * Added only between two of the browser's messages, and only while the
 * link keeps up (console_ws_vnc_read), so a slow link still gets fewer,
 * fresher updates: QEMU starts none while its output is unsent.
 */
static void
console_ws_ask(struct console_ws *c)
{
	unsigned char	req[10];

	if (!c->ask || !console_rfb_idle(&c->rfb))
		return;
	console_rfb_request(&c->rfb, req);
	console_ws_trace(c, "to QEMU: the broker's update request (%s)",
	    "FramebufferUpdateRequest, incremental");
	bufferevent_write(c->vnc, req, sizeof req);
	c->ask = 0;
	c->asked++;
}

/*
 * With continuous updates the browser asks for nothing, so the broker's
 * request must never lapse: ask now while the link keeps up, else look
 * again in CONSOLE_WS_RETRY_MS (the kernel's queue drains unannounced).
 */
static void
console_ws_keep(struct console_ws *c)
{
	struct timeval	tv = { 0, CONSOLE_WS_RETRY_MS * 1000 };

	if (!c->rfb.continuous || c->closing || c->vnc == NULL)
		return;
	if (console_ws_unsent(c) < CONSOLE_WS_AHEAD) {
		c->ask = 1;
		console_ws_ask(c);
	} else if (!evtimer_pending(c->retry, NULL))
		evtimer_add(c->retry, &tv);
}

static void
console_ws_retry(evutil_socket_t fd, short events, void *arg)
{
	console_ws_keep(arg);
}

/* n bytes of QEMU's input as one binary frame to the browser. */
static void
console_ws_forward(struct console_ws *c, struct evbuffer *in, size_t n)
{
	unsigned char	hdr[WS_HEADER_MAX];

	console_ws_trace(c, "to the browser: frame op %d, %zu bytes of QEMU's",
	    WS_OP_BINARY, n);
	evbuffer_add(bufferevent_get_output(c->client), hdr,
	    ws_header(hdr, WS_OP_BINARY, n));
	evbuffer_remove_buffer(in, bufferevent_get_output(c->client), n);
	c->out += n;
}

/*
 * Until ServerInit has passed, QEMU's bytes are followed; right after it
 * (QEMU says nothing more until the browser speaks) the broker offers
 * continuous updates with an EndOfContinuousUpdates of its own.
 */
static void
console_ws_handshake(struct console_ws *c, struct evbuffer *in)
{
	static const unsigned char	end = RFB_END_CONTINUOUS;
	unsigned char			hdr[WS_HEADER_MAX];
	size_t				n;

	n = evbuffer_get_length(in);
	n = console_rfb_server_scan(&c->rfb, evbuffer_pullup(in, n), n);
	if (n > 0)
		console_ws_forward(c, in, n);
	if (console_rfb_server_init(&c->rfb) && !c->rfb.continuous) {
		console_ws_trace(c, "to the browser: frame op %d, %s",
		    WS_OP_BINARY, "the broker's EndOfContinuousUpdates");
		evbuffer_add(bufferevent_get_output(c->client), hdr,
		    ws_header(hdr, WS_OP_BINARY, 1));
		evbuffer_add(bufferevent_get_output(c->client), &end, 1);
		c->rfb.continuous = 1;
	}
}

/* Guest bytes: binary frames to the browser, paused while it lags. */
static void
console_ws_vnc_read(struct bufferevent *bev, void *arg)
{
	struct console_ws	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	size_t			 n;

	if (c->closing)
		return;
	/* After the handshake a read need not start a message: a hint. */
	if ((n = evbuffer_get_length(in)) > 0)
		console_ws_trace(c, "from QEMU: %zu bytes, the first %u", n,
		    *evbuffer_pullup(in, 1));
	if (!console_rfb_server_done(&c->rfb))
		console_ws_handshake(c, in);
	while ((n = evbuffer_get_length(in)) > 0) {
		if (n > CONSOLE_WS_READ_MAX)
			n = CONSOLE_WS_READ_MAX;
		console_ws_forward(c, in, n);
	}
	c->chunks++;
	if (evbuffer_get_length(bufferevent_get_output(c->client)) >
	    CONSOLE_WS_HIGH)
		bufferevent_disable(bev, EV_READ);
	else if (console_ws_unsent(c) < CONSOLE_WS_AHEAD) {
		c->ask = 1;
		console_ws_ask(c);
	} else
		console_ws_keep(c);
}

/*
 * A binary payload to QEMU, with our request at the first boundary; an
 * EnableContinuousUpdates stays here (QEMU does not know it).
 */
static void
console_ws_guest(struct console_ws *c, const unsigned char *p, size_t len)
{
	size_t	n;
	int	pass;

	while (len > 0) {
		if (console_rfb_start(&c->rfb))
			console_ws_trace(c, "from the browser: RFB message %u",
			    p[0]);
		n = console_rfb_scan(&c->rfb, p, len, &pass);
		if (pass)
			bufferevent_write(c->vnc, p, n);
		c->in += n;
		p += n;
		len -= n;
		console_ws_ask(c);
	}
}

/*
 * Browser frames: binary payloads to the guest, pings answered, a close
 * answered and the console ended; anything against RFC 6455 closes it
 * with the code the parser gives.
 */
static void
console_ws_client_read(struct bufferevent *bev, void *arg)
{
	struct console_ws	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct ws_frame		 f;
	unsigned char		*buf, *payload;
	size_t			 len;
	int			 rc, code;

	c->unanswered = 0;
	while (!c->closing && (len = evbuffer_get_length(in)) > 0) {
		/* The read watermark keeps this under two frames' worth. */
		buf = evbuffer_pullup(in, -1);
		rc = ws_parse(&c->parser, buf, len, 1, &f);
		if (rc == 0)
			break;
		if (rc == -1) {
			console_ws_close(c, f.close_code, f.cause);
			return;
		}
		payload = buf + f.header_len;
		ws_unmask(payload, f.payload_len, f.mask);
		console_ws_trace(c, "from the browser: frame op %d, %zu bytes",
		    f.opcode, (size_t)f.payload_len);
		switch (f.opcode) {
		case WS_OP_CONT:
		case WS_OP_BINARY:
			if (f.message_op != WS_OP_BINARY) {
				console_ws_close(c, WS_CLOSE_DATA,
				    "a text frame: the console is binary");
				return;
			}
			console_ws_guest(c, payload, f.payload_len);
			break;
		case WS_OP_TEXT:
			console_ws_close(c, WS_CLOSE_DATA, "a text frame: the "
			    "console is binary");
			return;
		case WS_OP_PING:
			console_ws_send(c, WS_OP_PONG, payload, f.payload_len);
			break;
		case WS_OP_PONG:
			break;
		case WS_OP_CLOSE:
			code = ws_close_code(payload, f.payload_len);
			if (code == -1)
				console_ws_close(c, WS_CLOSE_PROTOCOL,
				    "a bad close frame");
			else
				console_ws_close(c, code, NULL);
			return;
		}
		evbuffer_drain(in, f.header_len + f.payload_len);
	}
	if (c->vnc != NULL && evbuffer_get_length(bufferevent_get_output(
	    c->vnc)) > CONSOLE_WS_HIGH)
		bufferevent_disable(bev, EV_READ);
}

/* Every CONSOLE_WS_PING: a ping, or the end of a silent or closed one. */
static void
console_ws_tick(evutil_socket_t fd, short events, void *arg)
{
	struct console_ws	*c = arg;
	struct timeval		 tv = { CONSOLE_WS_PING, 0 };

	if (c->closing) {
		console_ws_free(c);
		return;
	}
	if (++c->unanswered > CONSOLE_WS_SILENCE) {
		console_ws_close(c, WS_CLOSE_GOING, "the browser stopped "
		    "answering pings");
		return;
	}
	console_ws_send(c, WS_OP_PING, "qdesk", 5);
	evtimer_add(c->ping, &tv);
}

/*
 * qmpd gave the VNC fd: answer 101 on evhttp's connection and take it
 * over. The request is not answered through evhttp: the connection is
 * ours now, and freeing it frees the request.
 */
static void
console_ws_upgrade(struct console_ws_req *r)
{
	struct http_call	*call = r->call;
	struct console_ws	*c;
	struct evbuffer		*out;
	struct timeval		 tv = { CONSOLE_WS_PING, 0 };
	evutil_socket_t		 fd;
	int			 one = 1;

	if (console_ws_tracing == -1)
		console_ws_tracing = getenv("QDESK_CONSOLE_TRACE") != NULL &&
		    strcmp(getenv("QDESK_CONSOLE_TRACE"), "1") == 0;
	c = xcalloc(1, sizeof *c);
	c->evcon = evhttp_request_get_connection(call->req);
	c->client = evhttp_connection_get_bufferevent(c->evcon);
	c->login = xstrdup(call->login);
	strlcpy(c->vm, call->arg, sizeof c->vm);
	strlcpy(c->peer, call->peer, sizeof c->peer);
	c->parser.max_payload = CONSOLE_WS_FRAME_MAX;
	c->started = time(NULL);
	c->vnc = bufferevent_socket_new(broker->base, r->vnc,
	    BEV_OPT_CLOSE_ON_FREE);
	r->vnc = -1;
	c->ping = evtimer_new(broker->base, console_ws_tick, c);
	c->retry = evtimer_new(broker->base, console_ws_retry, c);
	LIST_INSERT_HEAD(&console_ws_all, c, entry);

	out = bufferevent_get_output(c->client);
	evbuffer_add_printf(out, "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n", r->accept,
	    r->protocol != NULL ? "Sec-WebSocket-Protocol: " : "",
	    r->protocol != NULL ? r->protocol : "",
	    r->protocol != NULL ? "\r\n" : "");
	bufferevent_set_timeouts(c->client, NULL, NULL);
	/*
	 * A key's echo is a few small frames: without this, Nagle holds all
	 * but the first until the browser's delayed ACK (bench/transport).
	 */
	if ((fd = bufferevent_getfd(c->client)) != -1)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	bufferevent_setcb(c->client, console_ws_client_read,
	    console_ws_client_write, console_ws_client_event, c);
	bufferevent_setwatermark(c->client, EV_WRITE, 0, 0);
	bufferevent_setwatermark(c->client, EV_READ, 0,
	    2 * CONSOLE_WS_FRAME_MAX);
	bufferevent_enable(c->client, EV_READ | EV_WRITE);
	bufferevent_setcb(c->vnc, console_ws_vnc_read, console_ws_vnc_write,
	    console_ws_vnc_event, c);
	bufferevent_enable(c->vnc, EV_READ | EV_WRITE);
	evtimer_add(c->ping, &tv);
	log_info("user %s from %s: browser console of %s open", c->login,
	    c->peer, c->vm);

	/* The call goes without an answer: the connection is the console's. */
	call->req = NULL;
	http_call_drop(call);
	/* Bytes the browser sent early are the console's too. */
	if (evbuffer_get_length(bufferevent_get_input(c->client)) > 0)
		console_ws_client_read(c->client, c);
}

static void
console_ws_req_free(struct console_ws_req *r)
{
	if (r->ev != NULL)
		event_free(r->ev);
	if (r->fd != -1)
		close(r->fd);
	if (r->vnc != -1)
		close(r->vnc);
	free(r->protocol);
	free(r);
}

/* A line from qmpd, on the desktop.vnc connection: greeting, then answer. */
static int
console_ws_req_line(struct console_ws_req *r, json_t *j)
{
	struct http_call	*call = r->call;
	json_t			*id, *err;
	char			*line;
	size_t			 len;

	switch (proto_classify(j)) {
	case PROTO_MSG_HELLO:
		if (r->greeted)
			return (0);
		r->greeted = 1;
		id = json_integer(1);
		line = proto_request(id, "desktop.vnc", json_pack("{s:s,s:s}",
		    "login", call->login, "vm", call->arg));
		json_decref(id);
		len = strlen(line);
		line = xrealloc(line, len + 2);
		line[len++] = '\n';
		/* A short line to a fresh unix socket goes whole or not. */
		if (send(r->fd, line, len, MSG_NOSIGNAL) != (ssize_t)len) {
			free(line);
			http_reply_error(call, 503, "cannot talk to qmpd");
			return (-1);
		}
		free(line);
		return (0);
	case PROTO_MSG_RETURN:
		if (r->vnc == -1) {
			http_reply_error(call, 502, "qmpd's console answer "
			    "came without a connection");
			return (-1);
		}
		console_ws_upgrade(r);
		return (-1);
	case PROTO_MSG_ERROR:
		err = json_object_get(j, "error");
		http_reply_qmpd(call, json_string_value(json_object_get(err,
		    "class")) != NULL ? json_string_value(json_object_get(err,
		    "class")) : "Internal", json_string_value(json_object_get(
		    err, "desc")) != NULL ? json_string_value(json_object_get(
		    err, "desc")) : "qmpd gave no reason");
		return (-1);
	default:
		return (0);	/* an event */
	}
}

/* qmpd spoke (with the fd on the answer's first byte), or took too long. */
static void
console_ws_req_read(evutil_socket_t fd, short events, void *arg)
{
	struct console_ws_req	*r = arg;
	json_error_t		 jerr;
	json_t			*j;
	char			*nl;
	ssize_t			 n;
	size_t			 used;
	int			 nvnc = r->vnc != -1, rc;

	if (events & EV_TIMEOUT) {
		http_reply_error(r->call, 504, "qmpd did not hand over the "
		    "console in time");
		console_ws_req_free(r);
		return;
	}
	/* The first fd qmpd passes is the VNC stream; any other is shut. */
	n = sock_recv_fds(r->fd, r->buf + r->len, sizeof r->buf - r->len - 1,
	    MSG_DONTWAIT, &r->vnc, &nvnc, 1);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		http_reply_error(r->call, 503, "qmpd closed the console "
		    "request");
		console_ws_req_free(r);
		return;
	}
	r->len += n;
	while ((nl = memchr(r->buf, '\n', r->len)) != NULL) {
		used = nl - r->buf + 1;
		j = json_loadb(r->buf, used - 1, 0, &jerr);
		memmove(r->buf, r->buf + used, r->len - used);
		r->len -= used;
		if (j == NULL) {
			http_reply_error(r->call, 502, "qmpd sent bad JSON: "
			    "%s", jerr.text);
			console_ws_req_free(r);
			return;
		}
		rc = console_ws_req_line(r, j);
		json_decref(j);
		if (rc != 0) {
			console_ws_req_free(r);
			return;
		}
	}
	if (r->len >= sizeof r->buf - 1) {
		http_reply_error(r->call, 502, "qmpd sent a line too long");
		console_ws_req_free(r);
	}
}

/* Cluster mode: the stream from the desktop's host came, or did not. */
static void
console_ws_stream_cb(int fd, const char *errclass, const char *errdesc,
    void *arg)
{
	struct console_ws_req	*r = arg;

	if (fd == -1)
		http_reply_qmpd(r->call, errclass, errdesc);
	else {
		r->vnc = fd;
		console_ws_upgrade(r);
	}
	console_ws_req_free(r);
}

/* Ask qmpd, on a connection of our own, for the desktop's VNC fd. */
static void
console_ws_fetch(struct console_ws_req *r)
{
	struct sockaddr_un	 sun;
	struct timeval		 tv = { CONSOLE_WS_QMPD_TIMEOUT, 0 };

	if (broker->cluster != NULL) {
		cluster_vnc_open(r->call->login, r->call->arg,
		    console_ws_stream_cb, r);
		return;
	}

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strlcpy(sun.sun_path, broker->socket_path, sizeof sun.sun_path);
	if ((r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) == -1 || connect(r->fd,
	    (struct sockaddr *)&sun, sizeof sun) == -1) {
		log_warn("browser console: cannot reach qmpd at %s",
		    broker->socket_path);
		http_reply_error(r->call, 503, "the desktop service is not "
		    "reachable: try again shortly");
		console_ws_req_free(r);
		return;
	}
	r->ev = event_new(broker->base, r->fd, EV_READ | EV_PERSIST,
	    console_ws_req_read, r);
	event_add(r->ev, &tv);
}

/*
 * GET /api/desktops/NAME/console.ws: check the upgrade, the origin and
 * the ticket, then fetch the console from qmpd. Every refusal is an HTTP
 * answer with one line saying why.
 */
void
api_console_ws(struct http_call *call)
{
	struct evkeyvalq	*in = evhttp_request_get_input_headers(
				    call->req);
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(
				    call->req);
	struct evkeyvalq	 query;
	struct console_ws_req	*r;
	const char		*origin, *host, *ticket, *q;
	char			 want[300], accept[WS_ACCEPT_LEN + 1];
	char			*cause = NULL;

	if (!api_vm_name_ok(call))
		return;
	if (!ws_header_has(evhttp_find_header(in, "Upgrade"), "websocket") ||
	    !ws_header_has(evhttp_find_header(in, "Connection"), "upgrade")) {
		http_reply_error(call, 400, "this address is a WebSocket: "
		    "open the console from the portal");
		return;
	}
	if ((q = evhttp_find_header(in, "Sec-WebSocket-Version")) == NULL ||
	    strcmp(q, "13") != 0) {
		http_header(call, "Sec-WebSocket-Version", "13");
		http_reply_error(call, 400, "WebSocket version 13 only");
		return;
	}
	if (ws_accept_key(evhttp_find_header(in, "Sec-WebSocket-Key"), accept,
	    sizeof accept) != 0) {
		http_reply_error(call, 400, "a bad Sec-WebSocket-Key");
		return;
	}
	origin = evhttp_find_header(in, "Origin");
	host = evhttp_find_header(in, "Host");
	snprintf(want, sizeof want, "https://%s", host != NULL ? host : "");
	if (origin == NULL || strcmp(origin, want) != 0) {
		log_warnx("user %s from %s: browser console of %s refused: "
		    "origin %.100s", call->login, call->peer, call->arg,
		    origin != NULL ? origin : "none");
		http_reply_error(call, 403, "the console opens only from this "
		    "portal's own pages");
		return;
	}
	TAILQ_INIT(&query);
	q = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	if (q == NULL || evhttp_parse_query_str(q, &query) != 0)
		ticket = NULL;
	else
		ticket = evhttp_find_header(&query, "ticket");
	if (console_ws_tickets == NULL)
		console_ws_tickets = onetime_create(ONETIME_MAX);
	if (onetime_take(console_ws_tickets, ticket, call->login, call->arg,
	    time(NULL), &cause) != 0) {
		evhttp_clear_headers(&query);
		log_warnx("user %s from %s: browser console of %s refused: %s",
		    call->login, call->peer, call->arg, cause);
		http_reply_error(call, 403, "%s: ask the portal for a new one",
		    cause);
		free(cause);
		return;
	}
	evhttp_clear_headers(&query);

	r = xcalloc(1, sizeof *r);
	r->call = call;
	r->fd = r->vnc = -1;
	strlcpy(r->accept, accept, sizeof r->accept);
	if (ws_header_has(evhttp_find_header(in, "Sec-WebSocket-Protocol"),
	    "binary"))
		r->protocol = xstrdup("binary");
	console_ws_fetch(r);
}

/* At shutdown: every console closes before evhttp frees connections. */
void
console_ws_stop(void)
{
	struct console_ws	*c;

	while ((c = LIST_FIRST(&console_ws_all)) != NULL)
		console_ws_free(c);
	onetime_free(console_ws_tickets);
	console_ws_tickets = NULL;
}
