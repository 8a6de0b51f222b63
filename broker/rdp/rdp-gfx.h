/*
 * The graphics pipeline (MS-RDPEGFX) of the RDP gateway: rdp-gfx.c opens
 * the rdpgfx dynamic channel over drdynvc, confirms the client's caps,
 * keeps one surface the size of the guest's screen and paces frames by the
 * client's frame acknowledgements; rdp-gfx-codec.c turns damaged
 * rectangles into surface commands (AVC420, RemoteFX progressive, planar).
 *
 * Threads: FreeRDP 2's rdpgfx server reads the channel in a thread of its
 * own and calls back from there. The callbacks only record what arrived
 * (caps, acks, a cache offer) under a mutex and wake the session thread
 * through a pipe; everything sent goes out from the session thread.
 */
#ifndef QDESK_RDP_GFX_H
#define QDESK_RDP_GFX_H

#include <stdint.h>

#include <freerdp/freerdp.h>
#include <freerdp/peer.h>
#include <freerdp/channels/rdpgfx.h>

#include "rdp-int.h"

#define RDP_GFX_TILE		64	/* planar tiles, lossy-area grid */
/*
 * Frames in flight beyond the last ack. 4, not 2: with 2 the window was
 * full 6-24 times a 10 s 1080p row (the client still decoding, or its
 * ack not yet back), and each time QEMU's 8 MB update was read, copied
 * and then overwritten unsent, its cost paid for no frame; with 3 or 4
 * never. On the quiet machine 4 gave 18.4 frames/s against 16.7, and
 * less CPU a delivered frame in the gateway, QEMU and the client
 * (bench/transport/README.md, "The gateway's and the client's share").
 * The frame sent when a slot opens is still the newest picture.
 */
#define RDP_GFX_WINDOW		4
extern int rdp_gfx_window;		/* RDP_GFX_WINDOW, or the bench's */
void	 rdp_gfx_env(void);
#define RDP_GFX_REFINE_MS	1000	/* quiet before the lossless refinement */
extern int rdp_gfx_refine_ms;		/* RDP_GFX_REFINE_MS; < 0: none */
#define RDP_GFX_REFINE_MAX_MS	8000	/* quiet after wasted refinements */
#define RDP_GFX_REFINE_FLOOR	64000	/* bytes/s: refinement's least rate */
#define RDP_GFX_WAIT_MS		3000	/* for the pipeline after activation */
#define RDP_GFX_SMALL_TILES	12	/* damage this small goes lossless */
#define RDP_GFX_AVC_BITRATE	4000000	/* bit/s, x264's VBR target */
#define RDP_GFX_AVC_FPS		30
#define RDP_GFX_AVC_THREADS	1	/* x264's: the session thread only */

enum rdp_gfx_codec_id {
	RDP_GFX_PLANAR,
	RDP_GFX_PROGRESSIVE,
	RDP_GFX_AVC420,
	RDP_GFX_AVC444,		/* v2 layout (RDPGFX_CODECID_AVC444v2) */
};

/* The H.264 encoder's CPU: conversion to YUV, x264 (thread CPU time). */
struct rdp_gfx_avc_stats {
	uint64_t	frames;
	uint64_t	yuvus;
	uint64_t	x264us;
};

/* Pacing by frame acknowledgement (pure; rdp-gfx.c). Frame ids from 1. */
struct rdp_gfx_pace {
	uint32_t	next;		/* id of the next frame */
	uint32_t	acked;		/* last acknowledged frame id */
	int		window;
	int		suspended;	/* client said SUSPEND: no acks */
	uint64_t	acks;
	uint64_t	stale;		/* acks for no frame in flight */
};
void	 rdp_gfx_pace_init(struct rdp_gfx_pace *, int window);
uint32_t rdp_gfx_pace_inflight(const struct rdp_gfx_pace *);
int	 rdp_gfx_pace_may_send(const struct rdp_gfx_pace *);
uint32_t rdp_gfx_pace_start(struct rdp_gfx_pace *);
void	 rdp_gfx_pace_ack(struct rdp_gfx_pace *, uint32_t frameid,
	    uint32_t queuedepth);

/*
 * The lossless refinement's timing and budget (pure; rdp-gfx-refine.c):
 * at the lossy stream's rate, and later after refinements motion undid.
 */
