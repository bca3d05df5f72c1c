#!/usr/bin/env bash
# The SELMA loop on world "sd" (issue 8, item 6): `selma run` on a tiny random-weight
# Stable Diffusion 1.x folder (tests/fixtures/sd_tiny_sd1, made by
# tools/make_sd_fixture.py) with prompts from a file:
#   - prompts from the file split per skill (test first, in file order, duplicates
#     dropped); images drawn by the SD model and decoded by its VAE; experts trained on
#     VAE latents; merged; every method's test images exported with TIFA- and DSG-format
#     question lists (questions only for prompts the shapes grammar parses);
#   - results.json has no DSG/TIFA for world sd (null) and lists the export bundles;
#   - the merged adapter changes the images; a rerun skips every stage and gives the
#     same results.json;
#   - what needs the shapes world's evaluator (filter, select = val, several guidance
#     scales, quality) and malformed prompt files fail before any work, naming the
#     key or file:line;
#   - `selma fold` of the merged adapter into the SD folder gives a diffusers folder
#     (VAE and tokenizer copied) that draws what base + adapter draws;
#   - the shapes world exports the same bundle when [eval] export = true, and scores too.
set -uo pipefail
test=test_sd_run
selma="${SELMA_BUILD_ROOT:?run through meson test}/experiments/selma"
src="${SELMA_SOURCE_ROOT:?run through meson test}"
tmp=$(mktemp -d "/tmp/$test.XXXXXX")
fail=0
trap 'if [ $fail -eq 0 ]; then rm -rf "$tmp"; else echo "$test: files kept in $tmp" >&2; fi' EXIT
err() { echo "$test: FAILED: $*" >&2; fail=1; }

printf '%s\n' '# two skills; the second count prompt is not in the shapes grammar' \
    $'count\tthree red circles' $'count\ta photo of two cats' $'count\ttwo blue squares' \
    $'count\tfour green triangles' $'count\tthree red circles' $'count\ta yellow star' \
    $'count\ttwo small circles' \
    $'spatial\ta blue square left of a green triangle' $'spatial\ta red circle above a yellow triangle' \
    $'spatial\ta green circle below a red square' $'spatial\ta small square right of a large circle' \
    $'spatial\ta blue triangle left of a red circle' $'spatial\ta circle above a square' \
    $'binding\ta red circle and a blue square' > "$tmp/prompts.tsv"

write_config() {  # $1 file, $2 run dir, $3 base model, $4 extra [eval] lines
    cat > "$1" <<EOT
[run]
name = sd-tiny
dir = $2
methods = base, experts, mixed, selma
seeds = 1
threads = 1
[model]
base = $3
[prompts]
file = $tmp/prompts.tsv
skills = count, spatial
n_train = 4
n_val = 0
n_test = 2
[generate]
steps = 2
cfg = 2
batch = 4
[lora]
rank = 2
alpha = 2
[train]
steps = 4
batch = 2
lr = 0.1
checkpoint_every = 2
log_every = 1
[eval]
steps = 2
cfg = 2
batch = 4
$4
EOT
}
write_config "$tmp/sd.ini" "$tmp/run" "$src/tests/fixtures/sd_tiny_sd1" "quality = false"

"$selma" run "$tmp/sd.ini" > "$tmp/out1.txt" 2>&1 || err "selma run on world sd exited $?: $(tail -3 "$tmp/out1.txt")"
grep -q "^results: $tmp/run$" "$tmp/out1.txt" || err "no 'results:' line"
grep -q "encoded to 4x8x8 latents" "$tmp/run/log.txt" || err "the experts did not train on VAE latents"

