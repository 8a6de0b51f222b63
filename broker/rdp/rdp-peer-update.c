/*
 * The screen to the client. Every FramebufferUpdate from the VNC side
 * becomes graphics pipeline frames (rdp-gfx.c) or, for clients without
 * it, planar bitmap updates of the damaged tiles (rdp-encode.c); the next
 * update is requested only when the client has taken the last one, so a
 * slow client slows the frame rate instead of filling memory. A guest
 * resolution change reactivates the client (or resets the graphics); the
 * client's refresh and suppress requests damage our copy.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <freerdp/freerdp.h>
#include <freerdp/error.h>
#include <freerdp/peer.h>
#include <freerdp/settings.h>
#include <freerdp/update.h>

#include "compat.h"
#include "log.h"
#include "rdp-gfx.h"
#include "rdp-peer.h"
#include "rdp-scale.h"
#include "xmalloc.h"

/* The client lost part of its picture: send it again from our copy. */
static BOOL
rdp_peer_update_refresh_rect(rdpContext *context, BYTE count,
    const RECTANGLE_16 *areas)
{
	struct rdp_session	*s = rdp_peer_session(context);
	BYTE			 i;

	if (s->rfb == NULL)
		return (TRUE);
	if (s->scaled != NULL) {
		/* Client coordinates: redraw the whole scaled view. */
		rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width, s->rfb->height);
		return (TRUE);
	}
	for (i = 0; i < count; i++)
		rdp_rfb_damage(s->rfb, areas[i].left, areas[i].top,
		    areas[i].right - areas[i].left + 1,
		    areas[i].bottom - areas[i].top + 1);
	if (count == 0)
		rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width, s->rfb->height);
	return (TRUE);
}

/* Minimised or back: stop sending, then repaint everything. */
static BOOL
rdp_peer_update_suppress_output(rdpContext *context, BYTE allow,
    const RECTANGLE_16 *area)
{
	struct rdp_session	*s = rdp_peer_session(context);

	s->suppressed = !allow;
	if (allow && s->rfb != NULL)
		rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width, s->rfb->height);
	return (TRUE);
}

/* The guest changed resolution: reactivate the client at the new size. */
static void
rdp_peer_update_resize(struct rdp_session *s)
{
	rdpSettings	*settings = s->peer->settings;
	char		 who[256];

	s->resize = 0;
	if ((int)settings->DesktopWidth == s->rfb->width &&
	    (int)settings->DesktopHeight == s->rfb->height) {
		if (s->scaled != NULL) {
			log_info("%s: console back to %dx%d, the client's "
			    "size: no more scaling", rdp_peer_who(s, who,
			    sizeof who), s->rfb->width, s->rfb->height);
			rdp_scaled_free(s->scaled);
			s->scaled = NULL;
			rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width,
			    s->rfb->height);
		}
		return;
	}
	rdp_scaled_free(s->scaled);
	s->scaled = NULL;
	if (s->gfx != NULL && rdp_gfx_active(s->gfx)) {
		/*
		 * The graphics pipeline resizes without a reactivation: the
		 * next frame resets the graphics and makes the surface anew
		 * (rdp_gfx_send), and the client follows its ResetGraphics.
		 */
		log_info("%s: console now %dx%d (graphics reset)",
		    rdp_peer_who(s, who, sizeof who), s->rfb->width,
		    s->rfb->height);
		settings->DesktopWidth = s->rfb->width;
		settings->DesktopHeight = s->rfb->height;
		return;
	}
	if (!settings->DesktopResize) {
		/* Its size stays: the whole guest, scaled into it. */
		s->scaled = rdp_scaled_create(s->rfb->width, s->rfb->height,
		    settings->DesktopWidth, settings->DesktopHeight);
		rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width, s->rfb->height);
		log_info("%s: console now %dx%d, the client cannot resize: "
		    "scaled into its %ux%u (%dx%d at +%d+%d)",
		    rdp_peer_who(s, who, sizeof who), s->rfb->width,
		    s->rfb->height, settings->DesktopWidth,
		    settings->DesktopHeight, s->scaled->sc.w, s->scaled->sc.h,
		    s->scaled->sc.ox, s->scaled->sc.oy);
		return;
	}
	log_info("%s: console now %dx%d", rdp_peer_who(s, who, sizeof who),
	    s->rfb->width, s->rfb->height);
	settings->DesktopWidth = s->rfb->width;
	settings->DesktopHeight = s->rfb->height;
	s->activated = 0;	/* until the client confirms */
	if (!s->peer->update->DesktopResize(s->peer->context))
		rdp_peer_end(s, "desktop resize failed");
}

