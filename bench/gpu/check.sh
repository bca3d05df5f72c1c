#!/usr/bin/env bash
# The one prepared GPU check (issue 6, item 6): builds selma with CUDA, runs the gpu
# test suite, runs compute-sanitizer memcheck on it, runs the GPU benchmarks, and ends
# with a short table. Logs go into the directory named on the command line.
#
#   tools/gpu_deps.sh                      # here, once: the .debs the GPU image lacks
#   device run (carry [".gpu-deps"], timeout_s 540):  bash bench/gpu/check.sh $OUT
#
# On the GPU machines (nvcc, cmake, ninja, meson, PyTorch; no OpenBLAS, HDF5, libpng,
# ICU, MPI, cJSON or inih) it unpacks .gpu-deps/*.deb into a prefix and builds without
# the optional libraries (meson_options.txt). Without a GPU it still builds and the gpu
# tests skip, so the script can be tried anywhere. Budget: about 8 minutes on 16 cores.
#   CHECK_SM=90           SM architecture (H100/H200)
#   CHECK_SKIP_SANITIZER=1, CHECK_SKIP_BENCH=1   leave a step out
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
  nvcc --version | tail -2; } | tee "$out/device.txt"

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

stamp "done"
printf '\n%-12s %s\n' step result
for k in build gpu_tests memcheck bench; do printf '%-12s %s\n' "$k" "${result[$k]:-}"; done
echo "logs: $out"
[ "${result[build]}" = ok ] && [ "${result[gpu_tests]}" = ok ]
