/*
 * The broker in cluster mode (qdesk-broker --cluster FILE): hosts are
 * found in etcd, each reached over mutual TLS with the broker's
 * certificate (CN "broker"), and every request goes to the host it is
 * for. The file is qmpd's cluster file (qmpd/cluster-conf.c): "name",
 * "etcd" (and etcd_ca/cert/key), and "ca", "cert", "key" for the hosts.
 *
 * What is kept, from an etcd range and then a watch of each prefix
 * (so no change is missed between the two):
 *
 *   /qdesk/v1/hosts/H	   {"listen","addr",...}: H is up; a connection
 *			   to its listener, kept while it lasts
 *   /qdesk/v1/placement/VM {"host"}: where VM runs
 *   /qdesk/v1/vms/VM	   {"host"}: the host VM is pinned to, where it
 *			   is assigned and started until it is placed
 *
 * Routing (cluster_call): a request naming a desktop ("vm" or "name")
 * goes to its placement's host (else its pin); desktop.mine asks every host and merges
 * their desktops; anything else (user.auth, desktop.acquire, ...) goes to
 * the first host up by name. A console answer that says loopback is
 * rewritten to the host's "addr", so tickets and the SPICE proxy follow
 * the desktop to its host.
 */
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "broker.h"
#include "cert.h"
#include "cluster-conf.h"
#include "etcd.h"
#include "log.h"
#include "xmalloc.h"

#define CLUSTER_PREFIX		"/qdesk/v1/"
#define CLUSTER_HOSTS		CLUSTER_PREFIX "hosts/"
#define CLUSTER_PLACEMENT	CLUSTER_PREFIX "placement/"
#define CLUSTER_VMS		CLUSTER_PREFIX "vms/"

struct cluster_host {
	char			*name;
	char			*listen;
	char			*addr;
	int			 up;		/* its key is in etcd */
	struct qmpc_conn	*conn;
	TAILQ_ENTRY(cluster_host) entry;
};

struct cluster_place {
	char			*vm;
	char			*host;		/* placement's; NULL: not placed */
	char			*pin;		/* vms/'s "host"; NULL: none */
	TAILQ_ENTRY(cluster_place) entry;
};

/* What a prefix's key means: a table and how to take a change. */
struct cluster_view {
	const char		*prefix;
	void			(*put)(const char *name, json_t *value);
	void			(*del)(const char *name);
	struct etcd_watch	*watch;
};

static void	cluster_host_put(const char *, json_t *);
static void	cluster_host_del(const char *);
static void	cluster_place_put(const char *, json_t *);
static void	cluster_place_del(const char *);
static void	cluster_pin_put(const char *, json_t *);
static void	cluster_pin_del(const char *);

static struct cluster_view cluster_views[] = {
	{ CLUSTER_HOSTS, cluster_host_put, cluster_host_del, NULL },
	{ CLUSTER_PLACEMENT, cluster_place_put, cluster_place_del, NULL },
	{ CLUSTER_VMS, cluster_pin_put, cluster_pin_del, NULL },
};

static TAILQ_HEAD(, cluster_host)	cluster_hosts =
    TAILQ_HEAD_INITIALIZER(cluster_hosts);
static TAILQ_HEAD(, cluster_place)	cluster_places =
    TAILQ_HEAD_INITIALIZER(cluster_places);
static struct etcd	*cluster_etcd;
static SSL_CTX		*cluster_tls;
static struct event_base *cluster_base;

static struct cluster_host *
cluster_host_find(const char *name)
{
	struct cluster_host	*h;

	TAILQ_FOREACH(h, &cluster_hosts, entry)
		if (strcmp(h->name, name) == 0)
			return (h);
	return (NULL);
}

static struct cluster_place *
cluster_place_find(const char *vm)
{
	struct cluster_place	*p;

	TAILQ_FOREACH(p, &cluster_places, entry)
		if (strcmp(p->vm, vm) == 0)
			return (p);
	return (NULL);
}

