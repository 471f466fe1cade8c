"""What a single-file LDM checkpoint is, and the diffusers configs that fit it.

Everything a tensor shape can tell (channels, depths, block kinds, vocabulary,
context width) is read from the header, so tiny test checkpoints and real ones
go through the same code. What shapes cannot tell (attention heads, VAE
scaling factor, activation, scheduler) comes from the shipped real configs in
``configs/<arch>.json``; at non-standard widths the head count follows a rule
(below). A checkpoint may pin any config value itself through the safetensors
metadata key ``lcmgraph.configs`` (JSON: ``{"unet": {...}, "text_encoder": {...}}``),
which wins over both.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD15_CLIP = "cond_stage_model.transformer."
SDXL_CLIP = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP = "conditioner.embedders.1.model."
METADATA_KEY = "lcmgraph.configs"
_CONFIG_DIR = Path(__file__).parent / "configs"


class LayoutError(ValueError):
    """The keys do not form a checkpoint we can load; the message says why."""


@functools.cache
def _shipped(arch: str) -> dict:
    configs = json.loads((_CONFIG_DIR / f"{arch}.json").read_text())
    configs.pop("_comment", None)
    return configs


def shipped_configs(arch: str) -> dict:
    """The real configs of ``arch`` (``"sd15"`` / ``"sdxl"``), a fresh copy."""
    return copy.deepcopy(_shipped(arch))


def detect_arch(keys) -> str:
    """``"sd15"`` or ``"sdxl"`` from the key names; a LayoutError naming what it is otherwise."""
    keys = set(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if not has(UNET):
        raise LayoutError(_not_a_checkpoint(keys))
    if has(UNET + "joint_blocks.") or has(UNET + "double_blocks.") or has(UNET + "layers."):
        raise LayoutError("this is a transformer (SD3/Flux-style) checkpoint; only SD1.5 and SDXL UNet checkpoints are supported")
    if has(UNET) and any(".time_stack." in k for k in keys if k.startswith(UNET)):
        raise LayoutError("this is a Stable Video Diffusion checkpoint: load it with ImageOnlyCheckpointLoader "
                          "(it has a video UNet, an image encoder and a temporal VAE, no text encoder)")
    if has("cond_stage_model.model."):
        raise LayoutError("this is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder); only SD1.5 and SDXL are supported")
    if has("conditioner.embedders.0.model.") and not has(SDXL_OPENCLIP):
        raise LayoutError("this is an SDXL refiner checkpoint; only SD1.5 and SDXL base-style checkpoints are supported")
    if has(SDXL_OPENCLIP) or has(SDXL_CLIP):
        arch, needed = "sdxl", {"SDXL CLIP-L text encoder": SDXL_CLIP, "SDXL OpenCLIP text encoder": SDXL_OPENCLIP}
    else:
        arch, needed = "sd15", {"CLIP text encoder": SD15_CLIP}
    needed = {"VAE": VAE, **needed}
    missing = [f"{what} ({prefix}*)" for what, prefix in needed.items() if not has(prefix)]
    if missing:
        raise LayoutError(f"this {arch.upper()} checkpoint has a UNet but no {', no '.join(missing)}; "
                          "only complete checkpoints (UNet, VAE and text encoders in one file) are supported")
    return arch


def _not_a_checkpoint(keys: set) -> str:
    sample = ", ".join(sorted(keys)[:3]) or "no tensors at all"
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_" in k or "lora_A" in k for k in keys):
        return "this is a LoRA, not a checkpoint: apply it to a loaded model instead"
    if "conv_in.weight" in keys and any(k.startswith("down_blocks.") for k in keys):
        return "this is a diffusers-format UNet weight file, not a single-file checkpoint: load its diffusers folder instead"
    if any(k.startswith(("encoder.down.", "decoder.up.")) for k in keys):
        return "this is a standalone VAE file, not a full checkpoint"
    return f"this is not an SD1.5 or SDXL checkpoint: it has no {UNET}* (UNet) tensors (its first keys: {sample})"


def _indices(keys, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})


def _heads_rule(width: int, head_dim: int) -> int:
    # Real SD models use 64-wide heads (SDXL, CLIP) or a fixed 8 heads (SD1.5
    # UNet); a width that does not fit falls back to 8-wide heads, which is what
    # diffusers' own tiny test models use. Heads change no shape, so a file
    # whose heads differ must pin them in its metadata.
    if width % head_dim == 0 and width >= head_dim:
        return width // head_dim
    return width // 8 if width % 8 == 0 else 1


def unet_heads(arch: str, channels, base_heads):
    """``attention_head_dim`` for a UNet (or its ControlNet) with these level widths."""
    if arch == "sdxl":
        return [_heads_rule(c, 64) for c in channels]
    return base_heads if all(c % base_heads == 0 for c in channels) else _heads_rule(channels[0], 64)


def input_levels(keys, what: str = "UNet") -> tuple[int, int]:
    """(levels, resnets per level) of LDM ``input_blocks.*`` names (prefix removed);
    ControlNets (controlnet_files) share the UNet's encoder layout."""
    keys = set(keys)
    inputs = _indices(keys, "input_blocks.")
    downs = [i for i in inputs if f"input_blocks.{i}.0.op.weight" in keys]
    levels = len(downs) + 1
    per_level, rest = divmod(len(inputs) - 1 - len(downs), levels)
    if rest or per_level < 1:
        raise LayoutError(f"the {what}'s input blocks do not form equal levels; not an SD-style {what}")
    return levels, per_level


