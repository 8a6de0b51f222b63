/*
 * The vm.* commands in cluster mode: vm.create defines the desktop in
 * etcd (vms/VM), start and stop write its placement by CAS and wait for
 * the host it names to report the outcome in its record, delete removes
 * both keys, show and list tell what etcd and the hosts' records say.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "clock.h"
#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

/* A request waiting for a host's record to show the outcome. */
struct place_wait {
	struct cmd_req		*req;
	char			*name;
	char			*host;
	long long		 epoch;
	int			 running;	/* wants running, else stopped */
	struct event		*timer;
	TAILQ_ENTRY(place_wait)	 entry;
};
static TAILQ_HEAD(, place_wait) waits = TAILQ_HEAD_INITIALIZER(waits);

/* A VM as vm show tells it, from etcd (it runs elsewhere or nowhere). */
static json_t *
place_json(struct cluster_place *p)
{
	struct cluster_host	*h;
	struct vm		*vm;
	json_t			*j, *f;
	const char		*host = cluster_place_at(p), *state = "stopped";
	const char		*reason = NULL;
	char			*stuck = NULL;

	if (cluster_place_mine(p) && (vm = vm_find(p->name)) != NULL)
		return (vm_to_json(vm));
	j = p->def != NULL ? json_deep_copy(cluster_place_def(p)) :
	    json_object();
	json_object_set_new(j, "name", json_string(p->name));
	if (cluster_place_running(p)) {
		h = cluster_host_find(host);
		f = json_object_get(json_object_get(h != NULL ? h->rec : NULL,
		    "failed"), p->name);
		if (!cluster_host_up(h)) {
			state = "host down";
			if (cluster_place_movable(p))
				reason = "failover pending";
			else {
				xasprintf(&stuck, "its disk %s: it waits for "
				    "its host", cluster_place_stuck(p));
				reason = stuck;
			}
		} else if (cluster_host_lists(h, "running", p->name))
			state = "running";
		else if (f != NULL && json_integer_value(json_object_get(f,
		    "epoch")) == cluster_place_epoch(p)) {
			state = "crashed";
			reason = json_string_value(json_object_get(f, "why"));
		} else
			state = "starting";
	}
	json_object_set_new(j, "state", json_string(state));
	json_object_set_new(j, "reason", reason != NULL ? json_string(reason) :
	    json_null());
	free(stuck);
	json_object_set_new(j, "host", host != NULL ? json_string(host) :
	    json_null());
	json_object_set_new(j, "pin", cluster_place_pin(p) != NULL ?
	    json_string(cluster_place_pin(p)) : json_null());
	json_object_set_new(j, "epoch", json_integer(cluster_place_epoch(p)));
	return (j);
}

/* An etcd write on behalf of a request. */
struct place_op {
	struct cmd_req	*req;
	char		*name;
	char		*host;
	json_t		*reply;		/* vm.create's answer */
	int		 running;
	long long	 epoch;		/* the placement's, as written */
};

static void
place_op_free(struct place_op *op)
{
	free(op->name);
	free(op->host);
	json_decref(op->reply);
	free(op);
}

static void
place_create_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct place_op	*op = arg;

	if (errclass != NULL)
		cmd_error(op->req, errclass, "vm create %s: %s", op->name,
		    cause);
	else if (!json_is_true(json_object_get(res, "succeeded")))
		cmd_error(op->req, ERR_EXISTS, "a VM named %s already exists "
		    "in the cluster", op->name);
	else {
		log_info("cluster: %s: defined in etcd", op->name);
		cmd_reply(op->req, op->reply);
		op->reply = NULL;
	}
	place_op_free(op);
}

/* The VM of the cluster whose definition names this disk file, or NULL. */
static const char *
place_disk_user(const char *disk)
{
	struct cluster_place	*p;
	const char		*d;

	if (disk == NULL)
		return (NULL);
	TAILQ_FOREACH(p, &cluster_places, entry) {
		d = json_string_value(json_object_get(cluster_place_def(p),
		    "disk"));
		if (d != NULL && strcmp(d, disk) == 0)
			return (p->name);
	}
	return (NULL);
}