/* hosts/H written: H is up at its "listen"; (re)connect when it moved. */
static void
cluster_host_put(const char *name, json_t *v)
{
	struct cluster_host	*h, *h1;
	const char		*listen, *addr;
	char			*cn;

	listen = json_string_value(json_object_get(v, "listen"));
	addr = json_string_value(json_object_get(v, "addr"));
	if (listen == NULL) {
		log_warnx("cluster: host %s has no \"listen\": not reachable",
		    name);
		return;
	}
	if ((h = cluster_host_find(name)) == NULL) {
		h = xcalloc(1, sizeof *h);
		h->name = xstrdup(name);
		/* Sorted by name: "the first host up" is stable. */
		TAILQ_FOREACH(h1, &cluster_hosts, entry)
			if (strcmp(h1->name, name) > 0)
				break;
		if (h1 != NULL)
			TAILQ_INSERT_BEFORE(h1, h, entry);
		else
			TAILQ_INSERT_TAIL(&cluster_hosts, h, entry);
	}
	if (!h->up)
		log_info("cluster: host %s up at %s", name, listen);
	h->up = 1;
	free(h->addr);
	h->addr = xstrdup(addr != NULL ? addr : listen);
	if (addr == NULL)
		*strrchr(h->addr, ':') = '\0';
	if (h->listen != NULL && strcmp(h->listen, listen) == 0)
		return;
	free(h->listen);
	h->listen = xstrdup(listen);
	qmpc_conn_free(h->conn);
	xasprintf(&cn, "host:%s", name);
	h->conn = qmpc_conn_open(cluster_base, listen, cluster_tls, cn);
	free(cn);
}

/*
 * hosts/H gone: H is down. Its connection stays (requests in flight on
 * it fail by themselves) until the host comes back elsewhere.
 */
static void
cluster_host_del(const char *name)
{
	struct cluster_host	*h;

	if ((h = cluster_host_find(name)) != NULL && h->up) {
		log_warnx("cluster: host %s down (its lease expired)", name);
		h->up = 0;
	}
}

static struct cluster_place *
cluster_place_get(const char *vm)
{
	struct cluster_place	*p;

	if ((p = cluster_place_find(vm)) == NULL) {
		p = xcalloc(1, sizeof *p);
		p->vm = xstrdup(vm);
		TAILQ_INSERT_TAIL(&cluster_places, p, entry);
	}
	return (p);
}

/* Forget a desktop once neither its placement nor its pin is known. */
static void
cluster_place_forget(struct cluster_place *p)
{
	if (p->host != NULL || p->pin != NULL)
		return;
	TAILQ_REMOVE(&cluster_places, p, entry);
	free(p->vm);
	free(p);
}

static void
cluster_place_put(const char *vm, json_t *v)
{
	struct cluster_place	*p;
	const char		*host;

	if ((host = json_string_value(json_object_get(v, "host"))) == NULL)
		return;
	p = cluster_place_get(vm);
	if (p->host != NULL && strcmp(p->host, host) != 0)
		log_info("cluster: %s moved from %s to %s", vm, p->host, host);
	free(p->host);
	p->host = xstrdup(host);
}

static void
cluster_place_del(const char *vm)
{
	struct cluster_place	*p;

	if ((p = cluster_place_find(vm)) == NULL)
		return;
	free(p->host);
	p->host = NULL;
	cluster_place_forget(p);
}

/* vms/VM written: the host it is pinned to, if any. */
static void
cluster_pin_put(const char *vm, json_t *v)
{
	struct cluster_place	*p;
	const char		*pin;

	pin = json_string_value(json_object_get(v, "host"));
	if (pin == NULL && cluster_place_find(vm) == NULL)
		return;
	p = cluster_place_get(vm);
	free(p->pin);
	p->pin = pin != NULL ? xstrdup(pin) : NULL;
	cluster_place_forget(p);
}

static void
cluster_pin_del(const char *vm)
{
	cluster_pin_put(vm, NULL);
}

