/*
 * Templates between hosts (issue 13): a template (an image of kind
 * "template" or "base" that stands alone) is copied to a host the first
 * time a desktop placed there is made from it; linked clones stay local.
 *
 *   - Each host hashes its templates (sha256sum in a child, never on the
 *     loop), keeps the sum in the image's LMDB record (sha256, and
 *     sha256_of: the file it is of) and publishes images/T = {sha256,
 *     size, format, kind, host} in etcd, create-only: the first host's
 *     copy is the reference every other copy is checked against.
 *   - A host that needs T asks a host whose record lists it for
 *     image.fetch T over the cluster's mutual TLS; the answer line turns
 *     the connection into the file's bytes (a cat child on the serving
 *     side, server.c's stream), which a child here writes to a temporary
 *     file of the store and hashes. Only a file of the published size and
 *     sum is renamed in and indexed; anything else is removed and the
 *     start that needed it fails with why (the next start tries again).
 *   - Starts that need the same template while it is on its way wait on
 *     the one fetch.
 *   - Only a copy imported on its host (not fetched) publishes, and the
 *     newest import of a name is the reference: a template removed and
 *     imported again with other content replaces images/T (CAS on its
 *     revision), and its publisher's image rm deletes it. A copy whose
 *     sum is not images/T's is stale: its host does not list it (so it is
 *     never a source) and a start there removes it and fetches the
 *     cluster's.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "clock.h"
#include "cluster.h"
#include "db.h"
#include "etcd.h"
#include "img.h"
#include "log.h"
#include "peer.h"
#include "proc.h"
#include "qcow2-write.h"
#include "qmpd.h"
#include "splice.h"
#include "store.h"
#include "xmalloc.h"

#define IMAGE_SCAN_MS		2000	/* local templates looked at */
#define IMAGE_STALL_S		30	/* a fetch with no byte this long ends */
#define IMAGE_SHA_LEN		64

struct image_waiter {
	cluster_image_cb		 cb;
	void				*arg;
	TAILQ_ENTRY(image_waiter)	 entry;
};

struct image_fetch {
	char				*name;
	char				*src;		/* the host it comes from */
	char				*sha256;	/* what etcd says */
	long long			 size;
	char				*format;
	char				*kind;
	char				*file;		/* its name in the store */
	char				*tmp;		/* its path while it comes */
	char				*tmpname;	/* the same, kept for gc */
	struct peer			*peer;
	long long			 t0;
	TAILQ_HEAD(, image_waiter)	 waiters;
	LIST_ENTRY(image_fetch)		 entry;
};

static LIST_HEAD(, image_fetch)	 image_fetches =
    LIST_HEAD_INITIALIZER(image_fetches);
static json_t		*images;	/* images/T values by name */
static json_t		*publishing;	/* names with a create in flight */
static json_t		*warned;	/* names whose sum differs: said once */
static char		*hashing;	/* the template a child hashes now */
static struct event	*image_timer;

/* ---- the view of images/ ---- */

void
cluster_image_event(const char *key, json_t *kv, int put)
{
	const char	*name = strchr(key, '/') + 1, *val;
	json_t		*v;

	if (images == NULL)
		images = json_object();
	json_object_del(warned, name);	/* a new reference: say it anew */
	cluster_host_touch();		/* which copies are listed changes */
	if (!put) {
		json_object_del(images, name);
		return;
	}
	val = json_string_value(json_object_get(kv, "value"));
	v = val != NULL ? json_loads(val, 0, NULL) : NULL;
	if (!json_is_string(json_object_get(v, "sha256")) ||
	    !json_is_integer(json_object_get(v, "size"))) {
		log_warnx("cluster: %s: not an image record", key);
		json_decref(v);
		return;
	}
	json_object_set_new(v, "gen", json_integer(cluster_gen));
	json_object_set_new(v, "rev", json_integer(json_integer_value(
	    json_object_get(kv, "mod_revision"))));
	json_object_set_new(images, name, v);
}

