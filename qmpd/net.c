/*
 * Networks at run time: each one a qdesk bridge with its gateway address,
 * a record in the networks table, and (nat and isolated) a dnsmasq child
 * that qmpd restarts when it dies.  At start every network the host lost
 * (a reboot) is brought back, and the nft ruleset is rebuilt whole from
 * the networks and the TAPs of running VMs; later changes reapply it in a
 * child process, one run at a time.
 */
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "proc.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#include "dnsmasq.h"
#include "ipam.h"
#include "link.h"
#include "net.h"
#include "netctl.h"
#include "nft.h"

#define NET_NFT_TIMEOUT_MS	15000
#define NET_DNSMASQ_QUICK	5	/* seconds: a death this soon counts */
#define NET_DNSMASQ_DELAY_MAX	30	/* seconds between restarts, at most */
#define NET_DNSMASQ_HUP_AGE	1	/* seconds before its handler is in */

struct nets		 nets = TAILQ_HEAD_INITIALIZER(nets);
struct netctl_ipam	*net_ipam;
static char		*net_dir;	/* DIR/net: dnsmasq's files */

/* Callers waiting for a ruleset with their change in it. */
struct net_nft_waiter {
	net_nft_cb			 cb;
	void				*arg;
	TAILQ_ENTRY(net_nft_waiter)	 entry;
};
TAILQ_HEAD(net_nft_waiters, net_nft_waiter);
static struct net_nft_waiters	 net_nft_next =
    TAILQ_HEAD_INITIALIZER(net_nft_next);
static struct net_nft_waiters	 net_nft_running =
    TAILQ_HEAD_INITIALIZER(net_nft_running);
static pid_t			 net_nft_pid = -1;
static int			 net_nft_dirty;

static int	net_dnsmasq_start(struct net *, char **);

struct net *
net_find(const char *name)
{
	struct net	*n;

	TAILQ_FOREACH(n, &nets, entry) {
		if (strcmp(n->n.name, name) == 0)
			return (n);
	}
	return (NULL);
}

/* Networks are kept in name order, as the database has them. */
static void
net_insert(struct net *n)
{
	struct net	*m;

	TAILQ_FOREACH(m, &nets, entry) {
		if (strcmp(m->n.name, n->n.name) > 0) {
			TAILQ_INSERT_BEFORE(m, n, entry);
			return;
		}
	}
	TAILQ_INSERT_TAIL(&nets, n, entry);
}

static void
net_free(struct net *n)
{
	if (n->dnsmasq_timer != NULL)
		event_free(n->dnsmasq_timer);
	if (n->hup_timer != NULL)
		event_free(n->hup_timer);
	netctl_net_clear(&n->n);
	free(n);
}

/* The ruleset text for the networks and running TAPs as they are now. */
static char *
net_nft_text(char **cause)
{
	struct netctl_net	*defs;
	struct netctl_nft_tap	*taps;
	struct net		*n;
	size_t			 nnets = 0, ntaps;
	char			*text;

	TAILQ_FOREACH(n, &nets, entry)
		nnets++;
	defs = xcalloc(nnets + 1, sizeof *defs);
	nnets = 0;
	TAILQ_FOREACH(n, &nets, entry)
		defs[nnets++] = n->n;		/* shallow: borrowed strings */
	vm_net_taps(&taps, &ntaps);
	text = netctl_nft_ruleset(defs, nnets, taps, ntaps, cause);
	free(defs);
	return (text);
}

static void	net_nft_start(void);

static void
net_nft_finish(struct net_nft_waiters *list, const char *err)
{
	struct net_nft_waiter	*w;

	while ((w = TAILQ_FIRST(list)) != NULL) {
		TAILQ_REMOVE(list, w, entry);
		if (w->cb != NULL)
			w->cb(err, w->arg);
		free(w);
	}
}

/* nft is done: answer the run's waiters, then run again if asked since. */
static void
net_nft_done(pid_t pid, int status, const char *output, void *arg)
{
	struct net_nft_waiters	 done = TAILQ_HEAD_INITIALIZER(done);
	struct net_nft_waiter	*w;
	char			*err = NULL, st[64];

	net_nft_pid = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		xasprintf(&err, "nft failed (%s): %s", proc_status_text(status,
		    st, sizeof st), *output != '\0' ? output : "no message");
		log_warnx("%s", err);
	} else
		log_debug("nft ruleset applied");
	while ((w = TAILQ_FIRST(&net_nft_running)) != NULL) {
		TAILQ_REMOVE(&net_nft_running, w, entry);
		TAILQ_INSERT_TAIL(&done, w, entry);
	}
	net_nft_finish(&done, err);
	free(err);
	if (net_nft_pid == -1 && net_nft_dirty)
		net_nft_start();
}

