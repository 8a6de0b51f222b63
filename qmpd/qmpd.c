/*
 * qmpd: the root daemon. Opens the state, re-attaches to every QEMU a
 * previous qmpd left running, listens on the admin socket, and runs one
 * libevent loop until SIGTERM, which leaves every VM running.
 */
#include <sys/file.h>
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
#include "daemon.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "proc.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

struct qmpd	*qmpd;

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: qmpd [-fv] [--state-dir DIR] [--socket PATH] "
	    "[--vm-uids FIRST-LAST]\n            [--broker-user USER] "
	    "[--qemu BINARY]\n            [--boot-cap N]\n");
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
			vm_reaped(pid, status);
	}
}

static void
qmpd_sigterm(evutil_socket_t sig, short events, void *arg)
{
	log_info("signal %d: exiting, VMs keep running", (int)sig);
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


int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "vm-uids", required_argument, NULL, 'u' },
		{ "broker-user", required_argument, NULL, 'b' },
		{ "qemu", required_argument, NULL, 'q' },
		{ "boot-cap", required_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct event	*ev_chld, *ev_term, *ev_int, *ev_hup;
	struct group	*gr;
	struct passwd	*pw;
	const char	*state_dir = "/var/lib/qdesk", *socket_path = NULL;
	const char	*vm_uids = NULL, *broker_user = NULL;
	char		*dbdir, *cause = NULL;
	int		 ch, foreground = 0, verbose = 0;

	qmpd = xcalloc(1, sizeof *qmpd);
	qmpd->qemu_binary = "/usr/bin/qemu-system-x86_64";
	while ((ch = getopt_long(argc, argv, "fvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			foreground = 1;
			break;
		case 'v':
			verbose++;
			break;
		case 'd':
			state_dir = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'u':
			vm_uids = optarg;
			break;
		case 'b':
			broker_user = optarg;
			break;
		case 'q':
			qmpd->qemu_binary = optarg;
			break;
		case 'B':
			boot_queue_cap = atoi(optarg);
			if (boot_queue_cap < 0 || boot_queue_cap > 1000)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	log_init("qmpd", 1, verbose);
	if (geteuid() != 0)
		fatalx("qmpd must run as root (it opens TAPs and runs each "
		    "QEMU as a uid of its own)");

	umask(022);
	if (mkdir(state_dir, 0711) == -1 && errno != EEXIST)
		fatal("mkdir %s", state_dir);
	qmpd->state_dir = realpath(state_dir, NULL);
	if (qmpd->state_dir == NULL)
		fatal("%s", state_dir);
	chmod(qmpd->state_dir, 0711);
	if (socket_path == NULL)
		xasprintf(&qmpd->socket_path, "%s/qmpd.sock", qmpd->state_dir);
	else
		qmpd->socket_path = xstrdup(socket_path);
	qmpd->foreground = foreground;
	if (vm_uid_init(vm_uids, &cause) != 0)
		fatalx("%s", cause);
	qmpd->admin_gid = (gr = getgrnam("qdesk")) != NULL ? gr->gr_gid :
	    (gid_t)-1;
	qmpd->broker_uid = (uid_t)-1;
	if (broker_user != NULL) {
		if ((pw = getpwnam(broker_user)) == NULL)
			fatalx("no broker user %s", broker_user);
		qmpd->broker_uid = pw->pw_uid;
	}
	if (access(qmpd->qemu_binary, X_OK) != 0)
		fatal("%s (install qemu-system-x86)", qmpd->qemu_binary);

	qmpd_lock();
	if (!foreground)
		daemon_detach();
	log_init("qmpd", foreground, verbose);
	qmpd->started = time(NULL);
	/* QEMU grandchildren reparent to us: their exit status is ours. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);

	xasprintf(&dbdir, "%s/db", qmpd->state_dir);
	if ((qmpd->db = db_open(dbdir, &cause)) == NULL)
		fatalx("%s", cause);
	free(dbdir);
	qmpd->kvm_ok = accel_kvm_usable();
	if ((qmpd->base = event_base_new()) == NULL)
		fatalx("event_base_new");

	ev_chld = evsignal_new(qmpd->base, SIGCHLD, qmpd_sigchld, NULL);
	ev_term = evsignal_new(qmpd->base, SIGTERM, qmpd_sigterm, NULL);
	ev_int = evsignal_new(qmpd->base, SIGINT, qmpd_sigterm, NULL);
	ev_hup = evsignal_new(qmpd->base, SIGHUP, qmpd_sighup, NULL);
	evsignal_add(ev_chld, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);

	if (vm_load_all(&cause) != 0)
		fatalx("%s", cause);
	if (img_init(&cause) != 0)
		fatalx("%s", cause);
	if (spice_tls_init(&cause) != 0)
		fatalx("SPICE TLS: %s", cause);
	if (net_init(&cause) != 0)
		fatalx("%s", cause);
	vm_reattach_all();
	if (server_listen(qmpd->socket_path, &cause) != 0)
		fatalx("%s", cause);
	pool_init();
	vm_autostart_all();
	log_info("qmpd %s ready on %s (state %s, kvm %s, QEMU as %s)",
	    QDESK_VERSION, qmpd->socket_path, qmpd->state_dir,
	    qmpd->kvm_ok ? "yes" : "no", qmpd->vm_user);

	event_base_dispatch(qmpd->base);

	vm_shutdown_all();
	net_shutdown();
	server_close();
	db_close(qmpd->db);
	event_free(ev_chld);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_base_free(qmpd->base);
	log_info("exited");
	return (0);
}
