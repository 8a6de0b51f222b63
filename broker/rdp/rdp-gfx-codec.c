/*
 * The graphics pipeline's encoders: damaged rectangles of the guest's
 * framebuffer to RDPGFX surface commands, through FreeRDP 2's codecs.
 *
 *   AVC420       H.264: rdp-gfx-avc.c (libavcodec, x264 "superfast")
 *                when built with libavcodec, else FreeRDP's encoder
 *                (x264 "medium", ~5x the CPU). A frame is the
 *                whole surface (the client decodes whole frames), but the
 *                metablock lists only the damaged rectangles, so the client
 *                copies only those, and x264 codes the unchanged
 *                macroblocks as skips.
 *   AVC444       H.264 in two views (RDPGFX_CODECID_AVC444v2): the AVC420
 *                picture and the chroma 4:2:0 drops, so coloured text
 *                keeps its colour edges; for clients that offer it.
 *   progressive  RemoteFX progressive: the 64x64 tiles that the damage
 *                touches, in one message (lossy, RLGR).
 *   planar       RDP 6.0 planar (lossless) 64x64 tiles: small changes
 *                (typing, a cursor) and the refinement that makes the
 *                lossy codecs' text sharp once motion stops.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <freerdp/freerdp.h>
#include <freerdp/codec/color.h>
#include <freerdp/codec/h264.h>
#include <freerdp/codec/planar.h>
#include <freerdp/codec/progressive.h>
#include <freerdp/codec/region.h>

#include "compat.h"
#include "log.h"
#include "rdp-gfx.h"
#include "xmalloc.h"

#define RDP_GFX_PLANAR_BUF	(RDP_GFX_TILE * RDP_GFX_TILE * 4 + 256)

struct rdp_gfx_codec {
	int			 id;
	int			 width;
	int			 height;
	H264_CONTEXT		*h264;		/* FreeRDP's encoder, or */
	struct rdp_gfx_avc	*avc;		/* ours */
	PROGRESSIVE_CONTEXT	*progressive;
	BITMAP_PLANAR_CONTEXT	*planar;
	unsigned char		*planarbuf;
	uint32_t		*flipped;	/* one tile, rows reversed */
};

static const char *rdp_gfx_codec_names[] = {
	[RDP_GFX_PLANAR] = "planar",
	[RDP_GFX_PROGRESSIVE] = "progressive",
	[RDP_GFX_AVC420] = "avc420",
	[RDP_GFX_AVC444] = "avc444",
};

const char *
rdp_gfx_codec_name(int id)
{
	if (id < 0 || (size_t)id >= nitems(rdp_gfx_codec_names))
		return ("planar");
	return (rdp_gfx_codec_names[id]);
}

/* The H.264 encoder's figures; NULL for other codecs or FreeRDP's. */
const struct rdp_gfx_avc_stats *
rdp_gfx_codec_stats(const struct rdp_gfx_codec *c)
{
#ifdef RDP_GFX_LIBAVCODEC
	if (c != NULL && c->avc != NULL)
		return (rdp_gfx_avc_stats(c->avc));
#endif
	return (NULL);
}

/*
 * Encoders for a width x height surface: planar always (refinement), and
 * the lossy one that id names. NULL when FreeRDP cannot make them (an
 * H.264 encoder missing from its build, say).
 */
struct rdp_gfx_codec *
rdp_gfx_codec_create(int id, int width, int height)
{
	struct rdp_gfx_codec	*c;

	c = xcalloc(1, sizeof *c);
	c->id = id;
	c->width = width;
	c->height = height;
	c->planar = freerdp_bitmap_planar_context_new(PLANAR_FORMAT_HEADER_RLE |
	    PLANAR_FORMAT_HEADER_NA, RDP_GFX_TILE, RDP_GFX_TILE);
	if (c->planar == NULL)
		goto fail;
	c->planarbuf = xmalloc(RDP_GFX_PLANAR_BUF);
	c->flipped = xmalloc(RDP_GFX_TILE * RDP_GFX_TILE * sizeof *c->flipped);
	switch (id) {
	case RDP_GFX_AVC420:
	case RDP_GFX_AVC444:
#ifdef RDP_GFX_LIBAVCODEC
		if ((c->avc = rdp_gfx_avc_create(width, height,
		    id == RDP_GFX_AVC444, rdp_gfx_avc_maxrate,
		    RDP_GFX_AVC_FPS)) != NULL)
			break;
#endif
		if ((c->h264 = h264_context_new(TRUE)) == NULL)
			goto fail;
		c->h264->RateControlMode = H264_RATECONTROL_VBR;
		c->h264->BitRate = RDP_GFX_AVC_BITRATE;
		c->h264->FrameRate = RDP_GFX_AVC_FPS;
		if (!h264_context_reset(c->h264, width, height))
			goto fail;
		break;
	case RDP_GFX_PROGRESSIVE:
		if ((c->progressive = progressive_context_new(TRUE)) == NULL)
			goto fail;
		break;
	}
	return (c);
fail:
	rdp_gfx_codec_free(c);
	return (NULL);
}

