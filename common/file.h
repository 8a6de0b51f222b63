/* Files written whole or not at all, even across a crash. */
#ifndef QDESK_FILE_H
#define QDESK_FILE_H

#include <sys/types.h>

/*
 * Replace path with the len bytes at buf: written to a new temporary
 * file beside it with mode (exactly; owner and group too unless -1),
 * synced, renamed over path, and the directory synced so that the rename
 * lasts. Returns 0, or -1 with errno set and, if cause is not NULL, a
 * one-line "STEP PATH: reason" in it; path is then as it was, unless only
 * the last step, the sync of the directory, failed.
 */
int	file_write_atomic(const char *path, const void *buf, size_t len,
	    mode_t mode, uid_t owner, gid_t group, char **cause);

#endif
