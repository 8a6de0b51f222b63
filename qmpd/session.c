/*
 * SPICE sessions per desktop: who was connected, from where, from when to
 * when. A listener of qmpd's events (vm.spice from the QMP SPICE_* events, vm.state
 * for a VM that stops under its clients); the user is whoever got the
 * VM's last console ticket (vm-ticket.c). One LMDB record per VM in
 * DB_SESSIONS, {"vm":NAME,"sessions":[oldest ... newest]}, keeping the
 * last SESSION_KEEP; the record outlives the VM, as history.
 *
 * A viewer that comes through the broker's SPICE proxy reaches QEMU from
 * the proxy's loopback address; the broker says which real client is
 * behind which proxy port (desktop.via), and the session records the real
 * one as "client" and the proxy's as "via". The two may come in either
 * order, so an early word waits in session_vias for a while.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define SESSION_KEEP	50	/* sessions kept per VM */
#define SESSION_VIA_TTL	120	/* seconds a word from the proxy waits */
#define SESSION_VIA_MAX	1024	/* words waiting, at most */
#define SESSION_REASON_TTL 10	/* seconds an end reason waits */

/* "vm client-as-QEMU-sees-it" -> {"client": real, "at": time}. */
static json_t	*session_vias;
/* vm -> {"why": reason, "at": time}: why its clients are being cut. */
static json_t	*session_reasons;

static void	session_spice(const char *, json_t *);
static void	session_state(const char *, json_t *);

/* Keep this list sorted: it is searched with bsearch. */
static const struct notify_handler session_handlers[] = {
	{ "vm.spice", session_spice },
	{ "vm.state", session_state },
};

/* Every event of qmpd passes here; most are not about sessions. */
void
session_event(const char *event, const char *vm, json_t *fields, void *arg)
{
	if (fields != NULL)
		notify_dispatch(session_handlers, nitems(session_handlers),
		    event, vm, fields);
}

/* The VM's record of sessions, a new empty one if it has none. */
static json_t *
session_load(const char *vm)
{
	json_t	*rec;

	rec = db_get(qmpd->db, DB_SESSIONS, vm);
	if (!json_is_array(json_object_get(rec, "sessions"))) {
		json_decref(rec);
		rec = json_pack("{s:s,s:[]}", "vm", vm, "sessions");
	}
	return (rec);
}

static void
session_save(const char *vm, json_t *rec)
{
	char	*cause = NULL;

	if (db_put(qmpd->db, DB_SESSIONS, vm, rec, &cause) != 0) {
		log_warnx("%s: session not recorded: %s", vm, cause);
		free(cause);
	}
}

/* Keep the newest SESSION_KEEP, dropping the oldest ended ones first. */
static void
session_trim(json_t *sessions)
{
	json_t	*s;
	size_t	 i;

	while (json_array_size(sessions) > SESSION_KEEP) {
		json_array_foreach(sessions, i, s) {
			if (!json_is_null(json_object_get(s, "end")))
				break;
		}
		if (i == json_array_size(sessions))
			i = 0;
		json_array_remove(sessions, i);
	}
}

static char *
session_client(const char *host, const char *port)
{
	char	*s;

	if (strchr(host, ':') != NULL)
		xasprintf(&s, "[%s]:%s", host, port);
	else
		xasprintf(&s, "%s:%s", host, port);
	return (s);
}

static char *
session_via_key(const char *vm, const char *via)
{
	char	*key;

	xasprintf(&key, "%s %s", vm, via);
	return (key);
}

/* Drop the words from the proxy no session has claimed in time. */
static void
session_via_expire(void)
{
	const char	*key;
	void		*tmp;
	json_t		*w;
	time_t		 now = time(NULL);

	if (session_vias == NULL)
		session_vias = json_object();
	json_object_foreach_safe(session_vias, tmp, key, w) {
		if (now - json_integer_value(json_object_get(w, "at")) >
		    SESSION_VIA_TTL)
			json_object_del(session_vias, key);
	}
}

/* If the proxy named the real client of session s, record it. */
static void
session_via_apply(const char *vm, json_t *s)
{
	const char	*seen, *real;
	char		*key;
	json_t		*w;

	session_via_expire();
	seen = json_string_value(json_object_get(s, "client"));
	if (seen == NULL)
		return;
	key = session_via_key(vm, seen);
	if ((w = json_object_get(session_vias, key)) != NULL &&
	    (real = json_string_value(json_object_get(w, "client"))) != NULL) {
		json_object_set_new(s, "via", json_string(seen));
		json_object_set_new(s, "client", json_string(real));
		json_object_del(session_vias, key);
	}
	free(key);
}

/* The client of a session as QEMU saw it: the proxy's side if proxied. */
static const char *
session_seen(json_t *s)
{
	json_t	*via = json_object_get(s, "via");

	return (json_string_value(via != NULL ? via :
	    json_object_get(s, "client")));
}

/*
 * vm-ticket.c gave out a console ticket: keep who got it in the VM's
 * record (run state, not synced), so a session that opens with it after
 * a qmpd restart is still attributed.
 */
