/*
 * Helpers shared by the benchmark programs: a monotonic clock in
 * microseconds, blocking line I/O on unix sockets, pidfds, privilege drop
 * and percentiles. No jansson: the programs look at replies only as far as
 * they must, so the client side costs as little as possible.
 */
#ifndef QDESK_BENCH_UTIL_H
#define QDESK_BENCH_UTIL_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

struct lconn {
	int	 fd;
	char	*buf;
	size_t	 size;
	size_t	 off;		/* start of unread data */
	size_t	 len;		/* end of data */
};

uint64_t	 now_us(void);
void		 fatal(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));
void		 fatalx(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));

int		 unix_connect(const char *);
void		 lconn_init(struct lconn *, int);
void		 lconn_close(struct lconn *);
char		*lconn_readline(struct lconn *, size_t *);
void		 lconn_write(struct lconn *, const char *, size_t);
/* qmpd's admin socket, its hello read; exits on failure. */
void		 qmpd_connect(struct lconn *, const char *);

int		 pidfd_open_pid(pid_t);
int		 pidfd_wait(int, int);
int		 drop_privs(const char *);

int		 cmp_u64(const void *, const void *);
uint64_t	 pct(uint64_t *, size_t, double);

long long	 reply_id(const char *);
int		 reply_is_error(const char *);

#endif
