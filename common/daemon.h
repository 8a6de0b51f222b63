/* Leaving the terminal, as both daemons do without -f. */
#ifndef QDESK_DAEMON_H
#define QDESK_DAEMON_H

/* Fork twice around setsid and point stdio at /dev/null. */
void	daemon_detach(void);
/* Point stdin, stdout and stderr at /dev/null (a daemon, a helper child). */
void	daemon_null_stdio(void);

#endif