void
session_ticket(const char *vm, const char *login, uid_t uid, long long at,
    long long expires)
{
	json_t	*rec;
	char	*cause = NULL;

	metrics_tickets++;
	rec = session_load(vm);
	json_object_set_new(rec, "last_ticket", json_pack("{s:s?,s:I,s:I,s:I}",
	    "user", *login != '\0' ? login : NULL, "uid", (json_int_t)uid,
	    "at", (json_int_t)at, "expires", (json_int_t)expires));
	if (db_put_nosync(qmpd->db, DB_SESSIONS, vm, rec, &cause) != 0) {
		log_warnx("%s: ticket holder not recorded: %s", vm, cause);
		free(cause);
	}
	json_decref(rec);
}

/* A client's main channel is up: a session begins. */
static void
session_open(const char *vm, const char *client)
{
	json_t		*rec, *s, *t;
	const char	*login;
	uid_t		 uid;
	long long	 at, expires;

	s = json_pack("{s:n,s:s,s:I,s:n,s:n}", "user", "client", client,
	    "start", (json_int_t)time(NULL), "end", "end_reason");
	json_object_del(session_reasons, vm);	/* a cut is over */
	session_via_apply(vm, s);
	rec = session_load(vm);
	if (vm_ticket_last(vm, &login, &uid, &at, &expires) == 0) {
		if (*login != '\0')
			json_object_set_new(s, "user", json_string(login));
		else
			json_object_set_new(s, "ticket_uid",
			    json_integer(uid));
		json_object_set_new(s, "ticket_at", json_integer(at));
	} else if ((t = json_object_get(rec, "last_ticket")) != NULL) {
		/* Given out before qmpd restarted: the record kept it. */
		if (json_is_string(json_object_get(t, "user")))
			json_object_set(s, "user", json_object_get(t, "user"));
		else
			json_object_set(s, "ticket_uid",
			    json_object_get(t, "uid"));
		json_object_set(s, "ticket_at", json_object_get(t, "at"));
	}
	log_info("%s: SPICE session of %s from %s", vm,
	    json_is_string(json_object_get(s, "user")) ? json_string_value(
	    json_object_get(s, "user")) : "an administrator",
	    json_string_value(json_object_get(s, "client")));
	json_array_append_new(json_object_get(rec, "sessions"), s);
	session_trim(json_object_get(rec, "sessions"));
	session_save(vm, rec);
	json_decref(rec);
}

/*
 * A SPICE client has left desktop vm (last: no other client is still
 * connected): the event session.ended {"login", "client", "last"} for
 * whoever acts on it (a pool's disconnect action).
 */
static void
session_disconnected(const char *vm, json_t *s, int last)
{
	const char	*user = json_string_value(json_object_get(s, "user"));
	json_t		*f;

	log_debug("%s: %s left%s", vm, user != NULL ? user : "a client",
	    last ? ", nobody connected now" : "");
	f = json_pack("{s:s?,s:O?,s:b}", "login", user, "client",
	    json_object_get(s, "client"), "last", last);
	notify_emit("session.ended", vm, f);
	json_decref(f);
}

/*
 * End the open sessions of vm: the one of client, or (client NULL)
 * all of them. Returns a copy of the last one ended, or NULL.
 */
static json_t *
session_close(const char *vm, const char *client, const char *why)
{
	json_t		*rec, *sessions, *s, *ended = NULL;
	const char	*c;
	size_t		 i;

	rec = session_load(vm);
	sessions = json_object_get(rec, "sessions");
	json_array_foreach(sessions, i, s) {
		if (!json_is_null(json_object_get(s, "end")))
			continue;
		c = session_seen(s);
		if (client != NULL && (c == NULL || strcmp(c, client) != 0))
			continue;
		json_object_set_new(s, "end", json_integer(time(NULL)));
		json_object_set_new(s, "end_reason", json_string(why));
		json_decref(ended);
		ended = json_deep_copy(s);
	}
	if (ended != NULL)
		session_save(vm, rec);
	json_decref(rec);
	return (ended);
}

void
session_end_reason(const char *vm, const char *why)
{
	if (session_reasons == NULL)
		session_reasons = json_object();
	json_object_set_new(session_reasons, vm, json_pack("{s:s,s:I}", "why",
	    why, "at", (json_int_t)time(NULL)));
}

/* Why a client of vm left: a reason set just before, or its own doing. */
static const char *
session_reason(const char *vm)
{
	json_t	*r = json_object_get(session_reasons, vm);

	if (r != NULL && time(NULL) - json_integer_value(json_object_get(r,
	    "at")) <= SESSION_REASON_TTL)
		return (json_string_value(json_object_get(r, "why")));
	return ("client disconnected");
}

