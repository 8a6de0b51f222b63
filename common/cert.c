/*
 * Make a self-signed certificate and its key (see cert.h). Used once per
 * host at a daemon's first start, before its event loop runs: the RSA
 * key takes a fraction of a second.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "file.h"
#include "xmalloc.h"

#define CERT_RSA_BITS	2048

void
cert_ssl_error(char **cause, const char *what)
{
	char		buf[256] = "unknown error";
	unsigned long	e;

	if ((e = ERR_peek_last_error()) != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	xasprintf(cause, "%s: %s", what, buf);
}

int
cert_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX	 ctx;
	X509_EXTENSION	*ext;
	int		 rv;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return (-1);
	rv = X509_add_ext(x, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return (rv);
}

X509 *
cert_x509_new(int days)
{
	X509		*x;
	BIGNUM		*bn;
	unsigned char	 rnd[16];

	if ((x = X509_new()) == NULL || X509_set_version(x, 2) != 1 ||
	    RAND_bytes(rnd, sizeof rnd) != 1) {
		X509_free(x);
		return (NULL);
	}
	rnd[0] &= 0x7f;		/* a positive serial */
	bn = BN_bin2bn(rnd, sizeof rnd, NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * days);
	return (x);
}

/*
 * Write what write_cb puts in a memory BIO to path, whole or not at all
 * (file_write_atomic); a key's bytes are wiped from memory afterwards.
 */
static int
cert_write(const char *path, int (*write_cb)(BIO *, void *), void *arg,
    const struct cert_spec *spec, mode_t mode, char **cause)
{
	BIO	*bio;
	char	*data;
	long	 len;
	int	 rv;

	if ((bio = BIO_new(BIO_s_mem())) == NULL) {
		cert_ssl_error(cause, path);
		return (-1);
	}
	if (write_cb(bio, arg) != 1) {
		cert_ssl_error(cause, path);
		BIO_free(bio);
		return (-1);
	}
	len = BIO_get_mem_data(bio, &data);
	/* The group goes with the owner: an unset owner leaves both. */
	rv = file_write_atomic(path, data, len, mode, spec->owner,
	    spec->owner != (uid_t)-1 ? spec->group : (gid_t)-1, cause);
	OPENSSL_cleanse(data, len);
	BIO_free(bio);
	return (rv);
}

static int
cert_write_key(BIO *bio, void *arg)
{
	return (PEM_write_bio_PrivateKey(bio, arg, NULL, NULL, 0, NULL,
	    NULL));
}

static int
cert_write_cert(BIO *bio, void *arg)
{
	return (PEM_write_bio_X509(bio, arg));
}

int
cert_write_text(const char *path, const char *text, mode_t mode,
    char **cause)
{
	return (file_write_atomic(path, text, strlen(text), mode, (uid_t)-1,
	    (gid_t)-1, cause));
}

/*
 * The issuing CA's certificate and key (spec->issuer_*), checked to be a
 * pair, or -1 with *cause.
 */
static int
cert_load_issuer(const struct cert_spec *spec, X509 **ica, EVP_PKEY **ikey,
    char **cause)
{
	FILE	*f;

	if ((f = fopen(spec->issuer_cert, "r")) == NULL) {
		xasprintf(cause, "%s: %s", spec->issuer_cert, strerror(errno));
		return (-1);
	}
	*ica = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (*ica == NULL) {
		cert_ssl_error(cause, spec->issuer_cert);
		return (-1);
	}
	if ((f = fopen(spec->issuer_key, "r")) == NULL) {
		xasprintf(cause, "%s: %s", spec->issuer_key, strerror(errno));
		return (-1);
	}
	*ikey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (*ikey == NULL) {
		cert_ssl_error(cause, spec->issuer_key);
		return (-1);
	}
	if (X509_check_private_key(*ica, *ikey) != 1) {
		ERR_clear_error();
		xasprintf(cause, "%s is not the key of %s", spec->issuer_key,
		    spec->issuer_cert);
		return (-1);
	}
	return (0);
}

int
cert_make(const char *certpath, const char *keypath,
    const struct cert_spec *spec, char **cause)
{
	EVP_PKEY	*pkey = NULL, *ikey = NULL;
	X509		*x = NULL, *ica = NULL, *issuer;
	X509_NAME	*name;
	int		 rv = -1, bad;

	if (spec->issuer_cert != NULL &&
	    cert_load_issuer(spec, &ica, &ikey, cause) != 0)
		goto out;
	if ((pkey = EVP_RSA_gen(CERT_RSA_BITS)) == NULL) {
		cert_ssl_error(cause, "RSA key");
		goto out;
	}
	if ((x = cert_x509_new(spec->days)) == NULL)
		goto fail;
	name = X509_get_subject_name(x);
	if (spec->org != NULL)
		X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
		    (const unsigned char *)spec->org, -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)spec->cn, -1, -1, 0);
	issuer = ica != NULL ? ica : x;
	X509_set_issuer_name(x, X509_get_subject_name(issuer));
	X509_set_pubkey(x, pkey);
	/*
	 * A self-signed certificate a client is told to trust (SPICE's ca=)
	 * must be allowed to sign, or OpenSSL refuses it as an anchor.
	 */
	bad = (spec->san != NULL &&
	    cert_add_ext(x, issuer, NID_subject_alt_name, spec->san) != 0) ||
	    cert_add_ext(x, issuer, NID_basic_constraints, spec->is_ca ?
	    "critical,CA:TRUE" : "critical,CA:FALSE") != 0 ||
	    cert_add_ext(x, issuer, NID_key_usage, spec->is_ca ?
	    "critical,digitalSignature,keyEncipherment,keyCertSign" :
	    "critical,digitalSignature,keyEncipherment") != 0 ||
	    cert_add_ext(x, issuer, NID_ext_key_usage, spec->client ?
	    "serverAuth,clientAuth" : "serverAuth") != 0 ||
	    (spec->is_ca && cert_add_ext(x, issuer,
	    NID_subject_key_identifier, "hash") != 0);
	if (bad || X509_sign(x, ikey != NULL ? ikey : pkey,
	    EVP_sha256()) == 0)
		goto fail;
	if (cert_write(keypath, cert_write_key, pkey, spec, spec->key_mode,
	    cause) != 0 || cert_write(certpath, cert_write_cert, x, spec,
	    spec->cert_mode, cause) != 0) {
		unlink(keypath);
		goto out;
	}
	rv = 0;
	goto out;
fail:
	cert_ssl_error(cause, ica != NULL ? "certificate" :
	    "self-signed certificate");
out:
	X509_free(x);
	X509_free(ica);
	EVP_PKEY_free(pkey);
	EVP_PKEY_free(ikey);
	return (rv);
}

SSL_CTX *
cert_client_ctx(const char *ca, const char *cert, const char *key,
    const char *what, char **cause)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		cert_ssl_error(cause, what);
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		cert_ssl_error(cause, what);
		SSL_CTX_free(ctx);
		return (NULL);
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return (ctx);
}
