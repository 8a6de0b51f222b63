/*
 * What the RDP gateway's files share. The gateway has two sides:
 *
 *   rdp-gateway.c  on the broker's libevent loop: the listening socket,
 *                  the registry of sessions (who is on which desktop, for
 *                  takeover) and a control socket per session;
 *   rdp-peer*.c    one thread per RDP connection, which owns the FreeRDP
 *                  peer, the VNC connection and the encoder, and talks to
 *                  the loop only through its control socket (rdp-peer.h
 *                  says which file does what).
 *
 * Why threads: FreeRDP 2's server runs its TLS accept as a loop of
 * poll(10 ms) until the handshake ends (a client that stalls there would
 * stall the broker), and encoding a frame takes milliseconds of CPU. The
 * threads never touch the broker's state; qmpd is reached over fresh unix
 * connections of their own (rdp-qmpd.c), as the VNC fd needs anyway.
 * Each session has one more thread, its VNC reader (rdp-rfb-pump.c): it
 * moves QEMU's bytes into memory and asks for the next update as one
 * arrives whole, so QEMU can send while the session encodes; the session
 * parses the messages itself. Writes to QEMU share rfb->wlock.
 */
#ifndef QDESK_RDP_INT_H
#define QDESK_RDP_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define RDP_LOGIN_MAX		64	/* as qmpd's login names */
#define RDP_PASSWORD_MAX	256	/* bytes, as qmpd's AUTH_PASSWORD_MAX */
#define RDP_VM_MAX		64	/* as qmpd's VM names */
#define RDP_ADDR_MAX		64	/* client address for messages */
#define RDP_QMPD_TIMEOUT	10	/* seconds for a qmpd answer */
#define RDP_START_TIMEOUT	130	/* desktop.power start waits for boot */
#define RDP_LOGON_TIMEOUT	30	/* from accept to a good password */
#define RDP_FB_MAX		8192	/* widest or tallest framebuffer */

/* What every session thread gets, copied: nothing shared is freed. */
struct rdp_config {
	char	*cert_pem;
	char	*key_pem;
	char	*qmpd_socket;
};

/*
 * Control messages between the loop and a session, one per datagram
 * (SOCK_SEQPACKET), plain text:
 *   session -> loop:  "try"            a login attempt: may it go on?
 *   loop -> session:  "go" or "wait SECONDS"   (the try is charged)
 *   session -> loop:  "auth LOGIN"     the password is good
 *   session -> loop:  "refund"         the attempt ended, not as a failure
 *   session -> loop:  "user LOGIN VM"  now showing VM (takeover)
 *   loop -> session:  "kick REASON"     end the session, tell the client
 */
#define RDP_CTL_MAX		256

/* rdp-peer.c: the session thread. Takes fd and ctl; config is copied. */
int	 rdp_peer_spawn(int fd, int ctl, const char *addr,
	    const struct rdp_config *, char **cause);
uint64_t rdp_peer_ms(void);

/*
 * rdp-qmpd.c: one blocking request to qmpd on a fresh connection (for the
 * session threads). Returns the "return" object (the caller owns it), or
 * NULL with *errclass (static or a copy the caller frees: see code) and a
 * cause. When fdp is not NULL, an fd passed with the reply is stored there
 * (-1 when none came).
 */
json_t	*rdp_qmpd_call(const char *path, const char *cmd, json_t *args,
	    int timeout, int *fdp, char **errclass, char **cause);
/* The same, polled from a loop: start, poll its fd, read when ready. */
struct rdp_qmpd_req;
struct rdp_qmpd_req *rdp_qmpd_start(const char *path, const char *cmd,
	    json_t *args, int timeout, char **cause);
int	 rdp_qmpd_req_fd(const struct rdp_qmpd_req *);
int	 rdp_qmpd_req_read(struct rdp_qmpd_req *, json_t **ret, int *fdp,
	    char **errclass, char **cause);
void	 rdp_qmpd_req_free(struct rdp_qmpd_req *);

