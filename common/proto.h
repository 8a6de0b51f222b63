/*
 * The admin wire protocol: JSON lines over a unix socket, shaped like QMP.
 *
 *   server hello:  {"qdesk":{"version":"X.Y.Z","protocol":1}}
 *   request:       {"id":1,"cmd":"vm.start","args":{"name":"desk1"}}
 *   reply:         {"id":1,"return":{...}}
 *   error:         {"id":1,"error":{"class":"NotFound","desc":"no VM named desk1"}}
 *   event:         {"event":"vm.state","vm":"desk1","state":"running","ts":...}
 *
 * Everything here is pure: parse and build lines, no I/O.
 */
#ifndef QDESK_PROTO_H
#define QDESK_PROTO_H

#include <stddef.h>

#include <jansson.h>

#define PROTO_VERSION		1
#define PROTO_MAX_LINE		(1024 * 1024)

/* Error classes; the CLI prints "qdesk: CLASS: desc". */
#define ERR_PARSE		"ParseError"	/* not JSON */
#define ERR_REQUEST		"InvalidRequest" /* JSON, not a request */
#define ERR_NOCMD		"CommandNotFound"
#define ERR_ARG			"InvalidArgument"
#define ERR_NOTFOUND		"NotFound"
#define ERR_EXISTS		"AlreadyExists"
#define ERR_STATE		"InvalidState"	/* wrong VM state for this */
#define ERR_DENIED		"PermissionDenied"
#define ERR_QEMU		"QemuError"
#define ERR_TIMEOUT		"Timeout"
#define ERR_TOOLONG		"LineTooLong"
#define ERR_INTERNAL		"InternalError"
#define ERR_BUSY		"Busy"
#define ERR_AUTH		"AuthFailed"	/* bad login or password */
#define ERR_LOCKED		"Locked"	/* too many failures: wait */
/* The host ran out of something (disk, state database, fds, memory). */
#define ERR_RESOURCE		"ResourceExhausted"

/* A parsed request. root owns everything; id and args are borrowed. */
struct proto_req {
	json_t		*root;
	json_t		*id;	/* any JSON value or NULL */
	const char	*cmd;
	json_t		*args;	/* always an object */
};

/*
 * Parse one request line. On failure returns -1, fills *errclass (static)
 * and *cause (allocated), and sets req->id when the line had one so the
 * error reply can carry it (req->root then owns it; free with
 * proto_req_clear).
 */
int	 proto_parse_request(const char *line, size_t len,
	    struct proto_req *req, const char **errclass, char **cause);
void	 proto_req_clear(struct proto_req *);

/* Build lines (no trailing newline; caller frees). ret is borrowed. */
char	*proto_hello(const char *version);
char	*proto_return(json_t *id, json_t *ret);
char	*proto_error(json_t *id, const char *errclass, const char *desc);
char	*proto_request(json_t *id, const char *cmd, json_t *args);

/* Client side: what a received line is. */
enum proto_msg_kind {
	PROTO_MSG_BAD,
	PROTO_MSG_HELLO,
	PROTO_MSG_RETURN,
	PROTO_MSG_ERROR,
	PROTO_MSG_EVENT
};
enum proto_msg_kind proto_classify(json_t *msg);

#endif
