/*
 * Live migration in a cluster (issues 13/14): placement's part of it.
 * The target's switchover moves placement/VM from the source to itself
 * by compare-and-swap (epoch + 1, running); a source whose switchover
 * failed asks etcd, not the watch's view, whether it may resume.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "xmalloc.h"

struct cluster_mig {
	char			*name;
	char			*from;
	long long		 epoch;		/* as written */
	void			(*cb)(const char *, int, const char *, void *);
	void			*arg;
};

static void
cluster_mig_end(struct cluster_mig *pm, int ok, const char *why)
{
	pm->cb(pm->name, ok, why, pm->arg);
	free(pm->name);
	free(pm->from);
	free(pm);
}

/* The JSON value of the first key an etcd_get found, or NULL. */
static json_t *
cluster_mig_value(json_t *res)
{
	const char	*val;

	val = json_string_value(json_object_get(json_array_get(
	    json_object_get(res, "kvs"), 0), "value"));
	return (val != NULL ? json_loads(val, 0, NULL) : NULL);
}

/*
 * Read placement/NAME from etcd itself, not from the watch's view, which
 * may lag: cb(arg, result, errclass, cause) as etcd_get answers.
 */
static void
cluster_mig_read(const char *name, etcd_cb cb, void *arg)
{
	char	*key;

	key = cluster_key("placement/%s", name);
	etcd_get(cluster_etcd, key, 0, cb, arg);
	free(key);
}

/* After an etcd error: did our swap land anyway? */
static void
cluster_mig_reread_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_mig	*pm = arg;
	json_t			*v;
	int			 ok;

	v = errclass == NULL ? cluster_mig_value(res) : NULL;
	ok = v != NULL && json_integer_value(json_object_get(v, "epoch")) ==
	    pm->epoch && strcmp(json_string_value(json_object_get(v,
	    "host")) != NULL ? json_string_value(json_object_get(v, "host")) :
	    "", cluster_name()) == 0;
	json_decref(v);
	cluster_mig_end(pm, ok, ok ? NULL : errclass != NULL ? cause :
	    "placement changed meanwhile");
}

static void
cluster_mig_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	struct cluster_mig	*pm = arg;

	if (errclass != NULL) {
		log_warnx("cluster: %s: migration's placement: %s", pm->name,
		    cause);
		cluster_mig_read(pm->name, cluster_mig_reread_cb, pm);
		return;
	}
	if (!json_is_true(json_object_get(res, "succeeded"))) {
		cluster_mig_end(pm, 0, "placement changed meanwhile");
		return;
	}
	log_info("cluster: %s: migrated from %s, placed here (epoch %lld) at "
	    "%s", pm->name, pm->from, pm->epoch, cluster_stamp());
	cluster_mig_end(pm, 1, NULL);
}

/*
 * A migration's switchover on its target: placement/VM moves from the
 * source to this host, epoch + 1, running, by one compare-and-swap. The
 * VM's incoming QEMU is active here already, so this host's own watch
 * does not start another copy; a failed swap refuses (the source
 * resumes). cb(name, ok, why, arg), never from inside this call.
 */
int
cluster_migrate_switch(const char *name, const char *from,
    void (*cb)(const char *, int, const char *, void *), void *arg,
    char **cause)
{
	struct cluster_place	*p = cluster_place_find(name);
	struct cluster_mig	*pm;
	char			*key, *val, *why;

	if (p == NULL || p->def == NULL)
		return (1);	/* not a VM of the cluster: nothing to move */
	if (!cluster_host_joined()) {
		xasprintf(cause, "this host (%s) is not in the cluster now",
		    cluster_name());
		return (-1);
	}
	if (cluster_place_at(p) == NULL || strcmp(cluster_place_at(p), from) != 0) {
		xasprintf(cause, "placement of %s names %s, not the source %s",
		    name, cluster_place_at(p) != NULL ? cluster_place_at(p) : "no host", from);
		return (-1);
	}
	pm = xcalloc(1, sizeof *pm);
	pm->name = xstrdup(name);
	pm->from = xstrdup(from);
	pm->epoch = cluster_place_epoch(p) + 1;
	pm->cb = cb;
	pm->arg = arg;
	xasprintf(&why, "migrated from %s", from);
	key = cluster_key("placement/%s", name);
	val = cluster_place_value(p, cluster_name(), 1, why);
	etcd_cas(cluster_etcd, key, p->pl_rev, val, 0, cluster_mig_cb, pm);
	free(why);
	free(key);
	free(val);
	return (0);
}

struct cluster_mig_resume {
	char	*name;
	void	(*cb)(const char *, int, void *);
	void	*arg;
};

static void	cluster_mig_resume_cb(void *, json_t *, const char *,
		    const char *);

static void
cluster_mig_resume_retry(evutil_socket_t fd, short events, void *arg)
{
	struct cluster_mig_resume	*pr = arg;

	cluster_mig_read(pr->name, cluster_mig_resume_cb, pr);
}

static void
cluster_mig_resume_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_mig_resume	*pr = arg;
	struct timeval			 tv = { 1, 0 };
	const char		*host = NULL;
	json_t			*v;

	/*
	 * Unknown is neither: resuming could make two copies, killing could
	 * lose the only one. The copy stays stopped and etcd is asked again.
	 */
	if (errclass != NULL) {
		log_warnx("cluster: %s: placement unknown (%s): not resumed, "
		    "asking again", pr->name, cause);
		event_base_once(qmpd->base, -1, EV_TIMEOUT,
		    cluster_mig_resume_retry, pr, &tv);
		return;
	}
	v = cluster_mig_value(res);
	if (v != NULL)
		host = json_string_value(json_object_get(v, "host"));
	pr->cb(pr->name, host == NULL || strcmp(host, cluster_name()) == 0,
	    pr->arg);
	json_decref(v);
	free(pr->name);
	free(pr);
}

/*
 * A source stopped for a switchover that failed: may it resume? Only if
 * placement/VM (read from etcd, not the watch's view, which may lag)
 * still names this host; cb(name, mine, arg).
 */
void
cluster_migrate_resume(const char *name, void (*cb)(const char *, int,
    void *), void *arg)
{
	struct cluster_mig_resume	*pr;

	pr = xcalloc(1, sizeof *pr);
	pr->name = xstrdup(name);
	pr->cb = cb;
	pr->arg = arg;
	cluster_mig_read(name, cluster_mig_resume_cb, pr);
}

struct cluster_mig_where {
	char	*name;
	void	(*cb)(const char *, const char *, const char *, void *);
	void	*arg;
};

static void
cluster_mig_where_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct cluster_mig_where	*pw = arg;
	json_t				*v;

	v = errclass == NULL ? cluster_mig_value(res) : NULL;
	pw->cb(pw->name, v != NULL ? json_string_value(json_object_get(v,
	    "host")) : NULL, errclass != NULL ? cause : NULL, pw->arg);
	json_decref(v);
	free(pw->name);
	free(pw);
}

/*
 * Which host placement/VM names, read from etcd (a restarted target's
 * half runs only if it is this one): cb(name, host or NULL, error, arg).
 */
void
cluster_migrate_where(const char *name, void (*cb)(const char *,
    const char *, const char *, void *), void *arg)
{
	struct cluster_mig_where	*pw;

	pw = xcalloc(1, sizeof *pw);
	pw->name = xstrdup(name);
	pw->cb = cb;
	pw->arg = arg;
	cluster_mig_read(name, cluster_mig_where_cb, pw);
}
