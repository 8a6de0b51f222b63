/*
 * A large surface's AVC420 stream through libx264 itself, at a QP chosen
 * each frame by rdp-gfx-qp.c (built only when meson finds x264; else
 * rdp-gfx-avc.c keeps libavcodec's libx264 with CRF and the VBV).
 *
 * Why not through libavcodec: x264's CRF and VBV need its half-resolution
 * lookahead, a downscale and a motion search of every frame, 20-40% of
 * x264's CPU at 1920x1080 with ultrafast (bench/transport/README.md, "The
 * gateway's and the client's share"); constant QP skips it. But a fixed
 * QP has no cap, and libavcodec cannot change the QP frame by frame
 * (x264_encoder_reconfig ignores i_qp_constant, and the wrapper sets no
 * i_qpplus1). Here each picture carries its own i_qpplus1.
 *
 * The stream is what libavcodec made of the same settings: preset
 * (ultrafast at this size) with zerolatency, Annex B with the headers
 * repeated before each key frame, no B-frames, one reference frame, a
 * 3000-frame GOP, no scene cuts, BT.709 in the VUI, one thread.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <x264.h>

#include "log.h"
#include "rdp-gfx.h"
#include "xmalloc.h"

struct rdp_gfx_x264 {
	x264_t		*enc;
	x264_picture_t	 pic;
	struct rdp_gfx_qp qp;
	int64_t		 pts;
};

/* x264's messages in the gateway's log, as libavcodec's were. */
static void
rdp_gfx_x264_log(void *arg, int level, const char *fmt, va_list ap)
{
	char	 buf[512];
	size_t	 n;

	(void)arg;
	vsnprintf(buf, sizeof buf, fmt, ap);
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	if (level <= X264_LOG_WARNING)
		log_warnx("RDP: libx264: %s", buf);
	else
		log_info("RDP: libx264: %s", buf);
}

#define RDP_GFX_X264_MID	37	/* CQP's constant: forced QPs around it */

/* 2^e, for the factors above (no libm in the gateway). */
static float
rdp_gfx_x264_pow2(double e)
{
	double	r = 1;

	for (; e >= 1; e -= 1)
		r *= 2;
	for (; e < 0; e += 1)
		r /= 2;
	return ((float)(r * (1 + e * (0.6565 + 0.3435 * e))));
}

/*
 * An encoder for width x height (even) at most bitrate bit/s; extra is
 * more x264 parameters, "k=v:k=v" (the bench's x264= word). NULL
 * (logged) when x264 refuses.
 */
struct rdp_gfx_x264 *
rdp_gfx_x264_create(int width, int height, int bitrate, int fps,
    const char *preset, int floor, const char *extra, int threads)
{
	struct rdp_gfx_x264	*x;
	x264_param_t		 p;
	char			*copy, *word, *val, *last;

	if (x264_param_default_preset(&p, preset, "zerolatency") < 0) {
		log_warnx("RDP: x264 has no preset %s", preset);
		return (NULL);
	}
	p.pf_log = rdp_gfx_x264_log;
	p.i_log_level = X264_LOG_INFO;	/* its end-of-stream summary */
	p.i_csp = X264_CSP_I420;
	p.i_width = width;
	p.i_height = height;
	p.i_fps_num = fps;
	p.i_fps_den = 1;
	p.i_timebase_num = 1;
	p.i_timebase_den = fps;
	p.i_threads = threads;
	p.i_bframe = 0;
	p.i_frame_reference = 1;
	p.i_keyint_max = RDP_GFX_AVC_GOP;
	p.i_scenecut_threshold = 0;
	p.b_repeat_headers = 1;
	p.b_annexb = 1;
	p.vui.i_colmatrix = 1;		/* BT.709, FreeRDP's matrix */
	p.rc.i_rc_method = X264_RC_CQP;
	x = xcalloc(1, sizeof *x);
	rdp_gfx_qp_init(&x->qp, floor, bitrate, fps);
	/*
	 * x264 clips a forced QP to the range CQP's I, P and B quantizers
	 * span (qp-min and qp-max are reset from them): with only a
	 * constant of 36 every P frame stayed at 39. The I and B factors
	 * (never used: every frame's QP is forced, no B-frames) stretch
	 * that range over floor..51.
	 */
	p.rc.i_qp_constant = RDP_GFX_X264_MID;
	p.rc.f_ip_factor = rdp_gfx_x264_pow2((RDP_GFX_X264_MID - floor) / 6.0);
	p.rc.f_pb_factor = rdp_gfx_x264_pow2((51 - RDP_GFX_X264_MID) / 6.0);
	if (*extra != '\0') {
		copy = xstrdup(extra);
		for (word = strtok_r(copy, ":", &last); word != NULL;
		    word = strtok_r(NULL, ":", &last)) {
			if ((val = strchr(word, '=')) != NULL)
				*val++ = '\0';
			if (x264_param_parse(&p, word, val) != 0)
				log_warnx("RDP: x264 parameter '%s' ignored",
				    word);
		}
		free(copy);
	}
	if ((x->enc = x264_encoder_open(&p)) == NULL) {
		log_warnx("RDP: cannot open x264 for %dx%d", width, height);
		free(x);
		return (NULL);
	}
	x264_picture_init(&x->pic);
	x->pic.img.i_csp = X264_CSP_I420;
	x->pic.img.i_plane = 3;
	return (x);
}

void
rdp_gfx_x264_free(struct rdp_gfx_x264 *x)
{
	if (x == NULL)
		return;
	x264_encoder_close(x->enc);	/* logs x264's summary */
	free(x);
}

/*
 * One frame of the I420 planes (x264 copies them); *data is x264's until
 * the next call. The QP is the controller's; the bytes go back to it.
 */
int
rdp_gfx_x264_encode(struct rdp_gfx_x264 *x, uint8_t *planes[3],
    const int strides[3], uint8_t **data, uint32_t *len)
{
	x264_picture_t	 out;
	x264_nal_t	*nal;
	int		 i, n, size;

	for (i = 0; i < 3; i++) {
		x->pic.img.plane[i] = planes[i];
		x->pic.img.i_stride[i] = strides[i];
	}
	x->pic.i_pts = x->pts++;
	x->pic.i_type = X264_TYPE_AUTO;
	x->pic.i_qpplus1 = rdp_gfx_qp_next(&x->qp) + 1;
	size = x264_encoder_encode(x->enc, &nal, &n, &x->pic, &out);
	if (size <= 0 || n <= 0) {
		log_warnx("RDP: x264 gave no frame (%d)", size);
		return (-1);
	}
	/* The NALs of one call are contiguous in x264's buffer. */
	*data = nal[0].p_payload;
	*len = (uint32_t)size;
	rdp_gfx_qp_frame(&x->qp, (uint64_t)size);
	return (0);
}
