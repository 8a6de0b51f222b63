/*
 * SPICE over TLS for every desktop. QEMU listens with a tls-port only, so
 * a viewer's whole session is encrypted, not only its password, end to
 * end through the broker's CONNECT proxy, which splices bytes it cannot
 * read.
 *
 * A host CA, made at qmpd's first start in DIR/spice-tls/ (ca-cert.pem,
 * and ca-key.pem: root's alone, 0600, never given to any QEMU). At each
 * start a VM gets a key and certificate of its own, signed by the CA,
 * with the subject CN=qdesk-spice-NAME, in DIR/vms/NAME/tls/ (QEMU's
 * x509-dir) readable by that VM's uid alone. Viewers get the CA as the
 * .vv file's ca= and the VM's subject as host-subject=, so they check the
 * server with nothing installed, and one escaped guest can neither read
 * the CA key nor pass for another desktop.
 *
 * An admin who wants the company's PKI puts a CA allowed to sign there
 * (ca-cert.pem, ca-key.pem) before qmpd starts; or, with no CA key on the
 * host, a server pair (server-cert.pem, server-key.pem) and its CA in
 * ca-cert.pem, which every VM then shares (its key still root-only in
 * DIR/spice-tls and copied to each VM's dir for its uid alone). A pair
 * that an older qmpd made (its key was readable by every QEMU) is retired
 * and replaced by a CA.
 *
 * In a cluster a viewer must trust every host, as a live migration moves
 * its desktop (issue 14): each host's CA is then one the cluster's SPICE
 * root issued (qdesk cluster cert spice HOST), with that root beside it
 * as ca-root.pem. Viewers get ca-root.pem, and each VM's server-cert.pem
 * carries the host's CA after its own, so one anchor checks any host.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "log.h"
#include "qmpd.h"
#include "safefile.h"
#include "vm.h"
#include "xmalloc.h"

#define SPICE_TLS_DAYS		3650	/* the CA */
#define SPICE_TLS_LEAF_DAYS	825	/* a VM's certificate */
#define SPICE_TLS_PEM_MAX	(256 * 1024)
#define SPICE_TLS_CN_MAX	64	/* X.509's upper bound for a CN */

static char	*spice_tls_path;	/* DIR/spice-tls */
static char	*spice_tls_pem;		/* what viewers trust, PEM text */
static char	*spice_tls_chain;	/* an issued CA, sent after a leaf */
static X509	*spice_tls_cacert;	/* CA mode: the CA and its key */
static EVP_PKEY	*spice_tls_cakey;
static char	*spice_tls_pair_cert;	/* pair mode: the shared pair */
static char	*spice_tls_pair_key;
static char	*spice_tls_pair_subj;
static char	 spice_tls_subj[128];	/* the last subject asked for */
static char	 spice_tls_vmdir[4096];	/* the last x509-dir issued */

static char *
spice_tls_file(const char *name)
{
	char	*path;

	xasprintf(&path, "%s/%s", spice_tls_path, name);
	return (path);
}

/* The whole of a small file of DIR/spice-tls, or NULL with a cause. */
static char *
spice_tls_slurp(const char *name, char **cause)
{
	char	*path, *text;

	path = spice_tls_file(name);
	text = safefile_read(path, SPICE_TLS_PEM_MAX, 0, NULL, cause);
	free(path);
	return (text);
}

static int
spice_tls_exists(const char *name)
{
	char	*path;
	int	 rv;

	path = spice_tls_file(name);
	rv = access(path, F_OK) == 0;
	free(path);
	return (rv);
}

static X509 *
spice_tls_x509(const char *pem)
{
	BIO	*bio;
	X509	*x;

	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL)
		return (NULL);
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	return (x);
}

/*
 * The subject of a certificate, as SPICE's host-subject= wants it:
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

	if ((x = spice_tls_x509(pem)) == NULL) {
		cert_ssl_error(cause, "SPICE certificate");
		return (NULL);
	}
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

/* Make the host's CA: the key root's alone, the certificate for all. */
static int
spice_tls_make_ca(char **cause)
{
	struct cert_spec	 spec;
	char			*cert, *key, host[200], cn[240];
	int			 rv;

	if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
		strlcpy(host, "localhost", sizeof host);
	host[sizeof host - 1] = '\0';
	snprintf(cn, sizeof cn, "qdesk-spice-ca-%s", host);
	cn[SPICE_TLS_CN_MAX] = '\0';
	memset(&spec, 0, sizeof spec);
	spec.cn = cn;
	spec.is_ca = 1;
	spec.days = SPICE_TLS_DAYS;
	spec.owner = 0;
	spec.group = 0;
	spec.key_mode = 0600;
	spec.cert_mode = 0644;
	cert = spice_tls_file("ca-cert.pem");
	key = spice_tls_file("ca-key.pem");
	rv = cert_make(cert, key, &spec, cause);
	if (rv == 0)
		log_info("made the SPICE TLS CA \"%s\" in %s", cn,
		    spice_tls_path);
	free(cert);
	free(key);
	return (rv);
}

