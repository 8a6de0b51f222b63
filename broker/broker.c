/*
 * qdesk-broker: opens its ports and loads its certificate while it may,
 * drops to its own unprivileged user for good, then runs one libevent
 * loop: the HTTPS portal and API, the SPICE proxy, and a connection to
 * qmpd that is redialled whenever qmpd restarts.
 */
#include <sys/prctl.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "broker.h"
#include "daemon.h"
#include "log.h"
#include "xmalloc.h"

struct broker	*broker;

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr,
	    "usage: qdesk-broker [-fv] [--socket PATH] [--state-dir DIR] "
	    "[--user USER]\n"
	    "                    [--https ADDR:PORT] [--spice-proxy ADDR:PORT] "
	    "[--rdp ADDR:PORT|none]\n"
	    "                    [--cert FILE --key FILE] "
	    "[--public-host NAME] [--console-ttl SECONDS]\n"
	    "                    [--session-idle SECONDS]\n");
	exit(2);
}

/* A number from the command line within [min, max], or exit. */
static int
broker_number(const char *s, int min, int max, const char *what)
{
	char	*end;
	long	 n;

	n = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || n < min || n > max) {
		fprintf(stderr, "qdesk-broker: %s wants %d to %d, not '%s'\n",
		    what, min, max, s);
		exit(2);
	}
	return ((int)n);
}

static void
broker_sigterm(evutil_socket_t sig, short events, void *arg)
{
	log_info("signal %d: exiting", (int)sig);
	event_base_loopbreak(broker->base);
}

static void
broker_sighup(evutil_socket_t sig, short events, void *arg)
{
	log_info("SIGHUP: nothing to reload (restart to change the "
	    "certificate)");
}

/*
 * Become the broker's user for good: groups, gid, uid, and check that
 * root cannot be regained. Everything after this faces the network.
 */
