/*
 * etcd client tests without etcd: the pure parser on answers as the 3.4
 * gateway gives them, base64, request bodies, and the call machinery
 * against a fake gateway (an evhttp server in the same loop) behind a
 * dead endpoint: failover, "Unavailable" retries, deadlines, etcd_free.
 * tests/integration/60-etcd.sh runs the client against a real etcd.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "check.h"
#include "etcd.h"
#include "log.h"

static json_t *
parse_ok(const char *path, const char *body)
{
	json_t		*out;
	const char	*class;
	char		*cause;

	if (etcd_parse(path, body, strlen(body), &out, &class, &cause) != 0) {
		fprintf(stderr, "parse %s: %s: %s\n", path, class, cause);
		free(cause);
		return (NULL);
	}
	return (out);
}

/* Parse expecting an error of class; returns the cause (to free). */
static char *
parse_err(const char *path, const char *body, const char *want)
{
	json_t		*out;
	const char	*class;
	char		*cause;

	if (etcd_parse(path, body, strlen(body), &out, &class, &cause) == 0) {
		json_decref(out);
		CHECK(!"parse succeeded");
		return (NULL);
	}
	CHECK(out == NULL);
	CHECK_STR(class, want);
	return (cause);
}

static void
test_base64(void)
{
	const char	*v[] = { "", "a", "ab", "abc", "abcd", "{\"x\":1}",
			    "h\xc3\xa9llo" };
	char		*enc, *dec;
	size_t		 i, len;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		enc = etcd_base64_encode(v[i], strlen(v[i]));
		dec = etcd_base64_decode(enc, strlen(enc), &len);
		CHECK(dec != NULL && len == strlen(v[i]) &&
		    memcmp(dec, v[i], len) == 0);
		free(enc);
		free(dec);
	}
	enc = etcd_base64_encode("foo", 3);
	CHECK_STR(enc, "Zm9v");
	free(enc);
	enc = etcd_base64_encode("fo", 2);
	CHECK_STR(enc, "Zm8=");
	free(enc);
	/* URL-safe and unpadded forms decode too; garbage does not. */
	dec = etcd_base64_decode("Zm8", 3, &len);
	CHECK(dec != NULL && len == 2 && memcmp(dec, "fo", 2) == 0);
	free(dec);
	dec = etcd_base64_decode("-_8=", 4, &len);
	CHECK(dec != NULL && len == 2 && (unsigned char)dec[0] == 0xfb &&
	    (unsigned char)dec[1] == 0xff);
	free(dec);
	CHECK(etcd_base64_decode("Z", 1, &len) == NULL);
	CHECK(etcd_base64_decode("Zm9v!", 5, &len) == NULL);
}

static void
test_parse_range(void)
{
	json_t	*r, *kv;
	char	*cause;

	/* What etcd 3.4 sends for one key ("a" = "1"). */
	r = parse_ok("/v3/kv/range", "{\"header\":{\"cluster_id\":"
	    "\"14841639068965178418\",\"member_id\":\"10276657743932975437\","
	    "\"revision\":\"7\",\"raft_term\":\"2\"},\"kvs\":[{"
	    "\"key\":\"YQ==\",\"create_revision\":\"5\","
	    "\"mod_revision\":\"7\",\"version\":\"3\","
	    "\"value\":\"MQ==\"}],\"count\":\"1\"}");
	CHECK(r != NULL);
	CHECK(json_integer_value(json_object_get(json_object_get(r,
	    "header"), "revision")) == 7);
	CHECK(json_integer_value(json_object_get(r, "count")) == 1);
	CHECK(json_is_false(json_object_get(r, "more")));
	kv = json_array_get(json_object_get(r, "kvs"), 0);
	CHECK_STR(json_string_value(json_object_get(kv, "key")), "a");
	CHECK_STR(json_string_value(json_object_get(kv, "value")), "1");
	CHECK(json_integer_value(json_object_get(kv, "mod_revision")) == 7);
	CHECK(json_integer_value(json_object_get(kv, "lease")) == 0);
	json_decref(r);

	/* No key: the gateway leaves out kvs and count. */
	r = parse_ok("/v3/kv/range", "{\"header\":{\"revision\":\"7\"}}");
	CHECK(r != NULL && json_array_size(json_object_get(r, "kvs")) == 0);
	CHECK(json_integer_value(json_object_get(r, "count")) == 0);
	json_decref(r);

	/* An empty value is left out too. */
	r = parse_ok("/v3/kv/range", "{\"kvs\":[{\"key\":\"YQ==\"}],"
	    "\"count\":\"1\"}");
	kv = json_array_get(json_object_get(r, "kvs"), 0);
	CHECK_STR(json_string_value(json_object_get(kv, "value")), "");
	json_decref(r);

	/* Not base64, not UTF-8, a revision that is not a number. */
	cause = parse_err("/v3/kv/range", "{\"kvs\":[{\"key\":\"!!\"}]}",
	    "Protocol");
	free(cause);
	cause = parse_err("/v3/kv/range", "{\"kvs\":[{\"key\":\"/w==\"}]}",
	    "Protocol");
	free(cause);
	cause = parse_err("/v3/kv/range",
	    "{\"header\":{\"revision\":\"7x\"}}", "Protocol");
	free(cause);
	cause = parse_err("/v3/kv/range", "{\"kvs\":\"YQ==\"}", "Protocol");
	free(cause);
	cause = parse_err("/v3/kv/range", "[1]", "Protocol");
	free(cause);
	cause = parse_err("/v3/kv/range", "<html>", "Protocol");
	free(cause);
	cause = parse_err("/v3/kv/nope", "{}", "InvalidArgument");
	free(cause);
}

