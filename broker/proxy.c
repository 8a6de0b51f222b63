/*
 * The SPICE proxy, as Proxmox's spiceproxy: an HTTP CONNECT proxy whose
 * only reachable targets are the SPICE servers named by valid tickets.
 * The viewer sends "CONNECT TICKET:PORT"; the proxy checks the ticket's
 * signature, expiry and port, dials the VM's SPICE server (loopback), and
 * splices bytes both ways with backpressure. Anything else gets a 4xx and
 * the connection closed: a port scan of the proxy reaches nothing.
 *
 * Live migration: the source's client_migrate_info names the viewer's
 * ticket, marked "mig-", as the host (qmpd/spice-via.c), so the viewer's
 * migration session CONNECTs here as its first did. Such a CONNECT is
 * taken only while a tunnel opened with exactly that ticket is open (so
 * only the viewer already linked to that desktop can use it), and goes
 * where the desktop's host says its SPICE server is for a viewer now:
 * the target's while it migrates (desktop.spice), on that port only.
 * Its expiry is not checked: it was when the viewer linked, and a
 * viewer stays linked for hours; the open tunnel is what vouches.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "broker.h"
#include "log.h"
#include "xmalloc.h"

#define PROXY_MAX_HEADER	8192
/*
 * Deadlines, from accept: the whole request head and the dial to SPICE
 * (however slowly the bytes trickle in), and the flush after one side of
 * a tunnel went. An open tunnel has none: it lasts until a side closes.
 */
#define PROXY_HEADER_TIMEOUT	10
#define PROXY_FLUSH_TIMEOUT	30
#define PROXY_LINGER_TIMEOUT	2	/* for the viewer's end after ours */
/* Stop reading one side while the other side has this much unsent. */
#define PROXY_HIGH		(1024 * 1024)
#define PROXY_MAX_ROUTES	4096
/* The host client_migrate_info gives (qmpd.h's SPICE_VIA_MIGRATE). */
#define PROXY_MIGRATE		"mig-"
#define PROXY_ASK_TIMEOUT	5	/* desktop.spice */

enum proxy_state {
	PROXY_HEADER,		/* reading the CONNECT request */
	PROXY_ASKING,		/* migration: where its SPICE server is */
	PROXY_DIALING,		/* connecting to the SPICE server */
	PROXY_TUNNEL,		/* splicing */
	PROXY_CLOSING,		/* one side gone, flushing the other */
	PROXY_LINGER		/* viewer: our end sent, dropping its bytes */
};

struct proxy_conn {
	struct bufferevent	*client;
	struct bufferevent	*server;
	struct event		*deadline;	/* not armed in PROXY_TUNNEL */
	enum proxy_state	 state;
	char			 peer[64];
	char			 peer_port[8];
	char			 vm[64];
	char			 target[128];
	char			 ticket[TICKET_MAX];	/* as the CONNECT named it */
	unsigned long long	 id;	/* for answers that outlive it */
	int			 port;
	int			 counted;	/* in metrics' sessions */
	TAILQ_ENTRY(proxy_conn)	 entry;
};

/* Where each VM's SPICE server listens, as qmpd last said. */
struct proxy_route {
	char			 vm[64];
	char			 host[64];
	TAILQ_ENTRY(proxy_route) entry;
};

static TAILQ_HEAD(, proxy_conn)	 proxy_conns =
    TAILQ_HEAD_INITIALIZER(proxy_conns);
static TAILQ_HEAD(, proxy_route) proxy_routes =
    TAILQ_HEAD_INITIALIZER(proxy_routes);
static int			 proxy_nroutes;
static unsigned long long	 proxy_next_id;
static struct connlimit		*proxy_limit;
static struct evconnlistener	*proxy_listener;
static struct event_base	*proxy_base;

static void	proxy_read_cb(struct bufferevent *, void *);
static void	proxy_write_cb(struct bufferevent *, void *);
static void	proxy_event_cb(struct bufferevent *, short, void *);

