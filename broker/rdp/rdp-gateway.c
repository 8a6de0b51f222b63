/*
 * The RDP gateway's side on the broker's libevent loop: the listening
 * socket, one control socket per session thread (rdp-peer.c), and the
 * registry of who is on which desktop, so that a second login of a user to
 * the same desktop takes it over. Nothing here blocks: accepting hands the
 * socket to a new thread at once.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <winpr/ssl.h>
#include <winpr/wlog.h>

#include "compat.h"
#include "log.h"
#include "rdp.h"
#include "rdp-gfx.h"
#include "rdp-int.h"
#include "rdp-tcpinfo.h"
#include "safefile.h"
#include "xmalloc.h"

#define RDP_GATEWAY_MAX_CONNS	128	/* sessions and logons at once */
#define RDP_GATEWAY_MAX_PER_ADDR 32	/* of them from one address */
#define RDP_GATEWAY_PEM_MAX	(1024 * 1024)

/* One RDP connection as the loop sees it. */
struct rdp_conn {
	int			 ctl;	/* our end of the control socket */
	int			 sock;	/* a dup of the client's socket */
	struct event		*ev;
	struct event		*timer;	/* logon deadline */
	char			 addr[RDP_ADDR_MAX];	/* with the port */
	char			 host[INET6_ADDRSTRLEN]; /* without */
	char			 login[RDP_LOGIN_MAX];
	char			 vm[RDP_VM_MAX];
	int			 charged;	/* a login attempt is */
	TAILQ_ENTRY(rdp_conn)	 entry;
};

static struct {
	struct event_base	*base;
	int			 fd;
	struct event		*ev;
	struct rdp_config	 cfg;
	TAILQ_HEAD(, rdp_conn)	 conns;
	int			 nconns;
	int			 started;
	struct rdp_gateway_stats done;	/* closed connections' part */
	int			(*throttle_try)(const char *);
	void			(*throttle_done)(const char *, int);
} rdp_gw = { .fd = -1 };

/* The kernel's byte counts of a connection's socket. */
static void
rdp_gateway_bytes(struct rdp_conn *c, unsigned long long *in,
    unsigned long long *out)
{
	rdp_tcpinfo_bytes(c->sock, in, out);
}

void
rdp_gateway_stats(struct rdp_gateway_stats *st,
    void (*per_vm)(const char *vm, void *), void *arg)
{
	struct rdp_conn	*c;

	*st = rdp_gw.done;
	st->open = rdp_gw.nconns;
	TAILQ_FOREACH(c, &rdp_gw.conns, entry) {
		rdp_gateway_bytes(c, &st->bytes_in, &st->bytes_out);
		if (c->vm[0] != '\0' && per_vm != NULL)
			per_vm(c->vm, arg);
	}
}

static void	rdp_gateway_cut(struct rdp_conn *);

void
rdp_gateway_throttle(int (*try)(const char *addr),
    void (*done)(const char *addr, int failed))
{
	rdp_gw.throttle_try = try;
	rdp_gw.throttle_done = done;
}

/*
 * A session asks whether its client's address may try a login: charge
 * the attempt and say "go", or say how long to wait.
 */
