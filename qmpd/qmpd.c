/*
 * qmpd: the root daemon. Opens the state, re-attaches to every QEMU a
 * previous qmpd left running, listens on the admin socket, and runs one
 * libevent loop until SIGTERM, which leaves every VM running.
 */
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

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

#include "img.h"
#include "cluster.h"
#include "daemon.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "proc.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

struct qmpd	*qmpd;

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: qmpd [-fv] [--state-dir DIR] [--socket PATH] "
	    "[--vm-uids FIRST-LAST]\n            [--spice-ports FIRST-LAST] "
	    "[--broker-user USER] "
	    "[--qemu BINARY]\n            [--boot-cap N] [--metrics [ADDR:]PORT] "
	    "[--cluster FILE]\n            [--listen ADDR:PORT]\n");
	exit(2);
}

static void
qmpd_sigchld(evutil_socket_t sig, short events, void *arg)
{
	pid_t	pid;
	int	status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (img_job_reaped(pid, status))
			continue;
		if (!proc_reaped(pid, status))
			vm_exit_reaped(pid, status);
	}
}

static void
qmpd_sigterm(evutil_socket_t sig, short events, void *arg)
{
	log_info("signal %d: exiting, VMs keep running", (int)sig);
	qmpd->exiting = 1;
	event_base_loopbreak(qmpd->base);
}

static void
qmpd_sighup(evutil_socket_t sig, short events, void *arg)
{
	log_info("SIGHUP: nothing to reload yet");
}

