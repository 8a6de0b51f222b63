/*
 * Printing replies for humans: aligned tables for lists, "key: value" lines
 * for single objects, one confirmation line for actions. --json bypasses
 * all of this and prints the reply as the daemon sent it.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "qdesk.h"
#include "xmalloc.h"

/* How a value is shown, chosen by its key wherever it appears. */
static const struct print_col print_key_formats[] = {
	{ NULL, "allocated_size",	COL_BYTES },
	{ NULL, "created",		COL_TIME },
	{ NULL, "expires",		COL_TIME },
	{ NULL, "last_login",		COL_TIME },
	{ NULL, "memory",		COL_MIB },
	{ NULL, "password_changed",	COL_TIME },
	{ NULL, "started",		COL_TIME },
	{ NULL, "ts",			COL_TIME },
	{ NULL, "uptime",		COL_DURATION },
	{ NULL, "virtual_size",		COL_BYTES },
};

static const struct print_col print_vm_cols[] = {
	{ "NAME",	"name",		COL_TEXT },
	{ "STATE",	"state",	COL_TEXT },
	{ "PID",	"pid",		COL_PID },
	{ "ACCEL",	"accel",	COL_TEXT },
	{ "MEM",	"memory",	COL_MIB },
	{ "VCPUS",	"vcpus",	COL_TEXT },
	{ "SPICE",	"spice",	COL_TEXT },
	{ NULL, NULL, 0 }
};

static const struct print_col print_verify_cols[] = {
	{ "IMAGE",	"image",	COL_TEXT },
	{ "PROBLEM",	"problem",	COL_TEXT },
	{ NULL, NULL, 0 }
};

/* The order vm show prints its keys in; the rest follow as they come. */
static const char *print_vm_keys[] = {
	"name", "uuid", "state", "pid", "accel", "machine", "memory", "vcpus",
	"kernel", "initrd", "append", "disk", "disk_format", "from", "display",
	"spice", "profile",
	"restart", "autostart", "created", "started", "nics", "spice_clients"
};

static enum col_format
print_key_format(const char *key)
{
	size_t	i;

	for (i = 0; i < nitems(print_key_formats); i++) {
		if (strcmp(print_key_formats[i].key, key) == 0)
			return (print_key_formats[i].format);
	}
	return (COL_TEXT);
}

/* Format a byte count the way ls -h and qemu-img do: 512M, 1.0G, 20G. */
void
print_size(char *buf, size_t len, uint64_t bytes)
{
	static const char	 units[] = "KMGTPE";
	double			 v = bytes;
	int			 i = -1;

	if (bytes < 1024) {
		snprintf(buf, len, "%" PRIu64 "B", bytes);
		return;
	}
	while (v >= 1024 && units[i + 1] != '\0') {
		v /= 1024;
		i++;
	}
	if (v >= 1023.5 && units[i + 1] != '\0') {
		v /= 1024;
		i++;
	}
	if (v < 9.95)
		snprintf(buf, len, "%.1f%c", v, units[i]);
	else
		snprintf(buf, len, "%.0f%c", v, units[i]);
}

/* Format seconds as "3d 4h", "2h 5m", "5m 3s" or "42s". */
static void
print_duration(char *buf, size_t len, long long s)
{
	if (s >= 86400)
		snprintf(buf, len, "%lldd %lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%lldh %lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%lldm %llds", s / 60, s % 60);
	else
		snprintf(buf, len, "%llds", s);
}

/* Format a Unix time as local "YYYY-mm-dd HH:MM:SS", with ms for events. */
void
print_time(char *buf, size_t len, double ts, int ms)
{
	struct tm	tm;
	time_t		t = (time_t)ts;
	size_t		n;

	if (localtime_r(&t, &tm) == NULL) {
		snprintf(buf, len, "%.3f", ts);
		return;
	}
	n = strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	if (ms && n != 0 && n < len)
		snprintf(buf + n, len - n, ".%03d",
		    (int)((ts - (double)t) * 1000) % 1000);
}

