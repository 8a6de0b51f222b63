/*
 * The clocks qdesk reads, in the units it keeps: monotonic for spans and
 * deadlines (nobody can set it back), realtime for what other hosts or
 * people read.
 */
#ifndef QDESK_CLOCK_H
#define QDESK_CLOCK_H

#include <time.h>

long long	 clock_mono_ms(void);
time_t		 clock_mono_s(void);
long long	 clock_wall_ms(void);

#endif