/* After a full read: what it lacked was deleted meanwhile. */
void
cluster_image_sweep(unsigned int gen)
{
	const char	*name;
	json_t		*v;
	void		*tmp;

	json_object_foreach_safe(images, tmp, name, v)
		if (json_integer_value(json_object_get(v, "gen")) != gen)
			json_object_del(images, name);
}

/*
 * The first up host whose record lists template name and who has a
 * listener to fetch it from (this host, when it asks, has it not).
 */
static struct cluster_host *
image_source(const char *name)
{
	struct cluster_host	*h;

	TAILQ_FOREACH(h, &cluster_hosts, entry) {
		if (!cluster_host_up(h) ||
		    json_string_value(json_object_get(h->rec, "listen")) ==
		    NULL || !cluster_host_lists(h, "templates", name))
			continue;
		return (h);
	}
	return (NULL);
}

int
cluster_image_gettable(const char *name)
{
	return (json_object_get(images, name) != NULL &&
	    image_source(name) != NULL);
}

/* ---- this host's templates: hashed, then published ---- */

/*
 * An image record that can be copied as it is: a standalone template
 * that no VM writes (a VM's own disk changes under its sum).
 */
static int
image_copyable(json_t *rec)
{
	const char	*kind = json_string_value(json_object_get(rec, "kind"));

	return (kind != NULL && (strcmp(kind, "template") == 0 ||
	    strcmp(kind, "base") == 0) && json_string_value(json_object_get(
	    rec, "parent")) == NULL && json_string_value(json_object_get(rec,
	    "file")) != NULL && json_array_size(json_object_get(rec,
	    "users")) == 0);
}

/* rec's sum if it is of rec's file now, else NULL. */
static const char *
image_sum(json_t *rec)
{
	const char	*of = json_string_value(json_object_get(rec,
	    "sha256_of"));
	const char	*file = json_string_value(json_object_get(rec, "file"));

	if (of == NULL || file == NULL || strcmp(of, file) != 0)
		return (NULL);
	return (json_string_value(json_object_get(rec, "sha256")));
}

/* A migration compares the source's sum of a template with this one's. */
const char *
cluster_image_sum(json_t *rec)
{
	return (image_sum(rec));
}

/*
 * Keep sum (of file) in name's record, unless its file changed; from: the
 * host a fetched copy came from (such a copy never publishes).
 */
static void
image_sum_save(const char *name, const char *file, const char *sum,
    const char *from)
{
	json_t		*rec;
	const char	*now;
	char		*cause = NULL;

	if ((rec = db_get(qmpd->db, DB_IMAGES, name)) == NULL)
		return;
	now = json_string_value(json_object_get(rec, "file"));
	if (now != NULL && strcmp(now, file) == 0) {
		json_object_set_new(rec, "sha256", json_string(sum));
		json_object_set_new(rec, "sha256_of", json_string(file));
		if (from != NULL)
			json_object_set_new(rec, "fetched_from",
			    json_string(from));
		if (db_put(qmpd->db, DB_IMAGES, name, rec, &cause) != 0) {
			log_warnx("image %s: %s", name, cause);
			free(cause);
		}
	}
	json_decref(rec);
}

/* The 64 hex digits sha256sum printed first, or NULL. */
static char *
image_parse_sum(const char *output)
{
	const char	*s = output;
	size_t		 n;

	/* The job keeps the last lines: the sum is the line that has one. */
	while (s != NULL && *s != '\0') {
		n = strspn(s, "0123456789abcdef");
		if (n == IMAGE_SHA_LEN && (s[n] == ' ' || s[n] == '\0' ||
		    s[n] == '\n'))
			return (xstrndup(s, IMAGE_SHA_LEN));
		if ((s = strchr(s, '\n')) != NULL)
			s++;
	}
	return (NULL);
}

struct image_hash {
	char	*name;
	char	*file;
};