/* One kv of a view's prefix, put (value) or deleted (value NULL). */
static void
cluster_view_apply(struct cluster_view *cv, const char *key,
    const char *value)
{
	const char	*name;
	json_t		*v;

	if (strncmp(key, cv->prefix, strlen(cv->prefix)) != 0)
		return;
	name = key + strlen(cv->prefix);
	if (*name == '\0' || strchr(name, '/') != NULL)
		return;
	if (value == NULL) {
		cv->del(name);
		return;
	}
	if ((v = json_loads(value, 0, NULL)) == NULL ||
	    !json_is_object(v)) {
		log_warnx("cluster: %s is not a JSON object: ignored", key);
		json_decref(v);
		return;
	}
	cv->put(name, v);
	json_decref(v);
}

static void	cluster_view_read(struct cluster_view *);

/* A watch's events; a compacted watch reads its prefix again. */
static void
cluster_watch_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_view	*cv = arg;
	json_t			*ev, *kv;
	const char		*type;
	size_t			 i;

	if (errclass != NULL) {
		log_warnx("cluster: watch of %s: %s: %s", cv->prefix, errclass,
		    cause);
		cv->watch = NULL;	/* it has ended */
		if (strcmp(errclass, "Cancelled") != 0)
			cluster_view_read(cv);
		return;
	}
	json_array_foreach(json_object_get(res, "events"), i, ev) {
		kv = json_object_get(ev, "kv");
		type = json_string_value(json_object_get(ev, "type"));
		cluster_view_apply(cv, json_string_value(json_object_get(kv,
		    "key")), type != NULL && strcmp(type, "DELETE") == 0 ?
		    NULL : json_string_value(json_object_get(kv, "value")));
	}
}

/* The prefix's keys now, then a watch from the revision after. */
static void
cluster_range_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_view	*cv = arg;
	json_t			*kv;
	json_int_t		 rev;
	size_t			 i;

	if (errclass != NULL) {
		/* The client already retried until its deadline: again. */
		log_warnx("cluster: reading %s: %s: %s", cv->prefix, errclass,
		    cause);
		if (strcmp(errclass, "Cancelled") != 0)
			cluster_view_read(cv);
		return;
	}
	json_array_foreach(json_object_get(res, "kvs"), i, kv)
		cluster_view_apply(cv, json_string_value(json_object_get(kv,
		    "key")), json_string_value(json_object_get(kv, "value")));
	rev = json_integer_value(json_object_get(json_object_get(res,
	    "header"), "revision"));
	cv->watch = etcd_watch_create(cluster_etcd, cv->prefix, ETCD_PREFIX,
	    rev + 1, cluster_watch_cb, cv);
}

static void
cluster_view_read(struct cluster_view *cv)
{
	etcd_get(cluster_etcd, cv->prefix, ETCD_PREFIX, cluster_range_cb, cv);
}

/* ---- routing ---- */

/* A call that failed before reaching any host, called back from the loop. */
struct cluster_failed {
	qmpc_cb		 cb;
	void		*arg;
	char		*errclass;
	char		*errdesc;
};

static void
cluster_failed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cluster_failed	*f = arg;

	f->cb(NULL, f->errclass, f->errdesc, f->arg);
	free(f->errclass);
	free(f->errdesc);
	free(f);
}

static void
cluster_fail_later(qmpc_cb cb, void *arg, const char *errclass,
    const char *errdesc)
{
	struct cluster_failed	*f;

	f = xcalloc(1, sizeof *f);
	f->cb = cb;
	f->arg = arg;
	f->errclass = xstrdup(errclass);
	f->errdesc = xstrdup(errdesc);
	event_base_once(cluster_base, -1, EV_TIMEOUT, cluster_failed_cb, f,
	    NULL);
}

/*
 * A call to one host; its answer's SPICE address made the host's. The
 * request is kept (cmd, args) for one re-route: a host whose view is
 * newer than ours answers "desktop D is on host H".
 */
struct cluster_one {
	qmpc_cb			 cb;
	void			*arg;
	char			*addr;	/* the host's "addr" */
	char			*host;	/* the host asked */
	char			*cmd;
	json_t			*args;	/* NULL once re-routed */
	int			 timeout;
};

