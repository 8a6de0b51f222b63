/*
 * login-storm: N user.auth requests over C connections (as brokers send
 * them, W in flight on each, each from a client address of its own:
 * 10.CONN.x.y), while one admin connection asks vm.list
 * every I ms and times each answer. With -n 0 only the admin is timed,
 * for D seconds: the same figures without the storm; with -n 0 -H N as
 * well, while N threads of this process (nice 10, as qmpd's workers)
 * hash yescrypt on their own: the CPU load of the storm without qmpd.
 *
 * usage: login-storm -s SOCK -u LOGIN -p PASSWORD [-n 1000] [-c 4] [-w 2]
 *            [-i 10] [-d 5] [-H THREADS]
 * prints one line of "key value" pairs:
 *   logins N ok K busy B failed F secs S per_s R
 *   probes P p50_us X p99_us Y max_us Z
 */
#include <sys/resource.h>

#include <crypt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define STORM_PROBES_MAX	1000000

struct storm_conn {
	pthread_t	 thread;
	const char	*sock;
	const char	*login;
	const char	*password;
	int		 index;		/* of this connection */
	int		 n;		/* logins to send */
	int		 window;
	int		 ok, busy, failed;
	uint64_t	 end_us;	/* when the last answer came */
	int		 finished;	/* read by main: atomic */
};

static int		 storm_done;

/* A thread that hashes yescrypt until the run is over (-H). */
static void *
storm_burn(void *arg)
{
	struct crypt_data	*cd;
	char			 setting[CRYPT_GENSALT_OUTPUT_SIZE];

	setpriority(PRIO_PROCESS, gettid(), 10);
	if ((cd = calloc(1, sizeof *cd)) == NULL ||
	    crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting) ==
	    NULL)
		fatalx("yescrypt setup");
	while (!__atomic_load_n(&storm_done, __ATOMIC_ACQUIRE))
		crypt_rn("storm pass 1", setting, cd, sizeof *cd);
	free(cd);
	return (NULL);
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: login-storm -s SOCK -u LOGIN -p PASSWORD "
	    "[-n N] [-c CONNS] [-w WINDOW] [-i MS] [-d SECS] [-H THREADS]\n");
	exit(2);
}

/* Connect and read qmpd's hello. */
static void
storm_connect(struct lconn *c, const char *sock)
{
	char	*line;
	int	 fd;

	if ((fd = unix_connect(sock)) == -1)
		fatal("connect %s", sock);
	lconn_init(c, fd);
	if ((line = lconn_readline(c, NULL)) == NULL ||
	    strstr(line, "\"qdesk\"") == NULL)
		fatalx("no hello from qmpd");
}

/* One broker connection: keep window logins in flight until n answered. */
static void *
storm_conn_main(void *arg)
{
	struct storm_conn	*sc = arg;
	struct lconn		 c;
	char			*line, *req;
	int			 sent = 0, got = 0;

	storm_connect(&c, sc->sock);
	while (got < sc->n) {
		while (sent < sc->n && sent - got < sc->window) {
			/* Each from an address of its own, as staff are. */
			if (asprintf(&req, "{\"id\":1,\"cmd\":\"user.auth\","
			    "\"args\":{\"login\":\"%s\",\"password\":\"%s\","
			    "\"client\":\"10.%d.%d.%d\"}}\n", sc->login,
			    sc->password, sc->index, sent / 250 % 250,
			    sent % 250 + 1) == -1)
				fatal("asprintf");
			lconn_write(&c, req, strlen(req));
			free(req);
			sent++;
		}
		if ((line = lconn_readline(&c, NULL)) == NULL)
			fatalx("qmpd closed a broker connection");
		got++;
		if (!reply_is_error(line))
			sc->ok++;
		else if (strstr(line, "\"Busy\"") != NULL)
			sc->busy++;
		else
			sc->failed++;
	}
	lconn_close(&c);
	sc->end_us = now_us();
	__atomic_store_n(&sc->finished, 1, __ATOMIC_RELEASE);
	return (NULL);
}

