/*
 * spice-probe: the SPICE link handshake of the main channel, without a
 * GUI, to tell whether a console password is accepted.
 *
 *   spice-probe HOST PORT PASSWORD [--proxy HOST:PORT [--ticket T]]
 *               [--ca FILE [--host-subject SUBJECT]]
 *               [--hold SECONDS] [--timeout SECONDS]
 *
 * With --proxy it first asks an HTTP CONNECT proxy (the broker's SPICE
 * proxy) for a tunnel to T:PORT (or HOST:PORT). With --hold it stays
 * linked for SECONDS, answering pings and acks, and fails if the server
 * cuts the session meanwhile. With --ca the port is a SPICE tls-port: the
 * probe speaks TLS (through the tunnel, if any), trusts only the
 * certificate(s) in FILE, and with --host-subject also wants that subject
 * ("CN=...", as a .vv file's host-subject=).
 *
 * Exit status: 0 accepted (and held), 1 refused (wrong or expired password,
 * or the proxy said 403), 2 any other error, 3 cut during --hold.
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

static const char	*probe_name = "spice-probe";
static SSL		*probe_ssl;	/* with --ca: all I/O goes through it */

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
	    "                   [--hold SECONDS] [--timeout SECONDS]\n");
	exit(PROBE_ERROR);
}

/* Connect to host:port with send and receive timeouts, or exit. */
static int
probe_connect(const char *host, const char *port, int timeout)
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
probe_write(int fd, const void *buf, size_t len, const char *what)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		if (probe_ssl != NULL) {
			if ((n = SSL_write(probe_ssl, p, len)) <= 0)
				probe_exit(PROBE_ERROR, "send %s: TLS error",
				    what);
		} else if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			probe_exit(PROBE_ERROR, "send %s: %s", what,
			    strerror(errno));
		}
		p += n;
		len -= n;
	}
}

