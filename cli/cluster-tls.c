/*
 * qdesk --host ADDR:PORT --cert DIR: the admin protocol to a remote
 * host's mutual-TLS listener (qmpd --listen). DIR is what qdesk cluster
 * cert admin NAME made: cert.pem and key.pem (CN admin:NAME) and ca.pem,
 * the cluster CA the host's certificate must come from (CN host:NAME, and
 * the address dialled when the certificate names addresses). Plain
 * blocking OpenSSL on the CLI's blocking socket.
 *
 * Each way a connection is refused ends in one line saying which side
 * refused what: no TLS there, the host's certificate not of this CA, the
 * host refusing ours (none, another CA) or its CN (an error line).
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "qdesk.h"
#include "xmalloc.h"

struct cluster_tls {
	SSL_CTX		*ctx;
	SSL		*ssl;
};

/* OpenSSL's last reason, as text (static). */
static const char *
cluster_tls_reason(void)
{
	static char	buf[256];
	unsigned long	e;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	return (buf[0] != '\0' ? strrchr(buf, ':') + 1 : "");
}

/* A refusal in the handshake or just after it, explained. */
static void
cluster_tls_explain(const char *addr, const char *dir, const char *reason,
    int havecert, char **cause)
{
	const char	*why;

	if (strstr(reason, "certificate required") != NULL ||
	    (!havecert && strstr(reason, "handshake failure") != NULL))
		why = "the host wants a client certificate of the cluster CA "
		    "and none was given (qdesk cluster cert admin NAME)";
	else if (strstr(reason, "unknown ca") != NULL ||
	    strstr(reason, "bad certificate") != NULL ||
	    strstr(reason, "decrypt error") != NULL)
		why = "the host refused our certificate: it is not of this "
		    "cluster's CA";
	else if (strstr(reason, "certificate verify failed") != NULL)
		why = "the host's certificate is not of the cluster CA in "
		    "this directory";
	else if (strstr(reason, "wrong version number") != NULL ||
	    strstr(reason, "packet length too long") != NULL ||
	    strstr(reason, "record layer failure") != NULL ||
	    strstr(reason, "unexpected eof") != NULL ||
	    strstr(reason, "closed without a TLS answer") != NULL ||
	    strstr(reason, "Connection reset") != NULL)
		why = "it does not speak TLS as a qdesk host does (is it a "
		    "qmpd --listen port?)";
	else
		why = "TLS failed";
	xasprintf(cause, "cannot reach qmpd at %s: %s (%s; --cert %s)", addr,
	    why, reason[0] != '\0' ? reason : "connection closed", dir);
}

/* A TCP connection to "HOST:PORT" within timeout seconds, or -1. */
static int
cluster_tls_dial(const char *addr, int timeout, char **host, char **cause)
{
	struct addrinfo	 hints, *res, *ai;
	struct pollfd	 pfd;
	const char	*colon;
	char		*port;
	int		 fd = -1, r, err = 0;
	socklen_t	 len = sizeof err;

	colon = strrchr(addr, ':');
	if (colon == NULL || colon == addr || colon[1] == '\0') {
		xasprintf(cause, "--host \"%s\": want ADDR:PORT", addr);
		return (-1);
	}
	if (addr[0] == '[' && colon[-1] == ']')
		*host = xstrndup(addr + 1, colon - addr - 2);
	else
		*host = xstrndup(addr, colon - addr);
	port = xstrdup(colon + 1);
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(*host, port, &hints, &res)) != 0) {
		xasprintf(cause, "--host \"%s\": %s", addr, gai_strerror(r));
		free(port);
		return (-1);
	}
	free(port);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, 0);
		if (fd == -1)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			if (poll(&pfd, 1, timeout > 0 ? timeout * 1000 : -1) ==
			    1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
			    &len) == 0 && err == 0)
				break;
			errno = err != 0 ? err : ETIMEDOUT;
		}
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		xasprintf(cause, "cannot reach qmpd at %s: %s", addr,
		    strerror(err != 0 ? err : ECONNREFUSED));
		return (-1);
	}
	/* Blocking from here, as the unix socket is. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return (fd);
}

/* The host's certificate: a host's CN, and our address when it names any. */
static int
cluster_tls_check_host(SSL *ssl, const char *addr, const char *host,
    char **cause)
{
	X509		*x;
	char		 cn[256] = "";
	int		 ok = 1;

	if ((x = SSL_get1_peer_certificate(ssl)) == NULL) {
		xasprintf(cause, "qmpd at %s showed no certificate", addr);
		return (-1);
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
	    cn, sizeof cn);
	if (strncmp(cn, "host:", 5) != 0) {
		xasprintf(cause, "%s is not a qdesk host: its certificate is "
		    "\"%s\", not host:NAME", addr, cn);
		ok = 0;
	} else if (X509_get_ext_by_NID(x, NID_subject_alt_name, -1) >= 0 &&
	    X509_check_ip_asc(x, host, 0) != 1 &&
	    X509_check_host(x, host, 0, 0, NULL) != 1) {
		xasprintf(cause, "the certificate of %s (\"%s\") is not for "
		    "address %s", addr, cn, host);
		ok = 0;
	}
	X509_free(x);
	return (ok ? 0 : -1);
}

