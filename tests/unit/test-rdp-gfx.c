/*
 * Unit tests of the graphics pipeline's pure parts: pacing by frame
 * acknowledgement (the window, stale and replayed acks, id wrap-around,
 * SUSPEND) and the choice of the caps set and codec; the planar tiles
 * the refinement sends and the AVC420 frames, decoded again with
 * FreeRDP's own decoders (what xfreerdp runs).
 */
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <freerdp/codec/clear.h>
#include <freerdp/codec/color.h>
#include <freerdp/codec/h264.h>
#include <freerdp/codec/planar.h>

#include "check.h"
#include "rdp-gfx.h"

/* A test framebuffer as the codecs see it. */
static struct rdp_gfx_image
image_of(const uint32_t *fb, int stride, int w, int h)
{
	struct rdp_gfx_image	img = { fb, stride, w, h };

	return (img);
}

static void
test_pace(void)
{
	struct rdp_gfx_pace	p;
	uint32_t		id;

	rdp_gfx_pace_init(&p, 2);
	CHECK(rdp_gfx_pace_inflight(&p) == 0);
	CHECK(rdp_gfx_pace_may_send(&p));
	CHECK(rdp_gfx_pace_start(&p) == 1);
	CHECK(rdp_gfx_pace_may_send(&p));
	CHECK(rdp_gfx_pace_start(&p) == 2);
	/* Two in flight: the window is full. */
	CHECK(rdp_gfx_pace_inflight(&p) == 2);
	CHECK(!rdp_gfx_pace_may_send(&p));
	/* An ack for frame 1 opens one slot. */
	rdp_gfx_pace_ack(&p, 1, 0);
	CHECK(rdp_gfx_pace_inflight(&p) == 1);
	CHECK(rdp_gfx_pace_may_send(&p));
	CHECK(rdp_gfx_pace_start(&p) == 3);
	CHECK(!rdp_gfx_pace_may_send(&p));
	/* Acks for frames never sent, or already acked, change nothing. */
	rdp_gfx_pace_ack(&p, 9, 0);
	rdp_gfx_pace_ack(&p, 1, 0);
	rdp_gfx_pace_ack(&p, 0, 0);
	CHECK(p.stale == 3);
	CHECK(rdp_gfx_pace_inflight(&p) == 2);
	/* Acks are cumulative: 3 covers 2 (a client may skip acks). */
	rdp_gfx_pace_ack(&p, 3, 0);
	CHECK(rdp_gfx_pace_inflight(&p) == 0);
	CHECK(p.acks == 5);

	/* SUSPEND: no more acks will come; frames go without the window. */
	rdp_gfx_pace_start(&p);
	rdp_gfx_pace_start(&p);
	CHECK(!rdp_gfx_pace_may_send(&p));
	rdp_gfx_pace_ack(&p, 4, SUSPEND_FRAME_ACKNOWLEDGEMENT);
	CHECK(p.suspended);
	rdp_gfx_pace_start(&p);
	rdp_gfx_pace_start(&p);
	CHECK(rdp_gfx_pace_may_send(&p));
	/* A normal queue depth later brings the window back. */
	rdp_gfx_pace_ack(&p, 6, 3);
	CHECK(!p.suspended);
	CHECK(rdp_gfx_pace_inflight(&p) == 1);
	CHECK(rdp_gfx_pace_may_send(&p));

	/* Frame ids wrap around 2^32. */
	rdp_gfx_pace_init(&p, 3);
	p.next = 0xfffffffeU;
	p.acked = 0xfffffffdU;
	id = rdp_gfx_pace_start(&p);
	CHECK(id == 0xfffffffeU);
	CHECK(rdp_gfx_pace_start(&p) == 0xffffffffU);
	CHECK(rdp_gfx_pace_start(&p) == 0);
	CHECK(rdp_gfx_pace_inflight(&p) == 3);
	CHECK(!rdp_gfx_pace_may_send(&p));
	rdp_gfx_pace_ack(&p, 0xffffffffU, 0);
	CHECK(rdp_gfx_pace_inflight(&p) == 1);
	rdp_gfx_pace_ack(&p, 0, 0);
	CHECK(rdp_gfx_pace_inflight(&p) == 0);
	CHECK(p.stale == 0);
}

/* A model encoder: bytes halve every 6 QP, c at QP 37 (no libm here). */
static uint64_t
qp_model(double c, int qp)
{
	static const double	 sixth[6] = { 1, 1.12246, 1.25992, 1.41421,
	    1.58740, 1.78180 };
	int			 d = 37 - qp;

	for (; d >= 6; d -= 6)
		c *= 2;
	for (; d < 0; d += 6)
		c /= 2;
	return ((uint64_t)(c * sixth[d]));
}