for m in base expert-count expert-spatial mixed selma; do
    d="$tmp/run/export/$m/seed0"
    [ "$(ls "$d/images" 2> /dev/null | wc -l)" = 4 ] || { err "$m: expected 4 exported images in $d/images"; continue; }
    for f in "$d"/images/*.png; do
        [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = "211PNG" ] || err "$f is not a PNG"
    done
    [ "$(grep -c '"id":' "$d/prompts.json")" = 4 ] || err "$m: prompts.json does not list 4 items"
    grep -q '"n_with_questions":[[:space:]]*3' "$d/manifest.json" || err "$m: manifest: 3 items should have questions"
    grep -q '"count_001"' "$d/manifest.json" || err "$m: the unparsed prompt (count_001) is not listed without questions"
done
d="$tmp/run/export/selma/seed0"
head -1 "$d/dsg_questions.csv" | grep -qx "item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,question_natural_language" ||
    err "dsg_questions.csv: not DSG's columns"
grep -qx 'count_000,three red circles,"circles, ==3",3,1,other,count,"other - count (circles, ==3)",Are there exactly 3 red circles?' "$d/dsg_questions.csv" ||
    err "dsg_questions.csv: no count question with its parent for count_000"
grep -q '^spatial_000,a blue square left of a green triangle,.*,"1,3",relation,spatial,' "$d/dsg_questions.csv" ||
    err "dsg_questions.csv: the relation's two parents are missing"
grep -q '"question":[[:space:]]*"How many red circles are there?"' "$d/tifa_questions.json" || err "tifa_questions.json: no counting question"
grep -q '"answer":[[:space:]]*"3"' "$d/tifa_questions.json" || err "tifa_questions.json: no answer 3"
grep -q '"dsg":[[:space:]]*null' "$tmp/run/results.json" || err "results.json: world sd should have dsg null"
grep -q '"export/selma/seed0"' "$tmp/run/results.json" || err "results.json does not list the export bundle"
cmp -s "$tmp/run/export/base/seed0/images/spatial_000.png" "$d/images/spatial_000.png" &&
    err "the merged adapter left the image unchanged"

cp "$tmp/run/results.json" "$tmp/results1.json"
n1=$(grep -c "^stage .*: running" "$tmp/run/log.txt")
[ "$n1" = 11 ] || err "expected 11 stages (prompts, generate, 3 trainings, merge, 5 evals), log.txt has $n1"
"$selma" run "$tmp/sd.ini" > "$tmp/out2.txt" 2>&1 || err "rerun exited $?"
n2=$(grep -c "^stage .*: running" "$tmp/run/log.txt")
[ "$n2" = "$n1" ] || err "the rerun ran $((n2 - n1)) stages again"
cmp -s "$tmp/results1.json" "$tmp/run/results.json" || err "the rerun's results.json differs"

# `selma fold` of the merged adapter into the SD folder writes a diffusers folder again
# (vae/, tokenizer/, model_index.json copied; weights from the folded model) that
# draws what the base with the adapter folded in at load time draws.
merged=$(ls "$tmp"/run/work/merge-*/lora.safetensors)
"$selma" fold --model "$src/tests/fixtures/sd_tiny_sd1" --lora "$merged" --out "$tmp/folded" > "$tmp/fold.txt" 2>&1 ||
    err "fold of an SD folder exited $?: $(tail -2 "$tmp/fold.txt")"
for f in model_index.json vae/config.json vae/diffusion_pytorch_model.safetensors tokenizer/vocab.json \
         unet/config.json unet/diffusion_pytorch_model.safetensors text_encoder/model.safetensors selma_training.json; do
    [ -f "$tmp/folded/$f" ] || err "folded SD folder: no $f"
done
[ -e "$tmp/folded/selma.json" ] && err "folded SD folder has a selma.json (it must stay a diffusers folder)"
cmp -s "$src/tests/fixtures/sd_tiny_sd1/vae/diffusion_pytorch_model.safetensors" "$tmp/folded/vae/diffusion_pytorch_model.safetensors" ||
    err "folded SD folder: the VAE changed"
prompt="a blue square left of a green triangle"
"$selma" sample --model "$tmp/folded" --prompt "$prompt" --n 2 --steps 2 --cfg 2 --out "$tmp/a.png" > /dev/null 2>&1 ||
    err "sample from the folded SD folder failed"
