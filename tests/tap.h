/* tap.h: a tiny Test Anything Protocol harness for the C unit tests (header-only).
 *
 * Each test program prints "ok N - name" / "not ok N - name" lines and "1..N" at the end;
 * tests/run.sh counts them. Failures print the values involved as "# " diagnostics.
 * Usage: ok(cond, "name", ...); is_int(got, want, ...); is_close(got, want, atol, rtol, ...);
 * skip_all("reason"); return done_testing();
 */
#ifndef PG_TAP_H
#define PG_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

static void tap_vreport(int pass, const char *fmt, va_list ap)
{
    printf("%sok %d - ", pass ? "" : "not ", ++tap_n);
    vprintf(fmt, ap);
    putchar('\n');
    if (!pass) tap_failed++;
    fflush(stdout);
}

__attribute__((format(printf, 2, 3), unused)) static int ok(int pass, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vreport(pass, fmt, ap);
    va_end(ap);
    return pass;
}

__attribute__((format(printf, 3, 4), unused)) static int is_int(long long got, long long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vreport(got == want, fmt, ap);
    va_end(ap);
    if (got != want) printf("#   got %lld, want %lld\n", got, want);
    return got == want;
}

/* |got - want| <= atol + rtol·|want| (llm.c's comparison). */
__attribute__((format(printf, 5, 6), unused)) static int is_close(double got, double want, double atol, double rtol,
                                                          const char *fmt, ...)
{
    int pass = fabs(got - want) <= atol + rtol * fabs(want);
    va_list ap;
    va_start(ap, fmt);
    tap_vreport(pass, fmt, ap);
    va_end(ap);
    if (!pass) printf("#   got %.17g, want %.17g (atol %g, rtol %g)\n", got, want, atol, rtol);
    return pass;
}

__attribute__((unused)) static void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

/* Removes a test's temporary folder and everything in it (a failure is only a diagnostic). */
__attribute__((unused)) static void remove_tree(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
}

/* A set-up step failed: nothing after it means anything. TAP's "Bail out!" stops the run here. */
__attribute__((format(printf, 1, 2), unused, noreturn)) static void bail_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("Bail out! ");
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    exit(1);
}

__attribute__((unused)) static void skip_all(const char *reason)
{
    printf("1..0 # SKIP %s\n", reason);
    exit(0);
}

__attribute__((unused)) static int done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