/*
 * Run the quantizer for n frames of content of complexity c; returns the
 * bytes of the last 30 (a second at the nominal rate), *qp the last QP.
 */
static uint64_t
qp_run(struct rdp_gfx_qp *q, int n, double c, int *qp)
{
	uint64_t	b, last = 0;
	int		i;

	for (i = 0; i < n; i++) {
		*qp = rdp_gfx_qp_next(q);
		CHECK(*qp >= 23 && *qp <= 51);
		b = qp_model(c, *qp);
		if (i >= n - 30)
			last += b;
		rdp_gfx_qp_frame(q, b);
	}
	return (last);
}

/*
 * The large surfaces' quantizer: heavy motion settles under the cap (4
 * Mbit/s, 500000 bytes in 30 frames) near its 90% aim, light content goes
 * to the floor, and a sudden 4x heavier picture is pulled back under the
 * cap within three seconds' frames.
 */
static void
test_qp(void)
{
	struct rdp_gfx_qp	q;
	uint64_t		sec;
	int			qp, qp30;
	double			heavy = 18000;	/* bytes at QP 37 */

	rdp_gfx_qp_init(&q, 23, 4000000, 30);
	CHECK(rdp_gfx_qp_next(&q) == 36);
	sec = qp_run(&q, 300, heavy, &qp30);
	CHECK(sec <= 500000 && sec >= 300000);
	CHECK(qp30 >= 36 && qp30 <= 40);

	rdp_gfx_qp_init(&q, 23, 4000000, 30);
	qp_run(&q, 150, 2000.0 / 5, &qp);	/* 2000 bytes at QP 23 */
	CHECK(qp == 23);

	rdp_gfx_qp_init(&q, 23, 4000000, 30);
	qp_run(&q, 150, heavy, &qp);
	qp_run(&q, 60, heavy * 4, &qp);
	sec = qp_run(&q, 30, heavy * 4, &qp);
	CHECK(sec <= 500000);
	CHECK(qp >= qp30 + 9);
}

/*
 * The refinement's budget: its rate follows the lossy stream's, a 1080p
 * screen of photo-like tiles goes out over seconds at that rate instead
 * of at once, and refinements that motion undoes push the next later.
 */
static void
test_refine(void)
{
	struct rdp_gfx_refine	r;
	uint64_t		t, sent = 0, t0;
	int			i, k, left = 510, w;

	rdp_gfx_refine_init(&r, 1000);
	CHECK(rdp_gfx_refine_wait(&r, 5, 0) == -1);	/* nothing lossy */
	/* 10 s of 25 frames/s, 20 KB each: 500 KB/s. */
	for (t = 1000; t < 11000; t += 40)
		rdp_gfx_refine_lossy(&r, t, 20000);
	t -= 40;
	CHECK(rdp_gfx_refine_rate(&r) >= 480000 &&
	    rdp_gfx_refine_rate(&r) <= 510000);
	/* Motion just stopped: wait the quiet time. */
	CHECK(rdp_gfx_refine_wait(&r, t + 10, left) == 990);
	/* Then refine 510 tiles of 12 KB: never over 1 s of rate + rate. */
	t0 = t + 1000;
	for (t = t0; left > 0; t++) {
		w = rdp_gfx_refine_wait(&r, t, left);
		CHECK(w >= 0);
		if (w != 0)
			continue;
		k = rdp_gfx_refine_tiles(&r, t);
		CHECK(k >= 1);
		if (k > left)
			k = left;
		left -= k;
		sent += (uint64_t)k * 12000;
		rdp_gfx_refine_sent(&r, t, k, (uint64_t)k * 12000, left);
		/* Bytes by t: one second's burst, the rate, one tile more. */
		CHECK(sent <= 500000 + (t - t0) * 500 + 12000 + 8192 * 62);
	}
	/* 6.1 MB at ~500 KB/s: ~11 s, not at once. */
	CHECK(t - t0 >= 10000);
	CHECK(r.tiles == 510 && r.bytes == 510 * 12000);
	CHECK(r.quiet == 1000);

	/* A guest drawing every 1.5 s: refinements wasted, then none. */
	rdp_gfx_refine_init(&r, 1000);
	t = 100000;
	rdp_gfx_refine_lossy(&r, t, 200000);
	CHECK(rdp_gfx_refine_wait(&r, t + 1000, 500) == 0);
	k = rdp_gfx_refine_tiles(&r, t + 1000);
	rdp_gfx_refine_sent(&r, t + 1000, k, (uint64_t)k * 12000, 500 - k);
	rdp_gfx_refine_lossy(&r, t + 1500, 200000);
	CHECK(r.wasted == 1 && r.quiet == 2000);
	CHECK(rdp_gfx_refine_wait(&r, t + 2500, 500) == 1000);
	rdp_gfx_refine_lossy(&r, t + 3000, 200000);
	CHECK(r.wasted == 1);	/* none sent since */
	for (i = 0; i < 5; i++) {
		t += 10000;
		CHECK(rdp_gfx_refine_wait(&r, t, 500) == 0);
		rdp_gfx_refine_sent(&r, t, 1, 12000, 499);
		rdp_gfx_refine_lossy(&r, t + 100, 200000);
	}
	CHECK(r.quiet == RDP_GFX_REFINE_MAX_MS);
	/* A refinement that completes brings the quiet time back. */
	t += 20000;
	CHECK(rdp_gfx_refine_wait(&r, t, 1) == 0);
	rdp_gfx_refine_sent(&r, t, 1, 12000, 0);
	CHECK(r.quiet == 1000);

	/* A tile bigger than a second's budget still goes, once a second. */
	rdp_gfx_refine_init(&r, 1000);
	rdp_gfx_refine_lossy(&r, 500, 100);
	rdp_gfx_refine_sent(&r, 2000, 1, 200000, 5);
	w = rdp_gfx_refine_wait(&r, 2000, 5);
	CHECK(w > 0 && w <= 4200);
	CHECK(rdp_gfx_refine_wait(&r, 2000 + w, 5) == 0);

	/* A trickle of small lossy frames: the floor's rate. */
	rdp_gfx_refine_init(&r, 1000);
	rdp_gfx_refine_lossy(&r, 500, 100);
	CHECK(rdp_gfx_refine_rate(&r) == RDP_GFX_REFINE_FLOOR);
	rdp_gfx_refine_init(&r, -1);
	rdp_gfx_refine_lossy(&r, 500, 100);
	CHECK(rdp_gfx_refine_wait(&r, 5000, 10) == -1);	/* none */
}

