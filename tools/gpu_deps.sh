#!/usr/bin/env bash
# Fetches what the GPU machines lack into .gpu-deps/ (git-ignored), for `device run`
# to carry:  tools/gpu_deps.sh && <device run, carry [".gpu-deps"]> bench/gpu/check.sh $OUT
#
# - Debian packages selma cannot build without (cJSON, inih: small); check.sh unpacks
#   them. OpenBLAS, HDF5, libpng, ICU and MPI stay out: the build falls back without
#   them (meson_options.txt), and the gpu suite needs none.
# - Python wheels for the SD 1.5 step benchmark's diffusers + PEFT side
#   (bench/gpu/sd_step_torch.py), for the image's python3 (3.12, x86-64, per
#   /work/.library/device/KINDS.md; nothing can be fetched there):
#     wheels/            diffusers and peft, pinned to the versions the CPU check used;
#                        check.sh always installs these (the image has no diffusers, and
#                        a peft of its own version)
#     wheels/fallback/   what they import that the image holds today (huggingface_hub,
#                        safetensors); check.sh installs one only where python3 cannot
#                        import it, so the image's own versions are never shadowed
#   PyTorch, numpy, transformers, accelerate, Pillow, PyYAML, regex, requests, psutil
#   and tqdm (what diffusers and peft import besides) are in the image's package list.
# The carry limit is 64 MiB for the whole working tree (about 38 MiB of it tracked
# files), so the script ends with the folder's size.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-deps/wheels/fallback
(cd .gpu-deps && apt-get download libcjson1 libcjson-dev libinih1 libinih-dev)

py=${PYTHON:-python3}
# For the image, not for this machine: binary wheels of CPython 3.12 on manylinux x86-64.
target=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$py" -m pip download -q --no-deps "${target[@]}" -d .gpu-deps/wheels diffusers==0.42.1 peft==0.21.2
"$py" -m pip download -q --no-deps "${target[@]}" -d .gpu-deps/wheels/fallback \
    huggingface_hub==1.33.0 safetensors==0.8.0
ls -la .gpu-deps .gpu-deps/wheels .gpu-deps/wheels/fallback
du -sh .gpu-deps
