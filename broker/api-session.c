/*
 * Logging in and out. qmpd checks the password and keeps the lockout
 * count per login (shared with the RDP gateway); the broker turns a
 * success into a session cookie and a failure into 401 or 429. Two more
 * guards live here: failures per client address (throttle.c, shared with
 * the RDP gateway; each attempt is charged as it arrives, and given back
 * when it succeeds), and at most API_AUTH_INFLIGHT password checks sent
 * to qmpd at a time, the rest queued: each costs qmpd a yescrypt hash,
 * and a login storm must not starve everything else qmpd does. A
 * password over qmpd's limit fails at once, without reaching qmpd.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "proto.h"
#include "xmalloc.h"

#define API_AUTH_TIMEOUT	20
#define API_AUTH_INFLIGHT	2
#define API_AUTH_QUEUE		256
/* An address may fail 20 times at once, then once every --login-refill s. */
#define API_FAIL_BURST		20
#define API_FAIL_ADDRS		4096

struct api_login {
	struct http_call	*call;
	TAILQ_ENTRY(api_login)	 entry;
};
static TAILQ_HEAD(, api_login)	 api_login_queue =
    TAILQ_HEAD_INITIALIZER(api_login_queue);
static int			 api_login_queued;
static int			 api_login_inflight;
static struct throttle		*api_login_fails;

static void	api_login_send(struct http_call *);

/* The table of failures per address, made on first use. */
static struct throttle *
api_login_throttle(void)
{
	if (api_login_fails == NULL)
		api_login_fails = throttle_create(API_FAIL_BURST,
		    broker->login_refill, API_FAIL_ADDRS);
	return (api_login_fails);
}

/*
 * An attempt from addr arrives: 0 when it may go on, charged as a failure
 * until it succeeds; else the seconds to wait (and the try counts).
 */
int
login_throttle_try(const char *addr)
{
	struct throttle	*t = api_login_throttle();
	time_t		 now = clock_mono_s();
	int		 wait;

	wait = throttle_check(t, addr, now);
	throttle_fail(t, addr, now);
	return (wait);
}

/* An attempt charged by login_throttle_try ended; free unless it failed. */
void
login_throttle_done(const char *addr, int failed)
{
	if (!failed)
		throttle_refund(api_login_throttle(), addr, clock_mono_s());
}

/* A check came back: send the next queued one, if any. */
static void
api_login_next(void)
{
	struct api_login	*l;

	api_login_inflight--;
	if ((l = TAILQ_FIRST(&api_login_queue)) == NULL)
		return;
	TAILQ_REMOVE(&api_login_queue, l, entry);
	api_login_queued--;
	api_login_send(l->call);
	free(l);
}

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
	struct portal_session	*s;
	const char		*login, *name, *dept;
	json_t			*f;
	int			 admin;

	api_login_next();
	login_throttle_done(call->peer, errclass != NULL &&
	    (strcmp(errclass, ERR_AUTH) == 0 ||
	    strcmp(errclass, ERR_LOCKED) == 0));
	if (errclass != NULL) {
		if (strcmp(errclass, ERR_AUTH) == 0)
			broker_metrics.login_failures++;
		else if (strcmp(errclass, ERR_LOCKED) == 0)
			broker_metrics.logins_locked++;
		f = json_pack("{s:s?,s:s,s:s,s:s}", "user",
		    json_string_value(json_object_get(call->body, "user")),
		    "client", call->peer, "class", errclass, "reason", errdesc);
		log_event(1, "portal.login.failed", f, "login of %s from %s "
		    "failed: %s: %s", json_string_value(json_object_get(
		    call->body, "user")), call->peer, errclass, errdesc);
		json_decref(f);
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
		portal_session_destroy(portal_session_find(call->sid, 0));
	if ((s = portal_session_create(login, name, admin)) == NULL) {
		log_warnx("login of %s from %s refused: too many sessions open",
		    login, call->peer);
		http_header(call, "Retry-After", "60");
		http_reply_error(call, 503, "too many people are logged in to "
		    "this portal right now; try again in a minute");
		return;
	}
	broker_metrics.logins++;
	f = json_pack("{s:s,s:s}", "user", login, "client", call->peer);
	log_event(0, "portal.login", f, "user %s logged in from %s", login,
	    call->peer);
	json_decref(f);
	api_set_cookie(call, s->id);
	http_reply_json(call, 200, json_pack("{s:s,s:s,s:s?,s:b,s:b}",
	    "login", login, "name", s->name, "dept", dept, "admin", admin,
	    "rdp", rdpgw_enabled()));
}

