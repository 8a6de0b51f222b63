/*
 * Backing chain safety. A qcow2 image names its backing file with a string
 * QEMU would happily follow anywhere: an absolute path, "..", a json: or
 * nbd: pseudo-protocol, a device, itself. The image store only accepts
 * chains whose every link is a regular file directly in the store, named
 * by a bare file name, with an explicit backing format, no cycle and a
 * bounded depth. The walk reads the first CHAIN_READ_SIZE bytes of each
 * file and never runs QEMU.
 *
 * The walk is written against struct chain_io so that it runs on buffers
 * as well as on files (unit tests, the libFuzzer harness).
 */
#ifndef QDESK_CHAIN_H
#define QDESK_CHAIN_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

#define CHAIN_MAX_DEPTH		64
#define CHAIN_READ_SIZE		(64 * 1024)

struct chain_link {
	char		*name;		/* image name: NULL unless the store
					   fills it in */
	char		*file;		/* bare file name in the store */
	char		*path;		/* store directory + "/" + file */
	char		 format[QCOW2_FORMAT_MAX + 1];	/* "qcow2", "raw" */
	uint64_t	 size;		/* virtual size, bytes */
};

/* A chain from the top (links[0]) to the base (links[n - 1]). */
struct chain {
	u_int			 n;
	struct chain_link	*links;
};

#define CHAIN_REG	0	/* a regular file */
#define CHAIN_SYMLINK	1
#define CHAIN_OTHER	2	/* device, fifo, socket, directory */

struct chain_stat {
	int		type;		/* CHAIN_REG, ... */
	uint64_t	dev;
	uint64_t	ino;
	uint64_t	size;		/* file size, bytes */
};

/*
 * How the walk reads a file of the store. read fills st; if the file is a
 * regular one, it also reads up to len bytes from its start into buf and
 * returns how many, otherwise it returns 0 without reading. It returns -1
 * with *cause if the file cannot be found or read.
 */
struct chain_io {
	ssize_t	(*read)(void *arg, const char *file, uint8_t *buf, size_t len,
		    struct chain_stat *st, char **cause);
	void	 *arg;
};

/*
 * Check the backing file string of an image against the store directory
 * dir (a canonical absolute path, or NULL to accept bare names only).
 * Returns the bare file name it designates, or NULL with *cause.
 */
char	*chain_backing_file(const char *dir, const char *backing,
	     char **cause);

/* Returns 1 if file is a plain file name allowed in the store. */
int	 chain_bare_name(const char *file);

/*
 * Walk the chain of file (a bare name in the store, of format "qcow2" or
 * "raw") through io. Returns 0 and a new chain, or -1 with *cause.
 */
int	 chain_walk_io(const struct chain_io *, const char *dir,
	     const char *file, const char *format, struct chain **,
	     char **cause);

/* The same on the files of directory dir. */
int	 chain_walk(const char *dir, const char *file, const char *format,
	     struct chain **, char **cause);

void	 chain_free(struct chain *);

/*
 * Check a file about to be imported (it lies outside the store): a
 * regular file that parses as format and has no backing file at all.
 * Fills the virtual size.
 */
int	 chain_check_import(const char *path, const char *format,
	     uint64_t *size, char **cause);
/* The same on an open file, called path in causes. */
int	 chain_check_import_fd(int fd, const char *path, const char *format,
	     uint64_t *size, char **cause);

/* A printable, bounded copy of an untrusted string for messages. */
char	*chain_vis(const char *);

#endif
