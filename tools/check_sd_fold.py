#!/usr/bin/env python3
"""The SELMA loop's products on an SD folder, read by diffusers (issue 8, items 5-6).

Runs `selma run` on the tiny SD 1.x fixture (tests/fixtures/sd_tiny_sd1) with two
experts and their merge (tests/test_sd_run.sh's config), then:
  - loads the merged adapter into diffusers' StableDiffusionPipeline with
    load_lora_weights and fuses it (fuse_lora), as a diffusers user would;
  - loads the folder `selma fold` wrote from the same adapter with from_pretrained;
and compares every UNet weight of the two. Also checks that the exported bundle's
images are the pipeline's test images (count and size).

Prints the largest |fused - folded| / max |fused| and exits 1 above 1e-5.
Tested with (PyPI, CPU): python 3.11.7, torch 2.15.0, diffusers 0.42.1, peft 0.21.2

  /tmp/unet-venv/bin/python tools/check_sd_fold.py [BUILD_DIR]   (default: build)
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from diffusers import StableDiffusionPipeline

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build")
selma = os.path.join(build, "experiments", "selma")
sd = os.path.join(root, "tests", "fixtures", "sd_tiny_sd1")

with tempfile.TemporaryDirectory() as tmp:
    prompts = os.path.join(tmp, "p.tsv")
    with open(prompts, "w") as f:
        for p in ["three red circles", "two blue squares", "four green triangles", "a red circle",
                  "two small circles", "three squares"]:
            f.write(f"count\t{p}\n")
        for p in ["a blue square left of a green triangle", "a red circle above a yellow triangle",
                  "a green circle below a red square", "a small square right of a large circle",
                  "a blue triangle left of a red circle", "a circle above a square"]:
            f.write(f"spatial\t{p}\n")
    cfg = os.path.join(tmp, "sd.ini")
    with open(cfg, "w") as f:
        f.write(f"""[run]
name = sd-tiny
dir = {tmp}/run
methods = base, selma
threads = 1
[model]
base = {sd}
[prompts]
file = {prompts}
skills = count, spatial
n_train = 4
n_val = 0
n_test = 2
[generate]
steps = 2
cfg = 2
[lora]
rank = 2
alpha = 4
[train]
steps = 4
batch = 2
lr = 0.1
[eval]
steps = 2
cfg = 2
quality = false
""")
    subprocess.run([selma, "run", cfg], check=True, stdout=subprocess.DEVNULL)
    work = os.path.join(tmp, "run", "work")
    merged = [os.path.join(work, d, "lora.safetensors") for d in os.listdir(work) if d.startswith("merge-")][0]
    folded = os.path.join(tmp, "folded")
    subprocess.run([selma, "fold", "--model", sd, "--lora", merged, "--out", folded], check=True,
                   stdout=subprocess.DEVNULL)

    a = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None, requires_safety_checker=False)
    a.load_lora_weights(merged)
    a.fuse_lora()
    a.unload_lora_weights()
    b = StableDiffusionPipeline.from_pretrained(folded, safety_checker=None, requires_safety_checker=False)
    sa, sb = a.unet.state_dict(), b.unet.state_dict()
    assert sa.keys() == sb.keys(), sorted(set(sa) ^ set(sb))
    worst = max(((sa[k] - sb[k]).abs().max() / sa[k].abs().max().clamp_min(1e-30)).item() for k in sa)
    base = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None, requires_safety_checker=False)
    moved = sum(not torch.equal(base.unet.state_dict()[k], sb[k]) for k in sb)

    man = json.load(open(os.path.join(tmp, "run", "export", "selma", "seed0", "manifest.json")))
    ok_export = man["n_images"] == 4 and man["image_size"] == 16
    print(f"folded vs diffusers' fused LoRA: max rel diff {worst:.3g} over {len(sa)} UNet tensors "
          f"({moved} changed by the adapter); export bundle: {man['n_images']} images of {man['image_size']}px")
    sys.exit(0 if worst <= 1e-5 and moved > 0 and ok_export else 1)
