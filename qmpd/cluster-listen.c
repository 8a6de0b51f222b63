/*
 * The cluster's mutual-TLS listener (qmpd --listen, or the cluster file's
 * "listen"): the admin socket's JSON-lines protocol over TCP, for other
 * hosts, the broker and remote admins. Both sides show a certificate of
 * the cluster CA; the role is the client certificate's CN:
 *
 *   host:NAME	ROLE_HOST	host.* and migrate.* (and the broker's)
 *   broker	ROLE_BROKER	what the broker's unix socket user may do
 *   admin:NAME	ROLE_ADMIN	everything
 *
 * Anything else is refused: no certificate or one from another CA in the
 * handshake, another CN with one error line. A client that speaks plain
 * text where TLS is expected gets one plain error line saying so. Once
 * the handshake is done the connection is server.c's like any other.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cluster.h"
#include "log.h"
#include "names.h"
#include "qmpd.h"
#include "xmalloc.h"

/* A client must start its handshake (or say anything) within this. */
#define LISTEN_HELLO_TIMEOUT	10
#define LISTEN_PEER_MAX		64
/*
 * At most this many connections without a role yet (sniffing or in the
 * TLS handshake, which costs the server an RSA signature): a flood of
 * them must not starve the loop or the fds of the hosts and the broker,
 * whose connections, once authenticated, no longer count. Beyond it a
 * new connection is closed at once.
 */
#define LISTEN_PENDING_MAX	64

/* A connection before it has a role: sniffing, then in its handshake. */
struct listen_conn {
	int			 fd;
	struct event		*sniff;
	struct bufferevent	*bev;
	char			 peer[LISTEN_PEER_MAX];
	int			 refusing;	/* flushing an error, then gone */
	const char		*verify_error;	/* why its certificate failed */
};

static struct evconnlistener	*listen_listener;
static SSL_CTX			*listen_ctx;
static int			 listen_pending;	/* listen_conns */
static time_t			 listen_refused_at;	/* last logged */
static unsigned int		 listen_refused_n;	/* since then */

static void
listen_conn_free(struct listen_conn *lc)
{
	listen_pending--;
	if (lc->sniff != NULL)
		event_free(lc->sniff);
	if (lc->bev != NULL)
		bufferevent_free(lc->bev);
	else if (lc->fd != -1)
		close(lc->fd);
	free(lc);
}

/*
 * The role a client certificate's CN names, or ROLE_NONE with *why.
 * Pure: the unit test calls it.
 */
int
cluster_listen_role(const char *cn, char **why)
{
	char	*cause = NULL;

	*why = NULL;
	if (cn == NULL) {
		*why = xstrdup("the certificate has no CN");
		return (ROLE_NONE);
	}
	if (strcmp(cn, "broker") == 0)
		return (ROLE_BROKER);
	if (strncmp(cn, "host:", 5) == 0 || strncmp(cn, "admin:", 6) == 0) {
		if (names_valid(strchr(cn, ':') + 1, "name", &cause) != 0) {
			xasprintf(why, "certificate CN \"%s\": %s", cn, cause);
			free(cause);
			return (ROLE_NONE);
		}
		return (cn[0] == 'h' ? ROLE_HOST : ROLE_ADMIN);
	}
	xasprintf(why, "certificate CN \"%.64s\" names no role (host:NAME, "
	    "broker or admin:NAME)", cn);
	return (ROLE_NONE);
}

/* The CN of the client's certificate, or NULL. */
static char *
listen_peer_cn(SSL *ssl)
{
	X509	*x;
	char	 buf[256];
	int	 n;

	if ((x = SSL_get1_peer_certificate(ssl)) == NULL)
		return (NULL);
	n = X509_NAME_get_text_by_NID(X509_get_subject_name(x),
	    NID_commonName, buf, sizeof buf);
	X509_free(x);
	return (n > 0 && (size_t)n == strlen(buf) ? xstrdup(buf) : NULL);
}

/* An error line is out (or the client left): the connection goes. */
static void
listen_refused_write_cb(struct bufferevent *bev, void *arg)
{
	struct listen_conn	*lc = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		listen_conn_free(lc);
}

static void
listen_refused_event_cb(struct bufferevent *bev, short what, void *arg)
{
	listen_conn_free(arg);
}

/* Refuse a client that finished its handshake: one error line, then EOF. */
static void
listen_refuse(struct listen_conn *lc, const char *why)
{
	char		*line;
	struct timeval	 tv = { LISTEN_HELLO_TIMEOUT, 0 };

	log_warnx("cluster: refused %s: %s", lc->peer, why);
	line = proto_error(NULL, ERR_DENIED, why);
	lc->refusing = 1;
	bufferevent_setcb(lc->bev, NULL, listen_refused_write_cb,
	    listen_refused_event_cb, lc);
	bufferevent_set_timeouts(lc->bev, &tv, &tv);
	bufferevent_write(lc->bev, line, strlen(line));
	bufferevent_write(lc->bev, "\n", 1);
	bufferevent_enable(lc->bev, EV_WRITE);
	bufferevent_disable(lc->bev, EV_READ);
	free(line);
}

