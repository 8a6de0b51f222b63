/*
 * The scripted fake QEMU the QMP client tests run against (qmp-fake.c):
 * the peer end of a socketpair on the test's own event loop, which records
 * what the client sends and answers by a per-test hook.
 */
#ifndef QMP_FAKE_H
#define QMP_FAKE_H

#include "fake-io.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "	\
	"\"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2\"}, "	\
	"\"capabilities\": [\"oob\"]}}\r\n"

#define MAXLINES	64
#define MAXFDS		8

struct peer;
typedef void (*peer_hook)(struct peer *, json_t *cmd, const char *name,
    json_int_t id);

/* The fake QEMU end: records what the client sends, answers by script. */
struct peer {
	int		 fd;
	struct event	*ev;
	struct fake_in	 in;
	json_t		*lines[MAXLINES];
	int		 nlines;
	int		 fds[MAXFDS];
	int		 fdline[MAXFDS];	/* line the fd arrived with */
	int		 nfds;
	int		 eof;
	int		 manual_caps;		/* hook answers capabilities */
	peer_hook	 hook;
	void		*arg;
};

struct reply {
	int		 fired;
	int		 seq;
	json_t		*ret;
	char		 class[64];
	char		 desc[256];
	int		 free_qmp;		/* call qmp_free from the cb */
	int		 exec_rc;		/* qmp_execute from the cb */
	int		 try_exec;
};

/* Everything one test looks at. */
struct t {
	struct event_base *base;
	struct event	*tick;
	struct qmp	*q;
	int		 qfd;
	struct peer	 peer;
	int		 seq;
	int		 ready, ready_seq;
	int		 closed, closed_seq;
	char		 cause[256];
	int		 free_on_close;
	int		 free_on_ready;
	int		 free_on_event;
	int		 nevents;
	char		 evname[8][32];
	double		 evts[8];
	int		 evdata[8];		/* data present */
	int		 done;
};

extern struct t	*cur;			/* the test running now */
extern const struct qmp_callbacks t_callbacks;

#define EV_STOP	"{\"timestamp\": {\"seconds\": 1700000000, "		\
	"\"microseconds\": 123456}, \"event\": \"STOP\"}\r\n"
#define EV_SHUTDOWN "{\"timestamp\": {\"seconds\": 1700000001, "	\
	"\"microseconds\": 500000}, \"event\": \"SHUTDOWN\", "		\
	"\"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n"

void	tick_cb(evutil_socket_t fd, short ev, void *arg);
int	run_until(struct t *t, int *flag, int ms);
void	run_for(struct t *t, int ms);
void	peer_write(struct peer *p, const char *s);
void	peer_replyf(struct peer *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void	peer_close(struct peer *p);
void	t_reply_cb(struct qmp *q, json_t *ret, const char *errclass,
    const char *errdesc, void *arg);
void	t_setup(struct t *t, int timeout_ms);
void	t_teardown(struct t *t);
void	reply_clear(struct reply *r);
const char *line_execute(struct t *t, int i);
int	t_ready(struct t *t);
void	hook_status(struct peer *p, json_t *cmd, const char *name, json_int_t id);

void	qmp_fake_checks(int *, int *);

#endif
