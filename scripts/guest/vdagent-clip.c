/*
 * qdesk-clip: the clipboard half of a SPICE guest agent, for the tiny test
 * guests (no X, so no spice-vdagent; real desktops run spice-vdagent).
 * It speaks the real vdagent protocol (spice-protocol's vd_agent.h: chunk
 * headers, VDAgentMessage, ANNOUNCE_CAPABILITIES, CLIPBOARD_GRAB, _REQUEST,
 * CLIPBOARD) on the virtio-serial port com.redhat.spice.0, where QEMU's
 * qemu-vdagent chardev (clipboard=on) is the peer.
 *
 *   qdesk-clip daemon     hold the port; print "QDESK CLIP GOT <text>" when
 *                         the host's clipboard arrives (it asks for it as
 *                         soon as the host grabs), serve our text on request
 *   qdesk-clip set TEXT   make TEXT the guest's clipboard (through the
 *                         daemon's FIFO, /run/qdesk-clip)
 *
 * Built static by scripts/mkguest. Text only (UTF-8), at most 1 MiB, as
 * QEMU's own vdagent buffer.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <spice/vd_agent.h>

#define CLIP_PORT	"com.redhat.spice.0"
#define CLIP_FIFO	"/run/qdesk-clip"
#define CLIP_MAX	(1024 * 1024)
#define CLIP_CHUNK	2048		/* as spice-vdagent's VD_AGENT_MAX_DATA_SIZE */

static int	 port = -1;
static char	*text;			/* ours, while we own the clipboard */
static size_t	 textlen;

static void
die(const char *what)
{
	fprintf(stderr, "qdesk-clip: %s: %s\n", what, strerror(errno));
	exit(1);
}

/*
 * Write it all; 0, or -1 when fd took nothing for a second. The port is
 * non-blocking: with SPICE's agent channel (spicevmc) and no viewer, or
 * no reader at all, nobody reads it, and a blocked write would hold the
 * guest's shutdown up.
 */
static int
writeall(int fd, const void *buf, size_t len)
{
	struct pollfd	 pfd = { .fd = fd, .events = POLLOUT };
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			if (poll(&pfd, 1, 1000) <= 0)
				return (-1);
			continue;
		}
		if (n <= 0)
			die("write");
		p += n;
		len -= n;
	}
	return (0);
}

/* One message, cut in chunks for the host port (VDP_CLIENT_PORT). */
static void
sendmsg_vd(uint32_t type, const void *d1, size_t l1, const void *d2,
    size_t l2)
{
	VDAgentMessage	 m;
	VDIChunkHeader	 c;
	unsigned char	*buf;
	size_t		 len, off, n;

	len = sizeof m + l1 + l2;
	if ((buf = malloc(len)) == NULL)
		die("malloc");
	memset(&m, 0, sizeof m);
	m.protocol = VD_AGENT_PROTOCOL;
	m.type = type;
	m.size = l1 + l2;
	memcpy(buf, &m, sizeof m);
	if (l1 > 0)
		memcpy(buf + sizeof m, d1, l1);
	if (l2 > 0)
		memcpy(buf + sizeof m + l1, d2, l2);
	for (off = 0; off < len; off += n) {
		n = len - off > CLIP_CHUNK ? CLIP_CHUNK : len - off;
		c.port = VDP_CLIENT_PORT;
		c.size = n;
		if (writeall(port, &c, sizeof c) != 0 ||
		    writeall(port, buf + off, n) != 0) {
			fprintf(stderr, "qdesk-clip: nobody reads the port, "
			    "message dropped\n");
			break;
		}
	}
	free(buf);
}

static void
send_caps(int request)
{
	uint32_t	caps[2];

	caps[0] = request;
	caps[1] = 1U << VD_AGENT_CAP_CLIPBOARD_BY_DEMAND;
	sendmsg_vd(VD_AGENT_ANNOUNCE_CAPABILITIES, caps, sizeof caps, NULL, 0);
}

/* The text as one line: newlines shown as \n, other controls as '?'. */
static void
print_text(const char *what, const unsigned char *p, size_t len)
{
	size_t	i;

	while (len > 0 && p[len - 1] == '\0')
		len--;
	printf("QDESK CLIP %s ", what);
	for (i = 0; i < len; i++) {
		if (p[i] == '\n')
			fputs("\\n", stdout);
		else if (p[i] < 0x20 || p[i] == 0x7f)
			putchar('?');
		else
			putchar(p[i]);
	}
	printf(" (%zu bytes)\n", len);
	fflush(stdout);
}

/* A whole message from the host. */
static void
handle(uint32_t type, const unsigned char *d, size_t len)
{
	uint32_t	t, i;

	switch (type) {
	case VD_AGENT_ANNOUNCE_CAPABILITIES:
		if (len >= 4 && d[0] != 0)
			send_caps(0);
		break;
	case VD_AGENT_CLIPBOARD_GRAB:
		/* The host has new text: ask for it at once, to print it. */
		free(text);
		text = NULL;
		for (i = 0; i + 4 <= len; i += 4) {
			memcpy(&t, d + i, 4);
			if (t == VD_AGENT_CLIPBOARD_UTF8_TEXT) {
				sendmsg_vd(VD_AGENT_CLIPBOARD_REQUEST, &t, 4,
				    NULL, 0);
				break;
			}
		}
		break;
	case VD_AGENT_CLIPBOARD:
		if (len < 4)
			break;
		memcpy(&t, d, 4);
		if (t == VD_AGENT_CLIPBOARD_UTF8_TEXT)
			print_text("GOT", d + 4, len - 4);
		break;
	case VD_AGENT_CLIPBOARD_REQUEST:
		t = VD_AGENT_CLIPBOARD_UTF8_TEXT;
		sendmsg_vd(VD_AGENT_CLIPBOARD, &t, 4, text,
		    text != NULL ? textlen : 0);
		printf("QDESK CLIP SENT %zu bytes\n", text != NULL ?
		    textlen : (size_t)0);
		fflush(stdout);
		break;
	case VD_AGENT_CLIPBOARD_RELEASE:
		break;
	}
}