/*
 * Why a handshake failed, as one line: the verdict on the client's
 * certificate when there was one, else OpenSSL's reason.
 */
static void
listen_tls_error(struct listen_conn *lc, short what)
{
	SSL		*ssl = bufferevent_openssl_get_ssl(lc->bev);
	X509		*x;
	unsigned long	 e;
	long		 vr;
	char		 buf[256] = "";

	while ((e = bufferevent_get_openssl_error(lc->bev)) != 0)
		if (ERR_GET_LIB(e) != 0)
			ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	x = SSL_get0_peer_certificate(ssl);
	vr = SSL_get_verify_result(ssl);
	if (lc->verify_error != NULL || (x != NULL && vr != X509_V_OK))
		log_warnx("cluster: refused %s: TLS: certificate verify "
		    "failed: %s (a certificate not of this cluster's CA)",
		    lc->peer, lc->verify_error != NULL ? lc->verify_error :
		    X509_verify_cert_error_string(vr));
	else if (x == NULL && strstr(buf, "peer did not return") != NULL)
		log_warnx("cluster: refused %s: TLS: no certificate (no "
		    "client certificate)", lc->peer);
	else if (buf[0] != '\0')
		log_warnx("cluster: refused %s: TLS: %s", lc->peer, buf);
	else if (what & BEV_EVENT_TIMEOUT)
		log_warnx("cluster: refused %s: TLS: no handshake within "
		    "%d s", lc->peer, LISTEN_HELLO_TIMEOUT);
	else
		log_warnx("cluster: %s closed the connection in the TLS "
		    "handshake", lc->peer);
}

/* The handshake's end: the role from the certificate, or a refusal. */
static void
listen_handshake_cb(struct bufferevent *bev, short what, void *arg)
{
	struct listen_conn	*lc = arg;
	int			 role;
	char			*cn, *why = NULL;

	if (!(what & BEV_EVENT_CONNECTED)) {
		listen_tls_error(lc, what);
		listen_conn_free(lc);
		return;
	}
	cn = listen_peer_cn(bufferevent_openssl_get_ssl(bev));
	if ((role = cluster_listen_role(cn, &why)) == ROLE_NONE) {
		listen_refuse(lc, why);
		free(why);
		free(cn);
		return;
	}
	log_info("cluster: %s connected as %s", lc->peer, cn);
	xasprintf(&why, "%s at %s", cn, lc->peer);
	free(cn);
	bufferevent_set_timeouts(bev, NULL, NULL);
	server_client_new(bev, role, why);
	free(why);
	lc->bev = NULL;		/* server.c's now, the fd with it */
	lc->fd = -1;
	listen_conn_free(lc);
}

/*
 * The client's first bytes: a TLS handshake record (0x16) starts the
 * handshake; anything else is someone speaking plain text to a TLS port,
 * told so in one plain line.
 */
static void
listen_sniff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listen_conn	*lc = arg;
	struct timeval		 tv = { LISTEN_HELLO_TIMEOUT, 0 };
	unsigned char		 b;
	ssize_t			 n;
	SSL			*ssl;
	char			*line;

	event_free(lc->sniff);
	lc->sniff = NULL;
	if (what & EV_TIMEOUT) {
		log_warnx("cluster: %s said nothing within %d s: closed",
		    lc->peer, LISTEN_HELLO_TIMEOUT);
		listen_conn_free(lc);
		return;
	}
	n = recv(fd, &b, 1, MSG_PEEK);
	if (n <= 0) {
		listen_conn_free(lc);
		return;
	}
	if (b != 0x16) {
		log_warnx("cluster: refused %s: plain text on the TLS port",
		    lc->peer);
		line = proto_error(NULL, ERR_DENIED, "this port speaks TLS "
		    "with a client certificate of the cluster CA only (qdesk "
		    "--host ADDR:PORT --cert DIR)");
		/* Best effort: a fresh socket's buffer holds one line. */
		if (send(fd, line, strlen(line), MSG_DONTWAIT |
		    MSG_NOSIGNAL) != -1)
			send(fd, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		free(line);
		shutdown(fd, SHUT_WR);
		listen_conn_free(lc);
		return;
	}
	if ((ssl = SSL_new(listen_ctx)) == NULL) {
		log_warnx("cluster: SSL_new failed");
		listen_conn_free(lc);
		return;
	}
	SSL_set_app_data(ssl, lc);
	lc->bev = bufferevent_openssl_socket_new(qmpd->base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (lc->bev == NULL) {
		SSL_free(ssl);
		listen_conn_free(lc);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(lc->bev, 1);
	bufferevent_setcb(lc->bev, NULL, NULL, listen_handshake_cb, lc);
	bufferevent_set_timeouts(lc->bev, &tv, &tv);
	bufferevent_enable(lc->bev, EV_READ | EV_WRITE);
}

static void
listen_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listen_conn	*lc;
	struct timeval		 tv = { LISTEN_HELLO_TIMEOUT, 0 };
	char			 host[48] = "?";
	int			 port = 0, one = 1;

	if (listen_pending >= LISTEN_PENDING_MAX) {
		/* One line a second at most: the flood must not flood logs. */
		listen_refused_n++;
		if (time(NULL) != listen_refused_at) {
			log_warnx("cluster: refused %u connection(s): %d "
			    "already wait for their TLS handshake (the most "
			    "there may be)", listen_refused_n,
			    LISTEN_PENDING_MAX);
			listen_refused_at = time(NULL);
			listen_refused_n = 0;
		}
		close(fd);
		return;
	}
	listen_pending++;
	lc = xcalloc(1, sizeof *lc);
	lc->fd = fd;
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr,
		    host, sizeof host);
		port = ntohs(((struct sockaddr_in *)sa)->sin_port);
		snprintf(lc->peer, sizeof lc->peer, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr,
		    host, sizeof host);
		port = ntohs(((struct sockaddr_in6 *)sa)->sin6_port);
		snprintf(lc->peer, sizeof lc->peer, "[%s]:%d", host, port);
	}
	evutil_make_socket_nonblocking(fd);
	/* A request line is often two TLS records: no Nagle delay. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	lc->sniff = event_new(qmpd->base, fd, EV_READ, listen_sniff_cb, lc);
	event_add(lc->sniff, &tv);
}

static void
listen_error_cb(struct evconnlistener *l, void *arg)
{
	log_warn("cluster: accept");
}

/*
 * "ADDR:PORT" (IPv6 as [ADDR]:PORT) into a socket address, or -1 with
 * a one-line *cause. Pure: the unit test calls it.
 */
