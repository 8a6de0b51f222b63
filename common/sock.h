/*
 * Unix sockets, as qmpd uses them: listening (its admin socket, QEMU's
 * QMP) and passing an fd along with a line (SCM_RIGHTS), both ways.
 */
#ifndef QDESK_SOCK_H
#define QDESK_SOCK_H

#include <sys/types.h>
#include <sys/uio.h>

/*
 * Bind and listen on a unix stream socket at path, replacing a stale
 * socket file. flags are added to socket(2)'s type (SOCK_NONBLOCK...);
 * the fd is always close-on-exec. Returns the fd, or -1 with a cause.
 */
int	sock_unix_listen(const char *path, int flags, int backlog,
	    char **cause);

/*
 * Send iov on a stream socket with fd attached to its first byte
 * (SCM_RIGHTS), retrying on EINTR, never raising SIGPIPE. Returns the
 * bytes sent (the fd went with the first of them), or -1 with errno
 * (EAGAIN or EWOULDBLOCK when the socket is full). The caller keeps fd.
 */
ssize_t	sock_send_fd(int sock, const struct iovec *iov, int iovcnt, int fd);

/*
 * Read at most len bytes from a stream socket, with the fds that came
 * along (SCM_RIGHTS, close-on-exec): they go to fds[*nfds] onward while
 * *nfds < maxfds, any more are closed. flags are recvmsg(2)'s. Returns
 * recvmsg's count, or -1 with errno.
 */
ssize_t	sock_recv_fds(int sock, void *buf, size_t len, int flags, int *fds,
	    int *nfds, int maxfds);

#endif