/* Make name root's alone (a key), whoever left it as what. */
static int
spice_tls_lock_key(const char *name, char **cause)
{
	char	*path;
	int	 fd, rv = 0;

	path = spice_tls_file(name);
	if ((fd = safefile_open(path, O_RDONLY, 0, 0, cause)) == -1)
		rv = -1;
	else if (fchown(fd, 0, 0) == -1 || fchmod(fd, 0600) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		rv = -1;
	}
	if (fd != -1)
		close(fd);
	free(path);
	return (rv);
}

/*
 * A CA issued by another (a cluster's): viewers trust that one,
 * ca-root.pem, and this CA goes with each leaf so they can get there.
 */
static int
spice_tls_load_root(char **cause)
{
	X509	*root;
	int	 ok;

	spice_tls_chain = spice_tls_pem;
	if ((spice_tls_pem = spice_tls_slurp("ca-root.pem", cause)) == NULL)
		return (-1);
	if ((root = spice_tls_x509(spice_tls_pem)) == NULL) {
		cert_ssl_error(cause, "SPICE CA ca-root.pem");
		return (-1);
	}
	ok = X509_check_issued(root, spice_tls_cacert) == X509_V_OK;
	X509_free(root);
	if (!ok) {
		xasprintf(cause, "%s/ca-root.pem did not issue ca-cert.pem: "
		    "remove it, or put the CA that did", spice_tls_path);
		return (-1);
	}
	log_info("SPICE CA issued by the one in %s/ca-root.pem: viewers "
	    "trust that one", spice_tls_path);
	return (0);
}

/* CA mode: keep the CA certificate and key in memory. */
static int
spice_tls_load_ca(char **cause)
{
	BIO	*bio = NULL;
	char	*key = NULL;
	int	 rv = -1;

	if (spice_tls_lock_key("ca-key.pem", cause) != 0 ||
	    (spice_tls_pem = spice_tls_slurp("ca-cert.pem", cause)) == NULL ||
	    (key = spice_tls_slurp("ca-key.pem", cause)) == NULL)
		goto out;
	if ((spice_tls_cacert = spice_tls_x509(spice_tls_pem)) == NULL) {
		cert_ssl_error(cause, "SPICE CA ca-cert.pem");
		goto out;
	}
	if ((bio = BIO_new_mem_buf(key, -1)) == NULL ||
	    (spice_tls_cakey = PEM_read_bio_PrivateKey(bio, NULL, NULL,
	    NULL)) == NULL ||
	    X509_check_private_key(spice_tls_cacert, spice_tls_cakey) != 1) {
		cert_ssl_error(cause, "SPICE CA ca-key.pem");
		goto out;
	}
	if (X509_check_ca(spice_tls_cacert) == 0) {
		xasprintf(cause, "SPICE CA ca-cert.pem may not sign "
		    "certificates (no CA:TRUE)");
		goto out;
	}
	if (spice_tls_exists("ca-root.pem") && spice_tls_load_root(cause) != 0)
		goto out;
	rv = 0;
out:
	BIO_free(bio);
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	return (rv);
}

/* Pair mode: the admin's server pair and CA, shared by every VM. */
static int
spice_tls_load_pair(char **cause)
{
	if (spice_tls_lock_key("server-key.pem", cause) != 0 ||
	    (spice_tls_pair_cert = spice_tls_slurp("server-cert.pem",
	    cause)) == NULL ||
	    (spice_tls_pair_key = spice_tls_slurp("server-key.pem",
	    cause)) == NULL ||
	    (spice_tls_pem = spice_tls_slurp("ca-cert.pem", cause)) == NULL ||
	    (spice_tls_pair_subj = spice_tls_subject_of(spice_tls_pair_cert,
	    cause)) == NULL)
		return (-1);
	return (0);
}

/*
 * An older qmpd's own pair (self-signed, its certificate also ca-cert.pem)
 * had a key every QEMU could read: it is retired, not trusted again.
 */
static int
spice_tls_is_old_pair(void)
{
	char	*cert, *ca, *cause = NULL;
	int	 old;

	if (!spice_tls_exists("ca-cert.pem"))
		return (1);
	cert = spice_tls_slurp("server-cert.pem", &cause);
	ca = spice_tls_slurp("ca-cert.pem", &cause);
	old = cert != NULL && ca != NULL && strcmp(cert, ca) == 0;
	free(cause);
	free(cert);
	free(ca);
	return (old);
}

