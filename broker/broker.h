/*
 * qdesk-broker: the unprivileged daemon that faces users. One libevent
 * loop, no threads: the HTTPS portal and JSON API, the SPICE CONNECT proxy
 * and (later) the RDP gateway, all talking to qmpd through one admin
 * socket connection with the "broker" role. This header holds what the
 * broker's files share, as tmux.h does.
 */
#ifndef QDESK_BROKER_H
#define QDESK_BROKER_H

#include <sys/socket.h>
#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>

#include "compat.h"
#include "vv.h"

/* How long a console password and its proxy ticket stay valid. */
#define BROKER_CONSOLE_TTL	60
#define BROKER_CONSOLE_TTL_MIN	5
#define BROKER_CONSOLE_TTL_MAX	86400
/* A portal session ends after this long without a user's request. */
#define BROKER_SESSION_IDLE	(30 * 60)
#define BROKER_SESSION_IDLE_MIN	2
#define BROKER_SESSION_IDLE_MAX	(12 * 60 * 60)
/* The key that signs proxy tickets lives only in memory. */
#define BROKER_TICKET_KEYLEN	32

/* A listening address from the command line. */
struct broker_addr {
	char			 text[128];	/* as given, for messages */
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 port;
};

/* The daemon's global state. */
struct broker {
	struct event_base	*base;
	char			*state_dir;
	char			*socket_path;	/* qmpd's admin socket */
	const char		*user;		/* drop to this user */
	const char		*public_host;	/* for .vv proxy= URLs */
	int			 console_ttl;	/* seconds */
	int			 session_idle;	/* seconds */
	int			 max_conns;	/* portal and proxy, each */
	int			 max_conns_addr;	/* from one address */
	int			 login_refill;	/* s per failed-login token */
	SSL_CTX			*ssl_ctx;

	struct broker_addr	 https;
	struct broker_addr	 spice_proxy;
	struct broker_addr	 rdp;
	int			 rdp_on;	/* the RDP gateway listens */
	int			 https_fd;
	int			 proxy_fd;
	int			 rdp_fd;
	char			*cert_path;
	char			*key_path;
	int			 self_signed;	/* nobody can verify it */

	unsigned char		 ticket_key[BROKER_TICKET_KEYLEN];
	int			 foreground;

	/* --cluster FILE (qmpd/cluster.h's format); NULL: one local qmpd. */
	struct cluster_conf	*cluster;
	SSL_CTX			*cluster_tls;	/* to the hosts' listeners */
	int			 relay_fd;	/* cluster-relay.c's socket */
};
extern struct broker	*broker;

/* listen.c: addresses and listening sockets, opened before the drop. */
int	 listen_parse(const char *text, struct broker_addr *, char **cause);
int	 listen_open(const struct broker_addr *, char **cause);

/* tls.c: the HTTPS certificate (made at first start) and its context. */
SSL_CTX	*tls_context(const char *dir, const char *certpath,
	    const char *keypath, uid_t owner, gid_t group, char **cause);

/*
 * qmpc.c: the qmpd client. qmpc_call sends one request; its callback
 * always fires exactly once, never from inside qmpc_call: with ret (the
 * "return" value, borrowed) or with an error class and description. When
 * qmpd cannot be reached the class is QMPC_ERR_DOWN.
 */
#define QMPC_ERR_DOWN		"Unavailable"
typedef void (*qmpc_cb)(json_t *ret, const char *errclass,
	    const char *errdesc, void *arg);
void	 qmpc_start(struct event_base *, const char *path);
void	 qmpc_stop(void);
int	 qmpc_connected(void);
const char *qmpc_version(void);
void	 qmpc_call(const char *cmd, json_t *args, int timeout, qmpc_cb,
	    void *arg);	/* steals args */
/* One connection of its own: a unix socket, or a cluster host over TLS. */
struct qmpc_conn;
struct qmpc_conn *qmpc_conn_open(struct event_base *, const char *path,
	    SSL_CTX *tls, const char *cn);
