/*
 * The quantizer of a large surface's H.264 frames, chosen here instead of
 * by x264's rate control (pure; rdp-gfx-x264.c applies it).
 *
 * Why: x264's CRF and VBV need a half-resolution copy of every frame and
 * a motion search over it (its lookahead), even with zerolatency and
 * ultrafast; at 1920x1080 that is 20-40% of x264's CPU a frame (measured:
 * bench/transport/README.md, "The gateway's and the client's share"). At
 * a constant QP x264 skips it, and the quantizer comes from here, from
 * the bytes the last frames took:
 *
 * - A leaky bucket of one second's frames, as x264's VBV saw it: each
 *   frame puts its bytes in and takes out its share of RDP_GFX_QP_TARGET
 *   percent of the cap at the nominal frame rate. Frames, not the wall
 *   clock, as with the VBV (the encoder is told the nominal rate): a
 *   frame costs about the same bytes at 8 frames/s as at 30, so a slow
 *   frame rate is not spent on huge frames the client then decodes
 *   slowly (tried with the wall clock: 90 KB frames at 2.4 frames/s).
 * - Each frame's allowance is that share, more while the bucket is under
 *   half full, less above; the next QP moves by 6 * log2(bytes /
 *   allowance) (H.264 halves the bytes every 6 QP), damped, at most
 *   RDP_GFX_QP_UP up and RDP_GFX_QP_DOWN down a frame, and never below the
 *   floor (crf's value: no finer than CRF would start) nor above 51.
 */
#include <stdint.h>
#include <string.h>

#include "rdp-gfx.h"

#define RDP_GFX_QP_START	36	/* the key frame's: 1080p at 32 was ~500 KB */
#define RDP_GFX_QP_MAX		51
#define RDP_GFX_QP_UP		4	/* steps a frame: faster up than down */
#define RDP_GFX_QP_DOWN		2

/*
 * log2(x) for x > 0 to within 0.09: the controller is damped, and this
 * keeps libm out of the gateway.
 */
static double
rdp_gfx_qp_log2(double x)
{
	int	n = 0;

	while (x >= 2) {
		x /= 2;
		n++;
	}
	while (x < 1) {
		x *= 2;
		n--;
	}
	return (n + (x - 1));
}

void
rdp_gfx_qp_init(struct rdp_gfx_qp *q, int floor, int maxrate, int fps)
{
	memset(q, 0, sizeof *q);
	q->floor = floor < 0 ? 0 : floor > RDP_GFX_QP_MAX ? RDP_GFX_QP_MAX :
	    floor;
	q->qp = RDP_GFX_QP_START > q->floor ? RDP_GFX_QP_START : q->floor;
	q->exact = q->qp;
	if (fps < 1)
		fps = 1;
	q->size = (int64_t)maxrate / 8 * RDP_GFX_QP_TARGET / 100;
	q->share = q->size / fps;
	if (q->share < 1)
		q->share = q->size = 1;
}

/* The quantizer for the next frame. */
int
rdp_gfx_qp_next(const struct rdp_gfx_qp *q)
{
	return (q->qp);
}

/* A frame of bytes went out: the next frame's quantizer. */
void
rdp_gfx_qp_frame(struct rdp_gfx_qp *q, uint64_t bytes)
{
	double	allow, step;

	q->fill += (int64_t)bytes - q->share;
	if (q->fill < 0)
		q->fill = 0;

	/* Half full is the aim: from 1.5x the share empty to 0.5x. */
	allow = (double)q->share * (1.5 - (double)q->fill / q->size);
	if (allow < q->share / 100.0)
		allow = q->share / 100.0;
	if (bytes == 0)
		bytes = 1;
	step = 6 * rdp_gfx_qp_log2((double)bytes / allow) * 0.6;
	if (step > RDP_GFX_QP_UP)
		step = RDP_GFX_QP_UP;
	if (step < -RDP_GFX_QP_DOWN)
		step = -RDP_GFX_QP_DOWN;
	/* Fractions add up: rounded each frame, small steps were lost. */
	q->exact += step;
	/* Over a second's budget: the VBV's hard edge. */
	if (q->fill > q->size)
		q->exact += RDP_GFX_QP_UP;
	if (q->exact < q->floor)
		q->exact = q->floor;
	if (q->exact > RDP_GFX_QP_MAX)
		q->exact = RDP_GFX_QP_MAX;
	q->qp = (int)(q->exact + 0.5);
}
