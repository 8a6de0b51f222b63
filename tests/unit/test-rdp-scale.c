/*
 * The gateway's scaling for a client that cannot resize (rdp-scale.c):
 * the picture's place (aspect kept, centred), the box filter, the
 * rectangles redrawn for a damage, the pointer mapped back, and a view
 * redrawn only where the guest changed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rdp-int.h"
#include "rdp-scale.h"

static void
test_geometry(void)
{
	struct rdp_scale	sc;

	/* 1280x800 (16:10) into 720x400 (9:5): bars left and right. */
	rdp_scale_init(&sc, 1280, 800, 720, 400);
	CHECK(sc.w == 640 && sc.h == 400 && sc.ox == 40 && sc.oy == 0);
	/* 720x400 into 640x480: bars above and below. */
	rdp_scale_init(&sc, 720, 400, 640, 480);
	CHECK(sc.w == 640 && sc.h == 355 && sc.ox == 0 && sc.oy == 62);
	/* Smaller guest: scaled up to fit. */
	rdp_scale_init(&sc, 320, 200, 640, 400);
	CHECK(sc.w == 640 && sc.h == 400 && sc.ox == 0 && sc.oy == 0);
	/* Nonsense sizes do not divide by zero. */
	rdp_scale_init(&sc, 0, 0, 0, 0);
	CHECK(sc.w >= 1 && sc.h >= 1);
}

static void
test_filter(void)
{
	struct rdp_scale	 sc;
	struct rdp_rect		 all = { 0, 0, 4, 2 };
	uint32_t		 src[8 * 4], dst[4 * 2];
	int			 i;

	/* 8x4 -> 4x2: each client pixel the mean of a 2x2 block. */
	for (i = 0; i < 8 * 4; i++)
		src[i] = (i % 8) < 4 ? 0x00ffffff : 0;
	src[0] = 0x00000000;	/* one dark pixel of the first block */
	rdp_scale_init(&sc, 8, 4, 4, 2);
	memset(dst, 0xaa, sizeof dst);
	rdp_scale_draw(&sc, src, 8, dst, 4, &all);
	CHECK(dst[0] == 0x00bfbfbf);	/* (3 * 255 + 0) / 4, rounded */
	CHECK(dst[1] == 0x00ffffff);
	CHECK(dst[2] == 0 && dst[3] == 0);
	CHECK(dst[5] == 0x00ffffff && dst[7] == 0);

	/* Bars are black: 4x4 into 4x2 puts the picture at 1..2. */
	rdp_scale_init(&sc, 4, 4, 4, 2);
	CHECK(sc.w == 2 && sc.h == 2 && sc.ox == 1);
	for (i = 0; i < 16; i++)
		src[i] = 0x00102030;
	memset(dst, 0xaa, sizeof dst);
	rdp_scale_draw(&sc, src, 4, dst, 4, &all);
	CHECK(dst[0] == 0 && dst[3] == 0 && dst[4] == 0 && dst[7] == 0);
	CHECK(dst[1] == 0x00102030 && dst[6] == 0x00102030);
}

static void
test_rect_and_point(void)
{
	struct rdp_scale	sc;
	struct rdp_rect		r, out;
	int			gx, gy, x, y;

	rdp_scale_init(&sc, 1280, 800, 720, 400);
	/* A character cell at the bottom right: its scaled place. */
	r = (struct rdp_rect){ 1272, 784, 8, 16 };
	CHECK(rdp_scale_rect(&sc, &r, &out) == 1);
	CHECK(out.x <= 40 + 636 && out.x + out.w >= 40 + 640 &&
	    out.x + out.w <= 720);
	CHECK(out.y <= 392 && out.y + out.h == 400);
	r = (struct rdp_rect){ 0, 0, 0, 5 };
	CHECK(rdp_scale_rect(&sc, &r, &out) == 0);
	r = (struct rdp_rect){ 2000, 0, 10, 10 };
	CHECK(rdp_scale_rect(&sc, &r, &out) == 0);

	/* The pointer: the picture's corners, the bars clamp. */
	rdp_scale_point(&sc, 40, 0, &gx, &gy);
	CHECK(gx == 1 && gy == 1);
	rdp_scale_point(&sc, 679, 399, &gx, &gy);
	CHECK(gx == 1279 && gy == 799);
	rdp_scale_point(&sc, 0, 0, &gx, &gy);	/* in the left bar */
	CHECK(gx == 0 && gy == 1);
	rdp_scale_point(&sc, 719, 399, &gx, &gy);
	CHECK(gx == 1279 && gy == 799);
	rdp_scale_point(&sc, 360, 200, &gx, &gy);
	CHECK(gx == 641 && gy == 401);
	/* Every client pixel maps to a guest pixel that maps back to it. */
	for (y = 0; y < 400; y += 7)
		for (x = 40; x < 680; x += 7) {
			rdp_scale_point(&sc, x, y, &gx, &gy);
			r = (struct rdp_rect){ gx, gy, 1, 1 };
			CHECK(rdp_scale_rect(&sc, &r, &out) == 1 &&
			    out.x <= x && x < out.x + out.w &&
			    out.y <= y && y < out.y + out.h);
		}
}

static void
test_view(void)
{
	struct rdp_scaled	*v;
	struct rdp_rfb		 rfb;
	uint32_t		*fb;
	int			 i;

	memset(&rfb, 0, sizeof rfb);
	rfb.width = rfb.stride = 64;
	rfb.height = 32;
	fb = calloc(64 * 32, sizeof *fb);
	rfb.fb = fb;
	for (i = 0; i < 64 * 32; i++)
		fb[i] = 0x00ffffff;
	v = rdp_scaled_create(64, 32, 40, 40);	/* 40x20 at +0+10 */
	CHECK(v->view.ndamage == 1 && v->view.damage[0].w == 40 &&
	    v->view.damage[0].h == 40);
	v->view.ndamage = 0;
	/* Damage one guest corner: only that corner of the view changes. */
	rfb.damage[0] = (struct rdp_rect){ 0, 0, 8, 8 };
	rfb.ndamage = 1;
	rdp_scaled_damage(v, &rfb);
	CHECK(v->view.ndamage == 1);
	CHECK(v->view.damage[0].x == 0 && v->view.damage[0].y == 10);
	CHECK(v->view.damage[0].w < 10 && v->view.damage[0].h < 10);
	CHECK(v->view.fb[10 * 40 + 0] == 0x00ffffff);
	CHECK(v->view.fb[29 * 40 + 39] == 0);	/* not drawn yet */
	CHECK(v->view.fb[0] == 0);		/* a bar */
	/* A guest of another size (a resize under way): nothing drawn. */
	rfb.width = 32;
	v->view.ndamage = 0;
	rdp_scaled_damage(v, &rfb);
	CHECK(v->view.ndamage == 0);
	rdp_scaled_free(v);
	rdp_scaled_free(NULL);
	free(fb);
}

int
main(void)
{
	test_geometry();
	test_filter();
	test_rect_and_point();
	test_view();
	return (check_exit());
}
