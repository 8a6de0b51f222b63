/*
 * The migration stream over TLS (issue 14, in a cluster): QEMU's
 * tls-creds-x509 on both sides, from this host's cluster certificate and
 * key and the cluster CA, so the stream is encrypted and each QEMU knows
 * the other is a host of the same cluster. QEMU reads them as the VM's
 * uid, from DIR/vms/NAME/mig-tls, made for that uid alone.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "safefile.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_MIG_TLS_ID	"mig-tls"
#define VM_MIG_TLS_MAX	(64 * 1024)

/* Copy the cluster file's src into dfd as name, for uid alone. */
static int
vm_migrate_tls_copy(int dfd, const char *name, const char *src, uid_t uid,
    char **cause)
{
	char	*text;
	size_t	 len;
	int	 rv;

	if ((text = safefile_read(src, VM_MIG_TLS_MAX, 0, &len, cause)) ==
	    NULL)
		return (-1);
	rv = spice_tls_put(dfd, name, text, uid, cause);
	explicit_bzero(text, len);
	free(text);
	return (rv);
}

/* DIR/vms/NAME/mig-tls with the files QEMU's endpoint wants. */
static char *
vm_migrate_tls_dir(struct vm *vm, int server, char **cause)
{
	const struct cluster_conf	*cc = qmpd->cluster;
	const char			*side = server ? "server" : "client";
	char				*dir, cert[32], key[32];
	uid_t				 uid;
	int				 dfd = -1;

	if ((uid = vm_uid_lookup(vm->def.name)) == (uid_t)-1) {
		xasprintf(cause, "VM %s has no uid", vm->def.name);
		return (NULL);
	}
	xasprintf(&dir, "%s/vms/%s/mig-tls", qmpd->state_dir, vm->def.name);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	/* One a VM of this name left here (another uid) is taken over. */
	if ((dfd = safefile_open(dir, O_RDONLY | O_DIRECTORY, 0,
	    SAFEFILE_ANY_OWNER, cause)) == -1)
		goto fail;
	if (fchown(dfd, uid, uid) == -1 || fchmod(dfd, 0700) == -1) {
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	snprintf(cert, sizeof cert, "%s-cert.pem", side);
	snprintf(key, sizeof key, "%s-key.pem", side);
	if (vm_migrate_tls_copy(dfd, "ca-cert.pem", cc->ca, uid, cause) != 0 ||
	    vm_migrate_tls_copy(dfd, cert, cc->cert, uid, cause) != 0 ||
	    vm_migrate_tls_copy(dfd, key, cc->key, uid, cause) != 0)
		goto fail;
	close(dfd);
	return (dir);
fail:
	if (dfd != -1)
		close(dfd);
	free(dir);
	return (NULL);
}

/*
 * Set vm's QEMU up for a TLS stream: the credentials (server on the
 * target, which asks the source for a client certificate of the CA;
 * client on the source, which checks the target's against hostname),
 * then migrate-set-parameters. 0 and the commands queued (cb gets each
 * reply), 1 when this host has no cluster certificates (the stream
 * stays plain), -1 with a cause.
 */
int
vm_migrate_tls(struct vm *vm, int server, const char *hostname,
    void (*cb)(struct qmp *, json_t *, const char *, const char *, void *),
    char **cause)
{
	const struct cluster_conf	*cc = qmpd->cluster;
	char				*dir;
	json_t				*params;

	if (cc == NULL || cc->ca == NULL || cc->cert == NULL ||
	    cc->key == NULL)
		return (1);
	if ((dir = vm_migrate_tls_dir(vm, server, cause)) == NULL)
		return (-1);
	/* A failed migration before this one left its object behind. */
	qmp_execute(vm->qmp, "object-del", json_pack("{s:s}", "id",
	    VM_MIG_TLS_ID), NULL, NULL);
	qmp_execute(vm->qmp, "object-add", json_pack("{s:s,s:s,s:s,s:s,s:b}",
	    "qom-type", "tls-creds-x509", "id", VM_MIG_TLS_ID, "dir", dir,
	    "endpoint", server ? "server" : "client", "verify-peer", 1), cb,
	    vm);
	params = json_pack("{s:s}", "tls-creds", VM_MIG_TLS_ID);
	if (hostname != NULL)
		json_object_set_new(params, "tls-hostname",
		    json_string(hostname));
	qmp_execute(vm->qmp, "migrate-set-parameters", params, cb, vm);
	free(dir);
	return (0);
}

/*
 * The source's side, from the target's prepare answer: when the target
 * listens for TLS (its "tls"), this QEMU gets the client credentials and
 * checks the target's certificate against the address it sends to, for
 * the RAM stream and, with --storage copy, the NBD mirror alike. 0 (TLS
 * set up, or not wanted), -1 with a cause.
 */
int
vm_migrate_tls_peer(struct vm *vm, json_t *target,
    void (*cb)(struct qmp *, json_t *, const char *, const char *, void *),
    char **cause)
{
	const char	*uri;
	char		*host, *colon, *why = NULL;
	int		 rv;

	if (!json_is_true(json_object_get(target, "tls")))
		return (0);
	uri = json_string_value(json_object_get(target, "uri"));
	host = xstrdup(strncmp(uri, "tcp:", 4) == 0 ? uri + 4 : uri);
	if ((colon = strrchr(host, ':')) != NULL)
		*colon = '\0';
	rv = vm_migrate_tls(vm, 0, host, cb, &why);
	free(host);
	if (rv != 0) {
		xasprintf(cause, "the target wants a TLS stream: %s", rv == 1 ?
		    "this host has no cluster certificates" : why);
		free(why);
		return (-1);
	}
	vm->mig->tls = 1;
	return (0);
}

/* The id of the credentials, for the NBD server and client of a copy. */
const char *
vm_migrate_tls_id(void)
{
	return (VM_MIG_TLS_ID);
}
