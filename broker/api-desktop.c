/*
 * A user's desktops: the list with their states, and power actions. qmpd
 * decides what is the user's (desktop.mine, desktop.power name the login);
 * the broker passes the session's login, never one from the request.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "names.h"
#include "xmalloc.h"

#define API_LIST_TIMEOUT	15
#define API_POWER_TIMEOUT	150	/* qmpd may wait for a slow start */
#define API_ACQUIRE_TIMEOUT	200	/* a pool's boot may queue first */
/*
 * A pool desktop is handed out only this soon after login: a user who
 * shut theirs down (giving it back) does not get another one from the
 * portal's next refresh, only at their next login.
 */
#define API_ACQUIRE_WINDOW	60

/* Is the route's VM name a name at all? Replies 404 if not. */
int
api_vm_name_ok(struct http_call *call)
{
	char	*cause = NULL;

	if (names_valid(call->arg, "VM", &cause) == 0)
		return (1);
	free(cause);
	http_reply_error(call, 404, "you have no desktop named '%s'",
	    call->arg);
	return (0);
}

/*
 * A user with no desktop got one from a pool (desktop.acquire), or has
 * no pool to take one from: an empty list then.
 */
static void
api_desktops_acquired(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct http_call	*call = arg;

	if (errclass != NULL && strcmp(errclass, "NotFound") == 0) {
		http_reply_json(call, 200, json_array());
		return;
	}
	if (errclass != NULL) {
		http_reply_qmpd(call, errclass, errdesc);
		return;
	}
	log_info("user %s got pool desktop %s", call->login,
	    json_string_value(json_object_get(ret, "name")));
	http_reply_json(call, 200, json_pack("[{s:O,s:O?,s:O?,s:b}]", "name",
	    json_object_get(ret, "name"), "state", json_object_get(ret,
	    "state"), "pool", json_object_get(ret, "pool"), "spice",
	    json_is_object(json_object_get(ret, "spice"))));
}

/* Did this call's session log in less than API_ACQUIRE_WINDOW ago? */
static int
api_desktops_just_in(struct http_call *call)
{
	struct portal_session	*s = portal_session_find(call->sid, 0);

	/* session.c's clock */
	return (s != NULL && clock_mono_s() - s->created < API_ACQUIRE_WINDOW);
}

/* Pass on the user's desktops with only what the portal shows. */
static void
api_desktops_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct http_call	*call = arg;
	json_t			*list, *d, *out;
	size_t			 i;

	if (errclass != NULL) {
		http_reply_qmpd(call, errclass, errdesc);
		return;
	}
	list = json_object_get(ret, "desktops");
	if (json_array_size(list) == 0 && api_desktops_just_in(call)) {
		qmpc_call("desktop.acquire", json_pack("{s:s}", "login",
		    call->login), API_ACQUIRE_TIMEOUT, api_desktops_acquired,
		    call);
		return;
	}
	out = json_array();
	json_array_foreach(list, i, d) {
		if (!json_is_string(json_object_get(d, "name")))
			continue;
		/* Only what the portal shows: no ports, no addresses. */
		json_array_append_new(out, json_pack("{s:O,s:O?,s:O?,s:b}",
		    "name", json_object_get(d, "name"),
		    "state", json_object_get(d, "state"),
		    "pool", json_object_get(d, "pool"),
		    "spice", json_is_object(json_object_get(d, "spice"))));
	}
	http_reply_json(call, 200, out);
}

void
api_desktops(struct http_call *call)
{
	qmpc_call("desktop.mine", json_pack("{s:s}", "login", call->login),
	    API_LIST_TIMEOUT, api_desktops_done, call);
}

/* The power action went through: answer with the desktop's new state. */
static void
api_power_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct http_call	*call = arg;
	json_t			*state;

	if (errclass != NULL) {
		http_reply_qmpd(call, errclass, errdesc);
		return;
	}
	log_info("user %s from %s: %s", call->login, call->peer, call->path);
	state = json_object_get(ret, "state");
	http_reply_json(call, 200, json_pack("{s:s,s:O?}", "name", call->arg,
	    "state", state));
}

/* One power action on one of the user's desktops. */
static void
api_power(struct http_call *call, const char *action)
{
	if (!api_vm_name_ok(call))
		return;
	qmpc_call("desktop.power", json_pack("{s:s,s:s,s:s}", "login",
	    call->login, "vm", call->arg, "action", action),
	    API_POWER_TIMEOUT, api_power_done, call);
}

void
api_start(struct http_call *call)
{
	api_power(call, "start");
}

void
api_shutdown(struct http_call *call)
{
	api_power(call, "shutdown");
}

void
api_reboot(struct http_call *call)
{
	api_power(call, "reboot");
}
