/*
 * QMP client: one per VM, a small state machine on a bufferevent.
 *
 *   GREETING --(greeting)--> NEGOTIATING --(qmp_capabilities ok)--> READY
 *   any state --(EOF, error, timeout, garbage greeting)--> CLOSED
 *
 * Every qmp_execute gets an id and waits in a FIFO of {id, cb, arg}.  Lines
 * are classified by key: "QMP" (greeting), "event", "return" / "error".
 * Events are accepted in any state.  When the connection closes, every
 * pending callback fires once with errclass "Disconnected" (or "Timeout"),
 * then the state callback reports CLOSED.  No threads, no locks.
 * The process must ignore SIGPIPE: libevent writes with writev(2).
 */
#ifndef QDESK_QMP_H
#define QDESK_QMP_H

#include <stddef.h>

#include <event2/event.h>
#include <jansson.h>

struct qmp;

enum qmp_state {
	QMP_GREETING,
	QMP_NEGOTIATING,
	QMP_READY,
	QMP_CLOSED
};

/*
 * Reply callback. On success ret is the "return" value (borrowed) and
 * errclass is NULL. On failure ret is NULL, errclass is QEMU's class
 * ("GenericError", ...) or "Disconnected" / "Timeout", errdesc the text.
 */
typedef void (*qmp_reply_cb)(struct qmp *, json_t *ret, const char *errclass,
    const char *errdesc, void *arg);

struct qmp_callbacks {
	/* Reached READY (cause NULL) or CLOSED (cause says why). */
	void	(*state)(struct qmp *, enum qmp_state, const char *cause,
		    void *arg);
	/* An asynchronous event; data may be NULL; both borrowed. */
	void	(*event)(struct qmp *, const char *name, json_t *data,
		    double ts, void *arg);
};

/*
 * Takes ownership of a connected (or connecting) non-blocking unix socket
 * fd and starts the handshake. timeout_ms bounds the handshake and each
 * command (0 = none).
 */
struct qmp	*qmp_create(struct event_base *, int fd,
		    const struct qmp_callbacks *, void *arg, int timeout_ms);
/* Closes the socket; pending callbacks fire with "Disconnected". NULL ok. */
void		 qmp_free(struct qmp *);
enum qmp_state	 qmp_get_state(const struct qmp *);

/*
 * Send {"execute":cmd,"arguments":args,"id":N}. args is stolen (may be
 * NULL); cb may be NULL. Returns 0, or -1 when the connection is closed
 * (then cb is not called).
 */
int		 qmp_execute(struct qmp *, const char *cmd, json_t *args,
		    qmp_reply_cb cb, void *arg);
/*
 * The same, passing fd with SCM_RIGHTS alongside the command (for
 * "getfd" / "add-fd"). The caller keeps its fd (a dup is queued); also
 * -1 when fd is invalid or cannot be duplicated.
 */
int		 qmp_execute_fd(struct qmp *, const char *cmd, json_t *args,
		    int fd, qmp_reply_cb cb, void *arg);

/* Non-blocking connect to a unix socket path; -1 with errno on failure. */
int		 qmp_connect_unix(const char *path);
/* Called with each reply's round-trip time in seconds, if set. */
extern void	(*qmp_rtt_hook)(double);

/*
 * Pure line classifier, shared by the client and the fuzz harness.
 * Returns the kind and fills *out (a new reference, or NULL on garbage).
 */
enum qmp_line_kind {
	QMP_LINE_GARBAGE,
	QMP_LINE_GREETING,
	QMP_LINE_EVENT,
	QMP_LINE_RETURN,
	QMP_LINE_ERROR
};
enum qmp_line_kind qmp_line_classify(const char *line, size_t len,
		    json_t **out);

#endif
