/*
 * rdp-fixed-client: an RDP client that cannot resize, for the gateway's
 * scaling test (tests/integration/93-rdp-scale-fixed.sh). xfreerdp always
 * announces DesktopResize and has no option to leave it out; this client
 * is FreeRDP 2's library with its software GDI, the capability off, no
 * graphics pipeline and no channels.
 *
 *   rdp-fixed-client HOST PORT USER PASSWORD
 *
 * The password is read from the environment (RDP_PASSWORD) when PASSWORD
 * is "-". Commands on stdin, one a line, each answered on stdout:
 *   shot FILE    the client's picture as a PPM  -> "shot WxH"
 *   click X Y    left click at (X, Y), client coordinates -> "click"
 *   quit
 * "connected WxH" once the session is up; exits 1 when it ends.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <freerdp/freerdp.h>
#include <freerdp/gdi/gdi.h>
#include <freerdp/graphics.h>
#include <freerdp/input.h>
#include <freerdp/settings.h>
#include <winpr/synch.h>

/* Pointer shapes are taken and not drawn (the GDI draws no pointer). */
static BOOL
fixed_pointer_new(rdpContext *context, rdpPointer *pointer)
{
	(void)context;
	(void)pointer;
	return (TRUE);
}

static void
fixed_pointer_free(rdpContext *context, rdpPointer *pointer)
{
	(void)context;
	(void)pointer;
}

static BOOL
fixed_pointer_set(rdpContext *context, const rdpPointer *pointer)
{
	(void)context;
	(void)pointer;
	return (TRUE);
}

static BOOL
fixed_pointer_none(rdpContext *context)
{
	(void)context;
	return (TRUE);
}

static BOOL
fixed_pointer_position(rdpContext *context, UINT32 x, UINT32 y)
{
	(void)context;
	(void)x;
	(void)y;
	return (TRUE);
}

/* The GDI draws into its buffer; a shot reads it between updates. */
static BOOL
fixed_paint(rdpContext *context)
{
	(void)context;
	return (TRUE);
}

static BOOL
fixed_leds(rdpContext *context, UINT16 flags)
{
	(void)context;
	(void)flags;
	return (TRUE);
}

static BOOL
fixed_ime(rdpContext *context, UINT16 id, UINT32 state, UINT32 mode)
{
	(void)context;
	(void)id;
	(void)state;
	(void)mode;
	return (TRUE);
}

static BOOL
fixed_sound(rdpContext *context, const PLAY_SOUND_UPDATE *sound)
{
	(void)context;
	(void)sound;
	return (TRUE);
}

static BOOL
fixed_post_connect(freerdp *instance)
{
	rdpPointer	pointer;

	if (!gdi_init(instance, PIXEL_FORMAT_BGRX32))
		return (FALSE);
	/* Without these FreeRDP fails the PDUs that call them. */
	instance->update->BeginPaint = fixed_paint;
	instance->update->EndPaint = fixed_paint;
	instance->update->SetKeyboardIndicators = fixed_leds;
	instance->update->SetKeyboardImeStatus = fixed_ime;
	instance->update->PlaySound = fixed_sound;
	memset(&pointer, 0, sizeof pointer);
	pointer.size = sizeof(rdpPointer);
	pointer.New = fixed_pointer_new;
	pointer.Free = fixed_pointer_free;
	pointer.Set = fixed_pointer_set;
	pointer.SetNull = fixed_pointer_none;
	pointer.SetDefault = fixed_pointer_none;
	pointer.SetPosition = fixed_pointer_position;
	graphics_register_pointer(instance->context->graphics, &pointer);
	return (TRUE);
}

/* The primary surface as a binary PPM. */
static int
fixed_shot(rdpContext *context, const char *path)
{
	rdpGdi		*gdi = context->gdi;
	FILE		*f;
	const BYTE	*row;
	INT32		 x, y;

	if (gdi == NULL || (f = fopen(path, "wb")) == NULL)
		return (-1);
	fprintf(f, "P6\n%d %d\n255\n", gdi->width, gdi->height);
	for (y = 0; y < gdi->height; y++) {
		row = gdi->primary_buffer + (size_t)y * gdi->stride;
		for (x = 0; x < gdi->width; x++) {
			fputc(row[x * 4 + 2], f);
			fputc(row[x * 4 + 1], f);
			fputc(row[x * 4 + 0], f);
		}
	}
	return (fclose(f) == 0 ? 0 : -1);
}

