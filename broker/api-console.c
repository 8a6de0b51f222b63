/*
 * Console access. Each SPICE request has qmpd set a fresh password on
 * the user's VM (connected=keep: an open session stays up; an expiry
 * always follows), then answers as JSON or as a .vv file whose host is a
 * signed proxy ticket, so a viewer reaches the loopback-only SPICE server
 * through the broker's CONNECT proxy and nothing else. The .rdp file
 * points an RDP client at the broker's RDP gateway. A request with the
 * body {"type":"browser"} gets the browser console's WebSocket address
 * instead, with a one-time ticket in it (console-ws.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "log.h"
#include "xmalloc.h"

#define API_CONSOLE_TIMEOUT	30

enum api_console_kind {
	API_CONSOLE_JSON,
	API_CONSOLE_VV
};

struct api_console {
	struct http_call	*call;
	enum api_console_kind	 kind;
};

/* qmpd set the password: sign a proxy ticket, answer as JSON or .vv. */
static void
api_console_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct api_console	*c = arg;
	struct http_call	*call = c->call;
	enum api_console_kind	 kind = c->kind;
	const char		*host, *password, *uri;
	char			 ticket[TICKET_MAX], *proxy, *text, *title;
	char			*cause = NULL;
	json_int_t		 port, expires;
	struct vv		 vv;

	free(c);
	if (errclass != NULL) {
		http_reply_qmpd(call, errclass, errdesc);
		return;
	}
	host = json_string_value(json_object_get(ret, "host"));
	password = json_string_value(json_object_get(ret, "password"));
	uri = json_string_value(json_object_get(ret, "uri"));
	port = json_integer_value(json_object_get(ret, "port"));
	expires = json_integer_value(json_object_get(ret, "expires"));
	if (host == NULL || password == NULL || port <= 0 || port > 65535) {
		http_reply_error(call, 502, "qmpd's console answer lacks a "
		    "host, port or password");
		return;
	}
	memset(&vv, 0, sizeof vv);
	vv.tls = json_is_true(json_object_get(ret, "tls"));
	vv.ca = json_string_value(json_object_get(ret, "ca"));
	vv.host_subject = json_string_value(json_object_get(ret,
	    "host_subject"));
	if (expires <= 0)
		expires = time(NULL) + broker->console_ttl;
	if (ticket_make(broker->ticket_key, sizeof broker->ticket_key,
	    call->arg, (int)port, (time_t)expires, ticket,
	    sizeof ticket) != 0) {
		http_reply_error(call, 500, "cannot make a proxy ticket for "
		    "%s", call->arg);
		return;
	}
	proxy_route(call->arg, host);
	broker_metrics.tickets++;
	xasprintf(&proxy, "http://%s:%d", call->host,
	    broker->spice_proxy.port);
	log_info("user %s from %s: console of %s, valid %lld s", call->login,
	    call->peer, call->arg, (long long)(expires - time(NULL)));

	if (kind == API_CONSOLE_JSON) {
		http_reply_json(call, 200, json_pack("{s:s?,s:s,s:I,s:s,s:I,"
		    "s:s,s:s,s:b,s:s?,s:s?}", "uri", uri, "host", host, "port",
		    port, "password", password, "expires", expires, "proxy",
		    proxy, "ticket", ticket, "tls", vv.tls, "ca", vv.ca,
		    "host_subject", vv.host_subject));
		free(proxy);
		return;
	}
	xasprintf(&title, "%s (qdesk)", call->arg);
	vv.host = ticket;
	vv.port = (int)port;
	vv.password = password;
	vv.title = title;
	vv.proxy = proxy;
	if ((text = vv_build(&vv, &cause)) == NULL) {
		http_reply_error(call, 502, "%s", cause);
		free(cause);
	} else {
		free(title);
		xasprintf(&title, "attachment; filename=\"%s.vv\"", call->arg);
		http_header(call, "Content-Disposition", title);
		http_reply_data(call, 200, "application/x-virt-viewer", text,
		    strlen(text));
		explicit_bzero(text, strlen(text));
		free(text);
	}
	free(title);
	free(proxy);
}

/* Ask qmpd for a fresh console password on one of the user's VMs. */
static void
api_console_request(struct http_call *call, enum api_console_kind kind)
{
	struct api_console	*c;

	if (!api_vm_name_ok(call))
		return;
	c = xcalloc(1, sizeof *c);
	c->call = call;
	c->kind = kind;
	qmpc_call("desktop.console", json_pack("{s:s,s:s,s:i}", "login",
	    call->login, "vm", call->arg, "expires", broker->console_ttl),
	    API_CONSOLE_TIMEOUT, api_console_done, c);
}

/*
 * The entry of the desktop call->arg in desktop.mine's answer ret, or
 * NULL after a 403 when it is not the user's (what: the refused thing).
 */
