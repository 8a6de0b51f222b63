/*
 * What a shared image store needs beyond the rest (image store add
 * --shared): every host indexes the files of one directory in a table of
 * its own, so a host may meet an image another host imported there that
 * its index does not know yet. Files are named NAME-RANDOM.FORMAT
 * (imgstore_new_file), so the file of an image is found by its name.
 */
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "store-private.h"
#include "store.h"
#include "xmalloc.h"

#define STORE_SHARED_ID_LEN	8	/* hex digits of imgstore_new_file */

/* Is file name NAME-XXXXXXXX.FORMAT? Its format ("qcow2", "raw"), or NULL. */
static const char *
store_shared_match(const char *file, const char *name)
{
	size_t		 n = strlen(name), i;
	const char	*p;

	if (strncmp(file, name, n) != 0 || file[n] != '-')
		return (NULL);
	p = file + n + 1;
	for (i = 0; i < STORE_SHARED_ID_LEN; i++)
		if (strchr("0123456789abcdef", p[i]) == NULL || p[i] == '\0')
			return (NULL);
	p += STORE_SHARED_ID_LEN;
	if (strcmp(p, ".qcow2") == 0)
		return ("qcow2");
	if (strcmp(p, ".raw") == 0)
		return ("raw");
	return (NULL);
}

/*
 * Index standalone image name of a shared store from its file, which
 * another host put there (image import --store), unless this index knows
 * it already. Exactly one standalone file of that name must be there.
 */
int
imgstore_learn(struct imgstore *st, const char *name, char **cause)
{
	DIR		*d;
	struct dirent	*de;
	json_t		*rec;
	const char	*format, *fmt = NULL;
	char		*file = NULL, *why = NULL;
	int		 fd, n = 0, rc;

	if ((rec = imgstore_get(st, name, &why)) != NULL) {
		json_decref(rec);
		return (0);
	}
	free(why);
	if (!st->shared)
		return (store_fail(cause, IMGSTORE_ENOTFOUND, "no image named "
		    "%s", name));
	if ((fd = dup(st->dirfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		rc = store_fail(cause, IMGSTORE_ERR, "%s: %s", st->dir,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return (rc);
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if ((format = store_shared_match(de->d_name, name)) == NULL)
			continue;
		n++;
		free(file);
		file = xstrdup(de->d_name);
		fmt = format;
	}
	closedir(d);
	if (n != 1) {
		rc = store_fail(cause, n == 0 ? IMGSTORE_ENOTFOUND :
		    IMGSTORE_EINVAL, "no image named %s here, and %s %s-*.qcow2 "
		    "in %s", name, n == 0 ? "no file" : "more than one file",
		    name, st->dir);
		free(file);
		return (rc);
	}
	/* A clone has a backing file: refused here, as it must be. */
	rc = imgstore_add_file(st, name, file, fmt, "base", NULL, cause);
	free(file);
	return (rc);
}