/*
 * A {"host":H,"port":P} object, with "tls":true or false or without, as
 * H:P ([H]:P for IPv6), followed by " tls" when TLS is on; NULL for any
 * other object.
 */
static char *
print_hostport(json_t *v)
{
	json_t		*host, *port, *tls;
	const char	*h;
	char		*s;

	if (!json_is_object(v))
		return (NULL);
	host = json_object_get(v, "host");
	port = json_object_get(v, "port");
	tls = json_object_get(v, "tls");
	if (!json_is_string(host) || !json_is_integer(port) ||
	    (tls != NULL && !json_is_boolean(tls)) ||
	    json_object_size(v) != (tls != NULL ? 3 : 2))
		return (NULL);
	h = json_string_value(host);
	xasprintf(&s, "%s%s%s:%" JSON_INTEGER_FORMAT "%s",
	    strchr(h, ':') != NULL ? "[" : "", h,
	    strchr(h, ':') != NULL ? "]" : "", json_integer_value(port),
	    json_is_true(tls) ? " tls" : "");
	return (s);
}

/*
 * Format any value as text for a cell or a "key: value" line: null is "-",
 * booleans yes/no, arrays of scalars joined by ", ". Returns a new string.
 */
char *
print_value(json_t *v, enum col_format format)
{
	char	 buf[64], *s, *e, *t;
	size_t	 i;
	json_t	*item;
	double	 d;

	if (v == NULL || json_is_null(v))
		return (xstrdup("-"));
	if (json_is_number(v) && format != COL_TEXT) {
		d = json_number_value(v);
		switch (format) {
		case COL_BYTES:
			print_size(buf, sizeof buf, d < 0 ? 0 : (uint64_t)d);
			return (xstrdup(buf));
		case COL_MIB:
			print_size(buf, sizeof buf,
			    d < 0 ? 0 : (uint64_t)d * 1024 * 1024);
			return (xstrdup(buf));
		case COL_TIME:
			if (d <= 0)
				return (xstrdup("-"));
			print_time(buf, sizeof buf, d, 0);
			return (xstrdup(buf));
		case COL_DURATION:
			print_duration(buf, sizeof buf, (long long)d);
			return (xstrdup(buf));
		case COL_PID:
			if (d <= 0)
				return (xstrdup("-"));
			break;
		case COL_TEXT:
			break;
		}
	}
	switch (json_typeof(v)) {
	case JSON_STRING:
		return (xstrdup(json_string_value(v)));
	case JSON_INTEGER:
		xasprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return (s);
	case JSON_REAL:
		xasprintf(&s, "%g", json_real_value(v));
		return (s);
	case JSON_TRUE:
		return (xstrdup("yes"));
	case JSON_FALSE:
		return (xstrdup("no"));
	case JSON_ARRAY:
		if (json_array_size(v) == 0)
			return (xstrdup("-"));
		s = xstrdup("");
		json_array_foreach(v, i, item) {
			t = print_value(item, format);
			xasprintf(&e, "%s%s%s", s, i == 0 ? "" : ", ", t);
			free(t);
			free(s);
			s = e;
		}
		return (s);
	case JSON_OBJECT:
		if ((s = print_hostport(v)) != NULL)
			return (s);
		if ((s = json_dumps(v, JSON_COMPACT)) == NULL)
			s = xstrdup("?");
		return (s);
	default:
		return (xstrdup("?"));
	}
}

/* Columns a string takes on a terminal: count UTF-8 lead bytes. */
static size_t
print_width(const char *s)
{
	size_t	n = 0;

	for (; *s != '\0'; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	}
	return (n);
}

static void
print_pad(FILE *f, const char *s, size_t width)
{
	size_t	w = print_width(s);

	fputs(s, f);
	while (w++ < width)
		fputc(' ', f);
}

