/*
 * H.264 for AVC420 and AVC444 through libavcodec, configured here.
 * FreeRDP 2.11's own encoder (avc420_compress, avc444_compress) opens x264
 * with preset "medium", which no API changes: ~90 ms of CPU for a
 * 1024x768 frame, too slow for a desktop. This one asks for "superfast"
 * ("ultrafast" above 1280x1024) with zerolatency (no B-frames, no lookahead: one frame in, one frame
 * out) and a long GOP (the client keeps its reference frames for the
 * whole session). The RGB to YUV step is FreeRDP's primitive, the matrix
 * its decoder inverts.
 *
 * AVC444 (MS-RDPEGFX's AVC444 bitmap stream): each frame is two 4:2:0
 * pictures, the main view (luma and subsampled chroma: what AVC420 sends)
 * and the auxiliary view (the chroma samples 4:2:0 drops, packed as a
 * picture), which together give the client full chroma: coloured text
 * stays sharp.
 * FreeRDP 2's client decodes both views with one H.264 decoder, main then
 * auxiliary, so they are one stream here too: one encoder, fed the two
 * pictures in turn, keeping two reference frames so that each view can
 * predict from its own previous picture rather than from the other view.
 *
 * Only the damaged rectangles are converted to YUV (AVC420): the planes
 * persist between frames, so the rest is still the last frame's. AVC444's
 * auxiliary layout moves samples between rows, so it converts the whole
 * frame.
 *
 * Built only when meson finds libavcodec (rdp-gfx-codec.c falls back to
 * FreeRDP's encoder otherwise).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/opt.h>

#include <freerdp/codec/color.h>
#include <freerdp/primitives.h>

#include "compat.h"
#include "log.h"
#include "rdp-gfx.h"
#include "xmalloc.h"


/*
 * x264's preset, quality and threads; changed only before the first
 * encoder (rdp-avc-bench), read by every session thread after. Surfaces
 * of more than RDP_GFX_AVC_LARGE pixels get the large preset: at
 * 1920x1080 x264 is most of the gateway's CPU, and "ultrafast" costs
 * 20-50% less of it a frame (no CABAC, no deblocking) for ~12% more
 * bytes, still under the 4 Mbit/s cap at 25 frames/s; the lossless
 * refinement makes text exact once motion stops
 * (bench/transport/README.md, "CPU a frame at 1080p").
 */
const char	*rdp_gfx_avc_preset = "superfast";
const char	*rdp_gfx_avc_large = "ultrafast";
const char	*rdp_gfx_avc_crf = "23";	/* x264's default quality */
int		 rdp_gfx_avc_threads = RDP_GFX_AVC_THREADS;
int		 rdp_gfx_avc_maxrate = RDP_GFX_AVC_BITRATE;
const char	*rdp_gfx_avc_x264 = "";	/* more x264-params (psnr=1) */
/*
 * Large AVC420 surfaces' rate control: "qp", libx264 itself at a QP that
 * rdp-gfx-qp.c chooses each frame from the bytes (rdp-gfx-x264.c: x264's
 * CRF and VBV cost 20-40% of its CPU at 1080p), when built with x264; or
 * "crf", libavcodec's x264 with CRF and the VBV, as smaller surfaces and
 * AVC444 have it (QDESK_RDP_X264 largerc=crf, for the A/B).
 */
const char	*rdp_gfx_avc_largerc = "qp";

/* The words of QDESK_RDP_X264, each setting's address. */
static const struct {
	const char	 *word;
	const char	**str;
	int		 *num;
} rdp_gfx_avc_words[] = {
	{ "crf", &rdp_gfx_avc_crf, NULL },
	{ "largepreset", &rdp_gfx_avc_large, NULL },
	{ "largerc", &rdp_gfx_avc_largerc, NULL },
	{ "maxrate", NULL, &rdp_gfx_avc_maxrate },
	{ "preset", &rdp_gfx_avc_preset, NULL },
	{ "threads", NULL, &rdp_gfx_avc_threads },
	{ "x264", &rdp_gfx_avc_x264, NULL },
};

