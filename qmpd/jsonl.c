/*
 * JSON lines on a bufferevent: the framing the QMP client and the guest
 * agent client share.  See jsonl.h.
 */
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "jsonl.h"
#include "log.h"
#include "xmalloc.h"

char *
jsonl_encode(json_t *obj, size_t *len, const char *what)
{
	char	*s, *line;

	if ((s = json_dumps(obj, JSON_COMPACT)) == NULL)
		fatalx("%s: cannot encode %s", __func__, what);
	*len = strlen(s) + 1;
	line = xmalloc(*len + 1);
	memcpy(line, s, *len - 1);
	line[*len - 1] = '\n';
	line[*len] = '\0';
	free(s);
	return (line);
}

enum jsonl_read
jsonl_next(struct evbuffer *in, size_t *scanned, size_t max, char **line,
    size_t *len)
{
	struct evbuffer_ptr	 start, eol;
	size_t			 eol_len;

	evbuffer_ptr_set(in, &start, *scanned, EVBUFFER_PTR_SET);
	eol = evbuffer_search_eol(in, &start, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos == -1) {
		*scanned = evbuffer_get_length(in);
		*len = *scanned;
		return (*scanned > max ? JSONL_TOOLONG : JSONL_MORE);
	}
	*len = eol.pos;
	*scanned = 0;
	if (*len > max)
		return (JSONL_TOOLONG);
	*line = xmalloc(*len + 1);
	if (evbuffer_remove(in, *line, *len) != (int)*len)
		fatalx("%s: evbuffer_remove", __func__);
	(*line)[*len] = '\0';
	evbuffer_drain(in, eol_len);
	return (JSONL_LINE);
}

const char *
jsonl_excerpt(char *buf, size_t size, const char *line, size_t len)
{
	size_t	 i, o = 0;

	for (i = 0; i < len && o + 4 < size; i++)
		buf[o++] = isprint((unsigned char)line[i]) ? line[i] : '?';
	if (i < len && o + 4 <= size) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return (buf);
}

char *
jsonl_event_cause(short events, const char *closed, const char *what)
{
	char	*cause;

	if ((events & BEV_EVENT_EOF) || ((events & BEV_EVENT_ERROR) &&
	    EVUTIL_SOCKET_ERROR() == ECONNRESET))
		cause = xstrdup(closed);
	else if (events & BEV_EVENT_ERROR)
		xasprintf(&cause, "%s: %s", what,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else
		cause = NULL;
	return (cause);
}

struct bufferevent *
jsonl_bufferevent(struct event_base *base, int fd,
    void (*readcb)(struct bufferevent *, void *),
    void (*writecb)(struct bufferevent *, void *),
    void (*eventcb)(struct bufferevent *, short, void *), void *arg)
{
	struct bufferevent	*bev;

	evutil_make_socket_nonblocking(fd);
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fatalx("%s: bufferevent_socket_new", __func__);
	bufferevent_setcb(bev, readcb, writecb, eventcb, arg);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	return (bev);
}

void
jsonl_error(json_t *root, const char **class, const char **desc)
{
	json_t	*err;

	err = json_object_get(root, "error");
	*class = json_string_value(json_object_get(err, "class"));
	*desc = json_string_value(json_object_get(err, "desc"));
	if (*class == NULL)
		*class = "GenericError";
	if (*desc == NULL)
		*desc = "no description";
}
