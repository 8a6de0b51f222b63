/*
 * host drain HOST --live (issue 13): HOST gets no new desktop (drain/H),
 * then every desktop running on it migrates live to the host placement
 * chooses, two at a time. Migrations start on the host that runs the
 * desktops: asked of another host, the request goes to HOST's listener
 * as host.evacuate (ROLE_HOST, its certificate CN host:HOST checked).
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "peer.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define DRAIN_AT_ONCE	2	/* migrations in flight */

struct drain {
	struct cmd_req	*req;
	json_t		*todo;		/* names, in order */
	json_t		*moved;		/* [{name, host, downtime_ms}] */
	json_t		*failed;	/* [{name, why}] */
	int		 inflight;
	int		 stepping;	/* inside drain_next */
};

struct drain_one {
	struct drain	*d;
	char		*name;
	char		*host;
};

static void	drain_next(struct drain *);

static void
drain_end(struct drain *d)
{
	json_t	*f;
	size_t	 i;
	char	*why = NULL, *s;

	log_info("cluster: drained %s live: %zu moved, %zu failed",
	    cluster_name(), json_array_size(d->moved),
	    json_array_size(d->failed));
	if (json_array_size(d->failed) == 0)
		cmd_reply(d->req, json_pack("{s:s,s:O,s:O}", "name",
		    cluster_name(), "moved", d->moved, "failed", d->failed));
	else {
		json_array_foreach(d->failed, i, f) {
			xasprintf(&s, "%s%s%s: %s", why != NULL ? why : "",
			    why != NULL ? "; " : "", json_string_value(
			    json_object_get(f, "name")), json_string_value(
			    json_object_get(f, "why")));
			free(why);
			why = s;
		}
		cmd_error(d->req, ERR_STATE, "host %s drained, %zu desktops "
		    "moved, %zu still here: %s", cluster_name(),
		    json_array_size(d->moved), json_array_size(d->failed),
		    why);
		free(why);
	}
	json_decref(d->todo);
	json_decref(d->moved);
	json_decref(d->failed);
	free(d);
}

static void
drain_done(void *arg, json_t *res, const char *errclass, const char *cause)
{
	struct drain_one	*o = arg;
	struct drain		*d = o->d;

	if (errclass != NULL)
		json_array_append_new(d->failed, json_pack("{s:s,s:s}", "name",
		    o->name, "why", cause));
	else
		json_array_append_new(d->moved, json_pack("{s:s,s:s,s:O?}",
		    "name", o->name, "host", o->host, "downtime_ms",
		    json_object_get(json_object_get(res, "migration"),
		    "downtime_ms")));
	json_decref(res);
	free(o->name);
	free(o->host);
	free(o);
	d->inflight--;
	if (!d->stepping)
		drain_next(d);
}

/* Start migrations up to DRAIN_AT_ONCE; answer once all have ended. */
static void
drain_next(struct drain *d)
{
	struct drain_one	*o;
	struct cluster_place	*p;
	struct vm		*vm;
	const char		*name, *to = NULL;
	char			*cause = NULL;
	json_t			*args;

	d->stepping = 1;
	while (d->inflight < DRAIN_AT_ONCE && json_array_size(d->todo) > 0) {
		name = json_string_value(json_array_get(d->todo, 0));
		if ((vm = vm_find(name)) == NULL || vm->state != VM_RUNNING) {
			json_array_remove(d->todo, 0);
			continue;
		}
		if ((p = cluster_place_find(name)) == NULL || p->def == NULL)
			cause = xstrdup("not a VM of the cluster");
		else
			to = cluster_place_choose(p, cluster_name(), &cause);
		if (cause != NULL) {
			json_array_append_new(d->failed, json_pack("{s:s,s:s}",
			    "name", name, "why", cause));
			free(cause);
			cause = NULL;
			json_array_remove(d->todo, 0);
			continue;
		}
		log_info("cluster: drain: %s to %s", name, to);
		o = xcalloc(1, sizeof *o);
		o->d = d;
		o->name = xstrdup(name);
		o->host = xstrdup(to);
		json_array_remove(d->todo, 0);
		d->inflight++;
		args = json_pack("{s:s,s:s}", "name", o->name, "to", o->host);
		vm_migrate(vm, args, drain_done, NULL, o);
		json_decref(args);
	}
	d->stepping = 0;
	if (d->inflight == 0 && json_array_size(d->todo) == 0)
		drain_end(d);
}