/* Remember (or update) where vm's SPICE server listens. */
void
proxy_route(const char *vm, const char *host)
{
	struct proxy_route	*r;

	TAILQ_FOREACH(r, &proxy_routes, entry) {
		if (strcmp(r->vm, vm) == 0)
			break;
	}
	if (r == NULL) {
		if (proxy_nroutes >= PROXY_MAX_ROUTES) {
			r = TAILQ_FIRST(&proxy_routes);
			TAILQ_REMOVE(&proxy_routes, r, entry);
		} else {
			r = xcalloc(1, sizeof *r);
			proxy_nroutes++;
		}
		strlcpy(r->vm, vm, sizeof r->vm);
	} else
		TAILQ_REMOVE(&proxy_routes, r, entry);
	strlcpy(r->host, host, sizeof r->host);
	TAILQ_INSERT_TAIL(&proxy_routes, r, entry);
}

/*
 * The address to dial for a SPICE port on host (what qmpd said, numeric;
 * loopback for an any-address or when it said nothing).
 */
static const char *
proxy_route_host(const char *vm)
{
	struct proxy_route	*r;

	TAILQ_FOREACH(r, &proxy_routes, entry) {
		if (strcmp(r->vm, vm) == 0)
			return (r->host);
	}
	return ("127.0.0.1");
}

static int
proxy_dest(const char *host, int port, struct sockaddr_storage *ss,
    socklen_t *sslen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "localhost") == 0 ||
	    *host == '\0')
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*sslen = sizeof *sin;
		return (0);
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*sslen = sizeof *sin6;
		return (0);
	}
	return (-1);
}

static void
proxy_conn_free(struct proxy_conn *pc)
{
	if (pc->client != NULL)
		bufferevent_free(pc->client);
	if (pc->server != NULL)
		bufferevent_free(pc->server);
	if (pc->counted)
		metrics_spice_session(pc->vm, -1);
	event_free(pc->deadline);
	TAILQ_REMOVE(&proxy_conns, pc, entry);
	connlimit_del(proxy_limit, pc->peer);
	free(pc);
}

/*
 * The last bytes for the viewer are out: end our side and read (and drop)
 * what it still sends until it closes, for a moment. Closing a socket with
 * unread bytes resets the connection, and a reset can destroy our answer
 * (a 431, say) before the viewer reads it.
 */
static void
proxy_linger(struct proxy_conn *pc)
{
	struct timeval	tv = { PROXY_LINGER_TIMEOUT, 0 };

	pc->state = PROXY_LINGER;
	shutdown(bufferevent_getfd(pc->client), SHUT_WR);
	bufferevent_disable(pc->client, EV_WRITE);
	bufferevent_setwatermark(pc->client, EV_READ, 0, 0);
	bufferevent_enable(pc->client, EV_READ);
	evtimer_add(pc->deadline, &tv);
}

/* Let bev send what it holds, then end the whole connection. */
static void
proxy_close_after_flush(struct proxy_conn *pc, struct bufferevent *bev)
{
	struct timeval	tv = { PROXY_FLUSH_TIMEOUT, 0 };

	pc->state = PROXY_CLOSING;
	if (bev == NULL ||
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		if (bev != NULL && bev == pc->client)
			proxy_linger(pc);
		else
			proxy_conn_free(pc);
		return;
	}
	if (bev == pc->client) {
		/* Keep taking (and dropping) what the viewer sends. */
		bufferevent_setwatermark(bev, EV_READ, 0, 0);
		bufferevent_enable(bev, EV_READ);
	} else
		bufferevent_disable(bev, EV_READ);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	evtimer_add(pc->deadline, &tv);
	bufferevent_enable(bev, EV_WRITE);
}

/* Answer the CONNECT with an error status and hang up. */
static void
proxy_refuse(struct proxy_conn *pc, int code, const char *reason)
{
	evbuffer_add_printf(bufferevent_get_output(pc->client),
	    "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: 0\r\n"
	    "%s\r\n", code, reason, code == 405 ? "Allow: CONNECT\r\n" : "");
	if (pc->server != NULL) {
		bufferevent_free(pc->server);
		pc->server = NULL;
	}
	proxy_close_after_flush(pc, pc->client);
}

