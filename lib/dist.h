/* dist.h: the ranks of one data-parallel job. A command started by mpirun (Open MPI, MPICH) or
 * srun is one rank of several: pg_dist_init finds the launcher in the environment and joins the
 * job through MPI. Started by itself it is rank 0 of 1 and touches no MPI (no start-up cost, and
 * a build without MPI works as before; it refuses to run as one of several ranks).
 *
 * Every reduction is deterministic: sums are taken in rank order whatever algorithms MPI picks,
 * so a rerun with the same number of ranks gives the same bits. The large sum (gradients) is a
 * reduce-scatter then an all-gather through MPI_Alltoall / MPI_Allgather: each rank sums one
 * slice of every rank's array, so the bytes each rank sends and receives do not grow with the
 * number of ranks.
 *
 * Errors: a failed MPI call is reported like any library error (MPI's default handler aborts the
 * job first, which is what a failed collective must do: the other ranks would wait forever). A
 * rank that fails on its own (a bad file, a diverged loss) calls pg_dist_abort after printing its
 * error, so the job ends with status 1 instead of hanging in the next collective. */
#ifndef PG_DIST_H
#define PG_DIST_H

#include <stddef.h>

struct pg_dist {
    int rank, world;  /* 0 of 1 without a launcher */
    int local_rank;   /* the rank among the job's ranks on this machine (the GPU to use) */
    int mpi;          /* MPI was initialized (finalize at the end) */
    float *buf;       /* pg_dist_sum_floats' scratch, kept between calls */
    size_t cap;       /* its floats */
};

/* The number of ranks the environment says this process was started as one of (mpirun's
 * OMPI_COMM_WORLD_SIZE, MPICH's PMI_SIZE, srun's SLURM_STEP_NUM_TASKS), or 0 when it was started
 * by itself. */
int pg_dist_launched_world(void);

/* Joins the job (MPI_Init) when launched as a rank, else sets up rank 0 of 1. @return 0, or
 * PG_E_UNSUPPORTED when started as a rank by a build without MPI, PG_E_LIB on an MPI failure. */
int pg_dist_init(struct pg_dist *d);

/* Leaves the job (MPI_Finalize) and frees the scratch. */
void pg_dist_finalize(struct pg_dist *d);

/* Ends every rank of the job with this status (MPI_Abort); without MPI, returns. */
void pg_dist_abort(const struct pg_dist *d, int status);

/* x[0..n) = the sum over ranks of every rank's x, in rank order, on every rank (n the same on
 * every rank). @return 0, or PG_E_NOMEM (the scratch) / PG_E_LIB. */
int pg_dist_sum_floats(struct pg_dist *d, float *x, size_t n);

/* Every rank gets every array from its owner: arrays k = 0..n-1 of sizes[k] floats at ptrs[k]
 * (the same list on every rank), array k written by rank owner[k]; the others' copies are
 * overwritten with the owner's bits (one MPI_Allgatherv of the owned arrays, packed in order).
 * @return 0, or PG_E_NOMEM / PG_E_LIB. */
int pg_dist_share(struct pg_dist *d, float *const *ptrs, const size_t *sizes, const int *owner, size_t n);

/* The same for a few doubles (gathered whole, then summed in rank order). */
int pg_dist_sum_doubles(const struct pg_dist *d, double *v, int n);

/* *v = the largest of the ranks' values. */
int pg_dist_max_int(const struct pg_dist *d, int *v);

/* *v = rank 0's value, on every rank. */
int pg_dist_bcast_double(const struct pg_dist *d, double *v);

/* buf[0..n) = rank 0's bytes, on every rank (a GPU communicator's id). */
int pg_dist_bcast_bytes(const struct pg_dist *d, void *buf, int n);

#endif
