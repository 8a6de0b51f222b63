/*
 * The HTTPS certificate and TLS context. Unless the admin configures a
 * certificate, the broker makes a self-signed RSA 2048 one at first start
 * under DIR/broker/ (common/cert.c; key 0600, owned by the broker's user)
 * and reuses it; the RDP gateway serves the same pair, and FreeRDP 2
 * wants an RSA key.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "broker.h"
#include "cert.h"
#include "log.h"
#include "safefile.h"
#include "xmalloc.h"

#define TLS_CERT_DAYS	825
#define TLS_PEM_MAX	(256 * 1024)	/* a certificate chain or a key */

/*
 * Make a self-signed certificate for this host's name, localhost and the
 * loopback addresses: browsers will warn, but every connection is
 * encrypted from the first start, with no admin step.
 */
static int
tls_generate(const char *certpath, const char *keypath, uid_t owner,
    gid_t group, char **cause)
{
	struct cert_spec	 spec;
	char			 host[256], san[600];

	if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
		strlcpy(host, "localhost", sizeof host);
	host[sizeof host - 1] = '\0';
	snprintf(san, sizeof san, "DNS:%s,DNS:localhost,IP:127.0.0.1,"
	    "IP:::1", host);
	memset(&spec, 0, sizeof spec);
	spec.org = "qdesk";
	spec.cn = host;
	spec.san = san;
	spec.days = TLS_CERT_DAYS;
	spec.owner = owner;
	spec.group = group;
	spec.key_mode = 0600;
	spec.cert_mode = 0600;
	if (cert_make(certpath, keypath, &spec, cause) != 0)
		return (-1);
	log_info("made a self-signed certificate for %s in %s", host,
	    certpath);
	return (0);
}

/*
 * Put the certificate chain and key into ctx. Read as root from a
 * directory the broker's user owns, so through safefile.c: a link, a FIFO
 * or a second name of a root file planted there is refused, not read.
 */
static int
tls_load(SSL_CTX *ctx, const char *certpath, const char *keypath,
    uid_t owner, char **cause)
{
	EVP_PKEY	*pkey = NULL;
	X509		*x = NULL;
	BIO		*bio = NULL;
	char		*pem = NULL, *what = NULL;
	size_t		 len = 0;
	int		 rv = -1;

	if ((pem = safefile_read(certpath, TLS_PEM_MAX, owner, &len,
	    cause)) == NULL)
		return (-1);
	xasprintf(&what, "certificate %s", certpath);
	if ((bio = BIO_new_mem_buf(pem, len)) == NULL ||
	    (x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) == NULL ||
	    SSL_CTX_use_certificate(ctx, x) != 1)
		goto ssl_fail;
	SSL_CTX_clear_chain_certs(ctx);
	for (;;) {
		X509 *ca;

		if ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL)
			break;
		if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
			X509_free(ca);
			goto ssl_fail;
		}
	}
	ERR_clear_error();	/* the end of the chain */
	BIO_free(bio);
	bio = NULL;
	free(pem);
	free(what);
	if ((pem = safefile_read(keypath, TLS_PEM_MAX, owner, &len,
	    cause)) == NULL) {
		what = NULL;
		goto out;
	}
	xasprintf(&what, "key %s", keypath);
	if ((bio = BIO_new_mem_buf(pem, len)) == NULL ||
	    (pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL ||
	    SSL_CTX_use_PrivateKey(ctx, pkey) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto ssl_fail;
	rv = 0;
	goto out;
ssl_fail:
	cert_ssl_error(cause, what);
out:
	BIO_free(bio);
	X509_free(x);
	EVP_PKEY_free(pkey);
	if (pem != NULL) {
		explicit_bzero(pem, len);
		free(pem);
	}
	free(what);
	return (rv);
}

/*
 * The server context from certpath and keypath. With dir (the broker's
 * own certificate, not one the admin configured) the pair is made there
 * on first use. TLS 1.2 and up, no compression, no renegotiation.
 */
SSL_CTX *
tls_context(const char *dir, const char *certpath, const char *keypath,
    uid_t owner, gid_t group, char **cause)
{
	SSL_CTX		*ctx = NULL;
	int		 have_cert, have_key;

	if (dir != NULL) {
		if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
			xasprintf(cause, "mkdir %s: %s", dir, strerror(errno));
			return (NULL);
		}
		if (owner != (uid_t)-1 && chown(dir, owner, group) == -1)
			log_warn("chown %s", dir);
		have_cert = access(certpath, F_OK) == 0;
		have_key = access(keypath, F_OK) == 0;
		if (have_cert != have_key) {
			xasprintf(cause, "%s exists without %s: remove it and "
			    "the broker makes a new pair", have_cert ?
			    certpath : keypath, have_cert ? keypath : certpath);
			return (NULL);
		}
		if (!have_cert && tls_generate(certpath, keypath, owner, group,
		    cause) != 0)
			return (NULL);
	}

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		cert_ssl_error(cause, "SSL_CTX_new");
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (tls_load(ctx, certpath, keypath, dir != NULL ? owner :
	    SAFEFILE_ANY_OWNER, cause) != 0)
		goto fail;
	return (ctx);

fail:
	SSL_CTX_free(ctx);
	return (NULL);
}
