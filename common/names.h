/* Names an admin gives things: VMs, images, networks, users, pools. */
#ifndef QDESK_NAMES_H
#define QDESK_NAMES_H

/*
 * A name is [a-z0-9][a-z0-9-]{0,62}: safe as a file name, a QEMU -name, a
 * URL path segment and an LMDB key. what names the thing ("VM", "image")
 * for the cause. Returns 0 or -1 with *cause set.
 */
int	names_valid(const char *name, const char *what, char **cause);

#endif
