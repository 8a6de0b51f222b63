/*
 * qdesk cluster init and qdesk cluster cert: the cluster CA and the
 * certificates of hosts, brokers and admins, made on this machine (the
 * CA's key never leaves DIR), and the CA's certificate published in etcd
 * (/qdesk/v1/cluster) so every host and broker trusts the same one.
 *
 *   DIR/ca.pem, DIR/ca-key.pem		the CA (cluster init)
 *   DIR/KIND-NAME/{ca,cert,key}.pem	a leaf and the CA to check peers
 *					with (cluster cert)
 *
 * These commands never talk to qmpd; etcd is reached with cluster/'s
 * client on a loop of their own.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cert.h"
#include "etcd.h"
#include "file.h"
#include "names.h"
#include "qdesk.h"
#include "xmalloc.h"

#define CLUSTER_KEY		"/qdesk/v1/cluster"
#define CLUSTER_VERSION		1
#define CLUSTER_CA_DAYS		3650
#define CLUSTER_LEAF_DAYS	825

/* One etcd call run to its end on a loop of our own. */
struct cluster_wait {
	struct event_base	*base;
	json_t			*result;
	char			*errclass;
	char			*cause;
	int			 done;
};

static void
cluster_wait_cb(void *arg, json_t *result, const char *errclass,
    const char *cause)
{
	struct cluster_wait	*w = arg;

	w->done = 1;
	if (errclass != NULL) {
		w->errclass = xstrdup(errclass);
		w->cause = xstrdup(cause != NULL ? cause : errclass);
	} else
		w->result = json_incref(result);
	event_base_loopbreak(w->base);
}

/* A file's whole text, or NULL with *cause. */
static char *
cluster_read(const char *path, char **cause)
{
	FILE	*f;
	char	*text = NULL;
	size_t	 size = 0;
	ssize_t	 n;

	if ((f = fopen(path, "r")) == NULL) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	n = getdelim(&text, &size, '\0', f);
	fclose(f);
	if (n <= 0) {
		free(text);
		xasprintf(cause, "%s: empty or unreadable", path);
		return (NULL);
	}
	return (text);
}

/* DIR made 0700 if missing: it holds the CA's key. */
static int
cluster_dir(const char *dir, char **cause)
{
	struct stat	st;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "--dir %s: %s", dir, strerror(errno));
		return (-1);
	}
	if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		xasprintf(cause, "--dir %s: not a directory", dir);
		return (-1);
	}
	return (0);
}

/*
 * Publish {"version","ca"} at /qdesk/v1/cluster, created only if absent:
 * the same CA again is fine (init re-run), another one is an error.
 */
static int
cluster_publish(json_t *args, const char *ca_pem, char **cause)
{
	struct etcd_config	 ec;
	struct cluster_wait	 w;
	struct etcd		*e;
	json_t			*doc, *kv, *theirs;
	const char		*urls, *have;
	char			*value;
	int			 rv = -1;

	memset(&ec, 0, sizeof ec);
	urls = json_string_value(json_object_get(args, "etcd"));
	ec.endpoints = urls;
	ec.cacert = json_string_value(json_object_get(args, "etcd_ca"));
	ec.cert = json_string_value(json_object_get(args, "etcd_cert"));
	ec.key = json_string_value(json_object_get(args, "etcd_key"));
	ec.timeout_ms = 10000;
	memset(&w, 0, sizeof w);
	if ((w.base = event_base_new()) == NULL) {
		xasprintf(cause, "event_base_new failed");
		return (-1);
	}
	if ((e = etcd_create(w.base, &ec, cause)) == NULL) {
		event_base_free(w.base);
		return (-1);
	}
	doc = json_pack("{s:i,s:s}", "version", CLUSTER_VERSION, "ca", ca_pem);
	value = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	etcd_cas(e, CLUSTER_KEY, 0, value, 0, cluster_wait_cb, &w);
	while (!w.done)
		event_base_dispatch(w.base);
	if (w.errclass != NULL) {
		xasprintf(cause, "etcd at %s: %s", urls, w.cause);
		goto out;
	}
	if (json_is_true(json_object_get(w.result, "succeeded"))) {
		rv = 0;
		goto out;
	}
	/* There already: ours (a re-run) or another cluster's. */
	kv = json_array_get(json_object_get(json_object_get(json_array_get(
	    json_object_get(w.result, "responses"), 0), "response_range"),
	    "kvs"), 0);
	theirs = json_loads(json_string_value(json_object_get(kv, "value")),
	    0, NULL);
	have = json_string_value(json_object_get(theirs, "ca"));
	if (have != NULL && strcmp(have, ca_pem) == 0)
		rv = 0;
	else
		xasprintf(cause, "etcd at %s already holds another cluster's "
		    "CA (%s): use that cluster's CA directory, or a fresh "
		    "etcd", urls, CLUSTER_KEY);
	json_decref(theirs);
out:
	free(value);
	json_decref(w.result);
	free(w.errclass);
	free(w.cause);
	etcd_free(e);
	event_base_free(w.base);
	return (rv);
}

