/*
 * spice-probe: a SPICE client without a GUI, for tests and benchmarks:
 * the link handshake of the main channel, to tell whether a console
 * password is accepted, and optionally a display channel whose traffic
 * it counts.
 *
 *   spice-probe HOST PORT PASSWORD [--proxy HOST:PORT [--ticket T]]
 *               [--ca FILE [--host-subject SUBJECT]]
 *               [--hold SECONDS | --display SECONDS | --channels]
 *               [--timeout SECONDS] [--bind ADDR]
 *
 * With --proxy it first asks an HTTP CONNECT proxy (the broker's SPICE
 * proxy) for a tunnel to T:PORT (or HOST:PORT). With --hold it stays
 * linked for SECONDS, answering pings and acks, and fails if the server
 * cuts the session meanwhile. With --ca the port is a SPICE tls-port: the
 * probe speaks TLS (through the tunnel, if any), trusts only the
 * certificate(s) in FILE, and with --host-subject also wants that subject
 * ("CN=...", as a .vv file's host-subject=). With --bind its connections
 * come from that local address (another loopback address, say).
 *
 * With --display it also links the display channel, as a viewer would
 * (display init, ack windows), and for SECONDS counts what the server
 * sends: bytes, draw and video-stream messages, and frames, a frame being
 * a burst of updates with no gap over PROBE_FRAME_GAP_MS inside (QEMU
 * sends each screen refresh as one such burst). It decodes nothing.
 *
 * With --channels it asks the main channel for the session's channel list
 * (ATTACH_CHANNELS, then CHANNELS_LIST) and prints one line per channel,
 * "channel NAME ID" (main, display, inputs, cursor, playback, record,
 * usbredir, port, webdav, ...), as a viewer learns what it may link.
 *
 * Exit status: 0 accepted (and held), 1 refused (wrong or expired password,
 * or the proxy said 403), 2 any other error, 3 cut during --hold or
 * --display.
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <endian.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spice/protocol.h>

#define PROBE_OK	0
#define PROBE_REFUSED	1
#define PROBE_ERROR	2
#define PROBE_CUT	3

#define PROBE_FRAME_GAP_MS	8	/* updates closer than this: one frame */
#define PROBE_MAX_MSG		(64 * 1024 * 1024)

/* How to reach the server, the same for every channel. */
struct probe_opts {
	const char	*host;
	const char	*port;
	const char	*password;
	const char	*proxy;		/* HOST:PORT or NULL */
	const char	*tickethost;	/* CONNECT target host, or NULL */
	const char	*cafile;	/* TLS when set */
	const char	*subject;
	const char	*bind;		/* local address, or NULL */
	int		 timeout;
};

/* One channel's connection. */
struct probe_chan {
	const char	*name;
	int		 fd;
	SSL		*ssl;		/* with --ca */
	int		 mini;		/* both sides use the mini data header */
	uint64_t	 serial;
	uint32_t	 window;	/* ack every window messages (SET_ACK) */
	uint32_t	 unacked;
	uint64_t	 bytes;		/* received after the link */
};

static const char	*probe_name = "spice-probe";

static void __attribute__((noreturn, format(printf, 2, 3)))
probe_exit(int status, const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "%s: ", probe_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static void __attribute__((noreturn))
probe_usage(void)
{
	fprintf(stderr, "usage: spice-probe HOST PORT PASSWORD "
	    "[--proxy HOST:PORT [--ticket T]]\n"
	    "                   [--ca FILE [--host-subject SUBJECT]]\n"
	    "                   [--hold SECONDS | --display SECONDS | "
	    "--channels] [--timeout SECONDS]\n"
	    "                   [--bind ADDR]\n");
	exit(PROBE_ERROR);
}

static double
probe_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

/* Bind fd to the numeric local address addr (any port), or exit. */
static void
probe_bind(int fd, int family, const char *addr)
{
	struct addrinfo	 hints, *res;
	int		 error;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
	if ((error = getaddrinfo(addr, "0", &hints, &res)) != 0)
		probe_exit(PROBE_ERROR, "--bind %s: %s", addr,
		    gai_strerror(error));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1)
		probe_exit(PROBE_ERROR, "--bind %s: %s", addr, strerror(errno));
	freeaddrinfo(res);
}

/*
 * Connect to host:port (from local address local, unless NULL) with send
 * and receive timeouts, or exit.
 */
