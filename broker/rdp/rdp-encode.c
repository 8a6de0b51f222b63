/*
 * Framebuffer rectangles to RDP: the damaged area is cut into 64x64 tiles
 * on a fixed grid, each tile compressed with the RDP 6.0 planar codec
 * (lossless, 32 bpp) and sent as bitmap updates, batched to stay under the
 * client's multifragment limit. Planar bitmaps are what every client since
 * RDP 6 decodes (mstsc, xfreerdp, Remmina) without the GFX pipeline or
 * RemoteFX; the session forces 32 bpp so no other codec is needed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <freerdp/freerdp.h>
#include <freerdp/codec/color.h>
#include <freerdp/codec/planar.h>
#include <freerdp/update.h>

#include "compat.h"
#include "log.h"
#include "rdp-int.h"
#include "xmalloc.h"

#define RDP_TILE		64
#define RDP_TILE_BUF		(RDP_TILE * RDP_TILE * 4 + 256)
#define RDP_TILE_OVERHEAD	32	/* bitmap data header in the PDU */
#define RDP_UPDATE_HEADROOM	1024

struct rdp_encode {
	BITMAP_PLANAR_CONTEXT	*planar;
	int			 skipalpha;
	uint8_t			*grid;		/* dirty tiles */
	size_t			 gridsize;
	BITMAP_DATA		*bitmaps;
	unsigned char		*buffers;	/* RDP_TILE_BUF per bitmap */
	size_t			 nbitmaps;
};

struct rdp_encode *
rdp_encode_create(void)
{
	return (xcalloc(1, sizeof(struct rdp_encode)));
}

void
rdp_encode_free(struct rdp_encode *enc)
{
	if (enc == NULL)
		return;
	if (enc->planar != NULL)
		freerdp_bitmap_planar_context_free(enc->planar);
	free(enc->grid);
	free(enc->bitmaps);
	free(enc->buffers);
	free(enc);
}

/* The planar context, made again when the client's flags change. */
static int
rdp_encode_prepare(struct rdp_encode *enc, rdpSettings *settings)
{
	int	skipalpha = settings->DrawAllowSkipAlpha ? 1 : 0;
	DWORD	flags = PLANAR_FORMAT_HEADER_RLE;

	if (enc->planar != NULL && enc->skipalpha == skipalpha)
		return (0);
	if (enc->planar != NULL)
		freerdp_bitmap_planar_context_free(enc->planar);
	if (skipalpha)
		flags |= PLANAR_FORMAT_HEADER_NA;
	enc->planar = freerdp_bitmap_planar_context_new(flags, RDP_TILE,
	    RDP_TILE);
	enc->skipalpha = skipalpha;
	return (enc->planar == NULL ? -1 : 0);
}

/* Send bitmaps [0, n) as one update. */
static int
rdp_encode_flush(struct rdp_encode *enc, rdpContext *context, size_t n,
    struct rdp_encode_stats *st)
{
	BITMAP_UPDATE	bu;

	if (n == 0)
		return (0);
	memset(&bu, 0, sizeof bu);
	bu.count = bu.number = n;
	bu.rectangles = enc->bitmaps;
	if (!context->update->BitmapUpdate(context, &bu))
		return (-1);
	if (st != NULL)
		st->updates++;
	return (0);
}

/*
 * Mark in grid (gw x gh tiles of tile pixels a side) the tiles that rects
 * touch; marks already there stay (the graphics pipeline accumulates).
 */
void
rdp_encode_grid(uint8_t *grid, int gw, int gh, int tile,
    const struct rdp_rect *rects, int n)
{
	int	i, ty, x0, y0, x1, y1;

	for (i = 0; i < n; i++) {
		if (rects[i].w <= 0 || rects[i].h <= 0 || rects[i].x < 0 ||
		    rects[i].y < 0)
			continue;
		x0 = rects[i].x / tile;
		y0 = rects[i].y / tile;
		x1 = (rects[i].x + rects[i].w - 1) / tile;
		y1 = (rects[i].y + rects[i].h - 1) / tile;
		if (x0 >= gw || y0 >= gh)
			continue;
		if (x1 >= gw)
			x1 = gw - 1;
		if (y1 >= gh)
			y1 = gh - 1;
		for (ty = y0; ty <= y1; ty++)
			memset(grid + (size_t)ty * gw + x0, 1, x1 - x0 + 1);
	}
}

