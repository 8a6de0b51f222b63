/*
 * The client's input, to the VNC side: scancodes as QEMU extended key
 * events (rdp-input.c maps them), unicode as keysyms, lock keys synced
 * to the guest's LEDs, the pointer scaled from the RDP desktop to the
 * guest's framebuffer. A key press starts the key-to-screen clock that
 * rdp-peer-update.c stops.
 */
#include <stdint.h>

#include <freerdp/freerdp.h>
#include <freerdp/input.h>
#include <freerdp/peer.h>
#include <freerdp/settings.h>

#include "compat.h"
#include "rdp-peer.h"
#include "rdp-scale.h"

/* A key as its raw scancode (QEMU extended key event). */
static BOOL
rdp_peer_input_keyboard(rdpInput *input, UINT16 flags, UINT16 code)
{
	struct rdp_session	*s = rdp_peer_session(input->context);
	uint32_t		 qnum;
	int			 down;

	if (s->rfb == NULL)
		return (TRUE);
	qnum = rdp_input_qnum(&s->input, flags, code, &down);
	if (qnum == 0)
		return (TRUE);
	if (s->follow != NULL) {
		rdp_follow_key(s->follow, down, rdp_input_keysym(qnum), qnum);
		return (TRUE);
	}
	if (down && s->keyt == 0)
		s->keyt = rdp_peer_ms();
	/* With extended keys QEMU needs no keysym (and LED state is on). */
	if (rdp_rfb_key(s->rfb, down, s->rfb->extkey ? 0 :
	    rdp_input_keysym(qnum), qnum) != 0)
		rdp_peer_end(s, "VNC connection lost sending a key");
	return (TRUE);
}

/* Unicode input (on-screen keyboards, IMEs): keysyms, QEMU maps them. */
static BOOL
rdp_peer_input_unicode(rdpInput *input, UINT16 flags, UINT16 code)
{
	struct rdp_session	*s = rdp_peer_session(input->context);
	uint32_t		 keysym;

	if (s->rfb == NULL)
		return (TRUE);
	keysym = code < 0x100 ? code : 0x01000000U | code;
	if (s->follow != NULL) {
		rdp_follow_key(s->follow, !(flags & KBD_FLAGS_RELEASE), keysym,
		    0);
		return (TRUE);
	}
	if (rdp_rfb_key(s->rfb, !(flags & KBD_FLAGS_RELEASE), keysym, 0) != 0)
		rdp_peer_end(s, "VNC connection lost sending a key");
	return (TRUE);
}

/*
 * Lock keys: on focus the client says which locks are on; when the
 * guest's LEDs (QEMU's LED state) differ, tap the key in the guest.
 */
static BOOL
rdp_peer_input_synchronize(rdpInput *input, UINT32 flags)
{
	struct rdp_session	*s = rdp_peer_session(input->context);
	static const struct {
		UINT32		flag;
		int		led;
		uint32_t	qnum;
	} locks[] = {
		{ KBD_SYNC_SCROLL_LOCK, 1, 0x46 },
		{ KBD_SYNC_NUM_LOCK, 2, 0x45 },
		{ KBD_SYNC_CAPS_LOCK, 4, 0x3a },
	};
	size_t			 i;

	/* No stream (the desktop moves): the next focus syncs again. */
	if (s->rfb == NULL || s->follow != NULL || !s->rfb->ledstate ||
	    !s->rfb->extkey)
		return (TRUE);
	for (i = 0; i < nitems(locks); i++) {
		if (!!(flags & locks[i].flag) == !!(s->rfb->leds &
		    locks[i].led))
			continue;
		if (rdp_rfb_key(s->rfb, 1, 0, locks[i].qnum) != 0 ||
		    rdp_rfb_key(s->rfb, 0, 0, locks[i].qnum) != 0) {
			rdp_peer_end(s, "VNC connection lost sending a key");
			break;
		}
	}
	return (TRUE);
}

/* The pointer, scaled from the RDP desktop to the guest's framebuffer. */
static void
rdp_peer_input_pointer(struct rdp_session *s, int mask, UINT16 x, UINT16 y)
{
	rdpSettings	*settings = s->peer->settings;
	int		 fx, fy;

	if (s->scaled != NULL)	/* the guest's picture inside bars */
		rdp_scale_point(&s->scaled->sc, x, y, &fx, &fy);
	else {
		fx = rdp_input_scale(x, settings->DesktopWidth, s->rfb->width);
		fy = rdp_input_scale(y, settings->DesktopHeight,
		    s->rfb->height);
	}
	if (s->follow != NULL) {
		rdp_follow_pointer(s->follow, mask, fx, fy);
		return;
	}
	if (rdp_rfb_pointer(s->rfb, mask, fx, fy) != 0)
		rdp_peer_end(s, "VNC connection lost sending the pointer");
}

/* Buttons, motion and wheel, as absolute RFB pointer events. */
static BOOL
rdp_peer_input_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
	struct rdp_session	*s = rdp_peer_session(input->context);
	int			 mask, wheel;

	if (s->rfb == NULL)
		return (TRUE);
	mask = rdp_input_mouse(&s->input, flags, &wheel);
	if (wheel != 0) {
		/* Wheel events carry no position: click where we are. */
		rdp_peer_input_pointer(s, mask | wheel, s->input.x, s->input.y);
		rdp_peer_input_pointer(s, mask, s->input.x, s->input.y);
		return (TRUE);
	}
	s->input.x = x;
	s->input.y = y;
	rdp_peer_input_pointer(s, mask, x, y);
	return (TRUE);
}

static BOOL
rdp_peer_input_xmouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
	struct rdp_session	*s = rdp_peer_session(input->context);

	if (s->rfb == NULL)
		return (TRUE);
	s->input.x = x;
	s->input.y = y;
	rdp_peer_input_pointer(s, s->input.buttons, x, y);
	return (TRUE);
}

/* Install the input callbacks on peer. */
void
rdp_peer_input_hook(freerdp_peer *peer)
{
	peer->input->KeyboardEvent = rdp_peer_input_keyboard;
	peer->input->UnicodeKeyboardEvent = rdp_peer_input_unicode;
	peer->input->SynchronizeEvent = rdp_peer_input_synchronize;
	peer->input->MouseEvent = rdp_peer_input_mouse;
	peer->input->ExtendedMouseEvent = rdp_peer_input_xmouse;
}
