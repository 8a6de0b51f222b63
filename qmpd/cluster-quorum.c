/*
 * etcd without quorum must not stop the office's desktops. A host whose
 * lease renewals are late cannot at first tell "etcd has no quorum" from
 * "I am cut off from it": only the second lets another host expire its
 * lease and restart its desktops. So it asks every etcd member
 * (etcd_quorum_probe) and keeps its desktops past the lease's end only
 * on proof that no member can lead: each refuses the connection (no etcd
 * process there) or answers with no leader. Why that is enough:
 *
 * - Only a leader's lessor expires leases, and the revocation must be
 *   committed by a majority. A follower's lessor never expires anything.
 * - A new leader renews every lease on election (etcd 3.4's
 *   lessor.Promote: expiry = now + election timeout + TTL, with lease
 *   checkpointing off, its default). So a leader can revoke this lease
 *   only after leading, without a renewal from us, for a whole TTL.
 * - A probe round that started at S and found no leader anywhere proves
 *   that no member led over all of the round; a leader that revokes us at
 *   R led over all of [R - TTL, R]; so R > S + TTL, as long as the
 *   round ended before the evidence we had already ran out (else there
 *   is a gap in which a leader could have led a whole TTL unseen). Each
 *   such round moves the moment until which the lease surely holds to
 *   S + TTL; rounds come every TTL/10 while renewals fail.
 *
 * A member that does not answer in time may be alive behind a partition
 * with a majority (the minority case: we reach one member, which is cut
 * off from the other two): no proof, and the host fences at the lease's
 * end as before. Any member that knows a leader: the cluster works, our
 * renewal must hold by the lease's end or we fence. While there is no
 * quorum, placement (vm start/stop/create/delete, host drain, the
 * broker's Start) is refused at once with one line; running desktops and
 * their consoles are untouched. When the members return, the keeper's
 * next renewal holds (Promote gave it a full TTL) and all resumes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "clock.h"
#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

/*
 * A tick every TTL/10 starts a round when none is in flight; a round
 * lasts at most 2 TTL/5 (a member that restarts may take a second to
 * say it has no leader yet). A round must end before the evidence runs
 * out (it does: the first starts about 0.45 TTL after the last renewal
 * that held) and the next start within TTL of the last proof's start.
 */
#define QUORUM_TICK	0.1
#define QUORUM_ROUND	0.4

static struct event	*quorum_ev;		/* every TTL/10 */
static int		 quorum_probing;
static int		 quorum_lost;		/* the last round: no quorum */
static int		 quorum_episode;	/* lost, lease not renewed since */
static long long	 quorum_hold;		/* mono ms, proved by rounds */
static long long	 quorum_since;		/* mono ms, lost since */
static int		 quorum_answering, quorum_members;

/* Until when this host's desktops may run: the lease, or the proof. */
long long
cluster_quorum_until(long long held)
{
	return (held > quorum_hold ? held : quorum_hold);
}

int
cluster_quorum_refuse(struct cmd_req *req)
{
	if (!quorum_lost)
		return (0);
	cmd_error(req, ERR_STATE, "etcd has no quorum (%d of %d members "
	    "answer): no placement until it returns", quorum_answering,
	    quorum_members);
	return (1);
}

/* The members' states, for the log: "URL: state; ...". */
static char *
quorum_states(json_t *res)
{
	json_t		*st;
	size_t		 i;
	char		*s = NULL, *t;
	const char	*why;

	json_array_foreach(json_object_get(res, "states"), i, st) {
		why = json_string_value(json_object_get(st, "why"));
		xasprintf(&t, "%s%s%s: %s%s%s", s != NULL ? s : "", s != NULL ?
		    "; " : "", json_string_value(json_object_get(st, "url")),
		    json_string_value(json_object_get(st, "state")),
		    why != NULL ? ": " : "", why != NULL ? why : "");
		free(s);
		s = t;
	}
	return (s != NULL ? s : xstrdup("no endpoints"));
}

static int
quorum_desktops(void)
{
	struct vm	*vm;
	int		 n = 0;

	TAILQ_FOREACH(vm, &vms, entry)
		n += vm->pidfd != -1;
	return (n);
}

