/*
 * When and how much lossless refinement (pure; rdp-gfx.c sends it). The
 * refinement repaints with planar tiles what lossy frames left, once
 * motion stops; a 1920x1080 photo-like screen is 5-9 MB of planar, so
 * sent at once it was 4.5-9 Mbit/s where the H.264 stream was 0.5. Two
 * rules keep it proportional to the motion:
 *
 * - Its rate is the lossy stream's own (bytes a second of the last few
 *   seconds of lossy frames, RDP_GFX_REFINE_FLOOR at least): a token
 *   bucket holding at most one second of that rate. Each refinement frame
 *   carries as many tiles as the bucket holds, by the last frame's bytes
 *   a tile, and the bytes actually sent are taken from it.
 * - A refinement that motion overwrites soon after (a guest drawing a
 *   frame every second or two) was wasted: the quiet time before the
 *   next one doubles, up to RDP_GFX_REFINE_MAX_MS, and comes back to the
 *   configured one when a refinement completes.
 *
 * All times are ms of a monotonic clock, passed in, so the unit test
 * drives it without waiting.
 */
#include <stdint.h>
#include <string.h>

#include "rdp-gfx.h"

/* The lossy rate's window: halved when longer (ms). */
#define RDP_GFX_REFINE_WINDOW	4000
/* A lossy frame's share of time at most: a long still gap is no rate. */
#define RDP_GFX_REFINE_GAP	2000
/* The first guess of a planar tile's bytes (64x64, half photo-like). */
#define RDP_GFX_REFINE_TILE	8192

void
rdp_gfx_refine_init(struct rdp_gfx_refine *r, int quiet)
{
	memset(r, 0, sizeof *r);
	r->quiet = r->basequiet = quiet;
	r->tilebytes = RDP_GFX_REFINE_TILE;
}

/* The refinement's rate, bytes a second. */
uint64_t
rdp_gfx_refine_rate(const struct rdp_gfx_refine *r)
{
	uint64_t	rate = 0;

	if (r->ratems > 0)
		rate = r->ratebytes * 1000 / r->ratems;
	return (rate < RDP_GFX_REFINE_FLOOR ? RDP_GFX_REFINE_FLOOR : rate);
}

/* Top the bucket up for the time since the last top-up. */
static void
rdp_gfx_refine_fill(struct rdp_gfx_refine *r, uint64_t now)
{
	uint64_t	rate = rdp_gfx_refine_rate(r);
	int64_t		cap = (int64_t)rate;	/* one second's worth */

	if (r->filled == 0 || now < r->filled) {
		r->filled = now;
		r->tokens = cap;
		return;
	}
	r->tokens += (int64_t)((now - r->filled) * rate / 1000);
	if (r->tokens > cap)
		r->tokens = cap;
	r->filled = now;
}

/*
 * A lossy frame of bytes went at now: it counts towards the rate (its
 * time is the gap since the one before, at most RDP_GFX_REFINE_GAP), and
 * a refinement sent shortly before it was wasted.
 */
void
rdp_gfx_refine_lossy(struct rdp_gfx_refine *r, uint64_t now, uint64_t bytes)
{
	uint64_t	gap = RDP_GFX_REFINE_GAP;

	if (r->lastlossy != 0 && now - r->lastlossy < gap)
		gap = now - r->lastlossy;
	if (gap == 0)
		gap = 1;
	rdp_gfx_refine_fill(r, now);	/* at the old rate, up to now */
	r->ratebytes += bytes;
	r->ratems += gap;
	while (r->ratems > RDP_GFX_REFINE_WINDOW) {
		r->ratebytes /= 2;
		r->ratems /= 2;
	}
	if (r->lastrefine != 0 && r->quiet > 0 &&
	    now - r->lastrefine < 2 * (uint64_t)r->quiet) {
		r->wasted++;
		r->quiet = r->quiet * 2 > RDP_GFX_REFINE_MAX_MS ?
		    RDP_GFX_REFINE_MAX_MS : r->quiet * 2;
	}
	r->lastrefine = 0;
	r->lastlossy = now;
}

/*
 * Milliseconds until a refinement may go (0: now), or -1 for none (none
 * configured, or nothing lossy to refine).
 */
int
rdp_gfx_refine_wait(struct rdp_gfx_refine *r, uint64_t now, int nlossy)
{
	uint64_t	rate, need;
	int64_t		tile;

	if (r->quiet < 0 || nlossy == 0)
		return (-1);
	if (now - r->lastlossy < (uint64_t)r->quiet)
		return ((int)(r->quiet - (now - r->lastlossy)));
	rdp_gfx_refine_fill(r, now);
	/* A tile bigger than the bucket goes once the bucket is full. */
	rate = rdp_gfx_refine_rate(r);
	tile = r->tilebytes < rate ? (int64_t)r->tilebytes : (int64_t)rate;
	if (r->tokens >= tile)
		return (0);
	need = (uint64_t)(tile - r->tokens);
	return ((int)((need * 1000 + rate - 1) / rate));
}

/* How many tiles the refinement frame due now may carry (1 at least). */
int
rdp_gfx_refine_tiles(struct rdp_gfx_refine *r, uint64_t now)
{
	int64_t	n;

	rdp_gfx_refine_fill(r, now);
	n = r->tokens / (int64_t)r->tilebytes;
	return (n < 1 ? 1 : n > INT32_MAX ? INT32_MAX : (int)n);
}

/*
 * A refinement frame of tiles went, bytes long; left tiles are still
 * lossy (0: the refinement is complete, so the next may come sooner).
 */
void
rdp_gfx_refine_sent(struct rdp_gfx_refine *r, uint64_t now, int tiles,
    uint64_t bytes, int left)
{
	rdp_gfx_refine_fill(r, now);
	r->tokens -= (int64_t)bytes;
	if (tiles > 0)
		r->tilebytes = bytes / tiles > 0 ? bytes / tiles : 1;
	r->lastrefine = now;
	r->tiles += tiles;
	r->bytes += bytes;
	if (left == 0)
		r->quiet = r->basequiet;
}
