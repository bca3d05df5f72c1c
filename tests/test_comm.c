// runtime/comm in one process (suite unit; the several-rank cases are in the mpi
// suite, tests/test_train_dp.c and tests/test_mpi_faults.sh):
//   - not launched, the world is rank 0 of 1 and every collective is a no-op or a copy;
//   - init is idempotent; SELMA_COMM_TIMEOUT is read, and a bad value is refused;
//   - the reduction's arithmetic (comm_sum_into, comm_average) is the fixed order
//     ((x0 + x1) + x2) / 3 that the data-parallel trainer relies on;
//   - comm_local_rank follows the launchers' variables.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "runtime/comm.h"
#include "runtime/error.h"

static void unset_launchers(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "PMIX_RANK",
                          "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                          "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

static void test_single_process(void) {
    comm *w = NULL, *again = NULL;
    setenv("SELMA_COMM_TIMEOUT", "7.5", 1);
    EXPECT(comm_init(&w) == 0, "%s", err_msg());
    EXPECT_TRUE(comm_init(&again) == 0 && again == w);
    EXPECT_TRUE(comm_rank(w) == 0 && comm_size(w) == 1 && comm_local_rank(w) == 0);
    EXPECT_TRUE(comm_timeout(w) == 7.5);
    comm_set_timeout(w, 2);
    EXPECT_TRUE(comm_timeout(w) == 2);

    float x[5] = {1.5f, -2, 3, 0.25f, 1e-30f}, x0[5];
    memcpy(x0, x, sizeof x);
    comm_allreduce_sum(w, x, 5, "test");
    EXPECT_TRUE(memcmp(x, x0, sizeof x) == 0);
    comm_allreduce_avg(w, x, 5, "test");
    EXPECT_TRUE(memcmp(x, x0, sizeof x) == 0);
    comm_allreduce_sum(w, x, 0, "empty");

    char msg[16] = "hello", all[16];
    comm_bcast(w, msg, sizeof msg, 0, "test");
    EXPECT_TRUE(!strcmp(msg, "hello"));
    memset(all, 0, sizeof all);
    comm_gather(w, msg, sizeof msg, all, 0, "test");
    EXPECT_TRUE(!strcmp(all, "hello"));
    memset(all, 0, sizeof all);
    comm_allgather(w, msg, sizeof msg, all, "test");
    EXPECT_TRUE(!strcmp(all, "hello"));
    comm_barrier(w, "test");
    comm_finalize();
    comm_finalize();  // twice is harmless

    // A timeout that is not a positive number is refused with a message naming it.
    setenv("SELMA_COMM_TIMEOUT", "soon", 1);
    EXPECT_TRUE(comm_init(&w) == -1 && strstr(err_msg(), "SELMA_COMM_TIMEOUT"));
    setenv("SELMA_COMM_TIMEOUT", "0", 1);
    EXPECT_TRUE(comm_init(&w) == -1);
    unsetenv("SELMA_COMM_TIMEOUT");
    EXPECT_TRUE(comm_init(&w) == 0 && comm_timeout(w) == 300);
    comm_finalize();
}

// Without MPI in the build, a launch as several ranks must not run N lone copies.
static void test_launched_without_mpi(void) {
#ifndef SELMA_MPI
    comm *w;
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    EXPECT_TRUE(comm_init(&w) == -1 && strstr(err_msg(), "without MPI"));
    unset_launchers();
#endif
}

static void test_local_rank(void) {
    comm *w;
    EXPECT_TRUE(comm_init(&w) == 0);
    setenv("SLURM_LOCALID", "3", 1);
    EXPECT_TRUE(comm_local_rank(w) == 3);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);  // OpenMPI's own first
    EXPECT_TRUE(comm_local_rank(w) == 1);
    unset_launchers();
    comm_finalize();
}

// The arithmetic shared by the all-reduce and one process emulating ranks: the first
// buffer is copied (so -0 stays -0), the others added in order, then one division.
static void test_reduction_order(void) {
    float a[3] = {1e8f, -0.0f, 1.0f / 3}, b[3] = {1.0f, -0.0f, 1.0f / 3}, c[3] = {-1e8f, -0.0f, 1.0f / 3};
    float acc[3];
    comm_sum_into(acc, a, 3, 1);
    comm_sum_into(acc, b, 3, 0);
    comm_sum_into(acc, c, 3, 0);
    comm_average(acc, 3, 3);
    float want0 = ((1e8f + 1.0f) + -1e8f) / 3.0f;  // 0: 1 is lost in 1e8 + 1
    EXPECT(acc[0] == want0, "%g != %g", acc[0], want0);
    EXPECT_TRUE(acc[1] == 0 && signbit(acc[1]));
    EXPECT_TRUE(acc[2] == ((1.0f / 3 + 1.0f / 3) + 1.0f / 3) / 3.0f);
    float one[2] = {3, 5};
    comm_average(one, 2, 1);
    EXPECT_TRUE(one[0] == 3 && one[1] == 5);
}

int main(void) {
    unset_launchers();
    test_single_process();
    test_launched_without_mpi();
    test_local_rank();
    test_reduction_order();
    return check_report("test_comm");
}
