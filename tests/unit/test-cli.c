/*
 * Unit tests of the qdesk CLI's pure parts: argv to request for several
 * commands, usage errors, the command table's consistency, base64
 * decoding, size formatting and the human printers.
 */
#include <sys/stat.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "check.h"
#include "compat.h"
#include "qdesk.h"

/* Parse "qdesk GROUP VERB words..." (words split on spaces). */
static int
parse(const char *group, const char *verb, const char *words, json_t **args,
    json_t **local, char **cause)
{
	const struct ctl_command	*ce;
	char				*copy, *argv[32], *w, *save = NULL;
	int				 argc = 0, known, r;

	*args = *local = NULL;
	*cause = NULL;
	ce = cmds_find(group, verb, &known);
	if (ce == NULL)
		return (-2);
	copy = strdup(words);
	for (w = strtok_r(copy, " ", &save); w != NULL && argc < 32;
	    w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	r = args_parse(ce, argc, argv, args, local, cause);
	free(copy);
	return (r);
}

/* Whether args equals the JSON text want. */
static int
same(json_t *args, const char *want)
{
	json_t	*w;
	char	*s;
	int	 eq;

	if ((w = json_loads(want, 0, NULL)) == NULL) {
		fprintf(stderr, "bad expected JSON: %s\n", want);
		return (0);
	}
	eq = json_equal(args, w);
	if (!eq) {
		s = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
		fprintf(stderr, "got %s\nwant %s\n", s ? s : "(null)", want);
		free(s);
	}
	json_decref(w);
	return (eq);
}

/* The cause of a parse expected to fail, or "" (freed at the next call). */
static const char *
fails(const char *group, const char *verb, const char *words)
{
	static char	*last;
	json_t		*a, *l;
	char		*cause;

	free(last);
	last = NULL;
	if (parse(group, verb, words, &a, &l, &cause) == 0) {
		json_decref(a);
		json_decref(l);
		return ("");
	}
	last = cause;
	return (cause != NULL ? cause : "");
}

/* An argv and the request (args) and CLI-side options (local) it gives. */
static const struct {
	const char	*group, *verb, *words;
	const char	*args;		/* NULL: not checked */
	const char	*local;		/* NULL: not checked */
} parse_cases[] = {
	/* Options before, between and after positionals. */
	{ "vm", "stop", "--force desk1 --timeout 30",
	    "{\"name\":\"desk1\",\"force\":true,\"timeout\":30}", NULL },
	/* Positional names map to keys, not always "name". */
	{ "vm", "template", "desk1 gold",
	    "{\"name\":\"desk1\",\"image\":\"gold\"}", NULL },
	{ "image", "clone", "gold desk1-disk",
	    "{\"parent\":\"gold\",\"name\":\"desk1-disk\"}", NULL },
	{ "desktop", "assign", "alice desk1",
	    "{\"login\":\"alice\",\"vm\":\"desk1\"}", NULL },
	{ "vm", "snapshot-rm", "desk1 before",
	    "{\"name\":\"desk1\",\"snapshot\":\"before\"}", NULL },
	{ "vm", "nic-rm", "desk1 52:54:00:00:00:01",
	    "{\"name\":\"desk1\",\"mac\":\"52:54:00:00:00:01\"}", NULL },
	{ "pool", "resize", "office 12",
	    "{\"name\":\"office\",\"size\":12}", NULL },
	{ "desktop", "list", "--user bob",
	    "{\"login\":\"bob\"}", NULL },
	{ "image", "gc", "--dry-run",
	    "{\"dry_run\":true}", NULL },
	{ "image", "verify", "",
	    "{}", NULL },
	{ "events", NULL, "--vm desk1",
	    "{\"vm\":\"desk1\"}", NULL },
	{ "pool", "create", "office --template gold --size 10 --stateless "
	    "--mode floating --net lan",
	    "{\"name\":\"office\",\"template\":\"gold\",\"size\":10,"
	    "\"stateless\":true,\"mode\":\"floating\",\"nets\":[\"lan\"]}",
	    NULL },
	/* What the CLI keeps for itself is not sent. */
	{ "vm", "screenshot", "desk1 shot.png",
	    "{\"name\":\"desk1\"}",
	    "{\"file\":\"shot.png\"}" },
	{ "vm", "console", "desk1 --follow",
	    "{\"name\":\"desk1\"}",
	    "{\"follow\":true}" },
	{ "user", "add", "alice --name Alice --admin --password-stdin",
	    "{\"login\":\"alice\",\"name\":\"Alice\",\"admin\":true}",
	    "{\"password_stdin\":true}" },
	{ "vm", "list", "--json",
	    "{}",
	    "{\"json\":true}" },
	{ "vm", "list", "--socket /tmp/q.sock",
	    "{}",
	    "{\"socket\":\"/tmp/q.sock\"}" },
	{ "vm", "show", "-- --odd",
	    "{\"name\":\"--odd\"}", NULL },
	{ "vm", "stop", "--timeout -1 desk1",
	    "{\"name\":\"desk1\",\"timeout\":-1}", NULL },
	/* --help skips the checks for missing arguments. */
	{ "net", "create", "--help",
	    NULL,
	    "{\"help\":true}" },
};

/* An argv that is a usage error, and its one-line reason. */
static const struct {
	const char	*group, *verb, *words, *cause;
} usage_errors[] = {
	{ "vm", "create", "desk1 --memory abc",
	    "--memory wants a whole number, not 'abc'" },
	{ "vm", "create", "desk1 --memory 12k",
	    "--memory wants a whole number, not '12k'" },
	{ "vm", "create", "desk1 --vcpus=",
	    "--vcpus wants a whole number, not ''" },
	{ "vm", "create", "desk1 --memory", "--memory needs a value" },
	{ "vm", "create", "desk1 --autostart=yes",
	    "--autostart takes no value" },
	{ "vm", "create", "desk1 --colour red", "unknown option --colour" },
	{ "vm", "create", "", "missing NAME" },
	{ "vm", "start", "desk1 desk2", "too many arguments: 'desk2'" },
	{ "vm", "wait", "desk1", "missing STATE" },
	{ "vm", "stop", "desk1 --timeout soon",
	    "--timeout wants a whole number, not 'soon'" },
	{ "pool", "resize", "office many",
	    "N wants a whole number, not 'many'" },
	{ "net", "create", "lan", "--subnet is required" },
	{ "pool", "create", "office --template gold", "--size is required" },
	{ "vm", "list", "extra", "too many arguments: 'extra'" },
	{ "vm", "screenshot", "desk1", "missing FILE" },
};

/* Whether an argv parses to the args and local options expected. */
static int
parses_to(const char *group, const char *verb, const char *words,
    const char *want_args, const char *want_local)
{
	json_t	*a, *l;
	char	*cause;
	int	 ok;

	if (parse(group, verb, words, &a, &l, &cause) != 0) {
		fprintf(stderr, "%s %s %s: %s\n", group, verb ? verb : "",
		    words, cause ? cause : "(no cause)");
		free(cause);
		return (0);
	}
	ok = (want_args == NULL || same(a, want_args)) &&
	    (want_local == NULL || same(l, want_local));
	if (!ok)
		fprintf(stderr, "for %s %s %s\n", group, verb ? verb : "",
		    words);
	json_decref(a);
	json_decref(l);
	return (ok);
}

static void
test_args(void)
{
	json_t	*a, *l;
	char	*cause, dir[] = "/tmp/test-cli.XXXXXX", cwd[PATH_MAX];
	char	 want[4 * PATH_MAX], real[PATH_MAX];
	FILE	*f;
	size_t	 i;

	/* vm create: every type, relative paths made absolute. */
	CHECK(mkdtemp(dir) != NULL);
	CHECK(getcwd(cwd, sizeof cwd) != NULL);
	CHECK(chdir(dir) == 0);
	CHECK((f = fopen("vmlinuz", "w")) != NULL);
	fclose(f);
	CHECK((f = fopen("initrd.img", "w")) != NULL);
	fclose(f);
	CHECK(realpath(".", real) != NULL);
	CHECK(parse("vm", "create", "desk1 --memory 512 --vcpus=2 --accel tcg "
	    "--kernel vmlinuz --initrd ./initrd.img --append console=ttyS0 "
	    "--net lan --net dmz --autostart --restart on-crash",
	    &a, &l, &cause) == 0);
	snprintf(want, sizeof want, "{\"name\":\"desk1\",\"memory\":512,"
	    "\"vcpus\":2,\"accel\":\"tcg\",\"kernel\":\"%s/vmlinuz\","
	    "\"initrd\":\"%s/initrd.img\",\"append\":\"console=ttyS0\","
	    "\"nets\":[\"lan\",\"dmz\"],\"autostart\":true,"
	    "\"restart\":\"on-crash\"}", real, real);
	CHECK(same(a, want));
	CHECK(same(l, "{}"));
	json_decref(a);
	json_decref(l);
	CHECK_STR(fails("vm", "create", "desk1 --disk missing.qcow2"),
	    "--disk 'missing.qcow2': No such file or directory");
	unlink("vmlinuz");
	unlink("initrd.img");
	CHECK(chdir(cwd) == 0);
	rmdir(dir);

	for (i = 0; i < nitems(parse_cases); i++)
		CHECK(parses_to(parse_cases[i].group, parse_cases[i].verb,
		    parse_cases[i].words, parse_cases[i].args,
		    parse_cases[i].local));
	for (i = 0; i < nitems(usage_errors); i++)
		CHECK_STR(fails(usage_errors[i].group, usage_errors[i].verb,
		    usage_errors[i].words), usage_errors[i].cause);
}

static void
test_global(void)
{
	struct cli	 cli;
	char		*argv1[] = { "qdesk", "--socket", "/tmp/s", "--json",
	    "--timeout=5", "vm", "list", NULL };
	char		*argv2[] = { "qdesk", "--timeout", "abc", "vm", NULL };
	char		*argv3[] = { "qdesk", "--bogus", "vm", NULL };
	char		*argv4[] = { "qdesk", "--socket", NULL };
	char		*argv5[] = { "qdesk", "--json", "--help", NULL };
	char		*cause = NULL;
	int		 optind = 0;

	memset(&cli, 0, sizeof cli);
	CHECK(args_global(7, argv1, &cli, &optind, &cause) == 0);
	CHECK(optind == 5);
	CHECK_STR(cli.socket, "/tmp/s");
	CHECK(cli.json == 1);
	CHECK(cli.timeout == 5);

	CHECK(args_global(4, argv2, &cli, &optind, &cause) == -1);
	CHECK_STR(cause, "--timeout wants a whole number of seconds, "
	    "not 'abc'");
	free(cause);
	CHECK(args_global(3, argv3, &cli, &optind, &cause) == -1);
	CHECK_STR(cause, "unknown option --bogus");
	free(cause);
	CHECK(args_global(2, argv4, &cli, &optind, &cause) == -1);
	CHECK_STR(cause, "--socket needs a value");
	free(cause);
	CHECK(args_global(3, argv5, &cli, &optind, &cause) == 1);
}

/* The table is consistent: usage shows every argument, names are unique. */
static void
test_table(void)
{
	const struct ctl_command	*ce, *other;
	const struct ctl_arg		*ca;
	size_t				 i, j;
	int				 known;

	CHECK(ctl_commands_size > 50);
	for (i = 0; i < ctl_commands_size; i++) {
		ce = &ctl_commands[i];
		CHECK(ce->group != NULL && ce->cmd != NULL &&
		    ce->usage != NULL);
		CHECK(strchr(ce->cmd, '.') != NULL);
		CHECK(cmds_find(ce->group, ce->verb, &known) == ce);
		for (ca = ce->pos; ca->name != NULL; ca++) {
			if (strstr(ce->usage, ca->name) == NULL)
				fprintf(stderr, "%s %s: usage lacks %s\n",
				    ce->group, ce->verb, ca->name);
			CHECK(strstr(ce->usage, ca->name) != NULL);
			CHECK(ca->key != NULL && ca->type != CTL_BOOL);
		}
		for (ca = ce->opts; ca != NULL && ca->name != NULL; ca++) {
			if (strstr(ce->usage, ca->name) == NULL)
				fprintf(stderr, "%s %s: usage lacks %s\n",
				    ce->group, ce->verb, ca->name);
			CHECK(strstr(ce->usage, ca->name) != NULL);
			CHECK(strncmp(ca->name, "--", 2) == 0);
			CHECK(ca->key != NULL);
		}
		if (ce->print == PRINT_DONE)
			CHECK(ce->done != NULL);
		for (j = i + 1; j < ctl_commands_size; j++) {
			other = &ctl_commands[j];
			CHECK(strcmp(ce->cmd, other->cmd) != 0);
			if (ce->verb != NULL && other->verb != NULL)
				CHECK(strcmp(ce->group, other->group) != 0 ||
				    strcmp(ce->verb, other->verb) != 0);
		}
	}
	CHECK(cmds_find("vm", "start", &known) != NULL && known);
	CHECK_STR(cmds_find("vm", "snapshot-rm", &known)->cmd,
	    "vm.snapshot_rm");
	CHECK_STR(cmds_find("status", NULL, &known)->cmd, "server.status");
	CHECK_STR(cmds_find("events", "ignored", &known)->cmd,
	    "events.subscribe");
	CHECK(cmds_find("vm", "frob", &known) == NULL && known == 1);
	CHECK(cmds_find("vm", NULL, &known) == NULL && known == 1);
	CHECK(cmds_find("frob", "x", &known) == NULL && known == 0);
}

/* A plain encoder, to round-trip every byte value through the decoder. */
static size_t
encode(const unsigned char *in, size_t len, char *out)
{
	static const char	 abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t			 i, o = 0;
	unsigned int		 v;

	for (i = 0; i < len; i += 3) {
		v = in[i] << 16;
		if (i + 1 < len)
			v |= in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = i + 1 < len ? abc[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? abc[v & 63] : '=';
	}
	out[o] = '\0';
	return (o);
}

static int
decodes(const char *in, const char *want)
{
	unsigned char	out[64];
	ssize_t		n;

	n = base64_decode(in, strlen(in), out, sizeof out, BASE64_SPACE);
	if (want == NULL)
		return (n == -1);
	return (n == (ssize_t)strlen(want) && memcmp(out, want, n) == 0);
}

static void
test_base64(void)
{
	unsigned char	 bytes[1000], *out;
	char		 text[1400];
	size_t		 i, len, len2;
	ssize_t		 n;

	CHECK(decodes("", ""));
	CHECK(decodes("Zg==", "f"));
	CHECK(decodes("Zm8=", "fo"));
	CHECK(decodes("Zm9v", "foo"));
	CHECK(decodes("Zm9vYg==", "foob"));
	CHECK(decodes("Zm9vYmE=", "fooba"));
	CHECK(decodes("Zm9vYmFy", "foobar"));
	CHECK(decodes("Zm9v\nYmFy\r\n", "foobar"));
	CHECK(decodes("Zg", "f"));
	CHECK(decodes("Zm8", "fo"));
	CHECK(decodes("Zm9v!", NULL));
	CHECK(decodes("Z", NULL));
	CHECK(decodes("Zg=x", NULL));
	CHECK(decodes("Zg=", NULL));
	CHECK(decodes("Zm9v====", NULL));
	CHECK(decodes("Zg==Zg==", NULL));
	CHECK(decodes("Zm9-", NULL));

	for (i = 0; i < sizeof bytes; i++)
		bytes[i] = (i * 7 + 3) & 0xff;
	for (len = 0; len < 7; len++) {
		len2 = encode(bytes, len, text);
		out = malloc(base64_decoded_max(len2));
		n = base64_decode(text, len2, out, base64_decoded_max(len2),
		    BASE64_SPACE);
		CHECK(n == (ssize_t)len && memcmp(out, bytes, len) == 0);
		free(out);
	}
	len2 = encode(bytes, sizeof bytes, text);
	out = malloc(base64_decoded_max(len2));
	n = base64_decode(text, len2, out, base64_decoded_max(len2),
		    BASE64_SPACE);
	CHECK(n == sizeof bytes && memcmp(out, bytes, sizeof bytes) == 0);
	/* An out buffer that is too small is refused, not overrun. */
	CHECK(base64_decode(text, len2, out, 10, BASE64_SPACE) == -1);
	free(out);
}

static const char *
size(uint64_t n)
{
	static char	buf[32];

	print_size(buf, sizeof buf, n);
	return (buf);
}

static const char *
value(const char *json, enum col_format format)
{
	static char	*last;
	json_t		*v;

	free(last);
	v = json_loads(json, JSON_DECODE_ANY, NULL);
	last = print_value(v, format);
	json_decref(v);
	return (last);
}

static void
test_format(void)
{
	CHECK_STR(size(0), "0B");
	CHECK_STR(size(512), "512B");
	CHECK_STR(size(1023), "1023B");
	CHECK_STR(size(1024), "1.0K");
	CHECK_STR(size(1536), "1.5K");
	CHECK_STR(size(512ULL << 20), "512M");
	CHECK_STR(size(1ULL << 30), "1.0G");
	CHECK_STR(size(20ULL << 30), "20G");
	CHECK_STR(size((10ULL << 30) - 1), "10G");
	CHECK_STR(size((1ULL << 30) - 1), "1.0G");
	CHECK_STR(size(3ULL << 40), "3.0T");
	CHECK_STR(size(UINT64_MAX), "16E");

	CHECK_STR(value("null", COL_TEXT), "-");
	CHECK_STR(value("true", COL_TEXT), "yes");
	CHECK_STR(value("false", COL_TEXT), "no");
	CHECK_STR(value("42", COL_TEXT), "42");
	CHECK_STR(value("\"x y\"", COL_TEXT), "x y");
	CHECK_STR(value("[\"kvm\",\"tcg\"]", COL_TEXT), "kvm, tcg");
	CHECK_STR(value("[]", COL_TEXT), "-");
	CHECK_STR(value("{\"host\":\"127.0.0.1\",\"port\":5900}", COL_TEXT),
	    "127.0.0.1:5900");
	CHECK_STR(value("{\"host\":\"::1\",\"port\":5901}", COL_TEXT),
	    "[::1]:5901");
	CHECK_STR(value("{\"host\":\"127.0.0.1\",\"port\":5901,\"tls\":true}",
	    COL_TEXT), "127.0.0.1:5901 tls");
	CHECK_STR(value("{\"host\":\"::1\",\"port\":5901,\"tls\":true}",
	    COL_TEXT), "[::1]:5901 tls");
	CHECK_STR(value("{\"host\":\"127.0.0.1\",\"port\":5901,\"tls\":false}",
	    COL_TEXT), "127.0.0.1:5901");
	/* Anything else stays JSON rather than lose what it says. */
	CHECK_STR(value("{\"host\":\"h\",\"port\":1,\"tls\":\"yes\"}",
	    COL_TEXT), "{\"host\":\"h\",\"port\":1,\"tls\":\"yes\"}");
	CHECK_STR(value("{\"host\":\"h\",\"port\":1,\"x\":2}", COL_TEXT),
	    "{\"host\":\"h\",\"port\":1,\"x\":2}");
	CHECK_STR(value("512", COL_MIB), "512M");
	CHECK_STR(value("2048", COL_MIB), "2.0G");
	CHECK_STR(value("1073741824", COL_BYTES), "1.0G");
	CHECK_STR(value("0", COL_PID), "-");
	CHECK_STR(value("4242", COL_PID), "4242");
	CHECK_STR(value("90061", COL_DURATION), "1d 1h");
	CHECK_STR(value("3725", COL_DURATION), "1h 2m");
	CHECK_STR(value("42", COL_DURATION), "42s");
	CHECK_STR(value("0", COL_TIME), "-");
	CHECK_STR(value("86400", COL_TIME), "1970-01-02 00:00:00");
}

/* Print a reply for a human into a string (freed at the next call). */
static const char *
printed(const char *group, const char *verb, const char *ret,
    const char *args)
{
	static char			*buf;
	const struct ctl_command	*ce;
	json_t				*r, *a;
	size_t				 len;
	FILE				*f;
	int				 known;

	free(buf);
	buf = NULL;
	ce = cmds_find(group, verb, &known);
	r = json_loads(ret, JSON_DECODE_ANY, NULL);
	a = json_loads(args, 0, NULL);
	f = open_memstream(&buf, &len);
	print_reply(f, ce, r, a);
	fclose(f);
	json_decref(r);
	json_decref(a);
	return (buf);
}

static void
test_print(void)
{
	const struct ctl_command	*ce;
	json_t				*j;
	char				*buf;
	size_t				 len;
	FILE				*f;
	int				 known;

	CHECK_STR(printed("vm", "start", "{\"name\":\"desk1\",\"state\":"
	    "\"running\",\"pid\":99}", "{\"name\":\"desk1\"}"),
	    "desk1: running\n");
	CHECK_STR(printed("vm", "stop", "{\"state\":\"stopped\"}",
	    "{\"name\":\"desk1\"}"), "desk1: stopped\n");
	CHECK_STR(printed("vm", "delete", "{}", "{\"name\":\"desk1\"}"),
	    "desk1: deleted\n");
	CHECK_STR(printed("vm", "snapshot", "{}",
	    "{\"name\":\"desk1\",\"snapshot\":\"s1\"}"),
	    "desk1: snapshot s1 taken\n");
	CHECK_STR(printed("desktop", "assign", "{}",
	    "{\"login\":\"alice\",\"vm\":\"desk1\"}"),
	    "desk1: assigned to alice\n");

	CHECK_STR(printed("vm", "list", "{\"vms\":["
	    "{\"name\":\"desk1\",\"state\":\"running\",\"pid\":4242,"
	    "\"accel\":\"kvm\",\"memory\":512,\"vcpus\":1,"
	    "\"spice\":{\"host\":\"127.0.0.1\",\"port\":5900,\"tls\":true}},"
	    "{\"name\":\"accounting-7\",\"state\":\"stopped\",\"pid\":null,"
	    "\"accel\":\"tcg\",\"memory\":2048,\"vcpus\":2,\"spice\":null}]}",
	    "{}"),
	    "NAME          STATE    PID   ACCEL  MEM   VCPUS  SPICE\n"
	    "desk1         running  4242  kvm    512M  1      "
	    "127.0.0.1:5900 tls\n"
	    "accounting-7  stopped  -     tcg    2.0G  2      -\n");
	CHECK_STR(printed("vm", "list", "{\"vms\":[]}", "{}"),
	    "NAME  STATE  PID  ACCEL  MEM  VCPUS  SPICE\n");

	CHECK_STR(printed("vm", "show", "{\"name\":\"desk1\",\"uuid\":\"u-1\","
	    "\"state\":\"crashed\",\"reason\":\"internal-error\",\"pid\":null,"
	    "\"accel\":\"auto\",\"accel_used\":\"kvm\",\"memory\":1024,"
	    "\"kernel\":null,\"spice\":{\"host\":\"0.0.0.0\",\"port\":5901},"
	    "\"autostart\":false,\"extra\":7,"
	    "\"nics\":[{\"mac\":\"52:54:00:00:00:01\",\"network\":\"lan\"}]}",
	    "{}"),
	    "name:      desk1\n"
	    "uuid:      u-1\n"
	    "state:     crashed (internal-error)\n"
	    "accel:     auto (using kvm)\n"
	    "memory:    1.0G\n"
	    "spice:     0.0.0.0:5901\n"
	    "autostart: no\n"
	    "nics:\n"
	    "  MAC                NETWORK\n"
	    "  52:54:00:00:00:01  lan\n"
	    "extra:     7\n");

	CHECK_STR(printed("status", NULL, "{\"version\":\"0.1.0\","
	    "\"uptime\":3725,\"accels\":[\"kvm\",\"tcg\"],"
	    "\"vms\":{\"total\":3,\"running\":2,\"stopped\":0}}", "{}"),
	    "version: 0.1.0\n"
	    "uptime:  1h 2m\n"
	    "accels:  kvm, tcg\n"
	    "vms:\n"
	    "  total:   3\n"
	    "  running: 2\n"
	    "  stopped: 0\n");

	CHECK_STR(printed("image", "list", "{\"images\":[{\"name\":\"gold\","
	    "\"kind\":\"base\",\"format\":\"qcow2\",\"parent\":null,"
	    "\"virtual_size\":1073741824,\"allocated_size\":536870912,"
	    "\"children\":2,\"users\":[]}]}", "{}"),
	    "NAME  KIND  FORMAT  PARENT  SIZE  USED  CHILDREN  USERS\n"
	    "gold  base  qcow2   -       1.0G  512M  2         -\n");

	/* Generic lists take the first array and every key of its rows. */
	CHECK_STR(printed("net", "list", "{\"networks\":[{\"name\":\"lan\","
	    "\"subnet\":\"10.0.0.0/24\"},{\"name\":\"dmz\",\"mode\":\"nat\","
	    "\"subnet\":\"10.1.0.0/24\"}]}", "{}"),
	    "NAME  SUBNET       MODE\n"
	    "lan   10.0.0.0/24  -\n"
	    "dmz   10.1.0.0/24  nat\n");
	CHECK_STR(printed("user", "list", "{\"users\":[]}", "{}"), "");

	CHECK_STR(printed("image", "verify", "{\"ok\":false,\"problems\":["
	    "{\"image\":\"c1\",\"problem\":\"backing file outside the store\"}"
	    "]}", "{}"),
	    "IMAGE  PROBLEM\n"
	    "c1     backing file outside the store\n");
	CHECK_STR(printed("image", "verify", "{\"ok\":true,\"problems\":[]}",
	    "{}"), "ok\n");
	ce = cmds_find("image", "verify", &known);
	j = json_loads("{\"ok\":true,\"problems\":[]}", 0, NULL);
	CHECK(print_exit(stderr, ce, j) == EXIT_OK);
	json_decref(j);
	j = json_loads("{\"ok\":false,\"problems\":[{},{}]}", 0, NULL);
	buf = NULL;
	f = open_memstream(&buf, &len);
	CHECK(print_exit(f, ce, j) == EXIT_DAEMON);
	CHECK(print_exit(f, cmds_find("vm", "list", &known), j) == EXIT_OK);
	fclose(f);
	CHECK_STR(buf, "qdesk: 2 problems\n");
	free(buf);
	json_decref(j);

	/* Events: TS VM EVENT STATE REASON, then the other keys. */
	buf = NULL;
	f = open_memstream(&buf, &len);
	j = json_loads("{\"event\":\"vm.state\",\"vm\":\"desk1\","
	    "\"state\":\"running\",\"reason\":\"started\",\"ts\":86400.25}",
	    0, NULL);
	print_event(f, j);
	json_decref(j);
	j = json_loads("{\"event\":\"spice.connected\",\"vm\":\"desk1\","
	    "\"ts\":86401,\"client\":\"10.0.0.9\"}", 0, NULL);
	print_event(f, j);
	json_decref(j);
	fclose(f);
	CHECK_STR(buf,
	    "1970-01-02 00:00:00.250 desk1 vm.state running started\n"
	    "1970-01-02 00:00:01.000 desk1 spice.connected - - "
	    "client=10.0.0.9\n");
	free(buf);

	/* --json: the reply, indented by 2. */
	buf = NULL;
	f = open_memstream(&buf, &len);
	j = json_loads("{\"name\":\"desk1\",\"nets\":[\"lan\"]}", 0, NULL);
	print_json(f, j);
	json_decref(j);
	fclose(f);
	CHECK_STR(buf, "{\n  \"name\": \"desk1\",\n  \"nets\": [\n"
	    "    \"lan\"\n  ]\n}\n");
	free(buf);
}

/* Reply timeout for a command line, under a global --timeout. */
static int
timeout_of(int global, const char *group, const char *verb,
    const char *words)
{
	struct cli	 cli;
	json_t		*a, *l;
	char		*cause;
	int		 t, known;

	memset(&cli, 0, sizeof cli);
	cli.timeout = global;
	if (parse(group, verb, words, &a, &l, &cause) != 0)
		return (-1);
	t = run_timeout(&cli, cmds_find(group, verb, &known), a);
	json_decref(a);
	json_decref(l);
	return (t);
}

static void
test_timeout(void)
{
	CHECK(timeout_of(120, "vm", "list", "") == 120);
	CHECK(timeout_of(5, "vm", "list", "") == 5);
	CHECK(timeout_of(0, "vm", "start", "d") == 0);
	/* vm start: qmpd may wait 120 s for QEMU. */
	CHECK(timeout_of(120, "vm", "start", "d") == 140);
	/* vm stop and vm wait outlast their own --timeout. */
	CHECK(timeout_of(120, "vm", "stop", "d") == 120);
	CHECK(timeout_of(10, "vm", "stop", "d") == 80);
	CHECK(timeout_of(120, "vm", "stop", "d --timeout 300") == 320);
	CHECK(timeout_of(1, "vm", "stop", "d --timeout 3") == 23);
	CHECK(timeout_of(120, "vm", "wait", "d running --timeout 600") == 620);
	/* vm wait --timeout 0 waits for ever in qmpd, so here too. */
	CHECK(timeout_of(120, "vm", "wait", "d running --timeout 0") == 0);
}

static void
test_usage(void)
{
	char	*buf = NULL, *p, *nl;
	size_t	 len;
	FILE	*f;
	int	 known;

	f = open_memstream(&buf, &len);
	cmds_usage(f, cmds_find("vm", "stop", &known));
	fclose(f);
	CHECK_STR(buf, "usage: qdesk vm stop NAME [--force] [--timeout S]\n");
	free(buf);

	/* Long usage folds below 80 columns, brackets kept whole. */
	buf = NULL;
	f = open_memstream(&buf, &len);
	cmds_list(f, "vm");
	fclose(f);
	CHECK(strstr(buf, "  qdesk vm create NAME [--memory MIB]") == buf);
	CHECK(strstr(buf, "\n                  [--kernel FILE --initrd FILE "
	    "--append STR | --disk FILE]\n") != NULL);
	CHECK(strstr(buf, "  qdesk vm nic-rm VM MAC\n") != NULL);
	CHECK(strstr(buf, "qdesk image") == NULL);
	free(buf);

	/* No line of the full list is wider than 79 columns. */
	buf = NULL;
	f = open_memstream(&buf, &len);
	cmds_main_usage(f);
	fclose(f);
	for (p = buf; (nl = strchr(p, '\n')) != NULL; p = nl + 1)
		CHECK(nl - p <= 79);
	free(buf);
}

int
main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	test_args();
	test_global();
	test_table();
	test_base64();
	test_format();
	test_print();
	test_usage();
	test_timeout();
	return (check_exit());
}