static int
probe_connect(const char *host, const char *port, const char *local,
    int timeout)
{
	struct addrinfo	 hints, *res, *ai;
	struct timeval	 tv = { timeout, 0 };
	int		 fd = -1, error;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((error = getaddrinfo(host, port, &hints, &res)) != 0)
		probe_exit(PROBE_ERROR, "%s: %s", host, gai_strerror(error));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		if (local != NULL)
			probe_bind(fd, ai->ai_family, local);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		error = errno;
		close(fd);
		fd = -1;
		errno = error;
	}
	freeaddrinfo(res);
	if (fd == -1)
		probe_exit(PROBE_ERROR, "connect %s port %s: %s", host, port,
		    strerror(errno));
	return (fd);
}

static void
probe_write(struct probe_chan *c, const void *buf, size_t len,
    const char *what)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		if (c->ssl != NULL) {
			if ((n = SSL_write(c->ssl, p, len)) <= 0)
				probe_exit(PROBE_ERROR, "%s: send %s: TLS "
				    "error", c->name, what);
		} else if ((n = write(c->fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			probe_exit(PROBE_ERROR, "%s: send %s: %s", c->name,
			    what, strerror(errno));
		}
		p += n;
		len -= n;
	}
}

/* Read exactly len bytes; 0 on success, -1 on EOF (errno 0) or error. */
static int
probe_read(struct probe_chan *c, void *buf, size_t len)
{
	char	*p = buf;
	ssize_t	 n;

	while (len > 0) {
		if (c->ssl != NULL) {
			if ((n = SSL_read(c->ssl, p, len)) <= 0) {
				errno = 0;
				return (-1);
			}
		} else if ((n = read(c->fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		} else if (n == 0) {
			errno = 0;
			return (-1);
		}
		p += n;
		len -= n;
	}
	return (0);
}

static void
probe_read_or_exit(struct probe_chan *c, void *buf, size_t len,
    const char *what)
{
	if (probe_read(c, buf, len) == -1)
		probe_exit(PROBE_ERROR, "%s: reading %s: %s", c->name, what,
		    errno == 0 ? "connection closed" : strerror(errno));
}

/* Is a message waiting, in TLS's buffer or on the socket? */
static int
probe_readable(struct probe_chan *c)
{
	struct pollfd	pfd = { c->fd, POLLIN, 0 };

	if (c->ssl != NULL && SSL_pending(c->ssl) > 0)
		return (1);
	return (poll(&pfd, 1, 0) > 0);
}

/* Ask the HTTP proxy for a tunnel to target; exit unless it says 200. */
static void
probe_proxy_connect(struct probe_chan *c, const char *target)
{
	char	 req[1024], resp[4096];
	size_t	 len = 0;
	int	 code;

	if ((size_t)snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\n"
	    "Host: %s\r\nUser-Agent: spice-probe\r\n\r\n", target, target) >=
	    sizeof req)
		probe_exit(PROBE_ERROR, "proxy target too long");
	probe_write(c, req, strlen(req), "CONNECT");
	/* Byte by byte: what follows the header belongs to SPICE. */
	while (len < sizeof resp - 1) {
		if (probe_read(c, resp + len, 1) == -1) {
			resp[len] = '\0';
			if (len == 0)
				probe_exit(PROBE_ERROR, "proxy closed the "
				    "connection without a reply");
			break;
		}
		len++;
		resp[len] = '\0';
		if (len >= 4 && memcmp(resp + len - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
		probe_exit(PROBE_ERROR, "proxy: not an HTTP reply: %.80s",
		    resp);
	resp[strcspn(resp, "\r\n")] = '\0';
	if (code == 403 || code == 407)
		probe_exit(PROBE_REFUSED, "proxy refused the tunnel: %s", resp);
	if (code != 200)
		probe_exit(PROBE_ERROR, "proxy: %s", resp);
}

/* Encrypt the password (with its NUL, as SPICE clients do) for the key. */
static void
probe_encrypt(const uint8_t *der, size_t derlen, const char *password,
    unsigned char *out, size_t outlen)
{
	const unsigned char	*p = der;
	EVP_PKEY		*pkey;
	EVP_PKEY_CTX		*ctx;
	size_t			 len = outlen;

	if ((pkey = d2i_PUBKEY(NULL, &p, derlen)) == NULL)
		probe_exit(PROBE_ERROR, "the server's public key is not a "
		    "DER SubjectPublicKeyInfo");
	if (EVP_PKEY_get_size(pkey) != (int)outlen)
		probe_exit(PROBE_ERROR, "server key is %d bytes, not %zu",
		    EVP_PKEY_get_size(pkey), outlen);
	if ((ctx = EVP_PKEY_CTX_new(pkey, NULL)) == NULL ||
	    EVP_PKEY_encrypt_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()) <= 0 ||
	    EVP_PKEY_encrypt(ctx, out, &len, (const unsigned char *)password,
	    strlen(password) + 1) <= 0 || len != outlen)
		probe_exit(PROBE_ERROR, "RSA-OAEP encryption failed");
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
}

/* Verify failures and other TLS errors as one line. */
static void __attribute__((noreturn))
probe_tls_exit(SSL *ssl, const char *what)
{
	char		 buf[256] = "unknown error";
	unsigned long	 e;
	long		 v;

	if (ssl != NULL && (v = SSL_get_verify_result(ssl)) != X509_V_OK)
		probe_exit(PROBE_ERROR, "%s: certificate not trusted: %s",
		    what, X509_verify_cert_error_string(v));
	if ((e = ERR_peek_last_error()) != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	probe_exit(PROBE_ERROR, "%s: %s", what, buf);
}

/*
 * TLS over the channel's socket (or tunnel through the proxy), trusting
 * only the certificates in cafile, as a viewer given ca= does; with
 * subject, the server's certificate must carry exactly that subject.
 */
static void
probe_tls(struct probe_chan *c, const char *cafile, const char *subject)
{
	static SSL_CTX	*ctx;
	X509		*x;
	BIO		*bio;
	char		*p, got[512];
	long		 len;

	if (ctx == NULL) {
		if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
			probe_tls_exit(NULL, "SSL_CTX_new");
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1)
			probe_tls_exit(NULL, cafile);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if ((c->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		probe_tls_exit(NULL, "SSL_new");
	if (SSL_connect(c->ssl) != 1)
		probe_tls_exit(c->ssl, "TLS handshake");
	if (subject == NULL)
		return;
	if ((x = SSL_get1_peer_certificate(c->ssl)) == NULL)
		probe_exit(PROBE_ERROR, "the server sent no certificate");
	bio = BIO_new(BIO_s_mem());
	X509_NAME_print_ex(bio, X509_get_subject_name(x), 0,
	    XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV & ~ASN1_STRFLGS_ESC_MSB);
	len = BIO_get_mem_data(bio, &p);
	snprintf(got, sizeof got, "%.*s", (int)(len > 0 ? len : 0), p);
	BIO_free(bio);
	X509_free(x);
	if (strcmp(got, subject) != 0)
		probe_exit(PROBE_ERROR, "certificate subject is \"%s\", not "
		    "\"%s\"", got, subject);
}

/* A connection for one channel: direct or tunnelled, plain or TLS. */
static void
probe_dial(struct probe_chan *c, const char *name,
    const struct probe_opts *o)
{
	char	*phost, *pport, target[512];

	memset(c, 0, sizeof *c);
	c->name = name;
	if (o->proxy != NULL) {
		if ((phost = strdup(o->proxy)) == NULL ||
		    (pport = strrchr(phost, ':')) == NULL)
			probe_exit(PROBE_ERROR, "--proxy wants HOST:PORT");
		*pport++ = '\0';
		c->fd = probe_connect(phost, pport, o->bind, o->timeout);
		snprintf(target, sizeof target, "%s:%s",
		    o->tickethost != NULL ? o->tickethost : o->host, o->port);
		probe_proxy_connect(c, target);
		free(phost);
	} else
		c->fd = probe_connect(o->host, o->port, o->bind, o->timeout);
	if (o->cafile != NULL)
		probe_tls(c, o->cafile, o->subject);
}

/*
 * Link the channel: the link message with our capabilities, the server's
 * public key, the password encrypted with it, the result. Exits with
 * PROBE_REFUSED when the password is refused.
 */
static void
probe_link(struct probe_chan *c, uint8_t type, uint32_t connection_id,
    const char *password)
{
	struct {
		SpiceLinkHeader	h;
		SpiceLinkMess	m;
		uint32_t	caps[1];
	} __attribute__((packed)) link;
	SpiceLinkHeader		 rh;
	SpiceLinkReply		*reply;
	SpiceLinkEncryptedTicket ticket;
	uint32_t		 result, mech, ncommon, offset, scaps = 0;
	uint32_t		 rsize;
	unsigned char		*rbuf;

	memset(&link, 0, sizeof link);
	link.h.magic = htole32(SPICE_MAGIC);
	link.h.major_version = htole32(SPICE_VERSION_MAJOR);
	link.h.minor_version = htole32(SPICE_VERSION_MINOR);
	link.h.size = htole32(sizeof link.m + sizeof link.caps);
	link.m.connection_id = htole32(connection_id);
	link.m.channel_type = type;
	link.m.channel_id = 0;
	link.m.num_common_caps = htole32(1);
	link.m.num_channel_caps = 0;
	link.m.caps_offset = htole32(sizeof link.m);
	link.caps[0] = htole32(1 << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION |
	    1 << SPICE_COMMON_CAP_AUTH_SPICE |
	    1 << SPICE_COMMON_CAP_MINI_HEADER);
	probe_write(c, &link, sizeof link, "link message");

	probe_read_or_exit(c, &rh, sizeof rh, "link reply header");
	if (le32toh(rh.magic) != SPICE_MAGIC)
		probe_exit(PROBE_ERROR, "not a SPICE server (bad magic)");
	if (le32toh(rh.major_version) != SPICE_VERSION_MAJOR)
		probe_exit(PROBE_ERROR, "SPICE protocol %u, wanted %d",
		    le32toh(rh.major_version), SPICE_VERSION_MAJOR);
	rsize = le32toh(rh.size);
	if (rsize < sizeof *reply || rsize > 4096)
		probe_exit(PROBE_ERROR, "link reply of %u bytes", rsize);
	if ((rbuf = calloc(1, rsize)) == NULL)
		probe_exit(PROBE_ERROR, "out of memory");
	probe_read_or_exit(c, rbuf, rsize, "link reply");
	reply = (SpiceLinkReply *)rbuf;
	if (le32toh(reply->error) != SPICE_LINK_ERR_OK)
		probe_exit(le32toh(reply->error) ==
		    SPICE_LINK_ERR_PERMISSION_DENIED ? PROBE_REFUSED :
		    PROBE_ERROR, "%s: link refused before the password: "
		    "error %u", c->name, le32toh(reply->error));
	ncommon = le32toh(reply->num_common_caps);
	offset = le32toh(reply->caps_offset);
	if (ncommon > 0 && offset + 4 <= rsize)
		memcpy(&scaps, rbuf + offset, 4);
	scaps = le32toh(scaps);
	c->mini = (scaps & (1 << SPICE_COMMON_CAP_MINI_HEADER)) != 0;

	if (scaps & (1 << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION)) {
		mech = htole32(SPICE_COMMON_CAP_AUTH_SPICE);
		probe_write(c, &mech, sizeof mech, "auth mechanism");
	}
	probe_encrypt(reply->pub_key, sizeof reply->pub_key, password,
	    ticket.encrypted_data, sizeof ticket.encrypted_data);
	free(rbuf);
	probe_write(c, &ticket, sizeof ticket, "ticket");

	probe_read_or_exit(c, &result, sizeof result, "link result");
	result = le32toh(result);
	if (result == SPICE_LINK_ERR_PERMISSION_DENIED)
		probe_exit(PROBE_REFUSED, "password refused (permission "
		    "denied)");
	if (result != SPICE_LINK_ERR_OK)
		probe_exit(PROBE_ERROR, "%s: link failed: error %u", c->name,
		    result);
}

/* Send one data message. */
static void
probe_send_msg(struct probe_chan *c, uint16_t type, const void *body,
    uint32_t size)
{
	SpiceMiniDataHeader	mh;
	SpiceDataHeader		h;

	if (c->mini) {
		mh.type = htole16(type);
		mh.size = htole32(size);
		probe_write(c, &mh, sizeof mh, "message");
	} else {
		h.serial = htole64(++c->serial);
		h.type = htole16(type);
		h.size = htole32(size);
		h.sub_list = 0;
		probe_write(c, &h, sizeof h, "message");
	}
	if (size > 0)
		probe_write(c, body, size, "message");
}

/*
 * Receive one message into *body (malloc'd, freed by the caller) and do
 * what any client must: answer SET_ACK and PING, acknowledge every
 * window messages. Returns -1 when the server hung up or said goodbye.
 */
static int
probe_recv(struct probe_chan *c, uint16_t *type, unsigned char **body,
    uint32_t *size)
{
	SpiceMiniDataHeader	mh;
	SpiceDataHeader		h;
	uint32_t		gen;

	*body = NULL;
	if (c->mini) {
		if (probe_read(c, &mh, sizeof mh) == -1)
			return (-1);
		*type = le16toh(mh.type);
		*size = le32toh(mh.size);
		c->bytes += sizeof mh;
	} else {
		if (probe_read(c, &h, sizeof h) == -1)
			return (-1);
		*type = le16toh(h.type);
		*size = le32toh(h.size);
		c->bytes += sizeof h;
	}
	if (*size > PROBE_MAX_MSG)
		probe_exit(PROBE_ERROR, "%s: message of %u bytes", c->name,
		    *size);
	if ((*body = malloc(*size + 1)) == NULL)
		probe_exit(PROBE_ERROR, "out of memory");
	if (*size > 0 && probe_read(c, *body, *size) == -1) {
		free(*body);
		*body = NULL;
		return (-1);
	}
	c->bytes += *size;
	switch (*type) {
	case SPICE_MSG_SET_ACK:
		if (*size >= 8) {
			memcpy(&gen, *body, 4);
			memcpy(&c->window, *body + 4, 4);
			c->window = le32toh(c->window);
			probe_send_msg(c, SPICE_MSGC_ACK_SYNC, &gen, 4);
		}
		c->unacked = 0;
		return (0);
	case SPICE_MSG_PING:
		/* Echo id and timestamp; drop the padding. */
		if (*size >= 12)
			probe_send_msg(c, SPICE_MSGC_PONG, *body, 12);
		break;
	case SPICE_MSG_DISCONNECTING:
		free(*body);
		*body = NULL;
		return (-1);
	}
	if (c->window > 0 && ++c->unacked >= c->window) {
		probe_send_msg(c, SPICE_MSGC_ACK, NULL, 0);
		c->unacked = 0;
	}
	return (0);
}

static int
probe_cut(struct probe_chan *c, double start, int seconds)
{
	fprintf(stderr, "%s: the server cut the %s channel after %.1f s of "
	    "%d\n", probe_name, c->name, probe_now() - start, seconds);
	return (PROBE_CUT);
}

/*
 * Stay linked for a while, as a quiet client would. Returns PROBE_OK when
 * the time is up, PROBE_CUT when the server hung up.
 */
static int
probe_hold(struct probe_chan *c, int seconds)
{
	struct pollfd	 pfd = { c->fd, POLLIN, 0 };
	unsigned char	*body;
	uint32_t	 size;
	uint16_t	 type;
	double		 start = probe_now(), left;

	while ((left = start + seconds - probe_now()) > 0) {
		if (!probe_readable(c) &&
		    poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		if (probe_recv(c, &type, &body, &size) == -1)
			return (probe_cut(c, start, seconds));
		free(body);
	}
	printf("held the session for %d s\n", seconds);
	return (PROBE_OK);
}

/* What the display channel brought in. */
struct probe_count {
	uint64_t	 draws;		/* DRAW_* messages */
	uint64_t	 streams;	/* video STREAM_DATA messages */
	uint64_t	 frames;	/* bursts of either */
	uint32_t	 width, height;	/* the primary surface */
	double		 last;		/* time of the last update */
};

static void
probe_count_msg(struct probe_count *n, uint16_t type,
    const unsigned char *body, uint32_t size, double now)
{
	uint32_t	v[3];
	int		update = 0;

	if (type >= SPICE_MSG_DISPLAY_DRAW_FILL &&
	    type <= SPICE_MSG_DISPLAY_DRAW_ALPHA_BLEND) {
		n->draws++;
		update = 1;
	} else if (type == SPICE_MSG_DISPLAY_DRAW_COMPOSITE) {
		n->draws++;
		update = 1;
	} else if (type == SPICE_MSG_DISPLAY_STREAM_DATA ||
	    type == SPICE_MSG_DISPLAY_STREAM_DATA_SIZED) {
		n->streams++;
		update = 1;
	} else if (type == SPICE_MSG_DISPLAY_SURFACE_CREATE && size >= 12) {
		/* surface_id, width, height, ...: surface 0 is the screen. */
		memcpy(v, body, 12);
		if (le32toh(v[0]) == 0) {
			n->width = le32toh(v[1]);
			n->height = le32toh(v[2]);
		}
	}
	if (update) {
		if (n->last == 0 || (now - n->last) * 1000 > PROBE_FRAME_GAP_MS)
			n->frames++;
		n->last = now;
	}
}

/*
 * The display channel, as a viewer links it: after the main channel's
 * INIT gives the session id, link with it, send DISPLAY_INIT (cache
 * sizes a viewer would announce), then count for seconds. The main
 * channel is served meanwhile (pings, acks).
 */
static int
probe_display(struct probe_chan *mc, const struct probe_opts *o,
    int seconds)
{
	struct probe_chan	 dc;
	struct probe_count	 n;
	struct pollfd		 pfd[2];
	struct __attribute__((packed)) {
		uint8_t		pixmap_cache_id;
		int64_t		pixmap_cache_size;
		uint8_t		glz_dictionary_id;
		int32_t		glz_dictionary_window_size;
	} init;
	unsigned char		*body;
	uint32_t		 size, session = 0;
	uint16_t		 type;
	uint64_t		 base;
	double			 start, deadline, left, took;
	int			 got = 0, i;

	/* The main channel's INIT: its first field is the session id. */
	deadline = probe_now() + o->timeout;
	while (!got) {
		if ((left = deadline - probe_now()) <= 0)
			probe_exit(PROBE_ERROR, "no MAIN_INIT within %d s",
			    o->timeout);
		pfd[0].fd = mc->fd;
		pfd[0].events = POLLIN;
		if (!probe_readable(mc) &&
		    poll(pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		if (probe_recv(mc, &type, &body, &size) == -1)
			probe_exit(PROBE_CUT, "main channel closed before "
			    "MAIN_INIT");
		if (type == SPICE_MSG_MAIN_INIT && size >= 4) {
			memcpy(&session, body, 4);
			session = le32toh(session);
			got = 1;
		}
		free(body);
	}

	probe_dial(&dc, "display", o);
	probe_link(&dc, SPICE_CHANNEL_DISPLAY, session, o->password);
	memset(&init, 0, sizeof init);
	init.pixmap_cache_id = 1;
	init.pixmap_cache_size = htole64(20 * 1024 * 1024);
	init.glz_dictionary_id = 1;
	init.glz_dictionary_window_size = htole32(4 * 1024 * 1024);
	probe_send_msg(&dc, SPICE_MSGC_DISPLAY_INIT, &init, sizeof init);

	memset(&n, 0, sizeof n);
	base = dc.bytes;
	start = probe_now();
	while ((left = start + seconds - probe_now()) > 0) {
		pfd[0].fd = mc->fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = dc.fd;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if (!probe_readable(mc) && !probe_readable(&dc) &&
		    poll(pfd, 2, (int)(left * 1000) + 1) <= 0)
			continue;
		for (i = 0; i < 16 && probe_readable(mc); i++) {
			if (probe_recv(mc, &type, &body, &size) == -1)
				return (probe_cut(mc, start, seconds));
			free(body);
		}
		for (i = 0; i < 64 && probe_readable(&dc); i++) {
			if (probe_recv(&dc, &type, &body, &size) == -1)
				return (probe_cut(&dc, start, seconds));
			probe_count_msg(&n, type, body, size, probe_now());
			free(body);
		}
	}
	took = probe_now() - start;
	printf("display %ux%u: %.1f s, %llu frames (%.1f/s), %llu draws, "
	    "%llu stream frames, %llu bytes (%.0f KiB/s)\n", n.width,
	    n.height, took, (unsigned long long)n.frames, n.frames / took,
	    (unsigned long long)n.draws, (unsigned long long)n.streams,
	    (unsigned long long)(dc.bytes - base),
	    (dc.bytes - base) / took / 1024);
	return (PROBE_OK);
}

/* SPICE's channel types by number, as spice-protocol's enums name them. */
static const char *
probe_channel_name(unsigned int type)
{
	static const char *names[] = {
		[SPICE_CHANNEL_MAIN] = "main",
		[SPICE_CHANNEL_DISPLAY] = "display",
		[SPICE_CHANNEL_INPUTS] = "inputs",
		[SPICE_CHANNEL_CURSOR] = "cursor",
		[SPICE_CHANNEL_PLAYBACK] = "playback",
		[SPICE_CHANNEL_RECORD] = "record",
		[SPICE_CHANNEL_TUNNEL] = "tunnel",
		[SPICE_CHANNEL_SMARTCARD] = "smartcard",
		[SPICE_CHANNEL_USBREDIR] = "usbredir",
		[SPICE_CHANNEL_PORT] = "port",
		[SPICE_CHANNEL_WEBDAV] = "webdav",
	};

	if (type < sizeof names / sizeof names[0] && names[type] != NULL)
		return (names[type]);
	return ("unknown");
}

/*
 * The session's channel list: ATTACH_CHANNELS on the main channel, then
 * CHANNELS_LIST (a count, then a type and an id byte per channel), one
 * line printed per channel.
 */
static int
probe_channels(struct probe_chan *mc, const struct probe_opts *o)
{
	struct pollfd	 pfd;
	unsigned char	*body;
	uint32_t	 size, n, i;
	uint16_t	 type;
	double		 deadline, left;

	probe_send_msg(mc, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
	deadline = probe_now() + o->timeout;
	for (;;) {
		if ((left = deadline - probe_now()) <= 0)
			probe_exit(PROBE_ERROR, "no CHANNELS_LIST within %d s",
			    o->timeout);
		pfd.fd = mc->fd;
		pfd.events = POLLIN;
		if (!probe_readable(mc) &&
		    poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		if (probe_recv(mc, &type, &body, &size) == -1)
			probe_exit(PROBE_CUT, "main channel closed before "
			    "CHANNELS_LIST");
		if (type == SPICE_MSG_MAIN_CHANNELS_LIST)
			break;
		free(body);
	}
	if (size < 4)
		probe_exit(PROBE_ERROR, "CHANNELS_LIST of %u bytes", size);
	memcpy(&n, body, 4);
	n = le32toh(n);
	if (n > (size - 4) / 2)
		probe_exit(PROBE_ERROR, "CHANNELS_LIST says %u channels in %u "
		    "bytes", n, size);
	for (i = 0; i < n; i++)
		printf("channel %s %u\n", probe_channel_name(body[4 + 2 * i]),
		    body[5 + 2 * i]);
	free(body);
	return (PROBE_OK);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "proxy", required_argument, NULL, 'p' },
		{ "ticket", required_argument, NULL, 't' },
		{ "hold", required_argument, NULL, 'H' },
		{ "display", required_argument, NULL, 'D' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "ca", required_argument, NULL, 'c' },
		{ "host-subject", required_argument, NULL, 's' },
		{ "channels", no_argument, NULL, 'C' },
		{ "bind", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 }
	};
	struct probe_opts	 o;
	struct probe_chan	 mc;
	int			 ch, hold = 0, display = 0, channels = 0;

	memset(&o, 0, sizeof o);
	o.timeout = 10;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			o.proxy = optarg;
			break;
		case 't':
			o.tickethost = optarg;
			break;
		case 'H':
			hold = atoi(optarg);
			break;
		case 'D':
			display = atoi(optarg);
			break;
		case 'T':
			o.timeout = atoi(optarg);
			break;
		case 'c':
			o.cafile = optarg;
			break;
		case 's':
			o.subject = optarg;
			break;
		case 'C':
			channels = 1;
			break;
		case 'b':
			o.bind = optarg;
			break;
		default:
			probe_usage();
		}
	}
	if (argc - optind != 3 || o.timeout <= 0 || hold < 0 || display < 0 ||
	    (hold > 0) + (display > 0) + channels > 1 ||
	    (o.subject != NULL && o.cafile == NULL))
		probe_usage();
	o.host = argv[optind];
	o.port = argv[optind + 1];
	o.password = argv[optind + 2];
	if (strlen(o.password) > SPICE_MAX_PASSWORD_LENGTH)
		probe_exit(PROBE_ERROR, "password over %d characters",
		    SPICE_MAX_PASSWORD_LENGTH);

	probe_dial(&mc, "main", &o);
	probe_link(&mc, SPICE_CHANNEL_MAIN, 0, o.password);
	printf("accepted\n");
	fflush(stdout);
	if (hold > 0)
		return (probe_hold(&mc, hold));
	if (display > 0)
		return (probe_display(&mc, &o, display));
	if (channels)
		return (probe_channels(&mc, &o));
	close(mc.fd);
	return (PROBE_OK);
}
