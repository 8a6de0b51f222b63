/*
 * Self-signed certificates made at first start, so that every connection
 * is encrypted with no step by the admin: the broker's HTTPS/RDP pair and
 * qmpd's SPICE TLS pair; and a cluster CA's leaf certificates (qdesk
 * cluster cert). RSA 2048 (FreeRDP 2 and SPICE clients want RSA),
 * SHA-256, written through a temporary file and a rename.
 */
#ifndef CERT_H
#define CERT_H

#include <sys/types.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

struct cert_spec {
	const char	*org;		/* subject O, or NULL */
	const char	*cn;		/* subject CN */
	const char	*san;		/* subjectAltName as openssl.cnf, or NULL */
	int		 is_ca;		/* its own trust anchor (SPICE's ca=) */
	int		 days;
	uid_t		 owner;		/* (uid_t)-1: leave as created */
	gid_t		 group;
	mode_t		 key_mode;
	mode_t		 cert_mode;
	/*
	 * Signed by this CA (PEM files) instead of by itself, and usable as
	 * a TLS client too (mutual TLS between a cluster's hosts).
	 */
	const char	*issuer_cert;
	const char	*issuer_key;
	int		 client;
};

/* OpenSSL's error queue as one line "what: reason" in *cause. */
void	cert_ssl_error(char **cause, const char *what);

/* Write PEM text to path (mode), through a temporary file and a rename. */
int	cert_write_text(const char *path, const char *text, mode_t mode,
	    char **cause);

/*
 * A new v3 certificate with a random positive serial, valid from an hour
 * ago (clocks differ) for days: subject, key and extensions still to set.
 * NULL on failure (OpenSSL's error queue says why).
 */
X509	*cert_x509_new(int days);

/*
 * Add one X.509v3 extension to x, written as openssl.cnf would; issuer is
 * the signer for authorityKeyIdentifier (NULL: x itself).  0 or -1.
 */
int	cert_add_ext(X509 *x, X509 *issuer, int nid, const char *value);

int	cert_make(const char *certpath, const char *keypath,
	    const struct cert_spec *, char **cause);

/*
 * A client context for mutual TLS inside a cluster (the broker to its
 * hosts, one qmpd to another): our certificate chain and key, peers
 * signed by the CA only, TLS 1.2 at least. NULL with "what: reason".
 */
SSL_CTX	*cert_client_ctx(const char *ca, const char *cert, const char *key,
	    const char *what, char **cause);

#endif
