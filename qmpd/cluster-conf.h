/*
 * The --cluster file, apart from the rest of cluster.h because the broker
 * reads the same file (qdesk-broker --cluster) and links cluster-conf.c.
 */
#ifndef QDESK_CLUSTER_CONF_H
#define QDESK_CLUSTER_CONF_H

#include <jansson.h>

/*
 * cluster-conf.c: the --cluster file, a JSON object:
 *
 *   {
 *     "name":      "h1",                       this host's name (required)
 *     "etcd":      ["https://10.0.0.1:2379"],  endpoints (required)
 *     "etcd_ca", "etcd_cert", "etcd_key":      PEM files, for an etcd with
 *                                              TLS / client cert auth
 *     "listen":    "10.0.0.11:7443",           the mutual-TLS listener
 *                                              other hosts and the broker
 *                                              use (qmpd --listen overrides)
 *     "addr":      "10.0.0.11",                where others reach this
 *                                              host's SPICE and migration
 *                                              ports (default: listen's host)
 *     "ca", "cert", "key":                     the cluster CA and this
 *                                              host's certificate and key
 *                                              (qdesk cluster init makes
 *                                              them); required with listen
 *     "lease_ttl":   5,                        seconds (2..60)
 *     "fence_delay": 5                         seconds others wait after
 *                                              the lease expired before
 *                                              restarting its desktops
 *   }
 *
 * Unknown fields are refused, so a typo is an error and not a default.
 */
struct cluster_conf {
	char	*path;		/* the file, for messages */
	char	*name;
	char	*etcd;		/* endpoints joined by ',' (etcd_config's) */
	char	*etcd_ca;
	char	*etcd_cert;
	char	*etcd_key;
	char	*listen;	/* "ADDR:PORT" or NULL */
	char	*addr;
	char	*ca;
	char	*cert;
	char	*key;
	int	 lease_ttl;
	int	 fence_delay;
};

/* Parse and check path; NULL and a one-line *cause on any error. */
struct cluster_conf	*cluster_conf_load(const char *path, char **cause);
/* The same from a parsed object (the unit test's way in). */
struct cluster_conf	*cluster_conf_parse(json_t *, const char *path,
			    char **cause);
void			 cluster_conf_free(struct cluster_conf *);

#endif