/* Columns of a table of objects: the keys of its rows, first seen first. */
static struct print_col *
print_auto_cols(json_t *rows)
{
	struct print_col	*cols = NULL;
	size_t			 ncols = 0, i, j;
	json_t			*row, *v;
	const char		*key;
	char			*h;

	json_array_foreach(rows, i, row) {
		if (!json_is_object(row))
			continue;
		json_object_foreach(row, key, v) {
			for (j = 0; j < ncols; j++) {
				if (strcmp(cols[j].key, key) == 0)
					break;
			}
			if (j != ncols)
				continue;
			cols = xrealloc(cols, (ncols + 2) * sizeof *cols);
			h = xstrdup(key);
			for (j = 0; h[j] != '\0'; j++)
				h[j] = toupper((unsigned char)h[j]);
			cols[ncols].header = h;
			cols[ncols].key = xstrdup(key);
			cols[ncols].format = print_key_format(key);
			ncols++;
		}
	}
	if (cols == NULL)
		return (NULL);
	memset(&cols[ncols], 0, sizeof *cols);
	return (cols);
}

static void
print_free_cols(struct print_col *cols)
{
	struct print_col	*c;

	for (c = cols; c != NULL && c->key != NULL; c++) {
		free((char *)c->header);
		free((char *)c->key);
	}
	free(cols);
}

/*
 * Print an array of objects as a table with aligned columns, indented by
 * indent spaces; cols NULL takes every key. Empty arrays print nothing
 * unless the columns are fixed, in which case the header still shows.
 */
static void
print_table(FILE *f, int indent, json_t *rows,
    const struct print_col *fixed)
{
	struct print_col	*autocols = NULL;
	const struct print_col	*cols = fixed;
	size_t			 ncols, nrows, i, j, *width;
	char			**cell;
	json_t			*row;

	if (cols == NULL && (cols = autocols = print_auto_cols(rows)) == NULL)
		return;
	for (ncols = 0; cols[ncols].key != NULL; ncols++)
		;
	nrows = json_array_size(rows);
	width = xcalloc(ncols, sizeof *width);
	cell = xcalloc((nrows + 1) * ncols, sizeof *cell);
	for (j = 0; j < ncols; j++) {
		cell[j] = xstrdup(cols[j].header);
		width[j] = print_width(cell[j]);
	}
	json_array_foreach(rows, i, row) {
		for (j = 0; j < ncols; j++) {
			cell[(i + 1) * ncols + j] = print_value(
			    json_object_get(row, cols[j].key), cols[j].format);
			if (print_width(cell[(i + 1) * ncols + j]) > width[j])
				width[j] = print_width(cell[(i + 1) * ncols +
				    j]);
		}
	}
	for (i = 0; i <= nrows; i++) {
		fprintf(f, "%*s", indent, "");
		for (j = 0; j < ncols; j++) {
			if (j + 1 == ncols)
				fputs(cell[i * ncols + j], f);
			else {
				print_pad(f, cell[i * ncols + j], width[j]);
				fputs("  ", f);
			}
			free(cell[i * ncols + j]);
		}
		fputc('\n', f);
	}
	free(cell);
	free(width);
	print_free_cols(autocols);
}

/* Whether a value gets its own indented block rather than one line. */
static int
print_is_block(json_t *v)
{
	json_t	*first;

	if (json_is_object(v))
		return (json_object_size(v) != 0 && print_hostport(v) == NULL ?
		    1 : 0);
	if (json_is_array(v)) {
		first = json_array_get(v, 0);
		return (json_is_object(first));
	}
	return (0);
}

/*
 * Print an object as aligned "key: value" lines; nested objects follow as
 * indented blocks and arrays of objects as indented tables.
 */
/* Lines of a text, the last one counted even without its newline. */
static int
print_lines(const char *text)
{
	int	n = 0;

	for (; *text != '\0'; text++) {
		if (*text == '\n' && text[1] != '\0')
			n++;
	}
	return (n + 1);
}

