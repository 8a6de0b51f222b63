/*
 * The guest's picture scaled into a client that cannot resize (rdp-scale.h
 * says why and how). The geometry and the filter are pure functions of
 * their arguments; the scaled view is a plain buffer the session owns.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rdp-scale.h"
#include "xmalloc.h"

/* Fit sw x sh into dw x dh, aspect kept, centred. */
void
rdp_scale_init(struct rdp_scale *sc, int sw, int sh, int dw, int dh)
{
	memset(sc, 0, sizeof *sc);
	sc->sw = sw > 0 ? sw : 1;
	sc->sh = sh > 0 ? sh : 1;
	sc->dw = dw > 0 ? dw : 1;
	sc->dh = dh > 0 ? dh : 1;
	/* The narrower side decides: sw/sh > dw/dh means bars above. */
	if ((int64_t)sc->sw * sc->dh >= (int64_t)sc->sh * sc->dw) {
		sc->w = sc->dw;
		sc->h = (int)((int64_t)sc->sh * sc->dw / sc->sw);
	} else {
		sc->h = sc->dh;
		sc->w = (int)((int64_t)sc->sw * sc->dh / sc->sh);
	}
	if (sc->w < 1)
		sc->w = 1;
	if (sc->h < 1)
		sc->h = 1;
	sc->ox = (sc->dw - sc->w) / 2;
	sc->oy = (sc->dh - sc->h) / 2;
}

/* The guest pixels [*a, *b) under picture pixels [d, d + 1) of n over s. */
static void
rdp_scale_span(int d, int n, int s, int *a, int *b)
{
	*a = (int)((int64_t)d * s / n);
	*b = (int)(((int64_t)(d + 1) * s + n - 1) / n);
	if (*b <= *a)
		*b = *a + 1;
	if (*b > s)
		*b = s;
	if (*a >= *b)
		*a = *b - 1;
}

/* The picture pixels [*a, *b) whose guest pixels meet [x, x + len). */
static void
rdp_scale_cover(int x, int len, int n, int s, int *a, int *b)
{
	*a = (int)((int64_t)x * n / s) - 1;
	*b = (int)(((int64_t)(x + len) * n + s - 1) / s) + 1;
	if (*a < 0)
		*a = 0;
	if (*b > n)
		*b = n;
}

/*
 * The client's rectangle (its own coordinates) to redraw when the
 * guest's r changed; 0 when it is empty.
 */
int
rdp_scale_rect(const struct rdp_scale *sc, const struct rdp_rect *r,
    struct rdp_rect *out)
{
	int	x0, x1, y0, y1;

	if (r->w <= 0 || r->h <= 0 || r->x >= sc->sw || r->y >= sc->sh ||
	    r->x + r->w <= 0 || r->y + r->h <= 0) {
		memset(out, 0, sizeof *out);
		return (0);
	}
	rdp_scale_cover(r->x, r->w, sc->w, sc->sw, &x0, &x1);
	rdp_scale_cover(r->y, r->h, sc->h, sc->sh, &y0, &y1);
	out->x = sc->ox + x0;
	out->y = sc->oy + y0;
	out->w = x1 - x0;
	out->h = y1 - y0;
	return (out->w > 0 && out->h > 0);
}

/*
 * Redraw the client's rectangle r of dst from src: inside the picture
 * each pixel is the mean of the guest pixels under it, outside black.
 * The columns' spans are worked out once a call, the rows' once a row.
 */
