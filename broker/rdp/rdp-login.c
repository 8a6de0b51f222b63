/*
 * Who an RDP client is and which desktop it lands on. The client info PDU
 * carries a user name and password (NLA is off: TLS only, so the gateway
 * sees them, as a terminal server's logon screen would); qmpd checks them
 * with user.auth, in the same lockout as the portal. The desktop comes from
 * the domain field (the .rdp file sets it), else from a routing token
 * "Cookie: msts=NAME" (loadbalanceinfo), else the user's first desktop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <freerdp/error.h>

#include "compat.h"
#include "proto.h"
#include "rdp-int.h"
#include "xmalloc.h"

#define RDP_LOGIN_TOKEN		"Cookie: msts="

/* The desktop the client asked for, or NULL for "the first one". */
char *
rdp_login_wanted(const char *domain, const char *token, size_t tokenlen)
{
	size_t	plen = strlen(RDP_LOGIN_TOKEN);

	if (domain != NULL && *domain != '\0')
		return (xstrdup(domain));
	if (token == NULL || tokenlen <= plen ||
	    strncmp(token, RDP_LOGIN_TOKEN, plen) != 0)
		return (NULL);
	token += plen;
	tokenlen -= plen;
	while (tokenlen > 0 && (token[tokenlen - 1] == '\n' ||
	    token[tokenlen - 1] == '\r' || token[tokenlen - 1] == '\0'))
		tokenlen--;
	if (tokenlen == 0)
		return (NULL);
	return (xstrndup(token, tokenlen));
}

/*
 * Pick the desktop from desktop.mine's list: the one named wanted, or the
 * first. Returns it (borrowed), or NULL with a cause a person can act on.
 */
json_t *
rdp_login_choose(json_t *desktops, const char *wanted, const char *login,
    char **cause)
{
	json_t		*d;
	size_t		 i;
	const char	*name;
	char		*names = NULL, *tmp;

	if (!json_is_array(desktops) || json_array_size(desktops) == 0) {
		xasprintf(cause, "%s has no desktop: an administrator must "
		    "assign one (qdesk desktop assign %s VM)", login, login);
		return (NULL);
	}
	json_array_foreach(desktops, i, d) {
		name = json_string_value(json_object_get(d, "name"));
		if (name == NULL)
			continue;
		if (wanted == NULL || strcmp(name, wanted) == 0)
			return (d);
	}
	json_array_foreach(desktops, i, d) {
		name = json_string_value(json_object_get(d, "name"));
		if (name == NULL)
			continue;
		xasprintf(&tmp, "%s%s%s", names != NULL ? names : "",
		    names != NULL ? ", " : "", name);
		free(names);
		names = tmp;
	}
	xasprintf(cause, "%s has no desktop named %.64s (theirs: %s)", login,
	    wanted, names != NULL ? names : "none");
	free(names);
	return (NULL);
}

/* A qmpd error as a cause; frees the class. */
static void
rdp_login_qmpd_error(const char *what, char *errclass, char *desc,
    char **cause)
{
	xasprintf(cause, "%s: %s", what, desc != NULL ? desc : "failed");
	free(errclass);
	free(desc);
}

/*
 * Authenticate, choose the desktop, start it when it is not running, and
 * get a VNC connection to its console. Blocks (the session thread calls
 * it). On failure, res->errinfo says what to tell the client.
 */
int
rdp_login(const char *qmpd, const struct rdp_login *in,
    struct rdp_login_result *res, char **cause)
{
	json_t		*ret = NULL, *mine = NULL, *d;
	char		*errclass = NULL, *desc = NULL, *wanted = NULL;
	char		*client = NULL, *what = NULL;
	const char	*login, *vm, *state;
	int		 fd = -1, wait;

	memset(res, 0, sizeof *res);
	res->vncfd = -1;
	res->errinfo = ERRINFO_SERVER_DENIED_CONNECTION;

