/*
 * Logging in and out. qmpd checks the password and keeps the lockout
 * count (shared with the RDP gateway); the broker only turns a success
 * into a session cookie and a failure into 401 or 429.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"
#include "proto.h"
#include "xmalloc.h"

#define API_LOGIN_MAX		63
#define API_PASSWORD_MAX	1024
#define API_AUTH_TIMEOUT	20

/* The cookie: HttpOnly (no script reads it), Secure, same-site only. */
static void
api_set_cookie(struct http_call *call, const char *sid)
{
	char	*v;

	if (sid != NULL)
		xasprintf(&v, "%s=%s; Path=/; Secure; HttpOnly; "
		    "SameSite=Strict", HTTP_COOKIE, sid);
	else
		xasprintf(&v, "%s=; Path=/; Secure; HttpOnly; "
		    "SameSite=Strict; Max-Age=0", HTTP_COOKIE);
	http_header(call, "Set-Cookie", v);
	free(v);
}

/* "Locked" says how long in words; Retry-After wants the seconds. */
static void
api_retry_after(struct http_call *call, const char *desc)
{
	const char	*p;
	char		 buf[32];
	long		 secs = -1;

	for (p = desc; *p != '\0'; p++) {
		if (isdigit((unsigned char)*p)) {
			secs = strtol(p, NULL, 10);
			break;
		}
	}
	if (secs > 0) {
		snprintf(buf, sizeof buf, "%ld", secs);
		http_header(call, "Retry-After", buf);
	}
}

/*
 * qmpd's verdict on a login: a new session and its cookie, or 401 / 429
 * with words a person can act on.
 */
static void
api_login_done(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	struct http_call	*call = arg;
	struct session		*s;
	const char		*login, *name, *dept;
	int			 admin;

	if (errclass != NULL) {
		log_warnx("login of %s from %s failed: %s: %s",
		    json_string_value(json_object_get(call->body, "user")),
		    call->peer, errclass, errdesc);
		if (strcmp(errclass, ERR_AUTH) == 0) {
			http_reply_json(call, 401, json_pack("{s:s,s:s}",
			    "error", "wrong user name or password", "class",
			    errclass));
			return;
		}
		if (strcmp(errclass, ERR_LOCKED) == 0)
			api_retry_after(call, errdesc);
		http_reply_qmpd(call, errclass, errdesc);
		return;
	}
	login = json_string_value(json_object_get(ret, "login"));
	name = json_string_value(json_object_get(ret, "name"));
	dept = json_string_value(json_object_get(ret, "dept"));
	admin = json_is_true(json_object_get(ret, "admin"));
	if (login == NULL) {
		http_reply_error(call, 502, "qmpd accepted the login but did "
		    "not say whose it is");
		return;
	}
	/* A login replaces whatever session this browser had. */
	if (call->sid[0] != '\0')
		session_destroy(session_find(call->sid));
	s = session_create(login, name, admin);
	log_info("user %s logged in from %s", login, call->peer);
	api_set_cookie(call, s->id);
	http_reply_json(call, 200, json_pack("{s:s,s:s,s:s?,s:b,s:b}",
	    "login", login, "name", s->name, "dept", dept, "admin", admin,
	    "rdp", rdpgw_enabled()));
}

void
api_login(struct http_call *call)
{
	json_t		*user = json_object_get(call->body, "user");
	json_t		*pass = json_object_get(call->body, "password");

	if (!json_is_string(user) || !json_is_string(pass) ||
	    json_string_length(user) == 0) {
		http_reply_error(call, 400, "send {\"user\": ..., "
		    "\"password\": ...}");
		return;
	}
	if (json_string_length(user) > API_LOGIN_MAX ||
	    json_string_length(pass) > API_PASSWORD_MAX ||
	    strlen(json_string_value(user)) != json_string_length(user) ||
	    strlen(json_string_value(pass)) != json_string_length(pass)) {
		http_reply_json(call, 401, json_pack("{s:s,s:s}", "error",
		    "wrong user name or password", "class", ERR_AUTH));
		return;
	}
	qmpc_call("user.auth", json_pack("{s:O,s:O,s:s}", "login", user,
	    "password", pass, "client", call->peer), API_AUTH_TIMEOUT,
	    api_login_done, call);
	/* The password need not outlive the request to qmpd. */
	json_object_del(call->body, "password");
}

/* Logout gave the user's floating pool desktops back; errors only logged. */
static void
api_logout_released(json_t *ret, const char *errclass, const char *errdesc,
    void *arg)
{
	if (errclass != NULL)
		log_warnx("desktop.release at logout: %s", errdesc);
}

void
api_logout(struct http_call *call)
{
	if (call->sid[0] != '\0') {
		log_info("user %s logged out from %s", call->login,
		    call->peer);
		qmpc_call("desktop.release", json_pack("{s:s}", "login",
		    call->login), 30, api_logout_released, NULL);
		session_destroy(session_find(call->sid));
	}
	api_set_cookie(call, NULL);
	http_reply_json(call, 200, json_pack("{s:b}", "ok", 1));
}

void
api_me(struct http_call *call)
{
	struct session	*s = session_find(call->sid);

	if (s == NULL) {
		http_reply_error(call, 401, "not logged in");
		return;
	}
	http_reply_json(call, 200, json_pack("{s:s,s:s,s:b,s:b}", "login",
	    s->login, "name", s->name, "admin", s->admin, "rdp",
	    rdpgw_enabled()));
}

/* For monitors and tests: is the broker up, and does it reach qmpd? */
void
api_health(struct http_call *call)
{
	http_reply_json(call, qmpc_connected() ? 200 : 503,
	    json_pack("{s:s}", "qmpd", qmpc_connected() ? "up" : "down"));
}