int
main(int argc, char **argv)
{
	struct storm_conn	*conns;
	struct lconn		 c;
	const char		*sock = NULL, *login = NULL, *password = NULL;
	const char		*probe = "{\"id\":1,\"cmd\":\"vm.list\"}\n";
	uint64_t		*lat, t0, t1, tend = 0, secs_us;
	size_t			 nlat = 0;
	int			 ch, n = 1000, nconn = 4, window = 2, i;
	int			 interval = 10, duration = 5, ok = 0, busy = 0;
	int			 failed = 0, nburn = 0;
	pthread_t		 burn[64];

	while ((ch = getopt(argc, argv, "s:u:p:n:c:w:i:d:H:")) != -1) {
		switch (ch) {
		case 's':
			sock = optarg;
			break;
		case 'u':
			login = optarg;
			break;
		case 'p':
			password = optarg;
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'c':
			nconn = atoi(optarg);
			break;
		case 'w':
			window = atoi(optarg);
			break;
		case 'i':
			interval = atoi(optarg);
			break;
		case 'd':
			duration = atoi(optarg);
			break;
		case 'H':
			nburn = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (sock == NULL || login == NULL || password == NULL || n < 0 ||
	    nconn < 1 || window < 1 || interval < 0 || duration < 1 ||
	    nburn < 0 || nburn > 64 || (nburn > 0 && n > 0))
		usage();
	if ((lat = calloc(STORM_PROBES_MAX, sizeof *lat)) == NULL)
		fatal("calloc");
	conns = calloc(nconn, sizeof *conns);

	storm_connect(&c, sock);
	for (i = 0; i < nburn; i++)
		if (pthread_create(&burn[i], NULL, storm_burn, NULL) != 0)
			fatalx("pthread_create");
	t0 = now_us();
	if (n == 0)
		tend = t0 + (uint64_t)duration * 1000000;
	for (i = 0; n > 0 && i < nconn; i++) {
		conns[i].sock = sock;
		conns[i].login = login;
		conns[i].password = password;
		conns[i].index = i;
		conns[i].n = n / nconn + (i < n % nconn);
		conns[i].window = window;
		if (pthread_create(&conns[i].thread, NULL, storm_conn_main,
		    &conns[i]) != 0)
			fatalx("pthread_create");
	}
	/* The admin: one vm.list at a time, every interval ms. */
	for (;;) {
		if (n == 0 ? now_us() >= tend : storm_done)
			break;
		if (n == 0 && nburn > 0 && now_us() < t0 + 300000) {
			usleep(10000);	/* the burners get going first */
			continue;
		}
		t1 = now_us();
		lconn_write(&c, probe, strlen(probe));
		if (lconn_readline(&c, NULL) == NULL)
			fatalx("qmpd closed the admin connection");
		if (nlat < STORM_PROBES_MAX)
			lat[nlat++] = now_us() - t1;
		if (interval > 0)
			usleep(interval * 1000);
		if (n > 0) {
			/* Done once every connection has all its answers. */
			for (i = 0; i < nconn; i++)
				if (!__atomic_load_n(&conns[i].finished,
				    __ATOMIC_ACQUIRE))
					break;
			storm_done = i == nconn;
		}
	}
	secs_us = now_us() - t0;
	__atomic_store_n(&storm_done, 1, __ATOMIC_RELEASE);
	for (i = 0; i < nburn; i++)
		pthread_join(burn[i], NULL);
	for (i = 0; n > 0 && i < nconn; i++) {
		pthread_join(conns[i].thread, NULL);
		if (i == 0 || conns[i].end_us - t0 > secs_us)
			secs_us = conns[i].end_us - t0;
		ok += conns[i].ok;
		busy += conns[i].busy;
		failed += conns[i].failed;
	}
	printf("logins %d ok %d busy %d failed %d secs %.3f per_s %.1f "
	    "probes %zu p50_us %llu p99_us %llu max_us %llu\n", n, ok, busy,
	    failed, secs_us / 1e6, n > 0 ? n / (secs_us / 1e6) : 0.0, nlat,
	    (unsigned long long)pct(lat, nlat, 50),
	    (unsigned long long)pct(lat, nlat, 99),
	    (unsigned long long)pct(lat, nlat, 100));
	lconn_close(&c);
	free(conns);
	free(lat);
	return (failed > 0 ? 1 : 0);
}