void	 qmpc_conn_free(struct qmpc_conn *);
int	 qmpc_conn_ready(const struct qmpc_conn *);
const char *qmpc_conn_version(const struct qmpc_conn *);
void	 qmpc_conn_call(struct qmpc_conn *, const char *cmd, json_t *args,
	    int timeout, qmpc_cb, void *arg);	/* steals args */

/*
 * cluster.c: cluster mode. Hosts and placement from etcd; cluster_call
 * sends a request to the host it is for (qmpc_call's way in cluster
 * mode); cluster_listen_of names a desktop's host listener.
 */
struct cluster_conf;
SSL_CTX	*cluster_tls_context(const struct cluster_conf *, char **cause);
int	 cluster_start(struct event_base *, SSL_CTX *, char **cause);
void	 cluster_stop(void);
void	 cluster_call(const char *cmd, json_t *args, int timeout, qmpc_cb,
	    void *arg);
const char *cluster_listen_of(const char *vm, const char **host,
	    char **why);
struct bufferevent;
int	 cluster_check_peer(struct bufferevent *, const char *cn, char *why,
	    size_t len);
/*
 * cluster-relay.c: a unix socket that answers as qmpd would, routing each
 * request to its host: the RDP gateway's threads use it in cluster mode.
 */
int	 cluster_relay_open(const char *path, uid_t owner, gid_t group,
	    char **cause);
int	 cluster_relay_start(struct event_base *, int fd, char **cause);
void	 cluster_relay_stop(void);

/*
 * cluster-stream.c: a desktop's VNC from its host, over a TLS connection
 * that turns into the stream after desktop.vnc's answer; cb gets a local
 * socket of that stream (fd) or an error class and description.
 */
typedef void (*cluster_vnc_cb)(int fd, const char *errclass,
	    const char *errdesc, void *arg);
void	 cluster_vnc_open(const char *login, const char *vm, cluster_vnc_cb,
	    void *arg);
int	 cluster_up_hosts(void);
const char *cluster_version(void);

/* portal-session.c: portal login sessions, in memory, with an idle expiry. */
struct portal_session {
	char			 id[65];	/* 256 random bits, hex */
	char			*login;
	char			*name;
	int			 admin;
	time_t			 created;
	time_t			 last;
	TAILQ_ENTRY(portal_session)	 entry;
};
void	 portal_session_init(struct event_base *);
struct portal_session *portal_session_create(const char *login,
	    const char *name, int admin);
/*
 * The live session with this id, or NULL. A user's request touches it
 * (touch 1); the portal's own background refresh does not, so an
 * unattended tab does not keep a session alive.
 */
struct portal_session *portal_session_find(const char *id, int touch);
void	 portal_session_destroy(struct portal_session *);
void	 portal_session_clear(void);

/*
 * ticket.c: signed, short-lived proxy tickets, pure. A ticket is the host
 * of a CONNECT target, "qdesk-VM-EXPIRES-HMAC", the HMAC-SHA256 with the
 * broker's key over VM, SPICE port and expiry. It names what may be
 * reached; the SPICE password still guards the console itself.
 */
#define TICKET_MAX		160
#define TICKET_SKEW		5	/* seconds of grace after expiry */
int	 ticket_make(const unsigned char *key, size_t keylen, const char *vm,
	    int port, time_t expires, char *buf, size_t len);
int	 ticket_verify(const unsigned char *key, size_t keylen,
	    const char *ticket, int port, time_t now, char *vm, size_t vmlen,
	    char **cause);

/*
 * connlimit.c: connections per client address and in all, pure. The
 * defaults hold for the portal and the SPICE proxy each (--max-conns,
 * --max-conns-per-addr); the descriptors they need are checked at start.
 */