	/* Charged as a failure from here until it succeeds. */
	if (in->throttle != NULL && (wait = in->throttle(in->arg)) != 0) {
		if (wait < 0)
			xasprintf(cause, "login refused: the gateway did not "
			    "answer");
		else
			xasprintf(cause, "login refused: too many failed logins "
			    "from %s; try again in %d s", in->addr, wait);
		return (-1);
	}
	if (in->user == NULL || *in->user == '\0' || in->password == NULL ||
	    *in->password == '\0') {
		xasprintf(cause, "no user name or password in the logon info "
		    "(NLA is off: the client must send both, e.g. from the "
		    ".rdp file or its login dialog)");
		return (-1);
	}
	if (strlen(in->user) >= RDP_LOGIN_MAX ||
	    strlen(in->password) > RDP_PASSWORD_MAX) {
		xasprintf(cause, "login %.64s refused: user name or password "
		    "over its length limit (%d, %d bytes)", in->user,
		    RDP_LOGIN_MAX - 1, RDP_PASSWORD_MAX);
		return (-1);
	}
	xasprintf(&client, "RDP %s", in->addr);
	ret = rdp_qmpd_call(qmpd, "user.auth", json_pack("{s:s,s:s,s:s}",
	    "login", in->user, "password", in->password, "client", client),
	    RDP_QMPD_TIMEOUT, NULL, &errclass, &desc);
	free(client);
	if (ret == NULL) {
		if (in->refund != NULL && (errclass == NULL ||
		    (strcmp(errclass, ERR_AUTH) != 0 &&
		    strcmp(errclass, ERR_LOCKED) != 0)))
			in->refund(in->arg);
		xasprintf(&what, "login %.64s refused", in->user);
		rdp_login_qmpd_error(what, errclass, desc, cause);
		free(what);
		return (-1);
	}
	login = json_string_value(json_object_get(ret, "login"));
	if (login == NULL)
		login = in->user;
	strlcpy(res->login, login, sizeof res->login);
	json_decref(ret);
	if (in->authed != NULL)
		in->authed(in->arg, res->login);

	mine = rdp_qmpd_call(qmpd, "desktop.mine", json_pack("{s:s}", "login",
	    res->login), RDP_QMPD_TIMEOUT, NULL, &errclass, &desc);
	if (mine == NULL) {
		rdp_login_qmpd_error("listing desktops", errclass, desc,
		    cause);
		return (-1);
	}
	wanted = rdp_login_wanted(in->domain, in->token, in->tokenlen);
	d = rdp_login_choose(json_object_get(mine, "desktops"), wanted,
	    res->login, cause);
	free(wanted);
	if (d == NULL) {
		res->errinfo = ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES;
		json_decref(mine);
		return (-1);
	}
	vm = json_string_value(json_object_get(d, "name"));
	strlcpy(res->vm, vm, sizeof res->vm);
	state = json_string_value(json_object_get(d, "state"));
	if (state == NULL || strcmp(state, "running") != 0) {
		ret = rdp_qmpd_call(qmpd, "desktop.power", json_pack(
		    "{s:s,s:s,s:s}", "login", res->login, "vm", res->vm,
		    "action", "start"), RDP_START_TIMEOUT, NULL, &errclass,
		    &desc);
		if (ret == NULL) {
			xasprintf(&what, "starting %s for %s", res->vm,
			    res->login);
			rdp_login_qmpd_error(what, errclass, desc, cause);
			free(what);
			json_decref(mine);
			return (-1);
		}
		json_decref(ret);
	}
	json_decref(mine);

	/*
	 * desktop.vnc (broker role) checks that the desktop is the user's;
	 * a qmpd without it still has vm.vnc, for the admin role only (the
	 * gateway run as root in development).
	 */
	ret = rdp_qmpd_call(qmpd, "desktop.vnc", json_pack("{s:s,s:s}",
	    "login", res->login, "vm", res->vm), RDP_QMPD_TIMEOUT, &fd,
	    &errclass, &desc);
	if (ret == NULL && errclass != NULL &&
	    strcmp(errclass, ERR_NOCMD) == 0) {
		free(errclass);
		free(desc);
		ret = rdp_qmpd_call(qmpd, "vm.vnc", json_pack("{s:s}", "name",
		    res->vm), RDP_QMPD_TIMEOUT, &fd, &errclass, &desc);
	}
	if (ret == NULL) {
		xasprintf(&what, "console of %s", res->vm);
		rdp_login_qmpd_error(what, errclass, desc, cause);
		free(what);
		return (-1);
	}
	/* Sound: QEMU's VNC server captures it (qmpd's -vnc audiodev). */
	res->audio = json_is_true(json_object_get(ret, "audio"));
	json_decref(ret);
	if (fd == -1) {
		xasprintf(cause, "console of %s: qmpd sent no VNC fd", res->vm);
		return (-1);
	}
	res->vncfd = fd;
	return (0);
}
