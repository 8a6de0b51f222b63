/*
 * The broker's GET /metrics, in the Prometheus text format, for admins
 * only: a client on loopback, or one that shows the bearer token read
 * from --metrics-token at start. Everything is counted as it happens and
 * written at the scrape, on the loop, from memory.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/http.h>
#include <openssl/crypto.h>

#include "broker.h"
#include "log.h"
#include "metrics.h"
#include "xmalloc.h"
#ifdef BROKER_RDP
#include "rdp.h"
#endif

#define METRICS_TOKEN_MAX	256

struct broker_metrics	 broker_metrics;
static char		*metrics_token;		/* NULL: loopback only */
static json_t		*metrics_spice;		/* VM: proxied sessions */

/*
 * Read the bearer token (one line, 16 to 256 printable characters) from
 * path, which only its owner may read. Called before the privilege drop.
 */
int
metrics_token_load(const char *path, char **cause)
{
	struct stat	 st;
	char		 buf[METRICS_TOKEN_MAX + 2];
	ssize_t		 n;
	size_t		 i;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		xasprintf(cause, "--metrics-token %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (st.st_mode & 077) != 0) {
		close(fd);
		xasprintf(cause, "--metrics-token %s: not a regular file "
		    "readable by its owner only (chmod 600)", path);
		return (-1);
	}
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	for (i = 0; buf[i] != '\0'; i++)
		if (buf[i] <= ' ' || buf[i] > '~')
			break;
	if (buf[i] != '\0' || i < 16 || i > METRICS_TOKEN_MAX) {
		explicit_bzero(buf, sizeof buf);
		xasprintf(cause, "--metrics-token %s: want one line of 16 to "
		    "%d printable characters", path, METRICS_TOKEN_MAX);
		return (-1);
	}
	metrics_token = xstrdup(buf);
	explicit_bzero(buf, sizeof buf);
	return (0);
}

void
metrics_spice_session(const char *vm, int delta)
{
	json_int_t	n;

	if (metrics_spice == NULL)
		metrics_spice = json_object();
	n = json_integer_value(json_object_get(metrics_spice, vm)) + delta;
	if (n <= 0)
		json_object_del(metrics_spice, vm);
	else
		json_object_set_new(metrics_spice, vm, json_integer(n));
}

void
metrics_proxy_bytes(int from_viewer, size_t n)
{
	if (from_viewer)
		broker_metrics.proxy_bytes_in += n;
	else
		broker_metrics.proxy_bytes_out += n;
}