static enum cmd_retval
place_create(struct cmd_req *req, const char *name)
{
	struct cluster_host	*h;
	struct place_op		*op;
	struct vm_def		 d;
	json_t			*args, *rec;
	const char		*pin = cmd_arg_str(req, "host", NULL);
	const char		*other;
	char			*cause = NULL, *key, *val;

	if (vm_find(name) != NULL || (cluster_place_find(name) != NULL &&
	    cluster_place_find(name)->def != NULL)) {
		cmd_error(req, ERR_EXISTS, "a VM named %s already exists",
		    name);
		return (CMD_RETURN_DONE);
	}
	if (pin != NULL && ((h = cluster_host_find(pin)) == NULL ||
	    (h->rec == NULL && h->member == NULL))) {
		cmd_error(req, ERR_ARG, "no host named %s in the cluster "
		    "(qdesk host list)", pin);
		return (CMD_RETURN_DONE);
	}
	args = json_deep_copy(req->args);
	json_object_del(args, "host");
	memset(&d, 0, sizeof d);
	if (vm_def_from_json(&d, args, &cause) != 0) {
		vm_def_clear(&d);
		json_decref(args);
		cmd_fail(req, ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	if (d.kernel == NULL && d.disk == NULL && d.from == NULL) {
		cmd_error(req, ERR_ARG, "VM %s needs something to boot: give "
		    "--kernel, --disk or --from", name);
		vm_def_clear(&d);
		json_decref(args);
		return (CMD_RETURN_DONE);
	}
	vm_def_clear(&d);
	if ((other = place_disk_user(json_string_value(json_object_get(args,
	    "disk")))) != NULL) {
		cmd_error(req, ERR_ARG, "disk %s is VM %s's already: one disk "
		    "file, one desktop", json_string_value(json_object_get(args,
		    "disk")), other);
		json_decref(args);
		return (CMD_RETURN_DONE);
	}
	rec = json_pack("{s:O,s:s?,s:I,s:s}", "def", args, "host", pin,
	    "created", (json_int_t)clock_wall_ms(), "by", cluster_name());
	val = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	op = xcalloc(1, sizeof *op);
	op->req = req;
	op->name = xstrdup(name);
	op->reply = args;
	json_object_set_new(args, "state", json_string("stopped"));
	json_object_set_new(args, "host", json_null());
	json_object_set_new(args, "pin", pin != NULL ? json_string(pin) :
	    json_null());
	key = cluster_key("vms/%s", name);
	etcd_cas(cluster_etcd, key, 0, val, 0, place_create_cb, op);
	free(key);
	free(val);
	return (CMD_RETURN_WAIT);
}

static void
place_wait_free(struct place_wait *w)
{
	TAILQ_REMOVE(&waits, w, entry);
	event_free(w->timer);
	free(w->name);
	free(w->host);
	free(w);
}

static void
place_wait_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct place_wait	*w = arg;

	cmd_error(w->req, ERR_TIMEOUT, "%s: host %s did not report it %s "
	    "within %d s", w->name, w->host, w->running ? "running" :
	    "stopped", CLUSTER_WAIT_S);
	place_wait_free(w);
}

static json_t	*place_json(struct cluster_place *);

/* Has the host done what w waits for (or failed, or gone)? */
static void
place_wait_check(struct place_wait *w)
{
	struct cluster_host	*h = cluster_host_find(w->host);
	struct cluster_place	*p = cluster_place_find(w->name);
	struct vm		*vm;
	json_t			*f;
	int			 listed;

	if (!cluster_host_up(h)) {
		cmd_error(w->req, ERR_STATE, "%s: host %s went down",
		    w->name, w->host);
		place_wait_free(w);
		return;
	}
	f = json_object_get(json_object_get(h->rec, "failed"), w->name);
	if (w->running && f != NULL && json_integer_value(json_object_get(f,
	    "epoch")) == w->epoch) {
		cmd_error(w->req, ERR_QEMU, "%s on %s: %s", w->name, w->host,
		    json_string_value(json_object_get(f, "why")));
		place_wait_free(w);
		return;
	}
	listed = cluster_host_lists(h, "running", w->name);
	if (w->running ? !listed : (listed || cluster_host_lists(h,
	    "starting", w->name)))
		return;
	/*
	 * Here, the VM itself must agree: this host's record lags behind
	 * it (a stop just done may still be listed running, and a start
	 * would be answered before it ran).
	 */
	vm = strcmp(w->host, cluster_name()) == 0 ? vm_find(w->name) : NULL;
	if (vm != NULL && (w->running ? vm->state != VM_RUNNING :
	    vm_is_active(vm)))
		return;
	if (vm == NULL && w->running && strcmp(w->host, cluster_name()) == 0)
		return;
	cmd_reply(w->req, p != NULL ? place_json(p) : json_object());
	place_wait_free(w);
}

static void
place_wait_add(struct cmd_req *req, const char *name, const char *host,
    long long epoch, int running)
{
	struct place_wait	*w;
	struct timeval		 tv = { CLUSTER_WAIT_S, 0 };

	w = xcalloc(1, sizeof *w);
	w->req = req;
	w->name = xstrdup(name);
	w->host = xstrdup(host);
	w->epoch = epoch;
	w->running = running;
	w->timer = evtimer_new(qmpd->base, place_wait_timeout, w);
	evtimer_add(w->timer, &tv);
	TAILQ_INSERT_TAIL(&waits, w, entry);
	place_wait_check(w);
}

/* Some host's record changed, or a host went or came: waiters look. */
void
cluster_cmd_recheck(void)
{
	struct place_wait	*w, *w1;

	TAILQ_FOREACH_SAFE(w, &waits, entry, w1)
		place_wait_check(w);
}

/* The placement CAS of a start or stop: then wait for the host. */
static void
place_set_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	struct place_op		*op = arg;
	struct cluster_place	*p = cluster_place_find(op->name);
	json_t			*resp, *kv;
	const char		*val;
	json_t			*v;

	if (errclass != NULL) {
		cmd_error(op->req, errclass, "placement of %s: %s", op->name,
		    cause);
		place_op_free(op);
		return;
	}
	if (!json_is_true(json_object_get(res, "succeeded"))) {
		resp = json_array_get(json_object_get(res, "responses"), 0);
		kv = json_array_get(json_object_get(json_object_get(resp,
		    "response_range"), "kvs"), 0);
		val = json_string_value(json_object_get(kv, "value"));
		v = val != NULL ? json_loads(val, 0, NULL) : NULL;
		cmd_error(op->req, ERR_STATE, "placement of %s changed "
		    "meanwhile (now on %s): try again", op->name,
		    json_string_value(json_object_get(v, "host")) != NULL ?
		    json_string_value(json_object_get(v, "host")) : "no host");
		json_decref(v);
		place_op_free(op);
		return;
	}
	log_info("cluster: %s placed on %s (%s) at %s", op->name, op->host,
	    op->running ? "running" : "stopped", cluster_stamp());
	if (!cluster_host_up(cluster_host_find(op->host)))
		cmd_reply(op->req, p != NULL ? place_json(p) : json_object());
	else
		place_wait_add(op->req, op->name, op->host, op->epoch,
		    op->running);
	place_op_free(op);
}

