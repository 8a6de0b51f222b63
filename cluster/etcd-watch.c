/*
 * etcd watches: one long-lived chunked stream per watch on its own
 * connection, newline-separated JSON messages; a broken stream reconnects
 * and resumes after the last revision delivered.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "compat.h"
#include "etcd.h"
#include "etcd-int.h"
#include "log.h"
#include "xmalloc.h"
static void	etcd_watch_connect(struct etcd_watch *);

/* ---- watches ---- */

/* The watch is over for good: say why, once. */
static void
etcd_watch_end(struct etcd_watch *w, const char *errclass, const char *cause)
{
	w->ended = 1;
	if (w->conn != NULL) {
		etcd_conn_reap(w->conn);
		w->conn = NULL;
	}
	evtimer_del(w->timer);
	if (w->cb != NULL)
		w->cb(w->arg, NULL, errclass, cause);
}

/* Reconnect later: to the same member after a stream that worked, else
 * to the next one, backing off after each round of all. */
static void
etcd_watch_lost(struct etcd_watch *w, const char *why)
{
	struct etcd	*e = w->e;
	long long	 ms = 0;

	log_debug("etcd: watch %s: %s", w->key, why);
	if (w->conn != NULL) {
		etcd_conn_reap(w->conn);
		w->conn = NULL;
	}
	if (!w->created) {
		/* This member is down: the next one, backing off per round. */
		e->cur = (e->cur + 1) % e->neps;
		if (++w->rounds % e->neps == 0) {
			ms = (long long)ETCD_BACKOFF_MIN_MS << (w->rounds /
			    e->neps < 5 ? w->rounds / e->neps : 5);
			if (ms > ETCD_BACKOFF_MAX_MS)
				ms = ETCD_BACKOFF_MAX_MS;
		}
	} else {
		/* A stream that worked: the same member again, shortly. */
		w->rounds = 0;
		ms = ETCD_BACKOFF_MIN_MS;
	}
	etcd_timer_ms(w->timer, ms);
}

/* One message of the stream; returns -1 once the watch is gone. */
static int
etcd_watch_line(struct etcd_watch *w, const char *line, size_t len)
{
	json_t		*res, *ev;
	const char	*class;
	char		*cause;
	int64_t		 rev, hrev;
	size_t		 i;

	if (etcd_parse("/v3/watch", line, len, &res, &class, &cause) != 0) {
		etcd_watch_lost(w, cause);
		free(cause);
		return (-1);
	}
	if (json_is_true(json_object_get(res, "canceled"))) {
		rev = json_integer_value(json_object_get(res,
		    "compact_revision"));
		if (rev > 0) {
			xasprintf(&cause, "etcd watch %s: revision %lld is "
			    "compacted (oldest now %lld)", w->key,
			    (long long)w->rev, (long long)rev);
			etcd_watch_end(w, "Compacted", cause);
		} else {
			xasprintf(&cause, "etcd watch %s cancelled: %s", w->key,
			    json_string_value(json_object_get(res,
			    "cancel_reason")) ?: "no reason given");
			etcd_watch_end(w, "Cancelled", cause);
		}
		free(cause);
		json_decref(res);
		return (-1);
	}
	hrev = json_integer_value(json_object_get(json_object_get(res,
	    "header"), "revision"));
	if (json_is_true(json_object_get(res, "created"))) {
		w->created = 1;
		if (w->rev == 0)
			w->rev = hrev + 1;
	}
	json_array_foreach(json_object_get(res, "events"), i, ev) {
		rev = json_integer_value(json_object_get(json_object_get(ev,
		    "kv"), "mod_revision"));
		if (rev >= w->rev)
			w->rev = rev + 1;
	}
	if (w->cb != NULL)
		w->cb(w->arg, res, NULL, NULL);
	json_decref(res);
	return (0);
}

/* Data of the stream: split it into lines, keeping a partial one. */
static void
etcd_watch_chunk(struct evhttp_request *http, void *arg)
{
	struct etcd_conn	*c = arg;
	struct etcd_watch	*w = c->watch;
	struct evbuffer_ptr	 eol;
	size_t			 n;
	char			*line;

	if (w == NULL)
		return;
	evbuffer_add_buffer(w->buf, evhttp_request_get_input_buffer(http));
	for (;;) {
		eol = evbuffer_search_eol(w->buf, NULL, &n, EVBUFFER_EOL_LF);
		if (eol.pos == -1) {
			if (evbuffer_get_length(w->buf) > ETCD_MAX_BODY)
				etcd_watch_lost(w, "a watch message too long");
			return;
		}
		line = xmalloc(eol.pos + 1);
		evbuffer_remove(w->buf, line, eol.pos);
		line[eol.pos] = '\0';
		evbuffer_drain(w->buf, n);
		/* The callback may free the watch: stop at once then. */
		if (eol.pos > 0 && etcd_watch_line(w, line, eol.pos) != 0) {
			free(line);
			return;
		}
		free(line);
		if (c->watch != w)
			return;
	}
}

