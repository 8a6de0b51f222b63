/*
 * Guest agent client: one per VM with --agent, a small state machine on
 * the host end of the virtio-serial port org.qemu.guest_agent.0.
 *
 *   SYNCING --(guest-sync-delimited answered with our id)--> READY
 *   READY --(a command unanswered in time, or a late reply)--> SYNCING
 *   any state --(EOF, socket error, line too long)--> CLOSED
 *
 * Unlike QMP there is no greeting and the peer may be absent, stopped or
 * restarted at any time: the port stays open whether a qemu-ga reads it or
 * not.  So the client resynchronises with guest-sync-delimited and a
 * random id (preceded by a 0xFF byte that resets the agent's parser) until
 * the agent answers, and again after any timeout.  Commands go one at a
 * time (the agent answers in order and not always with our id); each
 * waits in a FIFO of {cb, arg}.  qga_execute refuses (-1) unless READY:
 * callers say "no agent" at once instead of waiting on a guest.
 * No threads, no locks; the process must ignore SIGPIPE.
 */
#ifndef QDESK_QGA_H
#define QDESK_QGA_H

#include <stddef.h>

#include <event2/event.h>
#include <jansson.h>

struct qga;

enum qga_state {
	QGA_SYNCING,
	QGA_READY,
	QGA_CLOSED
};

/*
 * Reply callback. On success ret is the "return" value (borrowed; NULL
 * for a QGA_NOREPLY command, once written) and errclass is NULL. On
 * failure ret is NULL, errclass is the agent's class, or "Timeout" (the
 * agent did not answer) or "Disconnected" (the client closed or lost sync).
 */
typedef void (*qga_reply_cb)(struct qga *, json_t *ret, const char *errclass,
    const char *errdesc, void *arg);

struct qga_callbacks {
	/* Reached READY (cause NULL), back to SYNCING or CLOSED (cause). */
	void	(*state)(struct qga *, enum qga_state, const char *cause,
		    void *arg);
};

/* qga_execute flags. */
#define QGA_NOREPLY	0x1	/* the agent never answers (guest-shutdown) */

/*
 * Takes ownership of a connected socket fd and starts synchronising.
 * timeout_ms bounds each command and each sync attempt (at least 1).
 */
struct qga	*qga_create(struct event_base *, int fd,
		    const struct qga_callbacks *, void *arg, int timeout_ms);
/* Closes the socket; pending callbacks fire with "Disconnected". NULL ok. */
void		 qga_free(struct qga *);
enum qga_state	 qga_get_state(const struct qga *);

/*
 * Send {"execute":cmd,"arguments":args}. args is stolen (may be NULL);
 * cb may be NULL. Returns 0, or -1 when not READY (then cb is not called).
 */
int		 qga_execute(struct qga *, const char *cmd, json_t *args,
		    int flags, qga_reply_cb cb, void *arg);

/*
 * Pure line classifier, shared by the client and the fuzz harness. A line
 * holding a 0xFF byte is what follows its last 0xFF, and *delimited says
 * so (the answer to guest-sync-delimited). Fills *out with a new
 * reference, or NULL on garbage.
 */
enum qga_line_kind {
	QGA_LINE_GARBAGE,
	QGA_LINE_RETURN,
	QGA_LINE_ERROR
};
enum qga_line_kind qga_line_classify(const char *line, size_t len,
		    int *delimited, json_t **out);

#endif