int
spice_tls_init(char **cause)
{
	const char	*old[] = { "server-cert.pem", "server-key.pem",
			    "ca-cert.pem" };
	char		*path;
	size_t		 i;
	int		 have_cert, have_key;

	xasprintf(&spice_tls_path, "%s/spice-tls", qmpd->state_dir);
	if (mkdir(spice_tls_path, 0755) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", spice_tls_path,
		    strerror(errno));
		return (-1);
	}
	/* No QEMU reads here any more: root's, the CA certificate public. */
	if (chown(spice_tls_path, 0, 0) == -1 ||
	    chmod(spice_tls_path, 0755) == -1) {
		xasprintf(cause, "%s: %s", spice_tls_path, strerror(errno));
		return (-1);
	}
	if (spice_tls_exists("ca-key.pem"))
		return (spice_tls_load_ca(cause));
	have_cert = spice_tls_exists("server-cert.pem");
	have_key = spice_tls_exists("server-key.pem");
	if (have_cert != have_key) {
		xasprintf(cause, "%s/%s exists without %s: remove it and qmpd "
		    "makes a CA", spice_tls_path, have_cert ? "server-cert.pem"
		    : "server-key.pem", have_cert ? "server-key.pem" :
		    "server-cert.pem");
		return (-1);
	}
	if (have_cert && !spice_tls_is_old_pair())
		return (spice_tls_load_pair(cause));
	if (have_cert) {
		log_info("retiring the SPICE certificate of an older qmpd "
		    "(its key was readable by every QEMU): a CA replaces it");
		for (i = 0; i < nitems(old); i++) {
			path = spice_tls_file(old[i]);
			unlink(path);
			free(path);
		}
	}
	if (spice_tls_make_ca(cause) != 0)
		return (-1);
	return (spice_tls_load_ca(cause));
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

/* The file of what viewers trust (spice_tls_ca's text), for the CLI. */
char *
spice_tls_ca_file(void)
{
	return (spice_tls_file(spice_tls_chain != NULL ? "ca-root.pem" :
	    "ca-cert.pem"));
}

/* The CN of a VM's certificate: its name, or its uuid if that is long. */
static void
spice_tls_cn(const struct vm *vm, char *cn, size_t len)
{
	if (strlen("qdesk-spice-") + strlen(vm->def.name) <= SPICE_TLS_CN_MAX)
		snprintf(cn, len, "qdesk-spice-%s", vm->def.name);
	else
		snprintf(cn, len, "qdesk-spice-%s", vm->def.uuid);
}

/* The subject viewers check for vm (host-subject=); valid until the next call. */
const char *
spice_tls_subject(const struct vm *vm)
{
	char	cn[SPICE_TLS_CN_MAX + 1];

	if (spice_tls_pair_subj != NULL)
		return (spice_tls_pair_subj);
	spice_tls_cn(vm, cn, sizeof cn);
	snprintf(spice_tls_subj, sizeof spice_tls_subj, "CN=%s", cn);
	return (spice_tls_subj);
}

/*
 * A fresh key (P-256: made in well under a millisecond, so the loop does
 * not wait) and a certificate for vm signed by the CA, as PEM text.
 */
static int
spice_tls_leaf(const struct vm *vm, char **certpem, char **keypem,
    char **cause)
{
	EVP_PKEY	*pkey = NULL;
	X509		*x = NULL;
	BIO		*cb = NULL, *kb = NULL;
	char		 cn[SPICE_TLS_CN_MAX + 1], *p;
	long		 len;
	int		 rv = -1;

	spice_tls_cn(vm, cn, sizeof cn);
	if ((pkey = EVP_EC_gen("P-256")) == NULL ||
	    (x = cert_x509_new(SPICE_TLS_LEAF_DAYS)) == NULL)
		goto fail;
	if (X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
	    MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(spice_tls_cacert))
	    != 1 || X509_set_pubkey(x, pkey) != 1)
		goto fail;
	if (cert_add_ext(x, spice_tls_cacert, NID_basic_constraints,
	    "critical,CA:FALSE") != 0 ||
	    cert_add_ext(x, spice_tls_cacert, NID_key_usage,
	    "critical,digitalSignature,keyAgreement") != 0 ||
	    cert_add_ext(x, spice_tls_cacert, NID_ext_key_usage,
	    "serverAuth") != 0 ||
	    cert_add_ext(x, spice_tls_cacert, NID_subject_key_identifier,
	    "hash") != 0 ||
	    cert_add_ext(x, spice_tls_cacert, NID_authority_key_identifier,
	    "keyid") != 0 ||
	    X509_sign(x, spice_tls_cakey, EVP_sha256()) == 0)
		goto fail;
	if ((cb = BIO_new(BIO_s_mem())) == NULL ||
	    (kb = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_X509(cb, x) != 1 ||
	    PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1)
		goto fail;
	len = BIO_get_mem_data(cb, &p);
	if (spice_tls_chain != NULL)
		xasprintf(certpem, "%.*s%s", (int)len, p, spice_tls_chain);
	else
		*certpem = xstrndup(p, len);
	len = BIO_get_mem_data(kb, &p);
	*keypem = xstrndup(p, len);
	OPENSSL_cleanse(p, len);
	rv = 0;
	goto out;
fail:
	cert_ssl_error(cause, "SPICE certificate for the VM");
out:
	BIO_free(cb);
	BIO_free(kb);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return (rv);
}

