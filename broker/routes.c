/*
 * The route table: every page and API call the broker serves. A route
 * names the method, a path pattern ("*" is one segment, the handler's
 * call->arg), what it requires (ROUTE_*) and its handler. The first match
 * wins; a path that matches only under another method gets a 405.
 */
#include "broker.h"

const struct http_route routes[] = {
	{ "POST", "/api/login", ROUTE_CSRF | ROUTE_BODY, api_login },
	{ "POST", "/api/logout", ROUTE_CSRF, api_logout },
	{ "GET", "/api/me", ROUTE_SESSION, api_me },
	{ "GET", "/api/health", 0, api_health },
	{ "GET", "/metrics", 0, metrics_get },
	{ "GET", "/api/desktops", ROUTE_SESSION, api_desktops },
	{ "POST", "/api/desktops/*/start", ROUTE_SESSION | ROUTE_CSRF,
	    api_start },
	{ "POST", "/api/desktops/*/shutdown", ROUTE_SESSION | ROUTE_CSRF,
	    api_shutdown },
	{ "POST", "/api/desktops/*/reboot", ROUTE_SESSION | ROUTE_CSRF,
	    api_reboot },
	{ "POST", "/api/desktops/*/console", ROUTE_SESSION | ROUTE_CSRF,
	    api_console },
	/* Downloads are links: GET, guarded by the SameSite=Strict cookie. */
	{ "GET", "/api/desktops/*/console.vv", ROUTE_SESSION, api_console_vv },
	{ "GET", "/api/desktops/*/console.rdp", ROUTE_SESSION,
	    api_console_rdp },
	{ "GET", "/", 0, portal_get },
	{ "GET", "/*", 0, portal_get },
};
const size_t nroutes = nitems(routes);
