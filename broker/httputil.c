/*
 * Small pure parsers for the HTTP side: a cookie out of a Cookie header,
 * the host out of a Host header, a CONNECT target, a route pattern. Each
 * refuses anything it does not fully understand.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

/* Find cookie name in a Cookie header; 0 and its value, or -1. */
int
httputil_cookie(const char *header, const char *name, char *out,
    size_t outlen)
{
	const char	*p = header, *eq, *end;
	size_t		 nlen = strlen(name), vlen;

	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		end = strchr(p, ';');
		if (end == NULL)
			end = p + strlen(p);
		eq = memchr(p, '=', end - p);
		if (eq != NULL && (size_t)(eq - p) == nlen &&
		    strncmp(p, name, nlen) == 0) {
			vlen = end - (eq + 1);
			while (vlen > 0 &&
			    (eq[vlen] == ' ' || eq[vlen] == '\t'))
				vlen--;
			if (vlen >= outlen)
				return (-1);
			memcpy(out, eq + 1, vlen);
			out[vlen] = '\0';
			return (0);
		}
		p = *end == '\0' ? NULL : end + 1;
	}
	return (-1);
}

/*
 * The host part of a Host header ("name", "name:port", "[v6]:port"), fit
 * to put back into a URL; -1 if it holds anything a host name cannot.
 */
int
httputil_hostname(const char *host, char *out, size_t outlen)
{
	const char	*p, *end;
	size_t		 len;

	if (host == NULL || *host == '\0')
		return (-1);
	if (*host == '[') {
		if ((end = strchr(host, ']')) == NULL)
			return (-1);
		for (p = host + 1; p < end; p++) {
			if (!isxdigit((unsigned char)*p) && *p != ':' &&
			    *p != '.')
				return (-1);
		}
		end++;
		if (*end != '\0' && *end != ':')
			return (-1);
	} else {
		end = strchr(host, ':');
		if (end == NULL)
			end = host + strlen(host);
		for (p = host; p < end; p++) {
			if (!isalnum((unsigned char)*p) && *p != '-' &&
			    *p != '.')
				return (-1);
		}
	}
	if (*end == ':') {
		for (p = end + 1; *p != '\0'; p++) {
			if (!isdigit((unsigned char)*p))
				return (-1);
		}
	}
	len = end - host;
	if (len == 0 || len >= outlen)
		return (-1);
	memcpy(out, host, len);
	out[len] = '\0';
	return (0);
}

/* Split a CONNECT target "host:port"; -1 unless both are sane. */
int
httputil_target(const char *target, char *host, size_t hostlen, int *port)
{
	const char	*colon, *p;
	size_t		 len;
	long		 n;
	char		*end;

	if ((colon = strrchr(target, ':')) == NULL)
		return (-1);
	len = colon - target;
	if (len == 0 || len >= hostlen)
		return (-1);
	for (p = target; p < colon; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '/' ||
		    *p == '@')
			return (-1);
	}
	if (!isdigit((unsigned char)colon[1]))
		return (-1);
	n = strtol(colon + 1, &end, 10);
	if (*end != '\0' || n < 1 || n > 65535)
		return (-1);
	memcpy(host, target, len);
	host[len] = '\0';
	*port = (int)n;
	return (0);
}

/*
 * Does path match pattern? A "*" in the pattern matches one non-empty
 * path segment, copied to arg. Returns 1 on a match.
 */
int
httputil_match(const char *pattern, const char *path, char *arg,
    size_t arglen)
{
	size_t	len;

	while (*pattern != '\0') {
		if (*pattern == '*') {
			len = strcspn(path, "/");
			if (len == 0 || len >= arglen)
				return (0);
			memcpy(arg, path, len);
			arg[len] = '\0';
			path += len;
			pattern++;
			continue;
		}
		if (*pattern != *path)
			return (0);
		pattern++;
		path++;
	}
	return (*path == '\0');
}

/*
 * The text address of an IPv4 or IPv6 socket address, and its port when
 * port is not NULL; -1 for any other family.
 */
int
httputil_addr(const struct sockaddr *sa, char *addr, size_t len, int *port)
{
	const struct sockaddr_in	*sin = (const void *)sa;
	const struct sockaddr_in6	*sin6 = (const void *)sa;

	if (sa->sa_family == AF_INET) {
		if (inet_ntop(AF_INET, &sin->sin_addr, addr, len) == NULL)
			return (-1);
		if (port != NULL)
			*port = ntohs(sin->sin_port);
		return (0);
	}
	if (sa->sa_family == AF_INET6) {
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, addr, len) == NULL)
			return (-1);
		if (port != NULL)
			*port = ntohs(sin6->sin6_port);
		return (0);
	}
	return (-1);
}