static void
image_hash_done(int status, const char *output, void *arg)
{
	struct image_hash	*ih = arg;
	char			*sum;

	if (status != 0 || (sum = image_parse_sum(output)) == NULL)
		log_warnx("cluster: template %s: sha256sum failed: %s",
		    ih->name, output);
	else {
		log_info("cluster: template %s: sha256 %s", ih->name, sum);
		image_sum_save(ih->name, ih->file, sum, NULL);
		free(sum);
	}
	free(hashing);
	hashing = NULL;
	free(ih->name);
	free(ih->file);
	free(ih);
}

/* Hash name's file in a child (one at a time: they read whole files). */
static void
image_hash(const char *name, json_t *rec)
{
	struct image_hash	*ih;
	char			*path, *cause = NULL;
	char			*argv[] = { (char *)"/usr/bin/sha256sum", NULL,
				    NULL };

	ih = xcalloc(1, sizeof *ih);
	ih->name = xstrdup(name);
	ih->file = xstrdup(json_string_value(json_object_get(rec, "file")));
	path = imgstore_path(img_store, ih->file);
	argv[1] = path;
	if (img_job_start(argv, -1, NULL, image_hash_done, ih, &cause) != 0) {
		log_warnx("cluster: template %s: %s", name, cause);
		free(cause);
		free(ih->name);
		free(ih->file);
		free(ih);
	} else
		hashing = xstrdup(name);
	free(path);
}

/* images/T as the view has it, or NULL. */
static json_t *
image_known(const char *name)
{
	return (json_object_get(images, name));
}

/*
 * Is rec (this host's copy of template name) stale: hashed, and not the
 * copy etcd's images/T describes?
 */
static int
image_stale(const char *name, json_t *rec)
{
	json_t		*known = image_known(name);
	const char	*sum = image_sum(rec), *ksum;

	if (known == NULL || sum == NULL || !image_copyable(rec))
		return (0);
	ksum = json_string_value(json_object_get(known, "sha256"));
	return (ksum != NULL && strcmp(ksum, sum) != 0);
}

/*
 * Does this host's record list template name? Not a stale copy, nor a
 * copy not hashed yet while etcd has a sum (it may be stale): a listed
 * copy is one another host may fetch.
 */
int
cluster_image_listable(const char *name, json_t *rec)
{
	if (!image_copyable(rec) || image_known(name) == NULL)
		return (1);
	return (image_sum(rec) != NULL && !image_stale(name, rec));
}

static void
image_publish_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	char	*name = arg;

	if (errclass != NULL)
		log_warnx("cluster: images/%s: %s", name, cause);
	else if (json_is_true(json_object_get(res, "succeeded")))
		log_info("cluster: template %s published", name);
	json_object_del(publishing, name);
	free(name);
}

/*
 * Publish rec's sum as images/name: create-only (rev 0), or in place of
 * the record at revision rev (an older import's).
 */
static void
image_put(const char *name, json_t *rec, const char *sum, int64_t rev)
{
	json_t		*v;
	char		*key, *val, *path;
	struct stat	 sb;

	if (json_object_get(publishing, name) != NULL)
		return;
	path = imgstore_path(img_store, json_string_value(json_object_get(rec,
	    "file")));
	if (stat(path, &sb) != 0) {
		log_warn("cluster: template %s: %s", name, path);
		free(path);
		return;
	}
	free(path);
	v = json_pack("{s:s,s:I,s:O,s:O,s:s,s:I,s:I}", "sha256", sum, "size",
	    (json_int_t)sb.st_size, "format", json_object_get(rec, "format"),
	    "kind", json_object_get(rec, "kind"), "host", cluster_name(),
	    "time", (json_int_t)clock_wall_ms(), "created",
	    json_integer_value(json_object_get(rec, "created")));
	val = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	key = cluster_key("images/%s", name);
	json_object_set_new(publishing, name, json_true());
	etcd_cas(cluster_etcd, key, rev, val, 0, image_publish_cb,
	    xstrdup(name));
	free(key);
	free(val);
}

/*
 * rec, this host's own import of name, hashed to sum: publish it unless
 * etcd has it, or a newer import's; replace an older import's (the
 * template was removed and imported again with other content). A fetched
 * copy never publishes: it is a copy of what etcd says.
 */