/* The ticket checked out: dial the VM's SPICE server on host. */
static void
proxy_dial(struct proxy_conn *pc, const char *host, int port)
{
	struct sockaddr_storage	ss;
	socklen_t		sslen;

	if (proxy_dest(host, port, &ss, &sslen) != 0) {
		log_warnx("proxy: %s: no usable address for %s's SPICE server",
		    pc->peer, pc->vm);
		proxy_refuse(pc, 502, "Bad Gateway");
		return;
	}
	pc->state = PROXY_DIALING;
	pc->port = port;
	bufferevent_disable(pc->client, EV_READ);
	pc->server = bufferevent_socket_new(proxy_base, -1,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(pc->server, proxy_read_cb, proxy_write_cb,
	    proxy_event_cb, pc);
	if (bufferevent_socket_connect(pc->server, (struct sockaddr *)&ss,
	    sslen) != 0) {
		log_warn("proxy: %s: dialling %s's SPICE server", pc->peer,
		    pc->vm);
		proxy_refuse(pc, 502, "Bad Gateway");
	}
}

/* The host's answer to desktop.spice: dial there, if the port is its. */
static void
proxy_migrate_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	unsigned long long	*id = arg;
	struct proxy_conn	*pc;
	const char		*host;
	int			 port;

	TAILQ_FOREACH(pc, &proxy_conns, entry) {
		if (pc->id == *id && pc->state == PROXY_ASKING)
			break;
	}
	free(id);
	if (pc == NULL)
		return;		/* the viewer went, or timed out */
	if (errclass != NULL) {
		log_warnx("proxy: %s: migration CONNECT for %s: %s", pc->peer,
		    pc->vm, errdesc);
		proxy_refuse(pc, 502, "Bad Gateway");
		return;
	}
	host = json_string_value(json_object_get(ret, "host"));
	port = json_integer_value(json_object_get(ret, "port"));
	if (host == NULL || port != pc->port) {
		log_warnx("proxy: %s: migration CONNECT to port %d refused: "
		    "%s's SPICE server is on port %d", pc->peer, pc->port,
		    pc->vm, port);
		proxy_refuse(pc, 403, "Forbidden");
		return;
	}
	snprintf(pc->target, sizeof pc->target, "%s port %d on %s (%s)",
	    pc->vm, port, host, json_is_true(json_object_get(ret,
	    "migrating")) ? "migration" : "after migration");
	proxy_dial(pc, host, port);
}

/*
 * A CONNECT naming PROXY_MIGRATE and a ticket: a linked viewer's
 * migration session. Ask the desktop's host (placement: the source until
 * switchover) where to send it.
 */
static void
proxy_migrate(struct proxy_conn *pc, const char *ticket, int port)
{
	struct proxy_conn	*t;
	unsigned long long	*id;

	TAILQ_FOREACH(t, &proxy_conns, entry) {
		if (t->state == PROXY_TUNNEL && strcmp(t->ticket, ticket) == 0)
			break;
	}
	if (t == NULL) {
		log_warnx("proxy: %s: migration CONNECT to port %d refused: "
		    "no open tunnel holds its ticket", pc->peer, port);
		proxy_refuse(pc, 403, "Forbidden");
		return;
	}
	strlcpy(pc->vm, t->vm, sizeof pc->vm);
	strlcpy(pc->ticket, ticket, sizeof pc->ticket);
	pc->port = port;
	pc->state = PROXY_ASKING;
	bufferevent_disable(pc->client, EV_READ);
	id = xmalloc(sizeof *id);
	*id = pc->id;
	qmpc_call("desktop.spice", json_pack("{s:s}", "vm", pc->vm),
	    PROXY_ASK_TIMEOUT, proxy_migrate_done, id);
}

/*
 * Parse the request head once it is complete: "CONNECT host:port HTTP/1.x"
 * and headers we ignore. Whatever follows the blank line is the viewer's
 * first SPICE bytes and stays in the buffer for the tunnel.
 */