/*
 * QDESK_RDP_X264, the benches' knob (not a product setting): words such
 * as "preset=ultrafast crf=28 threads=2 maxrate=1000000" (bit/s) or
 * "x264=psnr=1" (more x264-params; x264 then logs its PSNR) set the
 * values above (preset= for every size, largepreset= after it for
 * large surfaces only) for every session of this process, so that
 * bench/transport/run measures x264's settings end to end. Read once,
 * when the gateway starts (before any session thread); an unknown word
 * is logged and ignored.
 */
void
rdp_gfx_avc_env(void)
{
	char	*env, *copy, *word, *val, *last;
	size_t	 i;

	if ((env = getenv("QDESK_RDP_X264")) == NULL || *env == '\0')
		return;
	copy = xstrdup(env);	/* the strings stay in use: never freed */
	for (word = strtok_r(copy, " ,", &last); word != NULL;
	    word = strtok_r(NULL, " ,", &last)) {
		if ((val = strchr(word, '=')) != NULL)
			*val++ = '\0';
		for (i = 0; i < nitems(rdp_gfx_avc_words); i++)
			if (strcmp(word, rdp_gfx_avc_words[i].word) == 0)
				break;
		if (val == NULL || *val == '\0' ||
		    i == nitems(rdp_gfx_avc_words)) {
			log_warnx("QDESK_RDP_X264: ignored '%s' (preset=, "
			    "largepreset=, largerc=, crf=, threads=, maxrate=, "
			    "x264= are known)", word);
			continue;
		}
		if (rdp_gfx_avc_words[i].str != NULL)
			*rdp_gfx_avc_words[i].str = val;
		else
			*rdp_gfx_avc_words[i].num = atoi(val);
		if (rdp_gfx_avc_words[i].str == &rdp_gfx_avc_preset)
			rdp_gfx_avc_large = val;	/* every size */
	}
	log_info("RDP: x264 preset %s (%s and rate control %s above %d "
	    "pixels), crf %s, %d threads, at most %d bit/s, params '%s' "
	    "(QDESK_RDP_X264)", rdp_gfx_avc_preset, rdp_gfx_avc_large,
	    rdp_gfx_avc_largerc, RDP_GFX_AVC_LARGE, rdp_gfx_avc_crf,
	    rdp_gfx_avc_threads, rdp_gfx_avc_maxrate, rdp_gfx_avc_x264);
}

struct rdp_gfx_avc {
	AVCodecContext	*ctx;		/* libavcodec's x264, or */
	struct rdp_gfx_x264 *x264;	/* x264 at our QP (large AVC420) */
	AVFrame		*frame[2];	/* main view, auxiliary view (444) */
	AVPacket	*pkt;
	int		 avc444;
	int		 width;		/* even: the 4:2:0 planes' need */
	int		 height;
	int		 fresh;		/* planes not converted yet */
	int64_t		 pts;
	uint8_t		*main;		/* the main view's bitstream (444) */
	size_t		 mainsize;
	struct rdp_gfx_avc_stats stats;
};

/*
 * The session thread's CPU time, not the wall clock: on a loaded host the
 * wall clock measures the other processes too. x264's own threads (when
 * rdp_gfx_avc_threads > 1) are not in it.
 */
static uint64_t
rdp_gfx_avc_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

void
rdp_gfx_avc_free(struct rdp_gfx_avc *a)
{
	if (a == NULL)
		return;
	avcodec_free_context(&a->ctx);
#ifdef RDP_GFX_X264
	rdp_gfx_x264_free(a->x264);
#endif
	av_frame_free(&a->frame[0]);
	av_frame_free(&a->frame[1]);
	av_packet_free(&a->pkt);
	free(a->main);
	free(a);
}

/*
 * A frame's planes in one buffer of our own, chroma rows exactly half the
 * luma row and 16-row padding, as FreeRDP's own H.264 buffers have them
 * (libavutil's alignment gives 736 and 384 bytes for 720 pixels). Not
 * shown to matter: the AVC444 noise first blamed on it came from
 * overlapping rectangles (rdp-gfx-codec.c); kept as the layout FreeRDP's
 * primitives are tested with.
 */