static void
broker_drop(const struct passwd *pw)
{
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("dropping privileges to %s", pw->pw_name);
	if (setuid(0) != -1 || seteuid(0) != -1)
		fatalx("still able to become root after dropping to %s",
		    pw->pw_name);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		log_warn("PR_SET_NO_NEW_PRIVS");
	if (chdir("/") == -1)
		fatal("chdir /");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "user", required_argument, NULL, 'u' },
		{ "https", required_argument, NULL, 'H' },
		{ "spice-proxy", required_argument, NULL, 'P' },
		{ "rdp", required_argument, NULL, 'R' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "public-host", required_argument, NULL, 'p' },
		{ "console-ttl", required_argument, NULL, 't' },
		{ "session-idle", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct event	*ev_term, *ev_int, *ev_hup;
	struct passwd	*pw = NULL, pwcopy;
	const char	*state_dir = "/var/lib/qdesk", *socket_path = NULL;
	const char	*https = "0.0.0.0:8443", *spice_proxy = "0.0.0.0:3128";
	const char	*rdp = "0.0.0.0:3389", *cert = NULL, *key = NULL;
	char		*cause = NULL, *dir, hostcheck[256];
	uid_t		 owner = (uid_t)-1;
	gid_t		 group = (gid_t)-1;
	int		 ch, verbose = 0;

	broker = xcalloc(1, sizeof *broker);
	broker->https_fd = broker->proxy_fd = broker->rdp_fd = -1;
	broker->console_ttl = BROKER_CONSOLE_TTL;
	broker->session_idle = BROKER_SESSION_IDLE;
	while ((ch = getopt_long(argc, argv, "fvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			broker->foreground = 1;
			break;
		case 'v':
			verbose++;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'd':
			state_dir = optarg;
			break;
		case 'u':
			broker->user = optarg;
			break;
		case 'H':
			https = optarg;
			break;
		case 'P':
			spice_proxy = optarg;
			break;
		case 'R':
			rdp = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'p':
			broker->public_host = optarg;
			break;
		case 't':
			broker->console_ttl = broker_number(optarg,
			    BROKER_CONSOLE_TTL_MIN, BROKER_CONSOLE_TTL_MAX,
			    "--console-ttl");
			break;
		case 'I':
			broker->session_idle = broker_number(optarg,
			    BROKER_SESSION_IDLE_MIN, BROKER_SESSION_IDLE_MAX,
			    "--session-idle");
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (cert == NULL) != (key == NULL))
		usage();
	log_init("qdesk-broker", 1, verbose);

	if (listen_parse(https, &broker->https, &cause) != 0 ||
	    listen_parse(spice_proxy, &broker->spice_proxy, &cause) != 0)
		fatalx("%s", cause);
	broker->rdp_on = strcmp(rdp, "none") != 0;
	if (broker->rdp_on && listen_parse(rdp, &broker->rdp, &cause) != 0)
		fatalx("%s (or --rdp none)", cause);
	if (broker->public_host != NULL &&
	    httputil_hostname(broker->public_host, hostcheck,
	    sizeof hostcheck) != 0)
		fatalx("--public-host %s is not a host name",
		    broker->public_host);

	/* The broker faces the network: it never keeps root. */
	if (broker->user != NULL) {
		if ((pw = getpwnam(broker->user)) == NULL)
			fatalx("no user %s to run as: useradd -r -M -s "
			    "/usr/sbin/nologin %s", broker->user,
			    broker->user);
		if (pw->pw_uid == 0)
			fatalx("--user %s is root; the broker needs an "
			    "unprivileged user", broker->user);
		if (geteuid() != 0 && geteuid() != pw->pw_uid)
			fatalx("only root can become %s", broker->user);
		pwcopy = *pw;
		pwcopy.pw_name = xstrdup(pw->pw_name);
		pw = &pwcopy;
		owner = pw->pw_uid;
		group = pw->pw_gid;
	} else if (geteuid() == 0)
		fatalx("refusing to run as root: pass --user USER (the broker "
		    "drops to it after opening its ports)");

	if ((broker->state_dir = realpath(state_dir, NULL)) == NULL)
		fatal("state dir %s (start qmpd first, or pass --state-dir)",
		    state_dir);
	if (socket_path == NULL)
		xasprintf(&broker->socket_path, "%s/qmpd.sock",
		    broker->state_dir);
	else
		broker->socket_path = xstrdup(socket_path);

	/* Ports and keys first, while we may still open anything. */
	if ((broker->https_fd = listen_open(&broker->https, &cause)) == -1 ||
	    (broker->proxy_fd = listen_open(&broker->spice_proxy,
	    &cause)) == -1 || rdpgw_open(&cause) != 0)
		fatalx("%s", cause);
	if (cert != NULL) {
		broker->cert_path = xstrdup(cert);
		broker->key_path = xstrdup(key);
		dir = NULL;
	} else {
		xasprintf(&dir, "%s/broker", broker->state_dir);
		xasprintf(&broker->cert_path, "%s/cert.pem", dir);
		xasprintf(&broker->key_path, "%s/key.pem", dir);
		broker->self_signed = 1;
	}
	if ((broker->ssl_ctx = tls_context(dir, broker->cert_path,
	    broker->key_path, geteuid() == 0 ? owner : (uid_t)-1, group,
	    &cause)) == NULL)
		fatalx("%s", cause);
	free(dir);
	if (RAND_bytes(broker->ticket_key, sizeof broker->ticket_key) != 1)
		fatalx("RAND_bytes: no randomness for the ticket key");

	if (!broker->foreground)
		daemon_detach();
	log_init("qdesk-broker", broker->foreground, verbose);
	signal(SIGPIPE, SIG_IGN);
	if ((broker->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	/* The gateway reads the key itself: still before the drop. */
	if (rdpgw_start(broker->base, &cause) != 0)
		fatalx("RDP gateway on %s: %s", broker->rdp.text, cause);
	if (pw != NULL && geteuid() == 0)
		broker_drop(pw);

	ev_term = evsignal_new(broker->base, SIGTERM, broker_sigterm, NULL);
	ev_int = evsignal_new(broker->base, SIGINT, broker_sigterm, NULL);
	ev_hup = evsignal_new(broker->base, SIGHUP, broker_sighup, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);

	session_init(broker->base);
	novnc_load();
	if (http_start(broker->base, broker->https_fd, broker->ssl_ctx,
	    &cause) != 0 || proxy_start(broker->base, broker->proxy_fd,
	    &cause) != 0)
		fatalx("%s", cause);
	qmpc_start(broker->base, broker->socket_path);
	log_info("qdesk-broker %s ready as uid %ld: https %s, spice proxy %s, "
	    "rdp %s, qmpd %s", QDESK_VERSION, (long)geteuid(),
	    broker->https.text, broker->spice_proxy.text, rdpgw_enabled() ?
	    broker->rdp.text : "off", broker->socket_path);

	event_base_dispatch(broker->base);

	rdpgw_stop();
	api_session_free();
	qmpc_stop();
	http_stop();
	novnc_unload();
	proxy_stop();
	session_clear();
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_base_free(broker->base);
	SSL_CTX_free(broker->ssl_ctx);
	explicit_bzero(broker->ticket_key, sizeof broker->ticket_key);
	if (pw != NULL)
		free(pw->pw_name);
	log_info("exited");
	return (0);
}
