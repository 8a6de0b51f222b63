/*
 * What the etcd client's files (etcd.c: connections and calls;
 * etcd-req.c: the request bodies; etcd-parse.c: the pure answer parser and
 * base64; etcd-lease.c: the lease keeper; etcd-watch.c: watches) share and
 * nobody else sees.  Include after etcd.h and the libevent, OpenSSL and
 * jansson headers.
 */
#ifndef ETCD_INT_H
#define ETCD_INT_H

#define ETCD_TIMEOUT_MS		5000
#define ETCD_CONNS		4
#define ETCD_BACKOFF_MIN_MS	50
#define ETCD_ATTEMPT_MIN_MS	300	/* a repeatable call on one member */
#define ETCD_BACKOFF_MAX_MS	1000
#define ETCD_MAX_BODY		(64 * 1024 * 1024)
/* A quiet watch stream is reconnected (and resumed) after this long. */
#define ETCD_WATCH_IDLE_S	60

/* What a response of each path looks like, for the parser's defaults. */
enum etcd_shape {
	ETCD_SHAPE_NONE,
	ETCD_SHAPE_RANGE,
	ETCD_SHAPE_DELETE,
	ETCD_SHAPE_TXN,
	ETCD_SHAPE_LEASE,
	ETCD_SHAPE_WATCH,
	ETCD_SHAPE_KV,
	ETCD_SHAPE_EVENT,
	ETCD_SHAPE_HEADER,
	ETCD_SHAPE_STATUS	/* its "version" is etcd's, "3.4.23" */
};

struct etcd_path {
	const char	*path;
	enum etcd_shape	 shape;
	int		 stream;	/* answers as {"result": ...} */
	int		 repeat;	/* safe to send again elsewhere */
};
struct etcd_conn;

struct etcd_ep {
	char			*url;
	char			*host;
	int			 port;
	int			 tls;
	TAILQ_HEAD(, etcd_conn)	 idle;
	int			 nidle;
};

struct etcd_req {
	struct etcd		*e;
	const struct etcd_path	*path;
	char			*body;
	size_t			 len;
	etcd_cb			 cb;
	void			*arg;
	int			 timeout_ms;
	struct timespec		 deadline;
	int			 ep;		/* of this attempt */
	int			 tries;
	int			 rounds;
	int			 pin;		/* only this endpoint (-1: any) */
	struct etcd_conn	*conn;		/* in flight on it */
	struct event		*timer;		/* deadline/backoff */
	char			**why;		/* per endpoint */
	TAILQ_ENTRY(etcd_req)	 entry;
};
TAILQ_HEAD(etcd_reqs, etcd_req);

/* One evhttp connection; its callbacks find their owner through it. */
struct etcd_conn {
	struct etcd		*e;
	struct etcd_ep		*ep;
	struct evhttp_connection *evcon;
	struct etcd_req		*req;		/* a call on it */
	struct etcd_watch	*watch;		/* or a watch stream */
	enum evhttp_request_error err;
	int			 failed;	/* err is set */
	int			 uses;
	int			 idle;		/* in its endpoint's pool */
	char			 errbuf[128];
	TAILQ_ENTRY(etcd_conn)	 entry;
};

struct etcd_watch {
	struct etcd		*e;
	char			*key;
	char			*range_end;	/* or NULL */
	size_t			 keylen, endlen;
	int			 flags;
	etcd_cb			 cb;
	void			*arg;
	int64_t			 rev;		/* resume (0: now) */
	struct etcd_conn	*conn;
	struct evbuffer		*buf;		/* a partial line */
	struct event		*timer;		/* reconnect */
	int			 created;	/* the stream said so */
	int			 rounds;
	int			 ended;
	TAILQ_ENTRY(etcd_watch)	 entry;
};

struct etcd_keeper {
	struct etcd		*e;
	int			 ttl;
	int64_t			 id;
	etcd_cb			 cb;
	void			*arg;
	struct event		*timer;
	struct timespec		 last_ok;	/* sent, and it held */
	struct timespec		 sent;
	int			 inflight;
	int			 dead;		/* lost */
	long long		 hold;		/* mono ms: no loss by time before */
	int			 freed;
	TAILQ_ENTRY(etcd_keeper) entry;
};

struct etcd {
	struct event_base	*base;
	struct evdns_base	*dns;
	SSL_CTX			*ssl;
	struct etcd_ep		*eps;
	int			 neps;
	int			 cur;
	int			 timeout_ms;
	int			 conns;
	struct etcd_reqs	 waiting;	/* for a connection */
	struct etcd_reqs	 running;	/* in flight or backing off */
	TAILQ_HEAD(, etcd_watch) watches;
	TAILQ_HEAD(, etcd_keeper) keepers;
	int			 members;	/* most etcd ever listed (0) */
};

/* etcd.c */
struct etcd_conn *	etcd_conn_new(struct etcd *e, struct etcd_ep *ep);
int	etcd_conn_post(struct etcd_conn *c, const char *path, const char *body,
    size_t len, void (*chunk)(struct evhttp_request *, void *));
void	etcd_conn_reap(struct etcd_conn *c);
const char *	etcd_conn_strerror(struct etcd_conn *c);
long long	etcd_ms_until(const struct timespec *ts);
int	etcd_submit(struct etcd *e, const char *path, json_t *body, int timeout_ms,
    etcd_cb cb, void *arg);
/* The same, to endpoint ep only: no failover, no retry. */
int	etcd_submit_at(struct etcd *e, int ep, const char *path, json_t *body,
    int timeout_ms, etcd_cb cb, void *arg);
void	etcd_timer_ms(struct event *ev, long long ms);

/* etcd-req.c */
char *	etcd_prefix_end(const char *key, size_t *len);
json_t *	etcd_b64_json(const char *s, size_t len);

/* etcd-parse.c */
const struct etcd_path *	etcd_path_find(const char *path);

/* etcd-watch.c */
void	etcd_watch_done(struct etcd_watch *w, struct evhttp_request *http);

#endif
