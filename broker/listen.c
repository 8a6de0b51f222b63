/*
 * Listening addresses: "ADDR:PORT" or "[V6]:PORT" from the command line,
 * and the sockets, opened while the broker may still bind any port.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "xmalloc.h"

/* Parse a numeric address and port; no name lookups at start-up. */
int
listen_parse(const char *text, struct broker_addr *a, char **cause)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&a->ss;
	char			 host[INET6_ADDRSTRLEN + 2], *end;
	const char		*colon;
	size_t			 len;
	long			 port;

	memset(a, 0, sizeof *a);
	if (strlcpy(a->text, text, sizeof a->text) >= sizeof a->text)
		goto bad;
	if ((colon = strrchr(text, ':')) == NULL)
		goto bad;
	len = colon - text;
	if (len >= sizeof host)
		goto bad;
	memcpy(host, text, len);
	host[len] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
		goto bad;
	a->port = (int)port;
	if (len > 2 && host[0] == '[' && host[len - 1] == ']') {
		host[len - 1] = '\0';
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
			goto bad;
		a->sslen = sizeof *sin6;
		return (0);
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		goto bad;
	a->sslen = sizeof *sin;
	return (0);

bad:
	xasprintf(cause, "bad address '%s': want ADDR:PORT, such as "
	    "0.0.0.0:8443 or [::]:8443", text);
	return (-1);
}

/* A non-blocking listening socket on a, or -1 with a cause. */
int
listen_open(const struct broker_addr *a, char **cause)
{
	int	fd, on = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		xasprintf(cause, "socket for %s: %s", a->text, strerror(errno));
		return (-1);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (bind(fd, (const struct sockaddr *)&a->ss, a->sslen) == -1) {
		xasprintf(cause, "bind %s: %s%s", a->text, strerror(errno),
		    errno == EADDRINUSE ? " (another broker, or pick another "
		    "port)" : "");
		close(fd);
		return (-1);
	}
	if (listen(fd, 128) == -1) {
		xasprintf(cause, "listen %s: %s", a->text, strerror(errno));
		close(fd);
		return (-1);
	}
	return (fd);
}