/* Is the client on loopback (127/8, ::1, or 127/8 mapped into IPv6)? */
static int
metrics_loopback(const char *peer)
{
	struct in_addr	 a4;
	struct in6_addr	 a6;

	if (inet_pton(AF_INET, peer, &a4) == 1)
		return ((ntohl(a4.s_addr) >> 24) == 127);
	if (inet_pton(AF_INET6, peer, &a6) == 1) {
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return (1);
		return (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	}
	return (0);
}

/* Does the request carry "Authorization: Bearer TOKEN"? */
static int
metrics_bearer(struct http_call *call)
{
	struct evkeyvalq	*in;
	const char		*v;
	size_t			 len;

	if (metrics_token == NULL)
		return (0);
	in = evhttp_request_get_input_headers(call->req);
	if ((v = evhttp_find_header(in, "Authorization")) == NULL ||
	    strncasecmp(v, "Bearer ", 7) != 0)
		return (0);
	v += 7;
	len = strlen(metrics_token);
	return (strlen(v) == len && CRYPTO_memcmp(v, metrics_token,
	    len) == 0);
}

#ifdef BROKER_RDP
/* One desktop with an RDP session: count it in the json object arg. */
static void
metrics_rdp_vm(const char *vm, void *arg)
{
	json_t	*o = arg;

	json_object_set_new(o, vm, json_integer(json_integer_value(
	    json_object_get(o, vm)) + 1));
}
#endif

/* Sessions per desktop of one kind, from a {vm: count} object. */
static void
metrics_sessions(struct textbuf *tb, const char *name, const char *help,
    json_t *o)
{
	const char	*vm;
	json_t		*n;

	metrics_family(tb, name, "gauge", help);
	json_object_foreach(o, vm, n)
		metrics_sample(tb, name, json_integer_value(n), "vm", vm,
		    NULL);
}

/* A byte counter with a sample each way ("direction": "in", "out"). */
static void
metrics_bytes(struct textbuf *tb, const char *name, const char *help,
    unsigned long long in, unsigned long long out)
{
	metrics_family(tb, name, "counter", help);
	metrics_sample(tb, name, (double)in, "direction", "in", NULL);
	metrics_sample(tb, name, (double)out, "direction", "out", NULL);
}

/* The whole exposition, as text the caller frees. */
static char *
metrics_text(void)
{
	struct textbuf		 tb = { 0 };
	json_t			*rdp = json_object();
#ifdef BROKER_RDP
	struct rdp_gateway_stats st;

	memset(&st, 0, sizeof st);
	if (rdpgw_enabled())
		rdp_gateway_stats(&st, metrics_rdp_vm, rdp);
#endif
	metrics_scalar(&tb, "qdesk_broker_logins_total", "counter",
	    "Portal logins that opened a session.", broker_metrics.logins);
	metrics_scalar(&tb, "qdesk_broker_login_failures_total", "counter",
	    "Portal logins refused: wrong user name or password.",
	    broker_metrics.login_failures);
	metrics_scalar(&tb, "qdesk_broker_login_locked_total", "counter",
	    "Portal logins refused because the login is locked out.",
	    broker_metrics.logins_locked);
	metrics_scalar(&tb, "qdesk_broker_tickets_total", "counter",
	    "SPICE proxy tickets issued with a console.",
	    broker_metrics.tickets);
	metrics_scalar(&tb, "qdesk_broker_proxy_connections_total", "counter",
	    "Connections accepted by the SPICE proxy.",
	    broker_metrics.proxy_connections);
	metrics_bytes(&tb, "qdesk_broker_proxy_bytes_total",
	    "Bytes the SPICE proxy passed, by direction.",
	    broker_metrics.proxy_bytes_in, broker_metrics.proxy_bytes_out);
	metrics_sessions(&tb, "qdesk_broker_spice_sessions",
	    "SPICE sessions tunnelled by the proxy, per desktop.",
	    metrics_spice);
#ifdef BROKER_RDP
	metrics_scalar(&tb, "qdesk_broker_rdp_connections_total", "counter",
	    "Connections accepted by the RDP gateway.", st.connections);
	metrics_scalar(&tb, "qdesk_broker_rdp_logins_total", "counter",
	    "RDP gateway logins whose password was good.", st.logins);
	metrics_scalar(&tb, "qdesk_broker_rdp_connections", "gauge",
	    "RDP gateway connections open now.", st.open);
	metrics_bytes(&tb, "qdesk_broker_rdp_bytes_total",
	    "Bytes on the RDP gateway's client connections, by direction.",
	    st.bytes_in, st.bytes_out);
#endif
	metrics_sessions(&tb, "qdesk_broker_rdp_sessions",
	    "RDP gateway sessions, per desktop.", rdp);
	json_decref(rdp);
	metrics_scalar(&tb, "qdesk_broker_qmpd_up", "gauge",
	    "1 when the broker is connected to qmpd.", qmpc_connected());
	return (textbuf_finish(&tb));
}

/* GET /metrics: the exposition, for a loopback client or the token. */
void
metrics_get(struct http_call *call)
{
	char	*text;

	if (!metrics_loopback(call->peer) && !metrics_bearer(call)) {
		log_warnx("%s GET /metrics refused: not loopback%s", call->peer,
		    metrics_token != NULL ? " and no valid token" : "");
		http_reply_error(call, 403, "metrics are for admins: scrape "
		    "from loopback%s", metrics_token != NULL ?
		    " or send the bearer token" : "");
		return;
	}
	text = metrics_text();
	http_reply_data(call, 200, METRICS_CONTENT_TYPE, text, strlen(text));
	free(text);
}
