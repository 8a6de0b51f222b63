/*
 * Unix sockets: one way to make a listening one, one set of errors, and
 * one way to pass an fd.
 */
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "sock.h"
#include "xmalloc.h"

#define SOCK_FDS_MAX	4	/* fds one read takes, more are shut */

int
sock_unix_listen(const char *path, int flags, int backlog, char **cause)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof sun.sun_path) >=
	    sizeof sun.sun_path) {
		xasprintf(cause, "socket path too long: %s", path);
		return (-1);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0)) ==
	    -1) {
		xasprintf(cause, "socket: %s", strerror(errno));
		return (-1);
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
	    listen(fd, backlog) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		close(fd);
		return (-1);
	}
	return (fd);
}

ssize_t
sock_send_fd(int sock, const struct iovec *iov, int iovcnt, int fd)
{
	struct msghdr	 msg;
	struct cmsghdr	*cmsg;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	}		 cmsgbuf;
	ssize_t		 n;

	memset(&msg, 0, sizeof msg);
	memset(&cmsgbuf, 0, sizeof cmsgbuf);
	msg.msg_iov = (struct iovec *)iov;
	msg.msg_iovlen = iovcnt;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof cmsgbuf.buf;
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	return (n);
}

ssize_t
sock_recv_fds(int sock, void *buf, size_t len, int flags, int *fds,
    int *nfds, int maxfds)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cmsg;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(SOCK_FDS_MAX * sizeof(int))];
	}		 cmsgbuf;
	ssize_t		 n;
	int		 i, nfd, fd;

	memset(&msg, 0, sizeof msg);
	iov.iov_base = buf;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof cmsgbuf.buf;
	if ((n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC)) == -1)
		return (-1);
	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL;
	    cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET ||
		    cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nfd; i++) {
			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int),
			    sizeof(int));
			if (*nfds < maxfds)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	return (n);
}