struct rdp_gfx_refine {
	uint64_t	ratebytes;	/* lossy bytes over ratems */
	uint64_t	ratems;
	uint64_t	lastlossy;	/* ms of the last lossy frame */
	uint64_t	lastrefine;	/* ms of a refinement since, or 0 */
	uint64_t	filled;		/* ms the bucket was last topped up */
	int64_t		tokens;		/* bytes the refinement may send */
	uint64_t	tilebytes;	/* a planar tile's, the last frame's */
	int		quiet;		/* ms of no motion before refining */
	int		basequiet;
	uint64_t	wasted;		/* refinements motion undid */
	uint64_t	tiles;		/* refined, all told */
	uint64_t	bytes;
};
void	 rdp_gfx_refine_init(struct rdp_gfx_refine *, int quiet);
uint64_t rdp_gfx_refine_rate(const struct rdp_gfx_refine *);
void	 rdp_gfx_refine_lossy(struct rdp_gfx_refine *, uint64_t now,
	    uint64_t bytes);
int	 rdp_gfx_refine_wait(struct rdp_gfx_refine *, uint64_t now,
	    int nlossy);
int	 rdp_gfx_refine_tiles(struct rdp_gfx_refine *, uint64_t now);
void	 rdp_gfx_refine_sent(struct rdp_gfx_refine *, uint64_t now,
	    int tiles, uint64_t bytes, int left);

/*
 * A large surface's H.264 quantizer, frame by frame, from the bytes the
 * last frames took (pure; rdp-gfx-qp.c): x264's own rate control costs
 * 20-40% of its CPU at 1080p.
 */
#define RDP_GFX_QP_TARGET	90	/* % of the cap the bytes aim at */
struct rdp_gfx_qp {
	int		qp;		/* the next frame's */
	double		exact;		/* qp before rounding */
	int		floor;		/* never finer */
	int64_t		share;		/* bytes a frame aimed at */
	int64_t		size;		/* the bucket's: a second's shares */
	int64_t		fill;		/* the bucket's bytes */
};
void	 rdp_gfx_qp_init(struct rdp_gfx_qp *, int floor, int maxrate,
	    int fps);
int	 rdp_gfx_qp_next(const struct rdp_gfx_qp *);
void	 rdp_gfx_qp_frame(struct rdp_gfx_qp *, uint64_t bytes);

/*
 * The capability set to confirm from a client's advertised ones (pure):
 * the highest version known here; *codec is the codec that set allows
 * (RDP_GFX_AVC444 for 10.x without AVC_DISABLED, RDP_GFX_AVC420 for 8.1
 * with AVC420_ENABLED, else RDP_GFX_PROGRESSIVE). NULL when none is known.
 */
const RDPGFX_CAPSET *rdp_gfx_caps_choose(const RDPGFX_CAPSET *, int n,
	    int *codec);

/* rdp-gfx-codec.c: encoders. A frame's pixels, 0x00RRGGBB. */
struct rdp_gfx_image {
	const uint32_t	*fb;
	int		 stride;	/* pixels a row */
	int		 width;
	int		 height;
};
typedef int	(*rdp_gfx_emit)(void *, RDPGFX_SURFACE_COMMAND *);
struct rdp_gfx_codec;
struct rdp_gfx_codec *rdp_gfx_codec_create(int id, int width, int height);
const struct rdp_gfx_avc_stats *rdp_gfx_codec_stats(
	    const struct rdp_gfx_codec *);
void	 rdp_gfx_codec_free(struct rdp_gfx_codec *);
const char *rdp_gfx_codec_name(int id);
int	 rdp_gfx_codec_lossy(struct rdp_gfx_codec *,
	    const struct rdp_gfx_image *, const struct rdp_rect *, int n,
	    rdp_gfx_emit, void *, uint64_t *bytes);
int	 rdp_gfx_codec_planar(struct rdp_gfx_codec *,
	    const struct rdp_gfx_image *, const uint8_t *grid,
	    const struct rdp_rect *boxes, int gw, int gh, rdp_gfx_emit, void *,
	    uint64_t *bytes);
void	 rdp_gfx_codec_boxes(struct rdp_rect *boxes, int gw, int gh,
	    const struct rdp_rect *, int n);
int	 rdp_gfx_codec_count(const struct rdp_gfx_image *, const uint8_t *grid,
	    int gw, int gh);

