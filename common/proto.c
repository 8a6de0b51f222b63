/*
 * Admin protocol lines: parse requests, build replies. Pure functions, so
 * the fuzz harness and unit tests exercise exactly what the daemon runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "xmalloc.h"

void
proto_req_clear(struct proto_req *req)
{
	json_decref(req->root);
	memset(req, 0, sizeof *req);
}

int
proto_parse_request(const char *line, size_t len, struct proto_req *req,
    const char **errclass, char **cause)
{
	json_error_t	 jerr;
	json_t		*root, *cmd, *args;

	memset(req, 0, sizeof *req);
	if (len > PROTO_MAX_LINE) {
		*errclass = ERR_TOOLONG;
		xasprintf(cause, "request line of %zu bytes is over the %d "
		    "byte limit", len, PROTO_MAX_LINE);
		return (-1);
	}
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		*errclass = ERR_PARSE;
		xasprintf(cause, "invalid JSON at column %d: %s", jerr.column,
		    jerr.text);
		return (-1);
	}
	req->root = root;
	if (!json_is_object(root)) {
		*errclass = ERR_REQUEST;
		xasprintf(cause, "a request must be a JSON object");
		return (-1);
	}
	req->id = json_object_get(root, "id");
	cmd = json_object_get(root, "cmd");
	if (!json_is_string(cmd) || json_string_length(cmd) == 0) {
		*errclass = ERR_REQUEST;
		xasprintf(cause, "a request needs a \"cmd\" string");
		return (-1);
	}
	args = json_object_get(root, "args");
	if (args == NULL || json_is_null(args)) {
		args = json_object();
		json_object_set_new(root, "args", args);
	} else if (!json_is_object(args)) {
		*errclass = ERR_REQUEST;
		xasprintf(cause, "\"args\" must be a JSON object");
		return (-1);
	}
	req->cmd = json_string_value(cmd);
	req->args = args;
	return (0);
}

static char *
proto_dump(json_t *j)
{
	char	*s;

	s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	if (s == NULL)
		s = xstrdup("{\"error\":{\"class\":\"InternalError\","
		    "\"desc\":\"cannot encode reply\"}}");
	return (s);
}

char *
proto_hello(const char *version)
{
	return (proto_dump(json_pack("{s:{s:s,s:i}}", "qdesk", "version",
	    version, "protocol", PROTO_VERSION)));
}

char *
proto_return(json_t *id, json_t *ret)
{
	json_t	*j = json_object();

	if (id != NULL)
		json_object_set(j, "id", id);
	if (ret != NULL)
		json_object_set(j, "return", ret);
	else
		json_object_set_new(j, "return", json_object());
	return (proto_dump(j));
}

char *
proto_error(json_t *id, const char *errclass, const char *desc)
{
	json_t	*j = json_object();

	if (id != NULL)
		json_object_set(j, "id", id);
	json_object_set_new(j, "error", json_pack("{s:s,s:s}", "class",
	    errclass, "desc", desc));
	return (proto_dump(j));
}

char *
proto_request(json_t *id, const char *cmd, json_t *args)
{
	json_t	*j = json_object();

	if (id != NULL)
		json_object_set(j, "id", id);
	json_object_set_new(j, "cmd", json_string(cmd));
	if (args != NULL)
		json_object_set(j, "args", args);
	return (proto_dump(j));
}

enum proto_msg_kind
proto_classify(json_t *msg)
{
	if (!json_is_object(msg))
		return (PROTO_MSG_BAD);
	if (json_is_object(json_object_get(msg, "qdesk")))
		return (PROTO_MSG_HELLO);
	if (json_object_get(msg, "return") != NULL)
		return (PROTO_MSG_RETURN);
	if (json_is_object(json_object_get(msg, "error")))
		return (PROTO_MSG_ERROR);
	if (json_is_string(json_object_get(msg, "event")))
		return (PROTO_MSG_EVENT);
	return (PROTO_MSG_BAD);
}