static void
test_caps(void)
{
	RDPGFX_CAPSET		 c[4];
	const RDPGFX_CAPSET	*best;
	int			 codec;

	/* xfreerdp /gfx:avc420 */
	memset(c, 0, sizeof c);
	c[0].version = RDPGFX_CAPVERSION_8;
	c[1].version = RDPGFX_CAPVERSION_81;
	c[1].flags = RDPGFX_CAPS_FLAG_AVC420_ENABLED |
	    RDPGFX_CAPS_FLAG_SMALL_CACHE;
	best = rdp_gfx_caps_choose(c, 2, &codec);
	CHECK(best == &c[1]);
	CHECK(codec == RDP_GFX_AVC420);
	/* 8.1 without the flag: no AVC. */
	c[1].flags = RDPGFX_CAPS_FLAG_SMALL_CACHE;
	best = rdp_gfx_caps_choose(c, 2, &codec);
	CHECK(best == &c[1] && codec == RDP_GFX_PROGRESSIVE);
	/* The newest version wins; 10.x says AVC444 unless AVC_DISABLED. */
	c[2].version = RDPGFX_CAPVERSION_107;
	c[2].flags = RDPGFX_CAPS_FLAG_AVC_DISABLED;
	c[3].version = RDPGFX_CAPVERSION_104;
	best = rdp_gfx_caps_choose(c, 4, &codec);
	CHECK(best == &c[2] && codec == RDP_GFX_PROGRESSIVE);
	c[2].flags = 0;
	best = rdp_gfx_caps_choose(c, 4, &codec);
	CHECK(best == &c[2] && codec == RDP_GFX_AVC444);
	/* xfreerdp /gfx:avc444 says thin client (10.3+): AVC444 still. */
	c[2].flags = RDPGFX_CAPS_FLAG_AVC_THINCLIENT |
	    RDPGFX_CAPS_FLAG_SMALL_CACHE | RDPGFX_CAPS_FLAG_SCALEDMAP_DISABLE;
	best = rdp_gfx_caps_choose(c, 4, &codec);
	CHECK(best == &c[2] && codec == RDP_GFX_AVC444);
	/* Version 8 alone: no AVC at all. */
	c[0].flags = RDPGFX_CAPS_FLAG_AVC420_ENABLED;
	best = rdp_gfx_caps_choose(c, 1, &codec);
	CHECK(best == &c[0] && codec == RDP_GFX_PROGRESSIVE);
	/* Nothing known, or nothing at all. */
	c[0].version = 0x12345678;
	CHECK(rdp_gfx_caps_choose(c, 1, &codec) == NULL);
	CHECK(rdp_gfx_caps_choose(c, 0, &codec) == NULL);
}

