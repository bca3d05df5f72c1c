#!/usr/bin/env bash
# Faults in a 2-rank data-parallel `selma pretrain` (suite mpi; exit 77 without MPI):
#   - the 2-rank run's final weights equal one process with train.shards = 2, byte
#     for byte, through the whole command (rendering, checkpoints, EMA, model bundle);
#   - rank 1 SIGKILLed after the checkpoint of step 10: mpirun exits non-zero within
#     the timeout, with a message naming rank 1 (mpirun itself sees the death);
#   - rank 1 SIGSTOPped (alive, silent): rank 0 exits non-zero within the timeout
#     (SELMA_COMM_TIMEOUT, 4 s here) saying "rank 1 did not answer";
#   - each interrupted run, restarted, resumes from its last complete checkpoint and
#     ends with weights equal to the uninterrupted run's, byte for byte.
set -uo pipefail
test=test_mpi_faults
source "$(dirname "$0")/mpi_lib.sh"
export SELMA_COMM_TIMEOUT=4
# A tag in every rank's environment, to find this test's rank 1 among all processes.
export SELMA_TEST_TAG="mpi_faults_$$"

# 600 steps: the run must still be going when rank 1 is signalled (the test finds the
# step-10 checkpoint, then rank 1's pid); at ~200 steps/s, 60 steps were over first.
config() {  # config DIR
    cat <<EOT
[model]
image_size = 16
channels = 8, 16
cross_attn = 0, 1
heads = 2, 2
norm_groups = 4
text_width = 16
text_layers = 1
text_heads = 2
text_mlp = 32
[train]
steps = 600
batch = 4
warmup = 2
log_every = 10
threads = 1
[output]
dir = $1
checkpoint_every = 10
keep = 2
EOT
}

same_model() {  # same_model DIR_A DIR_B
    for f in unet/diffusion_pytorch_model.safetensors text_encoder/model.safetensors; do
        cmp -s "$1/model/$f" "$2/model/$f" || return 1
    done
}


for name in ref one kill stop; do config "$tmp/$name" > "$tmp/$name.ini"; done

"${mpirun[@]}" "$selma" pretrain "$tmp/ref.ini" > "$tmp/ref.out" 2>&1 || { cat "$tmp/ref.out"; err "2-rank reference run failed"; exit 1; }
"$selma" pretrain "$tmp/one.ini" train.shards=2 > "$tmp/one.out" 2>&1 || { cat "$tmp/one.out"; err "1-process run failed"; exit 1; }
same_model "$tmp/ref" "$tmp/one" && echo "2 ranks = 1 process with 2 shards: final weights identical" \
    || err "2 ranks and 1 process with train.shards=2 differ"

# fault SIGNAL NAME: starts a 2-rank run, signals rank 1 once step 10 is checkpointed.
fault() {
    local sig=$1 name=$2
    # Never hang here: timeout ends mpirun well past SELMA_COMM_TIMEOUT.
    timeout -s KILL 60 "${mpirun[@]}" "$selma" pretrain "$tmp/$name.ini" > "$tmp/$name.out" 2>&1 &
    local mpid=$! waited=0
    until [ -f "$tmp/$name/checkpoints/step_000010/DONE" ]; do
        sleep 0.05; waited=$((waited + 1))
        [ $waited -gt 600 ] && { err "$name: no checkpoint of step 10 after 30 s"; kill -KILL $mpid; return; }
    done
    local victim
    victim=$(rank1_pid) || { err "$name: rank 1 not found"; kill -KILL $mpid; return; }
    local t0=$(date +%s%N)
    kill -"$sig" "$victim"
    wait $mpid; local st=$?
    kill -KILL "$victim" 2>/dev/null  # a stopped rank left behind
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "$name: rank 1 sent SIG$sig; mpirun exited $st after $ms ms"
    [ $st -ne 0 ] || err "$name: mpirun exited 0 after rank 1 got SIG$sig"
    [ $ms -lt $(( (SELMA_COMM_TIMEOUT + 20) * 1000 )) ] || err "$name: took $ms ms (timeout ${SELMA_COMM_TIMEOUT} s)"
    grep -q "rank 1" "$tmp/$name.out" || { cat "$tmp/$name.out" >&2; err "$name: no message names rank 1"; }
}

fault KILL kill
fault STOP stop
grep -q "rank 0: rank 1 did not answer within 4 s" "$tmp/stop.out" \
    || { cat "$tmp/stop.out" >&2; err "stop: rank 0 did not report the silent rank 1"; }

for name in kill stop; do
    "${mpirun[@]}" "$selma" pretrain "$tmp/$name.ini" > "$tmp/$name.resume.out" 2>&1 \
        || { cat "$tmp/$name.resume.out" >&2; err "$name: the restart failed"; continue; }
    line=$(grep -o "resumed from [^ ]*" "$tmp/$name.resume.out") || { err "$name: the restart did not resume"; continue; }
    echo "$name: restart $line"
    same_model "$tmp/ref" "$tmp/$name" && echo "$name: final weights equal the uninterrupted run's" \
        || err "$name: the resumed run's weights differ from the uninterrupted run's"
done
grep -h "rank 1" "$tmp/kill.out" "$tmp/stop.out" | head -4
[ $fail -eq 0 ] && echo "test_mpi_faults: passed"
exit $fail
