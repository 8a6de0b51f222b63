/* rdp-tcpinfo.c: bytes received and acknowledged on a TCP socket, added. */
#ifndef QDESK_RDP_TCPINFO_H
#define QDESK_RDP_TCPINFO_H

int	 rdp_tcpinfo_bytes(int fd, unsigned long long *in,
	    unsigned long long *out);

#endif