struct emitted {
	int		 n;
	int		 bad;
	uint32_t	*surface;	/* decoded, 0x00RRGGBB */
	int		 width;
	int		 height;
	BITMAP_PLANAR_CONTEXT *planar;
};

/* Decode each planar command into a surface, as a client does. */
static int
emit_decode(void *arg, RDPGFX_SURFACE_COMMAND *cmd)
{
	struct emitted	*e = arg;

	e->n++;
	if (cmd->codecId != RDPGFX_CODECID_PLANAR ||
	    cmd->right - cmd->left != cmd->width ||
	    cmd->bottom - cmd->top != cmd->height ||
	    cmd->right > (UINT32)e->width || cmd->bottom > (UINT32)e->height) {
		e->bad++;
		return (0);
	}
	if (!planar_decompress(e->planar, cmd->data, cmd->length, cmd->width,
	    cmd->height, (BYTE *)e->surface, PIXEL_FORMAT_BGRX32,
	    e->width * 4, cmd->left, cmd->top, cmd->width, cmd->height, FALSE))
		e->bad++;
	return (0);
}

static void
test_planar(void)
{
	struct rdp_gfx_codec	*c;
	struct rdp_gfx_image	 img;
	struct emitted		 e;
	uint32_t		*fb;
	uint8_t			 grid[12 * 7];
	uint64_t		 bytes = 0;
	int			 w = 720, h = 400, x, y, diff;

	fb = calloc((size_t)w * h, sizeof *fb);
	for (y = 0; y < h; y++)
		for (x = 0; x < w; x++)
			fb[y * w + x] = ((x * 7) & 0xff) << 16 |
			    ((y * 3) & 0xff) << 8 | ((x ^ y) & 0xff);
	img = image_of(fb, w, w, h);
	c = rdp_gfx_codec_create(RDP_GFX_PLANAR, w, h);
	CHECK(c != NULL);
	memset(&e, 0, sizeof e);
	e.width = w;
	e.height = h;
	e.surface = calloc((size_t)w * h, sizeof *e.surface);
	e.planar = freerdp_bitmap_planar_context_new(0, w, h);
	/* Every tile, the edge ones (16 pixels wide or tall) included. */
	memset(grid, 1, sizeof grid);
	CHECK(rdp_gfx_codec_planar(c, &img, grid, NULL, 12, 7, emit_decode, &e,
	    &bytes) == 0);
	CHECK(e.n == 12 * 7);
	CHECK(e.bad == 0);
	CHECK(bytes > 0);
	for (diff = 0, y = 0; y < h; y++)
		for (x = 0; x < w; x++)
			diff += (e.surface[y * w + x] & 0xffffff) !=
			    fb[y * w + x];
	CHECK(diff == 0);
	/* Only the marked tiles go. */
	memset(grid, 0, sizeof grid);
	grid[13] = 1;
	e.n = 0;
	CHECK(rdp_gfx_codec_planar(c, &img, grid, NULL, 12, 7, emit_decode, &e,
	    &bytes) == 0);
	CHECK(e.n == 1);

	/*
	 * Boxes: a typed glyph (18x16 at 90,100) and one straddling two
	 * tiles go as the damaged part only, left and right on 4-pixel
	 * steps, and decode exact; fewer bytes than the whole tiles.
	 */
	{
		struct rdp_rect	 d[2] = { { 90, 100, 18, 16 },
				    { 120, 200, 20, 16 } }, boxes[12 * 7];
		uint64_t	 whole = 0, part = 0;

		rdp_gfx_codec_boxes(boxes, 12, 7, d, 2);
		CHECK(boxes[13].x == 88 && boxes[13].y == 100 &&
		    boxes[13].w == 20 && boxes[13].h == 16);
		CHECK(boxes[37].x == 120 && boxes[37].w == 8 &&
		    boxes[38].x == 128 && boxes[38].w == 12 &&
		    boxes[38].y == 200 && boxes[38].h == 16);
		CHECK(boxes[0].w == 0 && boxes[14].w == 0);
		memset(grid, 0, sizeof grid);
		rdp_encode_grid(grid, 12, 7, RDP_GFX_TILE, d, 2);
		CHECK(rdp_gfx_codec_count(&img, grid, 12, 7) == 3);
		memset(e.surface, 0, (size_t)w * h * sizeof *e.surface);
		e.n = 0;
		CHECK(rdp_gfx_codec_planar(c, &img, grid, boxes, 12, 7,
		    emit_decode, &e, &part) == 0);
		CHECK(e.n == 3 && e.bad == 0);
		for (diff = 0, y = 100; y < 116; y++)
			for (x = 88; x < 108; x++)
				diff += (e.surface[y * w + x] & 0xffffff) !=
				    fb[y * w + x];
		CHECK(diff == 0);
		/* Nothing outside the boxes was drawn. */
		CHECK(e.surface[99 * w + 90] == 0 &&
		    e.surface[100 * w + 108] == 0);
		CHECK(rdp_gfx_codec_planar(c, &img, grid, NULL, 12, 7,
		    emit_decode, &e, &whole) == 0);
		CHECK(part * 4 < whole);
	}
	rdp_gfx_codec_free(c);
	freerdp_bitmap_planar_context_free(e.planar);
	free(e.surface);
	free(fb);
}