/*
 * A stop asked of another host travels in placement: its --force and
 * --timeout go with it, so the host running the desktop stops it as
 * the admin asked (cluster_place_act reads them), not by ACPI and 30 s.
 */
static char *
place_stop_how(struct cmd_req *req, char *val)
{
	json_t	*v = json_loads(val, 0, NULL);
	char	*s;

	if (v == NULL)
		return (val);
	if (cmd_arg_bool(req, "force", 0))
		json_object_set_new(v, "force", json_true());
	json_object_set_new(v, "timeout",
	    json_integer(cmd_arg_int(req, "timeout", 60)));
	s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	free(val);
	return (s);
}

static enum cmd_retval
place_set(struct cmd_req *req, struct cluster_place *p, const char *host,
    int running)
{
	struct place_op	*op;
	char		*key, *val;

	op = xcalloc(1, sizeof *op);
	op->req = req;
	op->name = xstrdup(p->name);
	op->host = xstrdup(host);
	op->running = running;
	op->epoch = cluster_place_epoch(p) + (running ? 1 : 0);
	key = cluster_key("placement/%s", p->name);
	val = cluster_place_value(p, host, running, running ?
	    "started by admin" : "stopped by admin");
	if (!running)
		val = place_stop_how(req, val);
	etcd_cas(cluster_etcd, key, p->pl_rev, val, 0, place_set_cb, op);
	free(key);
	free(val);
	return (CMD_RETURN_WAIT);
}

