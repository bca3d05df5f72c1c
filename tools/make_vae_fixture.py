#!/usr/bin/env python3
"""Parity fixtures for models/vae.c from diffusers' AutoencoderKL.

Builds tiny VAEs with random weights (every tensor, norms included, drawn from a seeded
normal so that no parameter is trivially 1 or 0) rounded to float16 values, so that the
weights file stores them exactly in half the bytes while the model computes in float32
with exactly those values; runs encode and decode on fixed inputs, and writes per model
under tests/fixtures/:

  vae_<name>_config.json          the model's config.json, as save_config writes it
  vae_<name>_weights.safetensors  the state dict, diffusers' key names, F16
  vae_<name>_io.safetensors       image (B, 3, H, W) in [-1, 1];
                                  latents = posterior.mean * scaling_factor;
                                  std = the posterior's std (exp(logvar / 2), clamped);
                                  z (B, latent_channels, H/f, W/f) = a fixed latent
                                  input in the pipeline's scale, and
                                  decoded = decode(z / scaling_factor)

AutoencoderKL itself never applies scaling_factor; the pipelines do (encode: times it,
decode: divided by it first), and so does models/vae.h. The configs here must match
tests/test_vae.c. Tested with (PyPI, CPU):
  python 3.11.7, torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0, numpy 2.4.6

  python3 -m venv /tmp/unet-venv
  /tmp/unet-venv/bin/pip install torch==2.15.0 diffusers==0.42.1 safetensors==0.8.0
  /tmp/unet-venv/bin/python tools/make_vae_fixture.py [NAME ...]
"""
import os
import shutil
import sys
import tempfile

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

CONFIGS = {
    # Two levels, one ResNet per encoder level (two per decoder level), square images.
    "tiny": (dict(block_out_channels=(4, 8), layers_per_block=1, norm_num_groups=2,
                  latent_channels=4, sample_size=16,
                  down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2), 16, 16),
    # Three levels of different widths (a conv_shortcut in every widening or narrowing
    # ResNet), two ResNets per level (three per decoder level), 3 latent channels, a
    # non-square image and SDXL's scaling factor.
    "tiny3": (dict(block_out_channels=(4, 6, 8), layers_per_block=2, norm_num_groups=2,
                   latent_channels=3, sample_size=16, scaling_factor=0.13025,
                   down_block_types=("DownEncoderBlock2D",) * 3,
                   up_block_types=("UpDecoderBlock2D",) * 3), 16, 12),
}
B = 2


def make(name, cfg, H, W, seed):
    torch.manual_seed(seed)
    m = AutoencoderKL(**cfg).float().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_((torch.randn_like(p) * 0.3).half().float())
        image = torch.rand(B, 3, H, W) * 2 - 1
        post = m.encode(image).latent_dist
        sf = m.config.scaling_factor
        latents = post.mean * sf
        f = 2 ** (len(cfg["block_out_channels"]) - 1)
        z = torch.randn(B, cfg["latent_channels"], H // f, W // f)
        decoded = m.decode(z / sf).sample
    sd = {k: v.detach().half().contiguous() for k, v in m.state_dict().items()}
    io = {"image": image, "latents": latents.contiguous(), "std": post.std.contiguous(),
          "z": z, "decoded": decoded.contiguous()}
    save_file(sd, os.path.join(OUT, f"vae_{name}_weights.safetensors"))
    save_file(io, os.path.join(OUT, f"vae_{name}_io.safetensors"))
    with tempfile.TemporaryDirectory() as d:
        m.save_config(d)
        shutil.copy(os.path.join(d, "config.json"), os.path.join(OUT, f"vae_{name}_config.json"))
    n = sum(v.numel() for v in sd.values())
    print(f"{name}: {len(sd)} tensors, {n} parameters, |latents| max {latents.abs().max().item():.3f}, "
          f"|decoded| max {decoded.abs().max().item():.3f}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    only = sys.argv[1:]  # names to (re)make; all by default
    for i, (name, (cfg, H, W)) in enumerate(CONFIGS.items()):
        if not only or name in only:
            make(name, cfg, H, W, 4321 + i)
    sys.exit(0)