struct avcdecode {
	int		 n;
	int		 bad;
	H264_CONTEXT	*h264;
	uint32_t	*surface;
	int		 width;
	int		 height;
};

/* Decode an AVC420 command into the surface, its region rects only. */
static int
emit_avc(void *arg, RDPGFX_SURFACE_COMMAND *cmd)
{
	struct avcdecode		*d = arg;
	RDPGFX_AVC420_BITMAP_STREAM	*bs = cmd->extra;

	d->n++;
	if (cmd->codecId != RDPGFX_CODECID_AVC420 || bs == NULL ||
	    bs->meta.numRegionRects == 0 || cmd->right != (UINT32)d->width ||
	    cmd->bottom != (UINT32)d->height) {
		d->bad++;
		return (0);
	}
	if (avc420_decompress(d->h264, bs->data, bs->length,
	    (BYTE *)d->surface, PIXEL_FORMAT_BGRX32, d->width * 4, d->width,
	    d->height, bs->meta.regionRects, bs->meta.numRegionRects) < 0)
		d->bad++;
	return (0);
}

/* Mean absolute difference per colour channel over a rectangle. */
static double
avc_diff(const uint32_t *a, const uint32_t *b, int stride, int x0, int y0,
    int w, int h)
{
	double	sum = 0;
	int	x, y, c;

	for (y = y0; y < y0 + h; y++)
		for (x = x0; x < x0 + w; x++)
			for (c = 0; c < 24; c += 8)
				sum += abs((int)((a[y * stride + x] >> c) &
				    0xff) - (int)((b[y * stride + x] >> c) &
				    0xff));
	return (sum / (3.0 * w * h));
}

static void
test_avc(void)
{
	struct rdp_gfx_codec	*c;
	struct rdp_gfx_image	 img;
	struct avcdecode	 d;
	struct rdp_rect		 all = { 0, 0, 640, 480 }, part = { 64, 64, 128,
				     64 };
	uint32_t		*fb;
	uint64_t		 bytes = 0;
	int			 w = 640, h = 480, x, y, f;

	fb = calloc((size_t)w * h, sizeof *fb);
	img = image_of(fb, w, w, h);
	c = rdp_gfx_codec_create(RDP_GFX_AVC420, w, h);
	CHECK(c != NULL);
	if (c == NULL)
		return;
	memset(&d, 0, sizeof d);
	d.width = w;
	d.height = h;
	d.surface = calloc((size_t)w * h, sizeof *d.surface);
	d.h264 = h264_context_new(FALSE);
	CHECK(d.h264 != NULL);
	/* A smooth picture that moves, then a change in one rectangle. */
	for (f = 0; f < 5; f++) {
		for (y = 0; y < h; y++)
			for (x = 0; x < w; x++)
				fb[y * w + x] = ((x + f * 4) & 0xff) << 16 |
				    ((y * 2) & 0xff) << 8 | ((x + y) / 5 & 0xff);
		CHECK(rdp_gfx_codec_lossy(c, &img, &all, 1, emit_avc, &d,
		    &bytes) == 0);
	}
	CHECK(d.n == 5 && d.bad == 0);
	CHECK(avc_diff(fb, d.surface, w, 0, 0, w, h) < 4.0);
	for (y = part.y; y < part.y + part.h; y++)
		for (x = part.x; x < part.x + part.w; x++)
			fb[y * w + x] = 0x00ffffff;
	CHECK(rdp_gfx_codec_lossy(c, &img, &part, 1, emit_avc, &d,
	    &bytes) == 0);
	CHECK(d.n == 6 && d.bad == 0);
	CHECK(avc_diff(fb, d.surface, w, part.x, part.y, part.w, part.h) <
	    4.0);
	/* Frames of a moving picture cost far less than raw pixels. */
	CHECK(bytes > 0 && bytes < (uint64_t)6 * w * h);
	h264_context_free(d.h264);
	rdp_gfx_codec_free(c);
	free(d.surface);
	free(fb);
}

