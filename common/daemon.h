/* Leaving the terminal, as both daemons do without -f. */
#ifndef QDESK_DAEMON_H
#define QDESK_DAEMON_H

/* Fork twice around setsid and point stdio at /dev/null. */
void	daemon_detach(void);

#endif
