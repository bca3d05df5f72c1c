#!/usr/bin/env python3
"""The two steps bench/gpu/bench_sd_step.c times, in diffusers + PEFT (issue 8):

  train   one LoRA training step at batch 1: UNet forward, MSE against a random
          target, backward, AdamW over the adapters (the base is frozen)
  sample  one sampling step at batch 2 (classifier-free guidance's cond + uncond
          halves in one call): a UNet forward under torch.no_grad, adapters attached

diffusers' UNet2DConditionModel built from the config dict below with its random init
(SD 1.5's unet/config.json for --config sd15), LoRA attached the way diffusers'
train_text_to_image_lora.py does it (unet.add_adapter(LoraConfig(...)) on a frozen
UNet, AdamW over the parameters that require grad), float32 weights. 64x64 latents
(512x512 images), 77 context tokens of width 768.

Precision (stated because it decides the speed): --precision tf32 (default) sets
torch.backends.cuda.matmul.fp32_precision and torch.backends.cudnn.conv.fp32_precision
to "tf32" (float32 storage, TF32 tensor cores for matmuls and convolutions, the closest
to selma, whose linears are cuBLAS TF32 and whose convolutions, attention and fused
LoRA GEMM are bf16 tensor cores with float accumulation); "ieee" turns TF32 off;
"bf16-autocast" runs the steps under torch.autocast(bfloat16). Attention is PyTorch's
scaled_dot_product_attention (diffusers' AttnProcessor2_0), which picks its backend.

Timing: 3 warm-up steps, then the median of --repeats steps, each between two CUDA
events on the current stream (on the CPU: perf_counter). Peak memory: the caching
allocator's max_memory_allocated over each phase (CPU: the process's peak RSS).

  sd_step_torch.py [--device cuda|cpu] [--config sd15|tiny] [--rank 128] [--repeats 10]

Prints the lines bench_sd_step prints ("train step: X ms", "sample step: Y ms", ...),
so bench/gpu/check.sh can divide one by the other.
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]

# SD 1.5 (runwayml/stable-diffusion-v1-5 unet/config.json; the rest are diffusers'
# defaults, which are SD 1.5's): attention_head_dim 8 is the head *count* (diffusers'
# naming quirk), so the head dims are 40 / 80 / 160.
SD15 = dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                              "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32, norm_eps=1e-5,
            use_linear_projection=False, flip_sin_to_cos=True, freq_shift=0)
# SD 1.5's layout at a width the CPU runs in seconds: must equal bench_sd_step.c's tiny.
TINY = dict(SD15, sample_size=16, block_out_channels=(32, 64, 64, 64), cross_attention_dim=32,
            norm_num_groups=8)
CONFIGS = {"sd15": SD15, "tiny": TINY}
TOKENS = 77


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--config", choices=sorted(CONFIGS), default="sd15")
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--precision", choices=["tf32", "ieee", "bf16-autocast"], default="tf32")
    a = p.parse_args()
    if a.rank < 1 or not 1 <= a.repeats <= 1000:
        p.error("--rank must be >= 1 and --repeats in 1..1000")
    return a


class Timer:
    """Milliseconds of one step: CUDA events on the current stream, or wall clock."""

    def __init__(self, device):
        self.cuda = device == "cuda"

    def __call__(self, fn):
        if self.cuda:
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            return e0.elapsed_time(e1)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    def median(self, fn, repeats):
        for _ in range(3):
            self(fn)
        return statistics.median(self(fn) for _ in range(repeats))


def set_tf32(on):
    """TF32 for float32 matmuls and convolutions, on or off, in either of PyTorch's APIs."""
    if hasattr(torch.backends.cudnn, "conv"):  # PyTorch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def peak_mib(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    a = parse()
    # Imported first so that a missing wheel shows even where there is no GPU.
    import diffusers
    import peft
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    if a.device == "cuda" and not torch.cuda.is_available():
        print("sd_step_torch: no CUDA device; nothing to time")
        return 0
    if a.precision != "bf16-autocast":
        set_tf32(a.precision == "tf32")
    if a.device == "cpu":
        torch.set_num_threads(1)  # the CPU check is a plumbing check on a shared machine
    dev = torch.device(a.device)
    torch.manual_seed(0)
    cfg = CONFIGS[a.config]
    with dev:  # draws the random init on the device: seconds instead of a minute for SD 1.5
        unet = UNet2DConditionModel(**cfg)
    n_base = sum(p.numel() for p in unet.parameters())
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=a.rank, lora_alpha=a.rank, target_modules=TARGETS))
    lora = [p for p in unet.parameters() if p.requires_grad]
    n_lora = sum(p.numel() for p in lora)
    # PEFT's default init (A like a linear weight, B = 0) is selma's too; lr is SELMA's.
    opt = torch.optim.AdamW(lora, lr=3e-4, weight_decay=1e-2)
    amp = torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16-autocast")

    S, D, C = cfg["sample_size"], cfg["cross_attention_dim"], cfg["in_channels"]
    g = torch.Generator(device=dev).manual_seed(1)
    x1 = torch.randn(1, C, S, S, device=dev, generator=g)
    target = torch.randn(1, C, S, S, device=dev, generator=g)
    ctx1 = torch.randn(1, TOKENS, D, device=dev, generator=g)
    t1 = torch.tensor([417.0], device=dev)
    x2 = torch.randn(2, C, S, S, device=dev, generator=g)
    ctx2 = torch.randn(2, TOKENS, D, device=dev, generator=g)
    t2 = torch.tensor([417.0, 417.0], device=dev)

    losses = []

    def train_step():
        opt.zero_grad(set_to_none=True)
        with amp:
            out = unet(x1, t1, encoder_hidden_states=ctx1).sample
        loss = F.mse_loss(out.float(), target)
        loss.backward()
        opt.step()
        losses.append(loss.detach())

    def sample_step():
        with torch.no_grad(), amp:
            unet(x2, t2, encoder_hidden_states=ctx2)

    where = torch.cuda.get_device_name() if a.device == "cuda" else "cpu, 1 thread (TF32 does not apply)"
    prec = {"tf32": "float32 weights, TF32 matmuls and convolutions",
            "ieee": "float32 weights, TF32 off",
            "bf16-autocast": "float32 weights, bf16 autocast"}[a.precision]
    print(f"diffusers+peft: torch {torch.__version__}, diffusers {diffusers.__version__}, "
          f"peft {peft.__version__}, {where}; {prec}; attention: scaled_dot_product_attention")
    print(f"config: {a.config}, {S}x{S} latents, {TOKENS} tokens of {D}, "
          f"block_out_channels {','.join(map(str, cfg['block_out_channels']))}")
    print(f"parameters: base {n_base} (frozen), lora {n_lora} (rank {a.rank}, alpha {a.rank}, "
          f"targets {','.join(TARGETS)})")
    print(f"modules: diffusers from {os.path.dirname(diffusers.__file__)}, "
          f"peft from {os.path.dirname(peft.__file__)}", flush=True)  # each result as it comes

    timer = Timer(a.device)
    if a.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    unet.train()
    t_train = timer.median(train_step, a.repeats)
    mem_train = peak_mib(a.device)
    print(f"train loss: first {losses[0].item():.6f}, last {losses[-1].item():.6f}")
    print(f"train step: {t_train:.3f} ms (batch 1, median of {a.repeats} after 3 warm-ups)", flush=True)
    if a.device == "cuda":
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    unet.eval()
    t_sample = timer.median(sample_step, a.repeats)
    mem_sample = peak_mib(a.device)
    print(f"sample step: {t_sample:.3f} ms (batch 2, median of {a.repeats} after 3 warm-ups)")
    what = "max_memory_allocated" if a.device == "cuda" else "peak RSS of the process"
    print(f"peak memory: train {mem_train:.1f} MiB, sample {mem_sample:.1f} MiB ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
