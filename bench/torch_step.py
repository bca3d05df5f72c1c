#!/usr/bin/env python3
"""The step bench/bench_step.c calls "unet step", in PyTorch: the shapes UNet
(diffusers' UNet2DConditionModel layout: block_out_channels 32/64/64, one ResNet per
level, transformer blocks with self-attention, cross-attention to 48 tokens of width 128
and GEGLU at 16x16 and 8x8, 4 heads), forward + MSE + backward + AdamW, batch 32 at
32x32, the same number of threads. Uses diffusers' model when installed, else the same
architecture written here in plain torch. Prints the median time and the peak RSS.
    torch_step.py [batch] [threads] [runs]
"""
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CH, LAYERS, ATTN, HEADS, D, T, S, GROUPS = (32, 64, 64), 1, (0, 1, 1), 4, 128, 48, 32, 8


def timestep_embedding(t, dim):  # flip_sin_to_cos=True, freq_shift=0
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    a = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(GROUPS, cin, eps=1e-5), nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(GROUPS, cout, eps=1e-5), nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c, kv):
        super().__init__()
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c, bias=False), nn.Linear(kv, c, bias=False), nn.Linear(kv, c, bias=False)
        self.to_out = nn.Linear(c, c)

    def forward(self, x, ctx):
        B, N, C = x.shape
        q = self.to_q(x).view(B, -1, HEADS, C // HEADS).transpose(1, 2)
        k = self.to_k(ctx).view(B, -1, HEADS, C // HEADS).transpose(1, 2)
        v = self.to_v(ctx).view(B, -1, HEADS, C // HEADS).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // HEADS), dim=-1) @ v
        return self.to_out(a.transpose(1, 2).reshape(B, N, C))


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm, self.proj_in = nn.GroupNorm(GROUPS, c, eps=1e-6), nn.Conv2d(c, c, 1)
        self.norm1, self.attn1 = nn.LayerNorm(c), Attention(c, c)
        self.norm2, self.attn2 = nn.LayerNorm(c), Attention(c, D)
        self.norm3, self.ff_proj, self.ff_out = nn.LayerNorm(c), nn.Linear(c, 8 * c), nn.Linear(4 * c, c)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, ctx):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        n = self.norm1(h)
        h = h + self.attn1(n, n)
        h = h + self.attn2(self.norm2(h), ctx)
        a, g = self.ff_proj(self.norm3(h)).chunk(2, dim=-1)
        h = h + self.ff_out(a * F.gelu(g))
        return self.proj_out(h.transpose(1, 2).reshape(B, C, H, W)) + x


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        c0, temb = CH[0], 4 * CH[0]
        self.conv_in = nn.Conv2d(3, c0, 3, padding=1)
        self.lin1, self.lin2 = nn.Linear(c0, temb), nn.Linear(temb, temb)
        self.down, skips, ch = nn.ModuleList(), [c0], c0
        for i, c in enumerate(CH):
            blk = nn.ModuleDict({"res": nn.ModuleList(), "attn": nn.ModuleList()})
            for _ in range(LAYERS):
                blk["res"].append(Resnet(ch, c, temb))
                blk["attn"].append(Transformer(c) if ATTN[i] else nn.Identity())
                ch = c
                skips.append(ch)
            if i < len(CH) - 1:
                blk["down"] = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                skips.append(ch)
            self.down.append(blk)
        self.mid1, self.mid_attn, self.mid2 = Resnet(ch, ch, temb), Transformer(ch), Resnet(ch, ch, temb)
        self.up = nn.ModuleList()
        for i, c in reversed(list(enumerate(CH))):
            blk = nn.ModuleDict({"res": nn.ModuleList(), "attn": nn.ModuleList()})
            for _ in range(LAYERS + 1):
                blk["res"].append(Resnet(ch + skips.pop(), c, temb))
                blk["attn"].append(Transformer(c) if ATTN[i] else nn.Identity())
                ch = c
            if i > 0:
                blk["up"] = nn.Conv2d(ch, ch, 3, padding=1)
            self.up.append(blk)
        self.norm_out, self.conv_out = nn.GroupNorm(GROUPS, ch, eps=1e-5), nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, x, t, ctx):
        emb = self.lin2(F.silu(self.lin1(timestep_embedding(t, CH[0]))))
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down:
            for res, attn in zip(blk["res"], blk["attn"]):
                h = res(h, emb)
                h = attn(h, ctx) if isinstance(attn, Transformer) else h
                skips.append(h)
            if "down" in blk:
                h = blk["down"](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb), ctx), emb)
        for blk in self.up:
            for res, attn in zip(blk["res"], blk["attn"]):
                h = res(torch.cat([h, skips.pop()], dim=1), emb)
                h = attn(h, ctx) if isinstance(attn, Transformer) else h
            if "up" in blk:
                h = blk["up"](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def build():
    try:
        from diffusers import UNet2DConditionModel
        m = UNet2DConditionModel(
            sample_size=S, in_channels=3, out_channels=3, block_out_channels=CH, layers_per_block=LAYERS,
            down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in ATTN],
            up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(ATTN)],
            cross_attention_dim=D, attention_head_dim=HEADS, norm_num_groups=GROUPS)
        return (lambda x, t, c: m(x, t, encoder_hidden_states=c).sample), m, "diffusers UNet2DConditionModel"
    except ImportError:
        m = UNet()
        return m, m, "plain-torch UNet (diffusers not installed)"


def main():
    B = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fn, model, what = build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x, target = torch.rand(B, 3, S, S) * 2 - 1, torch.randn(B, 3, S, S)
    t, ctx = torch.randint(0, 1000, (B,)).float(), torch.randn(B, T, D)
    times = []
    for k in range(runs + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        F.mse_loss(fn(x, t, ctx), target).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    n = sum(p.numel() for p in model.parameters())
    print(f"pytorch {torch.__version__}: {what}, {n} parameters, batch {B}, {threads} threads, median of {runs}")
    print(f"pytorch unet step: {statistics.median(times[1:]):.4f} s")
    print(f"pytorch peak rss: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