/* One nft run with everything asked for so far. */
static void
net_nft_start(void)
{
	struct net_nft_waiter	*w;
	char			*text, *cause = NULL;

	net_nft_dirty = 0;
	while ((w = TAILQ_FIRST(&net_nft_next)) != NULL) {
		TAILQ_REMOVE(&net_nft_next, w, entry);
		TAILQ_INSERT_TAIL(&net_nft_running, w, entry);
	}
	if ((text = net_nft_text(&cause)) == NULL) {
		log_warnx("nft ruleset: %s", cause);
		net_nft_finish(&net_nft_running, cause);
		free(cause);
		return;
	}
	net_nft_pid = proc_spawn(netctl_nft_argv(), text, -1,
	    NET_NFT_TIMEOUT_MS, net_nft_done, NULL, &cause);
	free(text);
	if (net_nft_pid == -1) {
		log_warnx("nft: %s", cause);
		net_nft_finish(&net_nft_running, cause);
		free(cause);
	}
}

void
net_nft_update(net_nft_cb cb, void *arg)
{
	struct net_nft_waiter	*w;

	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&net_nft_next, w, entry);
	net_nft_dirty = 1;
	if (net_nft_pid == -1)
		net_nft_start();
}

/* The bridge, its gateway and (bridge mode) its uplink, as they should be. */
static int
net_bring_up(struct net *n, char **cause)
{
	char	gw[NETCTL_CIDRSTRLEN];
	int	exists;

	if ((exists = netctl_link_exists(n->n.bridge, cause)) < 0)
		return (-1);
	if (!exists) {
		if (netctl_bridge_create(n->n.bridge, cause) != 0)
			return (-1);
		log_info("network %s: bridge %s created", n->n.name,
		    n->n.bridge);
	}
	if (n->n.mode != NETCTL_BRIDGE) {
		netctl_subnet_gateway_cidr(&n->n.subnet, gw, sizeof gw);
		if (netctl_addr_add(n->n.bridge, gw, cause) != 0)
			return (-1);
	}
	if (netctl_link_up(n->n.bridge, cause) != 0)
		return (-1);
	if (n->n.mode == NETCTL_BRIDGE &&
	    netctl_uplink_enslave(n->n.uplink, n->n.bridge, cause) != 0)
		return (-1);
	if (n->n.mode == NETCTL_NAT && netctl_ip_forward(cause) != 0)
		return (-1);
	return (0);
}

static char *
net_path(const struct net *n, const char *suffix)
{
	return (netctl_dnsmasq_path(&n->n, net_dir, suffix));
}

/* Rewrites the dnsmasq files of n from its committed leases. */
static int
net_dnsmasq_files(struct net *n, char **cause)
{
	struct netctl_lease	*leases;
	size_t			 count;
	int			 rc;

	if (netctl_ipam_leases(net_ipam, n->n.name, &leases, &count,
	    cause) == -1)
		return (-1);
	rc = netctl_dnsmasq_write(&n->n, net_dir, leases, count, cause);
	netctl_leases_free(leases, count);
	return (rc);
}

static void
net_dnsmasq_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct net	*n = arg;
	struct timeval	 tv = { NET_DNSMASQ_DELAY_MAX, 0 };
	char		*cause = NULL;

	if (n->dnsmasq != -1)
		return;
	if (net_dnsmasq_start(n, &cause) != 0) {
		log_warnx("network %s: %s", n->n.name, cause);
		free(cause);
		/* Try again later, as if it had died at once. */
		n->dnsmasq_quick++;
		evtimer_add(n->dnsmasq_timer, &tv);
	}
}