static void
proxy_header(struct proxy_conn *pc)
{
	struct evbuffer		*in = bufferevent_get_input(pc->client);
	struct evbuffer_ptr	 end;
	char			*line, method[16], target[256], version[16];
	char			 host[TICKET_MAX], *cause = NULL;
	size_t			 len;
	int			 port;

	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos == -1) {
		if (evbuffer_get_length(in) > PROXY_MAX_HEADER) {
			log_warnx("proxy: %s: request head over %d bytes",
			    pc->peer, PROXY_MAX_HEADER);
			proxy_refuse(pc, 431,
			    "Request Header Fields Too Large");
		}
		return;
	}
	if ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) == NULL)
		return;
	if (sscanf(line, "%15s %255s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		log_warnx("proxy: %s: not an HTTP request", pc->peer);
		free(line);
		proxy_refuse(pc, 400, "Bad Request");
		return;
	}
	free(line);
	/* Skip the headers up to the blank line. */
	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		free(line);
		if (len == 0)
			break;
	}
	if (strcmp(method, "CONNECT") != 0) {
		log_warnx("proxy: %s: %s %s refused: only CONNECT is served",
		    pc->peer, method, target);
		proxy_refuse(pc, 405, "Method Not Allowed");
		return;
	}
	strlcpy(pc->target, target, sizeof pc->target);
	if (httputil_target(target, host, sizeof host, &port) != 0) {
		log_warnx("proxy: %s: CONNECT %.80s refused: not HOST:PORT",
		    pc->peer, target);
		proxy_refuse(pc, 403, "Forbidden");
		return;
	}
	if (strncmp(host, PROXY_MIGRATE, strlen(PROXY_MIGRATE)) == 0) {
		proxy_migrate(pc, host + strlen(PROXY_MIGRATE), port);
		return;
	}
	if (ticket_verify(broker->ticket_key, sizeof broker->ticket_key, host,
	    port, time(NULL), pc->vm, sizeof pc->vm, &cause) != 0) {
		log_warnx("proxy: %s: CONNECT to port %d refused: %s",
		    pc->peer, port, cause);
		free(cause);
		proxy_refuse(pc, 403, "Forbidden");
		return;
	}
	strlcpy(pc->ticket, host, sizeof pc->ticket);
	snprintf(pc->target, sizeof pc->target, "%s port %d", pc->vm, port);
	proxy_dial(pc, proxy_route_host(pc->vm), port);
}

/* "ADDR:PORT", or "[ADDR]:PORT" for IPv6, as qmpd writes clients. */
static void
proxy_hostport(char *out, size_t len, const char *addr, const char *port)
{
	snprintf(out, len, strchr(addr, ':') != NULL ? "[%s]:%s" : "%s:%s",
	    addr, port);
}

static void
proxy_via_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	if (errclass != NULL)
		log_debug("proxy: desktop.via: %s", errdesc);
}

/*
 * QEMU sees the proxy's loopback address, not the viewer's: tell qmpd
 * who is behind this tunnel so its session record names the real client.
 */
static void
proxy_tell_via(struct proxy_conn *pc)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof ss;
	char			 addr[INET6_ADDRSTRLEN] = "?", port[8];
	char			 via[80], client[80];
	int			 p = 0;

	if (getsockname(bufferevent_getfd(pc->server), (struct sockaddr *)&ss,
	    &sslen) != 0)
		return;
	if (httputil_addr((struct sockaddr *)&ss, addr, sizeof addr, &p) != 0)
		return;
	snprintf(port, sizeof port, "%d", p);
	proxy_hostport(via, sizeof via, addr, port);
	proxy_hostport(client, sizeof client, pc->peer, pc->peer_port);
	qmpc_call("desktop.via", json_pack("{s:s,s:s,s:s,s:s}", "vm", pc->vm,
	    "via", via, "client", client, "ticket", pc->ticket), 10,
	    proxy_via_done, NULL);
}

