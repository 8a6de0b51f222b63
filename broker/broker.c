/*
 * qdesk-broker: opens its ports and loads its certificate while it may,
 * drops to its own unprivileged user for good, then runs one libevent
 * loop: the HTTPS portal and API, the SPICE proxy, and a connection to
 * qmpd that is redialled whenever qmpd restarts.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
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
#include <openssl/x509.h>

#include "broker.h"
#include "cluster-conf.h"
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
	    "                    [--session-idle SECONDS] [--max-conns N] "
	    "[--max-conns-per-addr N]\n"
	    "                    [--login-refill SECONDS] [--metrics-token FILE] "
	    "[--cluster FILE]\n");
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
 * Descriptors for the connection limits: a portal connection holds one, a
 * proxy tunnel two, an RDP session about four (RDP_FDS for its 128), plus
 * a reserve. Raise the soft limit to the hard one; when even that is too
 * few, lower --max-conns to fit, so that a full broker still has
 * descriptors for qmpd, logs and the RDP gateway instead of failing
 * accept() everywhere.
 */
#define BROKER_RDP_FDS		(128 * 4)
#define BROKER_FD_RESERVE	64
static void
broker_fds(void)
{
	struct rlimit	rl;
	rlim_t		need;
	int		fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		fatal("getrlimit RLIMIT_NOFILE");
	need = (rlim_t)broker->max_conns * 3 + BROKER_RDP_FDS +
	    BROKER_FD_RESERVE;
	if (rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit RLIMIT_NOFILE %llu",
			    (unsigned long long)rl.rlim_cur);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur >= need)
		return;
	fit = ((long long)rl.rlim_cur - BROKER_RDP_FDS - BROKER_FD_RESERVE) / 3;
	if (fit < 16)
		fatalx("only %llu descriptors (ulimit -n): the broker needs "
		    "at least %d", (unsigned long long)rl.rlim_cur,
		    16 * 3 + BROKER_RDP_FDS + BROKER_FD_RESERVE);
	log_warnx("only %llu descriptors (ulimit -n): --max-conns lowered "
	    "from %d to %d", (unsigned long long)rl.rlim_cur,
	    broker->max_conns, fit);
	broker->max_conns = fit;
}

/*
 * Whether the certificate served is its own issuer: the one the broker
 * makes at first start, or any other nobody can verify. The .rdp files
 * and a warning at start depend on it.
 */
