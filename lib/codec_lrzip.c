/* codec_lrzip.c: lrzip through the Debian lrzip program (0.651), which has no library.
 *
 * Debian builds only the lrzip CLI (no liblrzip.so, no Lrzip.h), so each call runs it on files
 * in a private mkdtemp folder:
 *
 *   compress    lrzip -q -f -z -L 9 -T -p 1 -N NICE -o DIR/out DIR/in
 *   decompress  lrzip -d -q -f -N NICE -o DIR/out DIR/in.lrz
 *
 *   -z     ZPAQ backend (context mixing; the Top record's "lrzip -z -L 9"); without it, LZMA
 *   -L 9   level 1..9 (lrzip's default is 7)
 *   -T     no LZ4 compressibility pre-test: without it lrzip judges int6/int8 weights
 *          incompressible and stores them raw (spec/deps.md §2)
 *   -p 1   one thread. lrzip cuts a chunk into blocks of max(10 MB, chunk/threads) for its
 *          compression threads, so above 10 MB the bytes depend on -p (checked: a 24 MB input
 *          gives different files with -p 1 and -p 2; with -p 1 the same file under -m 2, 10 and
 *          100, i.e. whatever RAM lrzip thinks it has). Parallelism comes from running one lrzip
 *          per stream instead.
 *   -N n   our own nice value: lrzip renices itself to 19 by default, which starves it on a busy
 *          machine (measured 0.32 s instead of 0.19 s per small call under load); a lower value
 *          than ours would need privileges
 *   -q -f  no progress display; overwrite (the folder is ours anyway)
 *   LRZIP=NOCONFIG in its environment so /etc/lrzip.conf and ~/.lrzip/lrzip.conf cannot change
 *   the settings; TMP/TMPDIR point into the private folder for its own temporaries.
 *
 * Files rather than pipes: lrzip reads stdin and buffers stdout in memory itself (it must seek
 * to fill in chunk headers), and a decompression from stdin must read it whole first; files give
 * it the size up front, need no poll loop, and leave nothing to deadlock. Its chatter ("Warning,
 * low memory for chosen compression settings", ratios, timings) goes to a log file in the folder
 * whose last line becomes the error message if lrzip fails.
 *
 * Determinism: with these flags the output is a function of the input bytes alone (measured with
 * lrzip 0.651: identical files across runs, across -p 1/2/4/8 for inputs up to 10 MB, across -m
 * and after touching the input; the header holds the size, not a time stamp or file name). It can
 * change with the lrzip version.
 *
 * Corrupt input: lrzip checks its own magic and chunk headers and an MD5 of the whole output, and
 * exits non-zero. Before running it we check the 24-byte header ourselves (magic "LRZI", not
 * encrypted: an encrypted file would ask for a password; the stored size equal to the expected
 * size, so lrzip is never asked to write more than that), and afterwards the output's size.
 */
#define _GNU_SOURCE /* environ */
#include "codec.h"

#include "err.h"
#include "xio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define LRZ_HEADER 24

/* Our nice value as text for -N, or 0 (then lrzip keeps its default) if it cannot be read. */
static int own_nice(char *buf, size_t cap)
{
    errno = 0;
    int prio = getpriority(PRIO_PROCESS, 0);
    if (prio == -1 && errno) return 0;
    if (prio < -20) prio = -20;
    if (prio > 19) prio = 19;
    snprintf(buf, cap, "%d", prio);
    return 1;
}

static const char *lrzip_program(void)
{
    const char *p = getenv("PG_LRZIP");
    return p && *p ? p : "lrzip";
}

/* The private folder and the names in it. */
struct lrz_dir {
    char dir[4096];
    char in[4200], out[4200], log[4200];
};

static int lrz_dir_make(struct lrz_dir *d, const char *in_name)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    if ((size_t)snprintf(d->dir, sizeof d->dir, "%s/pg-lrzip.XXXXXX", tmp) >= sizeof d->dir)
        return pg_error(PG_E_IO, "lrzip: temporary folder name too long: %s", tmp);
    if (!mkdtemp(d->dir)) return pg_error_errno(PG_E_IO, "lrzip: cannot create a temporary folder in %s", tmp);
    snprintf(d->in, sizeof d->in, "%s/%s", d->dir, in_name);
    snprintf(d->out, sizeof d->out, "%s/out", d->dir);
    snprintf(d->log, sizeof d->log, "%s/log", d->dir);
    return 0;
}

/* Removes the folder and whatever is in it (lrzip may leave temporaries of its own). */
static void lrz_dir_remove(struct lrz_dir *d)
{
    DIR *dp = opendir(d->dir);
    struct dirent *e;
    char path[4400];
    while (dp && (e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", d->dir, e->d_name);
        unlink(path);
    }
    if (dp) closedir(dp);
    rmdir(d->dir);
}

static int write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return pg_error_errno(PG_E_IO, "cannot create '%s'", path);
    int rc = pg_write_all(fd, data, n, path);
    if (close(fd) != 0 && !rc) rc = pg_error_errno(PG_E_IO, "cannot write '%s'", path);
    return rc;
}