static void
test_parse_txn_lease_watch(void)
{
	json_t	*r, *ev;
	char	*cause;

	/* A failed CAS: no "succeeded", the failure branch's range. */
	r = parse_ok("/v3/kv/txn", "{\"header\":{\"revision\":\"9\"},"
	    "\"responses\":[{\"response_range\":{\"header\":{},\"kvs\":[{"
	    "\"key\":\"YQ==\",\"value\":\"Yg==\",\"mod_revision\":\"8\"}],"
	    "\"count\":\"1\"}}]}");
	CHECK(r != NULL && json_is_false(json_object_get(r, "succeeded")));
	CHECK_STR(json_string_value(json_object_get(json_array_get(
	    json_object_get(json_object_get(json_array_get(json_object_get(r,
	    "responses"), 0), "response_range"), "kvs"), 0), "value")), "b");
	json_decref(r);
	r = parse_ok("/v3/kv/txn", "{\"succeeded\":true,\"responses\":[{"
	    "\"response_put\":{\"header\":{\"revision\":\"10\"}}}]}");
	CHECK(r != NULL && json_is_true(json_object_get(r, "succeeded")));
	json_decref(r);

	r = parse_ok("/v3/lease/grant", "{\"header\":{},\"ID\":"
	    "\"7587862072907387917\",\"TTL\":\"5\"}");
	CHECK(r != NULL && json_integer_value(json_object_get(r, "ID")) ==
	    7587862072907387917LL);
	CHECK(json_integer_value(json_object_get(r, "TTL")) == 5);
	json_decref(r);
	/* keepalive streams: {"result": ...}; an expired lease has no TTL. */
	r = parse_ok("/v3/lease/keepalive", "{\"result\":{\"header\":{},"
	    "\"ID\":\"12\"}}\n");
	CHECK(r != NULL && json_integer_value(json_object_get(r, "TTL")) == 0);
	CHECK(json_integer_value(json_object_get(r, "ID")) == 12);
	json_decref(r);

	r = parse_ok("/v3/watch", "{\"result\":{\"header\":{\"revision\":"
	    "\"11\"},\"events\":[{\"kv\":{\"key\":\"YQ==\",\"value\":\"Yw==\","
	    "\"mod_revision\":\"11\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":"
	    "\"YQ==\",\"mod_revision\":\"12\"}}]}}");
	CHECK(r != NULL);
	ev = json_array_get(json_object_get(r, "events"), 0);
	CHECK_STR(json_string_value(json_object_get(ev, "type")), "PUT");
	CHECK_STR(json_string_value(json_object_get(json_object_get(ev,
	    "kv"), "value")), "c");
	ev = json_array_get(json_object_get(r, "events"), 1);
	CHECK_STR(json_string_value(json_object_get(ev, "type")), "DELETE");
	CHECK(json_is_false(json_object_get(r, "created")));
	json_decref(r);

	/* The two error shapes: unary and stream. */
	cause = parse_err("/v3/kv/put", "{\"error\":\"etcdserver: request "
	    "timed out\",\"code\":14,\"message\":\"etcdserver: request timed "
	    "out\"}", "Unavailable");
	CHECK_STR(cause, "etcdserver: request timed out");
	free(cause);
	cause = parse_err("/v3/lease/keepalive", "{\"error\":{\"grpc_code\":5,"
	    "\"http_code\":404,\"message\":\"etcdserver: requested lease not "
	    "found\",\"http_status\":\"Not Found\"}}", "NotFound");
	CHECK_STR(cause, "etcdserver: requested lease not found");
	free(cause);
	cause = parse_err("/v3/watch", "{\"header\":{}}", "Protocol");
	free(cause);
}

