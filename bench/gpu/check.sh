#!/usr/bin/env bash
# The one prepared GPU check (issue 6, item 6): builds selma with CUDA, runs the gpu
# test suite, runs compute-sanitizer memcheck on it, runs the GPU benchmarks and the
# SD 1.5 LoRA step next to diffusers + PEFT (issue 8), and ends with a short table.
# Logs go into the directory named on the command line.
#
#   tools/gpu_deps.sh                      # here, once: the .debs and wheels the GPU image lacks
#   device run (carry [".gpu-deps"], timeout_s 540):  bash bench/gpu/check.sh $OUT
#
# On the GPU machines (nvcc, cmake, ninja, meson, PyTorch; no OpenBLAS, HDF5, libpng,
# ICU, MPI, cJSON or inih) it unpacks .gpu-deps/*.deb into a prefix and builds without
# the optional libraries (meson_options.txt). Without a GPU it still builds and the gpu
# tests skip, so the script can be tried anywhere. Budget: about 8 minutes on 16 cores
# (the pretrain timing adds at most 60 s; test_train_gpu under memcheck runs 4 steps,
# SELMA_GPU_QUICK, for an unmeasured time).
#   CHECK_SM=90           SM architecture (H100/H200)
#   CHECK_SKIP_SANITIZER=1, CHECK_SKIP_BENCH=1, CHECK_SKIP_SD=1, CHECK_SKIP_PRETRAIN=1
#                         leave a step out
#   CHECK_PRETRAIN_STEPS=200   steps of the shapes-small pretrain timed on cuda (60 s cap)
#   CHECK_SD_RANK=128, CHECK_SD_REPEATS=10   the SD 1.5 step's LoRA rank and repeats
set -uo pipefail
out=${1:?usage: bench/gpu/check.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
declare -A result

# ---- the missing libraries, unpacked into a prefix the compiler searches
prefix=/tmp/selma-gpu-deps
if ls .gpu-deps/*.deb > /dev/null 2>&1; then
    mkdir -p "$prefix"
    for d in .gpu-deps/*.deb; do
        if command -v dpkg-deb > /dev/null; then dpkg-deb -x "$d" "$prefix"
        else (cd "$prefix" && ar p "$OLDPWD/$d" data.tar.xz | tar -xJ); fi
    done
    lib="$prefix/usr/lib/x86_64-linux-gnu"
    export CPATH="$prefix/usr/include${CPATH:+:$CPATH}"
    export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export PATH="/usr/local/cuda/bin:$PATH"
# cuDNN (the convolution baseline): the toolkit's, or the one PyTorch's pip packages
# carry (nvidia-cudnn-cu13: libcudnn.so.9 without the unversioned name the linker wants)
if [ ! -e /usr/local/cuda/lib64/libcudnn.so ]; then
    cudnn=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2> /dev/null)
    if [ -n "$cudnn" ] && [ -e "$cudnn/lib/libcudnn.so.9" ]; then
        mkdir -p /tmp/selma-cudnn
        ln -sf "$cudnn/lib/libcudnn.so.9" /tmp/selma-cudnn/libcudnn.so
        export CPATH="$cudnn/include${CPATH:+:$CPATH}"
        export LIBRARY_PATH="/tmp/selma-cudnn${LIBRARY_PATH:+:$LIBRARY_PATH}"
        export LD_LIBRARY_PATH="$cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "cuDNN from $cudnn"
    fi
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
  nvcc --version | tail -2
  # whether the image has an MPI (the 2-rank test_train_dp_gpu needs one; -Dmpi=disabled below)
  echo "mpirun: $(command -v mpirun || echo none); mpi4py: $(python3 -c 'import mpi4py; print(mpi4py.get_config())' 2>&1 | tail -1)"
} | tee "$out/device.txt"

# ---- build
stamp "configure and build (build-gpu/)"
if meson setup build-gpu --reconfigure -Dcuda=enabled -Dsm="${CHECK_SM:-90}" -Dmpi=disabled > "$out/configure.log" 2>&1 ||
   meson setup build-gpu -Dcuda=enabled -Dsm="${CHECK_SM:-90}" -Dmpi=disabled >> "$out/configure.log" 2>&1; then
    if ninja -C build-gpu > "$out/build.log" 2>&1; then result[build]=ok; else result[build]=FAILED; fi
else
    result[build]="configure FAILED"
fi
grep -A12 "optional libraries" "$out/configure.log" | head -20
if [ "${result[build]}" != ok ]; then
    tail -30 "$out/configure.log" "$out/build.log" 2> /dev/null
    echo "build: ${result[build]} (logs in $out)"
    exit 1
fi
# the resource report of every kernel (registers, shared memory, spills)
for f in kernels/cuda/*.cu; do
    echo "== $f"
    nvcc -std=c++17 --expt-relaxed-constexpr -I. -gencode arch=compute_${CHECK_SM:-90},code=sm_${CHECK_SM:-90} \
        -Xptxas -v -c "$f" -o /dev/null 2>&1 | grep -E "Function properties|registers|spill|Compiling entry" || true
done > "$out/ptxas.txt" 2>&1

# ---- the gpu suite
stamp "gpu test suite"
meson test -C build-gpu --suite gpu --num-processes 1 --print-errorlogs > "$out/gpu_tests.log" 2>&1
rc=$?
cp build-gpu/meson-logs/testlog.txt "$out/gpu_testlog.txt" 2> /dev/null
grep -E "^ *[0-9]+/[0-9]+ " "$out/gpu_tests.log" | sed 's/^ *//'
result[gpu_tests]=$([ $rc = 0 ] && echo ok || echo FAILED)

# ---- compute-sanitizer memcheck on every gpu test program
if [ -z "${CHECK_SKIP_SANITIZER:-}" ] && command -v compute-sanitizer > /dev/null; then
    stamp "compute-sanitizer memcheck"
    result[memcheck]=ok
    for t in build-gpu/tests/test_*gpu; do
        [ -x "$t" ] || continue
        n=$(basename "$t")
        SELMA_GPU_QUICK=1 timeout 150 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
            "$t" > "$out/memcheck_$n.log" 2>&1
        r=$?
        echo "memcheck $n: exit $r, $(grep -c '^========= Invalid\|^========= Program hit' "$out/memcheck_$n.log") reports"
        [ $r = 0 ] || [ $r = 77 ] || result[memcheck]="FAILED ($n)"
    done
else
    result[memcheck]=skipped
fi

# ---- benchmarks
if [ -z "${CHECK_SKIP_BENCH:-}" ]; then
    stamp "benchmarks"
    result[bench]=ok
    for b in bench_attention bench_conv2d bench_lora; do
        [ -x "build-gpu/bench/$b" ] || { echo "$b: not built"; continue; }
        timeout 120 "build-gpu/bench/$b" > "$out/$b.txt" 2>&1 || result[bench]="FAILED ($b)"
        echo "== $b"
        tail -25 "$out/$b.txt"
    done
else
    result[bench]=skipped
fi

# ---- the SD 1.5 LoRA step (issue 8): selma, then diffusers + PEFT on the same card.
# diffusers and peft come as wheels (tools/gpu_deps.sh) into a throwaway folder put
# first on PYTHONPATH; a fallback wheel only where the image cannot import the module,
# so the image's own huggingface_hub and safetensors are not shadowed.
ms_of() { awk -v k="$1 step:" 'index($0, k) == 1 { print $3 }' "$2" 2> /dev/null; }
if [ -z "${CHECK_SKIP_SD:-}" ]; then
    stamp "SD 1.5 LoRA step: selma, then diffusers + PEFT"
    sd_args=(--config sd15 --rank "${CHECK_SD_RANK:-128}" --repeats "${CHECK_SD_REPEATS:-10}")
    result[sd_step]=ok
    timeout 90 build-gpu/bench/bench_sd_step "${sd_args[@]}" > "$out/sd_step_selma.txt" 2>&1 ||
        result[sd_step]="FAILED (selma)"
    grep -v "^arena\|^unet:" "$out/sd_step_selma.txt" | tail -12
    site=/tmp/sdwheels
    rm -rf "$site"
    if python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .gpu-deps/wheels/*.whl \
        > "$out/sd_wheels.log" 2>&1; then
        for w in .gpu-deps/wheels/fallback/*.whl; do
            [ -e "$w" ] || continue
            mod=$(basename "$w" | cut -d- -f1)
            PYTHONPATH="$site" python3 -c "import $mod" 2> /dev/null && continue
            echo "fallback wheel: $(basename "$w")" | tee -a "$out/sd_wheels.log"
            python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$w" >> "$out/sd_wheels.log" 2>&1
        done
        PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 timeout 120 \
            python3 bench/gpu/sd_step_torch.py "${sd_args[@]}" > "$out/sd_step_torch.txt" 2>&1 ||
            result[sd_step]="FAILED (diffusers+peft)"
        tail -12 "$out/sd_step_torch.txt"
    else
        result[sd_step]="FAILED (wheels: run tools/gpu_deps.sh here and carry .gpu-deps)"
        tail -5 "$out/sd_wheels.log"
    fi
    st=$(ms_of train "$out/sd_step_selma.txt") sp=$(ms_of sample "$out/sd_step_selma.txt")
    tt=$(ms_of train "$out/sd_step_torch.txt") tp=$(ms_of sample "$out/sd_step_torch.txt")
    if [ -n "$st" ] && [ -n "$sp" ] && [ -n "$tt" ] && [ -n "$tp" ]; then
        sd_ratio=$(awk -v a="$st" -v b="$tt" -v c="$sp" -v d="$tp" \
            'BEGIN { printf "train %.2f, sample %.2f", a / b, c / d }')
    fi
else
    result[sd_step]=skipped
fi

# ---- the shapes-small base pretrained on cuda (experiments/configs/pretrain-small.ini,
# batch 32, UNet on the GPU, text encoder and rendering on the host): wall seconds per
# step over the whole command (start-up, the final checkpoint and bundle included)
if [ -z "${CHECK_SKIP_PRETRAIN:-}" ]; then
    n=${CHECK_PRETRAIN_STEPS:-200}
    stamp "pretrain-small on cuda, $n steps"
    pdir=/tmp/selma-pretrain-gpu
    rm -rf "$pdir"
    s0=$(date +%s.%N)
    if timeout 60 build-gpu/experiments/selma pretrain experiments/configs/pretrain-small.ini train.device=cuda \
        train.steps="$n" train.threads=4 train.log_every=50 output.dir="$pdir" output.checkpoint_every=0 \
        > "$out/pretrain_gpu.txt" 2>&1; then
        s1=$(date +%s.%N)
        result[pretrain]=$(awk -v a="$s0" -v b="$s1" -v n="$n" 'BEGIN { printf "%.3f s/step (%d steps, batch 32, cuda)", (b - a) / n, n }')
    else
        result[pretrain]="FAILED or over 60 s (log: pretrain_gpu.txt)"
    fi
    grep "step .* loss\|model:" "$out/pretrain_gpu.txt" | tail -5
else
    result[pretrain]=skipped
fi

stamp "done"
printf '\n%-12s %s\n' step result
for k in build gpu_tests memcheck bench sd_step pretrain; do printf '%-12s %s\n' "$k" "${result[$k]:-}"; done
echo "ratio selma/diffusers+peft: ${sd_ratio:-n/a} (ms per step, SD 1.5 UNet, LoRA rank ${CHECK_SD_RANK:-128})"
echo "logs: $out"
[ "${result[build]}" = ok ] && [ "${result[gpu_tests]}" = ok ]
