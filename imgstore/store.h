/*
 * The image store: qcow2 and raw files in one directory (DIR/images),
 * indexed in the "images" table of the state database. One record per
 * image, keyed by its name:
 *
 *   {"name": "debian12", "id": "3f9c0a...", "file": "debian12-3f9c0a1b.qcow2",
 *    "format": "qcow2", "kind": "base", "parent": null,
 *    "virtual_size": 21474836480, "allocated_size": 1234567,
 *    "created": 1764130000, "users": ["desk1"], "children": 2}
 *
 * Rules the functions below keep: an image with children is immutable
 * (its file loses its write bits) and cannot be removed; an image a VM
 * uses cannot be removed; every chain is safe by chain.h's rules; a file
 * is complete under its final name before any record points at it, and
 * the index changes of one operation land in one transaction.
 *
 * Files are named NAME-RANDOM.FORMAT, so re-creating a name never reuses
 * a file name. A child process that writes a file into the store (import,
 * flatten) writes QCOW2_WRITE_TMP_PREFIX + file and renames it when done:
 * imgstore_gc removes such leftovers after a crash, unless a process still
 * holds a lock on them.
 *
 * Functions return 0 (or a new object) on success and a negative
 * IMGSTORE_E* (or NULL) with *cause on failure; the code tells the
 * daemon which error class to answer with.
 */
#ifndef QDESK_STORE_H
#define QDESK_STORE_H

#include <jansson.h>

#include "chain.h"

struct db;
struct imgstore;

#define IMGSTORE_ERR		-1	/* I/O or database failure */
#define IMGSTORE_ENOTFOUND	-2	/* no such image */
#define IMGSTORE_EEXISTS	-3	/* name taken */
#define IMGSTORE_EBUSY		-4	/* has children or users */
#define IMGSTORE_EINVAL		-5	/* bad argument, unsafe or bad image */

#define IMGSTORE_NAME_MAX	63

/* Open the store in dir (created 0700 if missing) over the database. */
struct imgstore	*imgstore_open(struct db *, const char *dir, char **cause);
/*
 * A store on a path every cluster host mounts (image store add --shared):
 * its own table; its files are other hosts' too, so a template there
 * stays read-only even when this index counts no child of it.
 */
struct imgstore	*imgstore_open_table(struct db *, const char *table,
		     int shared, const char *dir, char **cause);
void		 imgstore_close(struct imgstore *);

/* The canonical store directory, borrowed. */
const char	*imgstore_dir(struct imgstore *);

/* Image names: [a-z0-9][a-z0-9._-]{0,62}. Returns 0 or -1 with *cause. */
int		 imgstore_name_valid(const char *name, char **cause);

/* A fresh file name for image name in format ("qcow2", "raw"). */
char		*imgstore_new_file(const char *name, const char *format);

/* The full path of a file of the store (dir + "/" + file), allocated. */
char		*imgstore_path(struct imgstore *, const char *file);

/*
 * Index file, already complete in the store, as image name of the given
 * format and kind ("base", "template", "clone", "snapshot"). With parent,
 * the file's backing file must be the parent's file; without, it must
 * stand alone. The chain is walked and must be safe.
 */
int		 imgstore_add_file(struct imgstore *, const char *name,
		     const char *file, const char *format, const char *kind,
		     const char *parent, char **cause);

/*
 * Create image name as an empty qcow2 overlay over image parent (O(1) in
 * the parent's size), of kind "clone", "template" or "snapshot". The
 * parent becomes immutable.
 */
int		 imgstore_clone(struct imgstore *, const char *parent,
		     const char *name, const char *kind, char **cause);
/* The same, with VM vm as its first user, in the same commit. */
int		 imgstore_clone_for(struct imgstore *, const char *parent,
		     const char *name, const char *kind, const char *vm,
		     char **cause);

/*
 * Replace the overlay of image name with a new empty one over the same
 * parent, discarding what was written to it (stateless desktops). Refused
 * for an image without a parent or with children; the caller makes sure
 * no VM runs on it.
 */
int		 imgstore_reset(struct imgstore *, const char *name,
		     char **cause);

