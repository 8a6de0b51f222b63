/*
 * rdp-scale.c: the guest's picture scaled into a client that cannot
 * resize (issue 12, "otherwise the client scales"). The aspect ratio is
 * kept (black bars), each client pixel is the average of the guest
 * pixels under it (a box filter: text stays readable when shrunk), only
 * damaged areas are redrawn, and the client's pointer is mapped back.
 * The geometry and the filter are pure (unit test test-rdp-scale).
 */
#ifndef QDESK_RDP_SCALE_H
#define QDESK_RDP_SCALE_H

#include <stdint.h>

#include "rdp-int.h"

/* The largest client desktop scaled into (its copy: 64 MiB at most). */
#define RDP_SCALE_MAX		4096

struct rdp_scale {
	int	sw, sh;		/* the guest's framebuffer */
	int	dw, dh;		/* the client's desktop */
	int	ox, oy;		/* the picture's place in it */
	int	w, h;		/* and size */
};

void	 rdp_scale_init(struct rdp_scale *, int sw, int sh, int dw, int dh);
int	 rdp_scale_rect(const struct rdp_scale *, const struct rdp_rect *,
	    struct rdp_rect *);
void	 rdp_scale_draw(const struct rdp_scale *, const uint32_t *src,
	    int sstride, uint32_t *dst, int dstride, const struct rdp_rect *);
void	 rdp_scale_point(const struct rdp_scale *, int x, int y, int *gx,
	    int *gy);

/*
 * The session's scaled view: the client-sized picture, an rdp_rfb the
 * bitmap encoder takes as it takes the guest's (fb, size, damage).
 */
struct rdp_scaled {
	struct rdp_scale	 sc;
	struct rdp_rfb		 view;
};
struct rdp_scaled *rdp_scaled_create(int sw, int sh, int dw, int dh);
void	 rdp_scaled_free(struct rdp_scaled *);
void	 rdp_scaled_damage(struct rdp_scaled *, const struct rdp_rfb *);

#endif