static void
image_publish(const char *name, json_t *rec, const char *sum)
{
	json_t		*known = image_known(name);
	const char	*ksum;
	json_int_t	 created, kcreated;

	if (json_object_get(rec, "fetched_from") != NULL)
		return;
	if (known == NULL) {
		image_put(name, rec, sum, 0);
		return;
	}
	ksum = json_string_value(json_object_get(known, "sha256"));
	if (ksum == NULL || strcmp(ksum, sum) == 0)
		return;
	created = json_integer_value(json_object_get(rec, "created"));
	kcreated = json_integer_value(json_object_get(known, "created"));
	if (created > kcreated) {
		if (json_object_get(publishing, name) == NULL)
			log_info("cluster: template %s imported here after "
			    "the one etcd knows, with other content: images/%s "
			    "becomes sha256 %s (was %s, from host %s)", name,
			    name, sum, ksum, json_string_value(json_object_get(
			    known, "host")));
		image_put(name, rec, sum, json_integer_value(json_object_get(
		    known, "rev")));
		return;
	}
	if (json_object_get(warned, name) == NULL) {
		log_warnx("cluster: template %s here is not the one etcd "
		    "knows (sha256 %s, not %s, a newer import on host %s): it "
		    "is never a source; a start here fetches the cluster's",
		    name, sum, ksum, json_string_value(json_object_get(known,
		    "host")));
		json_object_set_new(warned, name, json_true());
	}
}

static void
image_unpublish_cb(void *arg, json_t *res, const char *errclass,
    const char *cause)
{
	char	*name = arg;

	if (errclass != NULL)
		log_warnx("cluster: images/%s: %s", name, cause);
	else if (json_is_true(json_object_get(res, "succeeded")))
		log_info("cluster: template %s removed by its publisher: "
		    "images/%s deleted", name, name);
	free(name);
}

/*
 * image rm of name here: if this host published images/name, it goes
 * (CAS on its revision): an import of that name anywhere is published
 * afresh, and copies fetched from it are stale once it is.
 */
void
cluster_image_removed(const char *name)
{
	json_t		*known = image_known(name);
	const char	*host;
	char		*key;
	int64_t		 rev;

	if (known == NULL || (host = json_string_value(json_object_get(known,
	    "host"))) == NULL || strcmp(host, cluster_name()) != 0)
		return;
	rev = json_integer_value(json_object_get(known, "rev"));
	key = cluster_key("images/%s", name);
	etcd_txn(cluster_etcd, json_pack("[o]", etcd_cmp_mod_revision(key,
	    rev)), json_pack("[o]", etcd_op_delete(key, 0)), NULL,
	    image_unpublish_cb, xstrdup(name));
	free(key);
}

static int
image_scan_cb(const char *name, json_t *rec, void *arg)
{
	const char	*sum;

	if (!image_copyable(rec))
		return (0);
	if ((sum = image_sum(rec)) != NULL)
		image_publish(name, rec, sum);
	else if (hashing == NULL && img_busy(name) == NULL)
		image_hash(name, rec);
	return (0);
}

static void
image_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct timeval	tv = { IMAGE_SCAN_MS / 1000, 0 };

	if (cluster_host_joined() && !cluster_fencing())
		db_foreach(qmpd->db, DB_IMAGES, image_scan_cb, NULL, NULL);
	evtimer_add(image_timer, &tv);
}

void
cluster_image_start(void)
{
	if (image_timer != NULL)
		return;
	if (images == NULL)
		images = json_object();
	publishing = json_object();
	warned = json_object();
	image_timer = evtimer_new(qmpd->base, image_timer_cb, NULL);
	image_timer_cb(-1, 0, NULL);
}

void
cluster_image_stop(void)
{
	if (image_timer != NULL)
		event_free(image_timer);
	image_timer = NULL;
}

/* ---- serving: image.fetch NAME (ROLE_HOST) ---- */