/* rdp-login.c: who the client is and which desktop it gets. */
struct rdp_login {
	const char	*user;		/* from the client info PDU */
	const char	*password;
	const char	*domain;	/* a desktop name, or empty */
	const char	*token;		/* routing token (loadbalanceinfo) */
	size_t		 tokenlen;
	const char	*addr;		/* client address, for qmpd's log */
	/*
	 * throttle: before anything else, may the attempt go on (0), or how
	 * many seconds must the address wait (-1: no answer); refund: it
	 * ended without failing (qmpd unreachable). authed: the password is
	 * good, before the desktop starts. Any may be NULL.
	 */
	int		(*throttle)(void *);
	void		(*refund)(void *);
	void		(*authed)(void *, const char *login);
	void		*arg;
};
struct rdp_login_result {
	char		 login[RDP_LOGIN_MAX];
	char		 vm[RDP_VM_MAX];
	int		 vncfd;
	int		 audio;		/* the VNC server has the guest's sound */
	int		 errinfo;	/* for the client when refused */
};
int	 rdp_login(const char *qmpd, const struct rdp_login *,
	    struct rdp_login_result *, char **cause);
char	*rdp_login_wanted(const char *domain, const char *token,
	    size_t tokenlen);
json_t	*rdp_login_choose(json_t *desktops, const char *wanted,
	    const char *login, char **cause);

/* rdp-rfb.c: a small RFB 3.8 client on a connected fd (raw, copyrect). */
struct rdp_rect {
	int	x, y, w, h;
};
#define RDP_RFB_DAMAGE		64	/* rects kept before merging */
struct rdp_pump;
struct rdp_rfb {
	int		 fd;
	struct rdp_pump	*pump;		/* reads fd on a thread, or NULL */
	int		 threaded;	/* each new fd gets a reader thread */
	pthread_mutex_t	 wlock;		/* writes: the session's, the reader's */
	unsigned char	*in;		/* read buffer */
	size_t		 inoff;
	size_t		 inlen;
	size_t		 insize;

	uint32_t	*fb;		/* 0x00RRGGBB, stride pixels a row */
	int		 width;
	int		 height;
	int		 stride;
	char		 name[128];

	int		 extkey;	/* QEMU extended key events */
	int		 ledstate;	/* QEMU LED state pseudo-encoding */
	int		 leds;		/* 1 scroll, 2 num, 4 caps */
	int		 resized;	/* since the last rdp_rfb_take */
	int		 extdesk;	/* ExtendedDesktopSize: may ask a size */
	uint32_t	 screen_id;	/* QEMU's screen, for SetDesktopSize */
	uint32_t	 screen_flags;
	int		 size_status;	/* of the last answer to our request */
	int		 size_answers;	/* answers to SetDesktopSize */
	int		 size_asks;	/* SetDesktopSize sent */
	int		 updated;	/* a whole update arrived */
	int		 nudge;		/* an update came since the last request
					   (without the reader thread) */
	uint64_t	 nudges;	/* refresh nudges sent (rdp-rfb-nudge.c) */
	int		 nudge_off;	/* QDESK_RDP_VNC_NUDGE=0: the A/B knob */

	struct rdp_rect	 damage[RDP_RFB_DAMAGE];
	int		 ndamage;

	/* Cut text and audio go to rdp-chan.h's owners (NULL: not asked). */
	struct rdp_clip	*clip;
	struct rdp_sound *sound;
	int		 cbext;		/* the extended clipboard is on */
	int		 audio;		/* QEMU acknowledged its audio */
	int		 quiet;		/* no screen: clipboard keeper (atomic) */
};
struct rdp_rfb	*rdp_rfb_create(int fd);
void	 rdp_rfb_free(struct rdp_rfb *);
void	 rdp_rfb_reattach(struct rdp_rfb *, int fd);

/* rdp-follow.c: resume a session's VNC stream after its desktop moved. */
struct rdp_follow;
struct rdp_follow *rdp_follow_start(uint64_t now, const char *why);
void	 rdp_follow_free(struct rdp_follow *);
int	 rdp_follow_fd(const struct rdp_follow *);
int	 rdp_follow_timeout(const struct rdp_follow *, uint64_t now);
void	 rdp_follow_key(struct rdp_follow *, int down, uint32_t keysym,
	    uint32_t qnum);
void	 rdp_follow_pointer(struct rdp_follow *, int mask, int x, int y);
int	 rdp_follow_step(struct rdp_follow *, struct rdp_rfb *,
	    const char *qmpd, const char *login, const char *vm, uint64_t now,
	    int *tries, char **cause);
