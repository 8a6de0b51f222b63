/*
 * The quorum probe: can any etcd member be a leader right now? A host
 * whose lease renewals fail must tell "etcd has no quorum" (nobody can
 * expire its lease or move a placement, so its desktops may keep
 * running) from "I am cut off from a quorum that goes on without me"
 * (it must fence). Only evidence counts as "no quorum": every endpoint
 * either refuses the TCP connection outright (ECONNREFUSED: no etcd
 * process listens there) or answers /v3/maintenance/status with no
 * leader. A member that does not answer in time may be alive behind a
 * partition, with a majority: that is never evidence. See etcd.h.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include <openssl/ssl.h>

#include "clock.h"
#include "compat.h"
#include "etcd.h"
#include "etcd-int.h"
#include "log.h"
#include "xmalloc.h"

enum probe_state {
	PROBE_WAIT,		/* not known yet */
	PROBE_REFUSED,		/* ECONNREFUSED: no etcd there */
	PROBE_NOLEADER,		/* it answers and has no leader */
	PROBE_LEADER,		/* it answers and knows a leader */
	PROBE_TIMEOUT,		/* no answer in time: maybe partitioned */
	PROBE_ERROR		/* anything else: proves nothing */
};

/* What each state proves, for the log and the verdict; by enum order. */
static const struct {
	const char	*name;
	int		 proof;		/* cannot be, or help, a leader */
} probe_states[] = {
	{ "no answer yet", 0 },
	{ "refused (no etcd there)", 1 },
	{ "no leader", 1 },
	{ "has a leader", 0 },
	{ "no answer in time", 0 },
	{ "error", 0 },
};

struct probe;
struct probe_ep {
	struct probe		*p;
	int			 i;
	int			 fd;
	struct event		*ev;
	enum probe_state	 state;
	enum probe_state	 answer;	/* status said, once both are in */
	char			*why;
	int			 calls;		/* status, member list */
};

struct probe {
	struct etcd		*e;
	etcd_cb			 cb;
	void			*arg;
	int			 timeout_ms;
	long long		 started, deadline;
	int			 refs;		/* calls not back yet */
	int			 done;
	struct event		*timer;
	struct probe_ep		*eps;
};

/* Freed once it reported and the last etcd call came back. */
static void
probe_unref(struct probe *p)
{
	int	i;

	if (!p->done || p->refs > 0)
		return;
	for (i = 0; i < p->e->neps; i++)
		free(p->eps[i].why);
	free(p->eps);
	event_free(p->timer);
	free(p);
}

static void
probe_ep_close(struct probe_ep *pe)
{
	if (pe->ev != NULL)
		event_free(pe->ev);
	pe->ev = NULL;
	if (pe->fd != -1)
		close(pe->fd);
	pe->fd = -1;
}

/* Every endpoint known, or the deadline: the verdict, once. */
static void
probe_finish(struct probe *p)
{
	struct etcd	*e = p->e;
	json_t		*res, *states;
	const char	*verdict;
	int		 i, proof = 1, leader = 0, answering = 0;

	if (p->done)
		return;
	p->done = 1;
	evtimer_del(p->timer);
	states = json_array();
	for (i = 0; i < e->neps; i++) {
		struct probe_ep *pe = &p->eps[i];

		probe_ep_close(pe);
		if (pe->state == PROBE_WAIT)
			pe->state = PROBE_TIMEOUT;
		proof &= probe_states[pe->state].proof;
		leader |= pe->state == PROBE_LEADER;
		answering += pe->state == PROBE_NOLEADER ||
		    pe->state == PROBE_LEADER;
		json_array_append_new(states, json_pack("{s:s,s:s,s:s?}",
		    "url", e->eps[i].url, "state",
		    probe_states[pe->state].name, "why", pe->why));
	}
	/*
	 * Endpoints that are not every member etcd has prove nothing: the
	 * members we do not know of might lead.
	 */
	if (e->members == 0 || e->members > e->neps)
		proof = 0;
	verdict = leader ? "leader" : proof ? "none" : "unknown";
	res = json_pack("{s:s,s:i,s:i,s:i,s:o,s:I,s:I}", "verdict", verdict,
	    "answering", answering, "endpoints", e->neps, "members",
	    e->members, "states", states, "started", (json_int_t)p->started,
	    "ended", (json_int_t)clock_mono_ms());
	if (p->cb != NULL)
		p->cb(p->arg, res, NULL, NULL);
	json_decref(res);
	probe_unref(p);
}

/* One endpoint is known; the probe ends when all are. */
static void
probe_ep_set(struct probe_ep *pe, enum probe_state state, const char *why)
{
	struct probe	*p = pe->p;
	int		 i;

	if (p->done || pe->state != PROBE_WAIT)
		return;
	pe->state = state;
	if (why != NULL && pe->why == NULL)
		pe->why = xstrdup(why);
	probe_ep_close(pe);
	for (i = 0; i < p->e->neps; i++)
		if (p->eps[i].state == PROBE_WAIT)
			return;
	probe_finish(p);
}

/* Both calls to that member are back: it is known. */
static void
probe_ep_answered(struct probe_ep *pe)
{
	struct probe	*p = pe->p;

	if (--pe->calls == 0)
		probe_ep_set(pe, pe->answer, NULL);
	p->refs--;
	probe_unref(p);
}

