/*
 * api-rtt: round trips to qmpd over one admin connection. Sends CMD (by
 * default vm.show NAME) N times, one at a time, and prints percentiles of
 * the time from writing a request to reading its whole reply line.
 *
 * usage: api-rtt -s SOCK [-n N] [-c CMD] [NAME]
 * prints "n N p50_us X p99_us Y min_us A mean_us M max_us B bytes R"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: api-rtt -s SOCK [-n N] [-c CMD] [NAME]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct lconn	 c;
	const char	*sock = NULL, *cmd = "vm.show", *name = NULL;
	char		*line, req[512];
	uint64_t	*v, t0, sum = 0, lo, hi;
	size_t		 len, bytes = 0;
	int		 ch, n = 10000, i, reqlen;

	while ((ch = getopt(argc, argv, "s:n:c:")) != -1) {
		switch (ch) {
		case 's':
			sock = optarg;
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'c':
			cmd = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (sock == NULL || n < 1 || argc > 1)
		usage();
	if (argc == 1)
		name = argv[0];

	qmpd_connect(&c, sock);
	if ((v = calloc(n, sizeof *v)) == NULL)
		fatal("calloc");
	for (i = 0; i < n; i++) {
		if (name != NULL)
			reqlen = snprintf(req, sizeof req, "{\"id\":%d,\"cmd\":"
			    "\"%s\",\"args\":{\"name\":\"%s\"}}\n", i, cmd,
			    name);
		else
			reqlen = snprintf(req, sizeof req, "{\"id\":%d,\"cmd\":"
			    "\"%s\",\"args\":{}}\n", i, cmd);
		t0 = now_us();
		lconn_write(&c, req, reqlen);
		do {
			if ((line = lconn_readline(&c, &len)) == NULL)
				fatalx("qmpd closed the connection");
		} while (reply_id(line) != i);
		v[i] = now_us() - t0;
		if (reply_is_error(line))
			fatalx("%s: %s", cmd, line);
		bytes = len;
		sum += v[i];
	}
	lo = pct(v, n, 0);
	hi = pct(v, n, 100);
	printf("n %d p50_us %llu p99_us %llu min_us %llu mean_us %llu "
	    "max_us %llu bytes %zu\n", n, (unsigned long long)pct(v, n, 50),
	    (unsigned long long)pct(v, n, 99), (unsigned long long)lo,
	    (unsigned long long)(sum / n), (unsigned long long)hi, bytes);
	lconn_close(&c);
	return (0);
}
