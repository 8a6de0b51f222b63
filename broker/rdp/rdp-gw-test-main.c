/*
 * rdp-gw-test: the RDP gateway alone on its own libevent loop, for tests
 * and development without the rest of the broker. It runs exactly the
 * code qdesk-broker runs (rdp_gateway_start on a loop), nothing more.
 *
 *   rdp-gw-test [-v] [-l ADDR] [-r MS] [-u USER] -p PORT -c CERT.pem -k KEY.pem
 *       -s QMPD_SOCKET
 *
 * With -u it drops to USER after opening its port and reading the key, as
 * qdesk-broker --user does, so qmpd sees the broker role. -r MS sets the
 * graphics pipeline's lossless refinement delay (-1: none), so a test can
 * look at what a lossy codec alone shows.
 *
 *   rdp-gw-test -F USER:DESKTOP [-l ADDR] -p PORT
 *
 * prints the .rdp file the portal would hand out for the gateway at
 * ADDR:PORT (self-signed certificate) and exits.
 */
#include <sys/types.h>

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "rdp.h"
#include "rdp-gfx.h"

static void
usage(void)
{
	fprintf(stderr, "usage: rdp-gw-test [-v] [-l addr] [-r refine-ms] "
	    "[-u user] -p port -c cert -k key -s qmpd-socket\n"
	    "       rdp-gw-test -F user:desktop [-l addr] -p port\n");
	exit(2);
}

/* Print the .rdp file for "user:desktop" at addr:port. */
static int
rdp_gw_test_file(const char *spec, const char *addr, int port)
{
	char	*user, *desktop, *text, *cause = NULL;

	user = strdup(spec);
	if (user == NULL || (desktop = strchr(user, ':')) == NULL)
		usage();
	*desktop++ = '\0';
	if ((text = rdp_file_build(addr, port, user, *desktop != '\0' ?
	    desktop : NULL, 1, &cause)) == NULL) {
		fprintf(stderr, "rdp-gw-test: %s\n", cause);
		return (1);
	}
	fputs(text, stdout);
	free(text);
	free(user);
	return (0);
}

/* Become user for good: groups, gid, uid, and no way back. */
static void
rdp_gw_test_drop(const char *user)
{
	struct passwd	*pw;

	if ((pw = getpwnam(user)) == NULL)
		fatalx("no user %s", user);
	if (setgroups(1, &pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		fatal("cannot become %s", user);
	if (setuid(0) != -1)
		fatalx("still able to become root after dropping to %s", user);
	log_info("running as %s", user);
}

static void
rdp_gw_test_signal(evutil_socket_t sig, short events, void *arg)
{
	struct event_base	*base = arg;

	log_info("signal %d: stopping", (int)sig);
	rdp_gateway_stop();
	event_base_loopexit(base, NULL);
}

int
main(int argc, char **argv)
{
	struct event_base	*base;
	struct event		*ev_int, *ev_term;
	const char		*addr = "127.0.0.1", *cert = NULL, *key = NULL;
	const char		*sock = NULL, *user = NULL, *file = NULL;
	char			*cause = NULL, *end;
	int			 ch, port = 0, verbose = 0;

	while ((ch = getopt(argc, argv, "F:c:k:l:p:r:s:u:v")) != -1) {
		switch (ch) {
		case 'F':
			file = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'l':
			addr = optarg;
			break;
		case 'p':
			port = (int)strtol(optarg, &end, 10);
			if (*end != '\0')
				usage();
			break;
		case 'r':
			/* The refinement delay in ms, -1 for none. */
			rdp_gfx_refine_ms = (int)strtol(optarg, &end, 10);
			if (*end != '\0')
				usage();
			break;
		case 's':
			sock = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'v':
			verbose++;
			break;
		default:
			usage();
		}
	}
	if (file != NULL && optind == argc && port != 0)
		return (rdp_gw_test_file(file, addr, port));
	if (optind != argc || port == 0 || cert == NULL || key == NULL ||
	    sock == NULL)
		usage();
	log_init("rdp-gw-test", 1, verbose);
	/* Line-buffered, so a test sees each log line as it happens. */
	setvbuf(stderr, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if (rdp_gateway_start(base, addr, port, cert, key, sock, &cause) != 0)
		fatalx("%s", cause);
	if (user != NULL)
		rdp_gw_test_drop(user);
	ev_int = evsignal_new(base, SIGINT, rdp_gw_test_signal, base);
	ev_term = evsignal_new(base, SIGTERM, rdp_gw_test_signal, base);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_term, NULL);
	event_base_dispatch(base);
	event_free(ev_int);
	event_free(ev_term);
	event_base_free(base);
	return (0);
}
