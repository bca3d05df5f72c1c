"""Makes tests/fixtures/diffusers_schedulers.safetensors: diffusers' noise schedules,
sampler timesteps and sigmas, and single DDIM / Euler steps on fixed inputs, for
tests/test_diffusion.c.

Made with: Python 3.11.7, torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0
  python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch diffusers safetensors
  /tmp/venv/bin/python tools/make_scheduler_fixture.py

Tensors (float32 unless said):
  ac_{linear,scaled_linear,cosine}     alphas_cumprod (1000); linear 1e-4..0.02,
                                       scaled_linear 0.00085..0.012, squaredcos_cap_v2
  ddim_ts_{spacing}_{n}                DDIMScheduler timesteps (int32), scaled_linear,
                                       steps_offset 1 for leading, 0 otherwise; n = 7, 50
  euler_ts_{spacing}_{n}, euler_sigmas_{spacing}_{n}, euler_init_{spacing}_{n} (1)
                                       EulerDiscreteScheduler, same settings
  x, out, noise                        (32) the step inputs
  ddim_{pred}_{i}                      DDIM step (scaled_linear, clip_sample False, leading,
                                       offset 1, 50 steps, set_alpha_to_one False) from timesteps[i],
                                       i = 10, 49; eta 0; ddim_{pred}_eta_10: eta 0.7
                                       with variance_noise = noise
  euler_{pred}_{spacing}_{i}           Euler step at index i (10, 49) of 50 steps;
  euler_scaled_{spacing}_{i}           and scale_model_input(x) there (epsilon)
"""
import os

import torch
from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "diffusers_schedulers.safetensors")
SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
          beta_schedule="scaled_linear")
t = {}
for name, kw in [("linear", dict(beta_start=1e-4, beta_end=0.02, beta_schedule="linear")),
                 ("scaled_linear", dict(beta_start=0.00085, beta_end=0.012,
                                        beta_schedule="scaled_linear")),
                 ("cosine", dict(beta_schedule="squaredcos_cap_v2"))]:
    t[f"ac_{name}"] = DDPMScheduler(num_train_timesteps=1000, **kw).alphas_cumprod.float()

for spacing in ["leading", "trailing", "linspace"]:
    off = 1 if spacing == "leading" else 0
    for n in [7, 50]:
        d = DDIMScheduler(**SD, timestep_spacing=spacing, steps_offset=off, set_alpha_to_one=False)
        d.set_timesteps(n)
        t[f"ddim_ts_{spacing}_{n}"] = d.timesteps.to(torch.int32)
        e = EulerDiscreteScheduler(**SD, timestep_spacing=spacing, steps_offset=off)
        e.set_timesteps(n)
        t[f"euler_ts_{spacing}_{n}"] = e.timesteps.float()
        t[f"euler_sigmas_{spacing}_{n}"] = e.sigmas.float()
        t[f"euler_init_{spacing}_{n}"] = torch.tensor([float(e.init_noise_sigma)])

g = torch.Generator().manual_seed(0)
x, out, noise = (torch.randn(32, generator=g) for _ in range(3))
t.update(x=x, out=out, noise=noise)
for pred, pname in [("epsilon", "epsilon"), ("v_prediction", "v")]:
    for i in [10, 49]:
        d = DDIMScheduler(**SD, prediction_type=pred, steps_offset=1, set_alpha_to_one=False,
                          clip_sample=False)
        d.set_timesteps(50)
        t[f"ddim_{pname}_{i}"] = d.step(out, d.timesteps[i], x.clone(), eta=0.0).prev_sample
    d = DDIMScheduler(**SD, prediction_type=pred, steps_offset=1, set_alpha_to_one=False,
                      clip_sample=False)
    d.set_timesteps(50)
    t[f"ddim_{pname}_eta_10"] = d.step(out, d.timesteps[10], x.clone(), eta=0.7,
                                       variance_noise=noise).prev_sample
    for spacing in ["leading", "linspace"]:
        off = 1 if spacing == "leading" else 0
        for i in [10, 49]:
            e = EulerDiscreteScheduler(**SD, prediction_type=pred, timestep_spacing=spacing,
                                       steps_offset=off)
            e.set_timesteps(50)
            ts = e.timesteps[i]
            e._step_index = i
            scaled = e.scale_model_input(x.clone(), ts)
            if pname == "epsilon":
                t[f"euler_scaled_{spacing}_{i}"] = scaled
            t[f"euler_{pname}_{spacing}_{i}"] = e.step(out, ts, x.clone()).prev_sample

save_file({k: v.contiguous() for k, v in t.items()}, OUT)
os.chmod(OUT, 0o644)
print(len(t), "tensors,", os.path.getsize(OUT), "bytes")
