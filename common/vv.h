/*
 * The .vv file (application/x-virt-viewer) that remote-viewer opens, for
 * the broker's portal and for `qdesk vm ticket --vv`. Pure.
 */
#ifndef QDESK_VV_H
#define QDESK_VV_H

struct vv {
	const char	*host;
	int		 port;
	const char	*password;
	const char	*title;
	const char	*proxy;		/* http://HOST:PORT or NULL */
	int		 tls;		/* port is a SPICE tls-port */
	const char	*ca;		/* PEM the viewer trusts, or NULL */
	const char	*host_subject;	/* the certificate's subject, or NULL */
};

/* The file's text, or NULL and *cause when a field is unusable. */
char	*vv_build(const struct vv *, char **cause);

#endif
