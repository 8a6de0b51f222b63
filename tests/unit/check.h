/*
 * The unit tests' one assertion, in the manner of LMDB's mtest: print the
 * file, line and expression that failed, count it, keep going.  main()
 * returns check_exit() so meson sees a non-zero status on any failure.
 */
#ifndef QDESK_CHECK_H
#define QDESK_CHECK_H

#include <stdio.h>

static int check_failures;
static int check_count;

#define CHECK(expr) do {						\
	check_count++;							\
	if (!(expr)) {							\
		check_failures++;					\
		fprintf(stderr, "%s:%d: CHECK failed: %s\n",		\
		    __FILE__, __LINE__, #expr);				\
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *check_a_ = (a), *check_b_ = (b);			\
	check_count++;							\
	if (check_a_ == NULL || check_b_ == NULL ||			\
	    strcmp(check_a_, check_b_) != 0) {				\
		check_failures++;					\
		fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s "	\
		    "(\"%s\" vs \"%s\")\n", __FILE__, __LINE__, #a, #b,	\
		    check_a_ ? check_a_ : "(null)",			\
		    check_b_ ? check_b_ : "(null)");			\
	}								\
} while (0)

static inline int
check_exit(void)
{
	printf("%d checks, %d failed\n", check_count, check_failures);
	return (check_failures == 0 ? 0 : 1);
}

#endif