void
rdp_scale_draw(const struct rdp_scale *sc, const uint32_t *src, int sstride,
    uint32_t *dst, int dstride, const struct rdp_rect *r)
{
	const uint32_t	*row;
	uint32_t	 px, rs, gs, bs, n, *out;
	int		 x, y, x0, x1, y0, y1, sx, sy, ay, by, *span;

	x0 = r->x < 0 ? 0 : r->x;
	x1 = r->x + r->w > sc->dw ? sc->dw : r->x + r->w;
	y0 = r->y < 0 ? 0 : r->y;
	y1 = r->y + r->h > sc->dh ? sc->dh : r->y + r->h;
	if (x0 >= x1 || y0 >= y1)
		return;
	span = xcalloc((size_t)(x1 - x0) * 2, sizeof *span);
	for (x = x0; x < x1; x++) {
		if (x < sc->ox || x >= sc->ox + sc->w)
			span[(x - x0) * 2] = span[(x - x0) * 2 + 1] = -1;
		else
			rdp_scale_span(x - sc->ox, sc->w, sc->sw,
			    &span[(x - x0) * 2], &span[(x - x0) * 2 + 1]);
	}
	for (y = y0; y < y1; y++) {
		out = dst + (size_t)y * dstride;
		if (y < sc->oy || y >= sc->oy + sc->h) {
			for (x = x0; x < x1; x++)
				out[x] = 0;
			continue;
		}
		rdp_scale_span(y - sc->oy, sc->h, sc->sh, &ay, &by);
		for (x = x0; x < x1; x++) {
			if (span[(x - x0) * 2] == -1) {
				out[x] = 0;
				continue;
			}
			rs = gs = bs = n = 0;
			for (sy = ay; sy < by; sy++) {
				row = src + (size_t)sy * sstride;
				for (sx = span[(x - x0) * 2];
				    sx < span[(x - x0) * 2 + 1]; sx++) {
					px = row[sx];
					rs += (px >> 16) & 0xff;
					gs += (px >> 8) & 0xff;
					bs += px & 0xff;
					n++;
				}
			}
			out[x] = ((rs + n / 2) / n) << 16 |
			    ((gs + n / 2) / n) << 8 | (bs + n / 2) / n;
		}
	}
	free(span);
}

/* The client's pointer at (x, y) to the guest's pixel under it. */
void
rdp_scale_point(const struct rdp_scale *sc, int x, int y, int *gx, int *gy)
{
	int64_t	vx, vy;

	/* The middle of the client's pixel, so a round trip lands on it. */
	vx = ((int64_t)(x - sc->ox) * 2 + 1) * sc->sw / (2 * (int64_t)sc->w);
	vy = ((int64_t)(y - sc->oy) * 2 + 1) * sc->sh / (2 * (int64_t)sc->h);
	*gx = vx < 0 ? 0 : vx >= sc->sw ? sc->sw - 1 : (int)vx;
	*gy = vy < 0 ? 0 : vy >= sc->sh ? sc->sh - 1 : (int)vy;
}

/* A black client-sized view of the guest's sw x sh, all of it damaged. */
struct rdp_scaled *
rdp_scaled_create(int sw, int sh, int dw, int dh)
{
	struct rdp_scaled	*v;

	v = xcalloc(1, sizeof *v);
	rdp_scale_init(&v->sc, sw, sh, dw, dh);
	v->view.fd = -1;
	v->view.width = v->view.stride = v->sc.dw;
	v->view.height = v->sc.dh;
	v->view.fb = xcalloc((size_t)v->sc.dw * v->sc.dh, sizeof (uint32_t));
	v->view.damage[0] = (struct rdp_rect){ 0, 0, v->sc.dw, v->sc.dh };
	v->view.ndamage = 1;
	return (v);
}

void
rdp_scaled_free(struct rdp_scaled *v)
{
	if (v == NULL)
		return;
	free(v->view.fb);
	free(v);
}

/* Redraw the view where the guest's damage falls, and damage it there. */
void
rdp_scaled_damage(struct rdp_scaled *v, const struct rdp_rfb *rfb)
{
	struct rdp_rect	r;
	int		i;

	if (rfb->width != v->sc.sw || rfb->height != v->sc.sh)
		return;		/* the next resize makes it anew */
	for (i = 0; i < rfb->ndamage; i++) {
		if (!rdp_scale_rect(&v->sc, &rfb->damage[i], &r))
			continue;
		rdp_scale_draw(&v->sc, rfb->fb, rfb->stride, v->view.fb,
		    v->view.stride, &r);
		rdp_rfb_damage(&v->view, r.x, r.y, r.w, r.h);
	}
}
