/*
 * splice_join (splice.h): each side's input is moved to the other's
 * output; a side stops reading while the other has more than
 * SPLICE_HIGH queued, and starts again once it drained below SPLICE_LOW.
 */
#include <sys/socket.h>

#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "splice.h"
#include "xmalloc.h"

#define SPLICE_HIGH	(1024 * 1024)
#define SPLICE_LOW	(256 * 1024)

struct splice {
	struct bufferevent	*bev[2];
	int			 ended;		/* a side is gone: flushing */
};

static void
splice_free(struct splice *s)
{
	bufferevent_free(s->bev[0]);
	bufferevent_free(s->bev[1]);
	free(s);
}

static int
splice_side(struct splice *s, struct bufferevent *bev)
{
	return (bev == s->bev[0] ? 0 : 1);
}

static void
splice_read_cb(struct bufferevent *bev, void *arg)
{
	struct splice		*s = arg;
	struct bufferevent	*to = s->bev[!splice_side(s, bev)];
	struct evbuffer		*out = bufferevent_get_output(to);

	evbuffer_add_buffer(out, bufferevent_get_input(bev));
	if (evbuffer_get_length(out) > SPLICE_HIGH) {
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(to, EV_WRITE, SPLICE_LOW, 0);
	}
}

/* The other side drained: read this one again (or finish the flush). */
static void
splice_write_cb(struct bufferevent *bev, void *arg)
{
	struct splice		*s = arg;
	struct bufferevent	*from = s->bev[!splice_side(s, bev)];

	if (s->ended) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			splice_free(s);
		return;
	}
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(from, EV_READ);
}

static void
splice_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct splice		*s = arg;
	struct bufferevent	*to = s->bev[!splice_side(s, bev)];

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
		return;
	/* What this side sent still goes over, then all ends. */
	evbuffer_add_buffer(bufferevent_get_output(to),
	    bufferevent_get_input(bev));
	if (s->ended || evbuffer_get_length(bufferevent_get_output(to)) == 0) {
		splice_free(s);
		return;
	}
	s->ended = 1;
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_setwatermark(to, EV_WRITE, 0, 0);
	bufferevent_enable(to, EV_WRITE);
	bufferevent_disable(to, EV_READ);
}

void
splice_join(struct bufferevent *a, struct bufferevent *b)
{
	struct splice	*s;

	s = xcalloc(1, sizeof *s);
	s->bev[0] = a;
	s->bev[1] = b;
	bufferevent_set_timeouts(a, NULL, NULL);
	bufferevent_set_timeouts(b, NULL, NULL);
	bufferevent_setwatermark(a, EV_READ, 0, 0);
	bufferevent_setwatermark(b, EV_READ, 0, 0);
	bufferevent_setcb(a, splice_read_cb, splice_write_cb, splice_event_cb,
	    s);
	bufferevent_setcb(b, splice_read_cb, splice_write_cb, splice_event_cb,
	    s);
	bufferevent_enable(a, EV_READ | EV_WRITE);
	bufferevent_enable(b, EV_READ | EV_WRITE);
	/* Bytes that came before the join. */
	if (evbuffer_get_length(bufferevent_get_input(a)) > 0)
		splice_read_cb(a, s);
	if (evbuffer_get_length(bufferevent_get_input(b)) > 0)
		splice_read_cb(b, s);
}
