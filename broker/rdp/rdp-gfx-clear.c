/*
 * ClearCodec glyphs (MS-RDPEGFX 2.2.4.1) for the graphics pipeline's
 * smallest commands: a typed character, a backspace, a blinking cursor.
 *
 * Why: a key's echo is one small lossless command; as planar it is ~20
 * (a blank cell) to ~190 bytes (a glyph), every time. ClearCodec lets the
 * server put a picture of at most 1024 pixels in the client's glyph cache
 * (4000 entries, kept for the connection) and later draw it again by its
 * index: 4 bytes. The same character in the same cell phase, a blank
 * cell, the cursor's two states all come back from the cache.
 *
 * A bigger command goes as ClearCodec too, without the cache, when its
 * runs are shorter than planar: a lossless refinement of a text screen is
 * mostly tiles of one colour, ~300 bytes each as planar (every row's
 * control bytes, each plane) and 20 as one run.
 *
 * Only the residual layer is written (BGR runs in raster order); bands
 * and subcodecs are not needed for such pictures. The cache here
 * mirrors the client's: an entry is replaced round-robin and only ever
 * written by a command that went out. Pure: no FreeRDP state, testable
 * against FreeRDP's own decoder (tests/unit/test-rdp-gfx.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rdp-gfx.h"
#include "xmalloc.h"

#define CLEAR_FLAG_GLYPH_INDEX	0x01
#define CLEAR_FLAG_GLYPH_HIT	0x02
#define CLEAR_HEADER		16	/* flags, seq, index, three counts */
#define CLEAR_PLAIN_HEADER	14	/* flags, seq, three counts */
#define CLEAR_PLAIN_MAX		2048	/* runs of a command past a glyph */

struct rdp_gfx_clear_glyph {
	uint32_t	 hash;
	int		 w, h;		/* 0: free */
	uint32_t	*px;		/* w * h, 0x00RRGGBB */
};

struct rdp_gfx_clear {
	struct rdp_gfx_clear_glyph glyphs[RDP_GFX_CLEAR_GLYPHS];
	int		 next;		/* round-robin victim */
	uint8_t		 seq;		/* of the next command */
	uint8_t		 buf[CLEAR_HEADER + 6 * RDP_GFX_CLEAR_MAXPX];
	uint32_t	 tmp[RDP_GFX_CLEAR_MAXPX];
	uint8_t		 plain[CLEAR_PLAIN_HEADER + CLEAR_PLAIN_MAX];
	uint64_t	 hits;
	uint64_t	 stores;
	uint64_t	 plains;	/* commands past a glyph's size */
};

struct rdp_gfx_clear *
rdp_gfx_clear_create(void)
{
	return (xcalloc(1, sizeof(struct rdp_gfx_clear)));
}

void
rdp_gfx_clear_free(struct rdp_gfx_clear *c)
{
	int	i;

	if (c == NULL)
		return;
	for (i = 0; i < RDP_GFX_CLEAR_GLYPHS; i++)
		free(c->glyphs[i].px);
	free(c);
}

/* A ResetGraphics restarts the sequence numbers (the client's too). */
void
rdp_gfx_clear_reset(struct rdp_gfx_clear *c)
{
	c->seq = 0;
}

/*
 * Glyphs drawn from the cache, glyphs stored in it and bigger commands
 * sent as runs, for the log.
 */
void
rdp_gfx_clear_stats(const struct rdp_gfx_clear *c, uint64_t *hits,
    uint64_t *stores, uint64_t *plains)
{
	*hits = c->hits;
	*stores = c->stores;
	*plains = c->plains;
}

/* FNV-1a over the size and the pixels. */
static uint32_t
rdp_gfx_clear_hash(const uint32_t *px, int w, int h)
{
	uint32_t	hv = 2166136261U;
	size_t		i, n = (size_t)w * h;

	hv = (hv ^ (uint32_t)w) * 16777619U;
	hv = (hv ^ (uint32_t)h) * 16777619U;
	for (i = 0; i < n; i++)
		hv = (hv ^ px[i]) * 16777619U;
	return (hv);
}

static void
rdp_gfx_clear_put16(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
}

static void
rdp_gfx_clear_put32(uint8_t *p, uint32_t v)
{
	rdp_gfx_clear_put16(p, v & 0xffff);
	rdp_gfx_clear_put16(p + 2, v >> 16);
}

/*
 * One run of the residual layer at out + len, unless it would pass max:
 * B, G, R and the length in 1, 3 or 7 bytes. Returns the new length, or
 * max + 1 when it does not fit.
 */
static size_t
rdp_gfx_clear_run(uint8_t *out, size_t len, size_t max, uint32_t v,
    uint32_t run)
{
	size_t	need = 3 + (run < 0xff ? 1 : run < 0xffff ? 3 : 7);

	if (len + need > max)
		return (max + 1);
	out[len++] = v & 0xff;
	out[len++] = (v >> 8) & 0xff;
	out[len++] = (v >> 16) & 0xff;
	if (run < 0xff) {
		out[len++] = run;
		return (len);
	}
	out[len++] = 0xff;
	if (run < 0xffff) {
		rdp_gfx_clear_put16(out + len, run);
		return (len + 2);
	}
	rdp_gfx_clear_put16(out + len, 0xffff);
	rdp_gfx_clear_put32(out + len + 2, run);
	return (len + 6);
}

/*
 * The residual layer of px: one run of B, G, R and a length per colour
 * (a pixel costs at most 4 bytes; out holds 6 a pixel).
 */
