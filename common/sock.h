/* Unix sockets, as qmpd listens on them: its admin socket, QEMU's QMP. */
#ifndef QDESK_SOCK_H
#define QDESK_SOCK_H

/*
 * Bind and listen on a unix stream socket at path, replacing a stale
 * socket file. flags are added to socket(2)'s type (SOCK_NONBLOCK...);
 * the fd is always close-on-exec. Returns the fd, or -1 with a cause.
 */
int	sock_unix_listen(const char *path, int flags, int backlog,
	    char **cause);

#endif