/* Connected to SPICE: tell the viewer, then splice. */
static void
proxy_tunnel_open(struct proxy_conn *pc)
{
	struct evbuffer	*cin = bufferevent_get_input(pc->client);
	json_t		*f;

	f = json_pack("{s:s,s:s,s:s}", "vm", pc->vm, "client", pc->peer,
	    "target", pc->target);
	log_event(0, "proxy.open", f, "proxy: %s tunnelled to %s", pc->peer,
	    pc->target);
	json_decref(f);
	pc->state = PROXY_TUNNEL;
	pc->counted = 1;
	metrics_spice_session(pc->vm, 1);
	evtimer_del(pc->deadline);
	bufferevent_setwatermark(pc->client, EV_READ, 0, 0);
	proxy_tell_via(pc);
	evbuffer_add_printf(bufferevent_get_output(pc->client),
	    "HTTP/1.1 200 Connection established\r\n\r\n");
	if (evbuffer_get_length(cin) > 0)
		evbuffer_add_buffer(bufferevent_get_output(pc->server), cin);
	bufferevent_enable(pc->client, EV_READ | EV_WRITE);
	bufferevent_enable(pc->server, EV_READ | EV_WRITE);
}

/*
 * Bytes arrived on one side: the request head while parsing, else pass
 * them to the other side, and stop reading while that side lags.
 */
static void
proxy_read_cb(struct bufferevent *bev, void *arg)
{
	struct proxy_conn	*pc = arg;
	struct bufferevent	*other;

	switch (pc->state) {
	case PROXY_HEADER:
		proxy_header(pc);
		return;
	case PROXY_TUNNEL:
		break;
	default:
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	other = bev == pc->client ? pc->server : pc->client;
	metrics_proxy_bytes(bev == pc->client,
	    evbuffer_get_length(bufferevent_get_input(bev)));
	evbuffer_add_buffer(bufferevent_get_output(other),
	    bufferevent_get_input(bev));
	if (evbuffer_get_length(bufferevent_get_output(other)) >= PROXY_HIGH) {
		/* The other side is slow: read no more until it drains. */
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(other, EV_WRITE, PROXY_HIGH / 4, 0);
	}
}

/* One side drained: finish a close, or let the other side read again. */
static void
proxy_write_cb(struct bufferevent *bev, void *arg)
{
	struct proxy_conn	*pc = arg;
	struct bufferevent	*other;

	if (pc->state == PROXY_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
			return;
		if (bev == pc->client)
			proxy_linger(pc);
		else
			proxy_conn_free(pc);
		return;
	}
	if (pc->state != PROXY_TUNNEL)
		return;
	/* Drained below the low mark: let the other side read again. */
	other = bev == pc->client ? pc->server : pc->client;
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(other, EV_READ);
}

/* Connected, closed, failed or timed out: what that means per state. */
static void
proxy_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct proxy_conn	*pc = arg;
	struct bufferevent	*other;

	if (what & BEV_EVENT_CONNECTED) {
		proxy_tunnel_open(pc);
		return;
	}
	switch (pc->state) {
	case PROXY_HEADER:
	case PROXY_ASKING:
		proxy_conn_free(pc);
		return;
	case PROXY_DIALING:
		if (bev == pc->server) {
			log_warnx("proxy: %s: %s's SPICE server at port %d: "
			    "%s (is the desktop running?)", pc->peer, pc->vm,
			    pc->port, evutil_socket_error_to_string(
			    EVUTIL_SOCKET_ERROR()));
			proxy_refuse(pc, 502, "Bad Gateway");
		} else
			proxy_conn_free(pc);
		return;
	case PROXY_TUNNEL:
		/* One side ended: pass on what it sent, flush, close. */
		other = bev == pc->client ? pc->server : pc->client;
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
			evbuffer_add_buffer(bufferevent_get_output(other),
			    bufferevent_get_input(bev));
		log_debug("proxy: %s: %s closed the tunnel to %s", pc->peer,
		    bev == pc->client ? "viewer" : "SPICE server", pc->target);
		bufferevent_free(bev);
		if (bev == pc->client)
			pc->client = NULL;
		else
			pc->server = NULL;
		proxy_close_after_flush(pc, other);
		return;
	case PROXY_CLOSING:
		/* The viewer is done sending: still let it have our answer. */
		if (bev == pc->client && (what & BEV_EVENT_EOF) &&
		    (what & BEV_EVENT_READING)) {
			bufferevent_disable(bev, EV_READ);
			return;
		}
		proxy_conn_free(pc);
		return;
	case PROXY_LINGER:
		proxy_conn_free(pc);
		return;
	}
}