static void
print_object(FILE *f, int indent, json_t *obj)
{
	const char	*key;
	json_t		*v;
	size_t		 width = 0;
	char		*s;

	if (!json_is_object(obj)) {
		s = print_value(obj, COL_TEXT);
		fprintf(f, "%*s%s\n", indent, "", s);
		free(s);
		return;
	}
	json_object_foreach(obj, key, v) {
		if (!print_is_block(v) && strlen(key) + 1 > width)
			width = strlen(key) + 1;
	}
	json_object_foreach(obj, key, v) {
		if (print_is_block(v)) {
			fprintf(f, "%*s%s:\n", indent, "", key);
			if (json_is_object(v))
				print_object(f, indent + 2, v);
			else
				print_table(f, indent + 2, v, NULL);
			continue;
		}
		/* A PEM certificate and the like would break the layout. */
		if (json_is_string(v) && strchr(json_string_value(v), '\n'))
			xasprintf(&s, "(%d lines; --json shows them)",
			    print_lines(json_string_value(v)));
		else
			s = print_value(v, print_key_format(key));
		fprintf(f, "%*s%s:%*s %s\n", indent, "", key,
		    (int)(width - strlen(key) - 1), "", s);
		free(s);
	}
}

/* A hand-picked view of a VM for vm show: known keys first, nulls left out. */
static void
print_vm(FILE *f, json_t *vm)
{
	json_t		*out, *v, *reason, *used;
	const char	*key;
	size_t		 i;
	char		*s;

	if (!json_is_object(vm)) {
		print_object(f, 0, vm);
		return;
	}
	out = json_object();
	for (i = 0; i < nitems(print_vm_keys); i++) {
		key = print_vm_keys[i];
		if ((v = json_object_get(vm, key)) == NULL || json_is_null(v))
			continue;
		if (strcmp(key, "state") == 0 && json_is_string(v) &&
		    json_is_string(reason = json_object_get(vm, "reason")) &&
		    *json_string_value(reason) != '\0') {
			xasprintf(&s, "%s (%s)", json_string_value(v),
			    json_string_value(reason));
			json_object_set_new(out, key, json_string(s));
			free(s);
		} else if (strcmp(key, "accel") == 0 && json_is_string(v) &&
		    json_is_string(used = json_object_get(vm, "accel_used")) &&
		    strcmp(json_string_value(used), json_string_value(v)) != 0) {
			xasprintf(&s, "%s (using %s)", json_string_value(v),
			    json_string_value(used));
			json_object_set_new(out, key, json_string(s));
			free(s);
		} else
			json_object_set(out, key, v);
	}
	json_object_foreach(vm, key, v) {
		if (json_is_null(v) || json_object_get(out, key) != NULL ||
		    strcmp(key, "reason") == 0 || strcmp(key, "accel_used") == 0)
			continue;
		/* Already in "spice" as host:port. */
		if (json_object_get(out, "spice") != NULL &&
		    (strcmp(key, "listen") == 0 ||
		    strcmp(key, "spice_port") == 0))
			continue;
		json_object_set(out, key, v);
	}
	print_object(f, 0, out);
	json_decref(out);
}

/* The array a list reply carries: the named member, or the first array. */
static json_t *
print_find_list(json_t *ret, const char *member)
{
	const char	*key;
	json_t		*v;

	if (json_is_array(ret))
		return (ret);
	if (!json_is_object(ret))
		return (NULL);
	if (member != NULL)
		return (json_object_get(ret, member));
	json_object_foreach(ret, key, v) {
		if (json_is_array(v))
			return (v);
	}
	return (NULL);
}

/* Expand "$key" in a confirmation line from the request, then the reply. */
static void
print_done(FILE *f, const char *tmpl, json_t *ret, json_t *args)
{
	char		 key[64], *s;
	size_t		 n;
	json_t		*v;

	while (*tmpl != '\0') {
		if (*tmpl != '$') {
			fputc(*tmpl++, f);
			continue;
		}
		tmpl++;
		for (n = 0; n + 1 < sizeof key && (islower((unsigned char)
		    tmpl[n]) || tmpl[n] == '_'); n++)
			key[n] = tmpl[n];
		key[n] = '\0';
		tmpl += n;
		if ((v = json_object_get(args, key)) == NULL &&
		    json_is_object(ret))
			v = json_object_get(ret, key);
		s = print_value(v, COL_TEXT);
		fputs(s, f);
		free(s);
	}
	fputc('\n', f);
}