static void
rdp_gateway_try(struct rdp_conn *c)
{
	char	msg[32];
	int	wait = 0;

	if (rdp_gw.throttle_try != NULL) {
		wait = rdp_gw.throttle_try(c->host);
		c->charged = 1;
	}
	if (wait > 0) {
		log_warnx("RDP %s: login refused: too many failures from this "
		    "address", c->addr);
		snprintf(msg, sizeof msg, "wait %d", wait);
	} else
		snprintf(msg, sizeof msg, "go");
	if (send(c->ctl, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
		rdp_gateway_cut(c);
}

/* The charged attempt ended; failed or not. */
static void
rdp_gateway_tried(struct rdp_conn *c, int failed)
{
	if (!c->charged)
		return;
	c->charged = 0;
	if (rdp_gw.throttle_done != NULL)
		rdp_gw.throttle_done(c->host, failed);
}

/* Forget a connection whose thread ended (or never started). */
static void
rdp_gateway_conn_free(struct rdp_conn *c)
{
	rdp_gateway_bytes(c, &rdp_gw.done.bytes_in, &rdp_gw.done.bytes_out);
	TAILQ_REMOVE(&rdp_gw.conns, c, entry);
	rdp_gw.nconns--;
	event_free(c->ev);
	event_free(c->timer);
	close(c->ctl);
	if (c->sock != -1)
		close(c->sock);
	free(c);
}

/* Cut the client's socket under the thread: its reads and writes fail,
 * even inside FreeRDP's TLS accept, and the thread ends. */
static void
rdp_gateway_cut(struct rdp_conn *c)
{
	if (c->sock != -1)
		shutdown(c->sock, SHUT_RDWR);
}

static void
rdp_gateway_kick(struct rdp_conn *c, const char *reason)
{
	char	msg[RDP_CTL_MAX];

	snprintf(msg, sizeof msg, "kick %.240s", reason);
	if (send(c->ctl, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
		rdp_gateway_cut(c);
	c->login[0] = '\0';
	c->vm[0] = '\0';
}

/*
 * A session says who it is: it is now on that desktop, and any older
 * session of the same user on the same desktop is told and ended.
 */
static void
rdp_gateway_user(struct rdp_conn *c, const char *login, const char *vm)
{
	struct rdp_conn	*o;
	char		 reason[RDP_CTL_MAX];

	evtimer_del(c->timer);
	TAILQ_FOREACH(o, &rdp_gw.conns, entry) {
		if (o == c || strcmp(o->login, login) != 0 ||
		    strcmp(o->vm, vm) != 0)
			continue;
		log_info("RDP: %s's session on %s from %s is taken over by a "
		    "new login from %s", login, vm, o->addr, c->addr);
		snprintf(reason, sizeof reason, "%s logged in to %s again "
		    "from %s", login, vm, c->addr);
		rdp_gateway_kick(o, reason);
	}
	strlcpy(c->login, login, sizeof c->login);
	strlcpy(c->vm, vm, sizeof c->vm);
}

/* A message from a session thread, or its end (EOF). */
static void
rdp_gateway_ctl(evutil_socket_t fd, short events, void *arg)
{
	struct rdp_conn	*c = arg;
	char		 msg[RDP_CTL_MAX + 1], login[RDP_LOGIN_MAX];
	char		 vm[RDP_VM_MAX];
	ssize_t		 n;

	n = recv(c->ctl, msg, sizeof msg - 1, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* The thread ended (it logged why). */
		rdp_gateway_conn_free(c);
		return;
	}
	msg[n] = '\0';
	if (sscanf(msg, "user %63s %63s", login, vm) == 2)
		rdp_gateway_user(c, login, vm);
	else if (sscanf(msg, "auth %63s", login) == 1) {
		rdp_gw.done.logins++;
		evtimer_del(c->timer);
		rdp_gateway_tried(c, 0);
	} else if (strcmp(msg, "try") == 0)
		rdp_gateway_try(c);
	else if (strcmp(msg, "refund") == 0)
		rdp_gateway_tried(c, 0);
	else
		log_warnx("RDP %s: unknown control message '%.32s'", c->addr,
		    msg);
}

/* A client that has not logged in after RDP_LOGON_TIMEOUT: cut it. */
static void
rdp_gateway_deadline(evutil_socket_t fd, short events, void *arg)
{
	struct rdp_conn	*c = arg;

	if (c->login[0] != '\0')
		return;
	log_warnx("RDP %s: no login within %d s; connection cut", c->addr,
	    RDP_LOGON_TIMEOUT);
	rdp_gateway_cut(c);
}

/*
 * "1.2.3.4:5678" or "[::1]:5678" for log lines, and the bare address in
 * host, by which connections are counted.
 */
static void
rdp_gateway_addr(const struct sockaddr *sa, char *buf, size_t len,
    char *host, size_t hostlen)
{
	int	port = 0;

	snprintf(host, hostlen, "unknown");
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, host, hostlen);
		port = ntohs(sin->sin_port);
		snprintf(buf, len, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, hostlen);
		port = ntohs(sin6->sin6_port);
		snprintf(buf, len, "[%s]:%d", host, port);
	} else
		snprintf(buf, len, "unknown");
}

/* How many connections come from host now. */
static int
rdp_gateway_count(const char *host)
{
	struct rdp_conn	*c;
	int		 n = 0;

	TAILQ_FOREACH(c, &rdp_gw.conns, entry) {
		if (strcmp(c->host, host) == 0)
			n++;
	}
	return (n);
}

/* A new client: a control socket, a registry entry, a thread. */
static void
rdp_gateway_accept(evutil_socket_t lfd, short events, void *arg)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof ss;
	struct rdp_conn		*c;
	char			 addr[RDP_ADDR_MAX], host[INET6_ADDRSTRLEN];
	char			*cause = NULL;
	struct timeval		 tv = { RDP_LOGON_TIMEOUT, 0 };
	int			 fd, sv[2], one = 1, n;

	fd = accept4(lfd, (struct sockaddr *)&ss, &sslen, SOCK_CLOEXEC);
	if (fd == -1) {
		if (errno != EAGAIN && errno != EINTR &&
		    errno != ECONNABORTED)
			log_warn("RDP: accept");
		return;
	}
	rdp_gateway_addr((struct sockaddr *)&ss, addr, sizeof addr, host,
	    sizeof host);
	if (rdp_gw.nconns >= RDP_GATEWAY_MAX_CONNS) {
		log_warnx("RDP %s: refused: %d connections already", addr,
		    rdp_gw.nconns);
		close(fd);
		return;
	}
	if ((n = rdp_gateway_count(host)) >= RDP_GATEWAY_MAX_PER_ADDR) {
		log_warnx("RDP %s: refused: %d connections from this address "
		    "already", addr, n);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("RDP %s: socketpair", addr);
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->ctl = sv[0];
	c->sock = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	strlcpy(c->addr, addr, sizeof c->addr);
	strlcpy(c->host, host, sizeof c->host);
	c->ev = event_new(rdp_gw.base, c->ctl, EV_READ | EV_PERSIST,
	    rdp_gateway_ctl, c);
	c->timer = evtimer_new(rdp_gw.base, rdp_gateway_deadline, c);
	TAILQ_INSERT_TAIL(&rdp_gw.conns, c, entry);
	rdp_gw.nconns++;
	rdp_gw.done.connections++;
	log_debug("RDP %s: connected", addr);
	if (rdp_peer_spawn(fd, sv[1], addr, &rdp_gw.cfg, &cause) != 0) {
		log_warnx("%s", cause);
		free(cause);
		rdp_gateway_conn_free(c);
		return;
	}
	event_add(c->ev, NULL);
	evtimer_add(c->timer, &tv);
}

/*
 * A whole PEM file, before the broker drops its privileges: read as root
 * from a directory the broker's user may own, so through safefile.c (no
 * link planted there, no FIFO, no second name of a root file).
 */
static char *
rdp_gateway_pem(const char *path, const char *what, char **cause)
{
	char	*buf, *why = NULL;
	size_t	 n;

	buf = safefile_read(path, RDP_GATEWAY_PEM_MAX, SAFEFILE_ANY_OWNER, &n,
	    &why);
	if (buf == NULL) {
		xasprintf(cause, "RDP %s %s", what, why);
		free(why);
		return (NULL);
	}
	if (strstr(buf, "-----BEGIN") == NULL) {
		xasprintf(cause, "RDP %s %s is not a PEM file", what, path);
		explicit_bzero(buf, n);
		free(buf);
		return (NULL);
	}
	return (buf);
}

/* The listening socket for addr:port (any address when addr is empty). */
static int
rdp_gateway_listen(const char *addr, int port, char **cause)
{
	struct addrinfo	 hints, *res = NULL;
	char		 service[16];
	int		 fd = -1, one = 1, error;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(service, sizeof service, "%d", port);
	if (addr != NULL && *addr == '\0')
		addr = NULL;
	if ((error = getaddrinfo(addr, service, &hints, &res)) != 0) {
		xasprintf(cause, "RDP address %s: %s", addr != NULL ? addr :
		    "*", gai_strerror(error));
		return (-1);
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0);
	if (fd == -1) {
		xasprintf(cause, "RDP socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1) {
		xasprintf(cause, "RDP: cannot listen on %s:%d: %s",
		    addr != NULL ? addr : "*", port, strerror(errno));
		goto fail;
	}
	if (listen(fd, 32) == -1) {
		xasprintf(cause, "RDP: listen: %s", strerror(errno));
		goto fail;
	}
	freeaddrinfo(res);
	return (fd);
fail:
	if (fd != -1)
		close(fd);
	freeaddrinfo(res);
	return (-1);
}

/*
 * FreeRDP's own log (WLog, on stdout) reports every client that hangs up
 * as an error; our log says what happened to each session. So FreeRDP
 * speaks only at -vv (errors) and -vvv (everything), unless WLOG_LEVEL
 * asks for something else.
 */
static void
rdp_gateway_wlog(void)
{
	DWORD	level;

	if (getenv("WLOG_LEVEL") != NULL)
		return;
	switch (log_getverbose()) {
	case 0:
	case 1:
		level = WLOG_OFF;
		break;
	case 2:
		level = WLOG_ERROR;
		break;
	default:
		level = WLOG_DEBUG;
		break;
	}
	WLog_SetLogLevel(WLog_GetRoot(), level);
}

/* Forget the certificate, the key (wiped) and qmpd's socket path. */
static void
rdp_gateway_cfg_free(void)
{
	if (rdp_gw.cfg.key_pem != NULL)
		explicit_bzero(rdp_gw.cfg.key_pem, strlen(rdp_gw.cfg.key_pem));
	free(rdp_gw.cfg.cert_pem);
	free(rdp_gw.cfg.key_pem);
	free(rdp_gw.cfg.qmpd_socket);
	memset(&rdp_gw.cfg, 0, sizeof rdp_gw.cfg);
}

/*
 * Start on a listening socket the caller opened (the broker opens its
 * ports before dropping privileges); the gateway owns fd from here on,
 * also on failure.
 */
int
rdp_gateway_start_fd(struct event_base *base, int fd, const char *cert,
    const char *key, const char *qmpd_socket, char **cause)
{
	int	flags;

	if (rdp_gw.started) {
		xasprintf(cause, "RDP gateway already running");
		goto fail;
	}
#ifdef RDP_GFX_LIBAVCODEC
	rdp_gfx_avc_env();	/* the benches' x264 knob, before any session */
#endif
	rdp_gfx_env();		/* and the pacing window's */
	if (cert == NULL || key == NULL || qmpd_socket == NULL) {
		xasprintf(cause, "RDP gateway needs a certificate, a key and "
		    "qmpd's socket");
		goto fail;
	}
	memset(&rdp_gw.cfg, 0, sizeof rdp_gw.cfg);
	if ((rdp_gw.cfg.cert_pem = rdp_gateway_pem(cert, "certificate",
	    cause)) == NULL)
		goto fail;
	if ((rdp_gw.cfg.key_pem = rdp_gateway_pem(key, "key", cause)) == NULL)
		goto fail;
	rdp_gw.cfg.qmpd_socket = xstrdup(qmpd_socket);
	if ((flags = fcntl(fd, F_GETFL)) != -1)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);

	winpr_InitializeSSL(WINPR_SSL_INIT_DEFAULT);
	rdp_gateway_wlog();
	rdp_gw.fd = fd;
	rdp_gw.base = base;
	TAILQ_INIT(&rdp_gw.conns);
	rdp_gw.ev = event_new(base, rdp_gw.fd, EV_READ | EV_PERSIST,
	    rdp_gateway_accept, NULL);
	event_add(rdp_gw.ev, NULL);
	rdp_gw.started = 1;
	return (0);
fail:
	close(fd);
	rdp_gateway_cfg_free();
	return (-1);
}

/* Open addr:port and start there (rdp.h). */
int
rdp_gateway_start(struct event_base *base, const char *addr, int port,
    const char *cert, const char *key, const char *qmpd_socket, char **cause)
{
	int	fd;

	if (port <= 0 || port > 65535) {
		xasprintf(cause, "RDP port %d out of range", port);
		return (-1);
	}
	if ((fd = rdp_gateway_listen(addr, port, cause)) == -1)
		return (-1);
	if (rdp_gateway_start_fd(base, fd, cert, key, qmpd_socket,
	    cause) != 0)
		return (-1);
	log_info("RDP gateway on %s:%d", addr != NULL && *addr != '\0' ?
	    addr : "*", port);
	return (0);
}

/* Close the port and let every session go (rdp.h). */
void
rdp_gateway_stop(void)
{
	struct rdp_conn	*c;

	if (!rdp_gw.started)
		return;
	event_free(rdp_gw.ev);
	close(rdp_gw.fd);
	rdp_gw.fd = -1;
	/* Each thread sees its control socket close and says goodbye. */
	while ((c = TAILQ_FIRST(&rdp_gw.conns)) != NULL) {
		if (c->login[0] == '\0')
			rdp_gateway_cut(c);
		rdp_gateway_conn_free(c);
	}
	rdp_gateway_cfg_free();
	rdp_gw.started = 0;
}
