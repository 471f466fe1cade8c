"""Stable Video Diffusion checkpoints (``svd.safetensors``, ``svd_xt.safetensors``,
``svd_xt_1_1.safetensors``): Stability's single files in the generative-models
layout, which ComfyUI's ImageOnlyCheckpointLoader reads and diffusers cannot
load from one file.

* ``model.diffusion_model.*``: the video UNet -> diffusers'
  ``UNetSpatioTemporalConditionModel`` (ComfyUI's and Stability's block
  numbering: ``input_blocks.n`` is down block ``(n-1)//3``, item ``(n-1)%3``;
  ``time_stack`` is the temporal half of each block).
* ``first_stage_model.*``: the VAE with its temporal decoder ->
  ``AutoencoderKLTemporalDecoder``. The file has no ``quant_conv``; ComfyUI
  encodes without one, so it is set to the identity here (the decoder's up
  blocks are numbered the other way round in diffusers).
* ``conditioner.embedders.0.open_clip.model.visual.*``: the ViT-H image encoder,
  read by ``clip_vision_files`` (open_clip -> transformers).

Sizes are read from the tensors (the tests use a tiny file of the same layout);
the head count is ComfyUI's rule for SVD, 64 channels per head.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "conditioner.embedders.0.open_clip.model.visual."
LAYERS = 2  # resnets per block: SVD's, and what the block numbering below assumes
#: The UNet works on latents scaled by SD1.5's factor (ComfyUI: latent_format SD15).
SCALING_FACTOR = 0.18215


class SvdFileError(ValueError):
    """A file that is not a usable SVD checkpoint; the message names it."""


def is_svd(keys) -> bool:
    """Whether these tensor names are an SVD checkpoint's (a video UNet: temporal blocks)."""
    return any(k.startswith(UNET_PREFIX) and ".time_stack." in k for k in keys) and any(
        k.startswith(CLIP_PREFIX) for k in keys)


# -- UNet ----------------------------------------------------------------------------------
_RES = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."))


def _unet_resnet(rest: str) -> str:
    if rest.startswith("time_mixer."):
        return rest
    half = "spatial_res_block."
    if rest.startswith("time_stack."):
        half, rest = "temporal_res_block.", rest[len("time_stack."):]
    for old, new in _RES:
        if rest.startswith(old):
            return half + new + rest[len(old):]
    return half + rest


def _unet_transformer(rest: str) -> str:
    if rest.startswith("time_stack."):
        return "temporal_transformer_blocks." + rest[len("time_stack."):]
    if m := re.match(r"time_pos_embed\.([02])\.(.*)", rest):
        return f"time_pos_embed.linear_{1 if m[1] == '0' else 2}.{m[2]}"
    return rest