/* dnsmasq is gone: restart it at once, or later if it keeps dying. */
static void
net_dnsmasq_exited(pid_t pid, int status, const char *output, void *arg)
{
	struct net	*n = arg;
	struct timeval	 tv = { 0, 0 };
	char		 st[64], *cause = NULL;
	int		 delay;

	if (n->dnsmasq != pid)
		return;
	n->dnsmasq = -1;
	if (n->dnsmasq_clean) {
		/* Asked for: an address was released. */
		if (net_dnsmasq_start(n, &cause) == 0)
			return;
		log_warnx("network %s: %s", n->n.name, cause);
		free(cause);
	}
	if (time(NULL) - n->dnsmasq_started < NET_DNSMASQ_QUICK)
		n->dnsmasq_quick++;
	else
		n->dnsmasq_quick = 0;
	delay = n->dnsmasq_quick == 0 ? 0 : 1 << (n->dnsmasq_quick - 1);
	if (delay > NET_DNSMASQ_DELAY_MAX)
		delay = NET_DNSMASQ_DELAY_MAX;
	log_warnx("network %s: dnsmasq pid %ld died (%s), restarting in %d s "
	    "(log %s/%s.log)", n->n.name, (long)pid, proc_status_text(status,
	    st, sizeof st), delay, net_dir, n->n.name);
	if (n->dnsmasq_timer == NULL)
		n->dnsmasq_timer = evtimer_new(qmpd->base,
		    net_dnsmasq_timer_cb, n);
	tv.tv_sec = delay;
	evtimer_add(n->dnsmasq_timer, &tv);
}

/*
 * Starts n's dnsmasq on its current files; after a release, with an
 * empty lease database so that the released address is free at once
 * (DHCP is static and authoritative: running guests keep theirs).
 */
static int
net_dnsmasq_start(struct net *n, char **cause)
{
	char	**argv, *path;
	int	  fd;

	if (net_dnsmasq_files(n, cause) != 0)
		return (-1);
	if (n->dnsmasq_clean) {
		path = net_path(n, "leases");
		unlink(path);
		free(path);
		n->dnsmasq_clean = 0;
	}
	path = net_path(n, "log");
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		free(path);
		return (-1);
	}
	free(path);
	argv = netctl_dnsmasq_argv(&n->n, net_dir);
	n->dnsmasq = proc_spawn(argv, NULL, fd, 0, net_dnsmasq_exited, n,
	    cause);
	netctl_argv_free(argv);
	close(fd);
	if (n->dnsmasq == -1)
		return (-1);
	n->dnsmasq_started = time(NULL);
	log_info("network %s: dnsmasq pid %ld", n->n.name, (long)n->dnsmasq);
	return (0);
}

static void
net_dnsmasq_stop(struct net *n)
{
	if (n->dnsmasq_timer != NULL)
		evtimer_del(n->dnsmasq_timer);
	if (n->hup_timer != NULL)
		evtimer_del(n->hup_timer);
	if (n->dnsmasq == -1)
		return;
	proc_forget(n->dnsmasq);
	kill(n->dnsmasq, SIGTERM);
	n->dnsmasq = -1;
}

/*
 * A dnsmasq a previous qmpd left for this network (it outlives qmpd, as
 * the VMs do, so that leases renew meanwhile) makes way for ours.
 * Start-up only: waits up to 3 s for it to go.
 */
static void
net_dnsmasq_replace(struct net *n)
{
	struct pollfd	 pfd;
	char		*path, *conf, buf[4096];
	long		 pid = -1;
	ssize_t		 len, i;
	FILE		*f;
	int		 fd, ours = 0;

	path = net_path(n, "pid");
	if ((f = fopen(path, "re")) != NULL) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = -1;
		fclose(f);
	}
	free(path);
	if (pid <= 1)
		return;
	snprintf(buf, sizeof buf, "/proc/%ld/cmdline", pid);
	if ((fd = open(buf, O_RDONLY | O_CLOEXEC)) == -1)
		return;
	len = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (len <= 0)
		return;
	buf[len] = '\0';
	path = net_path(n, "conf");
	xasprintf(&conf, "--conf-file=%s", path);
	free(path);
	for (i = 0; i < len; i += strlen(buf + i) + 1) {
		if (strcmp(buf + i, conf) == 0)
			ours = 1;
	}
	free(conf);
	if (!ours)
		return;
	log_info("network %s: replacing dnsmasq pid %ld", n->n.name, pid);
	if ((pfd.fd = syscall(SYS_pidfd_open, (pid_t)pid, 0)) == -1)
		return;
	pfd.events = POLLIN;
	kill(pid, SIGTERM);
	if (poll(&pfd, 1, 2000) != 1) {
		kill(pid, SIGKILL);
		poll(&pfd, 1, 1000);
	}
	close(pfd.fd);
}

static int
net_load_one(const char *key, json_t *rec, void *arg)
{
	struct net	*n;
	char		*cause = NULL;

	n = xcalloc(1, sizeof *n);
	n->dnsmasq = -1;
	if (netctl_net_from_json(&n->n, key, rec, &cause) != 0) {
		log_warnx("%s", cause);
		free(cause);
		free(n);
		return (0);
	}
	net_insert(n);
	return (0);
}

