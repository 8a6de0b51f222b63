/* qmpd/cluster-conf.c: the --cluster file's fields and its one-line errors. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "cluster-conf.h"

/* Parse text; return the conf (or NULL) and the error in *cause. */
static struct cluster_conf *
parse(const char *text, char **cause)
{
	struct cluster_conf	*c;
	json_t			*o;

	*cause = NULL;
	if ((o = json_loads(text, 0, NULL)) == NULL)
		return (NULL);
	c = cluster_conf_parse(o, "h.json", cause);
	json_decref(o);
	return (c);
}

/* Each bad file and the exact message it gets. */
static const struct {
	const char	*text;
	const char	*cause;
} bad[] = {
	{ "[]", "h.json: must be a JSON object" },
	{ "{\"etcd\":[\"http://a:1\"]}", "h.json: \"name\" is required" },
	{ "{\"name\":\"h1\"}", "h.json: \"etcd\" is required" },
	{ "{\"name\":\"h1\",\"etcd\":[]}",
	  "h.json: etcd must be a non-empty array of URLs" },
	{ "{\"name\":\"h1\",\"etcd\":[\"a:1\"]}",
	  "h.json: etcd entry 0 must be an http:// or https:// URL" },
	{ "{\"name\":\"h1\",\"etcd\":[\"http://a:1\"],\"lease\":5}",
	  "h.json: unknown field \"lease\"" },
	{ "{\"name\":\"h1\",\"etcd\":[\"http://a:1\"],\"lease_ttl\":1}",
	  "h.json: lease_ttl must be an integer from 2 to 60" },
	{ "{\"name\":\"h1\",\"etcd\":[\"http://a:1\"],\"ca\":\"ca.pem\"}",
	  "h.json: ca must be an absolute path" },
	{ "{\"name\":\"h1\",\"etcd\":[\"http://a:1\"],\"listen\":\"x:1\"}",
	  "h.json: listen needs ca, cert and key (qdesk cluster init makes "
	  "them)" },
	{ "{\"name\":\"h1\",\"etcd\":[\"http://a:1\"],\"listen\":\"x\","
	  "\"ca\":\"/c\",\"cert\":\"/c\",\"key\":\"/k\"}",
	  "h.json: listen must be ADDR:PORT" },
	{ "{\"name\":\"h1\",\"etcd\":[\"http://a:1\"],\"etcd_cert\":\"/c\"}",
	  "h.json: etcd_cert and etcd_key go together" },
};

int
main(void)
{
	struct cluster_conf	*c;
	char			*cause;
	size_t			 i;

	c = parse("{\"name\":\"h1\",\"etcd\":[\"http://10.0.0.1:2379\","
	    "\"https://10.0.0.2:2379\"],\"listen\":\"10.0.0.11:7443\","
	    "\"ca\":\"/c/ca.pem\",\"cert\":\"/c/h1.pem\",\"key\":\"/c/h1.key\","
	    "\"lease_ttl\":3}", &cause);
	CHECK(c != NULL);
	if (c != NULL) {
		CHECK_STR(c->name, "h1");
		CHECK_STR(c->etcd, "http://10.0.0.1:2379,https://10.0.0.2:2379");
		CHECK_STR(c->addr, "10.0.0.11");
		CHECK(c->lease_ttl == 3);
		CHECK(c->fence_delay == 5);
		cluster_conf_free(c);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		c = parse(bad[i].text, &cause);
		CHECK(c == NULL);
		CHECK_STR(cause, bad[i].cause);
		free(cause);
	}
	CHECK(cluster_conf_load("/nonexistent/h.json", &cause) == NULL);
	CHECK(cause != NULL && strncmp(cause, "--cluster: ", 11) == 0);
	free(cause);
	return (check_exit());
}
