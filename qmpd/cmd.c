/*
 * The command table: parse a request line, find its entry, check the
 * caller's role and the argument schema, run it. An exec function answers
 * at once (CMD_RETURN_DONE) or later from a callback (CMD_RETURN_WAIT).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmpd.h"
#include "xmalloc.h"

/* Every command family, in one place. */
const struct cmd_arg cmd_name_args[] = {
	{ "name", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_entry *cmd_families[] = {
	cmd_server_entries,
	cmd_vm_entries,
	cmd_vm_disk_entries,
	cmd_vm_firmware_entries,
	cmd_image_entries,
	cmd_net_entries,
	cmd_user_entries,
	cmd_user_import_entries,
	cmd_broker_entries,
	cmd_session_entries,
	cmd_pool_entries,
	cmd_vm_migrate_entries,
	cmd_host_entries,
};

static const struct cmd_entry *
cmd_find(const char *name)
{
	const struct cmd_entry	*e;
	size_t			 i;

	for (i = 0; i < nitems(cmd_families); i++) {
		for (e = cmd_families[i]; e->name != NULL; e++) {
			if (strcmp(e->name, name) == 0)
				return (e);
		}
	}
	return (NULL);
}

static const char *
cmd_type_name(enum cmd_argtype t)
{
	static const char *names[] = {
		[ARG_STR] = "a string", [ARG_INT] = "an integer",
		[ARG_BOOL] = "true or false", [ARG_ARRAY] = "an array",
		[ARG_OBJECT] = "an object",
	};
	return (names[t]);
}

static int
cmd_type_ok(enum cmd_argtype t, json_t *v)
{
	switch (t) {
	case ARG_STR:
		return (json_is_string(v));
	case ARG_INT:
		return (json_is_integer(v));
	case ARG_BOOL:
		return (json_is_boolean(v));
	case ARG_ARRAY:
		return (json_is_array(v));
	case ARG_OBJECT:
		return (json_is_object(v));
	}
	return (0);
}

/* Check args against the entry's schema; one clear sentence on error. */
static int
cmd_check_args(const struct cmd_entry *e, json_t *args, char **cause)
{
	const struct cmd_arg	*a;
	const char		*key;
	json_t			*v;

	json_object_foreach(args, key, v) {
		for (a = e->args; a != NULL && a->name != NULL; a++)
			if (strcmp(a->name, key) == 0)
				break;
		if (a == NULL || a->name == NULL) {
			xasprintf(cause, "%s takes no argument '%s'", e->name,
			    key);
			return (-1);
		}
		if (json_is_null(v) && !a->required)
			continue;
		if (!cmd_type_ok(a->type, v)) {
			xasprintf(cause, "argument '%s' of %s must be %s",
			    key, e->name, cmd_type_name(a->type));
			return (-1);
		}
	}
	for (a = e->args; a != NULL && a->name != NULL; a++) {
		if (a->required && json_object_get(args, a->name) == NULL) {
			xasprintf(cause, "%s needs argument '%s'", e->name,
			    a->name);
			return (-1);
		}
	}
	return (0);
}

static void
cmd_send_error(struct client *c, json_t *id, const char *errclass,
    const char *desc)
{
	char	*line;

	line = proto_error(id, db_errclass(errclass, desc), desc);
	server_send_line(c, line);
	free(line);
}

/* One request line from a client. Never fails the daemon. */
void
cmd_dispatch(struct client *c, const char *line, size_t len)
{
	struct proto_req	 preq;
	struct cmd_req		*req;
	const struct cmd_entry	*e;
	const char		*errclass;
	char			*cause = NULL;

	if (proto_parse_request(line, len, &preq, &errclass, &cause) != 0) {
		cmd_send_error(c, preq.id, errclass, cause);
		free(cause);
		proto_req_clear(&preq);
		return;
	}
	if ((e = cmd_find(preq.cmd)) == NULL) {
		xasprintf(&cause, "unknown command '%.64s'", preq.cmd);
		cmd_send_error(c, preq.id, ERR_NOCMD, cause);
		goto out;
	}
	if (client_role(c) < e->role) {
		xasprintf(&cause, "%s is for %s", e->name,
		    e->role == ROLE_HOST ? "hosts and administrators" :
		    "administrators");
		log_warnx("%s denied %s", client_name(c), e->name);
		cmd_send_error(c, preq.id, ERR_DENIED, cause);
		goto out;
	}
	if (cmd_check_args(e, preq.args, &cause) != 0) {
		cmd_send_error(c, preq.id, ERR_ARG, cause);
		goto out;
	}
	req = xcalloc(1, sizeof *req);
	req->client = c;
	req->id = preq.id != NULL ? json_incref(preq.id) : NULL;
	req->entry = e;
	req->args = json_incref(preq.args);
	client_req_add(c, req);
	log_debug("request %s", e->name);
	e->exec(req);
out:
	free(cause);
	proto_req_clear(&preq);
}

static void
cmd_req_free(struct cmd_req *req)
{
	if (req->ended != NULL)
		req->ended(req->ended_arg, NULL, NULL);
	if (req->client != NULL)
		client_req_remove(req->client, req);
	json_decref(req->id);
	json_decref(req->args);
	free(req);
}

/* Who asked: the client's uid, or -1 once it has gone. */
uid_t
cmd_req_uid(const struct cmd_req *req)
{
	return (req->client != NULL ? client_uid(req->client) : (uid_t)-1);
}

/* The client went away: its requests finish silently. */
void
cmd_req_detach(struct cmd_req *req)
{
	req->client = NULL;
}

void
cmd_reply(struct cmd_req *req, json_t *ret)
{
	char	*line;

	if (req->client != NULL) {
		line = proto_return(req->id, ret);
		server_send_line(req->client, line);
		free(line);
	}
	json_decref(ret);
	cmd_req_free(req);
}

/* A reply that carries an fd (SCM_RIGHTS); the caller closes its copy. */
void
cmd_reply_fd(struct cmd_req *req, json_t *ret, int fd)
{
	char	*line;

	if (req->client != NULL) {
		line = proto_return(req->id, ret);
		if (server_send_line_fd(req->client, line, fd) != 0) {
			json_decref(ret);
			cmd_error(req, ERR_BUSY, "cannot pass the file "
			    "descriptor now: read the pending replies first");
			free(line);
			return;
		}
		free(line);
	}
	json_decref(ret);
	cmd_req_free(req);
}

void
cmd_error(struct cmd_req *req, const char *errclass, const char *fmt, ...)
{
	va_list	 ap;
	char	*desc;

	va_start(ap, fmt);
	xvasprintf(&desc, fmt, ap);
	va_end(ap);
	if (req->client != NULL)
		cmd_send_error(req->client, req->id, errclass, desc);
	if (req->ended != NULL) {
		req->ended(req->ended_arg, errclass, desc);
		req->ended = NULL;
	}
	free(desc);
	cmd_req_free(req);
}

/* The completion callback a handler gives a model: answers req. */
void
cmd_done(void *arg, json_t *result, const char *errclass, const char *cause)
{
	struct cmd_req	*req = arg;

	if (errclass != NULL) {
		json_decref(result);
		cmd_error(req, errclass, "%s", cause);
	} else
		cmd_reply(req, result);
}

/* A model's progress report (stolen), for req's client. */
void
cmd_done_progress(void *arg, json_t *progress)
{
	cmd_progress(arg, progress);
}

/* Answer req with an error whose text is cause, which this frees. */
void
cmd_fail(struct cmd_req *req, const char *errclass, char *cause)
{
	cmd_error(req, errclass, "%s", cause != NULL ? cause : errclass);
	free(cause);
}

void
cmd_progress(struct cmd_req *req, json_t *progress)
{
	json_t	*j;
	char	*line;

	if (req->client != NULL) {
		j = json_object();
		if (req->id != NULL)
			json_object_set(j, "id", req->id);
		json_object_set(j, "progress", progress);
		line = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (line != NULL)
			server_send_line(req->client, line);
		free(line);
	}
	json_decref(progress);
}

const char *
cmd_arg_str(struct cmd_req *req, const char *name, const char *dflt)
{
	json_t	*v = json_object_get(req->args, name);

	return (json_is_string(v) ? json_string_value(v) : dflt);
}

json_int_t
cmd_arg_int(struct cmd_req *req, const char *name, json_int_t dflt)
{
	json_t	*v = json_object_get(req->args, name);

	return (json_is_integer(v) ? json_integer_value(v) : dflt);
}

int
cmd_arg_bool(struct cmd_req *req, const char *name, int dflt)
{
	json_t	*v = json_object_get(req->args, name);

	return (json_is_boolean(v) ? json_is_true(v) : dflt);
}
