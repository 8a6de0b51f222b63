/*
 * A client one qmpd uses to call another host's qmpd: the admin protocol
 * (JSON lines, proto.h) over a unix socket on this machine or over mutual
 * TLS to a cluster listener. Shaped like qmp.c: ids, a FIFO of pending
 * calls, deferred callbacks, every pending call answered once on close.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
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

#include "cert.h"
#include "cluster.h"
#include "compat.h"
#include "log.h"
#include "peer.h"
#include "proto.h"
#include "qmpd.h"
#include "xmalloc.h"

#define PEER_CONNECT_TIMEOUT	10	/* seconds, connect and handshake */

struct peer_call {
	json_int_t		 id;
	peer_reply_cb		 cb;
	void			*arg;
	int			 stream;	/* its reply turns into a stream */
	TAILQ_ENTRY(peer_call)	 entry;
};
TAILQ_HEAD(peer_calls, peer_call);

struct peer {
	char			*addr;
	struct bufferevent	*bev;
	SSL_CTX			*ctx;
	json_int_t		 next_id;
	struct peer_calls	 pending;
	peer_close_cb		 close_cb;
	void			*arg;
	int			 closed;
	int			 busy;		/* inside one of our callbacks */
	int			 doomed;	/* peer_free while busy */
	int			 streaming;	/* lines are over: bytes follow */
	char			*close_cause;
	struct event		*later;		/* deferred close report */
	char			*want_cn;	/* tls: the CN the peer must have */
	char			*cn_refused;	/* why its certificate was not */
};

int
peer_addr_valid(const char *addr)
{
	return (strncmp(addr, "unix:", 5) == 0 && addr[5] == '/') ||
	    (strncmp(addr, "tls:", 4) == 0 && strchr(addr + 4, ':') != NULL);
}

const char *
peer_addr(const struct peer *p)
{
	return (p->addr);
}

static void
peer_destroy(struct peer *p)
{
	struct peer_call	*c;

	while ((c = TAILQ_FIRST(&p->pending)) != NULL) {
		TAILQ_REMOVE(&p->pending, c, entry);
		free(c);
	}
	if (p->bev != NULL)
		bufferevent_free(p->bev);
	if (p->ctx != NULL)
		SSL_CTX_free(p->ctx);
	if (p->later != NULL)
		event_free(p->later);
	free(p->close_cause);
	free(p->want_cn);
	free(p->cn_refused);
	free(p->addr);
	free(p);
}

void
peer_free(struct peer *p)
{
	if (p == NULL)
		return;
	if (p->busy) {
		p->doomed = 1;
		p->close_cb = NULL;
		return;
	}
	peer_destroy(p);
}

/* Answer every pending call with Disconnected, then tell the owner. */
static void
peer_closed_cb(evutil_socket_t fd, short events, void *arg)
{
	struct peer		*p = arg;
	struct peer_call	*c;

	p->busy++;
	while (!p->doomed && (c = TAILQ_FIRST(&p->pending)) != NULL) {
		TAILQ_REMOVE(&p->pending, c, entry);
		if (c->cb != NULL)
			c->cb(p, NULL, "Disconnected", p->close_cause, c->arg);
		free(c);
	}
	if (!p->doomed && p->close_cb != NULL)
		p->close_cb(p, p->close_cause, p->arg);
	p->busy--;
	if (p->doomed && p->busy == 0)
		peer_destroy(p);
}

static void
peer_close(struct peer *p, const char *fmt, ...)
{
	struct timeval	 now = { 0, 0 };
	va_list		 ap;

	if (p->closed)
		return;
	p->closed = 1;
	va_start(ap, fmt);
	if (vasprintf(&p->close_cause, fmt, ap) == -1)
		p->close_cause = NULL;
	va_end(ap);
	log_info("peer %s: %s", p->addr, p->close_cause != NULL ?
	    p->close_cause : "closed");
	if (p->bev != NULL) {
		bufferevent_disable(p->bev, EV_READ | EV_WRITE);
	}
	p->later = evtimer_new(qmpd->base, peer_closed_cb, p);
	evtimer_add(p->later, &now);
}

