/*
 * JSON lines on a bufferevent, as QEMU's QMP monitor and guest agent speak
 * them: one request encoded as a line, the input split into lines under a
 * size cap, and a printable excerpt of a line for log messages.  Shared by
 * qmp.c and qga.c.
 */
#ifndef QDESK_QMPD_JSONL_H
#define QDESK_QMPD_JSONL_H

#include <sys/types.h>

#include <jansson.h>

struct bufferevent;
struct event_base;
struct evbuffer;

enum jsonl_read {
	JSONL_LINE,		/* *line holds one line, without its LF */
	JSONL_MORE,		/* no complete line yet */
	JSONL_TOOLONG		/* over the cap; *len says how long */
};

/*
 * Encode obj (not consumed) compactly, followed by a newline; returns an
 * allocated, NUL-terminated line and its length with the newline in *len.
 * what names the object in the fatal message if jansson cannot encode it.
 */
char	*jsonl_encode(json_t *obj, size_t *len, const char *what);

/*
 * Take the next line off in, resuming the LF search at *scanned (the
 * bytes already known to hold no LF; the caller keeps it, from 0).  On
 * JSONL_LINE *line is allocated and NUL-terminated, *len its length; on
 * JSONL_TOOLONG *len is the length that went over max (a line, or the
 * input with no LF yet).
 */
enum jsonl_read	 jsonl_next(struct evbuffer *in, size_t *scanned, size_t max,
		    char **line, size_t *len);

/*
 * The cause a bufferevent event ends a connection with: EOF or a reset
 * (QEMU's quit often resets rather than closes) is closed, any other
 * error "what: strerror"; NULL for an event that ends nothing.  Allocated.
 */
char		*jsonl_event_cause(short events, const char *closed,
		    const char *what);

/*
 * A bufferevent on the non-blocking fd (closed with it), reading and
 * writing, the write callback called each time the output drains.
 */
struct bufferevent *jsonl_bufferevent(struct event_base *, int fd,
		    void (*readcb)(struct bufferevent *, void *),
		    void (*writecb)(struct bufferevent *, void *),
		    void (*eventcb)(struct bufferevent *, short, void *),
		    void *arg);

/*
 * The class and desc of an {"error":{...}} reply, borrowed from root;
 * "GenericError" and "no description" where the peer left them out.
 */
void		 jsonl_error(json_t *root, const char **class,
		    const char **desc);

/* Fill buf with a printable excerpt of line, "..." when cut; returns buf. */
const char	*jsonl_excerpt(char *buf, size_t size, const char *line,
		    size_t len);

#endif
