/*
 * Unit tests of the broker's pure pieces: proxy tickets (made, checked,
 * forged, expired, moved to another port or VM), the .vv file, the
 * small HTTP parsers, the login throttle and the connection limits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "broker.h"

static const unsigned char key[32] = "0123456789abcdef0123456789abcde";
static const unsigned char key2[32] = "another key, another broker....";

/*
 * ticket_verify refuses ticket for port at now with key k, with a cause
 * that contains want (when not NULL).
 */
static void
ticket_refused(const unsigned char *k, const char *ticket, int port,
    time_t now, const char *want)
{
	char	vm[64], *cause = NULL;

	CHECK(ticket_verify(k, 32, ticket, port, now, vm, sizeof vm,
	    &cause) == -1);
	CHECK(cause != NULL);
	if (want != NULL)
		CHECK(cause != NULL && strstr(cause, want) != NULL);
	free(cause);
}

static void
test_ticket(void)
{
	char	 t[TICKET_MAX], t2[TICKET_MAX], vm[64], *cause = NULL;
	time_t	 now = 1700000000;

	CHECK(ticket_make(key, sizeof key, "desk-1", 5901, now + 60, t,
	    sizeof t) == 0);
	CHECK(strncmp(t, "qdesk-desk-1-1700000060-", 24) == 0);
	CHECK(strlen(t) == 24 + 64);

	/* Good within its time and the skew after it. */
	CHECK(ticket_verify(key, sizeof key, t, 5901, now, vm, sizeof vm,
	    &cause) == 0);
	CHECK_STR(vm, "desk-1");
	CHECK(ticket_verify(key, sizeof key, t, 5901, now + 60 + TICKET_SKEW,
	    vm, sizeof vm, &cause) == 0);

	/* Expired. */
	ticket_refused(key, t, 5901, now + 61 + TICKET_SKEW, "expired");

	/* Another port: the signature no longer matches. */
	ticket_refused(key, t, 5902, now, NULL);

	/* Another broker's key. */
	ticket_refused(key2, t, 5901, now, NULL);

	/* Another VM's name with this VM's signature. */
	strlcpy(t2, t, sizeof t2);
	memcpy(t2 + strlen("qdesk-desk-"), "2", 1);
	ticket_refused(key, t2, 5901, now, NULL);

	/* A later expiry with the old signature. */
	strlcpy(t2, t, sizeof t2);
	memcpy(t2 + strlen("qdesk-desk-1-"), "2", 1);
	ticket_refused(key, t2, 5901, now, NULL);

	/* A flipped MAC digit, upper case is the same MAC. */
	strlcpy(t2, t, sizeof t2);
	t2[strlen(t2) - 1] = t2[strlen(t2) - 1] == '0' ? '1' : '0';
	ticket_refused(key, t2, 5901, now, NULL);

	/* Malformed ones. */
	{
		const char *bad[] = { "", "qdesk-", "qdesk--1-00",
		    "127.0.0.1", "qdesk-desk-1-abc-00", "qdesk-Desk-1-5-00",
		    "pvespiceproxy:x:y", "qdesk-desk-1--5-00", NULL };
		int i;

		for (i = 0; bad[i] != NULL; i++)
			ticket_refused(key, bad[i], 5901, now, NULL);
	}

	/* Bad names are not signed at all; a tiny buffer is refused. */
	CHECK(ticket_make(key, sizeof key, "Bad Name", 5901, now, t,
	    sizeof t) == -1);
	CHECK(ticket_make(key, sizeof key, "d", 5901, now, t, 10) == -1);
}