/*
 * Write text as name in dfd (a dir the VM's uid owns): whatever is there
 * is removed, the file made exclusively (no link or FIFO is ever opened),
 * then given to uid, readable by it alone.
 */
int
spice_tls_put(int dfd, const char *name, const char *text, uid_t uid,
    char **cause)
{
	size_t	 len = strlen(text), off = 0;
	ssize_t	 n;
	int	 fd;

	if (unlinkat(dfd, name, 0) == -1 && errno != ENOENT) {
		xasprintf(cause, "%s: %s", name, strerror(errno));
		return (-1);
	}
	if ((fd = safefile_openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL,
	    0600, uid, cause)) == -1)
		return (-1);
	while (off < len) {
		if ((n = write(fd, text + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			xasprintf(cause, "%s: %s", name, strerror(errno));
			close(fd);
			return (-1);
		}
		off += n;
	}
	if (fchown(fd, uid, uid) == -1 || fchmod(fd, 0600) == -1) {
		xasprintf(cause, "%s: %s", name, strerror(errno));
		close(fd);
		return (-1);
	}
	close(fd);
	return (0);
}

/*
 * Give vm its own key and certificate in DIR/vms/NAME/tls (QEMU's
 * x509-dir), readable by its uid alone; returns that dir (valid until
 * the next call) or NULL with a cause. The runtime dir exists already.
 */
const char *
spice_tls_issue(struct vm *vm, char **cause)
{
	char	*rundir, *certpem = NULL, *keypem = NULL;
	uid_t	 uid;
	int	 rfd = -1, tfd = -1;
	const char *rv = NULL;

	if ((uid = vm_uid_lookup(vm->def.name)) == (uid_t)-1) {
		xasprintf(cause, "VM %s has no uid for its SPICE key",
		    vm->def.name);
		return (NULL);
	}
	xasprintf(&rundir, "%s/vms/%s", qmpd->state_dir, vm->def.name);
	snprintf(spice_tls_vmdir, sizeof spice_tls_vmdir, "%s/tls", rundir);
	if ((rfd = safefile_open(rundir, O_RDONLY | O_DIRECTORY, 0, uid,
	    cause)) == -1)
		goto out;
	if (mkdirat(rfd, "tls", 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "%s: %s", spice_tls_vmdir, strerror(errno));
		goto out;
	}
	if ((tfd = safefile_open(spice_tls_vmdir, O_RDONLY | O_DIRECTORY, 0,
	    uid, cause)) == -1)
		goto out;
	if (fchown(tfd, uid, uid) == -1 || fchmod(tfd, 0700) == -1) {
		xasprintf(cause, "%s: %s", spice_tls_vmdir, strerror(errno));
		goto out;
	}
	if (spice_tls_pair_key != NULL) {
		certpem = xstrdup(spice_tls_pair_cert);
		keypem = xstrdup(spice_tls_pair_key);
	} else if (spice_tls_leaf(vm, &certpem, &keypem, cause) != 0)
		goto out;
	if (spice_tls_put(tfd, "ca-cert.pem", spice_tls_pem, uid, cause) != 0 ||
	    spice_tls_put(tfd, "server-cert.pem", certpem, uid, cause) != 0 ||
	    spice_tls_put(tfd, "server-key.pem", keypem, uid, cause) != 0)
		goto out;
	rv = spice_tls_vmdir;
out:
	if (keypem != NULL) {
		explicit_bzero(keypem, strlen(keypem));
		free(keypem);
	}
	free(certpem);
	if (tfd != -1)
		close(tfd);
	if (rfd != -1)
		close(rfd);
	free(rundir);
	return (rv);
}