static void
image_serve_done(pid_t pid, int status, const char *output, void *arg)
{
	char	*name = arg, buf[64];

	if (status != 0)
		log_warnx("cluster: sending template %s: cat %s", name,
		    proc_status_text(status, buf, sizeof buf));
	free(name);
}

enum cmd_retval
cluster_image_serve(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", NULL);
	json_t		*rec;
	char		*path = NULL, *cause = NULL;
	char		*argv[] = { (char *)"cat", (char *)"--", NULL, NULL };
	int		 sv[2] = { -1, -1 };

	if ((rec = db_get(qmpd->db, DB_IMAGES, name)) == NULL) {
		cmd_error(req, ERR_NOTFOUND, "host %s has no image %s",
		    cluster_name(), name);
		return (CMD_RETURN_DONE);
	}
	if (!image_copyable(rec)) {
		cmd_error(req, ERR_STATE, "image %s on host %s is not a "
		    "standalone template no VM writes (a clone's template: "
		    "qdesk image flatten %s)", name, cluster_name(), name);
		goto done;
	}
	if (!cluster_image_listable(name, rec)) {
		/* The asker's view of hosts/H was older than ours. */
		cmd_error(req, ERR_STATE, "template %s on host %s is not the "
		    "one etcd knows (sha256 %s): not a source", name,
		    cluster_name(), image_sum(rec) != NULL ? image_sum(rec) :
		    "not known yet");
		goto done;
	}
	path = imgstore_path(img_store, json_string_value(json_object_get(rec,
	    "file")));
	if (access(path, R_OK) != 0) {
		cmd_error(req, ERR_INTERNAL, "image %s: %s: %s", name, path,
		    strerror(errno));
		goto done;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		cmd_error(req, ERR_INTERNAL, "socketpair: %s", strerror(errno));
		goto done;
	}
	argv[2] = path;
	/* cat's stdout is the stream; the loop only moves its bytes. */
	if (proc_spawn(argv, NULL, sv[1], 0, image_serve_done, xstrdup(name),
	    &cause) == -1) {
		cmd_fail(req, ERR_INTERNAL, cause);
		goto done;
	}
	close(sv[1]);
	sv[1] = -1;
	log_info("cluster: sending template %s to %s", name,
	    req->client != NULL ? client_name(req->client) : "a client");
	cmd_reply_fd(req, json_pack("{s:s,s:s?,s:O,s:O}", "name", name,
	    "sha256", image_sum(rec), "format", json_object_get(rec, "format"),
	    "kind", json_object_get(rec, "kind")), sv[0]);
done:
	if (sv[0] != -1)
		close(sv[0]);
	if (sv[1] != -1)
		close(sv[1]);
	free(path);
	json_decref(rec);
	return (CMD_RETURN_DONE);
}

/* ---- fetching ---- */

/* Every waiter hears the end (cause NULL: the template is here). */
static void
image_fetch_end(struct image_fetch *f, const char *cause)
{
	struct image_waiter	*w;

	LIST_REMOVE(f, entry);
	if (cause != NULL)
		log_warnx("cluster: %s", cause);
	while ((w = TAILQ_FIRST(&f->waiters)) != NULL) {
		TAILQ_REMOVE(&f->waiters, w, entry);
		w->cb(cause, w->arg);
		free(w);
	}
	if (f->tmp != NULL)
		unlink(f->tmp);
	if (f->file != NULL)
		imgstore_writing(img_store, strrchr(f->tmpname, '/') + 1, 0);
	free(f->tmpname);
	peer_free(f->peer);
	free(f->name);
	free(f->src);
	free(f->sha256);
	free(f->format);
	free(f->kind);
	free(f->file);
	free(f->tmp);
	free(f);
}