/* Read exactly len bytes; 0 on success, -1 on EOF (errno 0) or error. */
static int
probe_read(int fd, void *buf, size_t len)
{
	char	*p = buf;
	ssize_t	 n;

	while (len > 0) {
		if (probe_ssl != NULL) {
			if ((n = SSL_read(probe_ssl, p, len)) <= 0) {
				errno = 0;
				return (-1);
			}
		} else if ((n = read(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		if (n == 0) {
			errno = 0;
			return (-1);
		}
		p += n;
		len -= n;
	}
	return (0);
}

static void
probe_read_or_exit(int fd, void *buf, size_t len, const char *what)
{
	if (probe_read(fd, buf, len) == -1)
		probe_exit(PROBE_ERROR, "reading %s: %s", what,
		    errno == 0 ? "connection closed" : strerror(errno));
}

/* Ask the HTTP proxy for a tunnel to target; exit unless it says 200. */
static void
probe_proxy_connect(int fd, const char *target)
{
	char	 req[1024], resp[4096];
	size_t	 len = 0;
	int	 code;

	if ((size_t)snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\n"
	    "Host: %s\r\nUser-Agent: spice-probe\r\n\r\n", target, target) >=
	    sizeof req)
		probe_exit(PROBE_ERROR, "proxy target too long");
	probe_write(fd, req, strlen(req), "CONNECT");
	/* Byte by byte: what follows the header belongs to SPICE. */
	while (len < sizeof resp - 1) {
		if (probe_read(fd, resp + len, 1) == -1) {
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

static int	probe_mini;	/* both sides use the mini data header */
static uint64_t	probe_serial;

/* Send one data message on the main channel. */
static void
probe_send_msg(int fd, uint16_t type, const void *body, uint32_t size)
{
	SpiceMiniDataHeader	mh;
	SpiceDataHeader		h;

	if (probe_mini) {
		mh.type = htole16(type);
		mh.size = htole32(size);
		probe_write(fd, &mh, sizeof mh, "message");
	} else {
		h.serial = htole64(++probe_serial);
		h.type = htole16(type);
		h.size = htole32(size);
		h.sub_list = 0;
		probe_write(fd, &h, sizeof h, "message");
	}
	if (size > 0)
		probe_write(fd, body, size, "message");
}

/*
 * Stay linked for a while, as a quiet client would: answer pings and
 * acknowledge messages so the server has no reason to drop us. Returns
 * PROBE_OK when the time is up, PROBE_CUT when the server hung up.
 */
static int
probe_hold(int fd, int seconds)
{
	struct timespec	 start, now;
	struct pollfd	 pfd = { fd, POLLIN, 0 };
	unsigned char	*body = NULL;
	uint32_t	 size, window = 0, unacked = 0, gen;
	uint16_t	 type;
	double		 left, held;
	int		 n;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		held = (now.tv_sec - start.tv_sec) +
		    (now.tv_nsec - start.tv_nsec) / 1e9;
		left = seconds - held;
		if (left <= 0)
			break;
		if (probe_ssl != NULL && SSL_pending(probe_ssl) > 0)
			n = 1;
		else
			n = poll(&pfd, 1, (int)(left * 1000) + 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		if (probe_mini) {
			SpiceMiniDataHeader	mh;

			if (probe_read(fd, &mh, sizeof mh) == -1)
				goto cut;
			type = le16toh(mh.type);
			size = le32toh(mh.size);
		} else {
			SpiceDataHeader		h;

			if (probe_read(fd, &h, sizeof h) == -1)
				goto cut;
			type = le16toh(h.type);
			size = le32toh(h.size);
		}
		if (size > 64 * 1024 * 1024)
			probe_exit(PROBE_ERROR, "message of %u bytes", size);
		free(body);
		if ((body = malloc(size + 1)) == NULL)
			probe_exit(PROBE_ERROR, "out of memory");
		if (size > 0 && probe_read(fd, body, size) == -1)
			goto cut;
		switch (type) {
		case SPICE_MSG_SET_ACK:
			if (size >= 8) {
				memcpy(&gen, body, 4);
				memcpy(&window, body + 4, 4);
				window = le32toh(window);
				probe_send_msg(fd, SPICE_MSGC_ACK_SYNC, &gen,
				    4);
			}
			unacked = 0;
			continue;
		case SPICE_MSG_PING:
			/* Echo id and timestamp; drop the padding. */
			if (size >= 12)
				probe_send_msg(fd, SPICE_MSGC_PONG, body, 12);
			break;
		case SPICE_MSG_DISCONNECTING:
			goto cut;
		}
		if (window > 0 && ++unacked >= window) {
			probe_send_msg(fd, SPICE_MSGC_ACK, NULL, 0);
			unacked = 0;
		}
	}
	free(body);
	printf("held the session for %d s\n", seconds);
	return (PROBE_OK);

cut:
	free(body);
	clock_gettime(CLOCK_MONOTONIC, &now);
	held = (now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) /
	    1e9;
	fprintf(stderr, "%s: the server cut the session after %.1f s of %d\n",
	    probe_name, held, seconds);
	return (PROBE_CUT);
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
probe_tls_exit(const char *what)
{
	char		 buf[256] = "unknown error";
	unsigned long	 e;
	long		 v;

	if (probe_ssl != NULL &&
	    (v = SSL_get_verify_result(probe_ssl)) != X509_V_OK)
		probe_exit(PROBE_ERROR, "%s: certificate not trusted: %s",
		    what, X509_verify_cert_error_string(v));
	if ((e = ERR_peek_last_error()) != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	probe_exit(PROBE_ERROR, "%s: %s", what, buf);
}

/*
 * TLS over fd (a socket, or a tunnel through the proxy), trusting only
 * the certificates in cafile, as a viewer given ca= does; with subject,
 * the server's certificate must carry exactly that subject.
 */
static void
probe_tls(int fd, const char *cafile, const char *subject)
{
	SSL_CTX		*ctx;
	X509		*x;
	BIO		*bio;
	char		*p, got[512];
	long		 len;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		probe_tls_exit("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1)
		probe_tls_exit(cafile);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if ((probe_ssl = SSL_new(ctx)) == NULL ||
	    SSL_set_fd(probe_ssl, fd) != 1)
		probe_tls_exit("SSL_new");
	if (SSL_connect(probe_ssl) != 1)
		probe_tls_exit("TLS handshake");
	if (subject == NULL)
		return;
	if ((x = SSL_get1_peer_certificate(probe_ssl)) == NULL)
		probe_exit(PROBE_ERROR, "the server sent no certificate");
	bio = BIO_new(BIO_s_mem());
	X509_NAME_print_ex(bio, X509_get_subject_name(x), 0,
	    XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	len = BIO_get_mem_data(bio, &p);
	snprintf(got, sizeof got, "%.*s", (int)(len > 0 ? len : 0), p);
	BIO_free(bio);
	X509_free(x);
	if (strcmp(got, subject) != 0)
		probe_exit(PROBE_ERROR, "certificate subject is \"%s\", not "
		    "\"%s\"", got, subject);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "proxy", required_argument, NULL, 'p' },
		{ "ticket", required_argument, NULL, 't' },
		{ "hold", required_argument, NULL, 'H' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "ca", required_argument, NULL, 'c' },
		{ "host-subject", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 }
	};
	struct {
		SpiceLinkHeader	h;
		SpiceLinkMess	m;
		uint32_t	caps[1];
	} __attribute__((packed)) link;
	SpiceLinkHeader		 rh;
	SpiceLinkReply		*reply;
	SpiceLinkEncryptedTicket ticket;
	uint32_t		 result, mech, ncommon, offset, scaps = 0;
	unsigned char		*rbuf;
	const char		*host, *port, *password, *proxy = NULL;
	const char		*tickethost = NULL, *cafile = NULL;
	const char		*subject = NULL;
	char			*phost, *pport, target[512];
	uint32_t		 rsize;
	int			 ch, fd, hold = 0, timeout = 10;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			proxy = optarg;
			break;
		case 't':
			tickethost = optarg;
			break;
		case 'H':
			hold = atoi(optarg);
			break;
		case 'T':
			timeout = atoi(optarg);
			break;
		case 'c':
			cafile = optarg;
			break;
		case 's':
			subject = optarg;
			break;
		default:
			probe_usage();
		}
	}
	if (argc - optind != 3 || timeout <= 0 || hold < 0 ||
	    (subject != NULL && cafile == NULL))
		probe_usage();
	host = argv[optind];
	port = argv[optind + 1];
	password = argv[optind + 2];
	if (strlen(password) > SPICE_MAX_PASSWORD_LENGTH)
		probe_exit(PROBE_ERROR, "password over %d characters",
		    SPICE_MAX_PASSWORD_LENGTH);

	if (proxy != NULL) {
		if ((phost = strdup(proxy)) == NULL ||
		    (pport = strrchr(phost, ':')) == NULL)
			probe_exit(PROBE_ERROR, "--proxy wants HOST:PORT");
		*pport++ = '\0';
		fd = probe_connect(phost, pport, timeout);
		snprintf(target, sizeof target, "%s:%s",
		    tickethost != NULL ? tickethost : host, port);
		probe_proxy_connect(fd, target);
		free(phost);
	} else
		fd = probe_connect(host, port, timeout);
	if (cafile != NULL)
		probe_tls(fd, cafile, subject);

	/* Link: the main channel, ticket auth, mini headers if offered. */
	memset(&link, 0, sizeof link);
	link.h.magic = htole32(SPICE_MAGIC);
	link.h.major_version = htole32(SPICE_VERSION_MAJOR);
	link.h.minor_version = htole32(SPICE_VERSION_MINOR);
	link.h.size = htole32(sizeof link.m + sizeof link.caps);
	link.m.connection_id = 0;
	link.m.channel_type = SPICE_CHANNEL_MAIN;
	link.m.channel_id = 0;
	link.m.num_common_caps = htole32(1);
	link.m.num_channel_caps = 0;
	link.m.caps_offset = htole32(sizeof link.m);
	link.caps[0] = htole32(1 << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION |
	    1 << SPICE_COMMON_CAP_AUTH_SPICE |
	    1 << SPICE_COMMON_CAP_MINI_HEADER);
	probe_write(fd, &link, sizeof link, "link message");

	probe_read_or_exit(fd, &rh, sizeof rh, "link reply header");
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
	probe_read_or_exit(fd, rbuf, rsize, "link reply");
	reply = (SpiceLinkReply *)rbuf;
	if (le32toh(reply->error) != SPICE_LINK_ERR_OK)
		probe_exit(le32toh(reply->error) ==
		    SPICE_LINK_ERR_PERMISSION_DENIED ? PROBE_REFUSED :
		    PROBE_ERROR, "link refused before the password: error %u",
		    le32toh(reply->error));
	ncommon = le32toh(reply->num_common_caps);
	offset = le32toh(reply->caps_offset);
	if (ncommon > 0 && offset + 4 <= rsize)
		memcpy(&scaps, rbuf + offset, 4);
	scaps = le32toh(scaps);
	probe_mini = (scaps & (1 << SPICE_COMMON_CAP_MINI_HEADER)) != 0;

	if (scaps & (1 << SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION)) {
		mech = htole32(SPICE_COMMON_CAP_AUTH_SPICE);
		probe_write(fd, &mech, sizeof mech, "auth mechanism");
	}
	probe_encrypt(reply->pub_key, sizeof reply->pub_key, password,
	    ticket.encrypted_data, sizeof ticket.encrypted_data);
	free(rbuf);
	probe_write(fd, &ticket, sizeof ticket, "ticket");

	probe_read_or_exit(fd, &result, sizeof result, "link result");
	result = le32toh(result);
	if (result == SPICE_LINK_ERR_PERMISSION_DENIED)
		probe_exit(PROBE_REFUSED, "password refused (permission "
		    "denied)");
	if (result != SPICE_LINK_ERR_OK)
		probe_exit(PROBE_ERROR, "link failed: error %u", result);
	printf("accepted\n");
	fflush(stdout);
	if (hold > 0)
		return (probe_hold(fd, hold));
	close(fd);
	return (PROBE_OK);
}