/* ---- against a fake gateway ---- */

struct fake {
	struct evhttp	*http;
	int		 port;
	int		 calls;
	int		 unavailable;	/* 503 "no leader" this often */
	int		 silent;	/* never answer */
	const char	*leader;	/* status: its "leader" (NULL: none) */
	json_t		*last;		/* the last request body */
	char		 lastpath[64];
};

struct result {
	int		 fired;
	json_t		*res;
	char		 class[64];
	char		 cause[256];
};

static void
fake_cb(struct evhttp_request *req, void *arg)
{
	struct fake	*f = arg;
	struct evbuffer	*in, *out;
	json_error_t	 jerr;

	f->calls++;
	in = evhttp_request_get_input_buffer(req);
	json_decref(f->last);
	f->last = json_loadb((const char *)evbuffer_pullup(in, -1),
	    evbuffer_get_length(in), 0, &jerr);
	snprintf(f->lastpath, sizeof f->lastpath, "%s",
	    evhttp_request_get_uri(req));
	if (f->silent)
		return;		/* hangs: the client's deadline acts */
	out = evbuffer_new();
	if (strcmp(f->lastpath, "/v3/maintenance/status") == 0) {
		/* As etcd 3.4 says it: uint64s as strings, 0 left out. */
		evbuffer_add_printf(out, "{\"header\":{\"member_id\":"
		    "\"10501334649042878790\"},\"version\":\"3.4.23\","
		    "\"dbSize\":\"20480\"%s%s%s,\"raftTerm\":\"9\"%s}",
		    f->leader != NULL ? ",\"leader\":\"" : "",
		    f->leader != NULL ? f->leader : "",
		    f->leader != NULL ? "\"" : "", f->leader == NULL ?
		    ",\"errors\":[\"etcdserver: no leader\"]" : "");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(f->lastpath, "/v3/cluster/member/list") == 0) {
		evbuffer_add_printf(out, "{\"header\":{},\"members\":["
		    "{\"ID\":\"1\",\"name\":\"m1\"},{\"ID\":\"2\"},"
		    "{\"ID\":\"3\"}]}");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (f->unavailable > 0) {
		f->unavailable--;
		evbuffer_add_printf(out, "{\"error\":\"etcdserver: no leader\","
		    "\"code\":14,\"message\":\"etcdserver: no leader\"}");
		evhttp_send_reply(req, 503, "Service Unavailable", out);
	} else {
		evbuffer_add_printf(out, "{\"header\":{\"revision\":\"%d\"},"
		    "\"kvs\":[{\"key\":\"a2V5\",\"value\":\"dmFs\"}],"
		    "\"count\":\"1\"}", 40 + f->calls);
		evhttp_send_reply(req, 200, "OK", out);
	}
	evbuffer_free(out);
}

static void
fake_start(struct event_base *base, struct fake *f)
{
	struct evhttp_bound_socket	*s;
	struct sockaddr_in		 sin;
	socklen_t			 len = sizeof sin;

	memset(f, 0, sizeof *f);
	f->http = evhttp_new(base);
	evhttp_set_gencb(f->http, fake_cb, f);
	s = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
	getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sin,
	    &len);
	f->port = ntohs(sin.sin_port);
}

/* A loopback port nothing listens on. */
static int
dead_port(void)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof sin;
	int			fd, port;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof sin);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return (port);
}

static void
result_cb(void *arg, json_t *res, const char *errclass, const char *cause)
{
	struct result	*r = arg;

	r->fired++;
	if (res != NULL)
		r->res = json_incref(res);
	if (errclass != NULL) {
		snprintf(r->class, sizeof r->class, "%s", errclass);
		snprintf(r->cause, sizeof r->cause, "%s", cause);
	}
}

static void
run_until(struct event_base *base, struct result *r)
{
	int	i;

	for (i = 0; i < 2000 && !r->fired; i++)
		event_base_loop(base, EVLOOP_ONCE);
}

static struct etcd *
client(struct event_base *base, const char *urls, int timeout_ms)
{
	struct etcd_config	 cf;
	struct etcd		*e;
	char			*cause = NULL;

	memset(&cf, 0, sizeof cf);
	cf.endpoints = urls;
	cf.timeout_ms = timeout_ms;
	e = etcd_create(base, &cf, &cause);
	CHECK(e != NULL);
	if (e == NULL)
		fprintf(stderr, "etcd_create: %s\n", cause);
	free(cause);
	return (e);
}

