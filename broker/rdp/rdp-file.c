/*
 * The .rdp file the portal hands out for the gateway, pure. mstsc,
 * xfreerdp and Remmina read the same keys. The desktop goes in the domain
 * field, which the gateway reads as the desktop's name: both as
 * "domain:s:" and as the DOMAIN\user form of the user name, because
 * xfreerdp lets a plain user name reset the domain to empty. NLA (CredSSP)
 * is off because the gateway must see the password to check it with qmpd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rdp.h"
#include "xmalloc.h"

/* A value stays on its own line and out of the key syntax. */
static int
rdp_file_value_ok(const char *v, size_t max)
{
	size_t	n = 0;

	for (; *v != '\0'; v++, n++) {
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return (0);
	}
	return (n > 0 && n <= max);
}

/* A host as it goes in "full address": IPv6 literals in brackets. */
static int
rdp_file_host_ok(const char *host)
{
	if (!rdp_file_value_ok(host, 253))
		return (0);
	return (strpbrk(host, " ;\\/") == NULL);
}

/* The .rdp text (rdp.h): CRLF lines, as mstsc writes them. */
char *
rdp_file_build(const char *host, int port, const char *user,
    const char *desktop, int self_signed, char **cause)
{
	char		*out;
	const char	*lb = "", *rb = "";

	if (host == NULL || !rdp_file_host_ok(host)) {
		xasprintf(cause, "RDP host is empty or has characters a .rdp "
		    "file cannot carry");
		return (NULL);
	}
	if (port <= 0 || port > 65535) {
		xasprintf(cause, "RDP port %d out of range", port);
		return (NULL);
	}
	if (user == NULL || !rdp_file_value_ok(user, 64) ||
	    strpbrk(user, "\\@") != NULL ||
	    (desktop != NULL && (!rdp_file_value_ok(desktop, 64) ||
	    strpbrk(desktop, "\\@") != NULL))) {
		xasprintf(cause, "user or desktop name has characters a .rdp "
		    "file cannot carry");
		return (NULL);
	}
	if (desktop != NULL && *desktop == '\0')
		desktop = NULL;
	if (strchr(host, ':') != NULL && host[0] != '[') {
		lb = "[";
		rb = "]";
	}
	xasprintf(&out,
	    "full address:s:%s%s%s:%d\r\n"
	    "username:s:%s%s%s\r\n"
	    "domain:s:%s\r\n"
	    "prompt for credentials:i:1\r\n"
	    "enablecredsspsupport:i:0\r\n"
	    "authentication level:i:%d\r\n"
	    "negotiate security layer:i:1\r\n"
	    "screen mode id:i:1\r\n"
	    "session bpp:i:32\r\n"
	    "smart sizing:i:1\r\n"
	    "dynamic resolution:i:1\r\n"
	    "audiomode:i:0\r\n"
	    "redirectclipboard:i:1\r\n"
	    "redirectprinters:i:0\r\n"
	    "redirectdrives:i:0\r\n"
	    "autoreconnection enabled:i:0\r\n",
	    lb, host, rb, port, desktop != NULL ? desktop : "",
	    desktop != NULL ? "\\" : "", user, desktop != NULL ? desktop : "",
	    self_signed ? 0 : 2);
	return (out);
}
