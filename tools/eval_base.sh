#!/bin/sh
# Scores a shapes base model the way models/weights/README.md reports it: held-out
# prompts of the five skills and pretraining-style captions (100 each, seed 7; the
# seeds the pipeline's prompt splits never use), ground truth rendered, the model's
# images drawn with DDIM (20 steps) at each guidance scale, then `selma eval`.
#
#   tools/eval_base.sh MODEL_DIR OUT_DIR [CFG ...]     (default guidance: 3 5)
#
# EVAL_N (default 100) sets the prompts per skill and the captions drawn; EVAL_SEED
# (default 7) the prompt seed (8 is the validation set for choosing between bases,
# e.g. a pretraining length, so that 7 stays untouched by the choice). Set
# OPENBLAS_NUM_THREADS=1 on a busy machine: OpenBLAS threads that wait for a core spin
# in the kernel (a 100-image run took 71 s on one thread, and over 15 minutes with the
# default two threads beside a training run).
# Prints one table per guidance scale and the ground truth's and shuffled-caption
# scores for reference. Needs the built selma (./run build).
set -eu
model=$1 out=$2
shift 2
cfgs=${*:-3 5}
selma=${SELMA:-$(dirname "$0")/../build/experiments/selma}
mkdir -p "$out"
n=${EVAL_N:-100}
[ -f "$out/truth.h5" ] || "$selma" world render --skill all --n "$n" --seed "${EVAL_SEED:-7}" --out "$out/truth.h5"
[ -f "$out/truth-pre.h5" ] || "$selma" world render --skill pretrain --n "$n" --seed "${EVAL_SEED:-7}" --out "$out/truth-pre.h5"
echo "== ground truth renders"
"$selma" eval --dataset "$out/truth.h5" | sed -n 2,3p
"$selma" eval --dataset "$out/truth-pre.h5" | sed -n 3p
for g in $cfgs; do
    for set in truth truth-pre; do
        "$selma" generate --model "$model" --prompts "$out/$set.h5" --out "$out/gen-$set-cfg$g.h5" \
            --steps 20 --cfg "$g" --seed 0 --batch 50 > /dev/null
    done
    echo "== $model, guidance $g"
    "$selma" eval --dataset "$out/gen-truth-cfg$g.h5" --json "$out/scores-cfg$g.json" | sed -n '2,8p'
    "$selma" eval --dataset "$out/gen-truth-pre-cfg$g.h5" | sed -n 3p | sed 's/^all /captions/'
    echo "-- the same images scored against other items' prompts:"
    "$selma" eval --dataset "$out/gen-truth-cfg$g.h5" --shuffle-prompts | sed -n 3p
    "$selma" eval --dataset "$out/gen-truth-pre-cfg$g.h5" --shuffle-prompts | sed -n 3p | sed 's/^all /captions/'
done