#define CONNLIMIT_MAX		1024
#define CONNLIMIT_PER_ADDR	128
#define BROKER_MAX_CONNS	65536
/* A failed login's token comes back after this long (per address). */
#define BROKER_LOGIN_REFILL	3
#define BROKER_LOGIN_REFILL_MAX	3600
struct connlimit;
struct connlimit *connlimit_create(int max, int per_addr);
void	 connlimit_free(struct connlimit *);
int	 connlimit_add(struct connlimit *, const char *addr, char **cause);
void	 connlimit_del(struct connlimit *, const char *addr);
int	 connlimit_count(const struct connlimit *, const char *addr);

/* throttle.c: failed logins per client address, pure. */
struct throttle;
struct throttle *throttle_create(int burst, int refill, int max);
void	 throttle_free(struct throttle *);
int	 throttle_check(struct throttle *, const char *key, time_t now);
void	 throttle_fail(struct throttle *, const char *key, time_t now);
void	 throttle_refund(struct throttle *, const char *key, time_t now);



/*
 * ws.c: RFC 6455 framing, pure. ws_parse takes one frame header off a
 * buffer once the whole frame is there; the parser keeps the fragment
 * state between frames.
 */
#define WS_OP_CONT		0x0
#define WS_OP_TEXT		0x1
#define WS_OP_BINARY		0x2
#define WS_OP_CLOSE		0x8
#define WS_OP_PING		0x9
#define WS_OP_PONG		0xa
#define WS_CLOSE_NONE		0	/* a close frame without a code */
#define WS_CLOSE_NORMAL		1000
#define WS_CLOSE_GOING		1001
#define WS_CLOSE_PROTOCOL	1002
#define WS_CLOSE_DATA		1003	/* a text frame: binary only */
#define WS_CLOSE_TOO_BIG	1009
#define WS_CLOSE_ERROR		1011
#define WS_HEADER_MAX		14
#define WS_ACCEPT_LEN		28
struct ws_parser {
	size_t			 max_payload;
	int			 in_message;	/* a fragmented message goes on */
	int			 message_op;
};
struct ws_frame {
	int			 opcode;
	int			 message_op;	/* data: the message's opcode */
	int			 fin;
	int			 masked;
	unsigned char		 mask[4];
	size_t			 header_len;
	size_t			 payload_len;
	int			 close_code;	/* when ws_parse fails */
	const char		*cause;
};
int	 ws_header_has(const char *value, const char *token);
int	 ws_accept_key(const char *key, char *out, size_t outlen);
int	 ws_parse(struct ws_parser *, const unsigned char *buf, size_t len,
	    int from_client, struct ws_frame *);
void	 ws_unmask(unsigned char *data, size_t len,
	    const unsigned char mask[4]);
size_t	 ws_header(unsigned char *out, int op, uint64_t len);
int	 ws_close_code(const unsigned char *payload, size_t len);

/*
 * console-rfb.c: where each message of the browser's RFB stream ends,
 * pure, so the console can add an update request between two (issue 12).
 */
#define RFB_SET_PIXEL_FORMAT	0
#define RFB_SET_ENCODINGS	2
#define RFB_UPDATE_REQUEST	3
#define RFB_KEY_EVENT		4
#define RFB_POINTER_EVENT	5
#define RFB_CUT_TEXT		6
#define RFB_CONTINUOUS		150
#define RFB_FENCE		248
#define RFB_XVP			250
#define RFB_DESKTOP_SIZE	251
#define RFB_QEMU		255
struct console_rfb {
	int			 state;
	unsigned char		 head[20];	/* a piece's first bytes */
	size_t			 have;
	uint64_t		 skip;		/* bytes of the piece to pass */
	uint64_t		 requests;	/* the browser's update asks */
	unsigned char		 request[10];	/* the last of them */
	uint64_t		 count[8];	/* messages by type, 0..7 (keys:
						   QEMU's extended ones too) */
	int			 sectype;	/* the browser's pick, or 0 */
	int			 v38;		/* the browser speaks RFB 3.8 */
	int			 drop;		/* this message stays here */