static int
rdp_gfx_avc_buffer(struct rdp_gfx_avc *a, AVFrame *f)
{
	AVBufferRef	*buf;
	size_t		 stride = (a->width + 63) & ~63;
	size_t		 rows = (a->height + 15) & ~15;

	if ((buf = av_buffer_allocz(stride * rows * 3 / 2 + 64)) == NULL)
		return (-1);
	av_buffer_unref(&f->buf[0]);
	f->buf[0] = buf;
	f->data[0] = buf->data;
	f->data[1] = f->data[0] + stride * rows;
	f->data[2] = f->data[1] + stride / 2 * rows / 2;
	f->linesize[0] = stride;
	f->linesize[1] = f->linesize[2] = stride / 2;
	a->fresh = 1;
	return (0);
}

/* The frame's planes are ours to write again (x264 copies its input). */
static int
rdp_gfx_avc_writable(struct rdp_gfx_avc *a, AVFrame *f)
{
	if (av_frame_is_writable(f))
		return (0);
	return (rdp_gfx_avc_buffer(a, f));
}

/*
 * An encoder for width x height, AVC444 when avc444 is set. NULL
 * (logged) when there is none.
 */
struct rdp_gfx_avc *
rdp_gfx_avc_create(int width, int height, int avc444, int bitrate, int fps)
{
	struct rdp_gfx_avc	*a;
	const AVCodec		*codec;
	char			*params;
	int			 i, views = avc444 ? 2 : 1;

	if ((codec = avcodec_find_encoder_by_name("libx264")) == NULL &&
	    (codec = avcodec_find_encoder(AV_CODEC_ID_H264)) == NULL) {
		log_warnx("RDP: libavcodec has no H.264 encoder");
		return (NULL);
	}
	a = xcalloc(1, sizeof *a);
	a->avc444 = avc444;
	a->width = (width + 1) & ~1;
	a->height = (height + 1) & ~1;
	a->fresh = 1;
#ifdef RDP_GFX_X264
	if (!avc444 && (long)a->width * a->height > RDP_GFX_AVC_LARGE &&
	    strcmp(rdp_gfx_avc_largerc, "qp") == 0 &&
	    (a->x264 = rdp_gfx_x264_create(a->width, a->height, bitrate, fps,
	    rdp_gfx_avc_large, atoi(rdp_gfx_avc_crf), rdp_gfx_avc_x264,
	    rdp_gfx_avc_threads)) != NULL)
		goto frames;
#endif
	if ((a->ctx = avcodec_alloc_context3(codec)) == NULL ||
	    (a->pkt = av_packet_alloc()) == NULL)
		goto fail;
	a->ctx->width = a->width;
	a->ctx->height = a->height;
	a->ctx->pix_fmt = AV_PIX_FMT_YUV420P;
	/* Two pictures a frame for AVC444: rate control must know. */
	a->ctx->time_base = (AVRational){ 1, fps * views };
	a->ctx->framerate = (AVRational){ fps * views, 1 };
	/*
	 * Constant quality (CRF) capped at bitrate by the VBV: an ABR
	 * target starts a still screen at a low quality and never sends it
	 * again, and AVC444's auxiliary view, coded right after the main
	 * view's key frame, got what the buffer had left (coloured noise).
	 */
	a->ctx->rc_max_rate = bitrate * views;
	a->ctx->rc_buffer_size = bitrate * views;	/* a second's worth */
	av_opt_set(a->ctx->priv_data, "crf", rdp_gfx_avc_crf, 0);
	a->ctx->gop_size = RDP_GFX_AVC_GOP * views;
	a->ctx->max_b_frames = 0;
	a->ctx->refs = views;	/* each view predicts from its own last */
	a->ctx->thread_count = rdp_gfx_avc_threads;
	a->ctx->colorspace = AVCOL_SPC_BT709;
	av_opt_set(a->ctx->priv_data, "preset", rdp_gfx_avc_preset_for(
	    a->width, a->height), 0);
	av_opt_set(a->ctx->priv_data, "tune", "zerolatency", 0);
	/*
	 * No scene cuts: AVC444's views differ wholly, and x264 made each a
	 * key frame, so neither could predict from its previous picture.
	 * AVC444 also gets qcomp=1 (QP not raised for complex pictures):
	 * the auxiliary view is all edges, and CRF coded it at QP 28 where
	 * the main view had 20 (measured on test 48's coloured text).
	 */
	xasprintf(&params, "%s%s%s", avc444 ? "scenecut=0:qcomp=1" :
	    "scenecut=0", *rdp_gfx_avc_x264 != '\0' ? ":" : "",
	    rdp_gfx_avc_x264);
	av_opt_set(a->ctx->priv_data, "x264-params", params, 0);
	free(params);
	if (avcodec_open2(a->ctx, codec, NULL) < 0) {
		log_warnx("RDP: cannot open the H.264 encoder");
		goto fail;
	}
#ifdef RDP_GFX_X264
frames:
#endif
	for (i = 0; i < views; i++) {
		if ((a->frame[i] = av_frame_alloc()) == NULL)
			goto fail;
		a->frame[i]->format = AV_PIX_FMT_YUV420P;
		a->frame[i]->width = a->width;
		a->frame[i]->height = a->height;
		if (rdp_gfx_avc_buffer(a, a->frame[i]) != 0)
			goto fail;
	}
	return (a);
fail:
	rdp_gfx_avc_free(a);
	return (NULL);
}