int
cluster_listen_parse(const char *text, struct sockaddr_storage *ss,
    int *sslen, char **cause)
{
	const char	*colon;

	*sslen = sizeof *ss;
	memset(ss, 0, sizeof *ss);
	colon = strrchr(text, ':');
	if (colon == NULL || colon == text || colon[1] == '\0' ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    atoi(colon + 1) < 1 || atoi(colon + 1) > 65535 ||
	    evutil_parse_sockaddr_port(text, (struct sockaddr *)ss,
	    sslen) != 0) {
		xasprintf(cause, "--listen \"%s\": want ADDR:PORT with a "
		    "numeric address and a port from 1 to 65535 (e.g. "
		    "10.0.0.11:7443)", text);
		return (-1);
	}
	return (0);
}

/* Note why a client's certificate failed, for the refusal's log line. */
static int
listen_verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL			*ssl;
	struct listen_conn	*lc;

	if (ok)
		return (1);
	ssl = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl != NULL && (lc = SSL_get_app_data(ssl)) != NULL &&
	    lc->verify_error == NULL)
		lc->verify_error = X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(xs));
	return (0);
}

/* The server's TLS context: its certificate, and clients of the CA only. */
static SSL_CTX *
listen_tls_context(const struct cluster_conf *cc, char **cause)
{
	SSL_CTX		*ctx;
	unsigned long	 e;
	char		 buf[256] = "unknown error";
	const char	*what;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		what = "SSL_CTX_new";
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	what = cc->cert;
	if (SSL_CTX_use_certificate_chain_file(ctx, cc->cert) != 1)
		goto fail;
	what = cc->key;
	if (SSL_CTX_use_PrivateKey_file(ctx, cc->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	what = cc->ca;
	if (SSL_CTX_load_verify_locations(ctx, cc->ca, NULL) != 1)
		goto fail;
	SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(cc->ca));
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, listen_verify_cb);
	return (ctx);
fail:
	if ((e = ERR_peek_last_error()) != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	xasprintf(cause, "cluster TLS: %s: %s", what, buf);
	SSL_CTX_free(ctx);
	return (NULL);
}

int
cluster_listen_start(const char *addr, char **cause)
{
	const struct cluster_conf	*cc = qmpd->cluster;
	struct sockaddr_storage		 ss;
	int				 sslen;

	if (cc == NULL || cc->ca == NULL || cc->cert == NULL ||
	    cc->key == NULL) {
		xasprintf(cause, "--listen needs --cluster FILE with ca, cert "
		    "and key (qdesk cluster init and qdesk cluster cert make "
		    "them)");
		return (-1);
	}
	if (cluster_listen_parse(addr, &ss, &sslen, cause) != 0)
		return (-1);
	if ((listen_ctx = listen_tls_context(cc, cause)) == NULL)
		return (-1);
	listen_listener = evconnlistener_new_bind(qmpd->base,
	    listen_accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE |
	    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 128,
	    (struct sockaddr *)&ss, sslen);
	if (listen_listener == NULL) {
		xasprintf(cause, "--listen %s: %s", addr, strerror(errno));
		SSL_CTX_free(listen_ctx);
		listen_ctx = NULL;
		return (-1);
	}
	evconnlistener_set_error_cb(listen_listener, listen_error_cb);
	log_info("cluster: listening on %s (mutual TLS)", addr);
	return (0);
}

void
cluster_listen_stop(void)
{
	if (listen_listener != NULL)
		evconnlistener_free(listen_listener);
	listen_listener = NULL;
	SSL_CTX_free(listen_ctx);
	listen_ctx = NULL;
}