static void	cluster_one_call(struct cluster_host *, struct cluster_one *,
		    json_t *);

static int
cluster_local_addr(const char *host)
{
	return (host == NULL || *host == '\0' ||
	    strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
	    strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
	    strcmp(host, "localhost") == 0);
}

/*
 * "desktop D is on host H" (qmpd/cluster-desktop.c) from a host other
 * than H, with H up and connected: H, else NULL.
 */
static struct cluster_host *
cluster_moved_to(const char *errdesc, const char *asked)
{
	const char		*at;
	struct cluster_host	*h;

	if (strncmp(errdesc, "desktop ", 8) != 0 ||
	    (at = strstr(errdesc, " is on host ")) == NULL)
		return (NULL);
	at += strlen(" is on host ");
	if ((h = cluster_host_find(at)) == NULL || !h->up || h->conn == NULL ||
	    strcmp(h->name, asked) == 0)
		return (NULL);
	return (h);
}

static void
cluster_one_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct cluster_one	*o = arg;
	struct cluster_host	*h;
	const char		*host;
	json_t			*args;

	/*
	 * Our placement view was stale (the watch lags a CAS by a moment):
	 * ask the host that host names, once, instead of failing.
	 */
	if (errdesc != NULL && o->args != NULL &&
	    (h = cluster_moved_to(errdesc, o->host)) != NULL) {
		log_info("cluster: %s: re-routed from host %s to %s (%s)",
		    o->cmd, o->host, h->name, errdesc);
		args = o->args;
		o->args = NULL;
		cluster_one_call(h, o, args);
		return;
	}
	if (ret != NULL && json_is_object(ret) &&
	    json_object_get(ret, "port") != NULL) {
		host = json_string_value(json_object_get(ret, "host"));
		if (cluster_local_addr(host) && !cluster_local_addr(o->addr))
			json_object_set_new(ret, "host", json_string(o->addr));
	}
	o->cb(ret, errclass, errdesc, o->arg);
	json_decref(o->args);
	free(o->cmd);
	free(o->host);
	free(o->addr);
	free(o);
}

/* Send o's request (args stolen) to h. */
static void
cluster_one_call(struct cluster_host *h, struct cluster_one *o, json_t *args)
{
	free(o->addr);
	free(o->host);
	o->addr = xstrdup(h->addr != NULL ? h->addr : "");
	o->host = xstrdup(h->name);
	qmpc_conn_call(h->conn, o->cmd, args, o->timeout, cluster_one_done, o);
}

/*
 * Every host asked: desktop.mine's desktops merged by name. A desktop
 * more than one host lists (its definition is cluster-wide) is shown as
 * the host its placement names sees it.
 */
struct cluster_fan {
	qmpc_cb		 cb;
	void		*arg;
	int		 waiting;
	int		 answered;
	json_t		*desktops;	/* name -> desktop */
	char		*errclass;
	char		*errdesc;
};

struct cluster_fan_host {
	struct cluster_fan	*fan;
	char			*host;
};

static void
cluster_fan_end(struct cluster_fan *f)
{
	json_t		*result, *list, *d;
	const char	*name;

	if (f->answered > 0) {
		list = json_array();
		json_object_foreach(f->desktops, name, d)
			json_array_append(list, d);
		result = json_pack("{s:o}", "desktops", list);
		f->cb(result, NULL, NULL, f->arg);
		json_decref(result);
	} else
		f->cb(NULL, f->errclass, f->errdesc, f->arg);
	json_decref(f->desktops);
	free(f->errclass);
	free(f->errdesc);
	free(f);
}

