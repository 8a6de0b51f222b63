/*
 * The kernel's byte counters of a TCP socket, for the gateway's metrics.
 * Apart because glibc's <netinet/tcp.h> lacks them and cannot be mixed
 * with <linux/tcp.h>, which has them.
 */
#include <sys/socket.h>

#include <linux/in.h>
#include <linux/tcp.h>

#include <string.h>

#include "rdp-tcpinfo.h"

int
rdp_tcpinfo_bytes(int fd, unsigned long long *in, unsigned long long *out)
{
	struct tcp_info	ti;
	socklen_t	len = sizeof ti;

	memset(&ti, 0, sizeof ti);
	if (fd == -1 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1)
		return (-1);
	*in += ti.tcpi_bytes_received;
	*out += ti.tcpi_bytes_acked;
	return (0);
}
