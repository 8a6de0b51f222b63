/*
 * etcd-drive: runs cluster/etcd.c against a real etcd for the integration
 * tests (tests/integration/60-etcd.sh) and the figures in cluster/README.md.
 *
 *   etcd-drive [-e URLS] [-t MS] [-C CA -c CERT -k KEY] COMMAND ARGS
 *
 *   put KEY VALUE		"ok REVISION"
 *   get [-p] KEY		"KEY=VALUE" per key, then "count N"
 *   del [-p] KEY		"deleted N"
 *   race KEY ROUNDS		two clients race to create KEY/N by CAS each
 *				round: "rounds R one R both 0 none 0"
 *   lease KEY TTL HOLD	keep KEY under a lease for HOLD s (checked every
 *				second), stop the keeper, time the expiry
 *   keep TTL SECS		keep a lease ("lease ID granted") until the
 *				keeper reports it lost ("lost CLASS: ... (at
 *				EPOCH-MS)", exit 0) or SECS pass (exit 1)
 *   watch [-p] [-r REV] KEY COUNT
 *				"created" then "PUT KEY VALUE REV" per event
 *				(from revision REV), until COUNT events
 *   bench N CONC		N puts, ranges and txns, CONC at a time: rps
 *   probe KEY VALUE		one put, timed: "ok MS" or "error CLASS: .."
 *
 * Exit 0 when the command did what it says, 1 on an error (printed).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "etcd.h"
#include "log.h"

static struct event_base	*base;
static struct etcd_config	 conf;
static int			 failed;
static int			 outstanding;

static double
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec * 1e3 + ts.tv_nsec / 1e6);
}

static struct etcd *
drive_client(void)
{
	struct etcd	*e;
	char		*cause;

	if ((e = etcd_create(base, &conf, &cause)) == NULL) {
		printf("error %s\n", cause);
		exit(1);
	}
	return (e);
}

/* Run the loop until every call of the command has come back. */
static void
drive_wait(void)
{
	while (outstanding > 0)
		event_base_loop(base, EVLOOP_ONCE);
}

/* Reap connections the client handed back to the loop, then free it. */
static void
drive_free(struct etcd *e)
{
	etcd_free(e);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

static void
drive_error(const char *errclass, const char *cause)
{
	printf("error %s: %s\n", errclass, cause);
	failed = 1;
}

static void
drive_put_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	outstanding--;
	if (errclass != NULL) {
		drive_error(errclass, cause);
		return;
	}
	if (arg != NULL)
		printf("ok %lld\n", (long long)json_integer_value(
		    json_object_get(json_object_get(res, "header"),
		    "revision")));
}

static void
drive_get_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	json_t	*kv;
	size_t	 i;

	outstanding--;
	if (errclass != NULL) {
		drive_error(errclass, cause);
		return;
	}
	if (arg == NULL)
		return;
	json_array_foreach(json_object_get(res, "kvs"), i, kv) {
		printf("%s=%s\n", json_string_value(json_object_get(kv, "key")),
		    json_string_value(json_object_get(kv, "value")));
	}
	printf("count %lld\n", (long long)json_integer_value(
	    json_object_get(res, "count")));
}

static void
drive_del_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	outstanding--;
	if (errclass != NULL) {
		drive_error(errclass, cause);
		return;
	}
	printf("deleted %lld\n", (long long)json_integer_value(
	    json_object_get(res, "deleted")));
}

static int
drive_simple(const char *cmd, int argc, char **argv)
{
	struct etcd	*e;
	int		 flags = 0;

	if (argc > 0 && strcmp(argv[0], "-p") == 0) {
		flags = ETCD_PREFIX;
		argc--;
		argv++;
	}
	e = drive_client();
	outstanding = 1;
	if (strcmp(cmd, "put") == 0 && argc == 2)
		etcd_put(e, argv[0], argv[1], 0, 0, drive_put_cb, e);
	else if (strcmp(cmd, "get") == 0 && argc == 1)
		etcd_get(e, argv[0], flags, drive_get_cb, e);
	else if (strcmp(cmd, "del") == 0 && argc == 1)
		etcd_delete(e, argv[0], flags, drive_del_cb, e);
	else {
		fprintf(stderr, "etcd-drive: bad arguments to %s\n", cmd);
		exit(2);
	}
	drive_wait();
	drive_free(e);
	return (failed);
}

