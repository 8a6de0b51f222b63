/*
 * The refresh nudge: a client message, sent with each update request
 * that follows an update, that keeps QEMU's VNC refresh at 30 ms while
 * frames flow.
 *
 * QEMU 7.2's VNC refresh is adaptive (ui/vnc.c, vnc_refresh): a refresh
 * that sends nothing (the screen unchanged, the VNC worker still busy
 * with the last update, no request pending) adds 50 ms to its 30 ms
 * interval, up to 3 s, and only a refresh that sends halves it again;
 * protocol_client_msg puts it back to 30 ms on any client message of a
 * type above 3. Measured on a VM without SPICE (-device VGA, where the
 * VNC server's interval is the display's; `-trace console_refresh`, a
 * client that asks for the next update as each one comes): the interval
 * wandered over 30-165 ms; with this nudge it stayed at 30, 80 or 130.
 * With SPICE on, its display listener keeps the common refresh timer at
 * 30 ms anyway (ui/console.c, gui_update takes the shortest interval of
 * all listeners), and the nudge changes nothing.
 *
 * The message is QEMU's extended key event (255, subtype 0) releasing
 * key number 0, which maps to no key: QEMU's keyboard state
 * (ui/kbd-state.c, qkbd_state_key_event) drops the release of a key that
 * is not down before any device sees it, and the gateway never presses
 * key 0 (rdp_rfb_key sends extended keys only with a scancode), so the
 * guest sees nothing. Chosen over the alternatives because each of them
 * reaches the guest: a repeated PointerEvent is a USB tablet report a
 * frame (and needs a position the client sent), an empty ClientCutText
 * empties the guest's clipboard, SetDesktopSize asks the guest to
 * resize, QEMU's audio messages start or stop the capture.
 * QDESK_RDP_VNC_NUDGE=0 in the broker's environment turns it off, for
 * the A/B in bench/transport/README.md.
 */
#include <string.h>

#include "rdp-int.h"

/*
 * The nudge into buf (12 bytes) when it is due (pure): after an update
 * (frames flow; never on an idle screen, where QEMU may back off as it
 * likes) and only to a server that acknowledged QEMU's extended key
 * events, so it parses message 255. Returns its length, or 0.
 */
size_t
rdp_rfb_nudge(const struct rdp_rfb *rfb, int after_update, unsigned char *buf)
{
	if (!after_update || !rfb->extkey || rfb->nudge_off)
		return (0);
	memset(buf, 0, RDP_RFB_NUDGE_LEN);
	buf[0] = 255;		/* QEMU client message */
	buf[1] = 0;		/* extended key event; down-flag 0: a release */
	/* keysym 0, key number 0: no key */
	return (RDP_RFB_NUDGE_LEN);
}
