/*
 * The RDP gateway's static virtual channels (issue 12), on the session's
 * FreeRDP channel manager (rdp-peer.c owns it; rdp-chan.c), the clipboard (rdp-clip.c: cliprdr
 * <-> QEMU's clipboard through its VNC server) and sound (rdp-sound.c:
 * QEMU's VNC audio capture -> rdpsnd). All of it runs on the session
 * thread, polled with the rest: no channel thread, no lock, and no wait
 * for the client or QEMU (each request is a state with a deadline).
 */
#ifndef QDESK_RDP_CHAN_H
#define QDESK_RDP_CHAN_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include <freerdp/peer.h>
#include <freerdp/channels/disp.h>
#include <freerdp/server/cliprdr.h>

struct rdp_rfb;

/*
 * Clipboard texts are capped at 1 MiB of UTF-8 either way: QEMU's own
 * limit (its VNC server inflates at most 1 MiB, its vdagent buffers 1
 * MiB). A longer text is not passed on (logged), never cut short.
 */
#define RDP_CLIP_MAX		(1024 * 1024)
#define RDP_CLIP_WIRE_MAX	(RDP_CLIP_MAX + 4096)	/* a VNC cut message */
#define RDP_CLIP_WAIT_MS	5000	/* for QEMU's or the client's data */

/* VNC's extended clipboard (pseudo-encoding 0xC0A1E5CE) flags. */
#define RDP_CLIP_EXT_TEXT	(1U << 0)
#define RDP_CLIP_EXT_CAPS	(1U << 24)
#define RDP_CLIP_EXT_REQUEST	(1U << 25)
#define RDP_CLIP_EXT_PEEK	(1U << 26)
#define RDP_CLIP_EXT_NOTIFY	(1U << 27)
#define RDP_CLIP_EXT_PROVIDE	(1U << 28)

/* rdp-clip.c, pure: conversions and VNC messages (fuzz-rdp-clip). */
char	*rdp_clip_utf16_to_utf8(const unsigned char *, size_t, size_t *);
unsigned char *rdp_clip_utf8_to_utf16(const char *, size_t, size_t *);
char	*rdp_clip_latin1_to_utf8(const unsigned char *, size_t, size_t *);
char	*rdp_clip_utf8_to_latin1(const char *, size_t, size_t *);
int	 rdp_clip_ext_parse(const unsigned char *, size_t, uint32_t *flags,
	    char **text, size_t *textlen, char **cause);
unsigned char *rdp_clip_ext_build(uint32_t flags, const char *text,
	    size_t textlen, size_t *outlen);

/*
 * rdp-clip-cache.c: the guest's last clipboard text per login and
 * desktop, across sessions (QEMU's VNC server tells a new client nothing
 * of the clipboard it already has); shared by the session threads.
 */
#define RDP_CLIP_CACHE_ENTRIES	256
#define RDP_CLIP_CACHE_BYTES	(32 * 1024 * 1024)
#define RDP_CLIP_CACHE_TTL	(12 * 3600)	/* s, a portal session's most */
void	 rdp_clip_cache_put(const char *login, const char *vm,
	    const char *text, size_t len);
char	*rdp_clip_cache_get(const char *login, const char *vm, size_t *len);

/*
 * rdp-clip-keep.c: a session's VNC stream kept after its client left,
 * for the clipboard only (QEMU tells a new VNC client nothing of the
 * clipboard it holds), until the desktop's next session has its own.
 */
#define RDP_CLIP_KEEP_MAX	RDP_CLIP_CACHE_ENTRIES
int	 rdp_clip_keep_start(struct rdp_rfb *, const char *login,
	    const char *vm);
void	 rdp_clip_keep_stop(const char *vm);

/* rdp-clip.c: the session's clipboard. */
struct rdp_clip;
struct rdp_clip	*rdp_clip_create(void);
void	 rdp_clip_owner(struct rdp_clip *, const char *login, const char *vm);
void	 rdp_clip_free(struct rdp_clip *);
int	 rdp_clip_open(struct rdp_clip *, HANDLE vcm, rdpContext *);
void	 rdp_clip_attach(struct rdp_clip *, CliprdrServerContext *);
int	 rdp_clip_fd(struct rdp_clip *);
int	 rdp_clip_check(struct rdp_clip *, struct rdp_rfb *, char **cause);
void	 rdp_clip_vnc_cut(struct rdp_clip *, struct rdp_rfb *, int ext,
	    const unsigned char *, size_t);