	/* QEMU's side, up to ServerInit (console_rfb_server_scan). */
	int			 sstate;
	unsigned char		 shead[24];
	size_t			 shave;
	uint64_t		 sskip;
	int			 continuous;	/* the broker asks for updates */
	uint64_t		 dropped;	/* EnableContinuousUpdates kept */
};
size_t	 console_rfb_scan(struct console_rfb *, const unsigned char *buf,
	    size_t len, int *pass);
int	 console_rfb_idle(const struct console_rfb *);
int	 console_rfb_start(const struct console_rfb *);
void	 console_rfb_request(const struct console_rfb *, unsigned char out[10]);
size_t	 console_rfb_server_scan(struct console_rfb *,
	    const unsigned char *buf, size_t len);
int	 console_rfb_server_init(const struct console_rfb *);
int	 console_rfb_server_done(const struct console_rfb *);
#define RFB_END_CONTINUOUS	150	/* EndOfContinuousUpdates, server */

/*
 * onetime.c: one-time browser console tickets, pure: each names a user
 * and a desktop, holds until its expiry and is gone once presented.
 */
#define ONETIME_LEN		64	/* hex of 256 random bits */
#define ONETIME_MAX		4096
struct onetime;
struct onetime *onetime_create(int max);
void	 onetime_free(struct onetime *);
void	 onetime_add(struct onetime *, const char *ticket, const char *login,
	    const char *vm, time_t expires, time_t now);
int	 onetime_take(struct onetime *, const char *ticket, const char *login,
	    const char *vm, time_t now, char **cause);
int	 onetime_count(struct onetime *, time_t now);

/* httputil.c: small pure parsers for the HTTP side. */
int	 httputil_cookie(const char *header, const char *name, char *out,
	    size_t outlen);
int	 httputil_hostname(const char *host, char *out, size_t outlen);
int	 httputil_target(const char *target, char *host, size_t hostlen,
	    int *port);
int	 httputil_match(const char *pattern, const char *path, char *arg,
	    size_t arglen);
int	 httputil_addr(const struct sockaddr *, char *addr, size_t len,
	    int *port);

/*
 * http.c: the HTTPS server. A request is matched against the route table
 * (routes.c); the handler gets an http_call and answers it exactly once,
 * at once or from a qmpd callback, with one of the http_reply_* helpers,
 * which free the call.
 */
#define HTTP_COOKIE		"qdesk_session"
#define HTTP_CSRF_HEADER	"X-Qdesk"
/* The portal's periodic refresh says so: it does not keep a session up. */
#define HTTP_BACKGROUND_HEADER	"X-Qdesk-Background"
#define HTTP_MAX_BODY		(16 * 1024)
/*
 * What evhttp reads before it gives up with its own 413 and a close. Well
 * above HTTP_MAX_BODY so that an oversized body is read whole and refused
 * by http_body with a 413 the client surely gets: evhttp's close with
 * the body still arriving resets the connection, and over TLS the client
 * often sees only the reset.
 */
#define HTTP_READ_MAX		(256 * 1024)

struct evhttp_request;
struct http_call {
	struct evhttp_request	*req;
	const struct http_route	*route;
	const char		*method;	/* "GET" or "POST" */
	char			 path[256];
	char			 arg[64];	/* the route's "*" */
	char			 peer[64];	/* client address */
	char			 host[256];	/* host name the client used */
	json_t			*body;		/* JSON object, or NULL */
	char			*login;		/* from the session, or NULL */
	char			 sid[65];	/* the session's id, or "" */
};

#define ROUTE_SESSION		0x1	/* a logged-in user only */
#define ROUTE_CSRF		0x2	/* POST: custom header, same origin */
#define ROUTE_BODY		0x4	/* a JSON object body is required */

struct http_route {
	const char		*method;	/* "GET" or "POST" */
	const char		*pattern;	/* "*" is one path segment */
	int			 flags;
	void			(*handler)(struct http_call *);
};
extern const struct http_route	routes[];
extern const size_t		nroutes;