static void
cluster_fan_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct cluster_fan_host	*fh = arg;
	struct cluster_fan	*f = fh->fan;
	struct cluster_place	*p;
	const char		*name;
	json_t			*d;
	size_t			 i;

	if (errclass != NULL) {
		if (f->errclass == NULL) {
			f->errclass = xstrdup(errclass);
			f->errdesc = xstrdup(errdesc);
		}
	} else {
		f->answered++;
		json_array_foreach(json_object_get(ret, "desktops"), i, d) {
			if ((name = json_string_value(json_object_get(d,
			    "name"))) == NULL)
				continue;
			p = cluster_place_find(name);
			if (json_object_get(f->desktops, name) == NULL ||
			    (p != NULL && p->host != NULL &&
			    strcmp(p->host, fh->host) == 0))
				json_object_set(f->desktops, name, d);
		}
	}
	free(fh->host);
	free(fh);
	if (--f->waiting == 0)
		cluster_fan_end(f);
}

static void
cluster_fan_out(const char *cmd, json_t *args, int timeout, qmpc_cb cb,
    void *arg)
{
	struct cluster_host	*h;
	struct cluster_fan	*f;
	struct cluster_fan_host	*fh;

	f = xcalloc(1, sizeof *f);
	f->cb = cb;
	f->arg = arg;
	f->desktops = json_object();
	f->waiting = 1;		/* held until every host is asked */
	TAILQ_FOREACH(h, &cluster_hosts, entry) {
		if (!h->up || h->conn == NULL || !qmpc_conn_ready(h->conn))
			continue;
		f->waiting++;
		fh = xcalloc(1, sizeof *fh);
		fh->fan = f;
		fh->host = xstrdup(h->name);
		qmpc_conn_call(h->conn, cmd, json_deep_copy(args), timeout,
		    cluster_fan_done, fh);
	}
	json_decref(args);
	if (f->waiting == 1) {
		json_decref(f->desktops);
		free(f);
		cluster_fail_later(cb, arg, QMPC_ERR_DOWN, "no cluster host "
		    "is reachable right now; try again in a moment");
		return;
	}
	f->waiting--;
}

/*
 * The host a request is for: its desktop's, else the first one up.
 * args is borrowed.
 */
static struct cluster_host *
cluster_route(json_t *args, char **why)
{
	struct cluster_host	*h;
	struct cluster_place	*p;
	const char		*vm, *host;

	*why = NULL;
	vm = json_string_value(json_object_get(args, "vm"));
	if (vm == NULL)
		vm = json_string_value(json_object_get(args, "name"));
	if (vm != NULL && (p = cluster_place_find(vm)) != NULL) {
		host = p->host != NULL ? p->host : p->pin;
		h = cluster_host_find(host);
		if (h == NULL || !h->up || h->conn == NULL)
			xasprintf(why, "desktop %s is on host %s, which is "
			    "down; try again in a moment", vm, host);
		return (*why == NULL ? h : NULL);
	}
	TAILQ_FOREACH(h, &cluster_hosts, entry)
		if (h->up && h->conn != NULL && qmpc_conn_ready(h->conn))
			return (h);
	xasprintf(why, "no cluster host is reachable right now; try again "
	    "in a moment");
	return (NULL);
}

void
cluster_call(const char *cmd, json_t *args, int timeout, qmpc_cb cb,
    void *arg)
{
	struct cluster_host	*h;
	struct cluster_one	*o;
	char			*why;

	if (strcmp(cmd, "desktop.mine") == 0) {
		cluster_fan_out(cmd, args, timeout, cb, arg);
		return;
	}
	if ((h = cluster_route(args, &why)) == NULL) {
		json_decref(args);
		cluster_fail_later(cb, arg, QMPC_ERR_DOWN, why);
		free(why);
		return;
	}
	o = xcalloc(1, sizeof *o);
	o->cb = cb;
	o->arg = arg;
	o->cmd = xstrdup(cmd);
	o->timeout = timeout;
	o->args = args != NULL ? json_deep_copy(args) : json_object();
	cluster_one_call(h, o, args);
}

/*
 * Where a desktop's own connections go (the browser console's VNC): its
 * host's listener and name, or NULL with *why.
 */
const char *
cluster_listen_of(const char *vm, const char **host, char **why)
{
	struct cluster_host	*h;
	json_t			*args;

	args = json_pack("{s:s}", "vm", vm);
	h = cluster_route(args, why);
	json_decref(args);
	if (h == NULL)
		return (NULL);
	*host = h->name;
	return (h->listen);
}