/* What the VNC side has: apply, send what changed, ask for more. */
void
rdp_peer_update_display(struct rdp_session *s)
{
	struct rdp_rfb	*rfb = s->rfb;
	char		*cause = NULL;
	int		 sent;

	if (rfb->updated) {
		rfb->updated = 0;
		s->requested = 0;
	}
	if (rfb->resized) {
		rfb->resized = 0;
		s->resize = 1;
	}
	if (!s->activated)
		return;
	if (s->resize) {
		rdp_peer_update_resize(s);
		if (!s->activated)
			return;
	}
	if (s->scaled != NULL && s->gfx != NULL && rdp_gfx_active(s->gfx)) {
		/* The pipeline's ResetGraphics gives the client our size. */
		rdp_scaled_free(s->scaled);
		s->scaled = NULL;
	}
	if (rfb->ledstate && rfb->leds != s->leds) {
		s->leds = rfb->leds;
		s->peer->update->SetKeyboardIndicators(s->peer->context,
		    rfb->leds);
	}
	if (s->suppressed)
		return;
	if (s->peer->IsWriteBlocked(s->peer)) {
		s->stats.blocked++;
		return;
	}
	/*
	 * Whole messages only reach here, so the copy is consistent: send
	 * now, also damage from a refresh or activation while an update
	 * request is still out (QEMU answers it only when the guest draws).
	 */
	/*
	 * Ask for the next update before encoding this one: QEMU answers
	 * at its next display refresh (every 30 ms) and its VNC worker
	 * copies the framebuffer meanwhile, so that wait and copy overlap
	 * the encoder instead of following it (1920x1080 AVC420 on a KVM
	 * guest drawing 30 a second: 12.6-14.3 frames/s asked after,
	 * 18.7-19.1 asked before; bench/transport/README.md). The damage
	 * of an update that comes while frames are held waits as it did.
	 */
	if (!s->requested) {
		if (rdp_rfb_request(rfb, 1) != 0) {
			xasprintf(&cause, "VNC connection lost: %s",
			    strerror(errno));
			rdp_peer_end(s, "%s", cause);
			free(cause);
			return;
		}
		s->requested = 1;
	}
	/* The graphics pipeline when in use (it may hold damage back). */
	sent = RDP_GFX_OFF;
	if (s->gfx != NULL)
		sent = rfb->ndamage > 0 ? rdp_gfx_send(s->gfx, rfb, rfb->damage,
		    rfb->ndamage) : rdp_gfx_idle(s->gfx, rfb);
	if (sent == RDP_GFX_OFF && rfb->ndamage > 0 && s->scaled != NULL) {
		/* The damage, scaled, from the client-sized view. */
		rdp_scaled_damage(s->scaled, rfb);
		sent = rdp_encode_send(s->enc, s->peer->context,
		    &s->scaled->view, s->scaled->view.damage,
		    s->scaled->view.ndamage, &s->stats) == 0 ? 1 : -1;
		if (sent == 1)
			s->scaled->view.ndamage = 0;
	} else if (sent == RDP_GFX_OFF && rfb->ndamage > 0)
		sent = rdp_encode_send(s->enc, s->peer->context, rfb,
		    rfb->damage, rfb->ndamage, &s->stats) == 0 ? 1 : -1;
	if (sent == -1) {
		if (freerdp_get_last_error(s->peer->context) ==
		    FREERDP_ERROR_CONNECT_TRANSPORT_FAILED)
			rdp_peer_end(s, "the client disconnected");
		else
			rdp_peer_end(s, "sending the screen failed");
		return;
	}
	if (sent == 1 && rfb->ndamage > 0) {
		rfb->ndamage = 0;
		s->stats.frames++;
		if (s->keyt != 0) {
			uint64_t	lat = rdp_peer_ms() - s->keyt;

			s->keysum += lat;
			s->keyn++;
			if (lat > s->keymax)
				s->keymax = lat;
			s->keyt = 0;
		}
	}
	if (!s->requested && !s->peer->IsWriteBlocked(s->peer)) {
		if (rdp_rfb_request(rfb, 1) != 0) {
			xasprintf(&cause, "VNC connection lost: %s",
			    strerror(errno));
			rdp_peer_end(s, "%s", cause);
			free(cause);
			return;
		}
		s->requested = 1;
	}
}

/* Install the client's refresh and suppress callbacks on peer. */
void
rdp_peer_update_hook(freerdp_peer *peer)
{
	peer->update->RefreshRect = rdp_peer_update_refresh_rect;
	peer->update->SuppressOutput = rdp_peer_update_suppress_output;
}
