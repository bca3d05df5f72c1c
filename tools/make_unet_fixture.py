#!/usr/bin/env python3
"""Parity fixtures for models/unet.c from diffusers' UNet2DConditionModel.

Builds tiny UNets with random weights (every tensor, norms included, drawn from a
seeded normal so that no parameter is trivially 1 or 0) rounded to float16 values, so
that the weights file stores them exactly in half the bytes while the model computes in
float32 with exactly those values; runs them on fixed inputs,
and writes per model two safetensors files under tests/fixtures/:

  unet_<name>_weights.safetensors  the state dict, diffusers' key names, F16
  unet_<name>_io.safetensors       x, t, context, g (the loss weights), out,
                                   grad.x, grad.context and grad.<param> for a few
                                   parameters, for the loss L = sum(out * g)

The configs here must match tests/test_unet_parity.c. Tested with (PyPI, CPU):
  python 3.11.7, torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0, numpy 2.4.6

  python3 -m venv /tmp/unet-venv
  /tmp/unet-venv/bin/pip install torch==2.15.0 diffusers==0.42.1 safetensors==0.8.0
  /tmp/unet-venv/bin/python tools/make_unet_fixture.py [NAME ...]
"""
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

CONFIGS = {
    # SD1-like: 1x1-conv projections; attention only at the first level (+ mid).
    "tiny": dict(sample_size=8, in_channels=3, out_channels=2, block_out_channels=(4, 8),
                 layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
                 cross_attention_dim=8, norm_num_groups=2, use_linear_projection=False),
    # SD2-like: Linear projections, two ResNets per level (three per up block),
    # attention only at the deeper level; heads given through attention_head_dim as SD
    # configs do (the naming quirk: these are head counts).
    "tiny2": dict(sample_size=4, in_channels=2, out_channels=2, block_out_channels=(4, 8),
                  layers_per_block=2, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                  cross_attention_dim=6, norm_num_groups=2, use_linear_projection=True),
    # "tiny" plus a class embedding of type "projection" (the pooled text embedding
    # added to the time embedding, as the shapes base models use).
    "tiny3": dict(sample_size=8, in_channels=3, out_channels=2, block_out_channels=(4, 8),
                  layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
                  cross_attention_dim=8, norm_num_groups=2, use_linear_projection=False,
                  class_embed_type="projection", projection_class_embeddings_input_dim=5),
}
GRADS = ["conv_in.weight", "time_embedding.linear_1.weight", "mid_block.resnets.0.conv1.weight",
         "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
         "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", "conv_out.bias"]
B, T = 2, 3


def make(name, cfg, seed):
    torch.manual_seed(seed)
    m = UNet2DConditionModel(**cfg).float()
    m.eval()  # dropout is 0 anyway
    with torch.no_grad():
        for p in m.parameters():
            p.copy_((torch.randn_like(p) * 0.3).half().float())
    x = torch.randn(B, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"], requires_grad=True)
    t = torch.tensor([3.0, 421.0])
    ctx = torch.randn(B, T, cfg["cross_attention_dim"], requires_grad=True)
    cls = None
    if cfg.get("class_embed_type"):
        cls = torch.randn(B, cfg["projection_class_embeddings_input_dim"], requires_grad=True)
    out = m(x, t, encoder_hidden_states=ctx, class_labels=cls).sample
    g = torch.randn_like(out)
    (out * g).sum().backward()
    sd = {k: v.detach().half().contiguous() for k, v in m.state_dict().items()}
    io = {"x": x.detach(), "t": t, "context": ctx.detach(), "g": g, "out": out.detach(),
          "grad.x": x.grad, "grad.context": ctx.grad}
    params = dict(m.named_parameters())
    grads = list(GRADS)
    if cls is not None:
        io["class_labels"] = cls.detach()
        io["grad.class_labels"] = cls.grad
        grads += ["class_embedding.linear_1.weight", "class_embedding.linear_2.bias"]
    for k in grads:
        io["grad." + k] = params[k].grad.detach().contiguous()
    save_file(sd, os.path.join(OUT, f"unet_{name}_weights.safetensors"))
    save_file(io, os.path.join(OUT, f"unet_{name}_io.safetensors"))
    n = sum(v.numel() for v in sd.values())
    print(f"{name}: {len(sd)} tensors, {n} parameters, |out| max {out.abs().max().item():.3f}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    only = sys.argv[1:]  # names to (re)make; all by default
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        if not only or name in only:
            make(name, cfg, 1234 + i)
    sys.exit(0)