def infer_unet(sd, arch: str, base: dict, pooled_dim: int | None) -> dict:
    keys = [k[len(UNET):] for k in sd if k.startswith(UNET)]

    def shape(key):
        if UNET + key not in sd:
            raise LayoutError(f"the UNet has no {UNET}{key} tensor")
        return sd.shape(UNET + key)

    levels, per_level = input_levels(keys)
    first = [1 + lvl * (per_level + 1) for lvl in range(levels)]
    channels = [shape(f"input_blocks.{i}.0.out_layers.3.weight")[0] for i in first]
    attn = [f"input_blocks.{i}.1.proj_in.weight" in keys for i in first]
    depth = [len(_indices(keys, f"input_blocks.{i}.1.transformer_blocks.")) or 1 for i in first]
    if not any(attn):
        raise LayoutError("the UNet has no cross-attention blocks; not an SD-style UNet")
    a = first[attn.index(True)]
    cross_dim = shape(f"input_blocks.{a}.1.transformer_blocks.0.attn2.to_k.weight")[1]
    linear = len(shape(f"input_blocks.{a}.1.proj_in.weight")) == 2
    conv_in = shape("input_blocks.0.0.weight")
    config = {
        "in_channels": conv_in[1],
        "out_channels": shape("out.2.weight")[0],
        "block_out_channels": channels,
        "layers_per_block": per_level,
        "down_block_types": ["CrossAttnDownBlock2D" if x else "DownBlock2D" for x in attn],
        "up_block_types": ["CrossAttnUpBlock2D" if x else "UpBlock2D" for x in reversed(attn)],
        "cross_attention_dim": cross_dim,
        "use_linear_projection": linear,
        "transformer_layers_per_block": depth if arch == "sdxl" else depth[0],
    }
    if arch == "sd15" and len(set(depth)) > 1:
        raise LayoutError("an SD1.5 UNet with different transformer depths per level is not supported")
    if shape("time_embed.0.weight")[0] != 4 * channels[0]:
        config["time_embedding_dim"] = shape("time_embed.0.weight")[0]
    if arch == "sdxl":
        if "label_emb.0.0.weight" not in keys:
            raise LayoutError("an SDXL UNet needs label_emb (size/crop conditioning) tensors")
        adm = shape("label_emb.0.0.weight")[1]
        time_dim, rest = divmod(adm - (pooled_dim or 0), 6)
        if rest or time_dim <= 0:
            raise LayoutError(f"the UNet's conditioning width {adm} does not fit a pooled text width of {pooled_dim}")
        config.update(projection_class_embeddings_input_dim=adm, addition_time_embed_dim=time_dim)
    elif "label_emb.0.0.weight" in keys:
        raise LayoutError("this UNet has class/size conditioning (label_emb) but no SDXL text encoders")
    config["attention_head_dim"] = unet_heads(arch, channels, base["attention_head_dim"])
    return _fill(base, config)


#: Where the VAE's shapes are read, in the LDM layout and in diffusers' (VAE files of their own, vae_files.py).
VAE_NAMES = {
    "ldm": {"down": "encoder.down.", "block": "block", "attention": "encoder.mid.attn_1.q.weight"},
    "diffusers": {"down": "encoder.down_blocks.", "block": "resnets", "attention": "encoder.mid_block.attentions.0.to_q.weight"},
}