/* Decode one ClearCodec command of x, y, w, h onto surf (BGRX32). */
static int
clear_decode(CLEAR_CONTEXT *dec, const uint8_t *data, size_t len, int x,
    int y, int w, int h, uint32_t *surf, int sw, int sh)
{
	return (clear_decompress(dec, data, len, w, h, (BYTE *)surf,
	    PIXEL_FORMAT_BGRX32, sw * 4, x, y, sw, sh, NULL));
}

/* Surface pixels that differ from fb over x, y, w, h. */
static int
clear_diff(const uint32_t *surf, const uint32_t *fb, int stride, int x,
    int y, int w, int h)
{
	int	i, j, diff = 0;

	for (j = y; j < y + h; j++)
		for (i = x; i < x + w; i++)
			diff += (surf[j * stride + i] & 0xffffff) !=
			    fb[j * stride + i];
	return (diff);
}

/*
 * ClearCodec glyphs: a new picture is stored, the same picture elsewhere
 * is a 4-byte hit, both decode exactly with FreeRDP's decoder (sequence
 * numbers in step); too big or too costly pictures stay planar.
 */
static void
test_clear(void)
{
	struct rdp_gfx_clear	*c;
	struct rdp_gfx_image	 img;
	CLEAR_CONTEXT		*dec;
	const uint8_t		*data;
	size_t			 len;
	uint32_t		*fb, *surf;
	uint64_t		 hits, stores, plains;
	int			 w = 64, h = 32, x, y;

	fb = calloc((size_t)w * h, sizeof *fb);
	surf = calloc((size_t)w * h, sizeof *surf);
	/* An "x" glyph, 12x16, grey on black, at 0,0 and at 24,0. */
	for (y = 0; y < 16; y++)
		for (x = 0; x < 12; x++)
			if (x == y * 3 / 4 || x == 11 - y * 3 / 4)
				fb[y * w + x] = fb[y * w + x + 24] = 0xaaaaaa;
	/* Noise below: every pixel its own colour. */
	for (y = 16; y < 32; y++)
		for (x = 0; x < 64; x++)
			fb[y * w + x] = (uint32_t)(x * 2654435761U ^ y * 40503U) &
			    0xffffff;
	img = image_of(fb, w, w, h);
	c = rdp_gfx_clear_create();
	dec = clear_context_new(FALSE);
	CHECK(c != NULL && dec != NULL);

	CHECK(rdp_gfx_clear_encode(c, &img, 0, 0, 12, 16, 200, &data,
	    &len) == 1);
	CHECK(len > 4 && len <= 400);
	CHECK(clear_decode(dec, data, len, 0, 0, 12, 16, surf, w, h) == 0);
	CHECK(clear_diff(surf, fb, w, 0, 0, 12, 16) == 0);
	/* The same picture elsewhere: drawn from the client's cache. */
	CHECK(rdp_gfx_clear_encode(c, &img, 24, 0, 12, 16, 200, &data,
	    &len) == 1);
	CHECK(len == 4);
	CHECK(clear_decode(dec, data, len, 24, 0, 12, 16, surf, w, h) == 0);
	CHECK(clear_diff(surf, fb, w, 24, 0, 12, 16) == 0);
	/* A blank cell: one run, then a hit. */
	CHECK(rdp_gfx_clear_encode(c, &img, 12, 0, 12, 16, 20, &data,
	    &len) == 1);
	CHECK(len == 16 + 4);
	CHECK(clear_decode(dec, data, len, 12, 0, 12, 16, surf, w, h) == 0);
	CHECK(rdp_gfx_clear_encode(c, &img, 40, 0, 12, 16, 20, &data,
	    &len) == 1 && len == 4);
	CHECK(clear_decode(dec, data, len, 40, 0, 12, 16, surf, w, h) == 0);
	CHECK(clear_diff(surf, fb, w, 0, 0, 64, 16) == 0);
	/* Noise costs more than twice planar: planar it stays. */
	CHECK(rdp_gfx_clear_encode(c, &img, 0, 16, 16, 16, 300, &data,
	    &len) == 0);
	/*
	 * Bigger than a glyph: runs, not stored, when shorter than planar
	 * (decoded exactly, the sequence still in step); planar when not,
	 * or when the runs pass what a command may hold (the noise).
	 */
	CHECK(rdp_gfx_clear_encode(c, &img, 0, 0, 64, 17, 100, &data,
	    &len) == 0);
	CHECK(rdp_gfx_clear_encode(c, &img, 0, 0, 64, 17, 100000, &data,
	    &len) == 1);
	CHECK(clear_decode(dec, data, len, 0, 0, 64, 17, surf, w, h) == 0);
	CHECK(clear_diff(surf, fb, w, 0, 0, 64, 17) == 0);
	CHECK(rdp_gfx_clear_encode(c, &img, 0, 0, 64, 32, 100000, &data,
	    &len) == 0);
	/* Outside the picture: planar. */
	CHECK(rdp_gfx_clear_encode(c, &img, 60, 0, 8, 8, 1000, &data,
	    &len) == 0);
	/* Noise allowed: stored, decoded exactly. */
	CHECK(rdp_gfx_clear_encode(c, &img, 0, 16, 16, 16, 5000, &data,
	    &len) == 1);
	CHECK(clear_decode(dec, data, len, 0, 16, 16, 16, surf, w, h) == 0);
	CHECK(clear_diff(surf, fb, w, 0, 16, 16, 16) == 0);
	rdp_gfx_clear_stats(c, &hits, &stores, &plains);
	CHECK(hits == 2 && stores == 3 && plains == 1);
	/* Past 255 commands the sequence number wraps, in step. */
	for (x = 0; x < 300; x++) {
		CHECK(rdp_gfx_clear_encode(c, &img, 24, 0, 12, 16, 200, &data,
		    &len) == 1);
		CHECK(clear_decode(dec, data, len, 24, 0, 12, 16, surf, w,
		    h) == 0);
	}
	/* After a reset both sides start again at 0. */
	rdp_gfx_clear_reset(c);
	clear_context_reset(dec);
	CHECK(rdp_gfx_clear_encode(c, &img, 0, 0, 12, 16, 200, &data,
	    &len) == 1 && len == 4);
	CHECK(clear_decode(dec, data, len, 0, 0, 12, 16, surf, w, h) == 0);
	CHECK(clear_diff(surf, fb, w, 0, 0, 64, 16) == 0);
	clear_context_free(dec);
	rdp_gfx_clear_free(c);
	free(surf);
	free(fb);
}