void	 rdp_clip_log(struct rdp_clip *, const char *who);

/*
 * rdp-sound.c: QEMU's audio pseudo-encoding (-259) and client message
 * 255/1, and the session's sound (rdpsnd). PCM only, as QEMU captures
 * it: S16LE, 2 channels, 44100 Hz; a client offering no such PCM format
 * gets no sound.
 */
#define RDP_SOUND_RATE		44100
#define RDP_SOUND_CHANNELS	2
#define RDP_SOUND_DATA_MAX	(1024 * 1024)	/* one VNC audio message */
struct rdp_sound;
struct rdp_sound *rdp_sound_create(void);
void	 rdp_sound_free(struct rdp_sound *);
int	 rdp_sound_open(struct rdp_sound *, HANDLE vcm, rdpContext *);
int	 rdp_sound_fd(struct rdp_sound *);
int	 rdp_sound_check(struct rdp_sound *, struct rdp_rfb *, char **cause);
int	 rdp_sound_vnc_start(struct rdp_rfb *);
void	 rdp_sound_vnc(struct rdp_sound *, int op, const unsigned char *,
	    size_t);
void	 rdp_sound_log(struct rdp_sound *, const char *who);

/*
 * rdp-disp.c: the Display Control channel (MS-RDPEDISP, dynamic): the
 * client's window size -> SetDesktopSize to QEMU. Debounced: a size is
 * asked once RDP_DISP_QUIET_MS passed without a newer layout, or
 * RDP_DISP_MAX_MS after the first of a burst.
 */
#define RDP_DISP_MIN		200	/* MS-RDPEDISP's smallest monitor */
#define RDP_DISP_QUIET_MS	300
#define RDP_DISP_MAX_MS		1000
struct rdp_disp_debounce {
	int		pending;
	int		w, h;		/* newest layout */
	uint64_t	first;		/* ms: the burst began */
	uint64_t	last;		/* ms: newest layout */
	int		asked_w;	/* last size asked */
	int		asked_h;
};
int	 rdp_disp_layout_size(const DISPLAY_CONTROL_MONITOR_LAYOUT *,
	    uint32_t n, int *w, int *h);
void	 rdp_disp_debounce_offer(struct rdp_disp_debounce *, int w, int h,
	    uint64_t now);
int	 rdp_disp_debounce_due(struct rdp_disp_debounce *, uint64_t now,
	    int cur_w, int cur_h, int *w, int *h);
int	 rdp_disp_debounce_timeout(const struct rdp_disp_debounce *,
	    uint64_t now);
struct rdp_disp;
struct rdp_disp	*rdp_disp_create(freerdp_peer *, HANDLE vcm);
void	 rdp_disp_free(struct rdp_disp *);
int	 rdp_disp_fd(const struct rdp_disp *);
int	 rdp_disp_timeout(const struct rdp_disp *);
void	 rdp_disp_check(struct rdp_disp *, struct rdp_rfb *, int activated,
	    const char *who);
void	 rdp_disp_log(struct rdp_disp *, const char *who);

/* rdp-chan.c: the channels on the session's channel manager. */
struct rdp_chan;
struct rdp_chan	*rdp_chan_create(freerdp_peer *, HANDLE vcm);
void	 rdp_chan_free(struct rdp_chan *);
void	 rdp_chan_attach(struct rdp_chan *, struct rdp_rfb *, int sound,
	    const char *login, const char *vm);
int	 rdp_chan_pollfds(struct rdp_chan *, struct pollfd *, int max);
void	 rdp_chan_check(struct rdp_chan *, int activated, const char *who);
int	 rdp_chan_timeout(struct rdp_chan *);
void	 rdp_chan_log(struct rdp_chan *, const char *who);

#endif