/*
 * A start or delete that found placement saying "running here" while the
 * VM here is stopped: the stop's own placement write
 * (cluster_place_vm_event) is still on its way to etcd, since a local
 * vm.stop is answered when QEMU is gone. Started now, the start would be
 * answered by the stale record and then undone by that write; a delete
 * would be refused as "running". So each looks again every
 * PLACE_STALE_MS until the write lands, and after CLUSTER_WAIT_S (the
 * write failed) goes ahead regardless: a start in a new epoch, a delete
 * as of a stopped VM (it is: this host is the one placement names).
 */
#define PLACE_STALE_MS	100
typedef enum cmd_retval (*place_fn)(struct cmd_req *, struct cluster_place *);
struct place_later {
	struct cmd_req	*req;
	char		*name;
	int		 tries;
	struct event	*timer;
	place_fn	 again;		/* the command, looked at afresh */
	place_fn	 anyway;	/* the command past a lost write */
};
static enum cmd_retval	place_start(struct cmd_req *, struct cluster_place *);
static enum cmd_retval	place_start_anyway(struct cmd_req *,
			    struct cluster_place *);
static enum cmd_retval	place_delete_now(struct cmd_req *,
			    struct cluster_place *);
static enum cmd_retval	place_set(struct cmd_req *, struct cluster_place *,
			    const char *, int);

static int
place_stale_here(struct cluster_place *p)
{
	struct vm	*vm = vm_find(p->name);

	return (cluster_place_running(p) && cluster_place_mine(p) &&
	    vm != NULL && !vm_is_active(vm) &&
	    !boot_queue_waiting(p->name));
}

static void
place_later_cb(evutil_socket_t fd, short events, void *arg)
{
	struct place_later	*l = arg;
	struct cluster_place	*p = cluster_place_find(l->name);
	struct timeval		 tv = { 0, PLACE_STALE_MS * 1000 };

	if (p == NULL || p->def == NULL)
		cmd_error(l->req, ERR_NOTFOUND, "VM %s was deleted meanwhile",
		    l->name);
	else if (place_stale_here(p) && ++l->tries <
	    CLUSTER_WAIT_S * 1000 / PLACE_STALE_MS) {
		evtimer_add(l->timer, &tv);
		return;
	} else if (place_stale_here(p))
		(void)l->anyway(l->req, p);
	else
		(void)l->again(l->req, p);
	event_free(l->timer);
	free(l->name);
	free(l);
}

/* Look again at req in PLACE_STALE_MS, as above. */
static enum cmd_retval
place_defer(struct cmd_req *req, struct cluster_place *p, place_fn again,
    place_fn anyway)
{
	struct place_later	*l;
	struct timeval		 tv = { 0, PLACE_STALE_MS * 1000 };

	l = xcalloc(1, sizeof *l);
	l->req = req;
	l->name = xstrdup(p->name);
	l->again = again;
	l->anyway = anyway;
	l->timer = evtimer_new(qmpd->base, place_later_cb, l);
	evtimer_add(l->timer, &tv);
	return (CMD_RETURN_WAIT);
}

static enum cmd_retval
place_start_anyway(struct cmd_req *req, struct cluster_place *p)
{
	return (place_set(req, p, cluster_name(), 1));
}