/*
 * A lossless refinement's tiles of one colour: 20 bytes of ClearCodec
 * runs instead of planar; runs past 255 and 65535 pixels decode exactly.
 */
static void
test_clear_solid(void)
{
	struct rdp_gfx_clear	*c;
	struct rdp_gfx_image	 img;
	CLEAR_CONTEXT		*dec;
	const uint8_t		*data;
	size_t			 len;
	uint32_t		*fb, *surf;
	int			 w = 320, h = 300, i;

	fb = calloc((size_t)w * h, sizeof *fb);
	surf = calloc((size_t)w * h, sizeof *surf);
	for (i = 0; i < w * h; i++) {
		fb[i] = 0x102030;
		surf[i] = 0xffffff;
	}
	fb[w * h - 1] = 0x405060;
	img = image_of(fb, w, w, h);
	c = rdp_gfx_clear_create();
	dec = clear_context_new(FALSE);
	CHECK(c != NULL && dec != NULL);
	CHECK(rdp_gfx_clear_encode(c, &img, 64, 64, 64, 64, 300, &data,
	    &len) == 1);
	CHECK(len == 14 + 6);
	CHECK(clear_decode(dec, data, len, 64, 64, 64, 64, surf, w, h) == 0);
	CHECK(clear_diff(surf, fb, w, 64, 64, 64, 64) == 0);
	/* Shorter than planar only: a 20-byte planar stays planar. */
	CHECK(rdp_gfx_clear_encode(c, &img, 0, 0, 64, 64, 20, &data,
	    &len) == 0);
	/* The whole picture: a run of w * h - 1, then one pixel. */
	CHECK(rdp_gfx_clear_encode(c, &img, 0, 0, w, h, 1000, &data,
	    &len) == 1);
	CHECK(len == 14 + 10 + 4);
	CHECK(clear_decode(dec, data, len, 0, 0, w, h, surf, w, h) == 0);
	CHECK(clear_diff(surf, fb, w, 0, 0, w, h) == 0);
	clear_context_free(dec);
	rdp_gfx_clear_free(c);
	free(surf);
	free(fb);
}

/* Decode an AVC444v2 command (both views) into the surface. */
static int
emit_avc444(void *arg, RDPGFX_SURFACE_COMMAND *cmd)
{
	struct avcdecode		*d = arg;
	RDPGFX_AVC444_BITMAP_STREAM	*bs = cmd->extra;

	d->n++;
	if (cmd->codecId != RDPGFX_CODECID_AVC444v2 || bs == NULL ||
	    bs->LC != 0 || bs->bitstream[0].meta.numRegionRects == 0 ||
	    bs->cbAvc420EncodedBitstream1 != 4 +
	    bs->bitstream[0].meta.numRegionRects * 10 +
	    bs->bitstream[0].length) {
		d->bad++;
		return (0);
	}
	if (avc444_decompress(d->h264, bs->LC,
	    bs->bitstream[0].meta.regionRects,
	    bs->bitstream[0].meta.numRegionRects, bs->bitstream[0].data,
	    bs->bitstream[0].length, bs->bitstream[1].meta.regionRects,
	    bs->bitstream[1].meta.numRegionRects, bs->bitstream[1].data,
	    bs->bitstream[1].length, (BYTE *)d->surface, PIXEL_FORMAT_BGRX32,
	    d->width * 4, d->width, d->height, cmd->codecId) < 0)
		d->bad++;
	return (0);
}