/* Check the request, the address's failures and the queue; then send. */
void
api_login(struct http_call *call)
{
	json_t			*user = json_object_get(call->body, "user");
	json_t			*pass = json_object_get(call->body, "password");
	struct api_login	*l;
	char			 secs[16];
	int			 wait;

	if (!json_is_string(user) || !json_is_string(pass) ||
	    json_string_length(user) == 0) {
		http_reply_error(call, 400, "send {\"user\": ..., "
		    "\"password\": ...}");
		return;
	}
	if ((wait = login_throttle_try(call->peer)) > 0) {
		log_warnx("login of %.64s from %s refused: too many failures "
		    "from this address", json_string_value(user), call->peer);
		snprintf(secs, sizeof secs, "%d", wait);
		http_header(call, "Retry-After", secs);
		http_reply_json(call, 429, json_pack("{s:s,s:s}", "error",
		    "too many failed logins from your address; try again "
		    "later", "class", ERR_LOCKED));
		return;
	}
	/* Not a login qmpd could accept: a failure, without asking it. */
	if (json_string_length(user) > BROKER_LOGIN_MAX ||
	    json_string_length(pass) > BROKER_PASSWORD_MAX ||
	    strlen(json_string_value(user)) != json_string_length(user) ||
	    strlen(json_string_value(pass)) != json_string_length(pass)) {
		log_warnx("login from %s failed: user name or password over "
		    "its length limit (%d, %d bytes) or with a NUL",
		    call->peer, BROKER_LOGIN_MAX, BROKER_PASSWORD_MAX);
		http_reply_json(call, 401, json_pack("{s:s,s:s}", "error",
		    "wrong user name or password", "class", ERR_AUTH));
		return;
	}
	if (api_login_inflight < API_AUTH_INFLIGHT) {
		api_login_send(call);
		return;
	}
	if (api_login_queued >= API_AUTH_QUEUE) {
		log_warnx("login of %s from %s refused: %d logins waiting",
		    json_string_value(user), call->peer, api_login_queued);
		login_throttle_done(call->peer, 0);
		http_header(call, "Retry-After", "5");
		http_reply_error(call, 503, "too many people are logging in "
		    "right now; try again in a few seconds");
		return;
	}
	l = xcalloc(1, sizeof *l);
	l->call = call;
	TAILQ_INSERT_TAIL(&api_login_queue, l, entry);
	api_login_queued++;
}

/* Have qmpd check the password; the answer comes to api_login_done. */
static void
api_login_send(struct http_call *call)
{
	json_t	*user = json_object_get(call->body, "user");
	json_t	*pass = json_object_get(call->body, "password");

	api_login_inflight++;
	qmpc_call("user.auth", json_pack("{s:O,s:O,s:s}", "login", user,
	    "password", pass, "client", call->peer), API_AUTH_TIMEOUT,
	    api_login_done, call);
	/* The password need not outlive the request to qmpd. */
	json_object_del(call->body, "password");
}

/* At exit: drop the queue (their connections are going) and the table. */
void
api_session_free(void)
{
	struct api_login	*l;

	while ((l = TAILQ_FIRST(&api_login_queue)) != NULL) {
		TAILQ_REMOVE(&api_login_queue, l, entry);
		login_throttle_done(l->call->peer, 0);
		http_reply_error(l->call, 503, "the broker is stopping");
		free(l);
	}
	api_login_queued = 0;
	throttle_free(api_login_fails);
	api_login_fails = NULL;
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
		portal_session_destroy(portal_session_find(call->sid, 0));
	}
	api_set_cookie(call, NULL);
	http_reply_json(call, 200, json_pack("{s:b}", "ok", 1));
}

void
api_me(struct http_call *call)
{
	struct portal_session	*s = portal_session_find(call->sid, 0);

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
