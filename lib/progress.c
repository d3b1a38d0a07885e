/* progress.c: rate-limited progress line on stderr (see progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdio.h>
#include <time.h>

double pg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void pg_progress_init(struct pg_progress *p, const char *label, const char *unit, uint64_t total, int enabled)
{
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->t0 = p->last = pg_now();
    p->enabled = enabled;
    p->drawn = 0;
    p->stream = stderr;
}

static void human(char *buf, size_t n, double v)
{
    const char *sfx[] = {"", "k", "M", "G", "T"};
    int i = 0;
    while (v >= 1000.0 && i < 4) {
        v /= 1000.0;
        i++;
    }
    snprintf(buf, n, i ? "%.1f%s" : "%.0f%s", v, sfx[i]);
}

static void draw(struct pg_progress *p, double now)
{
    double dt = now - p->t0;
    double rate = dt > 0 ? (double)p->done / dt : 0;
    char d[16], t[16], r[16];
    human(d, sizeof d, (double)p->done);
    human(r, sizeof r, rate);
    if (p->total) {
        human(t, sizeof t, (double)p->total);
        double pct = 100.0 * (double)p->done / (double)p->total;
        double eta = rate > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate : 0;
        int es = (int)(eta + 0.5);
        fprintf(p->stream, "\r%s %s/%s %s %5.1f%% %s %s/s ETA %d:%02d  ", p->label, d, t, p->unit, pct, r,
                p->unit, es / 60, es % 60);
    } else {
        fprintf(p->stream, "\r%s %s %s %s %s/s %.0fs  ", p->label, d, p->unit, r, p->unit, dt);
    }
    fflush(p->stream);
    p->drawn = 1;
}

void pg_progress_update(struct pg_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled) return;
    double now = pg_now();
    if (now - p->last < 0.2) return;
    p->last = now;
    draw(p, now);
}

void pg_progress_finish(struct pg_progress *p)
{
    if (!p->enabled) return;
    draw(p, pg_now());
    fputc('\n', (FILE *)p->stream);
}