void
rdp_gfx_codec_free(struct rdp_gfx_codec *c)
{
	if (c == NULL)
		return;
	if (c->h264 != NULL)
		h264_context_free(c->h264);
#ifdef RDP_GFX_LIBAVCODEC
	rdp_gfx_avc_free(c->avc);
#endif
	if (c->progressive != NULL)
		progressive_context_free(c->progressive);
	if (c->planar != NULL)
		freerdp_bitmap_planar_context_free(c->planar);
	free(c->planarbuf);
	free(c->flipped);
	free(c);
}

/* A surface command for surface 0 over x, y, w, h (right/bottom exclusive). */
static void
rdp_gfx_codec_cmd(RDPGFX_SURFACE_COMMAND *cmd, UINT32 codec, int x, int y,
    int w, int h)
{
	memset(cmd, 0, sizeof *cmd);
	cmd->surfaceId = 0;
	cmd->codecId = codec;
	cmd->format = PIXEL_FORMAT_BGRX32;
	cmd->left = x;
	cmd->top = y;
	cmd->right = x + w;
	cmd->bottom = y + h;
	cmd->width = w;
	cmd->height = h;
}

/* Clip rects to the image, as RECTANGLE_16s; returns how many are left. */
static int
rdp_gfx_codec_clip(const struct rdp_gfx_image *img,
    const struct rdp_rect *rects, int n, RECTANGLE_16 *out)
{
	int	i, k, x0, y0, x1, y1;

	for (i = k = 0; i < n; i++) {
		x0 = rects[i].x < 0 ? 0 : rects[i].x;
		y0 = rects[i].y < 0 ? 0 : rects[i].y;
		x1 = rects[i].x + rects[i].w;
		y1 = rects[i].y + rects[i].h;
		if (x1 > img->width)
			x1 = img->width;
		if (y1 > img->height)
			y1 = img->height;
		if (x1 <= x0 || y1 <= y0)
			continue;
		out[k].left = x0;
		out[k].top = y0;
		out[k].right = x1;
		out[k].bottom = y1;
		k++;
	}
	return (k);
}

/*
 * The damage as disjoint rectangles on 16-pixel steps (macroblocks),
 * clipped to the image, for an H.264 metablock; *out is the caller's to
 * free. Disjoint matters: FreeRDP's client combines AVC444's views once
 * per rectangle, and a second pass over an overlap undoes its chroma
 * filter (coloured noise where QEMU's update rectangles overlapped).
 */
static int
rdp_gfx_codec_avc_rects(const struct rdp_gfx_image *img,
    const struct rdp_rect *rects, int n, RECTANGLE_16 **out)
{
	REGION16		 region;
	RECTANGLE_16		 r;
	const RECTANGLE_16	*rr;
	UINT32			 k = 0;
	int			 i, w = img->width, h = img->height;

	region16_init(&region);
	for (i = 0; i < n; i++) {
		if (rects[i].w <= 0 || rects[i].h <= 0)
			continue;
		r.left = rects[i].x < 0 ? 0 : rects[i].x & ~15;
		r.top = rects[i].y < 0 ? 0 : rects[i].y & ~15;
		r.right = (rects[i].x + rects[i].w + 15) & ~15;
		r.bottom = (rects[i].y + rects[i].h + 15) & ~15;
		if (r.right > w)
			r.right = w;
		if (r.bottom > h)
			r.bottom = h;
		if (r.right <= r.left || r.bottom <= r.top)
			continue;
		region16_union_rect(&region, &region, &r);
	}
	rr = region16_rects(&region, &k);
	*out = xcalloc(k > 0 ? k : 1, sizeof **out);
	memcpy(*out, rr, k * sizeof **out);
	region16_uninit(&region);
	return ((int)k);
}