/* vm.spice: initialized (main channel only) opens, disconnected closes. */
static void
session_spice(const char *vm, json_t *fields)
{
	const char	*action, *host, *port;
	struct vm	*v;
	json_t		*ended;
	char		*client;

	action = json_string_value(json_object_get(fields, "action"));
	host = json_string_value(json_object_get(fields, "host"));
	port = json_string_value(json_object_get(fields, "port"));
	if (action == NULL || host == NULL || port == NULL)
		return;
	client = session_client(host, port);
	if (strcmp(action, "initialized") == 0)
		session_open(vm, client);
	else if (strcmp(action, "disconnected") == 0) {
		/* Other channels of the client end too: only main counts. */
		ended = session_close(vm, client, session_reason(vm));
		if (ended != NULL) {
			log_info("%s: SPICE session from %s ended", vm, client);
			v = vm_find(vm);
			session_disconnected(vm, ended, v == NULL ||
			    json_array_size(v->spice_clients) == 0);
			json_decref(ended);
		}
	}
	free(client);
}

/* A QEMU that stopped or started afresh has no SPICE client left. */
static void
session_state(const char *vm, json_t *fields)
{
	const char	*state;
	char		*why;
	json_t		*ended;

	state = json_string_value(json_object_get(fields, "state"));
	if (state == NULL || (strcmp(state, "stopped") != 0 &&
	    strcmp(state, "crashed") != 0 && strcmp(state, "starting") != 0))
		return;
	xasprintf(&why, "VM %s", strcmp(state, "starting") == 0 ?
	    "restarted" : state);
	ended = session_close(vm, NULL, why);
	json_decref(ended);
	free(why);
}

/* Collect every session of a record, each with its VM's name. */
static int
session_collect_cb(const char *key, json_t *rec, void *arg)
{
	json_t	*out = arg, *s, *row;
	size_t	 i;

	json_array_foreach(json_object_get(rec, "sessions"), i, s) {
		row = json_pack("{s:s}", "vm", key);
		json_object_update(row, s);
		json_array_append_new(out, row);
	}
	return (0);
}

/* Open sessions first, then the newest first. */
static int
session_cmp(const void *a, const void *b)
{
	json_t		*x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int		 ox, oy;
	json_int_t	 sx, sy;

	ox = json_is_null(json_object_get(x, "end"));
	oy = json_is_null(json_object_get(y, "end"));
	if (ox != oy)
		return (oy - ox);
	sx = json_integer_value(json_object_get(x, "start"));
	sy = json_integer_value(json_object_get(y, "start"));
	return (sx < sy ? 1 : sx > sy ? -1 : 0);
}

/*
 * The sessions of vm (NULL: of every VM), open ones first, then newest
 * first; NULL with *errclass and *cause when vm is unknown or LMDB fails.
 */
json_t *
session_list(const char *vm, const char **errclass, char **cause)
{
	json_t		*all = json_array(), *rec, *sorted, **v;
	size_t		 i, n;

	if (vm != NULL) {
		if ((rec = db_get(qmpd->db, DB_SESSIONS, vm)) == NULL &&
		    vm_find(vm) == NULL) {
			*errclass = ERR_NOTFOUND;
			xasprintf(cause, "no VM named %s, and no sessions "
			    "recorded for one", vm);
			json_decref(all);
			return (NULL);
		}
		if (rec != NULL)
			session_collect_cb(vm, rec, all);
		json_decref(rec);
	} else if (db_foreach(qmpd->db, DB_SESSIONS, session_collect_cb, all,
	    cause) < 0) {
		*errclass = ERR_INTERNAL;
		json_decref(all);
		return (NULL);
	}
	n = json_array_size(all);
	v = xcalloc(n + 1, sizeof *v);
	for (i = 0; i < n; i++)
		v[i] = json_array_get(all, i);
	qsort(v, n, sizeof *v, session_cmp);
	sorted = json_array();
	for (i = 0; i < n; i++)
		json_array_append(sorted, v[i]);
	free(v);
	json_decref(all);
	return (sorted);
}

/*
 * The broker's proxy says that the viewer at client reaches vm's SPICE
 * server from via (the proxy's own address and port). The open session
 * seen from via gets its real client now (1); else the word waits for
 * the session to open (0).
 */
int
session_via(const char *vm, const char *via, const char *client)
{
	const char	*seen;
	json_t		*rec, *s;
	char		*key;
	size_t		 i;
	int		 found = 0;

	rec = session_load(vm);
	json_array_foreach(json_object_get(rec, "sessions"), i, s) {
		if (!json_is_null(json_object_get(s, "end")) ||
		    json_object_get(s, "via") != NULL ||
		    (seen = session_seen(s)) == NULL || strcmp(seen, via) != 0)
			continue;
		json_object_set_new(s, "via", json_string(via));
		json_object_set_new(s, "client", json_string(client));
		found = 1;
	}
	if (found) {
		session_save(vm, rec);
		log_info("%s: SPICE session from %s is %s's, through the "
		    "proxy", vm, via, client);
	} else {
		session_via_expire();
		if (json_object_size(session_vias) < SESSION_VIA_MAX) {
			key = session_via_key(vm, via);
			json_object_set_new(session_vias, key, json_pack(
			    "{s:s,s:I}", "client", client, "at",
			    (json_int_t)time(NULL)));
			free(key);
		}
	}
	json_decref(rec);
	return (found);
}
