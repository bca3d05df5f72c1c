#!/usr/bin/env bash
# Expert-parallel `selma run` over 2 ranks (suite mpi; exit 77 without MPI), on a tiny
# base model and a two-skill pipeline (tests/test_pipeline.c's):
#   - the two experts train on different ranks (rank 0's log.txt names each one's rank);
#   - every expert's adapter and the merged adapter equal the one-process run's, byte
#     for byte (the stage directories have the same names: the same inputs);
#   - a 2-rank rerun skips every stage;
#   - a 2-rank run stopped by --stop-after exits 3 and, rerun, resumes from the
#     checkpoints and ends with the same adapters;
#   - rank 1 SIGSTOPped while it trains its expert: rank 0, idle once its own expert
#     is done, exits non-zero within SELMA_COMM_TIMEOUT saying "rank 1 did not answer".
set -uo pipefail
test=test_mpi_run
source "$(dirname "$0")/mpi_lib.sh"
export SELMA_COMM_TIMEOUT=60

cat > "$tmp/pre.ini" <<EOT
[model]
world = shapes
image_size = 32
channels = 8, 16
layers_per_block = 1
cross_attn = 0, 1
heads = 2, 2
norm_groups = 4
text_width = 16
text_layers = 1
text_heads = 2
text_mlp = 32
max_tokens = 48
[train]
steps = 2
batch = 2
warmup = 1
threads = 1
[output]
checkpoint_every = 0
dir = $tmp/pre
EOT
cat > "$tmp/p.ini" <<EOT
[run]
name = tiny
methods = experts, selma
seeds = 1
threads = 1
[model]
base = $tmp/pre/model
[prompts]
skills = count, spatial
n_train = 4
n_val = 2
n_test = 3
seed = 5
[generate]
steps = 2
cfg = 2
batch = 8
[lora]
rank = 2
alpha = 2
[train]
steps = 6
batch = 2
lr = 1e-3
checkpoint_every = 3
select = val
log_every = 1
[eval]
steps = 2
cfg = 1, 3
batch = 8
EOT
"$selma" pretrain "$tmp/pre.ini" > "$tmp/pre.out" 2>&1 || { cat "$tmp/pre.out"; err "pretraining the tiny base"; exit 1; }

# run DIR OUT [mpirun...]: the pipeline into $tmp/DIR, its output in $tmp/OUT.out;
# prints the time it took.
run() {
    local dir=$1 name=$2; shift 2
    local t0=$(date +%s%N)
    "$@" "$selma" run "$tmp/p.ini" run.dir="$tmp/$dir" "${extra[@]}" > "$tmp/$name.out" 2>&1
    local st=$?
    echo "$name: exit $st after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    return $st
}

# same_adapters A B: every train and merge stage of A has B's adapter bytes.
same_adapters() {
    local n=0 d
    for d in "$tmp/$1"/work/train-* "$tmp/$1"/work/merge-*; do
        cmp -s "$d/lora.safetensors" "$tmp/$2/work/${d##*/}/lora.safetensors" || { echo "differs: ${d##*/}"; return 1; }
        n=$((n + 1))
    done
    [ $n -eq 3 ] || { echo "$n adapters, expected 2 experts and 1 merge"; return 1; }
}

extra=()
run one one || { cat "$tmp/one.out"; err "the one-process run failed"; exit 1; }
run two two "${mpirun[@]}" || { cat "$tmp/two.out"; err "the 2-rank run failed"; exit 1; }
grep -q "results: $tmp/two" "$tmp/two.out" || err "the 2-rank run printed no results line"
grep -q "trained on rank 0" "$tmp/two/log.txt" && grep -q "trained on rank 1" "$tmp/two/log.txt" \
    || { cat "$tmp/two/log.txt" >&2; err "the experts did not train on both ranks"; }
grep "trained on rank" "$tmp/two/log.txt" | sed 's/.*expert-parallel: /  /'
same_adapters one two && echo "2 ranks = 1 process: both experts and the merged adapter identical" \
    || err "the 2-rank adapters differ from the one-process run's"
[ -f "$tmp/two/results.json" ] && [ -f "$tmp/two/report.html" ] || err "the 2-rank run wrote no report"

run two two-again "${mpirun[@]}" || { cat "$tmp/two-again.out"; err "the 2-rank rerun failed"; }
if grep -q "running" "$tmp/two-again.out"; then
    grep "running" "$tmp/two-again.out" >&2; err "the 2-rank rerun ran a stage again"
else
    echo "the 2-rank rerun skipped every stage"
fi

extra=(--stop-after 3)
run stopped stopped-first "${mpirun[@]}"; st=$?
[ $st -eq 3 ] || { cat "$tmp/stopped-first.out" >&2; err "--stop-after 3 over 2 ranks exited $st, not 3"; }
extra=()
run stopped stopped "${mpirun[@]}" || { cat "$tmp/stopped.out"; err "the resumed 2-rank run failed"; }
[ "$(grep -c "resumed from" "$tmp/stopped.out")" -eq 2 ] || { cat "$tmp/stopped.out" >&2; err "both experts should resume"; }
same_adapters one stopped && echo "stopped at step 3 and resumed over 2 ranks: adapters identical" \
    || err "the resumed 2-rank run's adapters differ"
# A silent rank 1 mid-training (a longer run, so that there is a "mid").
export SELMA_COMM_TIMEOUT=4 SELMA_TEST_TAG="mpi_run_$$"
timeout -s KILL 60 "${mpirun[@]}" "$selma" run "$tmp/p.ini" run.dir="$tmp/stop" train.steps=2000 \
    > "$tmp/stop.out" 2>&1 &
mpid=$! waited=0
until grep -q "running on rank 1" "$tmp/stop.out"; do
    sleep 0.05; waited=$((waited + 1))
    [ $waited -gt 600 ] && { err "stop: rank 1 did not start training within 30 s"; kill -KILL $mpid; break; }
done
if victim=$(rank1_pid); then
    sleep 0.5
    t0=$(date +%s%N)
    kill -STOP "$victim"
    wait $mpid; st=$?
    kill -KILL "$victim" 2>/dev/null
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "stop: rank 1 stopped while training; mpirun exited $st after $ms ms"
    [ $st -ne 0 ] || err "stop: mpirun exited 0"
    [ $ms -lt 30000 ] || err "stop: took $ms ms (timeout 4 s)"
    grep -q "rank 0: rank 1 did not answer within 4 s" "$tmp/stop.out" \
        || { cat "$tmp/stop.out" >&2; err "stop: rank 0 did not name the silent rank 1"; }
else
    err "stop: rank 1 not found"; kill -KILL $mpid
fi
[ $fail -eq 0 ] && echo "test_mpi_run: passed"
exit $fail