/* rdp-gfx-avc.c (with libavcodec): H.264 frames of the whole picture. */
struct rdp_gfx_avc;
#define RDP_GFX_AVC_LARGE	(1280 * 1024)	/* pixels: a large surface */
extern const char *rdp_gfx_avc_preset;	/* x264's, "superfast" */
extern const char *rdp_gfx_avc_large;	/* larger surfaces', "ultrafast" */
const char *rdp_gfx_avc_preset_for(int width, int height);
extern const char *rdp_gfx_avc_crf;	/* x264's CRF, "23" */
extern int rdp_gfx_avc_threads;		/* x264's, RDP_GFX_AVC_THREADS */
extern int rdp_gfx_avc_maxrate;		/* bit/s, RDP_GFX_AVC_BITRATE */
extern const char *rdp_gfx_avc_x264;	/* more x264-params, "" */
extern const char *rdp_gfx_avc_largerc;	/* larger surfaces' rate: "qp" */
#define RDP_GFX_AVC_GOP		3000	/* frames between key frames */

/* rdp-gfx-x264.c (with x264): large AVC420 surfaces at our own QP. */
struct rdp_gfx_x264;
struct rdp_gfx_x264 *rdp_gfx_x264_create(int width, int height, int bitrate,
	    int fps, const char *preset, int floor, const char *extra,
	    int threads);
void	 rdp_gfx_x264_free(struct rdp_gfx_x264 *);
int	 rdp_gfx_x264_encode(struct rdp_gfx_x264 *, uint8_t *planes[3],
	    const int strides[3], uint8_t **data, uint32_t *len);
void	 rdp_gfx_avc_env(void);
struct rdp_gfx_avc *rdp_gfx_avc_create(int width, int height, int avc444,
	    int bitrate, int fps);
void	 rdp_gfx_avc_free(struct rdp_gfx_avc *);
const struct rdp_gfx_avc_stats *rdp_gfx_avc_stats(const struct rdp_gfx_avc *);
int	 rdp_gfx_avc_encode(struct rdp_gfx_avc *, const struct rdp_gfx_image *,
	    const RECTANGLE_16 *, int n, uint8_t **data, uint32_t *len);
int	 rdp_gfx_avc_encode444(struct rdp_gfx_avc *,
	    const struct rdp_gfx_image *, int v2, uint8_t **main,
	    uint32_t *mainlen, uint8_t **aux, uint32_t *auxlen);

/*
 * rdp-gfx-clear.c: ClearCodec glyphs for small lossless commands: a
 * picture of at most RDP_GFX_CLEAR_MAXPX pixels goes into the client's
 * glyph cache once and is drawn from it by index after; a bigger one goes
 * as ClearCodec runs when they are shorter than planar (pure).
 */
#define RDP_GFX_CLEAR_GLYPHS	4000	/* the client's glyph cache */
#define RDP_GFX_CLEAR_MAXPX	1024	/* largest glyph, in pixels */
struct rdp_gfx_clear;
struct rdp_gfx_clear *rdp_gfx_clear_create(void);
void	 rdp_gfx_clear_free(struct rdp_gfx_clear *);
void	 rdp_gfx_clear_reset(struct rdp_gfx_clear *);
void	 rdp_gfx_clear_stats(const struct rdp_gfx_clear *, uint64_t *hits,
	    uint64_t *stores, uint64_t *plains);
int	 rdp_gfx_clear_encode(struct rdp_gfx_clear *,
	    const struct rdp_gfx_image *, int x, int y, int w, int h,
	    size_t planar_len, const uint8_t **data, size_t *len);

/* rdp-gfx.c: the channel, for rdp-peer.c. */
#define RDP_GFX_OFF		(-2)	/* not in use: send bitmap updates */
struct rdp_gfx;
struct rdp_gfx	*rdp_gfx_create(freerdp_peer *, HANDLE vcm);
void	 rdp_gfx_free(struct rdp_gfx *, const char *who);
int	 rdp_gfx_fd(const struct rdp_gfx *);
int	 rdp_gfx_active(const struct rdp_gfx *);
int	 rdp_gfx_check(struct rdp_gfx *, int activated, const char *who);
int	 rdp_gfx_send(struct rdp_gfx *, const struct rdp_rfb *,
	    const struct rdp_rect *, int n);
int	 rdp_gfx_idle(struct rdp_gfx *, const struct rdp_rfb *);
int	 rdp_gfx_timeout(struct rdp_gfx *);

#endif