/* Reads lrzip's output: a file of at most `max` bytes into a new buffer (*out, *out_n), or, when
 * dst is given, exactly `max` bytes into dst. */
static int read_output(const char *path, size_t max, void *dst, unsigned char **out, size_t *out_n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pg_error_errno(PG_E_IO, "lrzip wrote no output '%s'", path);
    struct stat st;
    int rc = 0;
    unsigned char *buf = dst;
    if (fstat(fd, &st) != 0) {
        rc = pg_error_errno(PG_E_IO, "cannot stat '%s'", path);
    } else if ((uint64_t)st.st_size > max || (dst && (uint64_t)st.st_size != max)) {
        rc = pg_error(PG_E_FORMAT, "lrzip output is %lld bytes, expected %s%zu", (long long)st.st_size,
                      dst ? "" : "at most ", max);
    } else if (!dst && !(buf = pg_malloc(st.st_size ? (size_t)st.st_size : 1))) {
        rc = PG_E_NOMEM;
    } else {
        size_t got = 0;
        rc = pg_read_upto(fd, buf, (size_t)st.st_size, &got, path);
        if (!rc && got != (size_t)st.st_size) rc = pg_error(PG_E_IO, "'%s' shrank while being read", path);
    }
    close(fd);
    if (dst) return rc;
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_n = (size_t)st.st_size;
    return 0;
}

/* lrzip's progress and bookkeeping lines, never the reason for a failure. */
static int noise_line(const char *l)
{
    static const char *const noise[] = {"Fatal error - exiting", "Stored:", "Output file", "Output filename",
                                        "Decompressing", "Average", "Total time", "Warning, low memory"};
    for (size_t i = 0; i < sizeof noise / sizeof noise[0]; i++)
        if (!strncmp(l, noise[i], strlen(noise[i]))) return 1;
    return !*l;
}

/* The last line lrzip printed that says what went wrong ("MD5 CHECK FAILED.", "zpipe error:
 * Invalid component type"), for error messages. */