static void
test_vv(void)
{
	struct vv	 vv;
	char		*text, *cause = NULL;

	memset(&vv, 0, sizeof vv);
	vv.host = "qdesk-d1-1-ab";
	vv.port = 5901;
	vv.password = "pw";
	vv.title = "d1 (qdesk)";
	vv.proxy = "http://broker:3128";

	text = vv_build(&vv, &cause);
	CHECK(text != NULL);
	CHECK(strncmp(text, "[virt-viewer]\ntype=spice\n", 25) == 0);
	CHECK(strstr(text, "\nhost=qdesk-d1-1-ab\n") != NULL);
	CHECK(strstr(text, "\nport=5901\n") != NULL);
	CHECK(strstr(text, "\npassword=pw\n") != NULL);
	CHECK(strstr(text, "\ntitle=d1 (qdesk)\n") != NULL);
	CHECK(strstr(text, "\ndelete-this-file=1\n") != NULL);
	CHECK(strstr(text, "\nsecure-attention=ctrl+alt+end\n") != NULL);
	CHECK(strstr(text, "\ntoggle-fullscreen=shift+f11\n") != NULL);
	CHECK(strstr(text, "\nrelease-cursor=shift+f12\n") != NULL);
	CHECK(strstr(text, "\nproxy=http://broker:3128\n") != NULL);
	free(text);

	vv.proxy = NULL;
	text = vv_build(&vv, &cause);
	CHECK(text != NULL && strstr(text, "proxy=") == NULL);
	free(text);

	/* A newline would let a field add keys of its own. */
	vv.title = "d1\nhost=evil";
	CHECK(vv_build(&vv, &cause) == NULL && cause != NULL);
	free(cause);
	cause = NULL;
	vv.title = "d1";
	vv.port = 0;
	CHECK(vv_build(&vv, &cause) == NULL);
	free(cause);
	cause = NULL;

	/* TLS: tls-port, the certificate on one line, its subject. */
	vv.port = 5901;
	vv.tls = 1;
	CHECK(vv_build(&vv, &cause) == NULL && cause != NULL);
	free(cause);
	cause = NULL;
	vv.ca = "-----BEGIN CERTIFICATE-----\r\nMIIB\n-----END CERTIFICATE-----\n";
	vv.host_subject = "CN=qdesk-spice-h";
	text = vv_build(&vv, &cause);
	CHECK(text != NULL);
	CHECK(strstr(text, "\ntls-port=5901\n") != NULL);
	CHECK(strstr(text, "\nport=") == NULL);
	CHECK(strstr(text, "\nca=-----BEGIN CERTIFICATE-----\\nMIIB\\n"
	    "-----END CERTIFICATE-----\\n\n") != NULL);
	CHECK(strstr(text, "\nhost-subject=CN=qdesk-spice-h\n") != NULL);
	CHECK(strstr(text, "\nsecure-channels=all\n") != NULL);
	free(text);
	vv.host_subject = "CN=x\nhost=evil";
	CHECK(vv_build(&vv, &cause) == NULL);
	free(cause);
}

static void
test_httputil(void)
{
	char	out[80], host[80], arg[16];
	int	port;

	CHECK(httputil_cookie("a=1; qdesk_session=abc; b=2", "qdesk_session",
	    out, sizeof out) == 0);
	CHECK_STR(out, "abc");
	CHECK(httputil_cookie("qdesk_session=xyz", "qdesk_session", out,
	    sizeof out) == 0);
	CHECK_STR(out, "xyz");
	CHECK(httputil_cookie("xqdesk_session=1; qdesk_sessionx=2",
	    "qdesk_session", out, sizeof out) == -1);
	CHECK(httputil_cookie("", "qdesk_session", out, sizeof out) == -1);
	CHECK(httputil_cookie("qdesk_session=0123456789", "qdesk_session",
	    out, 5) == -1);

	CHECK(httputil_hostname("broker.example:8443", out, sizeof out) == 0);
	CHECK_STR(out, "broker.example");
	CHECK(httputil_hostname("10.0.0.1", out, sizeof out) == 0);
	CHECK_STR(out, "10.0.0.1");
	CHECK(httputil_hostname("[::1]:8443", out, sizeof out) == 0);
	CHECK_STR(out, "[::1]");
	CHECK(httputil_hostname("evil\r\nx", out, sizeof out) == -1);
	CHECK(httputil_hostname("a/b", out, sizeof out) == -1);
	CHECK(httputil_hostname("host:80x", out, sizeof out) == -1);
	CHECK(httputil_hostname("", out, sizeof out) == -1);
	CHECK(httputil_hostname(":8443", out, sizeof out) == -1);

	CHECK(httputil_target("qdesk-d1-5-ab:5901", host, sizeof host,
	    &port) == 0);
	CHECK_STR(host, "qdesk-d1-5-ab");
	CHECK(port == 5901);
	CHECK(httputil_target("host:0", host, sizeof host, &port) == -1);
	CHECK(httputil_target("host:65536", host, sizeof host, &port) == -1);
	CHECK(httputil_target("host", host, sizeof host, &port) == -1);
	CHECK(httputil_target(":5901", host, sizeof host, &port) == -1);
	CHECK(httputil_target("a b:5901", host, sizeof host, &port) == -1);
	CHECK(httputil_target("host:59x1", host, sizeof host, &port) == -1);

	CHECK(httputil_match("/api/desktops/*/start", "/api/desktops/d1/start",
	    arg, sizeof arg) == 1);
	CHECK_STR(arg, "d1");
	CHECK(httputil_match("/api/desktops/*/start", "/api/desktops//start",
	    arg, sizeof arg) == 0);
	CHECK(httputil_match("/api/desktops/*/start",
	    "/api/desktops/d1/start/x", arg, sizeof arg) == 0);
	CHECK(httputil_match("/api/desktops/*/console.vv",
	    "/api/desktops/d1/console", arg, sizeof arg) == 0);
	CHECK(httputil_match("/*", "/app.js", arg, sizeof arg) == 1);
	CHECK(httputil_match("/*", "/a/b", arg, sizeof arg) == 0);
	CHECK(httputil_match("/api/desktops/*/start",
	    "/api/desktops/a-very-long-name-here/start", arg, sizeof arg) == 0);
	CHECK(httputil_match("/", "/", arg, sizeof arg) == 1);
}