/* One H.264 frame of the whole surface; the damage in its metablock. */
static int
rdp_gfx_codec_avc420(struct rdp_gfx_codec *c, const struct rdp_gfx_image *img,
    const struct rdp_rect *rects, int n, rdp_gfx_emit emit, void *arg,
    uint64_t *bytes)
{
	RDPGFX_SURFACE_COMMAND		 cmd;
	RDPGFX_AVC420_BITMAP_STREAM	 avc;
	RDPGFX_H264_QUANT_QUALITY	*qq;
	RECTANGLE_16			*rr;
	BYTE				*data = NULL;
	UINT32				 len = 0;
	int				 i, k, rc = -1;

	k = rdp_gfx_codec_avc_rects(img, rects, n, &rr);
	qq = xcalloc(k > 0 ? k : 1, sizeof *qq);
	if (k == 0) {
		rc = 0;
		goto out;
	}
#ifdef RDP_GFX_LIBAVCODEC
	if (c->avc != NULL) {
		if (rdp_gfx_avc_encode(c->avc, img, rr, k, &data, &len) != 0)
			data = NULL;
	} else
#endif
	if (avc420_compress(c->h264, (const BYTE *)img->fb,
	    PIXEL_FORMAT_BGRX32, img->stride * 4, img->width, img->height,
	    &data, &len) < 0)
		data = NULL;
	if (data == NULL) {
		log_warnx("RDP: H.264 encoding failed");
		goto out;
	}
	for (i = 0; i < k; i++) {
		qq[i].qp = 22;
		qq[i].qpVal = 22;
		qq[i].qualityVal = 100;
	}
	memset(&avc, 0, sizeof avc);
	avc.meta.numRegionRects = k;
	avc.meta.regionRects = rr;
	avc.meta.quantQualityVals = qq;
	avc.data = data;
	avc.length = len;
	rdp_gfx_codec_cmd(&cmd, RDPGFX_CODECID_AVC420, 0, 0, img->width,
	    img->height);
	cmd.extra = &avc;
	*bytes += len;
	rc = emit(arg, &cmd);
out:
	free(rr);
	free(qq);
	return (rc);
}

/*
 * One AVC444 frame: both views of the whole surface, each metablock
 * with the damage (the client combines the views there only).
 */
static int
rdp_gfx_codec_avc444(struct rdp_gfx_codec *c, const struct rdp_gfx_image *img,
    const struct rdp_rect *rects, int n, rdp_gfx_emit emit, void *arg,
    uint64_t *bytes)
{
	RDPGFX_SURFACE_COMMAND		 cmd;
	RDPGFX_AVC444_BITMAP_STREAM	 avc;
	RDPGFX_H264_QUANT_QUALITY	*qq;
	RECTANGLE_16			*rr;
	BYTE				*data = NULL, *aux = NULL, lc = 0;
	UINT32				 len = 0, auxlen = 0;
	int				 i, k, v, rc = -1;

	k = rdp_gfx_codec_avc_rects(img, rects, n, &rr);
	qq = xcalloc(k > 0 ? k : 1, sizeof *qq);
	if (k == 0) {
		rc = 0;
		goto out;
	}
#ifdef RDP_GFX_LIBAVCODEC
	if (c->avc != NULL) {
		if (rdp_gfx_avc_encode444(c->avc, img, 1, &data, &len, &aux,
		    &auxlen) != 0)
			data = NULL;
	} else
#endif
	if (avc444_compress(c->h264, (const BYTE *)img->fb,
	    PIXEL_FORMAT_BGRX32, img->stride * 4, img->width, img->height, 2,
	    &lc, &data, &len, &aux, &auxlen) < 0 || lc != 0)
		data = NULL;
	if (data == NULL || aux == NULL) {
		log_warnx("RDP: H.264 (AVC444) encoding failed");
		goto out;
	}
	for (i = 0; i < k; i++) {
		qq[i].qp = 22;
		qq[i].qpVal = 22;
		qq[i].qualityVal = 100;
	}
	memset(&avc, 0, sizeof avc);
	avc.LC = 0;		/* both views */
	for (v = 0; v < 2; v++) {
		avc.bitstream[v].meta.numRegionRects = k;
		avc.bitstream[v].meta.regionRects = rr;
		avc.bitstream[v].meta.quantQualityVals = qq;
	}
	avc.bitstream[0].data = data;
	avc.bitstream[0].length = len;
	avc.bitstream[1].data = aux;
	avc.bitstream[1].length = auxlen;
	/* The first view's size on the wire: metablock, then the stream. */
	avc.cbAvc420EncodedBitstream1 = 4 + k * (8 + 2) + len;
	rdp_gfx_codec_cmd(&cmd, RDPGFX_CODECID_AVC444v2, 0, 0, img->width,
	    img->height);
	cmd.extra = &avc;
	*bytes += len + auxlen;
	rc = emit(arg, &cmd);
out:
	free(rr);
	free(qq);
	return (rc);
}

