/* dist.c: the ranks of one job through MPI (see dist.h). */
#define _POSIX_C_SOURCE 200809L
#include "dist.h"

#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PG_HAVE_MPI
#include <mpi.h>
#endif

/* A positive count from the environment variable, or 0. */
static int env_count(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < 1 || v > 1 << 20 ? 0 : (int)v;
}

int pg_dist_launched_world(void)
{
    int n = env_count("OMPI_COMM_WORLD_SIZE");
    if (!n) n = env_count("PMI_SIZE");
    if (!n) n = env_count("SLURM_STEP_NUM_TASKS"); /* inside srun's step only, not sbatch's script */
    return n;
}

static int local_rank_from_env(void)
{
    const char *names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *s = getenv(names[i]);
        if (s && *s) return atoi(s);
    }
    return 0;
}

#ifdef PG_HAVE_MPI
static int mpi_failed(int code, const char *call)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", code);
    return pg_error(PG_E_LIB, "mpi: %s failed: %s", call, text);
}
#define MPI_TRY(call)                                                                                                  \
    do {                                                                                                               \
        int mpi_rc_ = (call);                                                                                          \
        if (mpi_rc_ != MPI_SUCCESS) return mpi_failed(mpi_rc_, #call);                                                 \
    } while (0)
#endif

int pg_dist_init(struct pg_dist *d)
{
    memset(d, 0, sizeof *d);
    d->world = 1;
    int launched = pg_dist_launched_world();
    if (!launched) return 0;
    d->local_rank = local_rank_from_env();
#ifdef PG_HAVE_MPI
    int inited = 0;
    MPI_TRY(MPI_Initialized(&inited));
    if (!inited) MPI_TRY(MPI_Init(NULL, NULL));
    d->mpi = 1;
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &d->world));
    return 0;
#else
    if (launched > 1)
        return pg_error(PG_E_UNSUPPORTED,
                        "started as one of %d ranks (mpirun or srun), but this build has no MPI: install "
                        "libopenmpi-dev and rebuild, or run one process",
                        launched);
    return 0;
#endif
}

void pg_dist_finalize(struct pg_dist *d)
{
#ifdef PG_HAVE_MPI
    if (d->mpi) MPI_Finalize();
#endif
    free(d->buf);
    memset(d, 0, sizeof *d);
    d->world = 1;
}

void pg_dist_abort(const struct pg_dist *d, int status)
{
#ifdef PG_HAVE_MPI
    if (d->mpi && d->world > 1) MPI_Abort(MPI_COMM_WORLD, status);
#else
    (void)d, (void)status;
#endif
}

int pg_dist_sum_floats(struct pg_dist *d, float *x, size_t n)
{
    if (d->world <= 1 || n == 0) return 0;
#ifdef PG_HAVE_MPI
    const size_t w = (size_t)d->world, chunk = (n + w - 1) / w;
    if (chunk > (size_t)0x7fffffff) return pg_error(PG_E_INVAL, "mpi: a sum of %zu floats is too large", n);
    if (2 * w * chunk > d->cap) {
        float *nb = realloc(d->buf, 2 * w * chunk * sizeof *nb);
        if (!nb) return pg_error(PG_E_NOMEM, "mpi: no memory for the sum of %zu floats", n);
        d->buf = nb, d->cap = 2 * w * chunk;
    }
    float *send = d->buf, *recv = d->buf + w * chunk;
    memcpy(send, x, n * sizeof *x);
    memset(send + n, 0, (w * chunk - n) * sizeof *send);
    /* recv[r·chunk ..] = rank r's values of this rank's slice [rank·chunk, rank·chunk + chunk) */
    MPI_TRY(MPI_Alltoall(send, (int)chunk, MPI_FLOAT, recv, (int)chunk, MPI_FLOAT, MPI_COMM_WORLD));
    float *mine = send; /* the slice's sum, in rank order */
    for (size_t i = 0; i < chunk; i++) {
        float s = recv[i];
        for (size_t r = 1; r < w; r++) s += recv[r * chunk + i];
        mine[i] = s;
    }
    /* every rank's summed slice, in rank order: the whole sum */
    MPI_TRY(MPI_Allgather(mine, (int)chunk, MPI_FLOAT, recv, (int)chunk, MPI_FLOAT, MPI_COMM_WORLD));
    memcpy(x, recv, n * sizeof *x);
    return 0;
#else
    (void)x;
    return pg_error(PG_E_UNSUPPORTED, "mpi: this build has no MPI");
#endif
}