int	 http_start(struct event_base *, int fd, SSL_CTX *, char **cause);
void	 http_stop(void);
void	 http_call_drop(struct http_call *);
int	 http_call_body(struct http_call *);
void	 http_header(struct http_call *, const char *name, const char *value);
void	 http_reply_json(struct http_call *, int code, json_t *);  /* steals */
void	 http_reply_error(struct http_call *, int code, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	 http_reply_qmpd(struct http_call *, const char *errclass,
	    const char *errdesc);
void	 http_reply_data(struct http_call *, int code, const char *type,
	    const void *data, size_t len);

/*
 * api-session.c: logins, and the throttle per client address that the
 * portal and the RDP gateway share. login_throttle_try charges an attempt
 * as it arrives (0) or says how many seconds addr must wait;
 * login_throttle_done gives the charge back unless the attempt failed.
 */
#define BROKER_LOGIN_MAX	63	/* as qmpd's AUTH_LOGIN_MAX */
#define BROKER_PASSWORD_MAX	256	/* as qmpd's AUTH_PASSWORD_MAX */
int	 login_throttle_try(const char *addr);
void	 login_throttle_done(const char *addr, int failed);

/* api-*.c: the handlers of the routes. */
int	 api_vm_name_ok(struct http_call *);
void	 api_session_free(void);
void	 api_login(struct http_call *);
void	 api_logout(struct http_call *);
void	 api_me(struct http_call *);
void	 api_health(struct http_call *);
void	 api_desktops(struct http_call *);
void	 api_start(struct http_call *);
void	 api_shutdown(struct http_call *);
void	 api_reboot(struct http_call *);
void	 api_console(struct http_call *);
void	 api_console_vv(struct http_call *);
void	 api_console_rdp(struct http_call *);
void	 api_console_ws(struct http_call *);
void	 portal_get(struct http_call *);

/* novnc.c: Debian's noVNC, read at start and served under /novnc/. */
void	 novnc_load(void);
void	 novnc_unload(void);
int	 novnc_available(void);
void	 novnc_get(struct http_call *);

/* console-ws.c: the browser console's WebSocket, bridged to VNC. */
char	*console_ws_ticket(const char *login, const char *vm,
	    time_t *expires);
void	 console_ws_stop(void);

/*
 * proxy.c: the SPICE CONNECT proxy. proxy_route records where a VM's
 * SPICE server listens, as qmpd last said; tickets for a VM go there
 * (loopback when qmpd said nothing or an any-address).
 */
int	 proxy_start(struct event_base *, int fd, char **cause);
void	 proxy_stop(void);
void	 proxy_route(const char *vm, const char *host);

/* rdpgw.c: the RDP gateway in the broker, when built with FreeRDP. */
int	 rdpgw_open(char **cause);
int	 rdpgw_start(struct event_base *, char **cause);
void	 rdpgw_stop(void);
int	 rdpgw_enabled(void);
char	*rdpgw_file(const char *host, const char *user, const char *desktop,
	    char **cause);

/*
 * metrics.c: GET /metrics for admins (a loopback client, or the bearer
 * token of --metrics-token), and the counters other files bump.
 */
struct broker_metrics {
	unsigned long long	logins;		/* portal logins */
	unsigned long long	login_failures;	/* wrong name or password */
	unsigned long long	logins_locked;	/* refused: login locked */
	unsigned long long	tickets;	/* SPICE proxy tickets */
	unsigned long long	proxy_connections;
	unsigned long long	proxy_bytes_in;	/* viewer to desktop */
	unsigned long long	proxy_bytes_out; /* desktop to viewer */
};
extern struct broker_metrics	broker_metrics;
int	 metrics_token_load(const char *path, char **cause);
void	 metrics_get(struct http_call *);
void	 metrics_spice_session(const char *vm, int delta);
void	 metrics_proxy_bytes(int from_viewer, size_t n);

/* portal.c: the static files of the portal, built in. */
struct portal_file {
	const char		*path;
	const char		*type;
	const unsigned char	*data;
	size_t			 size;
};
const struct portal_file *portal_find(const char *path);

#endif