/* The damaged tiles as one RemoteFX progressive message. */
static int
rdp_gfx_codec_progressive(struct rdp_gfx_codec *c,
    const struct rdp_gfx_image *img, const struct rdp_rect *rects, int n,
    rdp_gfx_emit emit, void *arg, uint64_t *bytes)
{
	RDPGFX_SURFACE_COMMAND	 cmd;
	REGION16		 region;
	RECTANGLE_16		*rr;
	BYTE			*data = NULL;
	UINT32			 len = 0;
	int			 i, k, rc = -1;

	rr = xcalloc(n, sizeof *rr);
	region16_init(&region);
	if ((k = rdp_gfx_codec_clip(img, rects, n, rr)) == 0) {
		rc = 0;
		goto out;
	}
	for (i = 0; i < k; i++)
		region16_union_rect(&region, &region, &rr[i]);
	if (progressive_compress_ex(c->progressive, (const BYTE *)img->fb,
	    img->stride * 4 * img->height, PIXEL_FORMAT_BGRX32, img->width,
	    img->height, img->stride * 4, &region, &data, &len) < 0 ||
	    data == NULL) {
		log_warnx("RDP: progressive encoding failed");
		goto out;
	}
	rdp_gfx_codec_cmd(&cmd, RDPGFX_CODECID_CAPROGRESSIVE, 0, 0,
	    img->width, img->height);
	cmd.data = data;
	cmd.length = len;
	*bytes += len;
	rc = emit(arg, &cmd);
out:
	region16_uninit(&region);
	free(rr);
	return (rc);
}

/* The damage with the session's lossy codec. */
int
rdp_gfx_codec_lossy(struct rdp_gfx_codec *c, const struct rdp_gfx_image *img,
    const struct rdp_rect *rects, int n, rdp_gfx_emit emit, void *arg,
    uint64_t *bytes)
{
	if (n <= 0)
		return (0);
	switch (c->id) {
	case RDP_GFX_AVC420:
		return (rdp_gfx_codec_avc420(c, img, rects, n, emit, arg,
		    bytes));
	case RDP_GFX_AVC444:
		return (rdp_gfx_codec_avc444(c, img, rects, n, emit, arg,
		    bytes));
	case RDP_GFX_PROGRESSIVE:
		return (rdp_gfx_codec_progressive(c, img, rects, n, emit, arg,
		    bytes));
	}
	log_warnx("RDP: no lossy codec in a planar session");
	return (-1);
}

/*
 * The part of each grid tile that rects cover, as one box a tile (w 0:
 * none), its left and right edges on 4-pixel steps: typing damages a
 * glyph or two of a 64x64 tile, and planar of the whole tile is 5-10
 * times the bytes (the pipeline's channel is not bulk-compressed, as
 * bitmap updates are, so every byte of it reaches the wire).
 */