/* The copy is written and hashed: in, or away with why. */
static void
image_fetch_written(int status, const char *output, void *arg)
{
	struct image_fetch	*f = arg;
	struct stat		 sb;
	char			*sum = NULL, *path = NULL, *cause = NULL;
	char			*why = NULL;
	int			 rc;

	if (status != 0 || (sum = image_parse_sum(output)) == NULL) {
		xasprintf(&why, "template %s from host %s: writing the copy "
		    "failed: %s", f->name, f->src, output);
		goto out;
	}
	if (stat(f->tmp, &sb) != 0) {
		xasprintf(&why, "template %s from host %s: %s: %s", f->name,
		    f->src, f->tmp, strerror(errno));
		goto out;
	}
	if (sb.st_size != f->size || strcmp(sum, f->sha256) != 0) {
		xasprintf(&why, "template %s from host %s does not match its "
		    "checksum: got %lld bytes, sha256 %s; etcd has %lld bytes, "
		    "sha256 %s: not registered (a start tries again)", f->name,
		    f->src, (long long)sb.st_size, sum, f->size, f->sha256);
		goto out;
	}
	/* Never a half file indexed: complete under its final name first. */
	path = imgstore_path(img_store, f->file);
	if (fchmodat(AT_FDCWD, f->tmp, 0644, 0) != 0 ||
	    rename(f->tmp, path) != 0) {
		xasprintf(&why, "template %s: %s: %s", f->name, path,
		    strerror(errno));
		goto out;
	}
	free(f->tmp);
	f->tmp = NULL;
	rc = imgstore_add_file(img_store, f->name, f->file, f->format,
	    f->kind, NULL, &cause);
	if (rc != 0) {
		unlink(path);
		xasprintf(&why, "template %s from host %s: %s", f->name,
		    f->src, cause);
		free(cause);
		goto out;
	}
	image_sum_save(f->name, f->file, sum, f->src);
	log_info("cluster: template %s fetched from host %s: %lld bytes, "
	    "sha256 %s, in %lld ms", f->name, f->src, f->size, sum,
	    clock_mono_ms() - f->t0);
	cluster_host_touch();
out:
	image_fetch_end(f, why);
	free(why);
	free(path);
	free(sum);
}

/* The source's answer: its connection is the file now. */
static void
image_fetch_reply(struct peer *p, json_t *ret, const char *errclass,
    const char *desc, void *arg)
{
	struct image_fetch	*f = arg;
	struct bufferevent	*tls, *local;
	struct timeval		 tv = { IMAGE_STALL_S, 0 };
	char			*cause = NULL, *why = NULL;
	char			*argv[] = { (char *)"/bin/sh", (char *)"-c",
				    (char *)"cat <&3 >\"$1\" && exec "
				    "/usr/bin/sha256sum \"$1\"", (char *)"sh",
				    NULL, NULL };
	int			 sv[2];

	if (errclass != NULL) {
		xasprintf(&why, "template %s: host %s: %s", f->name, f->src,
		    desc != NULL ? desc : errclass);
		goto fail;
	}
	if ((tls = peer_take_stream(p)) == NULL) {
		xasprintf(&why, "template %s: host %s sent no stream", f->name,
		    f->src);
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		bufferevent_free(tls);
		xasprintf(&why, "socketpair: %s", strerror(errno));
		goto fail;
	}
	f->file = imgstore_new_file(f->name, f->format);
	xasprintf(&f->tmp, "%s/%s%s", imgstore_dir(img_store),
	    QCOW2_WRITE_TMP_PREFIX, f->file);
	f->tmpname = xstrdup(f->tmp);
	/* image gc leaves a file a job of ours writes alone. */
	imgstore_writing(img_store, strrchr(f->tmpname, '/') + 1, 1);
	argv[4] = f->tmp;
	if (img_job_start(argv, sv[1], NULL, image_fetch_written, f,
	    &cause) != 0) {
		close(sv[0]);
		close(sv[1]);
		bufferevent_free(tls);
		free(f->tmp);
		f->tmp = NULL;
		xasprintf(&why, "template %s: %s", f->name, cause);
		free(cause);
		goto fail;
	}
	close(sv[1]);
	evutil_make_socket_nonblocking(sv[0]);
	local = bufferevent_socket_new(qmpd->base, sv[0],
	    BEV_OPT_CLOSE_ON_FREE);
	log_info("cluster: fetching template %s from host %s (%lld bytes)",
	    f->name, f->src, f->size);
	splice_join(tls, local);
	/* A source that dies mid-way ends the copy short, not never. */
	bufferevent_set_timeouts(tls, &tv, NULL);
	return;
fail:
	/* The peer goes with f; not from under its own callback twice. */
	image_fetch_end(f, why);
	free(why);
}