/*
 * At daemon start, after the VMs are loaded and before they are
 * re-attached: networks from the database, brought back if the host lost
 * them, dnsmasq for each, and the ruleset applied before any guest runs.
 */
int
net_init(char **cause)
{
	struct netctl_nft_tap	*taps;
	struct net		*n;
	char			*why = NULL, *text;
	size_t			 ntaps;
	int			 count;

	xasprintf(&net_dir, "%s/net", qmpd->state_dir);
	if (mkdir(net_dir, 0755) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", net_dir, strerror(errno));
		return (-1);
	}
	/* dnsmasq rereads its host files as nobody. */
	chmod(net_dir, 0755);
	if ((net_ipam = netctl_ipam_open(qmpd->db, cause)) == NULL)
		return (-1);
	if ((count = db_foreach(qmpd->db, DB_NETWORKS, net_load_one, NULL,
	    cause)) < 0)
		return (-1);
	vm_net_init();

	TAILQ_FOREACH(n, &nets, entry) {
		if (net_bring_up(n, &why) != 0) {
			log_warnx("network %s: %s", n->n.name, why);
			free(why);
			why = NULL;
		}
	}
	vm_net_relink();
	TAILQ_FOREACH(n, &nets, entry) {
		if (n->n.mode == NETCTL_BRIDGE)
			continue;
		net_dnsmasq_replace(n);
		if (net_dnsmasq_start(n, &why) != 0) {
			log_warnx("network %s: %s", n->n.name, why);
			free(why);
			why = NULL;
		}
	}
	vm_net_taps(&taps, &ntaps);
	if (count > 0 || ntaps > 0) {
		if ((text = net_nft_text(&why)) == NULL ||
		    netctl_nft_apply(text, &why) != 0) {
			log_warnx("nft ruleset not applied: %s", why);
			free(why);
		}
		free(text);
	}
	log_info("%d networks loaded", count);
	return (0);
}

/* Daemon exit: dnsmasq keeps serving, as the VMs keep running. */
void
net_shutdown(void)
{
	struct net	*n;

	while ((n = TAILQ_FIRST(&nets)) != NULL) {
		TAILQ_REMOVE(&nets, n, entry);
		net_free(n);
	}
	net_nft_finish(&net_nft_next, "qmpd is shutting down");
	net_nft_finish(&net_nft_running, "qmpd is shutting down");
	proc_shutdown();
	netctl_ipam_free(net_ipam);
	net_ipam = NULL;
	netctl_link_close();
	free(net_dir);
}

/* Undoes what net_bring_up did for a new network. */
static void
net_take_down(struct net *n)
{
	char	*cause = NULL;

	if (n->n.mode == NETCTL_BRIDGE && netctl_uplink_release(n->n.uplink,
	    n->n.bridge, &cause) != 0) {
		log_warnx("network %s: %s", n->n.name, cause);
		free(cause);
		cause = NULL;
	}
	if (netctl_bridge_delete(n->n.bridge, &cause) != 0 &&
	    netctl_link_exists(n->n.bridge, NULL) != 0) {
		log_warnx("network %s: %s", n->n.name, cause);
	}
	free(cause);
}

static void
net_remove_files(struct net *n)
{
	static const char	*suffixes[] = { "conf", "dhcp-hosts", "hosts",
				    "pid", "leases", "log" };
	char			*path;
	size_t			 i;

	for (i = 0; i < nitems(suffixes); i++) {
		path = net_path(n, suffixes[i]);
		unlink(path);
		free(path);
	}
}

struct net *
net_create(const struct netctl_net *def, char **cause)
{
	struct net	*n;
	json_t		*rec;
	char		*why = NULL;

	n = xcalloc(1, sizeof *n);
	n->dnsmasq = -1;
	n->n.name = xstrdup(def->name);
	n->n.bridge = xstrdup(def->bridge);
	n->n.subnet = def->subnet;
	n->n.mode = def->mode;
	n->n.uplink = def->uplink != NULL ? xstrdup(def->uplink) : NULL;

	/* A bridge of ours no record claims is a leftover: start afresh. */
	if (netctl_link_exists(n->n.bridge, NULL) == 1 &&
	    netctl_bridge_delete(n->n.bridge, cause) != 0)
		goto fail;
	/* From here onward, all failures need cleanup and use goto fail. */
	if (net_bring_up(n, cause) != 0)
		goto fail_down;
	rec = netctl_net_to_json(&n->n);
	if (db_put(qmpd->db, DB_NETWORKS, n->n.name, rec, cause) != 0) {
		json_decref(rec);
		goto fail_down;
	}
	json_decref(rec);
	if (n->n.mode != NETCTL_BRIDGE && net_dnsmasq_start(n, cause) != 0) {
		if (db_del(qmpd->db, DB_NETWORKS, n->n.name, &why) < 0) {
			log_warnx("network %s: %s", n->n.name, why);
			free(why);
		}
		goto fail_down;
	}
	net_insert(n);
	log_info("network %s: created (%s)", n->n.name,
	    netctl_mode_name(n->n.mode));
	return (n);
fail_down:
	net_take_down(n);
	net_remove_files(n);
fail:
	net_free(n);
	return (NULL);
}

