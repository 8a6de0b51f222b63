/* The admin protocol's framing and errors, and name validation. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "names.h"
#include "proto.h"

static void
parse_ok(const char *line, const char *cmd)
{
	struct proto_req	 req;
	const char		*errclass = NULL;
	char			*cause = NULL;

	CHECK(proto_parse_request(line, strlen(line), &req, &errclass,
	    &cause) == 0);
	CHECK_STR(req.cmd, cmd);
	CHECK(json_is_object(req.args));
	proto_req_clear(&req);
}

static void
parse_fail(const char *line, size_t len, const char *want, int want_id)
{
	struct proto_req	 req;
	const char		*errclass = NULL;
	char			*cause = NULL;

	CHECK(proto_parse_request(line, len, &req, &errclass, &cause) == -1);
	CHECK_STR(errclass, want);
	CHECK(cause != NULL && strlen(cause) > 0);
	CHECK((req.id != NULL) == want_id);
	free(cause);
	proto_req_clear(&req);
}

int
main(void)
{
	char	*s, *big, *cause = NULL;
	json_t	*j, *id;

	parse_ok("{\"id\":1,\"cmd\":\"vm.start\",\"args\":{\"name\":\"d\"}}",
	    "vm.start");
	parse_ok("{\"cmd\":\"server.status\"}", "server.status");
	parse_ok("{\"cmd\":\"vm.list\",\"args\":null}", "vm.list");
	parse_fail("{not json", 9, ERR_PARSE, 0);
	parse_fail("[1]", 3, ERR_REQUEST, 0);
	parse_fail("{\"id\":7}", 8, ERR_REQUEST, 1);
	parse_fail("{\"id\":7,\"cmd\":3}", 16, ERR_REQUEST, 1);
	parse_fail("{\"id\":7,\"cmd\":\"\"}", 17, ERR_REQUEST, 1);
	parse_fail("{\"id\":7,\"cmd\":\"x\",\"args\":[]}", 28, ERR_REQUEST, 1);
	parse_fail("{\"cmd\":\"a\",\"cmd\":\"b\"}", 21, ERR_PARSE, 0);
	big = malloc(PROTO_MAX_LINE + 2);
	memset(big, ' ', PROTO_MAX_LINE + 1);
	big[PROTO_MAX_LINE + 1] = '\0';
	parse_fail(big, PROTO_MAX_LINE + 1, ERR_TOOLONG, 0);
	free(big);

	/* Replies carry the request's id, whatever JSON it is. */
	id = json_string("abc");
	s = proto_error(id, ERR_NOTFOUND, "no VM named x");
	j = json_loads(s, 0, NULL);
	CHECK(proto_classify(j) == PROTO_MSG_ERROR);
	CHECK_STR(json_string_value(json_object_get(j, "id")), "abc");
	CHECK_STR(json_string_value(json_object_get(json_object_get(j,
	    "error"), "class")), ERR_NOTFOUND);
	json_decref(j);
	free(s);
	s = proto_return(id, NULL);
	j = json_loads(s, 0, NULL);
	CHECK(proto_classify(j) == PROTO_MSG_RETURN);
	CHECK(json_is_object(json_object_get(j, "return")));
	json_decref(j);
	free(s);
	json_decref(id);
	s = proto_hello("1.2.3");
	j = json_loads(s, 0, NULL);
	CHECK(proto_classify(j) == PROTO_MSG_HELLO);
	CHECK(json_integer_value(json_object_get(json_object_get(j, "qdesk"),
	    "protocol")) == PROTO_VERSION);
	json_decref(j);
	free(s);
	j = json_pack("{s:s,s:s}", "event", "vm.state", "vm", "a");
	CHECK(proto_classify(j) == PROTO_MSG_EVENT);
	json_decref(j);

	/* Names. */
	CHECK(names_valid("desk1", "VM", &cause) == 0);
	CHECK(names_valid("a", "VM", &cause) == 0);
	CHECK(names_valid("0-a-b", "VM", &cause) == 0);
	CHECK(names_valid("", "VM", &cause) == -1);
	free(cause);
	CHECK(names_valid("-a", "VM", &cause) == -1);
	free(cause);
	CHECK(names_valid("Desk", "VM", &cause) == -1);
	free(cause);
	CHECK(names_valid("a/b", "VM", &cause) == -1);
	free(cause);
	CHECK(names_valid("a_b", "VM", &cause) == -1);
	free(cause);
	CHECK(names_valid("a b", "VM", &cause) == -1);
	free(cause);
	CHECK(names_valid("0123456789012345678901234567890123456789"
	    "01234567890123456789012", "VM", &cause) == 0);
	CHECK(names_valid("0123456789012345678901234567890123456789"
	    "012345678901234567890123", "VM", &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "limit") != NULL);
	free(cause);
	return (check_exit());
}
