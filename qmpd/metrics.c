/*
 * qmpd --metrics ADDR:PORT: the daemon's numbers in the Prometheus text
 * format, over plain HTTP from evhttp on the loop. Off unless asked;
 * loopback when only a port is given. A scrape reads the registry, two
 * small /proc files per running QEMU and the image directory, each with
 * a cap, so it stays in the low milliseconds with hundreds of VMs.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "log.h"
#include "metrics.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

/* Caps on the work of one scrape. */
#define METRICS_PROC_MAX	4096	/* QEMUs whose /proc is read */
#define METRICS_IMAGES_MAX	65536	/* image files stat'ed */

unsigned long long	 metrics_tickets;
unsigned long long	 metrics_lockouts;
unsigned long long	 metrics_logins;
unsigned long long	 metrics_login_failures;

static struct evhttp	*metrics_http;
static unsigned long long metrics_starts;
static unsigned long long metrics_stops;
static unsigned long long metrics_crashes;
static unsigned long long metrics_scrapes;

static const double	 metrics_qmp_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10
};
static struct metrics_hist metrics_qmp = {
	metrics_qmp_bounds, nitems(metrics_qmp_bounds), { 0 }, 0, 0
};

static void
metrics_qmp_rtt(double seconds)
{
	metrics_hist_observe(&metrics_qmp, seconds);
}

/* vm.state events count starts, stops and crashes as they happen. */
void
metrics_event(const char *event, const char *vm, json_t *fields, void *arg)
{
	const char	*state;

	if (strcmp(event, "vm.state") != 0)
		return;
	state = json_string_value(json_object_get(fields, "state"));
	if (state == NULL)
		return;
	if (strcmp(state, "starting") == 0)
		metrics_starts++;
	else if (strcmp(state, "stopped") == 0)
		metrics_stops++;
	else if (strcmp(state, "crashed") == 0)
		metrics_crashes++;
}

/* A small /proc file of pid into buf; -1 when the process has gone. */
static int
metrics_proc_read(pid_t pid, const char *what, char *buf, size_t len)
{
	char	path[64];
	ssize_t	n;
	int	fd;

	snprintf(path, sizeof path, "/proc/%ld/%s", (long)pid, what);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (-1);
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return (-1);
	buf[n] = '\0';
	return (0);
}