static enum cmd_retval
place_start(struct cmd_req *req, struct cluster_place *p)
{
	struct cluster_host	*h;
	const char		*host = cluster_place_at(p);
	const char		*pin = cluster_place_pin(p);
	char			*cause = NULL;
	json_t			*f;

	if (place_stale_here(p))
		return (place_defer(req, p, place_start, place_start_anyway));
	h = host != NULL ? cluster_host_find(host) : NULL;
	/* Placed and up: wait for it, unless this epoch's start failed. */
	f = json_object_get(json_object_get(h != NULL ? h->rec : NULL,
	    "failed"), p->name);
	if (cluster_place_running(p) && cluster_host_up(h) && (f == NULL ||
	    json_integer_value(json_object_get(f, "epoch")) !=
	    cluster_place_epoch(p))) {
		place_wait_add(req, p->name, host, cluster_place_epoch(p), 1);
		return (CMD_RETURN_WAIT);
	}
	if (cluster_place_running(p) && !cluster_host_up(h) &&
	    !cluster_place_movable(p)) {
		cmd_error(req, ERR_STATE, "VM %s: its host %s is down and its "
		    "disk %s: it waits for %s", p->name, host,
		    cluster_place_stuck(p), host);
		return (CMD_RETURN_DONE);
	}
	/* Where it ran, if that host can take it; else the best host. */
	if (h == NULL || !cluster_host_up(h) || h->draining ||
	    (pin != NULL && strcmp(pin, host) != 0)) {
		if ((host = cluster_place_choose(p, NULL, &cause)) == NULL) {
			cmd_fail(req, ERR_STATE, cause);
			return (CMD_RETURN_DONE);
		}
	}
	return (place_set(req, p, host, 1));
}

static int
place_stop(struct cmd_req *req, struct cluster_place *p)
{
	struct vm	*vm = vm_find(p->name);
	int		 timeout = cmd_arg_int(req, "timeout", 60);

	if (timeout < 1 || timeout > 3600) {
		cmd_error(req, ERR_ARG, "timeout must be 1 to 3600 seconds");
		return (CMD_RETURN_DONE);
	}
	if (!cluster_place_running(p)) {
		if (vm != NULL && vm_is_active(vm))
			return (-1);
		cmd_error(req, ERR_STATE, "VM %s is not running (stopped)",
		    p->name);
		return (CMD_RETURN_DONE);
	}
	if (cluster_place_mine(p) && vm != NULL && vm_is_active(vm))
		return (-1);	/* here: the local stop, then the event */
	return (place_set(req, p, cluster_place_at(p), 0));
}

static void
place_delete_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct place_op	*op = arg;

	if (errclass != NULL)
		cmd_error(op->req, errclass, "vm delete %s: %s", op->name,
		    cause);
	else if (!json_is_true(json_object_get(res, "succeeded")))
		cmd_error(op->req, ERR_STATE, "VM %s changed meanwhile: try "
		    "again", op->name);
	else
		cmd_reply(op->req, json_object());
	place_op_free(op);
}

static enum cmd_retval
place_delete(struct cmd_req *req, struct cluster_place *p)
{
	struct vm	*vm = vm_find(p->name);

	if (place_stale_here(p))
		return (place_defer(req, p, place_delete, place_delete_now));
	if (cluster_place_running(p) || (vm != NULL && vm_is_active(vm))) {
		cmd_error(req, ERR_STATE, "VM %s is running on %s: stop it "
		    "first", p->name, cluster_place_at(p) != NULL ?
		    cluster_place_at(p) : cluster_name());
		return (CMD_RETURN_DONE);
	}
	return (place_delete_now(req, p));
}