/* One line from the other qmpd: its hello, a reply, or an event. */
static void
peer_line(struct peer *p, const char *line, size_t len)
{
	json_t			*msg, *id, *err;
	json_error_t		 jerr;
	struct peer_call	*c;
	enum proto_msg_kind	 kind;

	if ((msg = json_loadb(line, len, 0, &jerr)) == NULL) {
		peer_close(p, "bad JSON from the peer: %s", jerr.text);
		return;
	}
	kind = proto_classify(msg);
	if (kind != PROTO_MSG_RETURN && kind != PROTO_MSG_ERROR) {
		json_decref(msg);	/* hello, events, progress */
		return;
	}
	id = json_object_get(msg, "id");
	c = TAILQ_FIRST(&p->pending);
	if (c == NULL || !json_is_integer(id) ||
	    json_integer_value(id) != c->id) {
		json_decref(msg);
		peer_close(p, "a reply from the peer out of order");
		return;
	}
	TAILQ_REMOVE(&p->pending, c, entry);
	/* After a stream call's answer the connection carries its bytes. */
	if (c->stream && kind == PROTO_MSG_RETURN)
		p->streaming = 1;
	if (c->cb != NULL) {
		if (kind == PROTO_MSG_RETURN)
			c->cb(p, json_object_get(msg, "return"), NULL, NULL,
			    c->arg);
		else {
			err = json_object_get(msg, "error");
			c->cb(p, NULL, json_string_value(json_object_get(err,
			    "class")), json_string_value(json_object_get(err,
			    "desc")), c->arg);
		}
	}
	free(c);
	json_decref(msg);
}

static void
peer_read_cb(struct bufferevent *bev, void *arg)
{
	struct peer	*p = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line;
	size_t		 len;

	p->busy++;
	while (!p->doomed && !p->closed && !p->streaming &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		peer_line(p, line, len);
		free(line);
	}
	if (!p->doomed && !p->closed && !p->streaming &&
	    evbuffer_get_length(in) > PROTO_MAX_LINE)
		peer_close(p, "a line from the peer over %d bytes",
		    PROTO_MAX_LINE);
	p->busy--;
	if (p->doomed && p->busy == 0)
		peer_destroy(p);
}

static void
peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct peer	*p = arg;
	unsigned long	 e;
	char		 buf[256] = "";

	if (what & BEV_EVENT_CONNECTED) {
		bufferevent_set_timeouts(bev, NULL, NULL);
		return;
	}
	if (p->ctx != NULL && (e = bufferevent_get_openssl_error(bev)) != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	if (p->cn_refused != NULL)
		peer_close(p, "%s", p->cn_refused);
	else if (what & BEV_EVENT_TIMEOUT)
		peer_close(p, "no answer from the peer in %d s",
		    PEER_CONNECT_TIMEOUT);
	else if (what & BEV_EVENT_EOF)
		peer_close(p, "the peer closed the connection");
	else
		peer_close(p, "connection to the peer failed: %s",
		    buf[0] != '\0' ? buf : evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
}

/*
 * The chain is checked by OpenSSL; the leaf must also name the host we
 * meant to call (CN host:NAME), or the handshake fails before any request
 * is sent.
 */
static int
peer_verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL		*ssl;
	struct peer	*p;
	X509		*cert;
	char		 cn[256] = "";

	if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
		return (ok);
	ssl = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl == NULL || (p = SSL_get_app_data(ssl)) == NULL ||
	    p->want_cn == NULL)
		return (ok);
	cert = X509_STORE_CTX_get_current_cert(xs);
	if (cert == NULL || X509_NAME_get_text_by_NID(X509_get_subject_name(
	    cert), NID_commonName, cn, sizeof cn) < 0 ||
	    strcmp(cn, p->want_cn) != 0) {
		free(p->cn_refused);
		xasprintf(&p->cn_refused, "the peer's certificate is CN %s, "
		    "not %s", cn[0] != '\0' ? cn : "(none)", p->want_cn);
		return (0);
	}
	return (ok);
}

/* A TLS context from the cluster file: our host's pair, the cluster CA. */
static SSL_CTX *
peer_tls_ctx(char **cause)
{
	const struct cluster_conf	*cc = qmpd->cluster;

	if (cc == NULL || cc->ca == NULL || cc->cert == NULL ||
	    cc->key == NULL) {
		xasprintf(cause, "a tls: peer needs qmpd --cluster with ca, "
		    "cert and key");
		return (NULL);
	}
	return (cert_client_ctx(cc->ca, cc->cert, cc->key, "cluster TLS",
	    cause));
}

/* "ADDR:PORT" (ADDR may be [v6]) into a sockaddr. */
static int
peer_inet(const char *s, struct sockaddr_storage *ss, socklen_t *len,
    char **host)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			*h, *colon;
	long			 port;

	h = xstrdup(s[0] == '[' ? s + 1 : s);
	if ((colon = strrchr(h, ':')) == NULL)
		goto bad;
	*colon = '\0';
	if (colon > h && colon[-1] == ']')
		colon[-1] = '\0';
	port = strtol(colon + 1, NULL, 10);
	if (port < 1 || port > 65535)
		goto bad;
	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof *sin;
	} else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof *sin6;
	} else
		goto bad;
	*host = h;
	return (0);
bad:
	free(h);
	return (-1);
}

