/*
 * The HTTPS certificate and TLS context. Unless the admin configures a
 * certificate, the broker makes a self-signed RSA 2048 one at first start
 * under DIR/broker/ (0600, owned by the broker's user) and reuses it; the
 * RDP gateway serves the same pair, and FreeRDP 2 wants an RSA key.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "broker.h"
#include "log.h"
#include "xmalloc.h"

#define TLS_CERT_DAYS	825
#define TLS_RSA_BITS	2048

/* OpenSSL's error queue as one line for a cause. */
static void
tls_cause(char **cause, const char *what)
{
	char		buf[256] = "unknown error";
	unsigned long	e;

	if ((e = ERR_peek_last_error()) != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	xasprintf(cause, "%s: %s", what, buf);
}

/* Add one X.509v3 extension, written as openssl.cnf would. */
static int
tls_add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX	 ctx;
	X509_EXTENSION	*ext;
	int		 rv;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return (-1);
	rv = X509_add_ext(x, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return (rv);
}

/* Write PEM text to path through a 0600 temporary file and a rename. */
static int
tls_write(const char *path, int (*write_cb)(FILE *, void *), void *arg,
    uid_t owner, gid_t group, char **cause)
{
	char	*tmp;
	FILE	*f;
	int	 fd;

	xasprintf(&tmp, "%s.tmp", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1 || (f = fdopen(fd, "w")) == NULL) {
		xasprintf(cause, "create %s: %s", tmp, strerror(errno));
		if (fd != -1)
			close(fd);
		free(tmp);
		return (-1);
	}
	if (write_cb(f, arg) != 1 || fflush(f) != 0 || fsync(fd) != 0) {
		tls_cause(cause, path);
		fclose(f);
		unlink(tmp);
		free(tmp);
		return (-1);
	}
	if (owner != (uid_t)-1 && fchown(fd, owner, group) == -1)
		log_warn("chown %s", tmp);
	fclose(f);
	if (rename(tmp, path) == -1) {
		xasprintf(cause, "rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		free(tmp);
		return (-1);
	}
	free(tmp);
	return (0);
}

static int
tls_write_key(FILE *f, void *arg)
{
	return (PEM_write_PrivateKey(f, arg, NULL, NULL, 0, NULL, NULL));
}

static int
tls_write_cert(FILE *f, void *arg)
{
	return (PEM_write_X509(f, arg));
}

/*
 * Make a self-signed certificate for this host's name, localhost and the
 * loopback addresses: browsers will warn, but every connection is
 * encrypted from the first start, with no admin step.
 */
static int
tls_generate(const char *certpath, const char *keypath, uid_t owner,
    gid_t group, char **cause)
{
	EVP_PKEY	*pkey = NULL;
	X509		*x = NULL;
	X509_NAME	*name;
	ASN1_INTEGER	*serial;
	unsigned char	 rnd[16];
	char		 host[256], san[600];
	BIGNUM		*bn;
	int		 rv = -1;

	if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
		strlcpy(host, "localhost", sizeof host);
	host[sizeof host - 1] = '\0';
	if ((pkey = EVP_RSA_gen(TLS_RSA_BITS)) == NULL) {
		tls_cause(cause, "RSA key");
		goto out;
	}
	if ((x = X509_new()) == NULL || X509_set_version(x, 2) != 1)
		goto fail;
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		goto fail;
	rnd[0] &= 0x7f;
	bn = BN_bin2bn(rnd, sizeof rnd, NULL);
	serial = X509_get_serialNumber(x);
	BN_to_ASN1_INTEGER(bn, serial);
	BN_free(bn);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * TLS_CERT_DAYS);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
	    (const unsigned char *)"qdesk", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)host, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, pkey);
	snprintf(san, sizeof san, "DNS:%s,DNS:localhost,IP:127.0.0.1,"
	    "IP:::1", host);
	if (tls_add_ext(x, NID_subject_alt_name, san) != 0 ||
	    tls_add_ext(x, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    tls_add_ext(x, NID_key_usage, "critical,digitalSignature,"
	    "keyEncipherment") != 0 ||
	    tls_add_ext(x, NID_ext_key_usage, "serverAuth") != 0)
		goto fail;
	if (X509_sign(x, pkey, EVP_sha256()) == 0)
		goto fail;
	if (tls_write(keypath, tls_write_key, pkey, owner, group, cause) != 0 ||
	    tls_write(certpath, tls_write_cert, x, owner, group, cause) != 0) {
		unlink(keypath);
		goto out;
	}
	log_info("made a self-signed certificate for %s in %s", host,
	    certpath);
	rv = 0;
	goto out;
fail:
	tls_cause(cause, "self-signed certificate");
out:
	X509_free(x);
	EVP_PKEY_free(pkey);
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
	char		*what;
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
		tls_cause(cause, "SSL_CTX_new");
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, certpath) != 1) {
		xasprintf(&what, "certificate %s", certpath);
		tls_cause(cause, what);
		free(what);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, keypath, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		xasprintf(&what, "key %s", keypath);
		tls_cause(cause, what);
		free(what);
		goto fail;
	}
	return (ctx);

fail:
	SSL_CTX_free(ctx);
	return (NULL);
}