static void
image_fetch_closed(struct peer *p, const char *cause, void *arg)
{
	/* The reply callback has heard it (Disconnected) or took the stream. */
}

/*
 * A start here needs template name and this host has rec: 1 if it is
 * current, 0 if it was stale and is removed (fetch the cluster's), -1
 * with cause if it is stale and cannot go (clones made from it).
 */
static int
image_drop_stale(const char *name, json_t *rec, char **cause)
{
	const char	*ksum = json_string_value(json_object_get(
			    image_known(name), "sha256"));
	char		*why = NULL;

	if (!image_stale(name, rec))
		return (1);
	if (img_busy(name) != NULL || imgstore_rm(img_store, name, &why) !=
	    0) {
		xasprintf(cause, "template %s here is not the one etcd knows "
		    "(sha256 %s, not %s) and cannot be replaced: %s", name,
		    image_sum(rec), ksum, why != NULL ? why : "it is busy");
		free(why);
		return (-1);
	}
	log_info("cluster: template %s here was stale (sha256 %s, etcd has "
	    "%s): removed, fetching the cluster's", name, image_sum(rec),
	    ksum);
	cluster_host_touch();
	return (0);
}

int
cluster_image_need(const char *name, cluster_image_cb cb, void *arg,
    char **cause)
{
	struct image_fetch	*f;
	struct image_waiter	*w;
	struct cluster_host	*src;
	json_t			*rec, *known;
	const char		*listen;
	char			*addr, *cn;
	int			 rc;

	if ((rec = db_get(qmpd->db, DB_IMAGES, name)) != NULL) {
		rc = image_drop_stale(name, rec, cause);
		json_decref(rec);
		if (rc != 0)
			return (rc);
	}
	LIST_FOREACH(f, &image_fetches, entry)
		if (strcmp(f->name, name) == 0)
			break;
	if (f == NULL) {
		if ((known = json_object_get(images, name)) == NULL) {
			xasprintf(cause, "template %s is on no host of the "
			    "cluster (none has published its checksum: "
			    "images/%s)", name, name);
			return (-1);
		}
		if ((src = image_source(name)) == NULL) {
			xasprintf(cause, "template %s: no host that has it is "
			    "up", name);
			return (-1);
		}
		f = xcalloc(1, sizeof *f);
		f->name = xstrdup(name);
		f->src = xstrdup(src->name);
		f->sha256 = xstrdup(json_string_value(json_object_get(known,
		    "sha256")));
		f->size = json_integer_value(json_object_get(known, "size"));
		f->format = xstrdup(json_string_value(json_object_get(known,
		    "format")) != NULL ? json_string_value(json_object_get(
		    known, "format")) : "qcow2");
		f->kind = xstrdup(json_string_value(json_object_get(known,
		    "kind")) != NULL ? json_string_value(json_object_get(
		    known, "kind")) : "template");
		f->t0 = clock_mono_ms();
		TAILQ_INIT(&f->waiters);
		listen = json_string_value(json_object_get(src->rec, "listen"));
		xasprintf(&addr, "tls:%s", listen);
		xasprintf(&cn, "host:%s", src->name);
		f->peer = peer_open_cn(addr, cn, image_fetch_closed, f, cause);
		free(addr);
		free(cn);
		if (f->peer == NULL) {
			free(f->name);
			free(f->src);
			free(f->sha256);
			free(f->format);
			free(f->kind);
			free(f);
			return (-1);
		}
		LIST_INSERT_HEAD(&image_fetches, f, entry);
		peer_call_stream(f->peer, "image.fetch", json_pack("{s:s}",
		    "name", name), image_fetch_reply, f);
	}
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&f->waiters, w, entry);
	return (0);
}