void
rdp_gfx_codec_boxes(struct rdp_rect *boxes, int gw, int gh,
    const struct rdp_rect *rects, int n)
{
	struct rdp_rect	*b;
	int		 i, tx, ty, x0, y0, x1, y1, cx0, cy0, cx1, cy1;

	memset(boxes, 0, (size_t)gw * gh * sizeof *boxes);
	for (i = 0; i < n; i++) {
		if (rects[i].w <= 0 || rects[i].h <= 0 || rects[i].x < 0 ||
		    rects[i].y < 0)
			continue;
		x0 = rects[i].x & ~3;
		y0 = rects[i].y;
		x1 = (rects[i].x + rects[i].w + 3) & ~3;
		y1 = rects[i].y + rects[i].h;
		for (ty = y0 / RDP_GFX_TILE; ty < gh &&
		    ty * RDP_GFX_TILE < y1; ty++) {
			for (tx = x0 / RDP_GFX_TILE; tx < gw &&
			    tx * RDP_GFX_TILE < x1; tx++) {
				cx0 = x0 > tx * RDP_GFX_TILE ? x0 :
				    tx * RDP_GFX_TILE;
				cy0 = y0 > ty * RDP_GFX_TILE ? y0 :
				    ty * RDP_GFX_TILE;
				cx1 = x1 < (tx + 1) * RDP_GFX_TILE ? x1 :
				    (tx + 1) * RDP_GFX_TILE;
				cy1 = y1 < (ty + 1) * RDP_GFX_TILE ? y1 :
				    (ty + 1) * RDP_GFX_TILE;
				b = &boxes[(size_t)ty * gw + tx];
				if (b->w > 0) {
					if (b->x < cx0)
						cx0 = b->x;
					if (b->y < cy0)
						cy0 = b->y;
					if (b->x + b->w > cx1)
						cx1 = b->x + b->w;
					if (b->y + b->h > cy1)
						cy1 = b->y + b->h;
				}
				b->x = cx0;
				b->y = cy0;
				b->w = cx1 - cx0;
				b->h = cy1 - cy0;
			}
		}
	}
}

/* How many commands rdp_gfx_codec_planar makes of grid. */
int
rdp_gfx_codec_count(const struct rdp_gfx_image *img, const uint8_t *grid,
    int gw, int gh)
{
	int	tx, ty, n = 0;

	for (ty = 0; ty < gh; ty++)
		for (tx = 0; tx < gw; tx++)
			n += grid[(size_t)ty * gw + tx] &&
			    tx * RDP_GFX_TILE < img->width &&
			    ty * RDP_GFX_TILE < img->height;
	return (n);
}

/*
 * The tiles marked in grid, lossless, one planar command each: the whole
 * tile, or only its box when boxes is given and the box is not empty.
 * FreeRDP's planar encoder writes rows bottom-up, as bitmap updates have
 * them; the pipeline's planar is top-down: each piece is handed over
 * upside down.
 */
int
rdp_gfx_codec_planar(struct rdp_gfx_codec *c, const struct rdp_gfx_image *img,
    const uint8_t *grid, const struct rdp_rect *boxes, int gw, int gh,
    rdp_gfx_emit emit, void *arg, uint64_t *bytes)
{
	RDPGFX_SURFACE_COMMAND	 cmd;
	const struct rdp_rect	*b;
	const uint32_t		*src;
	UINT32			 size;
	int			 tx, ty, x, y, w, h, r;

	for (ty = 0; ty < gh; ty++) {
		for (tx = 0; tx < gw; tx++) {
			if (!grid[(size_t)ty * gw + tx])
				continue;
			x = tx * RDP_GFX_TILE;
			y = ty * RDP_GFX_TILE;
			if (x >= img->width || y >= img->height)
				continue;
			w = h = RDP_GFX_TILE;
			b = boxes != NULL ? &boxes[(size_t)ty * gw + tx] : NULL;
			if (b != NULL && b->w > 0 && b->h > 0) {
				x = b->x;
				y = b->y;
				w = b->w;
				h = b->h;
			}
			if (x + w > img->width)
				w = img->width - x;
			if (y + h > img->height)
				h = img->height - y;
			src = img->fb + (size_t)y * img->stride + x;
			for (r = 0; r < h; r++)
				memcpy(c->flipped + (size_t)(h - 1 - r) * w,
				    src + (size_t)r * img->stride, w * 4);
			size = RDP_GFX_PLANAR_BUF;
			if (freerdp_bitmap_compress_planar(c->planar,
			    (const BYTE *)c->flipped, PIXEL_FORMAT_BGRX32, w, h,
			    w * 4,
			    c->planarbuf, &size) == NULL) {
				log_warnx("RDP: planar compression failed");
				return (-1);
			}
			rdp_gfx_codec_cmd(&cmd, RDPGFX_CODECID_PLANAR, x, y, w,
			    h);
			cmd.data = c->planarbuf;
			cmd.length = size;
			*bytes += size;
			if (emit(arg, &cmd) != 0)
				return (-1);
		}
	}
	return (0);
}