/* x264's preset for a width x height surface. */
const char *
rdp_gfx_avc_preset_for(int width, int height)
{
	return ((long)width * height > RDP_GFX_AVC_LARGE ? rdp_gfx_avc_large :
	    rdp_gfx_avc_preset);
}

/* What the encoder has spent so far. */
const struct rdp_gfx_avc_stats *
rdp_gfx_avc_stats(const struct rdp_gfx_avc *a)
{
	return (&a->stats);
}

/* One picture through x264; *data stays the encoder's until the next. */
static int
rdp_gfx_avc_picture(struct rdp_gfx_avc *a, AVFrame *f, uint8_t **data,
    uint32_t *len)
{
	int	rc;

#ifdef RDP_GFX_X264
	if (a->x264 != NULL)
		return (rdp_gfx_x264_encode(a->x264, f->data, f->linesize,
		    data, len));
#endif
	f->pts = a->pts++;
	if (avcodec_send_frame(a->ctx, f) < 0)
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

/* The planes of a frame, as FreeRDP's primitives take them. */
static void
rdp_gfx_avc_planes(AVFrame *f, BYTE *planes[3], UINT32 steps[3])
{
	int	i;

	for (i = 0; i < 3; i++) {
		planes[i] = f->data[i];
		steps[i] = f->linesize[i];
	}
}

/*
 * RGB to the main view's YUV 4:2:0 for the damaged rects (all of it on
 * the first frame), on 2-pixel steps; a rect past an odd edge keeps its
 * last row or column as it was.
 */
static int
rdp_gfx_avc_yuv420(struct rdp_gfx_avc *a, const struct rdp_gfx_image *img,
    const RECTANGLE_16 *rects, int n)
{
	primitives_t	*prims = primitives_get();
	RECTANGLE_16	 whole;
	prim_size_t	 roi;
	BYTE		*planes[3], *p[3];
	UINT32		 steps[3];
	int		 i, x0, y0, x1, y1;

	if (a->fresh) {
		whole.left = whole.top = 0;
		whole.right = img->width;
		whole.bottom = img->height;
		rects = &whole;
		n = 1;
		a->fresh = 0;
	}
	rdp_gfx_avc_planes(a->frame[0], planes, steps);
	for (i = 0; i < n; i++) {
		x0 = rects[i].left & ~1;
		y0 = rects[i].top & ~1;
		x1 = (rects[i].right + 1) & ~1;
		y1 = (rects[i].bottom + 1) & ~1;
		if (x1 > (img->width & ~1))
			x1 = img->width & ~1;
		if (y1 > (img->height & ~1))
			y1 = img->height & ~1;
		if (x1 <= x0 || y1 <= y0)
			continue;
		roi.width = x1 - x0;
		roi.height = y1 - y0;
		p[0] = planes[0] + (size_t)y0 * steps[0] + x0;
		p[1] = planes[1] + (size_t)(y0 / 2) * steps[1] + x0 / 2;
		p[2] = planes[2] + (size_t)(y0 / 2) * steps[2] + x0 / 2;
		if (prims->RGBToYUV420_8u_P3AC4R((const BYTE *)(img->fb +
		    (size_t)y0 * img->stride + x0), PIXEL_FORMAT_BGRX32,
		    img->stride * 4, p, steps, &roi) != PRIMITIVES_SUCCESS)
			return (-1);
	}
	return (0);
}

/*
 * One AVC420 frame of the whole picture, only the damaged rects
 * converted. *data stays the encoder's until the next call.
 */
int
rdp_gfx_avc_encode(struct rdp_gfx_avc *a, const struct rdp_gfx_image *img,
    const RECTANGLE_16 *rects, int n, uint8_t **data, uint32_t *len)
{
	uint64_t	t0, t1;
	int		rc;

	/* A new buffer (x264 kept the old one) holds no earlier frame. */
	if (a->avc444 || rdp_gfx_avc_writable(a, a->frame[0]) != 0)
		return (-1);
	t0 = rdp_gfx_avc_us();
	if (rdp_gfx_avc_yuv420(a, img, rects, n) != 0)
		return (-1);
	t1 = rdp_gfx_avc_us();
	rc = rdp_gfx_avc_picture(a, a->frame[0], data, len);
	a->stats.yuvus += t1 - t0;
	a->stats.x264us += rdp_gfx_avc_us() - t1;
	a->stats.frames++;
	return (rc);
}

/*
 * One AVC444 frame of the whole picture: the main view's bitstream in
 * *main (the encoder's until the next call) and the auxiliary view's in
 * *aux (until the next picture).
 */
int
rdp_gfx_avc_encode444(struct rdp_gfx_avc *a, const struct rdp_gfx_image *img,
    int v2, uint8_t **mainp, uint32_t *mainlen, uint8_t **aux,
    uint32_t *auxlen)
{
	primitives_t	*prims = primitives_get();
	prim_size_t	 roi;
	BYTE		*mp[3], *ap[3];
	UINT32		 ms[3], as[3];
	uint64_t	 t0, t1;
	uint8_t		*data;
	uint32_t	 len;
	pstatus_t	 st;

	if (!a->avc444 || rdp_gfx_avc_writable(a, a->frame[0]) != 0 ||
	    rdp_gfx_avc_writable(a, a->frame[1]) != 0)
		return (-1);
	t0 = rdp_gfx_avc_us();
	rdp_gfx_avc_planes(a->frame[0], mp, ms);
	rdp_gfx_avc_planes(a->frame[1], ap, as);
	roi.width = img->width & ~1;
	roi.height = img->height & ~1;
	st = (v2 ? prims->RGBToAVC444YUVv2 : prims->RGBToAVC444YUV)(
	    (const BYTE *)img->fb, PIXEL_FORMAT_BGRX32, img->stride * 4,
	    mp, ms, ap, as, &roi);
	if (st != PRIMITIVES_SUCCESS)
		return (-1);
	t1 = rdp_gfx_avc_us();
	if (rdp_gfx_avc_picture(a, a->frame[0], &data, &len) != 0)
		return (-1);
	/* The packet is reused for the auxiliary view: keep this one. */
	if (a->mainsize < len) {
		free(a->main);
		a->mainsize = len;
		a->main = xmalloc(a->mainsize);
	}
	memcpy(a->main, data, len);
	*mainp = a->main;
	*mainlen = len;
	if (rdp_gfx_avc_picture(a, a->frame[1], aux, auxlen) != 0)
		return (-1);
	a->stats.yuvus += t1 - t0;
	a->stats.x264us += rdp_gfx_avc_us() - t1;
	a->stats.frames++;
	return (0);
}