/*
 * Connect to addr with the certificates in dir and wait for the first
 * line (the greeting or a refusal), so every TLS refusal is reported
 * here. Returns the connection and *fdp, or NULL with *cause.
 */
struct cluster_tls *
cluster_tls_connect(const char *addr, const char *dir, int timeout,
    int *fdp, char **cause)
{
	struct cluster_tls	*t;
	struct pollfd		 pfd;
	char			*ca, *cert, *key, *host = NULL, b;
	const char		*reason;
	int			 fd, havecert, n;

	*fdp = -1;
	xasprintf(&ca, "%s/ca.pem", dir);
	xasprintf(&cert, "%s/cert.pem", dir);
	xasprintf(&key, "%s/key.pem", dir);
	t = xcalloc(1, sizeof *t);
	if (access(ca, R_OK) != 0) {
		xasprintf(cause, "--cert %s: %s: %s (qdesk cluster cert admin "
		    "NAME --dir DIR makes DIR/admin-NAME)", dir, ca,
		    strerror(errno));
		goto fail;
	}
	havecert = access(cert, F_OK) == 0;
	t->ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	if (SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1) {
		xasprintf(cause, "--cert %s: %s: %s", dir, ca,
		    cluster_tls_reason());
		goto fail;
	}
	if (havecert && (SSL_CTX_use_certificate_chain_file(t->ctx,
	    cert) != 1 || SSL_CTX_use_PrivateKey_file(t->ctx, key,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(t->ctx) != 1)) {
		xasprintf(cause, "--cert %s: cert.pem and key.pem: %s", dir,
		    cluster_tls_reason());
		goto fail;
	}
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if ((fd = cluster_tls_dial(addr, timeout, &host, cause)) == -1)
		goto fail;
	*fdp = fd;
	t->ssl = SSL_new(t->ctx);
	SSL_set_fd(t->ssl, fd);
	errno = 0;
	if (SSL_connect(t->ssl) != 1) {
		/*
		 * No TLS alert, only a close or a reset in our handshake: a
		 * qdesk host always answers a ClientHello, so whatever this
		 * is (etcd's plain port closes or resets some of the time,
		 * answers in plain HTTP the rest), it is not one.
		 */
		reason = cluster_tls_reason();
		if (reason[0] == '\0')
			reason = errno != 0 ? strerror(errno) :
			    "closed without a TLS answer";
		cluster_tls_explain(addr, dir, reason, havecert, cause);
		goto fail;
	}
	if (cluster_tls_check_host(t->ssl, addr, host, cause) != 0)
		goto fail;
	/* TLS 1.3: the host judges our certificate after our handshake. */
	pfd.fd = fd;
	pfd.events = POLLIN;
	if (SSL_pending(t->ssl) == 0 && poll(&pfd, 1, timeout > 0 ?
	    timeout * 1000 : -1) == 0) {
		xasprintf(cause, "no greeting from qmpd at %s within %d s",
		    addr, timeout);
		goto fail;
	}
	if ((n = SSL_peek(t->ssl, &b, 1)) <= 0) {
		cluster_tls_explain(addr, dir, cluster_tls_reason(), havecert,
		    cause);
		goto fail;
	}
	free(host);
	free(ca);
	free(cert);
	free(key);
	return (t);
fail:
	if (*fdp != -1)
		close(*fdp);
	*fdp = -1;
	cluster_tls_free(t);
	free(host);
	free(ca);
	free(cert);
	free(key);
	return (NULL);
}

/* read(2) and write(2) over the connection: -1 with errno, 0 at EOF. */
ssize_t
cluster_tls_read(struct cluster_tls *t, void *buf, size_t len)
{
	int	n;

	if ((n = SSL_read(t->ssl, buf, len > 1 << 30 ? 1 << 30 : len)) > 0)
		return (n);
	switch (SSL_get_error(t->ssl, n)) {
	case SSL_ERROR_ZERO_RETURN:
		return (0);
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (errno == 0)
			return (0);	/* EOF without close_notify */
		return (-1);
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return (-1);
	default:
		/* The peer's alert or a broken record: connection over. */
		if (ERR_peek_last_error() != 0 &&
		    ERR_GET_REASON(ERR_peek_last_error()) ==
		    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return (0);
		}
		ERR_clear_error();
		errno = EPROTO;
		return (-1);
	}
}

ssize_t
cluster_tls_write(struct cluster_tls *t, const void *buf, size_t len)
{
	int	n;

	if ((n = SSL_write(t->ssl, buf, len > 1 << 30 ? 1 << 30 : len)) > 0)
		return (n);
	ERR_clear_error();
	if (errno == 0)
		errno = EPIPE;
	return (-1);
}

/* Bytes OpenSSL holds already decrypted: poll(2) would not see them. */
int
cluster_tls_pending(struct cluster_tls *t)
{
	return (SSL_pending(t->ssl));
}

void
cluster_tls_free(struct cluster_tls *t)
{
	if (t == NULL)
		return;
	if (t->ssl != NULL)
		SSL_free(t->ssl);
	SSL_CTX_free(t->ctx);
	free(t);
}
