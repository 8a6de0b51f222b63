/*
 * A host's certificate checked at join: when the cluster file names one
 * and etcd holds the cluster CA (/qdesk/v1/cluster, made by `qdesk
 * cluster init`), the certificate must be issued by that CA and name
 * this host (CN host:NAME). Otherwise the host would join, be given
 * desktops, and then be refused by every peer and the broker in their
 * TLS handshakes: a desktop placed on a host nobody can reach. So it is
 * refused at start with one line, as a taken name or a skewed clock is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "cluster.h"
#include "qmpd.h"
#include "xmalloc.h"

/*
 * Why the certificate in certfile may not serve host name in a cluster
 * whose CA is ca_pem, or NULL if it may.
 */
static char *
cert_refuse(const char *ca_pem, const char *certfile, const char *name)
{
	BIO		*bio = NULL;
	FILE		*f = NULL;
	X509		*ca = NULL, *x = NULL;
	X509_STORE	*st = NULL;
	X509_STORE_CTX	*ctx = NULL;
	char		 cn[256], *why = NULL;
	int		 n;

	bio = BIO_new_mem_buf(ca_pem, -1);
	if (bio == NULL || (ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) ==
	    NULL) {
		why = xstrdup("etcd's /qdesk/v1/cluster has no CA certificate "
		    "(qdesk cluster init)");
		goto out;
	}
	if ((f = fopen(certfile, "r")) == NULL ||
	    (x = PEM_read_X509(f, NULL, NULL, NULL)) == NULL) {
		xasprintf(&why, "cannot read this host's certificate %s",
		    certfile);
		goto out;
	}
	if ((st = X509_STORE_new()) == NULL || X509_STORE_add_cert(st, ca) !=
	    1 || (ctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(ctx, st, x, NULL) != 1) {
		why = xstrdup("cannot set up the certificate check");
		goto out;
	}
	if (X509_verify_cert(ctx) != 1) {
		xasprintf(&why, "this host's certificate %s is not of the "
		    "cluster's CA (etcd's /qdesk/v1/cluster): %s; issue one "
		    "with qdesk cluster cert host %s", certfile,
		    X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(ctx)), name);
		goto out;
	}
	n = X509_NAME_get_text_by_NID(X509_get_subject_name(x),
	    NID_commonName, cn, sizeof cn);
	if (n < 0 || strncmp(cn, "host:", 5) != 0 || strcmp(cn + 5, name) !=
	    0) {
		xasprintf(&why, "this host's certificate %s names %s, not "
		    "host:%s; issue one with qdesk cluster cert host %s",
		    certfile, n < 0 ? "no CN" : cn, name, name);
		goto out;
	}
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(x);
	X509_free(ca);
	if (f != NULL)
		fclose(f);
	BIO_free(bio);
	return (why);
}

/*
 * Join check on the initial read's keys (kvs): NULL, or why this host's
 * certificate may not join. A cluster file without a certificate, or a
 * cluster without a CA in etcd, has nothing to check.
 */
char *
cluster_cert_refuse(json_t *kvs)
{
	struct cluster_conf	*c = qmpd->cluster;
	json_t			*kv, *doc;
	const char		*key, *ca;
	char			*want, *why;
	size_t			 i;

	if (c == NULL || c->cert == NULL)
		return (NULL);
	want = cluster_key("cluster");
	why = NULL;
	json_array_foreach(kvs, i, kv) {
		key = json_string_value(json_object_get(kv, "key"));
		if (key == NULL || strcmp(key, want) != 0)
			continue;
		doc = json_loads(json_string_value(json_object_get(kv,
		    "value")) != NULL ? json_string_value(json_object_get(kv,
		    "value")) : "", 0, NULL);
		ca = json_string_value(json_object_get(doc, "ca"));
		if (ca != NULL)
			why = cert_refuse(ca, c->cert, c->name);
		json_decref(doc);
		break;
	}
	free(want);
	return (why);
}