/* The definition, placement and assignment go in one transaction. */
static enum cmd_retval
place_delete_now(struct cmd_req *req, struct cluster_place *p)
{
	struct place_op	*op;
	char		*kd, *kp, *ko;

	op = xcalloc(1, sizeof *op);
	op->req = req;
	op->name = xstrdup(p->name);
	kd = cluster_key("vms/%s", p->name);
	kp = cluster_key("placement/%s", p->name);
	/* Its assignment (userdb-etcd.c's owners/) goes with it. */
	ko = cluster_key("owners/%s", p->name);
	etcd_txn(cluster_etcd, json_pack("[o]", etcd_cmp_mod_revision(kd,
	    p->def_rev)), json_pack("[o,o,o]", etcd_op_delete(kd, 0),
	    etcd_op_delete(kp, 0), etcd_op_delete(ko, 0)), NULL,
	    place_delete_cb, op);
	free(kd);
	free(kp);
	free(ko);
	return (CMD_RETURN_WAIT);
}

/* vm.list: local VMs that run here or nowhere else, then etcd's others. */
static enum cmd_retval
place_list(struct cmd_req *req)
{
	struct vm		*vm;
	struct cluster_place	*p;
	json_t			*a = json_array();

	TAILQ_FOREACH(vm, &vms, entry) {
		p = cluster_place_find(vm->def.name);
		if (p == NULL || p->pl == NULL || cluster_place_mine(p))
			json_array_append_new(a, vm_to_json(vm));
	}
	TAILQ_FOREACH(p, &cluster_places, entry) {
		if (p->def == NULL)
			continue;
		vm = vm_find(p->name);
		if (vm != NULL && (p->pl == NULL || cluster_place_mine(p)))
			continue;
		json_array_append_new(a, place_json(p));
	}
	cmd_reply(req, json_pack("{s:o}", "vms", a));
	return (CMD_RETURN_DONE);
}

/*
 * vm.create, start, stop, delete, show and list in cluster mode; -1 when
 * the VM is only local (made before this host joined a cluster) or runs
 * here, and the local command is the right one.
 */
int
cluster_cmd(struct cmd_req *req)
{
	const char		*cmd = req->entry->name;
	const char		*name = cmd_arg_str(req, "name", "");
	struct cluster_place	*p;
	struct vm		*vm;

	if (strcmp(cmd, "vm.list") == 0)
		return (place_list(req));
	if (strcmp(cmd, "vm.create") == 0)
		return (cluster_quorum_refuse(req) ? CMD_RETURN_DONE :
		    place_create(req, name));
	p = cluster_place_find(name);
	vm = vm_find(name);
	if (p == NULL || p->def == NULL)
		return (-1);		/* local only, or NotFound */
	if (strcmp(cmd, "vm.show") == 0) {
		if (vm != NULL && (p->pl == NULL || cluster_place_mine(p)))
			return (-1);
		cmd_reply(req, place_json(p));
		return (CMD_RETURN_DONE);
	}
	if (!cluster_host_joined()) {
		cmd_error(req, ERR_STATE, "this host (%s) is not in the cluster "
		    "now (no lease in etcd): no placement", cluster_name());
		return (CMD_RETURN_DONE);
	}
	if ((strcmp(cmd, "vm.start") == 0 || strcmp(cmd, "vm.stop") == 0 ||
	    strcmp(cmd, "vm.delete") == 0) && cluster_quorum_refuse(req))
		return (CMD_RETURN_DONE);
	if (strcmp(cmd, "vm.start") == 0)
		return (place_start(req, p));
	if (strcmp(cmd, "vm.stop") == 0)
		return (place_stop(req, p));
	if (strcmp(cmd, "vm.delete") == 0)
		return (place_delete(req, p));
	return (-1);
}

/* vm.start's placement for another caller (the broker's power button). */
int
cluster_cmd_start(struct cmd_req *req, const char *vm)
{
	struct cluster_place	*p = cluster_place_find(vm);

	if (p == NULL || p->def == NULL)
		return (-1);
	if (!cluster_host_joined()) {
		cmd_error(req, ERR_STATE, "this host (%s) is not in the cluster "
		    "now (no lease in etcd): no placement", cluster_name());
		return (CMD_RETURN_DONE);
	}
	if (cluster_quorum_refuse(req))
		return (CMD_RETURN_DONE);
	return (place_start(req, p));
}
