/* progress.h: a one-line progress report on stderr for long work.
 *
 * "label  done/total unit  pct%  rate unit/s  ETA m:ss", redrawn in place at most 5 times a
 * second, and finished with a newline. Disabled unless requested: commands enable it by default
 * when stderr is a terminal and turn it off with -q. Not thread-safe: update from one thread.
 */
#ifndef PG_PROGRESS_H
#define PG_PROGRESS_H

#include <stdint.h>

struct pg_progress {
    const char *label;
    const char *unit;
    uint64_t total;   /* 0: unknown (no percentage or ETA) */
    uint64_t done;
    double t0, last;
    int enabled;
    int drawn;
    void *stream;     /* FILE* to draw on: stderr unless changed after init */
};

/* @return seconds on a monotonic clock. */
double pg_now(void);

void pg_progress_init(struct pg_progress *p, const char *label, const char *unit, uint64_t total, int enabled);

/* Sets the amount done and redraws if enough time has passed. */
void pg_progress_update(struct pg_progress *p, uint64_t done);

/* Draws the final state and ends the line. */
void pg_progress_finish(struct pg_progress *p);

#endif
