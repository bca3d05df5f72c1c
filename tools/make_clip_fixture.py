"""Makes tests/fixtures/clip_tiny_*.safetensors: two tiny transformers CLIPTextModels
with random weights (every parameter random, biases and layer norms included), fixed
token ids, and their outputs, for tests/test_text_encoder.c.

Made with: Python 3.11.7, torch 2.15.0, transformers 5.24.0, safetensors 0.8.0
  python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers safetensors
  /tmp/venv/bin/python tools/make_clip_fixture.py

Per model NAME (quick: quick_gelu, 2 layers; gelu: erf gelu, 3 layers):
  clip_tiny_NAME.safetensors     the state dict (names with "text_model.", as SD checkpoints have them) plus
                                 the position_ids buffer older files carry; metadata
                                 heads / hidden_act as selma writes them
  clip_tiny_NAME_io.safetensors  ids (B, T) int32; last_hidden_state (B, T, C);
                                 penultimate (B, T, C) = final_layer_norm(hidden_states[-2]),
                                 diffusers' clip_skip=1
"""
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def make(name, act, layers, seed):
    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=13, hidden_size=16, intermediate_size=40,
                         num_hidden_layers=layers, num_attention_heads=2,
                         max_position_embeddings=7, hidden_act=act, layer_norm_eps=1e-5,
                         bos_token_id=0, eos_token_id=2, pad_token_id=2)
    model = CLIPTextModel(cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layer_norm" in pname and pname.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    ids = torch.randint(0, cfg.vocab_size, (3, cfg.max_position_embeddings))
    with torch.no_grad():
        o = model(input_ids=ids, output_hidden_states=True)
        tm = getattr(model, "text_model", model)  # transformers 5 dropped the wrapper
        pen = tm.final_layer_norm(o.hidden_states[-2])
    # Names as every SD checkpoint and transformers 4 have them; transformers 5 saves
    # them without "text_model." (selma reads both).
    sd = {(k if k.startswith("text_model.") else "text_model." + k): v.contiguous()
          for k, v in model.state_dict().items()}
    sd["text_model.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings)[None]
    paths = [os.path.join(OUT, f"clip_tiny_{name}{s}.safetensors") for s in ("", "_io")]
    save_file(sd, paths[0], metadata={"format": "pt", "heads": "2", "hidden_act": act})
    save_file({"ids": ids.to(torch.int32), "last_hidden_state": o.last_hidden_state.contiguous(),
               "penultimate": pen.contiguous()}, paths[1])
    for p in paths:
        os.chmod(p, 0o644)
    print(name, sorted(sd)[:3], o.last_hidden_state.shape)


make("quick", "quick_gelu", 2, 1)
make("gelu", "gelu", 3, 2)