/* Print a reply for a human, the way the command's entry asks. */
void
print_reply(FILE *f, const struct ctl_command *ce, json_t *ret, json_t *args)
{
	json_t		*name, *state, *list;

	switch (ce->print) {
	case PRINT_NONE:
		break;
	case PRINT_STATE:
		state = json_object_get(ret, "state");
		if ((name = json_object_get(ret, "name")) == NULL)
			name = json_object_get(args, "name");
		if (json_is_string(name) && json_is_string(state))
			fprintf(f, "%s: %s\n", json_string_value(name),
			    json_string_value(state));
		break;
	case PRINT_DONE:
		print_done(f, ce->done, ret, args);
		/* What went differently from what was asked (vm snapshot). */
		if (json_is_string(json_object_get(ret, "note")))
			fprintf(f, "note: %s\n", json_string_value(
			    json_object_get(ret, "note")));
		break;
	case PRINT_VM:
		print_vm(f, ret);
		break;
	case PRINT_VM_TABLE:
		if ((list = print_find_list(ret, "vms")) != NULL)
			print_table(f, 0, list, print_vm_cols);
		break;
	case PRINT_OBJECT:
		print_object(f, 0, ret);
		break;
	case PRINT_LIST:
		if ((list = print_find_list(ret, ce->list)) != NULL &&
		    json_is_array(list))
			print_table(f, 0, list, ce->cols);
		else
			print_object(f, 0, ret);
		break;
	case PRINT_VERIFY:
		list = json_object_get(ret, "problems");
		if (json_array_size(list) != 0)
			print_table(f, 0, list, print_verify_cols);
		else if (json_is_true(json_object_get(ret, "ok")))
			fprintf(f, "ok\n");
		break;
	}
}

/*
 * The exit status a successful reply still stands for: image.verify
 * answers normally but fails when it found problems, with one line on
 * f (stderr) saying how many.
 */
int
print_exit(FILE *f, const struct ctl_command *ce, json_t *ret)
{
	size_t	n;

	if (ce->print != PRINT_VERIFY ||
	    json_is_true(json_object_get(ret, "ok")))
		return (EXIT_OK);
	n = json_array_size(json_object_get(ret, "problems"));
	fprintf(f, "qdesk: %zu problem%s\n", n, n == 1 ? "" : "s");
	return (EXIT_DAEMON);
}

/* Print a reply as one JSON document, indented by 2, as --json asks. */
void
print_json(FILE *f, json_t *ret)
{
	json_dumpf(ret, f, JSON_INDENT(2) | JSON_ENCODE_ANY);
	fputc('\n', f);
}

/* Print an event as "TS VM EVENT STATE REASON", then any other key=value. */
void
print_event(FILE *f, json_t *ev)
{
	static const char *fixed[] = { "ts", "vm", "event", "state", "reason" };
	const char	*key;
	char		 buf[64], *s;
	json_t		*v;
	size_t		 i;

	v = json_object_get(ev, "ts");
	if (json_is_number(v))
		print_time(buf, sizeof buf, json_number_value(v), 1);
	else
		strlcpy(buf, "-", sizeof buf);
	fputs(buf, f);
	for (i = 1; i < nitems(fixed); i++) {
		s = print_value(json_object_get(ev, fixed[i]), COL_TEXT);
		fprintf(f, " %s", s);
		free(s);
	}
	json_object_foreach(ev, key, v) {
		for (i = 0; i < nitems(fixed); i++) {
			if (strcmp(fixed[i], key) == 0)
				break;
		}
		if (i != nitems(fixed))
			continue;
		s = print_value(v, print_key_format(key));
		fprintf(f, " %s=%s", key, s);
		free(s);
	}
	fputc('\n', f);
}