/* Find /dev/vportNpM named com.redhat.spice.0 (no udev here). */
static int
open_port(void)
{
	DIR		*dir;
	struct dirent	*de;
	char		 path[512], name[64];
	FILE		*f;
	int		 fd = -1;

	if ((dir = opendir("/sys/class/virtio-ports")) == NULL)
		die("/sys/class/virtio-ports");
	while (fd == -1 && (de = readdir(dir)) != NULL) {
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name",
		    de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(name, sizeof name, f) != NULL &&
		    (name[strcspn(name, "\n")] = '\0',
		    strcmp(name, CLIP_PORT) == 0)) {
			snprintf(path, sizeof path, "/dev/%s", de->d_name);
			fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		}
		fclose(f);
	}
	closedir(dir);
	if (fd == -1) {
		fprintf(stderr, "qdesk-clip: no port named %s\n", CLIP_PORT);
		exit(1);
	}
	return (fd);
}

static int
daemon_main(void)
{
	static unsigned char	 in[65536], line[65536];
	struct pollfd		 pfd[2];
	unsigned char		*msg = NULL;
	size_t			 inlen = 0, linelen = 0, msglen = 0, msgsize = 0;
	VDIChunkHeader		 c;
	VDAgentMessage		 m;
	ssize_t			 n;
	int			 fifo;

	port = open_port();
	unlink(CLIP_FIFO);
	if (mkfifo(CLIP_FIFO, 0600) == -1)
		die(CLIP_FIFO);
	/* O_RDWR: the FIFO never reports EOF between writers. */
	if ((fifo = open(CLIP_FIFO, O_RDWR | O_CLOEXEC)) == -1)
		die(CLIP_FIFO);
	send_caps(1);
	printf("QDESK CLIP UP\n");
	fflush(stdout);

	for (;;) {
		pfd[0].fd = port;
		pfd[0].events = POLLIN;
		pfd[1].fd = fifo;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (pfd[1].revents & POLLIN) {
			n = read(fifo, line + linelen, sizeof line - linelen);
			if (n > 0)
				linelen += n;
			/* One line a text; its newline is not part of it. */
			while (linelen > 0) {
				unsigned char *nl = memchr(line, '\n', linelen);
				size_t l;

				if (nl == NULL) {
					if (linelen == sizeof line)
						linelen = 0;
					break;
				}
				l = nl - line;
				free(text);
				textlen = l;
				if ((text = malloc(l + 1)) == NULL)
					die("malloc");
				memcpy(text, line, l);
				text[l] = '\0';
				memmove(line, nl + 1, linelen - l - 1);
				linelen -= l + 1;
				{
					uint32_t t = VD_AGENT_CLIPBOARD_UTF8_TEXT;

					sendmsg_vd(VD_AGENT_CLIPBOARD_GRAB, &t,
					    4, NULL, 0);
				}
				print_text("SET", (unsigned char *)text,
				    textlen);
			}
		}
		if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(port, in + inlen, sizeof in - inlen);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			/* The host side is closed: wait for it. */
			usleep(100000);
			continue;
		}
		inlen += n;
		/* Chunks: header, then size bytes of a message. */
		while (inlen >= sizeof c) {
			memcpy(&c, in, sizeof c);
			if (c.size > sizeof in - sizeof c) {
				fprintf(stderr, "qdesk-clip: chunk of %u bytes\n",
				    c.size);
				exit(1);
			}
			if (inlen < sizeof c + c.size)
				break;
			if (msglen + c.size > msgsize) {
				msgsize = msglen + c.size;
				if ((msg = realloc(msg, msgsize)) == NULL)
					die("realloc");
			}
			memcpy(msg + msglen, in + sizeof c, c.size);
			msglen += c.size;
			memmove(in, in + sizeof c + c.size,
			    inlen - sizeof c - c.size);
			inlen -= sizeof c + c.size;
			if (msglen < sizeof m)
				continue;
			memcpy(&m, msg, sizeof m);
			if (m.size > CLIP_MAX) {
				fprintf(stderr, "qdesk-clip: message of %u "
				    "bytes\n", m.size);
				exit(1);
			}
			if (msglen < sizeof m + m.size)
				continue;
			handle(m.type, msg + sizeof m, m.size);
			msglen = 0;
		}
	}
}

int
main(int argc, char **argv)
{
	int	fd, i;

	if (argc == 2 && strcmp(argv[1], "daemon") == 0)
		return (daemon_main());
	if (argc >= 3 && strcmp(argv[1], "set") == 0) {
		if ((fd = open(CLIP_FIFO, O_WRONLY | O_NONBLOCK)) == -1)
			die(CLIP_FIFO " (is qdesk-clip daemon running?)");
		for (i = 2; i < argc; i++)
			if ((i > 2 && writeall(fd, " ", 1) != 0) ||
			    writeall(fd, argv[i], strlen(argv[i])) != 0)
				die(CLIP_FIFO);
		if (writeall(fd, "\n", 1) != 0)
			die(CLIP_FIFO);
		close(fd);
		return (0);
	}
	fprintf(stderr, "usage: qdesk-clip daemon | qdesk-clip set TEXT...\n");
	return (2);
}