/* ---- race ---- */

static int	race_won[2], race_one, race_both, race_none, race_round_wins;

static void
drive_race_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	int	who = (int)(intptr_t)arg;

	outstanding--;
	if (errclass != NULL) {
		drive_error(errclass, cause);
		return;
	}
	if (json_is_true(json_object_get(res, "succeeded"))) {
		race_won[who]++;
		race_round_wins++;
	}
}

static int
drive_race(int argc, char **argv)
{
	struct etcd	*a, *b;
	char		*key;
	int		 i, rounds;

	if (argc != 2 || (rounds = atoi(argv[1])) <= 0) {
		fprintf(stderr, "etcd-drive: race KEY ROUNDS\n");
		exit(2);
	}
	a = drive_client();
	b = drive_client();
	for (i = 0; i < rounds; i++) {
		if (asprintf(&key, "%s/%d", argv[0], i) == -1)
			exit(1);
		race_round_wins = 0;
		outstanding = 2;
		/* Both issued before either can be answered. */
		etcd_cas(a, key, 0, "a", 0, drive_race_cb, (void *)0);
		etcd_cas(b, key, 0, "b", 0, drive_race_cb, (void *)1);
		drive_wait();
		free(key);
		if (race_round_wins == 1)
			race_one++;
		else if (race_round_wins == 2)
			race_both++;
		else
			race_none++;
	}
	printf("rounds %d one %d both %d none %d a %d b %d\n", rounds,
	    race_one, race_both, race_none, race_won[0], race_won[1]);
	drive_free(a);
	drive_free(b);
	return (failed || race_one != rounds);
}

/* ---- lease ---- */

static int	lease_granted, lease_lost, lease_present;

static void
drive_keeper_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	if (errclass != NULL) {
		printf("lease lost: %s: %s\n", errclass, cause);
		lease_lost = 1;
		return;
	}
	lease_granted = 1;
}

static void
drive_present_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	outstanding--;
	if (errclass != NULL) {
		drive_error(errclass, cause);
		return;
	}
	lease_present = json_integer_value(json_object_get(res, "count")) > 0;
}