static void
test_throttle(void)
{
	struct throttle	*t = throttle_create(3, 10, 2);
	int		 i;

	/* Three failures at once, then a wait of about one refill. */
	CHECK(throttle_check(t, "10.0.0.1", 100) == 0);
	for (i = 0; i < 3; i++)
		throttle_fail(t, "10.0.0.1", 100);
	CHECK(throttle_check(t, "10.0.0.1", 100) == 11);
	CHECK(throttle_check(t, "10.0.0.2", 100) == 0);
	CHECK(throttle_check(t, "10.0.0.1", 105) == 6);
	CHECK(throttle_check(t, "10.0.0.1", 110) == 0);
	throttle_fail(t, "10.0.0.1", 110);
	CHECK(throttle_check(t, "10.0.0.1", 110) > 0);
	/* Tokens cap at the burst after a long quiet. */
	CHECK(throttle_check(t, "10.0.0.1", 10000) == 0);
	for (i = 0; i < 3; i++)
		throttle_fail(t, "10.0.0.1", 10000);
	CHECK(throttle_check(t, "10.0.0.1", 10000) > 0);
	/* Past the table's size the least recent address is forgotten. */
	throttle_fail(t, "10.0.0.2", 10000);
	throttle_fail(t, "10.0.0.3", 10000);
	CHECK(throttle_check(t, "10.0.0.1", 10000) == 0);
	throttle_free(t);
	throttle_free(NULL);

	/* Attempts charged as they arrive; a success gives its token back. */
	t = throttle_create(3, 10, 8);
	for (i = 0; i < 3; i++) {
		CHECK(throttle_check(t, "10.0.0.9", 100) == 0);
		throttle_fail(t, "10.0.0.9", 100);
	}
	CHECK(throttle_check(t, "10.0.0.9", 100) > 0);
	throttle_refund(t, "10.0.0.9", 100);
	CHECK(throttle_check(t, "10.0.0.9", 100) == 0);
	/* Never above the burst, and nothing for an unknown address. */
	for (i = 0; i < 10; i++)
		throttle_refund(t, "10.0.0.9", 100);
	for (i = 0; i < 3; i++)
		throttle_fail(t, "10.0.0.9", 100);
	CHECK(throttle_check(t, "10.0.0.9", 100) > 0);
	throttle_refund(t, "10.0.0.10", 100);
	CHECK(throttle_check(t, "10.0.0.10", 100) == 0);
	throttle_free(t);
}

static void
test_connlimit(void)
{
	struct connlimit	*cl = connlimit_create(5, 3);
	char			*cause = NULL;
	int			 i;

	/* Three from one address, the fourth refused, others still in. */
	for (i = 0; i < 3; i++)
		CHECK(connlimit_add(cl, "10.0.0.1", &cause) == 0);
	CHECK(connlimit_add(cl, "10.0.0.1", &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "from this address") != NULL);
	free(cause);
	cause = NULL;
	CHECK(connlimit_add(cl, "10.0.0.2", &cause) == 0);
	CHECK(connlimit_add(cl, "10.0.0.3", &cause) == 0);
	/* Five in all: nobody else, whoever it is. */
	CHECK(connlimit_add(cl, "10.0.0.4", &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "5 connections") != NULL);
	free(cause);
	cause = NULL;
	CHECK(connlimit_count(cl, NULL) == 5);
	CHECK(connlimit_count(cl, "10.0.0.1") == 3);
	/* One ends: its address may open one again. */
	connlimit_del(cl, "10.0.0.1");
	CHECK(connlimit_count(cl, "10.0.0.1") == 2);
	CHECK(connlimit_add(cl, "10.0.0.1", &cause) == 0);
	/* Unknown addresses are ignored; emptied ones are forgotten. */
	connlimit_del(cl, "10.9.9.9");
	CHECK(connlimit_count(cl, NULL) == 5);
	connlimit_del(cl, "10.0.0.2");
	CHECK(connlimit_count(cl, "10.0.0.2") == 0);
	CHECK(connlimit_count(cl, NULL) == 4);
	connlimit_free(cl);
	connlimit_free(NULL);
}

int
main(void)
{
	test_connlimit();
	test_throttle();
	test_ticket();
	test_vv();
	test_httputil();
	return (check_exit());
}
