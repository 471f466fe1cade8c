"""Diffusers components -> one LDM-layout ``.safetensors`` file (the inverse of
:mod:`single_file_loader`).

It exists so that tests and benchmarks can make SD1.5/SDXL single files of
any size without downloading one; the key layout is the one of the original
CompVis / Stability releases (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.*``, ``conditioner.embedders.{0,1}.*``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .single_file_arch import METADATA_KEY, SD15_CLIP, SDXL_CLIP, SDXL_OPENCLIP, UNET, VAE

# Config values no tensor shape reveals; written into the file's metadata so
# that a non-standard (tiny) model loads back exactly as it was built.
UNSHAPED = {
    "unet": ("attention_head_dim", "num_attention_heads", "sample_size", "norm_num_groups", "norm_eps", "act_fn",
             "upcast_attention", "flip_sin_to_cos", "freq_shift"),
    "vae": ("scaling_factor", "shift_factor", "sample_size", "norm_num_groups", "force_upcast", "act_fn"),
    "text_encoder": ("num_attention_heads", "hidden_act", "layer_norm_eps"),
    "text_encoder_2": ("num_attention_heads", "hidden_act", "layer_norm_eps"),
}
_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def unet_to_ldm(state_dict: dict, config) -> dict:
    per = config["layers_per_block"] + 1
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}

    def resnet(rest: str) -> str:
        for new, old in _RESNET:
            rest = rest.replace(new + ".", old + ".")
        return rest

    out = {}
    for key, value in state_dict.items():
        head, _, param = key.rpartition(".")
        if head in fixed:
            out[f"{fixed[head]}.{param}"] = value
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            i = 1 + b * per + j
            out[f"input_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{i}.1.{rest}"] = value
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            out[f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"] = value
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            out[f"middle_block.{2 * int(m[1])}.{resnet(m[2])}"] = value
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            out[f"middle_block.1.{m[1]}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            i = b * per + j
            out[f"output_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"output_blocks.{i}.1.{rest}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m[1])
            out[f"output_blocks.{b * per + per - 1}.{2 if up_attn[b] else 1}.conv.{m[2]}"] = value
        else:
            raise ValueError(f"no LDM name for UNet tensor {key}")
    return {UNET + k: v for k, v in out.items()}


def vae_to_ldm(state_dict: dict, config) -> dict:
    n = len(config["block_out_channels"])
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in state_dict.items():
        k = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", k)
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{n - 1 - int(m[1])}.block.", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{n - 1 - int(m[1])}.upsample.", k)
        k = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", k)
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)$", k):
            k = f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"
            if m[3] == "weight" and m[2] != "group_norm":
                value = value[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out[VAE + k] = value
    return out


def clip_to_ldm(state_dict: dict, prefix: str) -> dict:
    out = {}
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue
        out[prefix + (key if key.startswith("text_model.") else "text_model." + key)] = value
    return out


def open_clip_to_ldm(state_dict: dict, prefix: str = SDXL_OPENCLIP) -> dict:
    sd = {k.removeprefix("text_model."): v for k, v in state_dict.items() if not k.endswith("position_ids")}
    fixed = {"embeddings.token_embedding.weight": "token_embedding.weight",
             "embeddings.position_embedding.weight": "positional_embedding",
             "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    renames = [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
               ("self_attn.out_proj", "attn.out_proj")]
    out = {"text_projection": sd.pop("text_projection.weight").T.contiguous()}
    for key, value in sd.items():
        if key in fixed:
            out[fixed[key]] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", key):
            i, p = m[1], m[2]
            qkv = [sd[f"encoder.layers.{i}.self_attn.{x}_proj.{p}"] for x in "qkv"]
            out[f"transformer.resblocks.{i}.attn.in_proj_{p}"] = torch.cat(qkv)
        elif re.match(r"encoder\.layers\.\d+\.self_attn\.[kv]_proj\.", key):
            continue
        elif key.startswith("encoder.layers."):
            k = key.replace("encoder.layers.", "transformer.resblocks.")
            for new, old in renames:
                k = k.replace(new, old)
            out[k] = value
        else:
            raise ValueError(f"no OpenCLIP name for text encoder tensor {key}")
    return {prefix + k: v for k, v in out.items()}


def to_ldm(unet, vae, text_encoder, text_encoder_2=None, weights: dict | None = None) -> dict:
    """One LDM-layout state dict from diffusers/transformers models (SDXL when
    ``text_encoder_2`` is given). ``weights`` maps a component name ("unet",
    "vae", "text_encoder", "text_encoder_2") to the state dict to write in place
    of the module's own (merged or LoRA-patched weights, say)."""
    weights = weights or {}
    state = lambda name, module: weights[name] if name in weights else module.state_dict()  # noqa: E731
    sd = {**unet_to_ldm(state("unet", unet), unet.config), **vae_to_ldm(state("vae", vae), vae.config)}
    if text_encoder_2 is None:
        sd.update(clip_to_ldm(state("text_encoder", text_encoder), SD15_CLIP))
    else:
        sd.update(clip_to_ldm(state("text_encoder", text_encoder), SDXL_CLIP))
        sd.update(open_clip_to_ldm(state("text_encoder_2", text_encoder_2)))
    return sd


def pinned_configs(**components) -> dict:
    """The UNSHAPED config values of each named component (``unet=model, ...``)."""
    pinned = {}
    for name, model in components.items():
        if model is not None:
            config = model.config if isinstance(model.config, dict) else model.config.to_dict()
            pinned[name] = {k: config[k] for k in UNSHAPED[name] if k in config}
    return pinned


def save_single_file(path: str | Path, unet, vae, text_encoder, text_encoder_2=None, pin: bool = True,
                     dtype: torch.dtype | None = None, tokenizer=None, tokenizer_2=None,
                     weights: dict | None = None, metadata: dict | None = None) -> Path:
    """Write the components as one LDM-layout file.

    ``pin`` stores the UNSHAPED config values in the metadata; a tokenizer
    given that is not the shipped CLIP vocabulary (cut to its size) is stored
    there too, so the file loads back with it. ``weights``: state dicts to
    write instead of the modules' own (see ``to_ldm``); ``metadata``: more
    string entries for the file's header.
    """
    from safetensors.torch import save_file

    from .single_file_tokenizer import is_clip_bpe, tokenizer_to_json

    sd = to_ldm(unet, vae, text_encoder, text_encoder_2, weights)
    sd = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    metadata = {"format": "pt", **(metadata or {})}
    if pin:
        configs = pinned_configs(unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2)
        metadata[METADATA_KEY] = json.dumps(configs)
    for name, tok in (("tokenizer", tokenizer), ("tokenizer_2", tokenizer_2)):
        if tok is not None and not is_clip_bpe(tok):
            metadata[f"lcmgraph.{name}"] = tokenizer_to_json(tok)
    save_file(sd, str(path), metadata=metadata)
    return Path(path)