static int
broker_self_signed(SSL_CTX *ctx)
{
	X509	*x = SSL_CTX_get0_certificate(ctx);

	/* Not X509_check_issued: a leaf without keyCertSign fails it. */
	if (x == NULL)
		return (1);
	return (X509_NAME_cmp(X509_get_subject_name(x),
	    X509_get_issuer_name(x)) == 0 &&
	    X509_verify(x, X509_get0_pubkey(x)) == 1);
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

/* What the command line says, before anything is opened. */
struct broker_opts {
	const char	*state_dir;
	const char	*socket_path;
	const char	*https;
	const char	*spice_proxy;
	const char	*rdp;
	const char	*cert;
	const char	*key;
	const char	*metrics_token;
	const char	*cluster;
	int		 verbose;
};

/* Parse the command line into opts and broker's settings, or exit 2. */
static void
broker_args(int argc, char **argv, struct broker_opts *o)
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
		{ "max-conns", required_argument, NULL, 'M' },
		{ "max-conns-per-addr", required_argument, NULL, 'A' },
		{ "login-refill", required_argument, NULL, 'L' },
		{ "metrics-token", required_argument, NULL, 'T' },
		{ "cluster", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int	ch;

	memset(o, 0, sizeof *o);
	o->state_dir = "/var/lib/qdesk";
	o->https = "0.0.0.0:8443";
	o->spice_proxy = "0.0.0.0:3128";
	o->rdp = "0.0.0.0:3389";
	while ((ch = getopt_long(argc, argv, "fvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			broker->foreground = 1;
			break;
		case 'v':
			o->verbose++;
			break;
		case 's':
			o->socket_path = optarg;
			break;
		case 'd':
			o->state_dir = optarg;
			break;
		case 'u':
			broker->user = optarg;
			break;
		case 'H':
			o->https = optarg;
			break;
		case 'P':
			o->spice_proxy = optarg;
			break;
		case 'R':
			o->rdp = optarg;
			break;
		case 'c':
			o->cert = optarg;
			break;
		case 'k':
			o->key = optarg;
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
		case 'M':
			broker->max_conns = broker_number(optarg, 1,
			    BROKER_MAX_CONNS, "--max-conns");
			break;
		case 'A':
			broker->max_conns_addr = broker_number(optarg, 1,
			    BROKER_MAX_CONNS, "--max-conns-per-addr");
			break;
		case 'L':
			broker->login_refill = broker_number(optarg, 1,
			    BROKER_LOGIN_REFILL_MAX, "--login-refill");
			break;
		case 'T':
			o->metrics_token = optarg;
			break;
		case 'C':
			o->cluster = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (o->cert == NULL) != (o->key == NULL))
		usage();
}

/*
 * The listening addresses and the public host name, checked; the metrics
 * token read (still as root: its file may be root's alone).
 */
static void
broker_addresses(const struct broker_opts *o)
{
	char	*cause = NULL, hostcheck[256];

	if (listen_parse(o->https, &broker->https, &cause) != 0 ||
	    listen_parse(o->spice_proxy, &broker->spice_proxy, &cause) != 0)
		fatalx("%s", cause);
	broker->rdp_on = strcmp(o->rdp, "none") != 0;
	if (broker->rdp_on && listen_parse(o->rdp, &broker->rdp, &cause) != 0)
		fatalx("%s (or --rdp none)", cause);
	if (broker->public_host != NULL &&
	    httputil_hostname(broker->public_host, hostcheck,
	    sizeof hostcheck) != 0)
		fatalx("--public-host %s is not a host name",
		    broker->public_host);
	if (o->metrics_token != NULL && metrics_token_load(o->metrics_token,
	    &cause) != 0)
		fatalx("%s", cause);
}

/*
 * The user to drop to, copied into pwcopy (NULL without --user). The
 * broker faces the network: it never keeps root.
 */
static struct passwd *
broker_user(struct passwd *pwcopy)
{
	struct passwd	*pw;

	if (broker->user == NULL) {
		if (geteuid() == 0)
			fatalx("refusing to run as root: pass --user USER (the "
			    "broker drops to it after opening its ports)");
		return (NULL);
	}
	if ((pw = getpwnam(broker->user)) == NULL)
		fatalx("no user %s to run as: useradd -r -M -s "
		    "/usr/sbin/nologin %s", broker->user, broker->user);
	if (pw->pw_uid == 0)
		fatalx("--user %s is root; the broker needs an unprivileged "
		    "user", broker->user);
	if (geteuid() != 0 && geteuid() != pw->pw_uid)
		fatalx("only root can become %s", broker->user);
	*pwcopy = *pw;
	pwcopy->pw_name = xstrdup(pw->pw_name);
	return (pwcopy);
}

/*
 * Everything that needs the privileges the broker is about to give up:
 * the state dir, the ports, the certificate and key (made at first start,
 * owned by pw), and the ticket key.
 */
static void
broker_open(const struct broker_opts *o, const struct passwd *pw)
{
	char	*cause = NULL, *dir = NULL;
	uid_t	 owner = (uid_t)-1;
	gid_t	 group = (gid_t)-1;

	if ((broker->state_dir = realpath(o->state_dir, NULL)) == NULL)
		fatal("state dir %s (start qmpd first, or pass --state-dir)",
		    o->state_dir);
	if (o->socket_path == NULL)
		xasprintf(&broker->socket_path, "%s/qmpd.sock",
		    broker->state_dir);
	else
		broker->socket_path = xstrdup(o->socket_path);
	broker_fds();
	/*
	 * Cluster mode: its certificates are read now, before the drop, and
	 * the RDP gateway's "qmpd" is the relay to the hosts.
	 */
	broker->relay_fd = -1;
	if (o->cluster != NULL) {
		if ((broker->cluster = cluster_conf_load(o->cluster,
		    &cause)) == NULL || (broker->cluster_tls =
		    cluster_tls_context(broker->cluster, &cause)) == NULL)
			fatalx("%s", cause);
		free(broker->socket_path);
		xasprintf(&broker->socket_path, "%s/broker-cluster.sock",
		    broker->state_dir);
		if ((broker->relay_fd = cluster_relay_open(broker->socket_path,
		    pw != NULL && geteuid() == 0 ? pw->pw_uid : (uid_t)-1,
		    pw != NULL ? pw->pw_gid : (gid_t)-1, &cause)) == -1)
			fatalx("%s", cause);
	}

	if ((broker->https_fd = listen_open(&broker->https, &cause)) == -1 ||
	    (broker->proxy_fd = listen_open(&broker->spice_proxy,
	    &cause)) == -1 || rdpgw_open(&cause) != 0)
		fatalx("%s", cause);
	if (o->cert != NULL) {
		broker->cert_path = xstrdup(o->cert);
		broker->key_path = xstrdup(o->key);
	} else {
		xasprintf(&dir, "%s/broker", broker->state_dir);
		xasprintf(&broker->cert_path, "%s/cert.pem", dir);
		xasprintf(&broker->key_path, "%s/key.pem", dir);
	}
	if (pw != NULL) {
		if (geteuid() == 0)
			owner = pw->pw_uid;
		group = pw->pw_gid;
	}
	if ((broker->ssl_ctx = tls_context(dir, broker->cert_path,
	    broker->key_path, owner, group, &cause)) == NULL)
		fatalx("%s", cause);
	free(dir);
	broker->self_signed = broker_self_signed(broker->ssl_ctx);
	if (RAND_bytes(broker->ticket_key, sizeof broker->ticket_key) != 1)
		fatalx("RAND_bytes: no randomness for the ticket key");
}

/*
 * Detach, start the RDP gateway (it reads its key: still before the
 * drop), drop to pw for good, and start everything else on the loop.
 */
static void
broker_start(const struct passwd *pw, int verbose)
{
	char	*cause = NULL;

	if (!broker->foreground)
		daemon_detach();
	log_init("qdesk-broker", broker->foreground, verbose);
	if (broker->self_signed)
		log_warnx("serving a self-signed certificate (%s): browsers "
		    "and RDP clients cannot verify this broker, and .rdp files "
		    "carry 'authentication level:i:0' so that clients connect "
		    "anyway; a deployment must install a real certificate "
		    "(--cert FILE --key FILE, or in place of %s and its key)",
		    broker->cert_path, broker->cert_path);
	signal(SIGPIPE, SIG_IGN);
	if ((broker->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if (rdpgw_start(broker->base, &cause) != 0)
		fatalx("RDP gateway on %s: %s", broker->rdp.text, cause);
	if (broker->cluster != NULL && (cluster_start(broker->base,
	    broker->cluster_tls, &cause) != 0 || cluster_relay_start(
	    broker->base, broker->relay_fd, &cause) != 0))
		fatalx("cluster: %s", cause);
	if (pw != NULL && geteuid() == 0)
		broker_drop(pw);

	portal_session_init(broker->base);
	novnc_load();
	if (http_start(broker->base, broker->https_fd, broker->ssl_ctx,
	    &cause) != 0 || proxy_start(broker->base, broker->proxy_fd,
	    &cause) != 0)
		fatalx("%s", cause);
	if (broker->cluster == NULL)
		qmpc_start(broker->base, broker->socket_path);
	log_info("qdesk-broker %s ready as uid %ld: https %s, spice proxy %s, "
	    "rdp %s, qmpd %s", QDESK_VERSION, (long)geteuid(),
	    broker->https.text, broker->spice_proxy.text, rdpgw_enabled() ?
	    broker->rdp.text : "off", broker->cluster != NULL ?
	    broker->cluster->etcd : broker->socket_path);
}

/* After the loop: end every service, then free what main made. */
static void
broker_stop(void)
{
	rdpgw_stop();
	api_session_free();
	qmpc_stop();
	cluster_relay_stop();
	cluster_stop();
	http_stop();
	novnc_unload();
	proxy_stop();
	portal_session_clear();
	event_base_free(broker->base);
	SSL_CTX_free(broker->ssl_ctx);
	explicit_bzero(broker->ticket_key, sizeof broker->ticket_key);
}

int
main(int argc, char **argv)
{
	struct broker_opts	 o;
	struct event		*ev_term, *ev_int, *ev_hup;
	struct passwd		*pw, pwcopy;

	broker = xcalloc(1, sizeof *broker);
	broker->https_fd = broker->proxy_fd = broker->rdp_fd = -1;
	broker->console_ttl = BROKER_CONSOLE_TTL;
	broker->session_idle = BROKER_SESSION_IDLE;
	broker->max_conns = CONNLIMIT_MAX;
	broker->max_conns_addr = CONNLIMIT_PER_ADDR;
	broker->login_refill = BROKER_LOGIN_REFILL;
	broker_args(argc, argv, &o);
	log_init("qdesk-broker", 1, o.verbose);
	broker_addresses(&o);
	pw = broker_user(&pwcopy);
	broker_open(&o, pw);
	broker_start(pw, o.verbose);

	ev_term = evsignal_new(broker->base, SIGTERM, broker_sigterm, NULL);
	ev_int = evsignal_new(broker->base, SIGINT, broker_sigterm, NULL);
	ev_hup = evsignal_new(broker->base, SIGHUP, broker_sighup, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);
	event_base_dispatch(broker->base);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);

	broker_stop();
	if (pw != NULL)
		free(pw->pw_name);
	log_info("exited");
	return (0);
}
