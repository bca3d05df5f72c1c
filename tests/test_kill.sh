#!/usr/bin/env bash
# Kill-and-resume (suite slow): a tiny `selma pretrain` with a checkpoint after every
# step is SIGKILLed at random moments -- mid-step, mid-checkpoint-write, mid-prune,
# mid-model-write -- and restarted each time, until it finishes. Checks:
#   - no restart fails: a resume never picks a partial checkpoint (it would be
#     refused by its checksum or its layout, and the run would exit 1);
#   - after every kill, every checkpoint directory marked DONE is whole (selma
#     inspect validates it) and the newest one is what the next run resumes from;
#   - the final weights and the final checkpoint equal an uninterrupted run's, byte
#     for byte.
# Usage: test_kill.sh [TRIALS] (default 30); SELMA_BUILD_ROOT names the build.
set -uo pipefail
trials=${1:-30}
selma="${SELMA_BUILD_ROOT:?run through meson test}/experiments/selma"
tmp=$(mktemp -d /tmp/test_kill.XXXXXX)
fail=0
trap 'if [ $fail -eq 0 ]; then rm -rf "$tmp"; else echo "test_kill: files kept in $tmp" >&2; fi' EXIT
err() { echo "test_kill: FAILED: $*" >&2; fail=1; }

config() {  # config DIR STEPS
    cat <<EOF
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
steps = $2
batch = 4
warmup = 2
log_every = 1
threads = 1
[output]
dir = $1
checkpoint_every = 1
keep = 2
EOF
}

steps=40
config "$tmp/ref" $steps > "$tmp/ref.ini"
config "$tmp/kill" $steps > "$tmp/kill.ini"

t0=$(date +%s%N)
"$selma" pretrain "$tmp/ref.ini" > "$tmp/ref.out" 2>&1 || { cat "$tmp/ref.out"; err "reference run failed"; exit 1; }
full_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "uninterrupted run: $steps steps in $full_ms ms"

# Kill delays are drawn over a quarter of a whole run, so that most trials kill and
# each still moves the run forward; RANDOM is seeded for a repeatable sequence of
# delays (the moments a kill lands still vary with the machine's load).
RANDOM=12345
span=$(( full_ms / 4 > 50 ? full_ms / 4 : 50 ))
killed=0 finished=0 resumed=0 mid_write=0 trial=0
while [ $trial -lt "$trials" ]; do
    trial=$((trial + 1))
    delay_ms=$(( (RANDOM * 32768 + RANDOM) % span ))
    "$selma" pretrain "$tmp/kill.ini" > "$tmp/run.out" 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null  # no "Killed" line from bash
    st=$?
    grep -q "resumed from" "$tmp/run.out" && resumed=$((resumed + 1))
    if [ $st -eq 137 ]; then
        killed=$((killed + 1))
        # Killed inside a checkpoint write: a temporary or a directory without DONE left.
        for d in "$tmp"/kill/checkpoints/step_*; do
            [ -d "$d" ] && [ ! -f "$d/DONE" ] && { mid_write=$((mid_write + 1)); break; }
        done
    elif [ $st -eq 0 ]; then
        finished=$((finished + 1))  # done before the kill: start over to go on killing
        rm -rf "$tmp/kill"
    else
        cat "$tmp/run.out" >&2
        err "trial $trial: run exited $st (after ${delay_ms} ms)"
    fi
    # Every checkpoint that claims to be complete must be whole.
    for d in "$tmp"/kill/checkpoints/step_*; do
        [ -f "$d/DONE" ] || continue
        "$selma" inspect "$d/state.safetensors" > /dev/null 2>&1 || err "trial $trial: $d has DONE but is not whole"
        [ -s "$d/state.json" ] || err "trial $trial: $d has DONE but no state.json"
    done
done
# The last run is never killed; it must resume and finish.
same=identical
"$selma" pretrain "$tmp/kill.ini" > "$tmp/run.out" 2>&1 || { cat "$tmp/run.out" >&2; err "final run failed"; }
for f in model/unet/diffusion_pytorch_model.safetensors model/text_encoder/model.safetensors \
         "checkpoints/step_$(printf %06d $steps)/state.safetensors" "checkpoints/step_$(printf %06d $steps)/state.json"; do
    cmp -s "$tmp/ref/$f" "$tmp/kill/$f" || { err "$f differs from the uninterrupted run"; same=DIFFERENT; }
done
echo "test_kill: $trial trials: $killed killed ($mid_write inside a checkpoint write), $finished finished before the kill, $resumed resumed from a checkpoint; final weights and checkpoint $same"
[ $killed -ge 20 ] || err "only $killed trials killed a run (want >= 20)"
exit $fail