int	 rdp_rfb_handshake(struct rdp_rfb *, int timeout, char **cause);
int	 rdp_rfb_buffered(const struct rdp_rfb *);
int	 rdp_rfb_pump(struct rdp_rfb *, char **cause);
int	 rdp_rfb_pollfd(const struct rdp_rfb *);
int	 rdp_rfb_ready(struct rdp_rfb *, int readable);
size_t	 rdp_rfb_msglen(const unsigned char *, size_t);
int	 rdp_rfb_process(struct rdp_rfb *, char **cause);
int	 rdp_rfb_request(struct rdp_rfb *, int incremental);

/* rdp-rfb-nudge.c: keeps QEMU's VNC refresh at 30 ms while frames flow. */
#define RDP_RFB_NUDGE_LEN	12
size_t	 rdp_rfb_nudge(const struct rdp_rfb *, int after_update,
	    unsigned char *);
int	 rdp_rfb_send(struct rdp_rfb *, const void *, size_t);
uint32_t rdp_rfb_u32(const unsigned char *);
void	 rdp_rfb_put32(unsigned char *, uint32_t);
int	 rdp_rfb_key(struct rdp_rfb *, int down, uint32_t keysym,
	    uint32_t qnum);
int	 rdp_rfb_pointer(struct rdp_rfb *, int mask, int x, int y);
void	 rdp_rfb_damage(struct rdp_rfb *, int x, int y, int w, int h);
int	 rdp_rfb_extdesk(struct rdp_rfb *, int x, int y,
	    const unsigned char *screens, size_t len);
int	 rdp_rfb_set_size(struct rdp_rfb *, int w, int h);
/* ExtendedDesktopSize status: the display device cannot resize. */
#define RDP_RFB_SIZE_REFUSED(st)	((st) >= 1 && (st) <= 3)

/* rdp-rfb-pump.c: the VNC stream read on a thread, into memory. */
struct rdp_pump *rdp_pump_start(int fd,
	    size_t (*msglen)(const unsigned char *, size_t),
	    void (*onupdate)(void *), void *arg, char **cause);
void	 rdp_pump_framed(struct rdp_pump *);
void	 rdp_pump_stop(struct rdp_pump *);
int	 rdp_pump_fd(const struct rdp_pump *);
void	 rdp_pump_clear(struct rdp_pump *);
int	 rdp_pump_buffered(struct rdp_pump *);
void	 rdp_pump_stats(struct rdp_pump *, uint64_t *bytes, uint64_t *updates,
	    uint64_t *full, uint64_t *waitms);
int	 rdp_pump_read(struct rdp_pump *, void *, size_t, int timeout,
	    char **cause);

/* rdp-input.c: RDP input to RFB/QEMU terms, pure. */
struct rdp_inputstate {
	int	e1;		/* an E1 prefix (Pause) is under way */
	int	buttons;	/* RFB button mask */
	int	x;		/* last pointer position (RDP) */
	int	y;
};
uint32_t rdp_input_qnum(struct rdp_inputstate *, uint16_t flags, uint16_t code,
	    int *down);
uint32_t rdp_input_keysym(uint32_t qnum);
int	 rdp_input_mouse(struct rdp_inputstate *, uint16_t flags, int *wheel);
int	 rdp_input_scale(int v, int from, int to);

/* rdp-encode.c: framebuffer rectangles to RDP bitmap updates. */
struct rdp_encode;
struct rdp_encode *rdp_encode_create(void);
void	 rdp_encode_free(struct rdp_encode *);
struct rdp_encode_stats {
	uint64_t	 frames;	/* RFB updates passed on */
	uint64_t	 updates;	/* bitmap update PDUs */
	uint64_t	 tiles;
	uint64_t	 bytes;
	uint64_t	 blocked;	/* updates held: client not reading */
};
int	 rdp_encode_send(struct rdp_encode *, void *context,
	    const struct rdp_rfb *, const struct rdp_rect *, int n,
	    struct rdp_encode_stats *);
void	 rdp_encode_grid(uint8_t *grid, int gw, int gh, int tile,
	    const struct rdp_rect *, int n);

#endif
