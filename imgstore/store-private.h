/*
 * What the three files of the image store share, for them alone:
 * store.c keeps the records, store-edit.c edits chains (clone, reset,
 * freeze, flatten, merge), store-check.c verifies and collects garbage.
 * The helpers below are store.c's; their failures follow store.h (a
 * negative IMGSTORE_E* code with *cause).
 */
#ifndef QDESK_STORE_PRIVATE_H
#define QDESK_STORE_PRIVATE_H

#include <sys/types.h>
#include <sys/stat.h>

#include <stdint.h>

#include <jansson.h>

#include "chain.h"

struct db_txn;

struct imgstore {
	struct db	*db;
	char		*dir;		/* canonical */
	int		 dirfd;
	json_t		*writing;	/* temporary files a job is writing */
	char		*table;		/* its index in the database */
	int		 shared;	/* a directory other hosts index too */
};

int		 store_fail(char **, int, const char *, ...)
		     __attribute__((format(printf, 3, 4)));
const char	*store_str(const json_t *, const char *);
json_int_t	 store_int(const json_t *, const char *);

int		 store_stat(struct imgstore *, const char *, struct stat *);
json_int_t	 store_allocated(struct imgstore *, const char *);
int		 store_chmod(struct imgstore *, const char *, mode_t,
		     mode_t *);
int		 store_set_immutable(struct imgstore *, const char *, int,
		     mode_t *);

json_t		*store_record(const char *, const char *, const char *,
		     const char *, const char *, uint64_t, json_int_t);
json_t		*store_all(struct imgstore *, char **);
int		 store_name_free(struct imgstore *, const char *, char **);
int		 store_txn_get(struct imgstore *, const char *,
		     struct db_txn **, json_t **, char **);
int		 store_commit_child(struct imgstore *, const char *, json_t *,
		     const char *, const json_t *, char **);
int		 store_count_child(struct imgstore *, struct db_txn *,
		     const char *, int,
		     json_int_t *, char **);
char		*store_match_chain(struct chain *, const char *, json_t *);

#endif