/*
 * A deadline passed: the request head or the dial took too long, or the
 * side left open did not take its last bytes. Never fires in a tunnel.
 */
static void
proxy_deadline_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proxy_conn	*pc = arg;

	switch (pc->state) {
	case PROXY_HEADER:
		log_warnx("proxy: %s sent no complete CONNECT within %d s",
		    pc->peer, PROXY_HEADER_TIMEOUT);
		break;
	case PROXY_ASKING:
	case PROXY_DIALING:
		log_warnx("proxy: %s: %s's SPICE server did not answer within "
		    "%d s", pc->peer, pc->vm, PROXY_HEADER_TIMEOUT);
		break;
	default:
		break;
	}
	proxy_conn_free(pc);
}

/*
 * Tell a viewer refused at the door which limit it met: a 503 in the one
 * small write a fresh socket takes without blocking, then the socket is
 * closed (nothing of it is kept, so a flood costs no descriptors).
 */
static void
proxy_busy(evutil_socket_t fd, const char *cause)
{
	char	buf[256];
	int	len;

	len = snprintf(buf, sizeof buf, "HTTP/1.1 503 Too many connections: "
	    "%s\r\nConnection: close\r\nContent-Length: 0\r\n"
	    "Retry-After: 10\r\n\r\n", cause);
	if (len > 0 && (size_t)len < sizeof buf)
		(void)send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(fd, SHUT_WR);
}

/* A new viewer: wait (a little) for its CONNECT, within the limits. */
static void
proxy_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct proxy_conn	*pc;
	struct timeval		 tv = { PROXY_HEADER_TIMEOUT, 0 };
	char			 addr[INET6_ADDRSTRLEN] = "?", *cause = NULL;
	int			 port = 0;

	httputil_addr(sa, addr, sizeof addr, &port);
	if (connlimit_add(proxy_limit, addr, &cause) != 0) {
		log_warnx("proxy: %s refused: %s", addr, cause);
		proxy_busy(fd, cause);
		free(cause);
		evutil_closesocket(fd);
		return;
	}
	pc = xcalloc(1, sizeof *pc);
	strlcpy(pc->peer, addr, sizeof pc->peer);
	snprintf(pc->peer_port, sizeof pc->peer_port, "%d", port);
	pc->state = PROXY_HEADER;
	pc->id = ++proxy_next_id;
	pc->client = bufferevent_socket_new(proxy_base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(pc->client, proxy_read_cb, proxy_write_cb,
	    proxy_event_cb, pc);
	pc->deadline = evtimer_new(proxy_base, proxy_deadline_cb, pc);
	evtimer_add(pc->deadline, &tv);
	/* Hold no more of the head than its cap (then refused). */
	bufferevent_setwatermark(pc->client, EV_READ, 0, PROXY_MAX_HEADER + 1);
	bufferevent_enable(pc->client, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&proxy_conns, pc, entry);
	broker_metrics.proxy_connections++;
}

static void
proxy_error_cb(struct evconnlistener *l, void *arg)
{
	log_warn("proxy: accept");
}

int
proxy_start(struct event_base *base, int fd, char **cause)
{
	proxy_base = base;
	proxy_limit = connlimit_create(broker->max_conns,
	    broker->max_conns_addr);
	proxy_listener = evconnlistener_new(base, proxy_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (proxy_listener == NULL) {
		xasprintf(cause, "cannot accept on the SPICE proxy socket");
		return (-1);
	}
	evconnlistener_set_error_cb(proxy_listener, proxy_error_cb);
	return (0);
}

void
proxy_stop(void)
{
	struct proxy_route	*r;

	if (proxy_listener != NULL)
		evconnlistener_free(proxy_listener);
	proxy_listener = NULL;
	while (!TAILQ_EMPTY(&proxy_conns))
		proxy_conn_free(TAILQ_FIRST(&proxy_conns));
	connlimit_free(proxy_limit);
	proxy_limit = NULL;
	while ((r = TAILQ_FIRST(&proxy_routes)) != NULL) {
		TAILQ_REMOVE(&proxy_routes, r, entry);
		free(r);
	}
	proxy_nroutes = 0;
}