static void
quorum_probe_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct etcd_keeper	*k = cluster_host_keeper();
	const char		*verdict;
	long long		 started, ended, held, proved, ttl_ms;
	char			*states;

	quorum_probing = 0;
	if (errclass != NULL || !cluster_host_joined() || k == NULL)
		return;
	verdict = json_string_value(json_object_get(res, "verdict"));
	started = json_integer_value(json_object_get(res, "started"));
	ended = json_integer_value(json_object_get(res, "ended"));
	ttl_ms = (long long)qmpd->cluster->lease_ttl * 1000;
	held = cluster_quorum_until(etcd_keeper_held_until(k));
	quorum_answering = json_integer_value(json_object_get(res,
	    "answering"));
	quorum_members = json_integer_value(json_object_get(res,
	    "endpoints"));
	states = quorum_states(res);
	if (strcmp(verdict, "none") != 0) {
		if (quorum_lost)
			log_warnx("cluster: etcd at %s: %s (%s): the lease must "
			    "be renewed by its end or this host fences",
			    cluster_stamp(), strcmp(verdict, "leader") == 0 ?
			    "a leader again" : "no proof that etcd has no "
			    "quorum", states);
		else
			log_debug("cluster: etcd probe: %s (%s)", verdict,
			    states);
		quorum_lost = 0;
		free(states);
		return;
	}
	if (ended > held) {
		/* A gap in the evidence: a leader might have led unseen. */
		log_warnx("cluster: etcd has no quorum, but the probe ended "
		    "%lld ms after the lease's end: no proof for then",
		    ended - held);
		free(states);
		return;
	}
	proved = started + ttl_ms;
	if (proved > quorum_hold) {
		quorum_hold = proved;
		etcd_keeper_hold(k, quorum_hold);
		cluster_fence_watchdog(cluster_quorum_until(
		    etcd_keeper_held_until(k)));
	}
	if (!quorum_episode)
		quorum_since = clock_mono_ms();
	if (!quorum_lost) {
		log_warnx("cluster: etcd has no quorum at %s (%d of %d members "
		    "answer: %s): keeping %d desktop(s) running, no placement "
		    "until it returns", cluster_stamp(), quorum_answering,
		    quorum_members, states, quorum_desktops());
	}
	quorum_lost = quorum_episode = 1;
	free(states);
}

/*
 * Every TTL/10: if the last renewal that held is older than TTL/3 and a
 * bit (the next one is late), or while there is no quorum, ask the
 * members; once a renewal holds again, quorum is back.
 */
static void
quorum_tick(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_keeper	*k = cluster_host_keeper();
	long long		 ttl_ms, last_ok, now = clock_mono_ms();

	if (!cluster_host_joined() || k == NULL) {
		quorum_lost = quorum_episode = 0;
		return;
	}
	/*
	 * The watchdog hears of a renewal that held within a tick, not at
	 * the next refresh: after an episode the proof may run out a moment
	 * after the renewal that takes over from it.
	 */
	cluster_fence_watchdog(cluster_quorum_until(etcd_keeper_held_until(k)));
	ttl_ms = (long long)qmpd->cluster->lease_ttl * 1000;
	last_ok = etcd_keeper_held_until(k) - ttl_ms;
	if (now - last_ok <= ttl_ms / 3 + ttl_ms / 10) {
		if (quorum_episode)
			log_warnx("cluster: etcd has quorum again at %s after "
			    "%.1f s: the lease held, nothing fenced",
			    cluster_stamp(), (now - quorum_since) / 1000.0);
		quorum_lost = quorum_episode = 0;
		return;
	}
	if (quorum_probing)
		return;
	quorum_probing = 1;
	etcd_quorum_probe(cluster_etcd, (int)(ttl_ms * QUORUM_ROUND),
	    quorum_probe_cb, NULL);
}

/* At join: start watching the renewals, and learn etcd's members. */
void
cluster_quorum_start(void)
{
	struct timeval	tv;
	int		ms = qmpd->cluster->lease_ttl * 1000 * QUORUM_TICK;

	if (quorum_ev != NULL)
		return;
	quorum_ev = event_new(qmpd->base, -1, EV_PERSIST, quorum_tick, NULL);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_add(quorum_ev, &tv);
	quorum_probing = 1;
	etcd_quorum_probe(cluster_etcd, qmpd->cluster->lease_ttl * 1000 *
	    QUORUM_ROUND, quorum_probe_cb, NULL);
}
