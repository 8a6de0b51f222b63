/*
 * QMP client tests against a scripted fake QEMU (qmp-fake.c), the
 * conversation itself: replies, errors, events, garbage, EOF, slow and
 * timed-out commands, and qmp_free from inside callbacks.  File
 * descriptors, pipelining, long lines, line classes, unix connect and a
 * real QEMU are in test-qmp-io.c.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "check.h"
#include "compat.h"
#include "log.h"
#include "qmp.h"
#include "qmp-fake.h"

static void
test_normal(void)
{
	struct t	 t;
	struct reply	 r = { 0 };
	json_t		*l;

	t_setup(&t, 2000);
	t.peer.hook = hook_status;
	CHECK(qmp_execute(t.q, "query-status", NULL, t_reply_cb, &r) == 0);
	run_for(&t, 50);
	CHECK(t.peer.nlines == 0);	/* nothing before the greeting */
	CHECK(r.fired == 0);

	peer_write(&t.peer, GREETING);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(t.ready == 1);
	CHECK(t.ready_seq < r.seq);
	CHECK(r.fired == 1);
	CHECK(r.ret != NULL);
	CHECK_STR(json_string_value(json_object_get(r.ret, "status")),
	    "running");
	CHECK(qmp_get_state(t.q) == QMP_READY);

	CHECK(t.peer.nlines == 2);
	CHECK_STR(line_execute(&t, 0), "qmp_capabilities");
	CHECK_STR(line_execute(&t, 1), "query-status");
	l = t.peer.lines[1];
	CHECK(json_is_integer(json_object_get(l, "id")));
	CHECK(json_object_get(l, "arguments") == NULL);
	CHECK(json_integer_value(json_object_get(l, "id")) !=
	    json_integer_value(json_object_get(t.peer.lines[0], "id")));

	/* Arguments go through as given. */
	reply_clear(&r);
	CHECK(qmp_execute(t.q, "query-status", json_pack("{s:s}", "a", "b"),
	    t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(t.peer.nlines == 3);
	CHECK_STR(json_string_value(json_object_get(json_object_get(
	    t.peer.lines[2], "arguments"), "a")), "b");

	/* qmp_free reports no state. */
	qmp_free(t.q);
	t.q = NULL;
	run_for(&t, 30);
	CHECK(t.closed == 0);
	CHECK(t.peer.eof == 1);
	reply_clear(&r);
	t_teardown(&t);
}

/* An error reply carries QEMU's class and description. */
static void
test_error(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	t.peer.hook = hook_status;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "no-such-cmd", NULL, t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(r.ret == NULL);
	CHECK_STR(r.class, "CommandNotFound");
	CHECK_STR(r.desc, "The command no-such-cmd has not been found");
	CHECK(qmp_get_state(t.q) == QMP_READY);
	CHECK(t.closed == 0);
	reply_clear(&r);
	t_teardown(&t);
}


static void
hook_events(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	if (strcmp(name, "qmp_capabilities") == 0) {
		/* An event before the capabilities reply: before READY. */
		peer_write(p, EV_STOP);
		peer_replyf(p, "{\"return\": {}, \"id\": %lld}\r\n",
		    (long long)id);
		return;
	}
	peer_write(p, EV_SHUTDOWN);
	peer_replyf(p, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
	peer_write(p, EV_STOP);
}

/* Events before READY and around replies, timestamps as doubles. */
static void
test_events(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	t.peer.manual_caps = 1;
	t.peer.hook = hook_events;
	CHECK(t_ready(&t));
	CHECK(t.nevents == 1);
	CHECK_STR(t.evname[0], "STOP");
	CHECK(t.evts[0] > 1700000000.123455 && t.evts[0] < 1700000000.123457);
	CHECK(t.evdata[0] == 0);

	CHECK(qmp_execute(t.q, "stop", NULL, t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	run_for(&t, 20);
	CHECK(r.fired == 1 && r.class[0] == '\0');
	CHECK(t.nevents == 3);
	CHECK_STR(t.evname[1], "SHUTDOWN");
	CHECK(t.evdata[1] == 1);
	CHECK(t.evts[1] > 1700000001.49999 && t.evts[1] < 1700000001.50001);
	CHECK_STR(t.evname[2], "STOP");
	reply_clear(&r);
	t_teardown(&t);
}

static void
hook_garbage(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	peer_write(p, "this is not json\r\n");
	peer_write(p, "[1, 2, 3]\n");
	peer_write(p, "{\"foo\": 1}\n");
	peer_write(p, "\n");
	peer_write(p, "{\"event\": 42}\n");
	peer_write(p, "{\"return\": {}}\n");		/* no id */
	peer_write(p, "{\"return\": {}, \"id\": 9999}\n");	/* unknown id */
	peer_write(p, "{\"QMP\": {}}\n");		/* second greeting */
	peer_write(p, "\x01\x02\xff\xfe\n");
	peer_replyf(p, "{\"return\": {\"ok\": 1}, \"id\": %lld}\n",
	    (long long)id);
}

/* Garbage after the greeting is logged and ignored. */
static void
test_garbage(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	t.peer.hook = hook_garbage;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "x", NULL, t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(r.fired == 1);
	CHECK(json_integer_value(json_object_get(r.ret, "ok")) == 1);
	CHECK(qmp_get_state(t.q) == QMP_READY);
	CHECK(t.closed == 0);
	CHECK(t.nevents == 0);
	reply_clear(&r);
	t_teardown(&t);
}

/* Anything but a greeting first closes, and queued commands hear of it. */
static void
test_greeting_garbage(void)
{
	struct t	 t;
	struct reply	 r = { 0 };

	t_setup(&t, 2000);
	CHECK(qmp_execute(t.q, "query-status", NULL, t_reply_cb, &r) == 0);
	peer_write(&t.peer, "{\"return\": {}, \"id\": 1}\n");
	CHECK(run_until(&t, &t.closed, 2000));
	CHECK(strstr(t.cause, "not a QMP greeting") != NULL);
	CHECK(r.fired == 1);
	CHECK_STR(r.class, "Disconnected");
	CHECK(r.seq < t.closed_seq);
	CHECK(t.ready == 0);
	CHECK(qmp_get_state(t.q) == QMP_CLOSED);
	CHECK(t.peer.nlines == 0);
	reply_clear(&r);
	t_teardown(&t);
}

static void
hook_eof(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	if (strcmp(name, "die") == 0)
		peer_close(p);
}

/* QEMU dies mid-command: Disconnected, then CLOSED, then no more. */
static void
test_eof(void)
{
	struct t	 t;
	struct reply	 r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	t_setup(&t, 0);
	t.peer.hook = hook_eof;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "wait", NULL, t_reply_cb, &r1) == 0);
	r2.try_exec = 1;
	CHECK(qmp_execute(t.q, "die", NULL, t_reply_cb, &r2) == 0);
	CHECK(run_until(&t, &t.closed, 2000));
	CHECK(r1.fired == 1 && r2.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	CHECK_STR(r2.class, "Disconnected");
	CHECK(r1.desc[0] != '\0');
	CHECK(r1.seq < r2.seq && r2.seq < t.closed_seq);
	CHECK(r2.exec_rc == -1);	/* execute from a dying callback */
	CHECK(t.closed == 1);
	CHECK(qmp_get_state(t.q) == QMP_CLOSED);
	CHECK(qmp_execute(t.q, "late", json_object(), t_reply_cb, &r3) == -1);
	run_for(&t, 30);
	CHECK(r1.fired == 1 && r2.fired == 1 && r3.fired == 0);
	CHECK(t.closed == 1);
	reply_clear(&r1);
	reply_clear(&r2);
	t_teardown(&t);
}

struct later {
	struct peer	*p;
	json_int_t	 id;
	struct event	*ev;
};

static void
later_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct later	*l = arg;

	peer_replyf(l->p, "{\"return\": {\"late\": true}, \"id\": %lld}\r\n",
	    (long long)l->id);
}

static struct later	 slow;

static void
hook_slow(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	struct timeval	 tv = { 0, 300000 };

	slow.p = p;
	slow.id = id;
	slow.ev = evtimer_new(cur->base, later_cb, &slow);
	evtimer_add(slow.ev, &tv);
	peer_write(p, EV_STOP);
}

/* A reply 300 ms later, with an event in between, still finds its cb. */
static void
test_slow(void)
{
	struct t	 t;
	struct reply	 r = { 0 };
	double		 start;

	t_setup(&t, 2000);
	t.peer.hook = hook_slow;
	CHECK(t_ready(&t));
	start = now_ms();
	CHECK(qmp_execute(t.q, "slow", NULL, t_reply_cb, &r) == 0);
	CHECK(run_until(&t, &r.fired, 2000));
	CHECK(now_ms() - start >= 290);
	CHECK(r.fired == 1 && r.ret != NULL);
	CHECK(json_is_true(json_object_get(r.ret, "late")));
	CHECK(t.nevents == 1);
	CHECK(t.closed == 0);
	event_free(slow.ev);
	reply_clear(&r);
	t_teardown(&t);
}

/* A QEMU that does not answer is broken: Timeout for all, then CLOSED. */
static void
test_timeout(void)
{
	struct t	 t;
	struct reply	 r1 = { 0 }, r2 = { 0 };
	double		 start, el;

	t_setup(&t, 200);
	CHECK(t_ready(&t));
	start = now_ms();
	CHECK(qmp_execute(t.q, "hang", NULL, t_reply_cb, &r1) == 0);
	CHECK(qmp_execute(t.q, "hang2", NULL, t_reply_cb, &r2) == 0);
	CHECK(run_until(&t, &t.closed, 3000));
	el = now_ms() - start;
	CHECK(el >= 190 && el < 1500);
	CHECK_STR(r1.class, "Timeout");
	CHECK_STR(r2.class, "Timeout");
	CHECK(r1.fired == 1 && r2.fired == 1);
	CHECK(r2.seq < t.closed_seq);
	CHECK(strstr(t.cause, "hang") != NULL);
	CHECK(t.peer.nlines == 3);
	reply_clear(&r1);
	reply_clear(&r2);
	t_teardown(&t);

	/* No greeting at all. */
	t_setup(&t, 150);
	CHECK(qmp_execute(t.q, "queued", NULL, t_reply_cb, &r1) == 0);
	CHECK(run_until(&t, &t.closed, 3000));
	CHECK(strstr(t.cause, "greeting") != NULL);
	CHECK_STR(r1.class, "Timeout");
	reply_clear(&r1);
	t_teardown(&t);

	/* Replies in time keep the connection, each with its own clock. */
	t_setup(&t, 250);
	t.peer.hook = hook_slow;	/* answers after 300 ms */
	CHECK(t_ready(&t));
	run_for(&t, 300);		/* idle is not a timeout */
	CHECK(t.closed == 0);
	CHECK(qmp_execute(t.q, "slow", NULL, t_reply_cb, &r1) == 0);
	CHECK(run_until(&t, &t.closed, 3000));
	CHECK_STR(r1.class, "Timeout");
	event_free(slow.ev);
	reply_clear(&r1);
	t_teardown(&t);
}

static void
hook_batch3(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	json_int_t	 base = id - 2;

	if (strcmp(name, "c3") != 0)
		return;
	/* All three replies and an event in a single write. */
	peer_replyf(p, "{\"return\": {\"n\": 1}, \"id\": %lld}\n"
	    "{\"return\": {\"n\": 2}, \"id\": %lld}\n"
	    "{\"return\": {\"n\": 3}, \"id\": %lld}\n" EV_STOP,
	    (long long)base, (long long)base + 1, (long long)base + 2);
}

/* qmp_free from inside callbacks, with more input and cbs pending. */
static void
test_free_in_cb(void)
{
	struct t	 t;
	struct reply	 r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	/* A return callback frees; two later replies are in the buffer. */
	t_setup(&t, 2000);
	t.peer.hook = hook_batch3;
	CHECK(t_ready(&t));
	r1.free_qmp = 1;
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	CHECK(qmp_execute(t.q, "c2", NULL, t_reply_cb, &r2) == 0);
	CHECK(qmp_execute(t.q, "c3", NULL, t_reply_cb, &r3) == 0);
	CHECK(run_until(&t, &r1.fired, 2000));
	CHECK(t.q == NULL);
	run_for(&t, 50);
	CHECK(r1.fired == 1 && r1.ret != NULL);
	CHECK(r2.fired == 1 && r3.fired == 1);
	CHECK_STR(r2.class, "Disconnected");
	CHECK_STR(r3.class, "Disconnected");
	CHECK(r2.seq < r3.seq);
	CHECK(t.nevents == 0);
	CHECK(t.closed == 0);
	reply_clear(&r1);
	reply_clear(&r2);
	reply_clear(&r3);
	t_teardown(&t);

	/* A Disconnected callback frees during EOF handling. */
	t_setup(&t, 2000);
	t.peer.hook = hook_eof;
	CHECK(t_ready(&t));
	r1.free_qmp = 1;
	r2.try_exec = 1;
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	CHECK(qmp_execute(t.q, "c2", NULL, t_reply_cb, &r2) == 0);
	CHECK(qmp_execute(t.q, "die", NULL, t_reply_cb, &r3) == 0);
	CHECK(run_until(&t, &r3.fired, 2000));
	run_for(&t, 30);
	CHECK(r1.fired == 1 && r2.fired == 1 && r3.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	CHECK_STR(r3.class, "Disconnected");
	CHECK(r2.exec_rc == -1);
	CHECK(t.closed == 0);		/* freed: no state callback */
	reply_clear(&r1);
	reply_clear(&r2);
	reply_clear(&r3);
	t_teardown(&t);

	/* The CLOSED state callback frees. */
	t_setup(&t, 2000);
	t.peer.hook = hook_eof;
	t.free_on_close = 1;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "die", NULL, t_reply_cb, &r1) == 0);
	CHECK(run_until(&t, &t.closed, 2000));
	run_for(&t, 30);
	CHECK(t.q == NULL);
	CHECK(r1.fired == 1 && t.closed == 1);
	reply_clear(&r1);
	t_teardown(&t);

	/* An event callback frees; replies follow in the same read. */
	t_setup(&t, 2000);
	t.peer.manual_caps = 1;
	t.peer.hook = hook_events;	/* STOP before the caps reply */
	t.free_on_event = 1;
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	peer_write(&t.peer, GREETING);
	CHECK(run_until(&t, &r1.fired, 2000));
	run_for(&t, 30);
	CHECK(t.q == NULL);
	CHECK(t.nevents == 1 && t.ready == 0 && t.closed == 0);
	CHECK(r1.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	reply_clear(&r1);
	t_teardown(&t);

	/* The READY callback frees with queued commands just written. */
	t_setup(&t, 2000);
	t.free_on_ready = 1;
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	peer_write(&t.peer, GREETING);
	CHECK(run_until(&t, &r1.fired, 2000));
	run_for(&t, 30);
	CHECK(t.q == NULL && t.ready == 1 && t.closed == 0);
	CHECK(r1.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	reply_clear(&r1);
	t_teardown(&t);

	/* qmp_free from outside with commands waiting. */
	t_setup(&t, 2000);
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "c1", NULL, t_reply_cb, &r1) == 0);
	CHECK(qmp_execute(t.q, "c2", NULL, t_reply_cb, &r2) == 0);
	qmp_free(t.q);
	t.q = NULL;
	CHECK(r1.fired == 1 && r2.fired == 1);
	CHECK_STR(r1.class, "Disconnected");
	CHECK_STR(r2.class, "Disconnected");
	run_for(&t, 30);
	CHECK(t.closed == 0);
	CHECK(r1.fired == 1 && r2.fired == 1);
	reply_clear(&r1);
	reply_clear(&r2);
	t_teardown(&t);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_init("test-qmp", 1, getenv("QDESK_DEBUG") != NULL);

	test_normal();
	test_error();
	test_events();
	test_garbage();
	test_greeting_garbage();
	test_eof();
	test_slow();
	test_timeout();
	test_free_in_cb();
	qmp_fake_checks(&check_count, &check_failures);
	return (check_exit());
}