def unet_key(key: str) -> str:
    """One ``model.diffusion_model.`` name (prefix removed) -> diffusers' name."""
    for old, new in (("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
                     ("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2."),
                     ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out.")):
        if key.startswith(old):
            return new + key[len(old):]
    if m := re.match(r"middle_block\.([012])\.(.*)", key):
        if m[1] == "1":
            return "mid_block.attentions.0." + _unet_transformer(m[2])
        return f"mid_block.resnets.{int(m[1]) // 2}." + _unet_resnet(m[2])
    if m := re.match(r"input_blocks\.(\d+)\.([01])\.(.*)", key):
        n, part, rest = int(m[1]), m[2], m[3]
        block, item = (n - 1) // (LAYERS + 1), (n - 1) % (LAYERS + 1)
        if item == LAYERS:  # the downsampler
            return f"down_blocks.{block}.downsamplers.0.conv.{rest.removeprefix('op.')}"
        if part == "0":
            return f"down_blocks.{block}.resnets.{item}." + _unet_resnet(rest)
        return f"down_blocks.{block}.attentions.{item}." + _unet_transformer(rest)
    if m := re.match(r"output_blocks\.(\d+)\.([012])\.(.*)", key):
        n, part, rest = int(m[1]), int(m[2]), m[3]
        block, item = n // (LAYERS + 1), n % (LAYERS + 1)
        if part == 0:
            return f"up_blocks.{block}.resnets.{item}." + _unet_resnet(rest)
        if part == 2 or (block == 0 and rest.startswith("conv.")):  # upsampler (block 0 has no attention)
            return f"up_blocks.{block}.upsamplers.0.{rest}"
        return f"up_blocks.{block}.attentions.{item}." + _unet_transformer(rest)
    return key


def unet_config(state: dict) -> dict:
    """UNetSpatioTemporalConditionModel's config for the UNet whose (diffusers-named) weights are ``state``."""
    try:
        channels = tuple(int(state[f"down_blocks.{b}.resnets.0.spatial_res_block.conv1.weight"].shape[0])
                         for b in range(4))
        return dict(
            in_channels=int(state["conv_in.weight"].shape[1]), out_channels=int(state["conv_out.weight"].shape[0]),
            block_out_channels=channels, layers_per_block=LAYERS,
            num_attention_heads=tuple(max(1, c // 64) for c in channels),
            cross_attention_dim=int(state["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape[1]),
            projection_class_embeddings_input_dim=int(state["add_embedding.linear_1.weight"].shape[1]),
            addition_time_embed_dim=int(state["add_embedding.linear_1.weight"].shape[1]) // 3,
            transformer_layers_per_block=1, num_frames=25)
    except KeyError as exc:
        raise SvdFileError(f"misses {exc} of SVD's UNet") from exc


# -- VAE -----------------------------------------------------------------------------------
_ATTN = (("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0."))
_TIME_RES = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
             ("out_layers.3.", "conv2."))


def _vae_resnet(rest: str, video: bool) -> str:
    rest = rest.replace("nin_shortcut.", "conv_shortcut.")
    if not video:
        return rest
    if rest == "mix_factor":
        return "time_mixer.mix_factor"
    if rest.startswith("time_stack."):
        rest = rest[len("time_stack."):]
        for old, new in _TIME_RES:
            if rest.startswith(old):
                return "temporal_res_block." + new + rest[len(old):]
        return "temporal_res_block." + rest
    return "spatial_res_block." + rest


def _attention(rest: str) -> str:
    for old, new in _ATTN:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def vae_key(key: str, levels: int) -> str:
    """One ``first_stage_model.`` name (prefix removed) -> diffusers' AutoencoderKLTemporalDecoder name."""
    side, _, rest = key.partition(".")
    video = side == "decoder"
    if rest.startswith("norm_out."):
        return f"{side}.conv_norm_out.{rest[len('norm_out.'):]}"
    if video and rest.startswith("conv_out.time_mix_conv."):
        return "decoder.time_conv_out." + rest[len("conv_out.time_mix_conv."):]
    if m := re.match(r"mid\.block_([12])\.(.*)", rest):
        return f"{side}.mid_block.resnets.{int(m[1]) - 1}." + _vae_resnet(m[2], video)
    if m := re.match(r"mid\.attn_1\.(.*)", rest):
        return f"{side}.mid_block.attentions.0." + _attention(m[1])
    if m := re.match(r"down\.(\d+)\.block\.(\d+)\.(.*)", rest):
        return f"encoder.down_blocks.{m[1]}.resnets.{m[2]}." + _vae_resnet(m[3], False)
    if m := re.match(r"down\.(\d+)\.downsample\.(.*)", rest):
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.{m[2]}"
    if m := re.match(r"up\.(\d+)\.block\.(\d+)\.(.*)", rest):
        return f"decoder.up_blocks.{levels - 1 - int(m[1])}.resnets.{m[2]}." + _vae_resnet(m[3], True)
    if m := re.match(r"up\.(\d+)\.upsample\.(.*)", rest):
        return f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.{m[2]}"
    return key


def vae_config(state: dict) -> dict:
    levels = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.down."))
    try:
        channels = [int(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in range(levels)]
        latent = int(state["encoder.conv_out.weight"].shape[0]) // 2
    except KeyError as exc:
        raise SvdFileError(f"misses {exc} of SVD's VAE") from exc
    return dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * levels,
                block_out_channels=channels, layers_per_block=LAYERS, latent_channels=latent,
                scaling_factor=SCALING_FACTOR, force_upcast=True)


# -- loading -------------------------------------------------------------------------------
def _squeezed(key: str, value):
    # The VAE's mid-block attention: 1x1 convolutions in the file, linear layers in diffusers.
    if ".mid_block.attentions.0.to_" in key and value.ndim == 4:
        return value[:, :, 0, 0]
    return value


def load_svd(path: str | Path, label: str | None = None) -> tuple[Any, Any]:
    """(UNetSpatioTemporalConditionModel, AutoencoderKLTemporalDecoder) of an SVD file, float32, CPU, eval."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from lcmgraph.weight_files import WeightFileError, read_weights

    path = Path(path)
    label = label or path.name
    try:
        tensors, _ = read_weights(path)
    except WeightFileError as exc:
        raise SvdFileError(f"{label!r} {exc}") from exc
    if not is_svd(tensors):
        raise SvdFileError(f"{label!r} is not a Stable Video Diffusion checkpoint (no video UNet "
                           f"{UNET_PREFIX}*.time_stack.* with an image encoder {CLIP_PREFIX}*)")
    unet_state = {unet_key(k[len(UNET_PREFIX):]): v.float() for k, v in tensors.items() if k.startswith(UNET_PREFIX)}
    sgm_vae = {k[len(VAE_PREFIX):]: v for k, v in tensors.items() if k.startswith(VAE_PREFIX)}
    if not sgm_vae:
        raise SvdFileError(f"{label!r} has no VAE ({VAE_PREFIX}*)")
    config = vae_config(sgm_vae)
    levels = len(config["block_out_channels"])
    vae_state = {}
    for key, value in sgm_vae.items():
        new = vae_key(key, levels)
        vae_state[new] = _squeezed(new, value.float())
    latent2 = 2 * config["latent_channels"]
    vae_state.setdefault("quant_conv.weight", torch.eye(latent2)[:, :, None, None])
    vae_state.setdefault("quant_conv.bias", torch.zeros(latent2))
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**unet_config(unet_state))
        vae = AutoencoderKLTemporalDecoder(**config)
    for name, module, state in (("UNet", unet, unet_state), ("VAE", vae, vae_state)):
        missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise SvdFileError(f"{label!r}: its {name} does not match SVD's: missing {sorted(missing)[:3]}, "
                               f"unexpected {sorted(unexpected)[:3]}")
    return unet.eval(), vae.eval()