int
net_destroy(struct net *n, char **cause)
{
	if (db_del(qmpd->db, DB_NETWORKS, n->n.name, cause) < 0)
		return (-1);
	net_dnsmasq_stop(n);
	net_take_down(n);
	net_remove_files(n);
	TAILQ_REMOVE(&nets, n, entry);
	log_info("network %s: removed", n->n.name);
	net_free(n);
	return (0);
}

static void
net_hup_cb(evutil_socket_t fd, short events, void *arg)
{
	struct net	*n = arg;

	if (n->dnsmasq != -1)
		kill(n->dnsmasq, SIGHUP);
}

void
net_leases_changed(const char *network, int released)
{
	struct net	*n;
	struct timeval	 tv = { NET_DNSMASQ_HUP_AGE, 0 };
	char		*cause = NULL;
	time_t		 age;

	if ((n = net_find(network)) == NULL || n->n.mode == NETCTL_BRIDGE)
		return;
	if (net_dnsmasq_files(n, &cause) != 0) {
		log_warnx("network %s: %s", n->n.name, cause);
		free(cause);
	}
	if (released)
		n->dnsmasq_clean = 1;
	if (n->dnsmasq == -1)
		return;		/* it reads them when it starts */
	if (released) {
		kill(n->dnsmasq, SIGTERM);
		return;
	}
	/* A SIGHUP before dnsmasq handles it would kill it: wait a bit. */
	age = time(NULL) - n->dnsmasq_started;
	if (age >= NET_DNSMASQ_HUP_AGE) {
		kill(n->dnsmasq, SIGHUP);
		return;
	}
	if (n->hup_timer == NULL)
		n->hup_timer = evtimer_new(qmpd->base, net_hup_cb, n);
	evtimer_add(n->hup_timer, &tv);
}

json_t *
net_to_json(const struct net *n, int detail)
{
	struct netctl_lease	*leases;
	json_t			*j, *def, *users, *a;
	char			 buf[NETCTL_CIDRSTRLEN], mac[NETCTL_MACSTRLEN];
	char			*cause = NULL;
	size_t			 count, i;

	/* The name first: tables show their columns in this order. */
	j = json_pack("{s:s}", "name", n->n.name);
	def = netctl_net_to_json(&n->n);
	json_object_update(j, def);
	json_decref(def);
	if (n->n.mode != NETCTL_BRIDGE) {
		netctl_ip_format(netctl_subnet_gateway(&n->n.subnet), buf,
		    sizeof buf);
		json_object_set_new(j, "gateway", json_string(buf));
		json_object_set_new(j, "dhcp", n->dnsmasq != -1 ?
		    json_integer(n->dnsmasq) : json_null());
	}
	json_object_set_new(j, "state", json_string(n->pending ? "creating" :
	    "up"));
	users = vm_net_users(n->n.name);
	if (!detail) {
		json_object_set_new(j, "vms", json_integer(
		    json_array_size(users)));
		json_decref(users);
		return (j);
	}
	json_object_set_new(j, "vms", users);
	if (netctl_ipam_leases(net_ipam, n->n.name, &leases, &count,
	    &cause) == -1) {
		log_warnx("network %s: %s", n->n.name, cause);
		free(cause);
		return (j);
	}
	a = json_array();
	for (i = 0; i < count; i++) {
		json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s}", "ip",
		    netctl_ip_format(leases[i].ip, buf, sizeof buf), "mac",
		    netctl_mac_format(leases[i].mac, mac, sizeof mac), "vm",
		    leases[i].vm, "nic", leases[i].nic));
	}
	netctl_leases_free(leases, count);
	json_object_set_new(j, "leases", a);
	return (j);
}