static void
drain_put_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct drain	*d = arg;
	struct vm	*vm;
	const char	*host;

	if (errclass != NULL) {
		cmd_error(d->req, errclass, "etcd: %s", cause);
		json_decref(d->todo);
		json_decref(d->moved);
		json_decref(d->failed);
		free(d);
		return;
	}
	TAILQ_FOREACH(vm, &vms, entry) {
		if (vm->state != VM_RUNNING)
			continue;
		host = cluster_place_host(vm->def.name);
		if (host == NULL || strcmp(host, cluster_name()) != 0)
			json_array_append_new(d->failed, json_pack("{s:s,s:s}",
			    "name", vm->def.name, "why", "not a desktop of the "
			    "cluster (made before this host joined)"));
		else
			json_array_append_new(d->todo,
			    json_string(vm->def.name));
	}
	drain_next(d);
}

/* This host: drained, then its desktops moved off. */
static void
drain_here(struct cmd_req *req)
{
	struct drain	*d;
	char		*key, *val;

	d = xcalloc(1, sizeof *d);
	d->req = req;
	d->todo = json_array();
	d->moved = json_array();
	d->failed = json_array();
	key = cluster_key("drain/%s", cluster_name());
	xasprintf(&val, "{\"since\":%lld}", clock_wall_ms());
	etcd_put(cluster_etcd, key, val, 0, 0, drain_put_cb, d);
	free(key);
	free(val);
}

/* host.evacuate, from another host: drain this one live. */
enum cmd_retval
cluster_drain_evacuate(struct cmd_req *req)
{
	if (strcmp(cmd_arg_str(req, "name", ""), cluster_name()) != 0) {
		cmd_error(req, ERR_ARG, "this host is %s, not %s",
		    cluster_name(), cmd_arg_str(req, "name", ""));
		return (CMD_RETURN_DONE);
	}
	drain_here(req);
	return (CMD_RETURN_WAIT);
}

static void
drain_remote_cb(struct peer *p, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct cmd_req	*req = arg;

	if (errclass != NULL)
		cmd_error(req, errclass, "%s", desc != NULL ? desc : errclass);
	else
		cmd_reply(req, json_incref(ret));
	peer_free(p);
}

static void
drain_remote_closed(struct peer *p, const char *cause, void *arg)
{
}

/* host.drain NAME --live: here, or asked of NAME over its listener. */
enum cmd_retval
cluster_drain_live(struct cmd_req *req, const char *name)
{
	struct cluster_host	*h = cluster_host_find(name);
	struct peer		*p;
	const char		*listen;
	char			*addr, *cn, *cause = NULL;

	if (strcmp(name, cluster_name()) == 0) {
		drain_here(req);
		return (CMD_RETURN_WAIT);
	}
	if (!cluster_host_up(h)) {
		cmd_error(req, ERR_STATE, "host %s is down: its desktops cannot "
		    "migrate (host drain %s without --live)", name, name);
		return (CMD_RETURN_DONE);
	}
	listen = json_string_value(json_object_get(h->rec, "listen"));
	if (listen == NULL || *listen == '\0') {
		cmd_error(req, ERR_STATE, "host %s has no cluster listener: run "
		    "host drain %s --live on it", name, name);
		return (CMD_RETURN_DONE);
	}
	xasprintf(&addr, "tls:%s", listen);
	xasprintf(&cn, "host:%s", name);
	p = peer_open_cn(addr, cn, drain_remote_closed, NULL, &cause);
	free(addr);
	free(cn);
	if (p == NULL) {
		cmd_fail(req, ERR_STATE, cause);
		return (CMD_RETURN_DONE);
	}
	if (peer_call(p, "host.evacuate", json_pack("{s:s}", "name", name),
	    drain_remote_cb, req) != 0) {
		peer_free(p);
		cmd_error(req, ERR_STATE, "host %s: connection lost", name);
		return (CMD_RETURN_DONE);
	}
	return (CMD_RETURN_WAIT);
}