static void
test_fake(void)
{
	struct event_base	*base;
	struct fake		 f;
	struct etcd		*e;
	struct result		 r;
	char			 urls[128];
	json_t			*b;

	base = event_base_new();
	fake_start(base, &f);

	/* The first endpoint is down: the call fails over to the second. */
	snprintf(urls, sizeof urls, "http://127.0.0.1:%d,http://127.0.0.1:%d",
	    dead_port(), f.port);
	e = client(base, urls, 3000);
	memset(&r, 0, sizeof r);
	CHECK(etcd_get(e, "key", ETCD_PREFIX, result_cb, &r) == 0);
	CHECK(r.fired == 0);		/* never from inside the call */
	run_until(base, &r);
	CHECK(r.fired == 1 && r.class[0] == '\0');
	CHECK_STR(json_string_value(json_object_get(json_array_get(
	    json_object_get(r.res, "kvs"), 0), "value")), "val");
	json_decref(r.res);
	/* The request body: base64 key and prefix range end ("kez"). */
	CHECK_STR(f.lastpath, "/v3/kv/range");
	CHECK_STR(json_string_value(json_object_get(f.last, "key")), "a2V5");
	CHECK_STR(json_string_value(json_object_get(f.last, "range_end")),
	    "a2V6");
	/* And later calls go straight to the live one. */
	CHECK(strstr(etcd_endpoint(e), urls + strlen(urls) - 5) != NULL);

	/* "Unavailable" answers are retried until one holds. */
	f.unavailable = 3;
	f.calls = 0;
	memset(&r, 0, sizeof r);
	etcd_cas(e, "key", 0, "v", 0, result_cb, &r);
	run_until(base, &r);
	CHECK(r.fired == 1 && r.class[0] == '\0');
	CHECK(f.calls == 4);
	CHECK_STR(f.lastpath, "/v3/kv/txn");
	b = json_array_get(json_object_get(f.last, "compare"), 0);
	CHECK_STR(json_string_value(json_object_get(b, "target")), "MOD");
	CHECK(json_integer_value(json_object_get(b, "mod_revision")) == 0);
	json_decref(r.res);

	/* Always unavailable: a clear error once the deadline is past. */
	f.unavailable = 1000000;
	memset(&r, 0, sizeof r);
	etcd_put(e, "k", "v", 0, 0, result_cb, &r);
	run_until(base, &r);
	CHECK(r.fired == 1);
	CHECK_STR(r.class, "Unavailable");
	CHECK(strstr(r.cause, "no leader") != NULL);
	if (strstr(r.cause, "no leader") == NULL)
		fprintf(stderr, "cause: %s\n", r.cause);
	CHECK(strstr(r.cause, "within 3000 ms") != NULL);
	f.unavailable = 0;

	/* A server that never answers: "Timeout" at the deadline. */
	f.silent = 1;
	memset(&r, 0, sizeof r);
	etcd_put(e, "k", "v", 0, 0, result_cb, &r);
	run_until(base, &r);
	CHECK(r.fired == 1);
	CHECK_STR(r.class, "Timeout");

	/* etcd_free fires what is pending with "Cancelled". */
	memset(&r, 0, sizeof r);
	etcd_put(e, "k", "v", 0, 0, result_cb, &r);
	event_base_loop(base, EVLOOP_NONBLOCK);
	etcd_free(e);
	CHECK(r.fired == 1);
	CHECK_STR(r.class, "Cancelled");
	event_base_loop(base, EVLOOP_NONBLOCK);

	/* Many endpoints, the live one last: each dead one is passed over,
	 * and the live one's kept connections serve call after call. */
	{
		char	many[512];
		int	i, n = 0;

		many[0] = '\0';
		for (i = 0; i < 7; i++)
			n += snprintf(many + n, sizeof many - n,
			    "http://127.0.0.1:%d,", dead_port());
		snprintf(many + n, sizeof many - n, "http://127.0.0.1:%d",
		    f.port);
		f.silent = 0;
		e = client(base, many, 3000);
		for (i = 0; i < 3; i++) {
			memset(&r, 0, sizeof r);
			etcd_get(e, "key", 0, result_cb, &r);
			run_until(base, &r);
			CHECK(r.fired == 1 && r.class[0] == '\0');
			json_decref(r.res);
		}
		etcd_free(e);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}

	/* Bad configurations are refused with a reason. */
	{
		struct etcd_config	 cf;
		char			*cause = NULL;

		memset(&cf, 0, sizeof cf);
		cf.endpoints = "ftp://127.0.0.1:1";
		CHECK(etcd_create(base, &cf, &cause) == NULL);
		CHECK(cause != NULL && strstr(cause, "http(s)://") != NULL);
		free(cause);
		cf.endpoints = "http://127.0.0.1";
		CHECK(etcd_create(base, &cf, &cause) == NULL);
		free(cause);
		cf.endpoints = ",";
		CHECK(etcd_create(base, &cf, &cause) == NULL);
		free(cause);
		cf.endpoints = "http://127.0.0.1:2379";
		cf.cert = "/nonexistent";
		CHECK(etcd_create(base, &cf, &cause) == NULL);
		CHECK(cause != NULL && strstr(cause, "TLS") != NULL);
		free(cause);
		cf.endpoints = "https://127.0.0.1:2379";
		cf.cacert = "/nonexistent/ca.pem";
		cf.cert = NULL;
		CHECK(etcd_create(base, &cf, &cause) == NULL);
		CHECK(cause != NULL && strstr(cause, "/nonexistent/ca.pem"));
		free(cause);
	}

	json_decref(f.last);
	evhttp_free(f.http);
	event_base_free(base);
}