static size_t
rdp_gfx_clear_residual(const uint32_t *px, size_t n, uint8_t *out)
{
	size_t		i, run, len = 0;
	uint32_t	v;

	for (i = 0; i < n; i += run) {
		v = px[i];
		for (run = 1; i + run < n && px[i + run] == v; run++)
			;
		len = rdp_gfx_clear_run(out, len, 6 * RDP_GFX_CLEAR_MAXPX, v,
		    run);
	}
	return (len);
}

/*
 * A command too big for a glyph, as residual runs read straight from
 * img, when shorter than planar's planar_len: 1 with *data and *len, or
 * 0 (more runs than fit, or not shorter).
 */
static int
rdp_gfx_clear_plain(struct rdp_gfx_clear *c, const struct rdp_gfx_image *img,
    int x, int y, int w, int h, size_t planar_len, const uint8_t **data,
    size_t *len)
{
	const uint32_t	*row;
	uint8_t		*out = c->plain + CLEAR_PLAIN_HEADER;
	size_t		 rlen = 0, max = CLEAR_PLAIN_MAX;
	uint32_t	 v, run = 0;
	int		 i, r;

	if (planar_len <= CLEAR_PLAIN_HEADER)
		return (0);
	if (planar_len - CLEAR_PLAIN_HEADER - 1 < max)
		max = planar_len - CLEAR_PLAIN_HEADER - 1;
	v = img->fb[(size_t)y * img->stride + x];
	for (r = 0; r < h; r++) {
		row = img->fb + (size_t)(y + r) * img->stride + x;
		for (i = 0; i < w; i++) {
			if (row[i] == v) {
				run++;
				continue;
			}
			if ((rlen = rdp_gfx_clear_run(out, rlen, max, v,
			    run)) > max)
				return (0);
			v = row[i];
			run = 1;
		}
	}
	if ((rlen = rdp_gfx_clear_run(out, rlen, max, v, run)) > max)
		return (0);
	c->plain[0] = 0;
	c->plain[1] = c->seq++;
	rdp_gfx_clear_put32(c->plain + 2, rlen);	/* residual */
	rdp_gfx_clear_put32(c->plain + 6, 0);		/* bands */
	rdp_gfx_clear_put32(c->plain + 10, 0);		/* subcodecs */
	c->plains++;
	*data = c->plain;
	*len = CLEAR_PLAIN_HEADER + rlen;
	return (1);
}

/*
 * The w x h pixels at x, y of img as one ClearCodec command's data, when
 * that beats planar's planar_len bytes (a picture already in the cache
 * always does; a new one when at most twice planar's, since it will be
 * drawn from the cache next time; a picture too big for the cache when
 * shorter). Returns 1 with *data (the context's
 * buffer, valid until the next call) and *len, or 0: send planar. The
 * command must go out once 1 is returned: the cache and the sequence
 * number count it as sent.
 */
int
rdp_gfx_clear_encode(struct rdp_gfx_clear *c, const struct rdp_gfx_image *img,
    int x, int y, int w, int h, size_t planar_len, const uint8_t **data,
    size_t *len)
{
	struct rdp_gfx_clear_glyph	*gl;
	size_t				 n = (size_t)w * h, rlen;
	uint32_t			 hv;
	int				 i, r;

	if (w <= 0 || h <= 0 || x < 0 || y < 0 ||
	    x + w > img->width || y + h > img->height)
		return (0);
	if (n > RDP_GFX_CLEAR_MAXPX)
		return (rdp_gfx_clear_plain(c, img, x, y, w, h, planar_len,
		    data, len));
	for (r = 0; r < h; r++)
		memcpy(c->tmp + (size_t)r * w, img->fb + (size_t)(y + r) *
		    img->stride + x, (size_t)w * 4);
	hv = rdp_gfx_clear_hash(c->tmp, w, h);
	for (i = 0; i < RDP_GFX_CLEAR_GLYPHS; i++) {
		gl = &c->glyphs[i];
		if (gl->w == w && gl->h == h && gl->hash == hv &&
		    memcmp(gl->px, c->tmp, n * 4) == 0)
			break;
	}
	if (i < RDP_GFX_CLEAR_GLYPHS) {
		c->buf[0] = CLEAR_FLAG_GLYPH_INDEX | CLEAR_FLAG_GLYPH_HIT;
		c->buf[1] = c->seq++;
		rdp_gfx_clear_put16(c->buf + 2, i);
		c->hits++;
		*data = c->buf;
		*len = 4;
		return (1);
	}

	rlen = rdp_gfx_clear_residual(c->tmp, n, c->buf + CLEAR_HEADER);
	if (CLEAR_HEADER + rlen > 2 * planar_len)
		return (0);
	i = c->next;
	c->next = (c->next + 1) % RDP_GFX_CLEAR_GLYPHS;
	gl = &c->glyphs[i];
	free(gl->px);
	gl->px = xcalloc(n, 4);
	memcpy(gl->px, c->tmp, n * 4);
	gl->w = w;
	gl->h = h;
	gl->hash = hv;
	c->buf[0] = CLEAR_FLAG_GLYPH_INDEX;
	c->buf[1] = c->seq++;
	rdp_gfx_clear_put16(c->buf + 2, i);
	rdp_gfx_clear_put32(c->buf + 4, rlen);	/* residual */
	rdp_gfx_clear_put32(c->buf + 8, 0);	/* bands */
	rdp_gfx_clear_put32(c->buf + 12, 0);	/* subcodecs */
	c->stores++;
	*data = c->buf;
	*len = CLEAR_HEADER + rlen;
	return (1);
}