static void
cluster_print_json(json_t *j)
{
	print_json(stdout, j);
	json_decref(j);
}

/*
 * A root CA of the cluster at cert and key, "qdesk cluster WHAT" and a
 * stamp for its CN (two clusters' CAs never share a name); client: its
 * leaves may be TLS clients too.
 */
static int
cluster_ca_make(const char *cert, const char *key, const char *what,
    int client, char **cause)
{
	struct cert_spec	 spec;
	char			 cn[64];

	memset(&spec, 0, sizeof spec);
	spec.org = "qdesk";
	snprintf(cn, sizeof cn, "qdesk cluster %s %08lx%04x", what,
	    (unsigned long)time(NULL), (unsigned)getpid() & 0xffff);
	spec.cn = cn;
	spec.is_ca = 1;
	spec.client = client;
	spec.days = CLUSTER_CA_DAYS;
	spec.owner = (uid_t)-1;
	spec.key_mode = 0600;
	spec.cert_mode = 0644;
	return (cert_make(cert, key, &spec, cause));
}

/* qdesk cluster init --etcd URLS --dir DIR: the CA, made or reused. */
int
run_cluster_init(struct cli *cli, const struct ctl_command *ce, json_t *args,
    json_t *local)
{
	const char		*dir;
	char			*cert, *key, *pem = NULL, *cause = NULL;
	int			 made = 0, ex = EXIT_DAEMON;

	dir = json_string_value(json_object_get(args, "dir"));
	if (cluster_dir(dir, &cause) != 0)
		goto out;
	xasprintf(&cert, "%s/ca.pem", dir);
	xasprintf(&key, "%s/ca-key.pem", dir);
	if (access(cert, F_OK) != 0 || access(key, F_OK) != 0) {
		/* client: its usage bounds its leaves' (admins, brokers). */
		if (cluster_ca_make(cert, key, "CA", 1, &cause) != 0)
			goto out1;
		made = 1;
	}
	if ((pem = cluster_read(cert, &cause)) == NULL ||
	    cluster_publish(args, pem, &cause) != 0)
		goto out1;
	if (cli->json)
		cluster_print_json(json_pack("{s:s,s:s,s:s,s:b}", "ca", cert,
		    "key", key, "etcd_key", CLUSTER_KEY, "made", made));
	else
		printf("cluster CA %s %s (its key %s stays here), "
		    "published in etcd at %s\n", cert, made ? "made" :
		    "kept", key, CLUSTER_KEY);
	ex = EXIT_OK;
out1:
	free(cert);
	free(key);
	free(pem);
out:
	if (cause != NULL)
		fprintf(stderr, "qdesk: cluster init: %s\n", cause);
	free(cause);
	return (ex);
}

/*
 * The cluster's SPICE root (DIR/spice-ca.pem, its key beside), made at
 * first use. Not the cluster CA: a host holds its SPICE CA's key, and a
 * CA the cluster CA issued could sign itself a host or admin certificate
 * that every cluster listener would take.
 */
static int
cluster_spice_root(const char *dir, char **ca, char **cakey, char **cause)
{
	free(*ca);
	free(*cakey);
	xasprintf(ca, "%s/spice-ca.pem", dir);
	xasprintf(cakey, "%s/spice-ca-key.pem", dir);
	if (access(*ca, F_OK) == 0 && access(*cakey, F_OK) == 0)
		return (0);
	return (cluster_ca_make(*ca, *cakey, "SPICE CA", 0, cause));
}

/*
 * qdesk cluster cert host|broker|admin|spice NAME --dir DIR [--addr IP]:
 * a leaf of the CA in DIR/KIND-NAME, with the CN the listener takes the
 * role from (every broker's is "broker"); spice: a CA for host NAME's
 * SPICE certificates, of the cluster's SPICE root.
 */