/*
 * Colour error: mean |U| + |V| difference (BT.601-ish) over w x h, a with
 * stride as (a framebuffer), b with w.
 */
static double
avc_chroma_diff(const uint32_t *fa, int stride, const uint32_t *fb, int w,
    int h)
{
	double		sum = 0;
	uint32_t	a, b;
	int		x, y, ra, ga, ba, rb, gb, bb;

	for (y = 0; y < h; y++)
	for (x = 0; x < w; x++) {
		a = fa[(size_t)y * stride + x];
		b = fb[(size_t)y * w + x];
		ra = a >> 16 & 0xff; ga = a >> 8 & 0xff; ba = a & 0xff;
		rb = b >> 16 & 0xff; gb = b >> 8 & 0xff; bb = b & 0xff;
		sum += fabs((-0.169 * ra - 0.331 * ga + 0.5 * ba) -
		    (-0.169 * rb - 0.331 * gb + 0.5 * bb));
		sum += fabs((0.5 * ra - 0.419 * ga - 0.081 * ba) -
		    (0.5 * rb - 0.419 * gb - 0.081 * bb));
	}
	return (sum / ((double)w * h));
}

/*
 * Coloured one-pixel stripes (text's colour edges) through AVC420 and
 * AVC444: both decode with FreeRDP's own decoder, and AVC444 keeps the
 * colour that 4:2:0 smears.
 */
static void
test_avc444(void)
{
	static const uint32_t	 ink[] = { 0xff0000, 0x00ff00, 0x0000ff,
				     0xffff00, 0xff00ff, 0x00ffff };
	struct rdp_gfx_codec	*c;
	struct rdp_gfx_image	 img;
	struct avcdecode	 d;
	/* Overlapping and off the 2x2 grid, as QEMU's updates can be. */
	struct rdp_rect		 all[2] = { { 0, 0, 720, 400 },
				     { 3, 5, 500, 300 } };
	uint32_t		*fb;
	uint64_t		 bytes;
	double			 diff[2];
	int			 w = 720, h = 400, x, y, f, k;
	int			 s = w + 64;	/* as rdp-rfb.c has it */
	int			 ids[2] = { RDP_GFX_AVC420, RDP_GFX_AVC444 };

	fb = calloc((size_t)s * h, sizeof *fb);
	for (y = 0; y < h; y++)
		for (x = 0; x < w; x++)
			fb[y * s + x] = (x % 8 == 2 || y % 16 == 5) &&
			    x % 64 < 48 ? ink[(x / 8 + y / 16) % 6] : 0x000000;
	img = image_of(fb, s, w, h);
	for (k = 0; k < 2; k++) {
		c = rdp_gfx_codec_create(ids[k], w, h);
		CHECK(c != NULL);
		if (c == NULL)
			return;
		memset(&d, 0, sizeof d);
		d.width = w;
		d.height = h;
		d.surface = calloc((size_t)w * h, sizeof *d.surface);
		d.h264 = h264_context_new(FALSE);
		bytes = 0;
		for (f = 0; f < 2; f++)
			CHECK(rdp_gfx_codec_lossy(c, &img, all, 2,
			    k ? emit_avc444 : emit_avc, &d, &bytes) == 0);
		CHECK(d.n == 2 && d.bad == 0);
		diff[k] = avc_chroma_diff(fb, s, d.surface, w, h);
		CHECK(rdp_gfx_codec_stats(c) == NULL ||
		    rdp_gfx_codec_stats(c)->frames == 2);
		h264_context_free(d.h264);
		rdp_gfx_codec_free(c);
		free(d.surface);
	}
	fprintf(stderr, "chroma error: avc420 %.2f avc444 %.2f\n", diff[0],
	    diff[1]);
	CHECK(diff[1] < diff[0] / 2.5);
	free(fb);
}

int
main(void)
{
	test_pace();
	test_refine();
	test_qp();
	test_caps();
	test_planar();
	test_avc();
	test_clear();
	test_clear_solid();
	test_avc444();
	return (check_exit());
}