/* One qmpd per state dir: a second one would fight over every VM. */
static void
qmpd_lock(void)
{
	char	*path;
	int	 fd;

	xasprintf(&path, "%s/qmpd.lock", qmpd->state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		fatal("open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) == -1)
		fatalx("another qmpd is running on %s", qmpd->state_dir);
	free(path);
	/* fd stays open for the daemon's life. */
}

/*
 * Who hears qmpd's events, in this order: the admin event stream, SPICE
 * sessions, the boot queue, pools, metrics and the log. Before the
 * re-attach, whose state changes they all act on.
 */
static void
qmpd_listen(void)
{
	notify_listen(server_event, NULL);
	notify_listen(session_event, NULL);
	notify_listen(boot_queue_event, NULL);
	/* Pools are this host's, or the cluster's (cluster-pool.c). */
	notify_listen(qmpd->cluster != NULL ? cluster_pool_event : pool_event,
	    NULL);
	notify_listen(metrics_event, NULL);
	notify_listen(eventlog_event, NULL);
}

/* What the command line asks for. */
struct qmpd_opts {
	const char	*state_dir;
	const char	*socket_path;
	const char	*vm_uids;	/* NULL: vm-uid.c's default */
	const char	*spice_ports;	/* NULL: vm.c's default */
	const char	*broker_user;
	const char	*metrics;	/* --metrics, or NULL */
	const char	*cluster;	/* --cluster FILE, or NULL */
	const char	*listen;	/* --listen, or the file's, or NULL */
	int		 foreground;
	int		 verbose;
};

/* The command line, or usage and exit 2. */
static void
qmpd_parse(int argc, char **argv, struct qmpd_opts *o)
{
	static const struct option longopts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "vm-uids", required_argument, NULL, 'u' },
		{ "spice-ports", required_argument, NULL, 'p' },
		{ "broker-user", required_argument, NULL, 'b' },
		{ "qemu", required_argument, NULL, 'q' },
		{ "boot-cap", required_argument, NULL, 'B' },
		{ "metrics", required_argument, NULL, 'm' },
		{ "cluster", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int	ch;

	memset(o, 0, sizeof *o);
	o->state_dir = "/var/lib/qdesk";
	while ((ch = getopt_long(argc, argv, "fvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			o->foreground = 1;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'd':
			o->state_dir = optarg;
			break;
		case 's':
			o->socket_path = optarg;
			break;
		case 'u':
			o->vm_uids = optarg;
			break;
		case 'p':
			o->spice_ports = optarg;
			break;
		case 'b':
			o->broker_user = optarg;
			break;
		case 'q':
			qmpd->qemu_binary = optarg;
			break;
		case 'B':
			boot_queue_cap = atoi(optarg);
			if (boot_queue_cap < 0 || boot_queue_cap > 1000)
				usage();
			break;
		case 'm':
			o->metrics = optarg;
			break;
		case 'c':
			o->cluster = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
}

/* The state dir, the socket path and the users: checked before detaching. */
static void
qmpd_configure(struct qmpd_opts *o)
{
	struct group	*gr;
	struct passwd	*pw;
	char		*cause = NULL;

	umask(022);
	if (mkdir(o->state_dir, 0711) == -1 && errno != EEXIST)
		fatal("mkdir %s", o->state_dir);
	qmpd->state_dir = realpath(o->state_dir, NULL);
	if (qmpd->state_dir == NULL)
		fatal("%s", o->state_dir);
	chmod(qmpd->state_dir, 0711);
	if (o->socket_path == NULL)
		xasprintf(&qmpd->socket_path, "%s/qmpd.sock", qmpd->state_dir);
	else
		qmpd->socket_path = xstrdup(o->socket_path);
	qmpd->foreground = o->foreground;
	if (o->cluster != NULL &&
	    (qmpd->cluster = cluster_conf_load(o->cluster, &cause)) == NULL)
		fatalx("%s", cause);
	if (o->listen == NULL && qmpd->cluster != NULL)
		o->listen = qmpd->cluster->listen;
	if (o->listen != NULL && (qmpd->cluster == NULL ||
	    cluster_listen_parse(o->listen, &(struct sockaddr_storage){ 0 },
	    &(int){ 0 }, &cause) != 0))
		fatalx("%s", cause != NULL ? cause : "--listen needs "
		    "--cluster FILE (its ca, cert and key)");
	if (vm_uid_init(o->vm_uids, &cause) != 0)
		fatalx("%s", cause);
	if (o->spice_ports != NULL && vm_port_range(o->spice_ports, &cause) != 0)
		fatalx("%s", cause);
	qmpd->admin_gid = (gr = getgrnam("qdesk")) != NULL ? gr->gr_gid :
	    (gid_t)-1;
	qmpd->broker_uid = (uid_t)-1;
	if (o->broker_user != NULL) {
		if ((pw = getpwnam(o->broker_user)) == NULL)
			fatalx("no broker user %s", o->broker_user);
		qmpd->broker_uid = pw->pw_uid;
	}
	if (o->metrics != NULL && metrics_check(o->metrics, &cause) != 0)
		fatalx("%s", cause);
	if (access(qmpd->qemu_binary, X_OK) != 0)
		fatal("%s (install qemu-system-x86)", qmpd->qemu_binary);
}

/* SIGCHLD, SIGTERM, SIGINT and SIGHUP as events of the loop. */
static void
qmpd_signals(struct event *evs[4])
{
	evs[0] = evsignal_new(qmpd->base, SIGCHLD, qmpd_sigchld, NULL);
	evs[1] = evsignal_new(qmpd->base, SIGTERM, qmpd_sigterm, NULL);
	evs[2] = evsignal_new(qmpd->base, SIGINT, qmpd_sigterm, NULL);
	evs[3] = evsignal_new(qmpd->base, SIGHUP, qmpd_sighup, NULL);
	for (int i = 0; i < 4; i++)
		evsignal_add(evs[i], NULL);
}

/*
 * The state (VMs, images, SPICE TLS, networks), the listeners, the
 * re-attach to running QEMUs, the admin socket, pools and autostart.
 */
static void
qmpd_start(const struct qmpd_opts *o)
{
	char	*dbdir, *cause = NULL;

	xasprintf(&dbdir, "%s/db", qmpd->state_dir);
	if ((qmpd->db = db_open(dbdir, &cause)) == NULL)
		fatalx("%s", cause);
	free(dbdir);
	qmpd->kvm_ok = accel_kvm_usable();
	if (vm_attach_load(&cause) != 0)
		fatalx("%s", cause);
	if (img_init(&cause) != 0)
		fatalx("%s", cause);
	if (spice_tls_init(&cause) != 0)
		fatalx("SPICE TLS: %s", cause);
	if (net_init(&cause) != 0)
		fatalx("%s", cause);
	qmpd_listen();
	vm_incoming_recover();
	vm_attach_all();
	vm_incoming_recover_dead();
	/* In a cluster, users, departments and pools are etcd's (userdb.h). */
	if (qmpd->cluster != NULL)
		userdb_use(&userdb_etcd);
	if (qmpd->cluster != NULL && cluster_init(&cause) != 0)
		fatalx("cluster: %s", cause);
	if (server_listen(qmpd->socket_path, &cause) != 0)
		fatalx("%s", cause);
	if (o->metrics != NULL && metrics_listen(o->metrics, &cause) != 0)
		fatalx("%s", cause);
	if (o->listen != NULL && cluster_listen_start(o->listen, &cause) != 0)
		fatalx("%s", cause);
	if (qmpd->cluster != NULL)
		cluster_pool_kick();
	else
		pool_init();
	/* In a cluster, placement says what runs here, not LMDB. */
	if (qmpd->cluster == NULL)
		boot_queue_autostart();
}

int
main(int argc, char **argv)
{
	struct qmpd_opts	 o;
	struct event		*evs[4];
	int			 i;

	qmpd = xcalloc(1, sizeof *qmpd);
	qmpd->qemu_binary = "/usr/bin/qemu-system-x86_64";
	qmpd_parse(argc, argv, &o);
	log_init("qmpd", 1, o.verbose);
	if (geteuid() != 0)
		fatalx("qmpd must run as root (it opens TAPs and runs each "
		    "QEMU as a uid of its own)");
	qmpd_configure(&o);

	qmpd_lock();
	if (!o.foreground)
		daemon_detach();
	log_init("qmpd", o.foreground, o.verbose);
	qmpd->started = time(NULL);
	/* QEMU grandchildren reparent to us: their exit status is ours. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
	if ((qmpd->base = event_base_new()) == NULL)
		fatalx("event_base_new");
	qmpd_signals(evs);
	qmpd_start(&o);
	log_info("qmpd %s ready on %s (state %s, kvm %s, QEMU as %s)",
	    QDESK_VERSION, qmpd->socket_path, qmpd->state_dir,
	    qmpd->kvm_ok ? "yes" : "no", qmpd->vm_user);

	if (!qmpd->exiting)
		event_base_dispatch(qmpd->base);

	vm_shutdown_all();
	net_shutdown();
	server_close();
	cluster_listen_stop();
	metrics_close();
	cluster_close();
	db_close(qmpd->db);
	for (i = 0; i < 4; i++)
		event_free(evs[i]);
	event_base_free(qmpd->base);
	log_info("exited");
	return (0);
}