struct peer *
peer_open(const char *addr, peer_close_cb close_cb, void *arg, char **cause)
{
	return (peer_open_cn(addr, NULL, close_cb, arg, cause));
}

struct peer *
peer_open_cn(const char *addr, const char *cn, peer_close_cb close_cb,
    void *arg, char **cause)
{
	struct peer		*p;
	struct sockaddr_storage	 ss;
	struct sockaddr_un	*sun = (struct sockaddr_un *)&ss;
	socklen_t		 len;
	struct timeval		 tv = { PEER_CONNECT_TIMEOUT, 0 };
	SSL			*ssl;
	char			*host = NULL;

	if (!peer_addr_valid(addr)) {
		xasprintf(cause, "bad peer address %s: unix:PATH or "
		    "tls:ADDR:PORT", addr);
		return (NULL);
	}
	p = xcalloc(1, sizeof *p);
	p->addr = xstrdup(addr);
	p->next_id = 1;
	p->close_cb = close_cb;
	p->arg = arg;
	if (cn != NULL)
		p->want_cn = xstrdup(cn);
	TAILQ_INIT(&p->pending);
	if (strncmp(addr, "unix:", 5) == 0) {
		memset(&ss, 0, sizeof ss);
		sun->sun_family = AF_UNIX;
		if (strlcpy(sun->sun_path, addr + 5, sizeof sun->sun_path) >=
		    sizeof sun->sun_path) {
			xasprintf(cause, "peer socket path too long: %s", addr);
			goto fail;
		}
		len = sizeof *sun;
		p->bev = bufferevent_socket_new(qmpd->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	} else {
		if (peer_inet(addr + 4, &ss, &len, &host) != 0) {
			xasprintf(cause, "bad peer address %s: tls:ADDR:PORT",
			    addr);
			goto fail;
		}
		if ((p->ctx = peer_tls_ctx(cause)) == NULL ||
		    (ssl = SSL_new(p->ctx)) == NULL)
			goto fail;
		SSL_set_app_data(ssl, p);
		SSL_set_verify(ssl, SSL_VERIFY_PEER, peer_verify_cb);
		p->bev = bufferevent_openssl_socket_new(qmpd->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	}
	if (p->bev == NULL) {
		xasprintf(cause, "cannot set up a connection to %s", addr);
		goto fail;
	}
	bufferevent_setcb(p->bev, peer_read_cb, NULL, peer_event_cb, p);
	bufferevent_setwatermark(p->bev, EV_READ, 0, PROTO_MAX_LINE + 65536);
	bufferevent_set_timeouts(p->bev, &tv, &tv);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(p->bev, (struct sockaddr *)&ss,
	    len) != 0) {
		xasprintf(cause, "connect to %s: %s", addr, strerror(errno));
		goto fail;
	}
	free(host);
	return (p);
fail:
	free(host);
	peer_destroy(p);
	return (NULL);
}

static int
peer_call1(struct peer *p, const char *cmd, json_t *args, peer_reply_cb cb,
    void *arg, int stream)
{
	struct peer_call	*c;
	json_t			*id;
	char			*line;

	if (p->closed || p->doomed) {
		json_decref(args);
		return (-1);
	}
	c = xcalloc(1, sizeof *c);
	c->id = p->next_id++;
	c->cb = cb;
	c->arg = arg;
	c->stream = stream;
	if (args == NULL)
		args = json_object();
	id = json_integer(c->id);
	line = proto_request(id, cmd, args);
	json_decref(id);
	json_decref(args);
	TAILQ_INSERT_TAIL(&p->pending, c, entry);
	bufferevent_write(p->bev, line, strlen(line));
	bufferevent_write(p->bev, "\n", 1);
	free(line);
	log_debug("peer %s: -> %s", p->addr, cmd);
	return (0);
}

int
peer_call(struct peer *p, const char *cmd, json_t *args, peer_reply_cb cb,
    void *arg)
{
	return (peer_call1(p, cmd, args, cb, arg, 0));
}

int
peer_call_stream(struct peer *p, const char *cmd, json_t *args,
    peer_reply_cb cb, void *arg)
{
	if (!TAILQ_EMPTY(&p->pending)) {
		json_decref(args);
		return (-1);
	}
	return (peer_call1(p, cmd, args, cb, arg, 1));
}

/*
 * The connection, for the byte stream after a stream call's answer (what
 * is already read of it is in its input): the peer keeps nothing of it
 * and is closed, to be freed by its owner.
 */
struct bufferevent *
peer_take_stream(struct peer *p)
{
	struct bufferevent	*bev = p->bev;

	if (!p->streaming || bev == NULL)
		return (NULL);
	p->bev = NULL;
	p->closed = 1;
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	return (bev);
}
