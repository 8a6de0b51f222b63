/*
 * The broker's side of the RDP gateway (broker/rdp/, issue 6): open its
 * port with the others, start it on the broker's loop with the broker's
 * certificate before the privilege drop, give it the portal's login
 * throttle, and build .rdp files for the
 * portal. Built without FreeRDP, the gateway is simply absent: --rdp is
 * accepted, nothing listens, and console.rdp says so.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "xmalloc.h"
#ifdef BROKER_RDP
#include "rdp.h"
#endif

static int	rdpgw_running;

/* Open the RDP port now, while the broker may still bind anything. */
int
rdpgw_open(char **cause)
{
#ifdef BROKER_RDP
	if (!broker->rdp_on)
		return (0);
	if ((broker->rdp_fd = listen_open(&broker->rdp, cause)) == -1)
		return (-1);
#else
	if (broker->rdp_on)
		log_info("built without FreeRDP: no RDP gateway on %s",
		    broker->rdp.text);
	broker->rdp_on = 0;
#endif
	return (0);
}

/* Start the gateway; it reads the key here, so before the drop. */
int
rdpgw_start(struct event_base *base, char **cause)
{
#ifdef BROKER_RDP
	int	fd = broker->rdp_fd;

	if (!broker->rdp_on)
		return (0);
	broker->rdp_fd = -1;	/* the gateway owns it from here */
	/* RDP logins share the portal's throttle per address. */
	rdp_gateway_throttle(login_throttle_try, login_throttle_done);
	if (rdp_gateway_start_fd(base, fd, broker->cert_path, broker->key_path,
	    broker->socket_path, cause) != 0)
		return (-1);
	rdpgw_running = 1;
#endif
	return (0);
}

void
rdpgw_stop(void)
{
#ifdef BROKER_RDP
	if (rdpgw_running)
		rdp_gateway_stop();
#endif
	rdpgw_running = 0;
}

int
rdpgw_enabled(void)
{
	return (rdpgw_running);
}

/*
 * The .rdp file that sends user to desktop through the gateway at host
 * (as the browser reached the portal); NULL with a cause without one.
 */
char *
rdpgw_file(const char *host, const char *user, const char *desktop,
    char **cause)
{
#ifdef BROKER_RDP
	char	*h, *out;
	size_t	 len;

	if (!rdpgw_running) {
		xasprintf(cause, "RDP access is not enabled on this broker: "
		    "use Connect (SPICE)");
		return (NULL);
	}
	/* "[::1]" from a Host header: the file wants the bare address. */
	h = xstrdup(host);
	len = strlen(h);
	if (len > 2 && h[0] == '[' && h[len - 1] == ']') {
		memmove(h, h + 1, len - 2);
		h[len - 2] = '\0';
	}
	out = rdp_file_build(h, broker->rdp.port, user, desktop,
	    broker->self_signed, cause);
	free(h);
	return (out);
#else
	xasprintf(cause, "this broker was built without the RDP gateway: use "
	    "Connect (SPICE)");
	return (NULL);
#endif
}
