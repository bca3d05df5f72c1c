#!/usr/bin/env bash
# Fetches the Debian packages the GPU machines lack and selma cannot build without
# (cJSON, inih: small) into .gpu-deps/ (git-ignored), for `device run` to carry:
#   tools/gpu_deps.sh && <device run, carry [".gpu-deps"]> bench/gpu/check.sh $OUT
# bench/gpu/check.sh unpacks them. OpenBLAS, HDF5, libpng, ICU and MPI stay out: the
# build falls back without them (meson_options.txt), and the gpu suite needs none.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-deps
cd .gpu-deps
apt-get download libcjson1 libcjson-dev libinih1 libinih-dev
ls -la