/*
 * Give image name a fresh empty overlay over image target instead (revert
 * to a snapshot); the child count moves from its old parent to target.
 */
int		 imgstore_revert(struct imgstore *, const char *name,
		     const char *target, char **cause);

/*
 * Freeze the content of image name as a new image newname of kind
 * "snapshot" or "template" (extra fields, if any, go in its record), and
 * let name go on as an empty overlay over it: O(1), nothing is copied.
 * Refused while name has children. The caller makes sure no VM writes
 * name's file meanwhile, or switches its QEMU to the new file.
 */
int		 imgstore_freeze(struct imgstore *, const char *name,
		     const char *newname, const char *kind,
		     const json_t *extra, char **cause);

/* Undo a freeze while nothing was written to name's new overlay. */
int		 imgstore_unfreeze(struct imgstore *, const char *name,
		     const char *newname, char **cause);

/*
 * Image name takes file, a standalone qcow2 with the same content already
 * in the store (a flatten), in place of oldfile, and leaves its parent.
 * Refused if name changed file or gained children meanwhile.
 */
int		 imgstore_replace(struct imgstore *, const char *name,
		     const char *file, const char *oldfile, char **cause);

/*
 * Merge image name out of the middle of its chain, in three steps: the
 * one image based on it (*child, allocated); the qemu-img (the path
 * given) rebase command line that makes child's file hold what it read
 * through name and back onto name's parent (*argv, NULL-terminated, for
 * xfreev); once that ran, imgstore_drop takes name out of the index and
 * its file away.
 */
int		 imgstore_merge_child(struct imgstore *, const char *name,
		     char **child, char **cause);
int		 imgstore_merge_argv(struct imgstore *, const char *name,
		     const char *child, const char *qemu_img, char ***argv,
		     char **cause);
int		 imgstore_drop(struct imgstore *, const char *name,
		     char **cause);

/* Remove image name and its file; refused while it has children or users. */
int		 imgstore_rm(struct imgstore *, const char *name, char **cause);
/*
 * A shared store's standalone image name, put there by another host:
 * indexed here from its file (NAME-RANDOM.FORMAT) unless known already.
 */
int		 imgstore_learn(struct imgstore *, const char *name,
		     char **cause);
/* Take name out of the index, its file left (a shared store's clone). */
int		 imgstore_forget(struct imgstore *, const char *name,
		     char **cause);

/* The record of image name (a new reference), allocated_size refreshed. */
json_t		*imgstore_get(struct imgstore *, const char *name,
		     char **cause);

/* Every record, by name (a new array). */
json_t		*imgstore_list(struct imgstore *, char **cause);

/*
 * The chain of image name from top to base, walked on the files and
 * matched against the index: each link has its image name, path, format
 * and virtual size, ready for QEMU -blockdev nodes.
 */
int		 imgstore_chain(struct imgstore *, const char *name,
		     struct chain **, char **cause);

/*
 * Check image name (or every image and file if NULL) with the qcow2 parser
 * and against the index. *report is {"checked": N, "ok": bool,
 * "problems": [{"image": NAME or null, "file": FILE, "problem": TEXT}]}.
 * Returns 0 whenever the check ran, problems or not.
 */
int		 imgstore_verify(struct imgstore *, const char *name,
		     json_t **report, char **cause);

/*
 * Remove files without a record (temporary files included) and records
 * without a file, or only report them with dry_run. *report is
 * {"dry_run": bool, "items": [{"what": "orphan-file" | "temp-file" |
 * "dangling-record" | "mode", "file": FILE, "image": NAME or null,
 * "action": TEXT}]}.
 */
int		 imgstore_gc(struct imgstore *, int dry_run, json_t **report,
		     char **cause);

/*
 * file (a name in the store's directory) is being written by a job of
 * this process: gc keeps it and verify does not report it, lock or not.
 */
void		 imgstore_writing(struct imgstore *, const char *file, int on);

/* Record that VM vm uses (or stopped using) image name. Idempotent. */
int		 imgstore_use(struct imgstore *, const char *name,
		     const char *vm, char **cause);
int		 imgstore_unuse(struct imgstore *, const char *name,
		     const char *vm, char **cause);

#endif