"$selma" sample --model "$src/tests/fixtures/sd_tiny_sd1" --lora "$merged:1" --prompt "$prompt" --n 2 --steps 2 --cfg 2 \
    --out "$tmp/b.png" > /dev/null 2>&1 || err "sample with --lora failed"
"$selma" sample --model "$src/tests/fixtures/sd_tiny_sd1" --prompt "$prompt" --n 2 --steps 2 --cfg 2 \
    --out "$tmp/c.png" > /dev/null 2>&1 || err "sample of the base failed"
cmp -s "$tmp/a.png" "$tmp/b.png" || err "the folded SD folder draws differently from base + adapter"
cmp -s "$tmp/a.png" "$tmp/c.png" && err "the folded SD folder draws what the base draws"

expect_fail() {  # $1 what, $2 pattern of the message, then the command
    local what=$1 pat=$2
    shift 2
    if "$@" > "$tmp/fail.txt" 2>&1; then err "$what: accepted"; return; fi
    grep -q -- "$pat" "$tmp/fail.txt" || err "$what: message does not say '$pat': $(cat "$tmp/fail.txt")"
}
expect_fail "filter on world sd" "\[generate\] filter: world sd has no exact evaluator" \
    "$selma" run "$tmp/sd.ini" run.dir="$tmp/bad1" generate.filter=true
expect_fail "select = val on world sd" "\[train\] select" "$selma" run "$tmp/sd.ini" run.dir="$tmp/bad1" prompts.n_train=3 prompts.n_val=1 train.select=val
expect_fail "two guidance scales on world sd" "\[eval\] cfg" "$selma" run "$tmp/sd.ini" run.dir="$tmp/bad1" prompts.n_train=3 prompts.n_val=1 eval.cfg=2,4
expect_fail "quality on world sd" "command line: \[eval\] quality: world sd has no ground-truth" \
    "$selma" run "$tmp/sd.ini" run.dir="$tmp/bad1" eval.quality=true
sed '/^quality = false$/d' "$tmp/sd.ini" > "$tmp/sd-quality.ini"  # the default is true
expect_fail "quality by default on world sd" "sd-quality.ini: \[eval\] quality" "$selma" run "$tmp/sd-quality.ini" run.dir="$tmp/bad1"
expect_fail "too few prompts" "prompts.tsv: skill count: 6 distinct prompts, the splits need 12" \
    "$selma" run "$tmp/sd.ini" run.dir="$tmp/bad1" prompts.n_train=10
printf 'count\tthree circles\ncount three circles\n' > "$tmp/bad.tsv"
expect_fail "a line without a tab" "bad.tsv:2: expected 'skill<TAB>prompt'" \
    "$selma" run "$tmp/sd.ini" run.dir="$tmp/bad1" prompts.file="$tmp/bad.tsv"
printf 'colour\tthree circles\n' > "$tmp/bad.tsv"
expect_fail "an unknown skill" "bad.tsv:1: 'colour' is not a skill" \
    "$selma" run "$tmp/sd.ini" run.dir="$tmp/bad1" prompts.file="$tmp/bad.tsv"
expect_fail "a missing prompt file" "\[prompts\] file: $tmp/none.tsv: No such file" \
    "$selma" run "$tmp/sd.ini" run.dir="$tmp/bad1" prompts.file="$tmp/none.tsv"
[ -e "$tmp/bad1" ] && err "a failed config left a run directory"

# The shapes world: scored by the exact evaluator and exported when asked.
write_config "$tmp/shapes.ini" "$tmp/shapes" "$src/models/weights/shapes-small" $'quality = false\nexport = true'
"$selma" run "$tmp/shapes.ini" run.methods=base > "$tmp/out3.txt" 2>&1 || err "shapes run with export exited $?: $(tail -3 "$tmp/out3.txt")"
[ "$(ls "$tmp/shapes/export/base/seed0/images" 2> /dev/null | wc -l)" = 4 ] || err "shapes world: no export bundle"
grep -q '"dsg":[[:space:]]*{' "$tmp/shapes/results.json" || err "shapes world: results.json has no DSG score"

[ $fail -eq 0 ] && echo "$test: ok"
exit $fail