/* One command line; 1 to quit. */
static int
fixed_command(rdpContext *context, char *line)
{
	rdpInput	*input = context->input;
	char		 path[4096];
	int		 x, y;

	line[strcspn(line, "\r\n")] = '\0';
	if (sscanf(line, "shot %4095s", path) == 1) {
		if (fixed_shot(context, path) != 0)
			printf("shot failed\n");
		else
			printf("shot %dx%d\n", context->gdi->width,
			    context->gdi->height);
	} else if (sscanf(line, "click %d %d", &x, &y) == 2) {
		freerdp_input_send_mouse_event(input, PTR_FLAGS_MOVE, x, y);
		freerdp_input_send_mouse_event(input, PTR_FLAGS_DOWN |
		    PTR_FLAGS_BUTTON1, x, y);
		freerdp_input_send_mouse_event(input, PTR_FLAGS_BUTTON1, x, y);
		printf("click\n");
	} else if (strcmp(line, "quit") == 0)
		return (1);
	else
		printf("unknown command: %s\n", line);
	fflush(stdout);
	return (0);
}

int
main(int argc, char **argv)
{
	freerdp		*instance;
	rdpContext	*context;
	rdpSettings	*settings;
	HANDLE		 handles[MAXIMUM_WAIT_OBJECTS];
	DWORD		 n;
	struct pollfd	 pfd;
	char		 line[4200];
	const char	*password;

	if (argc != 5) {
		fprintf(stderr, "usage: rdp-fixed-client HOST PORT USER "
		    "PASSWORD\n");
		return (2);
	}
	password = strcmp(argv[4], "-") == 0 ? getenv("RDP_PASSWORD") :
	    argv[4];
	if (password == NULL) {
		fprintf(stderr, "rdp-fixed-client: RDP_PASSWORD is not set\n");
		return (2);
	}
	if ((instance = freerdp_new()) == NULL)
		return (1);
	instance->PostConnect = fixed_post_connect;
	instance->ContextSize = sizeof(rdpContext);
	if (!freerdp_context_new(instance))
		return (1);
	context = instance->context;
	settings = context->settings;
	freerdp_settings_set_string(settings, FreeRDP_ServerHostname, argv[1]);
	freerdp_settings_set_uint32(settings, FreeRDP_ServerPort,
	    (UINT32)atoi(argv[2]));
	freerdp_settings_set_string(settings, FreeRDP_Username, argv[3]);
	freerdp_settings_set_string(settings, FreeRDP_Password, password);
	freerdp_settings_set_uint32(settings, FreeRDP_ColorDepth, 32);
	/* What this client is for: no resize, whatever the server does. */
	freerdp_settings_set_bool(settings, FreeRDP_DesktopResize, FALSE);
	freerdp_settings_set_bool(settings, FreeRDP_SupportGraphicsPipeline,
	    FALSE);
	freerdp_settings_set_bool(settings, FreeRDP_SupportDisplayControl,
	    FALSE);
	freerdp_settings_set_bool(settings, FreeRDP_IgnoreCertificate, TRUE);
	freerdp_settings_set_bool(settings, FreeRDP_NlaSecurity, FALSE);
	freerdp_settings_set_bool(settings, FreeRDP_RdpSecurity, FALSE);
	freerdp_settings_set_bool(settings, FreeRDP_TlsSecurity, TRUE);
	freerdp_settings_set_bool(settings, FreeRDP_SoftwareGdi, TRUE);
	if (!freerdp_connect(instance)) {
		fprintf(stderr, "rdp-fixed-client: cannot connect: 0x%08x\n",
		    freerdp_get_last_error(context));
		return (1);
	}
	/* The size the server answered: the GDI takes it. */
	if ((UINT32)context->gdi->width != freerdp_settings_get_uint32(settings,
	    FreeRDP_DesktopWidth) || (UINT32)context->gdi->height !=
	    freerdp_settings_get_uint32(settings, FreeRDP_DesktopHeight))
		gdi_resize(context->gdi, freerdp_settings_get_uint32(settings,
		    FreeRDP_DesktopWidth), freerdp_settings_get_uint32(settings,
		    FreeRDP_DesktopHeight));
	printf("connected %dx%d\n", context->gdi->width, context->gdi->height);
	fflush(stdout);
	while (!freerdp_shall_disconnect(instance)) {
		n = freerdp_get_event_handles(context, handles,
		    MAXIMUM_WAIT_OBJECTS);
		if (n == 0)
			break;
		WaitForMultipleObjects(n, handles, FALSE, 50);
		if (!freerdp_check_event_handles(context)) {
			fprintf(stderr, "rdp-fixed-client: the connection "
			    "failed: 0x%08x\n", freerdp_get_last_error(context));
			break;
		}
		pfd = (struct pollfd){ .fd = 0, .events = POLLIN };
		if (poll(&pfd, 1, 0) == 1) {
			if (fgets(line, sizeof line, stdin) == NULL ||
			    fixed_command(context, line))
				break;
		}
	}
	fprintf(stderr, "rdp-fixed-client: session ended\n");
	freerdp_disconnect(instance);
	gdi_free(instance);
	freerdp_context_free(instance);
	freerdp_free(instance);
	return (1);
}
