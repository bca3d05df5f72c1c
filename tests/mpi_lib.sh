# Sourced by the mpi suite's shell tests, with $test set to the test's name: exits 77
# (skipped) without MPI; sets selma, mpirun (2 ranks), tmp (removed when the test
# passes, kept and named when it fails), fail, err and rank1_pid.
selma="${SELMA_BUILD_ROOT:?run through meson test}/experiments/selma"
"$selma" version | grep -q "mpi: built" || { echo "$test: skipped (built without MPI)"; exit 77; }
command -v mpirun > /dev/null || { echo "$test: skipped (no mpirun)"; exit 77; }
mpirun=(mpirun --oversubscribe --allow-run-as-root -np 2)
tmp=$(mktemp -d "/tmp/$test.XXXXXX")
fail=0
trap 'if [ $fail -eq 0 ]; then rm -rf "$tmp"; else echo "$test: files kept in $tmp" >&2; fi' EXIT
err() { echo "$test: FAILED: $*" >&2; fail=1; }

# The pid of this test's rank 1: the rank whose environment holds SELMA_TEST_TAG.
rank1_pid() {
    local env e p
    for e in /proc/[0-9]*/environ; do
        env=$( { tr '\0' '\n' < "$e"; } 2>/dev/null) || continue
        if grep -qx "SELMA_TEST_TAG=$SELMA_TEST_TAG" <<< "$env" && grep -qx "OMPI_COMM_WORLD_RANK=1" <<< "$env"; then
            p=${e#/proc/}; echo "${p%/environ}"; return 0
        fi
    done
    return 1
}
