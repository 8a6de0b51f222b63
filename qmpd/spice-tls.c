/*
 * SPICE over TLS for every desktop. QEMU listens with a tls-port only, so
 * a viewer's whole session is encrypted, not only its password, end to
 * end through the broker's CONNECT proxy, which splices bytes it cannot
 * read. One self-signed certificate per host, made at qmpd's first start
 * in DIR/spice-tls/ under the names QEMU's x509-dir wants (ca-cert.pem,
 * server-cert.pem, server-key.pem); the key is readable by QEMU's group
 * and no one else. Viewers get the certificate as the .vv file's ca= and
 * its subject as host-subject=, so they check the server with nothing
 * installed on their side. An admin who wants the company's CA instead
 * puts server-cert.pem, server-key.pem and ca-cert.pem there before
 * qmpd starts.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cert.h"
#include "log.h"
#include "qmpd.h"
#include "xmalloc.h"

#define SPICE_TLS_DAYS	3650

static char	*spice_tls_path;	/* DIR/spice-tls */
static char	*spice_tls_pem;		/* the certificate, PEM text */
static char	*spice_tls_subj;	/* "CN=...", as host-subject= */

static char *
spice_tls_file(const char *name)
{
	char	*path;

	xasprintf(&path, "%s/%s", spice_tls_path, name);
	return (path);
}

/* The whole of a small text file, or NULL. */
static char *
spice_tls_slurp(const char *path, char **cause)
{
	FILE	*f;
	char	*buf;
	size_t	 n;

	if ((f = fopen(path, "re")) == NULL) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	buf = xmalloc(65536);
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return (buf);
}

/*
 * The subject of the PEM certificate, as SPICE's host-subject= wants it:
 * "O=...,CN=..." in the certificate's own order (viewers rebuild the
 * name from the text and compare it whole, so RFC 2253's reversed order
 * would not match).
 */
static char *
spice_tls_subject_of(const char *pem, char **cause)
{
	BIO	*bio;
	X509	*x;
	char	*subj = NULL, *p;
	long	 len;

	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL ||
	    (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
		BIO_free(bio);
		cert_ssl_error(cause, "SPICE certificate");
		return (NULL);
	}
	BIO_free(bio);
	bio = BIO_new(BIO_s_mem());
	X509_NAME_print_ex(bio, X509_get_subject_name(x), 0,
	    XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV & ~ASN1_STRFLGS_ESC_MSB);
	if ((len = BIO_get_mem_data(bio, &p)) > 0) {
		subj = xmalloc(len + 1);
		memcpy(subj, p, len);
		subj[len] = '\0';
	} else
		xasprintf(cause, "SPICE certificate without a subject");
	BIO_free(bio);
	X509_free(x);
	return (subj);
}

/* Copy the certificate to ca-cert.pem: it is its own trust anchor. */
static int
spice_tls_write_ca(const char *pem, char **cause)
{
	char	*path;
	int	 rv;

	path = spice_tls_file("ca-cert.pem");
	rv = cert_write_text(path, pem, 0644, cause);
	free(path);
	return (rv);
}

int
spice_tls_init(char **cause)
{
	struct cert_spec	 spec;
	char			*cert, *key, *ca, *pem = NULL;
	char			 host[200], cn[240];
	int			 have_cert, have_key, rv = -1;

	xasprintf(&spice_tls_path, "%s/spice-tls", qmpd->state_dir);
	if (mkdir(spice_tls_path, 0750) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", spice_tls_path,
		    strerror(errno));
		return (-1);
	}
	/* QEMU (the VM user) reads the key through its group. */
	if (chown(spice_tls_path, 0, qmpd->vm_gid) == -1 ||
	    chmod(spice_tls_path, 0750) == -1) {
		xasprintf(cause, "%s: %s", spice_tls_path, strerror(errno));
		return (-1);
	}
	cert = spice_tls_file("server-cert.pem");
	key = spice_tls_file("server-key.pem");
	ca = spice_tls_file("ca-cert.pem");
	have_cert = access(cert, F_OK) == 0;
	have_key = access(key, F_OK) == 0;
	if (have_cert != have_key) {
		xasprintf(cause, "%s exists without %s: remove it and qmpd "
		    "makes a new pair", have_cert ? cert : key,
		    have_cert ? key : cert);
		goto out;
	}
	if (!have_cert) {
		if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
			strlcpy(host, "localhost", sizeof host);
		host[sizeof host - 1] = '\0';
		/*
		 * One CN and nothing else: viewers compare host-subject=
		 * entry by entry, in order, so the fewer the better.
		 */
		snprintf(cn, sizeof cn, "qdesk-spice-%s", host);
		memset(&spec, 0, sizeof spec);
		spec.cn = cn;
		spec.is_ca = 1;
		spec.days = SPICE_TLS_DAYS;
		spec.owner = 0;
		spec.group = qmpd->vm_gid;
		spec.key_mode = 0640;
		spec.cert_mode = 0644;
		if (cert_make(cert, key, &spec, cause) != 0)
			goto out;
		log_info("made the SPICE TLS certificate \"%s\" in %s", cn,
		    spice_tls_path);
	} else if (chown(key, 0, qmpd->vm_gid) == -1 ||
	    chmod(key, 0640) == -1) {
		xasprintf(cause, "%s: %s", key, strerror(errno));
		goto out;
	}
	/*
	 * Our own pair is its own anchor. An admin's pair (placed here
	 * before start) comes with its CA in ca-cert.pem, which viewers
	 * then get as ca=.
	 */
	if ((pem = spice_tls_slurp(cert, cause)) == NULL ||
	    (spice_tls_subj = spice_tls_subject_of(pem, cause)) == NULL)
		goto out;
	if (!have_cert || access(ca, F_OK) != 0) {
		if (spice_tls_write_ca(pem, cause) != 0)
			goto out;
		spice_tls_pem = pem;
		pem = NULL;
	} else if ((spice_tls_pem = spice_tls_slurp(ca, cause)) == NULL)
		goto out;
	rv = 0;
out:
	free(pem);
	free(ca);
	free(cert);
	free(key);
	return (rv);
}

const char *
spice_tls_dir(void)
{
	return (spice_tls_path);
}

const char *
spice_tls_ca(void)
{
	return (spice_tls_pem);
}

const char *
spice_tls_subject(void)
{
	return (spice_tls_subj);
}