/*
 * Send the tiles that rects touch, from the RFB client's framebuffer,
 * clipped to the RDP desktop. Returns -1 when the connection failed.
 */
int
rdp_encode_send(struct rdp_encode *enc, void *ctxp, const struct rdp_rfb *rfb,
    const struct rdp_rect *rects, int n, struct rdp_encode_stats *st)
{
	rdpContext	*context = ctxp;
	rdpSettings	*settings = context->settings;
	BITMAP_DATA	*b;
	unsigned char	*dst;
	const BYTE	*src;
	int		 w, h, gw, gh, tx, ty;
	UINT32		 size, maxsize, total;
	size_t		 k;

	w = rfb->width < (int)settings->DesktopWidth ? rfb->width :
	    (int)settings->DesktopWidth;
	h = rfb->height < (int)settings->DesktopHeight ? rfb->height :
	    (int)settings->DesktopHeight;
	if (w <= 0 || h <= 0 || n == 0)
		return (0);
	if (rdp_encode_prepare(enc, settings) != 0) {
		log_warnx("RDP: cannot make a planar encoder");
		return (-1);
	}
	gw = (w + RDP_TILE - 1) / RDP_TILE;
	gh = (h + RDP_TILE - 1) / RDP_TILE;
	if (enc->gridsize < (size_t)gw * gh) {
		enc->gridsize = (size_t)gw * gh;
		enc->grid = xrealloc(enc->grid, enc->gridsize);
		enc->bitmaps = xrealloc(enc->bitmaps, enc->gridsize *
		    sizeof *enc->bitmaps);
		enc->buffers = xrealloc(enc->buffers, enc->gridsize *
		    RDP_TILE_BUF);
	}
	memset(enc->grid, 0, (size_t)gw * gh);
	rdp_encode_grid(enc->grid, gw, gh, RDP_TILE, rects, n);

	maxsize = settings->MultifragMaxRequestSize;
	if (maxsize < 2 * RDP_UPDATE_HEADROOM)
		maxsize = 2 * RDP_UPDATE_HEADROOM;
	maxsize -= RDP_UPDATE_HEADROOM;
	k = 0;
	total = 0;
	for (ty = 0; ty < gh; ty++) {
		for (tx = 0; tx < gw; tx++) {
			if (!enc->grid[(size_t)ty * gw + tx])
				continue;
			b = &enc->bitmaps[k];
			memset(b, 0, sizeof *b);
			b->destLeft = tx * RDP_TILE;
			b->destTop = ty * RDP_TILE;
			/* Widths a multiple of 4: the padding is readable. */
			b->width = w - (int)b->destLeft < RDP_TILE ?
			    w - b->destLeft : RDP_TILE;
			b->height = h - (int)b->destTop < RDP_TILE ?
			    h - b->destTop : RDP_TILE;
			b->destRight = b->destLeft + b->width - 1;
			b->destBottom = b->destTop + b->height - 1;
			b->width = (b->width + 3) & ~3U;
			b->height = (b->height + 3) & ~3U;
			src = (const BYTE *)(rfb->fb + (size_t)b->destTop *
			    rfb->stride + b->destLeft);
			dst = enc->buffers + k * RDP_TILE_BUF;
			size = RDP_TILE_BUF;
			if (freerdp_bitmap_compress_planar(enc->planar, src,
			    PIXEL_FORMAT_BGRX32, b->width, b->height,
			    rfb->stride * 4, dst, &size) == NULL) {
				log_warnx("RDP: planar compression failed");
				return (-1);
			}
			b->bitmapDataStream = dst;
			b->bitmapLength = size;
			b->bitsPerPixel = 32;
			b->compressed = TRUE;
			b->cbScanWidth = b->width * 4;
			b->cbUncompressedSize = b->width * b->height * 4;
			b->cbCompMainBodySize = size;
			if (st != NULL) {
				st->tiles++;
				st->bytes += size;
			}
			if (total + size + RDP_TILE_OVERHEAD > maxsize &&
			    k > 0) {
				/* This tile opens the next update. */
				BITMAP_DATA	 keep = *b;

				if (rdp_encode_flush(enc, context, k, st) != 0)
					return (-1);
				memcpy(enc->buffers, dst, size);
				keep.bitmapDataStream = enc->buffers;
				enc->bitmaps[0] = keep;
				k = 0;
				total = 0;
			}
			total += size + RDP_TILE_OVERHEAD;
			k++;
		}
	}
	return (rdp_encode_flush(enc, context, k, st));
}
