/*
 * The --cluster file (cluster.h says what it holds). One table of fields,
 * each with its kind and where it goes, so a new field is one line; every
 * check that spans fields is at the end of cluster_conf_parse.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster-conf.h"
#include "log.h"
#include "names.h"
#include "xmalloc.h"

enum conf_kind {
	CONF_STRING,		/* a non-empty string */
	CONF_PATH,		/* an absolute path */
	CONF_URLS,		/* a non-empty array of http(s):// URLs */
	CONF_SECONDS		/* an integer within min..max */
};

struct conf_field {
	const char	*name;
	enum conf_kind	 kind;
	size_t		 off;
	int		 min, max;	/* CONF_SECONDS */
};

#define F(n, k, m)	{ n, k, offsetof(struct cluster_conf, m), 0, 0 }
#define S(n, m, lo, hi)	{ n, CONF_SECONDS, offsetof(struct cluster_conf, m), \
			    lo, hi }
static const struct conf_field conf_fields[] = {
	F("name", CONF_STRING, name),
	F("etcd", CONF_URLS, etcd),
	F("etcd_ca", CONF_PATH, etcd_ca),
	F("etcd_cert", CONF_PATH, etcd_cert),
	F("etcd_key", CONF_PATH, etcd_key),
	F("listen", CONF_STRING, listen),
	F("addr", CONF_STRING, addr),
	F("ca", CONF_PATH, ca),
	F("cert", CONF_PATH, cert),
	F("key", CONF_PATH, key),
	S("lease_ttl", lease_ttl, 2, 60),
	S("fence_delay", fence_delay, 1, 600),
};
#undef F
#undef S

static const struct conf_field *
conf_field_find(const char *name)
{
	size_t	i;

	for (i = 0; i < sizeof conf_fields / sizeof conf_fields[0]; i++)
		if (strcmp(conf_fields[i].name, name) == 0)
			return (&conf_fields[i]);
	return (NULL);
}

/* "http://H:P,https://H:P" from a JSON array of URLs, or -1. */
static int
conf_urls(json_t *v, char **out, char **why)
{
	json_t		*u;
	size_t		 i;
	const char	*s;
	char		*joined = NULL, *t;

	if (!json_is_array(v) || json_array_size(v) == 0) {
		*why = xstrdup("must be a non-empty array of URLs");
		return (-1);
	}
	json_array_foreach(v, i, u) {
		s = json_string_value(u);
		if (s == NULL || (strncmp(s, "http://", 7) != 0 &&
		    strncmp(s, "https://", 8) != 0) || strchr(s, ',') != NULL) {
			xasprintf(why, "entry %zu must be an http:// or "
			    "https:// URL", i);
			free(joined);
			return (-1);
		}
		if (joined == NULL)
			joined = xstrdup(s);
		else {
			xasprintf(&t, "%s,%s", joined, s);
			free(joined);
			joined = t;
		}
	}
	*out = joined;
	return (0);
}

/* One field's value into c, or -1 and *why (without the field's name). */
static int
conf_set(struct cluster_conf *c, const struct conf_field *f, json_t *v,
    char **why)
{
	char		**sp = (char **)((char *)c + f->off);
	int		 *ip = (int *)((char *)c + f->off);
	const char	 *s;
	json_int_t	  n;

	switch (f->kind) {
	case CONF_URLS:
		return (conf_urls(v, sp, why));
	case CONF_SECONDS:
		if (!json_is_integer(v) || (n = json_integer_value(v)) <
		    f->min || n > f->max) {
			xasprintf(why, "must be an integer from %d to %d",
			    f->min, f->max);
			return (-1);
		}
		*ip = (int)n;
		return (0);
	case CONF_STRING:
	case CONF_PATH:
		s = json_string_value(v);
		if (s == NULL || *s == '\0') {
			*why = xstrdup("must be a non-empty string");
			return (-1);
		}
		if (f->kind == CONF_PATH && *s != '/') {
			*why = xstrdup("must be an absolute path");
			return (-1);
		}
		*sp = xstrdup(s);
		return (0);
	}
	return (-1);
}

struct cluster_conf *
cluster_conf_parse(json_t *obj, const char *path, char **cause)
{
	struct cluster_conf		*c;
	const struct conf_field		*f;
	const char			*k;
	json_t				*v;
	char				*why = NULL, *colon;

	if (!json_is_object(obj)) {
		xasprintf(cause, "%s: must be a JSON object", path);
		return (NULL);
	}
	c = xcalloc(1, sizeof *c);
	c->path = xstrdup(path);
	c->lease_ttl = 5;
	c->fence_delay = 5;
	json_object_foreach(obj, k, v) {
		if ((f = conf_field_find(k)) == NULL) {
			xasprintf(cause, "%s: unknown field \"%s\"", path, k);
			goto fail;
		}
		if (conf_set(c, f, v, &why) != 0) {
			xasprintf(cause, "%s: %s %s", path, k, why);
			free(why);
			goto fail;
		}
	}
	if (c->name == NULL || c->etcd == NULL) {
		xasprintf(cause, "%s: \"%s\" is required", path,
		    c->name == NULL ? "name" : "etcd");
		goto fail;
	}
	if (names_valid(c->name, "host name", &why) != 0) {
		xasprintf(cause, "%s: %s", path, why);
		free(why);
		goto fail;
	}
	if ((c->etcd_cert == NULL) != (c->etcd_key == NULL)) {
		xasprintf(cause, "%s: etcd_cert and etcd_key go together",
		    path);
		goto fail;
	}
	if (c->listen != NULL) {
		if ((colon = strrchr(c->listen, ':')) == NULL ||
		    colon == c->listen || colon[1] == '\0') {
			xasprintf(cause, "%s: listen must be ADDR:PORT", path);
			goto fail;
		}
		if (c->ca == NULL || c->cert == NULL || c->key == NULL) {
			xasprintf(cause, "%s: listen needs ca, cert and key "
			    "(qdesk cluster init makes them)", path);
			goto fail;
		}
		if (c->addr == NULL)
			c->addr = xstrndup(c->listen, colon - c->listen);
	}
	return (c);
fail:
	cluster_conf_free(c);
	return (NULL);
}

struct cluster_conf *
cluster_conf_load(const char *path, char **cause)
{
	struct cluster_conf	*c;
	json_error_t		 je;
	json_t			*obj;

	if ((obj = json_load_file(path, JSON_REJECT_DUPLICATES, &je)) ==
	    NULL) {
		if (je.line <= 0)	/* jansson's text names the file */
			xasprintf(cause, "--cluster: %s", je.text);
		else
			xasprintf(cause, "%s:%d: %s", path, je.line, je.text);
		return (NULL);
	}
	c = cluster_conf_parse(obj, path, cause);
	json_decref(obj);
	return (c);
}

void
cluster_conf_free(struct cluster_conf *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->name);
	free(c->etcd);
	free(c->etcd_ca);
	free(c->etcd_cert);
	free(c->etcd_key);
	free(c->listen);
	free(c->addr);
	free(c->ca);
	free(c->cert);
	free(c->key);
	free(c);
}