/* CPU seconds (user and system) and resident bytes of a QEMU. */
static int
metrics_proc(pid_t pid, double *cpu, double *rss)
{
	static long	 tick, page;
	char		 buf[1024], *p;
	unsigned long	 utime, stime, pages;

	if (tick == 0) {
		tick = sysconf(_SC_CLK_TCK);
		page = sysconf(_SC_PAGESIZE);
	}
	if (metrics_proc_read(pid, "stat", buf, sizeof buf) != 0)
		return (-1);
	/* After the command name, whatever it holds: state is field 3. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 2,
	    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
	    &stime) != 2)
		return (-1);
	if (metrics_proc_read(pid, "statm", buf, sizeof buf) != 0 ||
	    sscanf(buf, "%*u %lu", &pages) != 1)
		return (-1);
	*cpu = (double)(utime + stime) / tick;
	*rss = (double)pages * page;
	return (0);
}

/* Bytes the image store's files take on disk. */
static double
metrics_images(void)
{
	struct dirent	*de;
	struct stat	 st;
	char		*dir;
	DIR		*d;
	double		 sum = 0;
	int		 n = 0;

	xasprintf(&dir, "%s/images", qmpd->state_dir);
	d = opendir(dir);
	free(dir);
	if (d == NULL)
		return (0);
	while ((de = readdir(d)) != NULL && n++ < METRICS_IMAGES_MAX) {
		if (fstatat(dirfd(d), de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			sum += (double)st.st_blocks * 512;
	}
	closedir(d);
	return (sum);
}

/* VMs by state, and per running QEMU its CPU, RSS and SPICE clients. */
static void
metrics_vms(struct textbuf *tb)
{
	static const enum vm_state states[] = {
		VM_STOPPED, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING,
		VM_CRASHED
	};
	struct vm	*vm;
	size_t		 i;
	int		 count[nitems(states)] = { 0 }, n = 0;
	double		 cpu, rss;
	struct textbuf	 cpus = { 0 }, rsss = { 0 };
	char		*s;

	metrics_family(tb, "qdesk_vm_spice_sessions", "gauge",
	    "SPICE clients connected to a VM.");
	TAILQ_FOREACH(vm, &vms, entry) {
		for (i = 0; i < nitems(states); i++)
			if (vm->state == states[i])
				count[i]++;
		if (!vm_is_active(vm))
			continue;
		metrics_sample(tb, "qdesk_vm_spice_sessions",
		    json_array_size(vm->spice_clients), "vm", vm->def.name,
		    NULL);
		if (vm->pid <= 0 || n++ >= METRICS_PROC_MAX ||
		    metrics_proc(vm->pid, &cpu, &rss) != 0)
			continue;
		metrics_sample(&cpus, "qdesk_vm_cpu_seconds_total", cpu, "vm",
		    vm->def.name, NULL);
		metrics_sample(&rsss, "qdesk_vm_resident_memory_bytes", rss,
		    "vm", vm->def.name, NULL);
	}
	metrics_family(tb, "qdesk_vm_cpu_seconds_total", "counter",
	    "CPU time (user and system) of a VM's QEMU process.");
	textbuf_printf(tb, "%s", s = textbuf_finish(&cpus));
	free(s);
	metrics_family(tb, "qdesk_vm_resident_memory_bytes", "gauge",
	    "Resident memory of a VM's QEMU process.");
	textbuf_printf(tb, "%s", s = textbuf_finish(&rsss));
	free(s);
	metrics_family(tb, "qdesk_vms", "gauge", "VMs by state.");
	for (i = 0; i < nitems(states); i++)
		metrics_sample(tb, "qdesk_vms", count[i], "state",
		    vm_state_name(states[i]), NULL);
}

/* The whole exposition, as text the caller frees. */
static char *
metrics_text(void)
{
	struct textbuf		tb = { 0 };
	unsigned long long	used, size;

	metrics_vms(&tb);
	metrics_scalar(&tb, "qdesk_vm_starts_total", "counter",
	    "VM starts (a VM entering the starting state).", metrics_starts);
	metrics_scalar(&tb, "qdesk_vm_stops_total", "counter",
	    "VMs that stopped (shut down, stopped or killed).", metrics_stops);
	metrics_scalar(&tb, "qdesk_vm_crashes_total", "counter",
	    "VMs that crashed (QEMU died or the guest hit an internal error).",
	    metrics_crashes);
	metrics_family(&tb, "qdesk_qmp_roundtrip_seconds", "histogram",
	    "Time from sending a QMP command to QEMU's answer.");
	metrics_hist_write(&tb, "qdesk_qmp_roundtrip_seconds", &metrics_qmp);
	metrics_scalar(&tb, "qdesk_boot_queue_depth", "gauge",
	    "VMs waiting in the boot queue for their turn.",
	    boot_queue_length());
	metrics_scalar(&tb, "qdesk_boot_queue_booting", "gauge",
	    "VMs booting now.", boot_queue_booting());
	metrics_family(&tb, "qdesk_boot_queue_wait_seconds", "histogram",
	    "Time a VM waited in the boot queue.");
	metrics_hist_write(&tb, "qdesk_boot_queue_wait_seconds",
	    &boot_queue_wait_hist);
	metrics_scalar(&tb, "qdesk_spice_tickets_total", "counter",
	    "SPICE console tickets issued.", metrics_tickets);
	metrics_scalar(&tb, "qdesk_logins_total", "counter",
	    "Good passwords (user.auth, portal and RDP gateway alike).",
	    metrics_logins);
	metrics_scalar(&tb, "qdesk_login_failures_total", "counter",
	    "Refused passwords (user.auth, portal and RDP gateway alike).",
	    metrics_login_failures);
	metrics_scalar(&tb, "qdesk_login_lockouts_total", "counter",
	    "Logins locked after too many failed passwords.", metrics_lockouts);
	metrics_scalar(&tb, "qdesk_image_store_bytes", "gauge",
	    "Disk space the image store's files take.", metrics_images());
	db_usage(qmpd->db, &used, &size);
	metrics_scalar(&tb, "qdesk_lmdb_used_bytes", "gauge",
	    "Bytes of the state database's map in use.", used);
	metrics_scalar(&tb, "qdesk_lmdb_map_bytes", "gauge",
	    "Size of the state database's map.", size);
	metrics_scalar(&tb, "qdesk_metrics_scrapes_total", "counter",
	    "Scrapes of this endpoint.", ++metrics_scrapes);
	return (textbuf_finish(&tb));
}

/* GET /metrics; everything else is 404, any other method 405. */
static void
metrics_request(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*buf;
	const char	*path = evhttp_request_get_uri(req);
	char		*text;

	if (strcmp(path, "/metrics") != 0 && strncmp(path, "/metrics?",
	    9) != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics here");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, HTTP_BADMETHOD, "GET only");
		return;
	}
	text = metrics_text();
	buf = evbuffer_new();
	evbuffer_add(buf, text, strlen(text));
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_send_reply(req, HTTP_OK, "OK", buf);
	evbuffer_free(buf);
}

/*
 * Split ADDR:PORT (or [ADDR6]:PORT, or PORT alone for loopback) into an
 * address evhttp binds and a port.
 */
static int
metrics_parse(const char *text, char *addr, size_t len, int *port,
    char **cause)
{
	const char	*p, *end;
	char		*ep;
	unsigned char	 tmp[16];
	long		 n;

	if ((p = strrchr(text, ':')) == NULL) {
		strlcpy(addr, "127.0.0.1", len);
		p = text;
	} else {
		if (text[0] == '[') {
			if ((end = strchr(text, ']')) == NULL || end + 1 != p)
				goto bad;
			text++;
		} else
			end = p;
		if ((size_t)(end - text) >= len || end == text)
			goto bad;
		memcpy(addr, text, end - text);
		addr[end - text] = '\0';
		p++;
		if (inet_pton(AF_INET, addr, tmp) != 1 &&
		    inet_pton(AF_INET6, addr, tmp) != 1)
			goto bad;
	}
	errno = 0;
	n = strtol(p, &ep, 10);
	if (*p == '\0' || *ep != '\0' || errno != 0 || n < 1 || n > 65535)
		goto bad;
	*port = (int)n;
	return (0);
bad:
	xasprintf(cause, "--metrics %s: want PORT, ADDR:PORT or [ADDR6]:PORT "
	    "with a numeric address", text);
	return (-1);
}

/* Check --metrics' value before the daemon detaches. */
int
metrics_check(const char *text, char **cause)
{
	char	addr[64];
	int	port;

	return (metrics_parse(text, addr, sizeof addr, &port, cause));
}

/* Listen for scrapes on text (ADDR:PORT) in the loop. */
int
metrics_listen(const char *text, char **cause)
{
	char	addr[64];
	int	port;

	if (metrics_parse(text, addr, sizeof addr, &port, cause) != 0)
		return (-1);
	if ((metrics_http = evhttp_new(qmpd->base)) == NULL) {
		xasprintf(cause, "--metrics: evhttp_new failed");
		return (-1);
	}
	evhttp_set_allowed_methods(metrics_http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD);
	evhttp_set_timeout(metrics_http, 10);
	evhttp_set_max_headers_size(metrics_http, 8192);
	evhttp_set_max_body_size(metrics_http, 0);
	evhttp_set_gencb(metrics_http, metrics_request, NULL);
	if (evhttp_bind_socket(metrics_http, addr, port) != 0) {
		xasprintf(cause, "--metrics %s: cannot listen on %s port %d: "
		    "%s", text, addr, port, strerror(errno));
		evhttp_free(metrics_http);
		metrics_http = NULL;
		return (-1);
	}
	qmp_rtt_hook = metrics_qmp_rtt;
	log_info("metrics on http://%s%s%s:%d/metrics", strchr(addr, ':') ?
	    "[" : "", addr, strchr(addr, ':') ? "]" : "", port);
	return (0);
}

void
metrics_close(void)
{
	if (metrics_http != NULL)
		evhttp_free(metrics_http);
	metrics_http = NULL;
}
