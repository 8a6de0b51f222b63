/*
 * H.264 for AVC420 through libavcodec, configured here. FreeRDP 2.11's
 * own encoder (avc420_compress) opens x264 with preset "medium", which
 * no API changes: ~90 ms of CPU for a 1024x768 frame, too slow for a
 * desktop. This one asks for "superfast" with zerolatency (no B-frames,
 * no lookahead: one frame in, one frame out) and a long GOP (the client
 * keeps its reference frames for the whole session). The RGB to YUV 4:2:0
 * step is FreeRDP's primitive, the same matrix its decoder inverts.
 *
 * Built only when meson finds libavcodec (rdp-gfx-codec.c falls back to
 * FreeRDP's encoder otherwise).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/opt.h>

#include <freerdp/codec/color.h>
#include <freerdp/primitives.h>

#include "log.h"
#include "rdp-gfx.h"
#include "xmalloc.h"

#define RDP_GFX_AVC_PRESET	"superfast"
#define RDP_GFX_AVC_GOP		3000	/* frames between key frames */

struct rdp_gfx_avc {
	AVCodecContext	*ctx;
	AVFrame		*frame;
	AVPacket	*pkt;
	int		 width;		/* even: the 4:2:0 planes' need */
	int		 height;
};

void
rdp_gfx_avc_free(struct rdp_gfx_avc *a)
{
	if (a == NULL)
		return;
	avcodec_free_context(&a->ctx);
	av_frame_free(&a->frame);
	av_packet_free(&a->pkt);
	free(a);
}

/* An encoder for width x height; NULL (logged) when there is none. */
struct rdp_gfx_avc *
rdp_gfx_avc_create(int width, int height, int bitrate, int fps)
{
	struct rdp_gfx_avc	*a;
	const AVCodec		*codec;

	if ((codec = avcodec_find_encoder_by_name("libx264")) == NULL &&
	    (codec = avcodec_find_encoder(AV_CODEC_ID_H264)) == NULL) {
		log_warnx("RDP: libavcodec has no H.264 encoder");
		return (NULL);
	}
	a = xcalloc(1, sizeof *a);
	a->width = (width + 1) & ~1;
	a->height = (height + 1) & ~1;
	if ((a->ctx = avcodec_alloc_context3(codec)) == NULL ||
	    (a->frame = av_frame_alloc()) == NULL ||
	    (a->pkt = av_packet_alloc()) == NULL)
		goto fail;
	a->ctx->width = a->width;
	a->ctx->height = a->height;
	a->ctx->pix_fmt = AV_PIX_FMT_YUV420P;
	a->ctx->time_base = (AVRational){ 1, fps };
	a->ctx->framerate = (AVRational){ fps, 1 };
	a->ctx->bit_rate = bitrate;
	a->ctx->rc_max_rate = bitrate;
	a->ctx->rc_buffer_size = bitrate;	/* a second's worth */
	a->ctx->gop_size = RDP_GFX_AVC_GOP;
	a->ctx->max_b_frames = 0;
	a->ctx->thread_count = 1;	/* one session, one thread */
	a->ctx->colorspace = AVCOL_SPC_BT709;
	av_opt_set(a->ctx->priv_data, "preset", RDP_GFX_AVC_PRESET, 0);
	av_opt_set(a->ctx->priv_data, "tune", "zerolatency", 0);
	if (avcodec_open2(a->ctx, codec, NULL) < 0) {
		log_warnx("RDP: cannot open the H.264 encoder");
		goto fail;
	}
	a->frame->format = AV_PIX_FMT_YUV420P;
	a->frame->width = a->width;
	a->frame->height = a->height;
	if (av_frame_get_buffer(a->frame, 32) < 0)
		goto fail;
	return (a);
fail:
	rdp_gfx_avc_free(a);
	return (NULL);
}

/*
 * One frame of the whole picture (width x height pixels of fb, stride
 * pixels a row). *data stays the encoder's until the next call.
 */
int
rdp_gfx_avc_encode(struct rdp_gfx_avc *a, const uint32_t *fb, int stride,
    int width, int height, uint8_t **data, uint32_t *len)
{
	primitives_t	*prims = primitives_get();
	prim_size_t	 roi;
	BYTE		*planes[3];
	UINT32		 steps[3];
	int		 i, rc;

	if (av_frame_make_writable(a->frame) < 0)
		return (-1);
	for (i = 0; i < 3; i++) {
		planes[i] = a->frame->data[i];
		steps[i] = a->frame->linesize[i];
	}
	/* Odd sizes: the last row or column is left as it was. */
	roi.width = width & ~1;
	roi.height = height & ~1;
	if (prims->RGBToYUV420_8u_P3AC4R((const BYTE *)fb, PIXEL_FORMAT_BGRX32,
	    stride * 4, planes, steps, &roi) != PRIMITIVES_SUCCESS)
		return (-1);
	a->frame->pts++;
	if (avcodec_send_frame(a->ctx, a->frame) < 0)
		return (-1);
	av_packet_unref(a->pkt);
	rc = avcodec_receive_packet(a->ctx, a->pkt);
	if (rc < 0) {
		log_warnx("RDP: H.264 encoder gave no frame (%d)", rc);
		return (-1);
	}
	*data = a->pkt->data;
	*len = a->pkt->size;
	return (0);
}
