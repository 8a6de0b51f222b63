/*
 * Proxy tickets, in the manner of Proxmox's spiceproxy: the .vv file's
 * host is not a real host but a signed statement "VM, on this port, until
 * then", which the CONNECT proxy checks before it opens any connection.
 * Pure: key and clock come from the caller.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "broker.h"
#include "names.h"
#include "xmalloc.h"

#define TICKET_PREFIX	"qdesk-"
#define TICKET_MACLEN	32

/* Is name a valid VM name? */
static int
ticket_name_ok(const char *name)
{
	char	*cause = NULL;

	if (names_valid(name, "VM", &cause) == 0)
		return (1);
	free(cause);
	return (0);
}

/* The MAC binds all three fields; NULs keep them apart. */
static void
ticket_mac(const unsigned char *key, size_t keylen, const char *vm,
    int port, long long expires, unsigned char mac[TICKET_MACLEN])
{
	char		 msg[256];
	unsigned int	 maclen = TICKET_MACLEN;
	int		 n;

	n = snprintf(msg, sizeof msg, "qdesk-spice-ticket%c%s%c%d%c%lld",
	    '\0', vm, '\0', port, '\0', expires);
	HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)msg, (size_t)n,
	    mac, &maclen);
}

/* Write the ticket for vm, port and expiry into buf; -1 if it won't fit. */
int
ticket_make(const unsigned char *key, size_t keylen, const char *vm,
    int port, time_t expires, char *buf, size_t len)
{
	unsigned char	 mac[TICKET_MACLEN];
	char		 hex[TICKET_MACLEN * 2 + 1];
	size_t		 i;
	int		 n;

	if (!ticket_name_ok(vm))
		return (-1);
	ticket_mac(key, keylen, vm, port, (long long)expires, mac);
	for (i = 0; i < sizeof mac; i++)
		snprintf(hex + i * 2, 3, "%02x", mac[i]);
	n = snprintf(buf, len, TICKET_PREFIX "%s-%lld-%s", vm,
	    (long long)expires, hex);
	explicit_bzero(mac, sizeof mac);
	return (n < 0 || (size_t)n >= len ? -1 : 0);
}

static int
ticket_unhex(const char *s, unsigned char *out, size_t outlen)
{
	size_t	i;
	int	hi, lo;

	if (strlen(s) != outlen * 2)
		return (-1);
	for (i = 0; i < outlen; i++) {
		hi = tolower((unsigned char)s[i * 2]);
		lo = tolower((unsigned char)s[i * 2 + 1]);
		if (!isxdigit(hi) || !isxdigit(lo))
			return (-1);
		hi = isdigit(hi) ? hi - '0' : hi - 'a' + 10;
		lo = isdigit(lo) ? lo - '0' : lo - 'a' + 10;
		out[i] = hi << 4 | lo;
	}
	return (0);
}

/*
 * Check a ticket against the port asked for and the clock. Returns 0 and
 * the VM's name, or -1 with a cause for the log (never for the client: a
 * refused client learns only "403").
 */
int
ticket_verify(const unsigned char *key, size_t keylen, const char *ticket,
    int port, time_t now, char *vm, size_t vmlen, char **cause)
{
	unsigned char	 want[TICKET_MACLEN], got[TICKET_MACLEN];
	char		 buf[TICKET_MAX], *dash, *macp, *expp, *end;
	long long	 expires;
	int		 ok;

	if (strlen(ticket) >= sizeof buf ||
	    strncmp(ticket, TICKET_PREFIX, strlen(TICKET_PREFIX)) != 0) {
		xasprintf(cause, "not a qdesk ticket");
		return (-1);
	}
	strlcpy(buf, ticket + strlen(TICKET_PREFIX), sizeof buf);
	if ((dash = strrchr(buf, '-')) == NULL)
		goto malformed;
	*dash = '\0';
	macp = dash + 1;
	if ((dash = strrchr(buf, '-')) == NULL)
		goto malformed;
	*dash = '\0';
	expp = dash + 1;
	if (*expp == '\0' || !isdigit((unsigned char)*expp))
		goto malformed;
	expires = strtoll(expp, &end, 10);
	if (*end != '\0' || !ticket_name_ok(buf) ||
	    ticket_unhex(macp, got, sizeof got) != 0)
		goto malformed;

	ticket_mac(key, keylen, buf, port, expires, want);
	ok = CRYPTO_memcmp(want, got, sizeof want) == 0;
	explicit_bzero(want, sizeof want);
	if (!ok) {
		xasprintf(cause, "bad signature (forged, from an earlier "
		    "broker, or for another port than %d)", port);
		return (-1);
	}
	if ((long long)now > expires + TICKET_SKEW) {
		xasprintf(cause, "ticket for %s expired %lld s ago", buf,
		    (long long)now - expires);
		return (-1);
	}
	if (strlcpy(vm, buf, vmlen) >= vmlen) {
		xasprintf(cause, "VM name too long");
		return (-1);
	}
	return (0);

malformed:
	xasprintf(cause, "malformed ticket");
	return (-1);
}