/* Does res, as text, say what? */
static int
json_says(json_t *res, const char *what)
{
	char	*s = json_dumps(res, 0);
	int	 yes = s != NULL && strstr(s, what) != NULL;

	free(s);
	return (yes);
}

/* The verdict of one probe of urls. */
static char *
probe_verdict(struct event_base *base, struct etcd *e, int ms, json_t **out)
{
	struct result	r;
	char		*v;

	memset(&r, 0, sizeof r);
	CHECK(etcd_quorum_probe(e, ms, result_cb, &r) == 0);
	CHECK(r.fired == 0);
	run_until(base, &r);
	CHECK(r.fired == 1 && r.res != NULL);
	v = strdup(r.res != NULL ? json_string_value(json_object_get(r.res,
	    "verdict")) : "");
	if (out != NULL)
		*out = r.res;
	else
		json_decref(r.res);
	return (v);
}

/*
 * The quorum probe: refused and leaderless everywhere is "none"; a
 * leader anywhere is "leader"; a member that does not answer, or a
 * client that never learned how many members etcd has, is "unknown".
 */
static void
test_probe(void)
{
	struct event_base	*base;
	struct fake		 f;
	struct etcd		*e;
	json_t			*res;
	char			 urls[256], *v;
	int			 d1 = dead_port(), d2 = dead_port();

	base = event_base_new();
	fake_start(base, &f);

	/* Three dead endpoints, members never learned: no proof. */
	snprintf(urls, sizeof urls, "http://127.0.0.1:%d,http://127.0.0.1:%d,"
	    "http://127.0.0.1:%d", d1, d2, d1);
	e = client(base, urls, 1000);
	v = probe_verdict(base, e, 1000, &res);
	CHECK_STR(v, "unknown");
	CHECK(json_says(res, "refused (no etcd there)"));
	free(v);
	json_decref(res);
	etcd_free(e);

	snprintf(urls, sizeof urls, "http://127.0.0.1:%d,http://127.0.0.1:%d,"
	    "http://127.0.0.1:%d", f.port, d1, d2);
	e = client(base, urls, 1000);
	v = probe_verdict(base, e, 1000, &res);
	CHECK_STR(v, "none");
	CHECK(json_integer_value(json_object_get(res, "answering")) == 1);
	CHECK(json_integer_value(json_object_get(res, "members")) == 3);
	CHECK(json_integer_value(json_object_get(res, "started")) <=
	    json_integer_value(json_object_get(res, "ended")));
	free(v);
	json_decref(res);

	f.leader = "10501334649042878790";
	v = probe_verdict(base, e, 1000, NULL);
	CHECK_STR(v, "leader");
	free(v);

	/* A member that hangs may be a majority's: no proof. */
	f.leader = NULL;
	f.silent = 1;
	v = probe_verdict(base, e, 300, &res);
	CHECK_STR(v, "unknown");
	CHECK(json_says(res, "no answer in time"));
	free(v);
	json_decref(res);
	etcd_free(e);
	evhttp_free(f.http);
	json_decref(f.last);
	event_base_free(base);
}

int
main(void)
{
	log_init("test-etcd", 1, 0);
	test_base64();
	test_parse_range();
	test_parse_txn_lease_watch();
	test_fake();
	test_probe();
	return (check_exit());
}