static void last_log_line(const char *log, char *line, size_t cap)
{
    line[0] = 0;
    FILE *f = fopen(log, "rb");
    if (!f) return;
    char buf[4096];
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    long start = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    size_t n = (size >= 0 && fseek(f, start, SEEK_SET) == 0) ? fread(buf, 1, sizeof buf - 1, f) : 0;
    fclose(f);
    buf[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\r' || buf[i] == '\t' || buf[i] == 0) buf[i] = buf[i] == '\r' ? '\n' : ' ';
    /* walk the lines backwards */
    char *end = buf + n;
    while (end > buf) {
        while (end > buf && (end[-1] == '\n' || end[-1] == ' ')) *--end = 0;
        char *begin = end;
        while (begin > buf && begin[-1] != '\n') begin--;
        if (!noise_line(begin)) {
            snprintf(line, cap, "%s", begin);
            return;
        }
        end = begin;
    }
}

/* The environment lrzip runs with: ours minus LRZIP/TMP/TMPDIR, plus the settings above. */
static char **child_env(const struct lrz_dir *d, char *bufs[3])
{
    size_t n = 0;
    while (environ && environ[n]) n++;
    char **env = pg_malloc((n + 4) * sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LRZIP=", 6) && strncmp(environ[i], "TMP=", 4) && strncmp(environ[i], "TMPDIR=", 7))
            env[k++] = environ[i];
    size_t len = strlen(d->dir) + 8;
    bufs[0] = pg_strdup("LRZIP=NOCONFIG");
    bufs[1] = pg_malloc(len);
    bufs[2] = pg_malloc(len + 3);
    if (!bufs[0] || !bufs[1] || !bufs[2]) {
        free(env);
        return NULL;
    }
    snprintf(bufs[1], len, "TMP=%s", d->dir);
    snprintf(bufs[2], len + 3, "TMPDIR=%s", d->dir);
    env[k++] = bufs[0];
    env[k++] = bufs[1];
    env[k++] = bufs[2];
    env[k] = NULL;
    return env;
}

static int not_found(void)
{
    const char *prog = lrzip_program();
    if (strcmp(prog, "lrzip"))
        return pg_error(PG_E_UNSUPPORTED, "lrzip not found (PG_LRZIP=%s): install the Debian package lrzip", prog);
    return pg_error(PG_E_UNSUPPORTED, "lrzip not found: install the Debian package lrzip");
}

/* Runs lrzip with argv (argv[0] is replaced by the program), stdin from /dev/null, stdout and
 * stderr to `log`. @return 0 when it exits with status 0. */
static int run_lrzip(const struct lrz_dir *d, char **argv, const char *log)
{
    const char *prog = lrzip_program();
    argv[0] = (char *)prog;
    char *bufs[3] = {NULL, NULL, NULL};
    char **env = child_env(d, bufs);
    if (!env) {
        for (int i = 0; i < 3; i++) free(bufs[i]);
        return PG_E_NOMEM;
    }
    posix_spawn_file_actions_t fa;
    int rc = 0, err;
    pid_t pid;
    if ((err = posix_spawn_file_actions_init(&fa))) {
        errno = err;
        rc = pg_error_errno(PG_E_NOMEM, "cannot run lrzip");
        goto out_env;
    }
    if ((err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) ||
        (err = posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600)) ||
        (err = posix_spawn_file_actions_adddup2(&fa, 1, 2))) {
        errno = err;
        rc = pg_error_errno(PG_E_NOMEM, "cannot run lrzip");
        goto out_fa;
    }
    /* glibc's posix_spawnp reports a failed exec (ENOENT: not installed) as its return value. */
    err = posix_spawnp(&pid, prog, &fa, NULL, argv, env);
    if (err == ENOENT) {
        rc = not_found();
        goto out_fa;
    }
    if (err) {
        errno = err;
        rc = pg_error_errno(PG_E_IO, "cannot run %s", prog);
        goto out_fa;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            rc = pg_error_errno(PG_E_IO, "waiting for %s", prog);
            goto out_fa;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char line[512];
        last_log_line(log, line, sizeof line);
        if (WIFSIGNALED(status))
            rc = pg_error(PG_E_LIB, "%s was killed by signal %d%s%s", prog, WTERMSIG(status), *line ? ": " : "", line);
        else
            rc = pg_error(PG_E_LIB, "%s failed (exit %d)%s%s", prog, WEXITSTATUS(status), *line ? ": " : "", line);
    }
out_fa:
    posix_spawn_file_actions_destroy(&fa);
out_env:
    free(env);
    for (int i = 0; i < 3; i++) free(bufs[i]);
    return rc;
}

/* Appends "-N NICE -o OUT IN" and the terminating NULL at argv[k] (5 slots + 1). */
static void finish_argv(char **argv, int k, struct lrz_dir *d, char *nice, size_t cap)
{
    if (own_nice(nice, cap)) {
        argv[k++] = "-N";
        argv[k++] = nice;
    }
    argv[k++] = "-o";
    argv[k++] = d->out;
    argv[k++] = d->in;
    argv[k] = NULL;
}

int pg_lrzip_available(void)
{
    struct lrz_dir d;
    if (lrz_dir_make(&d, "in")) return 0;
    char *argv[] = {NULL, "-V", NULL};
    int rc = run_lrzip(&d, argv, d.log);
    lrz_dir_remove(&d);
    return rc == 0; /* when 0, the error message says why ("lrzip not found: ...") */
}

int pg_lrzip_compress(const struct pg_codec_params *p, const void *src, size_t n, unsigned char **out,
                      size_t *out_n)
{
    struct lrz_dir d;
    PG_TRY(lrz_dir_make(&d, "in"));
    char level[16], threads[16];
    snprintf(level, sizeof level, "%d", p->level);
    snprintf(threads, sizeof threads, "%d", p->lrzip_threads);
    char *argv[16];
    int k = 0;
    argv[k++] = NULL;
    argv[k++] = "-q";
    argv[k++] = "-f";
    if (p->lrzip_zpaq) argv[k++] = "-z";
    argv[k++] = "-L";
    argv[k++] = level;
    argv[k++] = "-T";
    argv[k++] = "-p";
    argv[k++] = threads;
    char nice[16];
    finish_argv(argv, k, &d, nice, sizeof nice);
    int rc = write_file(d.in, src, n);
    if (!rc) rc = run_lrzip(&d, argv, d.log);
    /* lrzip output is at most a little larger than its input; refuse anything absurd. */
    if (!rc) rc = read_output(d.out, n + n / 2 + (1u << 20), NULL, out, out_n);
    lrz_dir_remove(&d);
    return rc;
}

int pg_lrzip_decompress(const void *src, size_t n, void *dst, size_t raw_size)
{
    const unsigned char *h = src;
    if (n < LRZ_HEADER || memcmp(h, "LRZI", 4)) return pg_error(PG_E_FORMAT, "not lrzip data");
    if (h[22]) return pg_error(PG_E_FORMAT, "encrypted lrzip data is not supported");
    uint64_t stored = pg_le64_get(h + 6);
    if (stored != raw_size)
        return pg_error(PG_E_FORMAT, "lrzip data says %llu bytes, expected %zu", (unsigned long long)stored, raw_size);
    struct lrz_dir d;
    PG_TRY(lrz_dir_make(&d, "in.lrz"));
    char nice[16], *argv[12] = {NULL, "-d", "-q", "-f"};
    finish_argv(argv, 4, &d, nice, sizeof nice);
    int rc = write_file(d.in, src, n);
    if (!rc) {
        rc = run_lrzip(&d, argv, d.log);
        if (rc == PG_E_LIB) {
            /* lrzip refused the data: a format error, with lrzip's reason. */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", pg_error_message());
            rc = pg_error(PG_E_FORMAT, "lrzip data is corrupt: %s", msg);
        }
    }
    unsigned char spare[1];
    if (!rc) rc = read_output(d.out, raw_size, dst ? dst : spare, NULL, NULL);
    lrz_dir_remove(&d);
    return rc;
}