int pg_dist_share(struct pg_dist *d, float *const *ptrs, const size_t *sizes, const int *owner, size_t n)
{
    if (d->world <= 1 || n == 0) return 0;
#ifdef PG_HAVE_MPI
    const int w = d->world;
    int *counts = calloc((size_t)w, sizeof *counts), *displs = calloc((size_t)w, sizeof *displs);
    size_t total = 0, mine = 0;
    int rc = counts && displs ? 0 : pg_error(PG_E_NOMEM, "mpi: no memory to share %zu arrays", n);
    for (size_t k = 0; k < n && !rc; k++) {
        size_t c = (size_t)counts[owner[k]] + sizes[k];
        if (c > 0x7fffffff) rc = pg_error(PG_E_INVAL, "mpi: rank %d's share is too large", owner[k]);
        else counts[owner[k]] = (int)c;
        total += sizes[k];
    }
    for (int r = 1; r < w && !rc; r++) displs[r] = displs[r - 1] + counts[r - 1];
    if (!rc && total + (size_t)counts[d->rank] > d->cap) {
        float *nb = realloc(d->buf, (total + (size_t)counts[d->rank]) * sizeof *nb);
        if (!nb) rc = pg_error(PG_E_NOMEM, "mpi: no memory to share %zu floats", total);
        else d->buf = nb, d->cap = total + (size_t)counts[d->rank];
    }
    if (!rc) {
        float *all = d->buf, *own = d->buf + total;
        for (size_t k = 0; k < n; k++) /* this rank's arrays, in order */
            if (owner[k] == d->rank) memcpy(own + mine, ptrs[k], sizes[k] * sizeof *own), mine += sizes[k];
        int e = MPI_Allgatherv(own, (int)mine, MPI_FLOAT, all, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
        if (e != MPI_SUCCESS) rc = mpi_failed(e, "MPI_Allgatherv");
        for (int r = 0; r < w && !rc; r++) { /* rank r's segment holds its arrays in order */
            size_t at = (size_t)displs[r];
            for (size_t k = 0; k < n; k++)
                if (owner[k] == r) {
                    if (r != d->rank) memcpy(ptrs[k], all + at, sizes[k] * sizeof *all);
                    at += sizes[k];
                }
        }
    }
    free(counts), free(displs);
    return rc;
#else
    (void)ptrs, (void)sizes, (void)owner;
    return pg_error(PG_E_UNSUPPORTED, "mpi: this build has no MPI");
#endif
}

int pg_dist_sum_doubles(const struct pg_dist *d, double *v, int n)
{
    if (d->world <= 1 || n <= 0) return 0;
#ifdef PG_HAVE_MPI
    double *all = malloc((size_t)d->world * (size_t)n * sizeof *all);
    if (!all) return pg_error(PG_E_NOMEM, "mpi: no memory for a sum of %d values", n);
    int rc = MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS)
        for (int i = 0; i < n; i++) {
            double s = all[i];
            for (int r = 1; r < d->world; r++) s += all[(size_t)r * n + i];
            v[i] = s;
        }
    free(all);
    return rc == MPI_SUCCESS ? 0 : mpi_failed(rc, "MPI_Allgather");
#else
    (void)v;
    return pg_error(PG_E_UNSUPPORTED, "mpi: this build has no MPI");
#endif
}

int pg_dist_max_int(const struct pg_dist *d, int *v)
{
    if (d->world <= 1) return 0;
#ifdef PG_HAVE_MPI
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return 0;
#else
    (void)v;
    return pg_error(PG_E_UNSUPPORTED, "mpi: this build has no MPI");
#endif
}

int pg_dist_bcast_bytes(const struct pg_dist *d, void *buf, int n)
{
    if (d->world <= 1 || n <= 0) return 0;
#ifdef PG_HAVE_MPI
    MPI_TRY(MPI_Bcast(buf, n, MPI_BYTE, 0, MPI_COMM_WORLD));
    return 0;
#else
    (void)buf;
    return pg_error(PG_E_UNSUPPORTED, "mpi: this build has no MPI");
#endif
}

int pg_dist_bcast_double(const struct pg_dist *d, double *v)
{
    if (d->world <= 1) return 0;
#ifdef PG_HAVE_MPI
    MPI_TRY(MPI_Bcast(v, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    return 0;
#else
    (void)v;
    return pg_error(PG_E_UNSUPPORTED, "mpi: this build has no MPI");
#endif
}
