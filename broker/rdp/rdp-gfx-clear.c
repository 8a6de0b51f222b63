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
 * Only the residual layer is written (BGR runs in raster order); bands
 * and subcodecs are not needed for pictures this small. The cache here
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
	uint64_t	 hits;
	uint64_t	 stores;
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

/* Glyphs drawn from the cache and glyphs stored in it, for the log. */
void
rdp_gfx_clear_stats(const struct rdp_gfx_clear *c, uint64_t *hits,
    uint64_t *stores)
{
	*hits = c->hits;
	*stores = c->stores;
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

/* The residual layer of px: one run of B, G, R and a length per colour. */
static size_t
rdp_gfx_clear_residual(const uint32_t *px, size_t n, uint8_t *out)
{
	size_t		i, run, len = 0;
	uint32_t	v;

	for (i = 0; i < n; i += run) {
		v = px[i];
		for (run = 1; i + run < n && px[i + run] == v; run++)
			;
		out[len++] = v & 0xff;
		out[len++] = (v >> 8) & 0xff;
		out[len++] = (v >> 16) & 0xff;
		if (run < 0xff)
			out[len++] = run;
		else {
			/* At most RDP_GFX_CLEAR_MAXPX: 16 bits suffice. */
			out[len++] = 0xff;
			rdp_gfx_clear_put16(out + len, run);
			len += 2;
		}
	}
	return (len);
}

/*
 * The w x h pixels at x, y of img as one ClearCodec command's data, when
 * that beats planar's planar_len bytes (a picture already in the cache
 * always does; a new one when at most twice planar's, since it will be
 * drawn from the cache next time). Returns 1 with *data (the context's
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

	if (w <= 0 || h <= 0 || n > RDP_GFX_CLEAR_MAXPX || x < 0 || y < 0 ||
	    x + w > img->width || y + h > img->height)
		return (0);
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
