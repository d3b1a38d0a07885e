/* test_dist.c: lib/dist.c's side that needs no job: the launcher found in the environment
 * (mpirun's, MPICH's and srun's variables, junk ignored), rank 0 of 1 by default, and a build
 * without MPI refusing to be one of several ranks (dist.c is compiled here without MPI, whatever
 * the build has). The reductions themselves run under mpirun in tests/cli/test-dist.sh. */
#undef PG_HAVE_MPI
#include "../../lib/dist.c"

#include "../tap.h"

#include <stdlib.h>

static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_LOCAL_RANK",
                             "MPI_LOCALRANKID", "SLURM_LOCALID"};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
}

int main(void)
{
    clear_env();
    is_int(pg_dist_launched_world(), 0, "no launcher in the environment: started by itself");
    struct pg_dist d;
    is_int(pg_dist_init(&d), 0, "by itself: init succeeds");
    ok(d.rank == 0 && d.world == 1 && !d.mpi, "by itself: rank 0 of 1, no MPI");
    float x[3] = {1, 2, 3};
    double v[2] = {4, 5};
    int m = 7;
    ok(pg_dist_sum_floats(&d, x, 3) == 0 && x[0] == 1 && x[2] == 3, "one rank: the sum is the rank's own floats");
    ok(pg_dist_sum_doubles(&d, v, 2) == 0 && v[1] == 5, "one rank: the sum is the rank's own doubles");
    ok(pg_dist_max_int(&d, &m) == 0 && m == 7 && pg_dist_bcast_double(&d, v) == 0 && v[0] == 4,
       "one rank: max and broadcast keep the value");
    pg_dist_abort(&d, 1); /* returns: there is no job to end */
    pg_dist_finalize(&d);

    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    is_int(pg_dist_launched_world(), 4, "mpirun's OMPI_COMM_WORLD_SIZE");
    clear_env();
    setenv("PMI_SIZE", "3", 1);
    is_int(pg_dist_launched_world(), 3, "MPICH's PMI_SIZE");
    clear_env();
    setenv("SLURM_STEP_NUM_TASKS", "8", 1);
    is_int(pg_dist_launched_world(), 8, "srun's SLURM_STEP_NUM_TASKS");
    setenv("SLURM_STEP_NUM_TASKS", "8x", 1);
    is_int(pg_dist_launched_world(), 0, "junk in the variable is no launcher");
    setenv("SLURM_STEP_NUM_TASKS", "0", 1);
    is_int(pg_dist_launched_world(), 0, "zero ranks is no launcher");
    clear_env();

    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    is_int(pg_dist_init(&d), PG_E_UNSUPPORTED, "without MPI, one of 2 ranks is refused");
    ok(strstr(pg_error_message(), "one of 2 ranks") && strstr(pg_error_message(), "no MPI"),
       "saying why: %s", pg_error_message());
    setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
    is_int(pg_dist_init(&d), 0, "without MPI, mpirun -np 1 is one process");
    ok(d.world == 1 && d.rank == 0, "rank 0 of 1");
    pg_dist_finalize(&d);
    clear_env();
    return done_testing();
}
