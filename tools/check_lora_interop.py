#!/usr/bin/env python3
"""LoRA files across selma and diffusers / PEFT, both directions, on the tiny UNet of
tests/fixtures/unet_tiny_weights.safetensors (tools/make_unet_fixture.py's "tiny").

diffusers -> selma: builds the UNet in diffusers, adds a PEFT LoRA (r 4, lora_alpha 8,
a rank_pattern and an alpha_pattern entry, SELMA's attention targets plus the 1x1-conv
proj_in) with random non-zero A and B, saves it as a pipeline's LoRA file the way
diffusers' training scripts do (get_peft_model_state_dict + save_lora_weights with
unet_lora_adapter_metadata) and writes under tests/fixtures/
  unet_tiny_lora_diffusers.safetensors  that file
  unet_tiny_lora_io.safetensors         "out": the UNet output with it on the inputs of
                                        unet_tiny_io.safetensors (x, t, context)
which tests/test_lora_interop.c loads in selma (no Python in CI).

selma -> diffusers: runs `test_lora_interop --write DIR`, which writes selma's files
(a trained expert from unet_save, cat and svd merges whose modules have different
ranks, the diffusers file re-saved; each in the PEFT and the kohya form) and selma's
UNet output with each; loads every file in diffusers the way
StableDiffusionPipeline.load_lora_weights does (lora_state_dict, which converts kohya
names and collects their .alpha tensors, then load_lora_into_unet ->
UNet2DConditionModel.load_lora_adapter; load_attn_procs is for Custom Diffusion only in
diffusers 0.42) and compares the outputs.

Prints max |selma - diffusers| / max |diffusers| per file; exits 1 above 1e-4.
Tested with (PyPI, CPU): python 3.11.7, torch 2.15.0, diffusers 0.42.1, peft 0.21.2,
safetensors 0.8.0, numpy 2.4.6

  /tmp/unet-venv/bin/pip install torch==2.15.0 diffusers==0.42.1 peft==0.21.2 safetensors==0.8.0
  /tmp/unet-venv/bin/python tools/check_lora_interop.py [BUILD_DIR]   (default: build)
"""
import os
import subprocess
import sys
import tempfile

import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
TOL = 1e-4
# tools/make_unet_fixture.py's "tiny"
CONFIG = dict(sample_size=8, in_channels=3, out_channels=2, block_out_channels=(4, 8), layers_per_block=1,
              down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2, cross_attention_dim=8,
              norm_num_groups=2, use_linear_projection=False)
LORA = dict(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in"],
            rank_pattern={"mid_block.attentions.0.proj_in": 2},
            alpha_pattern={"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": 3})


def base_unet():
    m = UNet2DConditionModel(**CONFIG).float().eval()
    sd = {k: v.float() for k, v in load_file(os.path.join(FIX, "unet_tiny_weights.safetensors")).items()}
    m.load_state_dict(sd)
    return m


def run(m, io):
    with torch.no_grad():
        return m(io["x"], io["t"], encoder_hidden_states=io["context"]).sample


def rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def load_like_pipeline(path):
    """What StableDiffusionPipeline.load_lora_weights(path) does for the UNet."""
    m = base_unet()
    sd, alphas, meta = StableDiffusionLoraLoaderMixin.lora_state_dict(path, return_lora_metadata=True)
    StableDiffusionLoraLoaderMixin.load_lora_into_unet(sd, alphas, m, metadata=meta)
    return m


def diffusers_to_selma(io):
    m = base_unet()
    m.add_adapter(LoraConfig(**LORA))
    torch.manual_seed(7)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.4)
    out = run(m, io)
    base_out = run(base_unet(), io)
    path = os.path.join(FIX, "unet_tiny_lora_diffusers.safetensors")
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        FIX, unet_lora_layers=get_peft_model_state_dict(m),
        unet_lora_adapter_metadata=m.peft_config["default"].to_dict(),
        weight_name=os.path.basename(path))
    save_file({"out": out.contiguous()}, os.path.join(FIX, "unet_tiny_lora_io.safetensors"))
    back = rel_err(run(load_like_pipeline(path), io), out)
    print(f"diffusers file: LoRA changes the output by {rel_err(out, base_out):.3f} (relative); "
          f"diffusers reloading it: {back:.2e}")
    return back


def selma_to_diffusers(io, build):
    errs = {}
    with tempfile.TemporaryDirectory() as d:
        binary = os.path.join(build, "tests", "test_lora_interop")
        subprocess.run([binary, "--write", d], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        outs = load_file(os.path.join(d, "selma_outputs.safetensors"))
        for stem, ours in sorted(outs.items()):
            theirs = run(load_like_pipeline(os.path.join(d, stem + ".safetensors")), io)
            errs[stem] = rel_err(ours, theirs)
            print(f"selma file {stem + '.safetensors':34s} in diffusers: max rel diff {errs[stem]:.2e}")
    return errs


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    io = load_file(os.path.join(FIX, "unet_tiny_io.safetensors"))
    worst = diffusers_to_selma(io)
    subprocess.run([os.path.join(build, "tests", "test_lora_interop")], cwd=ROOT, check=True)  # selma reads it
    worst = max([worst, *selma_to_diffusers(io, build).values()])
    print(f"worst {worst:.2e} (tolerance {TOL:g})")
    return 0 if worst <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