/* How many members etcd has: endpoints short of that prove nothing. */
static void
probe_members_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct probe_ep	*pe = arg;
	int		 n;

	if (errclass == NULL) {
		n = json_array_size(json_object_get(res, "members"));
		if (n > pe->p->e->members)
			pe->p->e->members = n;
	}
	probe_ep_answered(pe);
}

/* The member's own view: does it know a leader? */
static void
probe_status_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct probe_ep	*pe = arg;
	json_t		*v;
	int		 leader;

	if (errclass != NULL) {
		pe->answer = strcmp(errclass, "Timeout") == 0 ?
		    PROBE_TIMEOUT : PROBE_ERROR;
		if (pe->why == NULL)
			pe->why = xstrdup(cause);
	} else {
		/* A uint64 id as a string; left out when 0 (no leader). */
		v = json_object_get(res, "leader");
		leader = (json_is_string(v) && json_string_length(v) > 0 &&
		    strcmp(json_string_value(v), "0") != 0) ||
		    (json_is_integer(v) && json_integer_value(v) != 0);
		pe->answer = leader ? PROBE_LEADER : PROBE_NOLEADER;
	}
	probe_ep_answered(pe);
}

/* TCP is up to that member: ask it (and only it) about its leader. */
static void
probe_ep_ask(struct probe_ep *pe)
{
	struct probe	*p = pe->p;
	long long	 left = p->deadline - clock_mono_ms();

	probe_ep_close(pe);
	if (left < 1)
		left = 1;
	pe->calls = 2;
	pe->answer = PROBE_ERROR;
	p->refs += 2;
	etcd_submit_at(p->e, pe->i, "/v3/maintenance/status", json_object(),
	    (int)left, probe_status_cb, pe);
	etcd_submit_at(p->e, pe->i, "/v3/cluster/member/list", json_object(),
	    (int)left, probe_members_cb, pe);
}

/* The connect finished (or not): refused, up, or something else. */
static void
probe_connect_cb(evutil_socket_t fd, short events, void *arg)
{
	struct probe_ep	*pe = arg;
	int		 err = 0;
	socklen_t	 len = sizeof err;

	if (events & EV_TIMEOUT) {
		probe_ep_set(pe, PROBE_TIMEOUT, "connect timed out");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err == 0)
		probe_ep_ask(pe);
	else if (err == ECONNREFUSED)
		probe_ep_set(pe, PROBE_REFUSED, NULL);
	else
		probe_ep_set(pe, PROBE_ERROR, strerror(err));
}

/* A plain TCP connect tells refused from unreachable; TLS comes later. */
static void
probe_ep_start(struct probe_ep *pe)
{
	struct probe		*p = pe->p;
	struct etcd_ep		*ep = &p->e->eps[pe->i];
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 sslen;
	struct timeval		 tv;

	memset(&ss, 0, sizeof ss);
	if (inet_pton(AF_INET, ep->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(ep->port);
		sslen = sizeof *sin;
	} else if (inet_pton(AF_INET6, ep->host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(ep->port);
		sslen = sizeof *sin6;
	} else {
		/* A name may resolve elsewhere next time: no proof. */
		probe_ep_set(pe, PROBE_ERROR, "a name, not an address");
		return;
	}
	pe->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (pe->fd == -1) {
		probe_ep_set(pe, PROBE_ERROR, strerror(errno));
		return;
	}
	if (connect(pe->fd, (struct sockaddr *)&ss, sslen) == 0) {
		probe_ep_ask(pe);
		return;
	}
	if (errno == ECONNREFUSED) {
		probe_ep_set(pe, PROBE_REFUSED, NULL);
		return;
	}
	if (errno != EINPROGRESS) {
		probe_ep_set(pe, PROBE_ERROR, strerror(errno));
		return;
	}
	pe->ev = event_new(p->e->base, pe->fd, EV_WRITE, probe_connect_cb, pe);
	tv.tv_sec = p->timeout_ms / 1000;
	tv.tv_usec = (p->timeout_ms % 1000) * 1000;
	event_add(pe->ev, &tv);
}

static void
probe_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct probe	*p = arg;
	int		 i;

	if (p->started == 0) {		/* first: start, from the loop */
		p->started = clock_mono_ms();
		p->deadline = p->started + p->timeout_ms;
		etcd_timer_ms(p->timer, p->timeout_ms);
		/* Every endpoint may fail at once (ENETUNREACH): p must last. */
		p->refs++;
		for (i = 0; i < p->e->neps && !p->done; i++)
			probe_ep_start(&p->eps[i]);
		p->refs--;
		probe_unref(p);
		return;
	}
	probe_finish(p);
}

int
etcd_quorum_probe(struct etcd *e, int timeout_ms, etcd_cb cb, void *arg)
{
	struct probe	*p;
	int		 i;

	p = xcalloc(1, sizeof *p);
	p->e = e;
	p->cb = cb;
	p->arg = arg;
	p->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
	p->eps = xcalloc(e->neps, sizeof *p->eps);
	for (i = 0; i < e->neps; i++) {
		p->eps[i].p = p;
		p->eps[i].i = i;
		p->eps[i].fd = -1;
	}
	if ((p->timer = evtimer_new(e->base, probe_timer_cb, p)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	etcd_timer_ms(p->timer, 0);
	return (0);
}