def infer_vae(sd, base: dict, prefix: str = VAE, layout: str = "ldm") -> dict:
    names = VAE_NAMES[layout]
    keys = [k[len(prefix):] for k in sd if k.startswith(prefix)]

    def shape(key):
        if prefix + key not in sd:
            raise LayoutError(f"the VAE has no {prefix}{key} tensor")
        return sd.shape(prefix + key)

    down, block = names["down"], names["block"]
    levels = _indices(keys, down)
    if not levels:
        raise LayoutError(f"the VAE has no {down}* blocks")
    n = len(levels)
    config = {
        "in_channels": shape("encoder.conv_in.weight")[1],
        "out_channels": shape("decoder.conv_out.weight")[0],
        "block_out_channels": [shape(f"{down}{i}.{block}.0.conv1.weight")[0] for i in levels],
        "layers_per_block": len(_indices(keys, f"{down}0.{block}.")),
        "latent_channels": shape("decoder.conv_in.weight")[1],
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "mid_block_add_attention": names["attention"] in keys,
        "use_quant_conv": "quant_conv.weight" in keys,
        "use_post_quant_conv": "post_quant_conv.weight" in keys,
    }
    return _fill(base, config)


def infer_clip(sd, prefix: str, base: dict, open_clip: bool = False) -> dict:
    """CLIP text config; ``open_clip`` for the OpenCLIP key layout (SDXL's second encoder)."""
    keys = [k[len(prefix):] for k in sd if k.startswith(prefix)]
    if open_clip:
        names = {"tok": "token_embedding.weight", "pos": "positional_embedding", "layers": "transformer.resblocks.",
                 "fc1": "transformer.resblocks.0.mlp.c_fc.weight"}
    else:
        inner = "text_model." if any(k.startswith("text_model.") for k in keys) else ""
        names = {"tok": inner + "embeddings.token_embedding.weight", "pos": inner + "embeddings.position_embedding.weight",
                 "layers": inner + "encoder.layers.", "fc1": inner + "encoder.layers.0.mlp.fc1.weight"}
    for name in ("tok", "pos", "fc1"):
        if prefix + names[name] not in sd:
            raise LayoutError(f"the text encoder has no {prefix}{names[name]} tensor")
    vocab, hidden = sd.shape(prefix + names["tok"])
    config = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": sd.shape(prefix + names["pos"])[0],
        "num_hidden_layers": len(_indices(keys, names["layers"])),
        "intermediate_size": sd.shape(prefix + names["fc1"])[0],
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 1,
    }
    if open_clip and prefix + "text_projection" in sd:
        config["projection_dim"] = sd.shape(prefix + "text_projection")[1]
    elif not open_clip:  # unused without a projection layer; CLIP-L's equals its width
        config["projection_dim"] = hidden
    if hidden != base["hidden_size"]:
        config["num_attention_heads"] = _heads_rule(hidden, 64)
    return _fill(base, config)


def _fill(base: dict, inferred: dict) -> dict:
    return {**{k: v for k, v in base.items() if not k.startswith("_")}, **inferred}


def infer_configs(sd, arch: str) -> dict:
    """All component configs of a checkpoint: shipped defaults < shapes < the file's own metadata."""
    base = shipped_configs(arch)
    pinned = _pinned(sd.metadata)
    configs = {"scheduler": base["scheduler"], "tokenizer": base["tokenizer"]}
    if arch == "sdxl":
        configs["text_encoder"] = infer_clip(sd, SDXL_CLIP, base["text_encoder"])
        configs["text_encoder_2"] = infer_clip(sd, SDXL_OPENCLIP, base["text_encoder_2"], open_clip=True)
        configs["tokenizer_2"] = base["tokenizer_2"]
        pooled = pinned.get("text_encoder_2", {}).get("projection_dim", configs["text_encoder_2"]["projection_dim"])
    else:
        configs["text_encoder"] = infer_clip(sd, SD15_CLIP, base["text_encoder"])
        pooled = None
    configs["unet"] = infer_unet(sd, arch, base["unet"], pooled)
    configs["vae"] = infer_vae(sd, base["vae"])
    if "v_pred" in sd:  # the marker some trainers leave in v-prediction fine-tunes
        configs["scheduler"]["prediction_type"] = "v_prediction"
    for name in ("tokenizer", "tokenizer_2"):
        if name in configs:
            te = configs["text_encoder" + name[len("tokenizer"):]]
            configs[name]["model_max_length"] = te["max_position_embeddings"]
    for name, values in pinned.items():
        if name not in configs or not isinstance(values, dict):
            raise LayoutError(f"the {METADATA_KEY} metadata names an unknown component {name!r}")
        configs[name].update(values)
    return configs


def _pinned(metadata: dict) -> dict:
    if METADATA_KEY not in metadata:
        return {}
    try:
        pinned = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise LayoutError(f"the {METADATA_KEY} metadata is not valid JSON ({exc})") from exc
    if not isinstance(pinned, dict):
        raise LayoutError(f"the {METADATA_KEY} metadata must be a JSON object")
    return pinned