static json_t *
api_console_mine(struct http_call *call, json_t *ret, const char *what)
{
	json_t	*d;
	size_t	 i;

	json_array_foreach(json_object_get(ret, "desktops"), i, d) {
		if (json_is_string(json_object_get(d, "name")) &&
		    strcmp(json_string_value(json_object_get(d, "name")),
		    call->arg) == 0)
			return (d);
	}
	log_warnx("user %s from %s: %s of %s refused: not theirs",
	    call->login, call->peer, what, call->arg);
	http_reply_json(call, 403, json_pack("{s:s,s:s}", "error",
	    "this desktop is not yours", "class", "PermissionDenied"));
	return (NULL);
}

/* The user's desktops are known: a WebSocket ticket if this one is theirs. */
static void
api_console_browser_done(json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct http_call	*call = arg;
	json_t			*found;
	const char		*state;
	char			*ticket, *ws;
	time_t			 expires;

	if (errclass != NULL) {
		http_reply_qmpd(call, errclass, errdesc);
		return;
	}
	if ((found = api_console_mine(call, ret, "browser console")) == NULL)
		return;
	state = json_string_value(json_object_get(found, "state"));
	if (state == NULL || strcmp(state, "running") != 0) {
		http_reply_json(call, 409, json_pack("{s:s,s:s}", "error",
		    "the desktop is not running: start it first", "class",
		    "StateError"));
		return;
	}
	ticket = console_ws_ticket(call->login, call->arg, &expires);
	xasprintf(&ws, "/api/desktops/%s/console.ws?ticket=%s", call->arg,
	    ticket);
	explicit_bzero(ticket, strlen(ticket));
	free(ticket);
	log_info("user %s from %s: browser console ticket for %s, valid %d s",
	    call->login, call->peer, call->arg, broker->console_ttl);
	http_reply_json(call, 200, json_pack("{s:s,s:I}", "ws", ws,
	    "expires", (json_int_t)expires));
	explicit_bzero(ws, strlen(ws));
	free(ws);
}

/* The console types a POST may ask for; no type is SPICE. */
static const char *api_console_types[] = { "spice", "browser" };

/*
 * POST /api/desktops/NAME/console: SPICE's password and ticket, or with
 * {"type":"browser"} the browser console's WebSocket address.
 */
void
api_console(struct http_call *call)
{
	const char	*type = "spice";
	json_t		*t;
	size_t		 i;

	if (http_call_body(call) != 0)
		return;
	if ((t = json_object_get(call->body, "type")) != NULL) {
		if ((type = json_string_value(t)) == NULL) {
			http_reply_error(call, 400, "type must be a string: "
			    "spice or browser");
			return;
		}
		for (i = 0; i < nitems(api_console_types); i++) {
			if (strcmp(type, api_console_types[i]) == 0)
				break;
		}
		if (i == nitems(api_console_types)) {
			http_reply_error(call, 400, "no console type '%.32s': "
			    "spice or browser", type);
			return;
		}
	}
	if (strcmp(type, "browser") != 0) {
		api_console_request(call, API_CONSOLE_JSON);
		return;
	}
	if (!api_vm_name_ok(call))
		return;
	qmpc_call("desktop.mine", json_pack("{s:s}", "login", call->login),
	    API_CONSOLE_TIMEOUT, api_console_browser_done, call);
}

void
api_console_vv(struct http_call *call)
{
	api_console_request(call, API_CONSOLE_VV);
}

/* The user's desktops are known: a .rdp file if this one is among them. */
static void
api_console_rdp_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct http_call	*call = arg;
	char			*text, *cause = NULL, *disp;

	if (errclass != NULL) {
		http_reply_qmpd(call, errclass, errdesc);
		return;
	}
	if (api_console_mine(call, ret, ".rdp") == NULL)
		return;
	if ((text = rdpgw_file(call->host, call->login, call->arg,
	    &cause)) == NULL) {
		http_reply_error(call, rdpgw_enabled() ? 500 : 501, "%s",
		    cause);
		free(cause);
		return;
	}
	xasprintf(&disp, "attachment; filename=\"%s.rdp\"", call->arg);
	http_header(call, "Content-Disposition", disp);
	free(disp);
	http_reply_data(call, 200, "application/x-rdp", text, strlen(text));
	free(text);
}

/*
 * The .rdp file for the RDP gateway: no secret in it (the client asks for
 * the password), but only for the user's own desktops all the same.
 */
void
api_console_rdp(struct http_call *call)
{
	if (!api_vm_name_ok(call))
		return;
	if (!rdpgw_enabled()) {
		http_reply_error(call, 501, "RDP access is not enabled on this "
		    "broker: use Connect (SPICE) with remote-viewer");
		return;
	}
	qmpc_call("desktop.mine", json_pack("{s:s}", "login", call->login),
	    API_CONSOLE_TIMEOUT, api_console_rdp_done, call);
}