int
run_cluster_cert(struct cli *cli, const struct ctl_command *ce, json_t *args,
    json_t *local)
{
	struct cert_spec	 spec;
	const char		*dir, *kind, *name, *addr;
	char			*cadir = NULL, *out = NULL, *cn = NULL, *san = NULL;
	char			*cert = NULL, *key = NULL, *ca = NULL, *cakey = NULL;
	char			*pem = NULL, *cause = NULL;
	int			 ex = EXIT_DAEMON;

	dir = json_string_value(json_object_get(args, "dir"));
	kind = json_string_value(json_object_get(args, "kind"));
	name = json_string_value(json_object_get(args, "name"));
	addr = json_string_value(json_object_get(args, "addr"));
	if (strcmp(kind, "host") != 0 && strcmp(kind, "broker") != 0 &&
	    strcmp(kind, "admin") != 0 && strcmp(kind, "spice") != 0) {
		fprintf(stderr, "qdesk: cluster cert: KIND must be host, "
		    "broker, admin or spice, not \"%s\"\n", kind);
		return (EXIT_USAGE);
	}
	if (names_valid(name, "name", &cause) != 0) {
		fprintf(stderr, "qdesk: cluster cert: %s\n", cause);
		free(cause);
		return (EXIT_USAGE);
	}
	if (addr != NULL && strspn(addr, "0123456789.:abcdefABCDEF") !=
	    strlen(addr)) {
		fprintf(stderr, "qdesk: cluster cert: --addr wants an IP "
		    "address, not \"%s\"\n", addr);
		return (EXIT_USAGE);
	}
	xasprintf(&ca, "%s/ca.pem", dir);
	xasprintf(&cakey, "%s/ca-key.pem", dir);
	if (access(ca, R_OK) != 0 || access(cakey, R_OK) != 0) {
		xasprintf(&cause, "no CA in %s (qdesk cluster init --etcd URLS "
		    "--dir %s makes it)", dir, dir);
		goto out;
	}
	if (strcmp(kind, "spice") == 0 &&
	    cluster_spice_root(dir, &ca, &cakey, &cause) != 0)
		goto out;
	if (strcmp(kind, "broker") == 0)
		cn = xstrdup("broker");
	else if (strcmp(kind, "spice") == 0)
		xasprintf(&cn, "qdesk-spice-ca-%s", name);
	else
		xasprintf(&cn, "%s:%s", kind, name);
	xasprintf(&out, "%s/%s-%s", dir, kind, name);
	if (addr != NULL)
		xasprintf(&san, "IP:%s", addr);
	if (cluster_dir(out, &cause) != 0)
		goto out;
	xasprintf(&cert, "%s/cert.pem", out);
	xasprintf(&key, "%s/key.pem", out);
	memset(&spec, 0, sizeof spec);
	spec.org = "qdesk";
	spec.cn = cn;
	spec.san = san;
	spec.days = CLUSTER_LEAF_DAYS;
	spec.owner = (uid_t)-1;
	spec.key_mode = 0600;
	spec.cert_mode = 0644;
	spec.issuer_cert = ca;
	spec.issuer_key = cakey;
	/*
	 * spice: host NAME's SPICE CA (its DIR/spice-tls/ca-cert.pem and
	 * ca-key.pem, the SPICE root as ca-root.pem), so one anchor lets a
	 * viewer follow its desktop to any host of the cluster.
	 */
	spec.is_ca = strcmp(kind, "spice") == 0;
	spec.client = !spec.is_ca;
	if (cert_make(cert, key, &spec, &cause) != 0)
		goto out;
	/* The CA beside it: what this holder checks its peers with. */
	cadir = ca;
	xasprintf(&ca, "%s/ca.pem", out);
	if ((pem = cluster_read(cadir, &cause)) == NULL ||
	    cert_write_text(ca, pem, 0644, &cause) != 0)
		goto out;
	if (cli->json)
		cluster_print_json(json_pack("{s:s,s:s}", "dir", out, "cn",
		    cn));
	else
		printf("%s: certificate \"%s\" in %s (cert.pem, key.pem, "
		    "ca.pem)\n", name, cn, out);
	ex = EXIT_OK;
out:
	if (cause != NULL)
		fprintf(stderr, "qdesk: cluster cert: %s\n", cause);
	free(cause);
	free(cadir);
	free(out);
	free(cn);
	free(san);
	free(cert);
	free(key);
	free(ca);
	free(cakey);
	free(pem);
	return (ex);
}