static void
drive_sleep(double ms)
{
	struct timeval	tv;

	tv.tv_sec = (long)(ms / 1000);
	tv.tv_usec = (long)((ms - tv.tv_sec * 1000) * 1000);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static int
drive_lease(int argc, char **argv)
{
	struct etcd		*e;
	struct etcd_keeper	*k;
	int			 ttl, hold, i;
	double			 t0;

	if (argc != 3 || (ttl = atoi(argv[1])) <= 0 ||
	    (hold = atoi(argv[2])) <= 0) {
		fprintf(stderr, "etcd-drive: lease KEY TTL HOLD\n");
		exit(2);
	}
	e = drive_client();
	k = etcd_keeper_create(e, ttl, drive_keeper_cb, NULL);
	while (!lease_granted && !lease_lost)
		event_base_loop(base, EVLOOP_ONCE);
	if (lease_lost)
		return (1);
	outstanding = 1;
	etcd_put(e, argv[0], "held", etcd_keeper_id(k), 0, drive_put_cb, NULL);
	drive_wait();
	printf("lease %lld granted ttl %d\n", (long long)etcd_keeper_id(k),
	    ttl);
	for (i = 0; i < hold && !failed; i++) {
		drive_sleep(1000);
		outstanding = 1;
		etcd_get(e, argv[0], ETCD_COUNT_ONLY, drive_present_cb, NULL);
		drive_wait();
		if (!lease_present || lease_lost) {
			printf("key gone after %d s while the keeper ran\n",
			    i + 1);
			return (1);
		}
	}
	printf("held %d s (%d x ttl)\n", hold, hold / ttl);
	etcd_keeper_free(k, 0);
	t0 = now_ms();
	do {
		drive_sleep(200);
		outstanding = 1;
		etcd_get(e, argv[0], ETCD_COUNT_ONLY, drive_present_cb, NULL);
		drive_wait();
	} while (lease_present && !failed && now_ms() - t0 < ttl * 4000.0);
	if (lease_present) {
		printf("key still there %.0f ms after the keeper stopped\n",
		    now_ms() - t0);
		return (1);
	}
	printf("expired %.0f ms after the keeper stopped\n", now_ms() - t0);
	drive_free(e);
	return (failed);
}

static double	keep_lost_at;

static void
drive_keep_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	struct timespec	ts;

	if (errclass != NULL) {
		clock_gettime(CLOCK_REALTIME, &ts);
		printf("lost %s: %s (at %lld)\n", errclass, cause,
		    (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		keep_lost_at = now_ms();
		return;
	}
	printf("lease %lld granted\n", (long long)json_integer_value(
	    json_object_get(res, "ID")));
}

/* Run a keeper until it reports the lease lost, timing the report. */
static int
drive_keep(int argc, char **argv)
{
	struct etcd		*e;
	struct etcd_keeper	*k;
	int			 ttl, secs;
	double			 t0;

	if (argc != 2 || (ttl = atoi(argv[0])) <= 0 ||
	    (secs = atoi(argv[1])) <= 0) {
		fprintf(stderr, "etcd-drive: keep TTL SECS\n");
		exit(2);
	}
	e = drive_client();
	k = etcd_keeper_create(e, ttl, drive_keep_cb, NULL);
	t0 = now_ms();
	while (keep_lost_at == 0 && now_ms() - t0 < secs * 1000.0)
		drive_sleep(100);
	etcd_keeper_free(k, 0);
	if (keep_lost_at == 0) {
		printf("held %d s\n", secs);
		failed = 1;
	}
	drive_free(e);
	return (failed);
}

/* ---- watch ---- */

static int	watch_left;

static void
drive_watch_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	json_t	*ev, *kv;
	size_t	 i;

	if (errclass != NULL) {
		drive_error(errclass, cause);
		watch_left = 0;
		return;
	}
	if (json_is_true(json_object_get(res, "created")))
		printf("created\n");
	json_array_foreach(json_object_get(res, "events"), i, ev) {
		kv = json_object_get(ev, "kv");
		printf("%s %s %s %lld\n",
		    json_string_value(json_object_get(ev, "type")),
		    json_string_value(json_object_get(kv, "key")),
		    json_string_value(json_object_get(kv, "value")),
		    (long long)json_integer_value(json_object_get(kv,
		    "mod_revision")));
		watch_left--;
	}
	fflush(stdout);
}

static int
drive_watch(int argc, char **argv)
{
	struct etcd		*e;
	struct etcd_watch	*w;
	int			 flags = 0;
	long long		 rev = 0;

	for (;;) {
		if (argc > 0 && strcmp(argv[0], "-p") == 0) {
			flags = ETCD_PREFIX;
			argc--;
			argv++;
		} else if (argc > 1 && strcmp(argv[0], "-r") == 0) {
			rev = atoll(argv[1]);
			argc -= 2;
			argv += 2;
		} else
			break;
	}
	if (argc != 2 || (watch_left = atoi(argv[1])) <= 0) {
		fprintf(stderr, "etcd-drive: watch [-p] [-r REV] KEY COUNT\n");
		exit(2);
	}
	e = drive_client();
	w = etcd_watch_create(e, argv[0], flags, rev, drive_watch_cb, NULL);
	while (watch_left > 0)
		event_base_loop(base, EVLOOP_ONCE);
	etcd_watch_free(w);
	drive_free(e);
	return (failed);
}

/* ---- bench ---- */

static int	bench_left, bench_conc;
static const char *bench_op;
static struct etcd *bench_e;

static void	bench_next(void);

static void
drive_bench_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	outstanding--;
	if (errclass != NULL) {
		drive_error(errclass, cause);
		return;
	}
	bench_next();
}

