#!/usr/bin/env python3
"""Parity fixtures for loading a Stable Diffusion diffusers folder (models/sd_load.c,
tests/test_sd_load.c, `selma sd-check`).

Builds two tiny random-weight pipelines with diffusers and transformers, no download:

  sd1: CLIPTextModel with quick_gelu, UNet with 1x1-conv attention projections,
       epsilon prediction (as SD 1.x ships)
  sd2: CLIPTextModel with erf gelu, UNet with Linear projections and head counts per
       level, v_prediction (as SD 2.x 768-v ships). SD 2's "penultimate layer" needs
       nothing special: diffusers' converted SD 2 text encoders are OpenCLIP's tower
       with the last layer already dropped (num_hidden_layers 23 of 24) and the
       pipeline takes last_hidden_state (final_layer_norm applied), as here.

Both use DDIMScheduler with SD's settings (scaled_linear 0.00085..0.012, leading
spacing, steps_offset 1, set_alpha_to_one false, clip_sample false) and the tiny
CLIP vocabulary of tools/make_clip_tokenizer_fixture.py (tests/fixtures/
clip_tokenizer_sd{1,2}/, copied as tokenizer/). Every weight is drawn from a seeded
normal and rounded to a float16 value, so the F16 files hold exactly the weights the
float32 reference ran with. Written under tests/fixtures/:

  sd_tiny_<name>/                      model_index.json, unet/, text_encoder/,
                                       tokenizer/, vae/, scheduler/ (save_pretrained)
  sd_tiny_<name>_io.safetensors        inputs of `selma sd-check` and the expected
                                       outputs as "expected.<output>":
    __metadata__ prompts   a JSON list of B prompt strings; ddim_steps the number of
                           inference steps the DDIM step is taken with
    latents (B, 4, h, w), timestep (B), context (B, 77, C), image (B, 3, H, W)
    expected.input_ids     (B, 77) I32, the pipeline tokenizer's ids
    expected.text_states   (B, 77, C) the text encoder's last_hidden_state
    expected.unet_out      UNet(latents, timestep, context)
    expected.ddim_step     DDIMScheduler.step(unet_out, timestep, latents), eta 0
    expected.vae_latents   encode(image).latent_dist.mean * scaling_factor
    expected.vae_decoded   decode(latents / scaling_factor)
    pipeline_latents       (B, 4, h, w) the initial latents of the full pipeline run
    expected.pipeline_image (B, H, W, 3) in [0, 1]: StableDiffusionPipeline with those
                           latents, 2 steps, guidance 7.5, output_type "np"

Tested with (PyPI, CPU): python 3.11.7, torch 2.15.0, diffusers 0.42.1,
transformers 5.24.0, tokenizers 0.23.3, safetensors 0.8.0

  python3 -m venv /tmp/sd-venv
  /tmp/sd-venv/bin/pip install torch==2.15.0 diffusers==0.42.1 transformers==5.24.0 \
      tokenizers==0.23.3 safetensors==0.8.0
  /tmp/sd-venv/bin/python tools/make_sd_fixture.py
"""
import json
import os
import shutil

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
PROMPTS = ["a red cube left of a blue ball!", "Two cats, 3 dogs & an émoji 🙂"]
B, WIDTH, STEPS, GUIDANCE = 2, 16, 2, 7.5

WORLDS = {
    "sd1": dict(act="quick_gelu", linear_proj=False, heads=2, pred="epsilon"),
    "sd2": dict(act="gelu", linear_proj=True, heads=(2, 4), pred="v_prediction"),
}


def randomize(model, seed, scale):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.randn_like(p) * scale).half().float())
    model.eval()
    return model


def make(name, w, seed):
    tok_dir = os.path.join(OUT, f"clip_tokenizer_{name}")
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok.get_vocab()), hidden_size=WIDTH, intermediate_size=2 * WIDTH,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
        hidden_act=w["act"], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id))
    randomize(te, seed, 0.2)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(4, 8),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=w["heads"],
        cross_attention_dim=WIDTH, norm_num_groups=2, use_linear_projection=w["linear_proj"])
    randomize(unet, seed + 1, 0.1)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(4, 8), layers_per_block=1,
        latent_channels=4, norm_num_groups=2, sample_size=16, scaling_factor=0.18215)
    randomize(vae, seed + 2, 0.2)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                          prediction_type=w["pred"])
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)

    torch.manual_seed(seed + 3)
    sf = vae.config.scaling_factor
    latents = torch.randn(B, 4, 8, 8)
    image = torch.rand(B, 3, 16, 16) * 2 - 1
    pipe_latents = torch.randn(B, 4, 8, 8)
    with torch.no_grad():
        ids = tok(PROMPTS, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        states = te(ids)[0]
        sched.set_timesteps(STEPS)
        t = sched.timesteps[0]
        timestep = torch.full((B,), float(t))
        unet_out = unet(latents, timestep, encoder_hidden_states=states).sample
        ddim = sched.step(unet_out, t, latents).prev_sample
        enc = vae.encode(image).latent_dist.mean * sf
        dec = vae.decode(latents / sf).sample
        img = pipe(PROMPTS, height=16, width=16, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                   latents=pipe_latents.clone(), output_type="np").images
    io = {"latents": latents, "timestep": timestep, "context": states.clone(), "image": image,
          "pipeline_latents": pipe_latents,
          "expected.input_ids": ids.to(torch.int32), "expected.text_states": states,
          "expected.unet_out": unet_out, "expected.ddim_step": ddim, "expected.vae_latents": enc,
          "expected.vae_decoded": dec, "expected.pipeline_image": torch.from_numpy(img).float()}
    io = {k: v.contiguous() for k, v in io.items()}
    meta = {"prompts": json.dumps(PROMPTS, ensure_ascii=False), "ddim_steps": str(STEPS)}

    folder = os.path.join(OUT, f"sd_tiny_{name}")
    shutil.rmtree(folder, ignore_errors=True)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    # The tokenizer folder as the tokenizer fixture has it (transformers 5 would add a
    # tokenizer.json, which selma does not read).
    shutil.rmtree(os.path.join(folder, "tokenizer"))
    shutil.copytree(tok_dir, os.path.join(folder, "tokenizer"))
    save_file(io, os.path.join(OUT, f"sd_tiny_{name}_io.safetensors"), metadata=meta)
    for root, _, files in os.walk(folder):  # save_pretrained writes weights 0600
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    frac = ((img > 0) & (img < 1)).mean()
    print(f"{name}: t={int(t)} |unet_out| max {unet_out.abs().max():.3f}, |dec| max "
          f"{dec.abs().max():.3f}, image pixels inside (0, 1): {frac:.2f}")


if __name__ == "__main__":
    for i, (name, w) in enumerate(WORLDS.items()):
        make(name, w, 4321 + 10 * i)