/* The stream ended: a member died, or a quiet stream timed out. */
void
etcd_watch_done(struct etcd_watch *w, struct evhttp_request *http)
{
	struct etcd_conn	*c = w->conn;
	char			*why;
	int			 code;

	code = http != NULL ? evhttp_request_get_response_code(http) : 0;
	if (code == 0)
		xasprintf(&why, "%s: %s", c->ep->url, etcd_conn_strerror(c));
	else
		xasprintf(&why, "%s: stream ended (HTTP %d)", c->ep->url, code);
	/* Whatever the last chunk left is a final message. */
	if (code == HTTP_OK && evbuffer_get_length(w->buf) > 0 &&
	    evbuffer_get_length(w->buf) < ETCD_MAX_BODY) {
		evbuffer_add(w->buf, "\n", 1);
		etcd_watch_chunk(http, c);
		if (c->watch != w) {
			free(why);
			return;
		}
	}
	etcd_watch_lost(w, why);
	free(why);
}

/* (Re)open the stream from the revision after the last one seen. */
static void
etcd_watch_connect(struct etcd_watch *w)
{
	struct etcd	*e = w->e;
	json_t		*cr, *b;
	char		*body;

	evbuffer_drain(w->buf, evbuffer_get_length(w->buf));
	w->created = 0;
	w->conn = etcd_conn_new(e, &e->eps[e->cur]);
	w->conn->watch = w;
	evhttp_connection_set_timeout(w->conn->evcon, ETCD_WATCH_IDLE_S);

	cr = json_object();
	json_object_set_new(cr, "key", etcd_b64_json(w->key, w->keylen));
	if (w->range_end != NULL)
		json_object_set_new(cr, "range_end", etcd_b64_json(w->range_end,
		    w->endlen));
	if (w->rev > 0)
		json_object_set_new(cr, "start_revision", json_integer(w->rev));
	if (w->flags & ETCD_PREV_KV)
		json_object_set_new(cr, "prev_kv", json_true());
	json_object_set_new(cr, "progress_notify", json_true());
	b = json_pack("{s:o}", "create_request", cr);
	if ((body = json_dumps(b, JSON_COMPACT)) == NULL)
		fatalx("%s: json_dumps", __func__);
	json_decref(b);
	log_debug("etcd: watch %s from %lld on %s", w->key, (long long)w->rev,
	    e->eps[e->cur].url);
	if (etcd_conn_post(w->conn, "/v3/watch", body, strlen(body),
	    etcd_watch_chunk) != 0)
		etcd_watch_lost(w, "cannot send the watch request");
	free(body);
}

/* Time to (re)connect a watch that has no stream. */
static void
etcd_watch_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_watch	*w = arg;

	if (!w->ended && w->conn == NULL)
		etcd_watch_connect(w);
}

struct etcd_watch *
etcd_watch_create(struct etcd *e, const char *key, int flags,
    int64_t start_revision, etcd_cb cb, void *arg)
{
	struct etcd_watch	*w;

	w = xcalloc(1, sizeof *w);
	w->e = e;
	w->flags = flags;
	w->cb = cb;
	w->arg = arg;
	w->rev = start_revision > 0 ? start_revision : 0;
	if ((flags & ETCD_PREFIX) && *key == '\0') {
		w->key = xstrdup("");
		w->keylen = 1;
		w->range_end = xstrdup("");
		w->endlen = 1;
	} else {
		w->key = xstrdup(key);
		w->keylen = strlen(key);
		if (flags & ETCD_PREFIX)
			w->range_end = etcd_prefix_end(key, &w->endlen);
	}
	if ((w->buf = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if ((w->timer = evtimer_new(e->base, etcd_watch_timer_cb, w)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	TAILQ_INSERT_TAIL(&e->watches, w, entry);
	etcd_timer_ms(w->timer, 0);
	return (w);
}

int64_t
etcd_watch_revision(const struct etcd_watch *w)
{
	return (w->rev);
}

void
etcd_watch_free(struct etcd_watch *w)
{
	if (w == NULL)
		return;
	TAILQ_REMOVE(&w->e->watches, w, entry);
	if (w->conn != NULL)
		etcd_conn_reap(w->conn);
	event_free(w->timer);
	evbuffer_free(w->buf);
	free(w->key);
	free(w->range_end);
	free(w);
}
