/*
 * The .vv file (application/x-virt-viewer) that remote-viewer opens: an
 * INI section with where to connect and how the viewer should behave.
 * Pure; the same keys Proxmox and oVirt write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vv.h"
#include "xmalloc.h"

/* A value must stay on its own line: no control characters at all. */
static int
vv_value_ok(const char *v)
{
	for (; *v != '\0'; v++) {
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return (0);
	}
	return (1);
}

/*
 * A PEM certificate as one .vv value: GKeyFile (which virt-viewer reads
 * the file with) turns a written backslash-n back into a newline.
 */
static char *
vv_escape_pem(const char *pem)
{
	char	*out, *p;

	out = p = xmalloc(strlen(pem) * 2 + 1);
	for (; *pem != '\0'; pem++) {
		if (*pem == '\n') {
			*p++ = '\\';
			*p++ = 'n';
		} else if (*pem != '\r')
			*p++ = *pem;
	}
	*p = '\0';
	return (out);
}

/* Build the file's text; NULL with a cause when a field is unusable. */
char *
vv_build(const struct vv *vv, char **cause)
{
	char	*out, *proxy = NULL, *tls = NULL, *ca = NULL;

	if (vv->host == NULL || vv->password == NULL || vv->title == NULL ||
	    !vv_value_ok(vv->host) || !vv_value_ok(vv->password) ||
	    !vv_value_ok(vv->title) ||
	    (vv->proxy != NULL && !vv_value_ok(vv->proxy))) {
		xasprintf(cause, "a console field holds a control character");
		return (NULL);
	}
	if (vv->port <= 0 || vv->port > 65535) {
		xasprintf(cause, "SPICE port %d out of range", vv->port);
		return (NULL);
	}
	if (vv->tls && (vv->ca == NULL || vv->host_subject == NULL ||
	    !vv_value_ok(vv->host_subject) ||
	    strstr(vv->ca, "-----BEGIN CERTIFICATE-----") == NULL)) {
		xasprintf(cause, "a TLS console without its certificate");
		return (NULL);
	}
	if (vv->proxy != NULL)
		xasprintf(&proxy, "proxy=%s\n", vv->proxy);
	/* TLS only: the viewer checks the server against ca= and its name. */
	if (vv->tls) {
		ca = vv_escape_pem(vv->ca);
		xasprintf(&tls, "tls-port=%d\nca=%s\nhost-subject=%s\n"
		    "secure-channels=all\n", vv->port, ca, vv->host_subject);
		free(ca);
	} else
		xasprintf(&tls, "port=%d\n", vv->port);
	xasprintf(&out,
	    "[virt-viewer]\n"
	    "type=spice\n"
	    "host=%s\n"
	    "%s"
	    "password=%s\n"
	    "title=%s\n"
	    "delete-this-file=1\n"
	    "secure-attention=ctrl+alt+end\n"
	    "toggle-fullscreen=shift+f11\n"
	    "release-cursor=shift+f12\n"
	    "%s",
	    vv->host, tls, vv->password, vv->title,
	    proxy != NULL ? proxy : "");
	free(tls);
	free(proxy);
	return (out);
}