/*
 * The certificate a host's listener showed (already checked against the
 * cluster CA in the handshake) names the host meant: cn "host:NAME".
 */
int
cluster_check_peer(struct bufferevent *bev, const char *cn, char *why,
    size_t len)
{
	SSL	*ssl = bufferevent_openssl_get_ssl(bev);
	X509	*x;
	char	 got[256] = "";

	if (ssl == NULL || (x = SSL_get1_peer_certificate(ssl)) == NULL) {
		snprintf(why, len, "no certificate");
		return (-1);
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
	    got, sizeof got);
	X509_free(x);
	if (strcmp(got, cn) != 0) {
		snprintf(why, len, "its certificate is \"%s\", not \"%s\"",
		    got, cn);
		return (-1);
	}
	return (0);
}

int
cluster_up_hosts(void)
{
	struct cluster_host	*h;
	int			 n = 0;

	TAILQ_FOREACH(h, &cluster_hosts, entry)
		if (h->up && h->conn != NULL && qmpc_conn_ready(h->conn))
			n++;
	return (n);
}

const char *
cluster_version(void)
{
	struct cluster_host	*h;

	TAILQ_FOREACH(h, &cluster_hosts, entry)
		if (h->up && h->conn != NULL && qmpc_conn_ready(h->conn))
			return (qmpc_conn_version(h->conn));
	return (NULL);
}

/* The client TLS context: the broker's certificate, hosts of the CA. */
SSL_CTX *
cluster_tls_context(const struct cluster_conf *cc, char **cause)
{
	SSL_CTX	*ctx;
	char	*what;

	if (cc->ca == NULL || cc->cert == NULL || cc->key == NULL) {
		xasprintf(cause, "%s: the broker needs ca, cert and key (qdesk "
		    "cluster cert broker NAME makes them)", cc->path);
		return (NULL);
	}
	xasprintf(&what, "%s: ca, cert, key", cc->path);
	ctx = cert_client_ctx(cc->ca, cc->cert, cc->key, what, cause);
	free(what);
	return (ctx);
}

/* Before the privilege drop: the certificates are read, etcd dialled. */
int
cluster_start(struct event_base *base, SSL_CTX *tls, char **cause)
{
	const struct cluster_conf	*cc = broker->cluster;
	struct etcd_config		 ec;
	size_t				 i;

	memset(&ec, 0, sizeof ec);
	ec.endpoints = cc->etcd;
	ec.cacert = cc->etcd_ca;
	ec.cert = cc->etcd_cert;
	ec.key = cc->etcd_key;
	if ((cluster_etcd = etcd_create(base, &ec, cause)) == NULL)
		return (-1);
	cluster_base = base;
	cluster_tls = tls;
	for (i = 0; i < nitems(cluster_views); i++)
		cluster_view_read(&cluster_views[i]);
	log_info("cluster: broker %s, etcd at %s", cc->name, cc->etcd);
	return (0);
}

void
cluster_stop(void)
{
	struct cluster_host	*h;
	struct cluster_place	*p;
	size_t			 i;

	if (cluster_etcd == NULL)
		return;
	for (i = 0; i < nitems(cluster_views); i++) {
		if (cluster_views[i].watch != NULL)
			etcd_watch_free(cluster_views[i].watch);
		cluster_views[i].watch = NULL;
	}
	etcd_free(cluster_etcd);
	cluster_etcd = NULL;
	while ((h = TAILQ_FIRST(&cluster_hosts)) != NULL) {
		TAILQ_REMOVE(&cluster_hosts, h, entry);
		qmpc_conn_free(h->conn);
		free(h->name);
		free(h->listen);
		free(h->addr);
		free(h);
	}
	while ((p = TAILQ_FIRST(&cluster_places)) != NULL) {
		free(p->pin);
		p->pin = NULL;
		cluster_place_del(p->vm);
	}
	SSL_CTX_free(cluster_tls);
	cluster_tls = NULL;
}