/* Issue the next call of the current kind, keeping bench_conc in flight. */
static void
bench_next(void)
{
	char	key[64];
	int	n;

	if (bench_left <= 0 || failed)
		return;
	n = bench_left--;
	snprintf(key, sizeof key, "bench/%d", n % 100);
	outstanding++;
	if (strcmp(bench_op, "put") == 0)
		etcd_put(bench_e, key, "{\"host\":\"h1\",\"mem\":1024}", 0, 0,
		    drive_bench_cb, NULL);
	else if (strcmp(bench_op, "range") == 0)
		etcd_get(bench_e, key, 0, drive_bench_cb, NULL);
	else {
		json_t *cmp = json_array(), *ok = json_array();

		json_array_append_new(cmp, etcd_cmp_value(key,
		    "{\"host\":\"h1\",\"mem\":1024}"));
		json_array_append_new(ok, etcd_op_put(key,
		    "{\"host\":\"h1\",\"mem\":1024}", 0));
		etcd_txn(bench_e, cmp, ok, NULL, drive_bench_cb, NULL);
	}
}

static int
drive_bench(int argc, char **argv)
{
	static const char	*ops[] = { "put", "range", "txn" };
	size_t			 i;
	int			 n, j;
	double			 t0, ms;

	if (argc != 2 || (n = atoi(argv[0])) <= 0 ||
	    (bench_conc = atoi(argv[1])) <= 0) {
		fprintf(stderr, "etcd-drive: bench N CONC\n");
		exit(2);
	}
	bench_e = drive_client();
	for (i = 0; i < 3; i++) {
		bench_op = ops[i];
		bench_left = n;
		t0 = now_ms();
		for (j = 0; j < bench_conc; j++)
			bench_next();
		drive_wait();
		ms = now_ms() - t0;
		printf("%s: %d in %.0f ms: %.0f/s (%d in flight)\n", bench_op,
		    n, ms, n * 1000.0 / ms, bench_conc);
	}
	drive_free(bench_e);
	return (failed);
}

/* ---- probe ---- */

static void
drive_probe_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	double	*t0 = arg;

	outstanding--;
	if (errclass != NULL) {
		printf("error %s: %s (%.0f ms)\n", errclass, cause,
		    now_ms() - *t0);
		failed = 1;
		return;
	}
	printf("ok %.0f\n", now_ms() - *t0);
}

static int
drive_probe(int argc, char **argv)
{
	struct etcd	*e;
	double		 t0;

	if (argc != 2) {
		fprintf(stderr, "etcd-drive: probe KEY VALUE\n");
		exit(2);
	}
	e = drive_client();
	t0 = now_ms();
	outstanding = 1;
	etcd_put(e, argv[0], argv[1], 0, 0, drive_probe_cb, &t0);
	drive_wait();
	drive_free(e);
	return (failed);
}

int
main(int argc, char **argv)
{
	const char	*cmd;
	int		 ch;

	log_init("etcd-drive", 1, getenv("ETCD_DRIVE_DEBUG") != NULL ? 2 : 0);
	/*
	 * As qmpd and the broker do: a TLS peer that refuses us closes the
	 * socket while OpenSSL still writes, and SIGPIPE would end us with
	 * no error printed (61-etcd-tls: "unclear error", exit 141).
	 */
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	conf.endpoints = getenv("ETCD");
	while ((ch = getopt(argc, argv, "+C:c:e:k:t:")) != -1) {
		switch (ch) {
		case 'C':
			conf.cacert = optarg;
			break;
		case 'c':
			conf.cert = optarg;
			break;
		case 'e':
			conf.endpoints = optarg;
			break;
		case 'k':
			conf.key = optarg;
			break;
		case 't':
			conf.timeout_ms = atoi(optarg);
			break;
		default:
			exit(2);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		fprintf(stderr, "usage: etcd-drive [-e URLS] [-t MS] "
		    "[-C CA -c CERT -k KEY] put|get|del|race|lease|keep|"
		    "watch|bench|probe ...\n");
		exit(2);
	}
	if ((base = event_base_new()) == NULL)
		return (1);
	cmd = argv[0];
	argc--;
	argv++;
	if (strcmp(cmd, "race") == 0)
		return (drive_race(argc, argv));
	if (strcmp(cmd, "lease") == 0)
		return (drive_lease(argc, argv));
	if (strcmp(cmd, "watch") == 0)
		return (drive_watch(argc, argv));
	if (strcmp(cmd, "keep") == 0)
		return (drive_keep(argc, argv));
	if (strcmp(cmd, "bench") == 0)
		return (drive_bench(argc, argv));
	if (strcmp(cmd, "probe") == 0)
		return (drive_probe(argc, argv));
	return (drive_simple(cmd, argc, argv));
}
