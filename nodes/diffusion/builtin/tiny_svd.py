"""A tiny Stable Video Diffusion checkpoint with fixed random weights, written as
Stability's single files are (``model.diffusion_model.*``, ``first_stage_model.*``,
``conditioner.embedders.0.open_clip.model.visual.*``), so that tests and the
corpus go through the real loading path (formats/svd_files.py). Same block
structure as SVD (four levels, two resnets each), 32 channels, one head.

The names are written here from diffusers' modules by the inverse of the
loader's table; the tests check them against names read from Stability's and
ComfyUI's code, and the loaded weights against these modules."""

from __future__ import annotations

import re
from pathlib import Path

UNET = dict(in_channels=8, out_channels=4, block_out_channels=(32, 32, 32, 32), layers_per_block=2,
            num_attention_heads=(1, 1, 1, 1), cross_attention_dim=32, transformer_layers_per_block=1, num_frames=25,
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=768)
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4, block_out_channels=[32] * 4,
           layers_per_block=2, latent_channels=4, scaling_factor=0.18215, force_upcast=True)
#: The image encoder: 64-pixel images in 16-pixel patches, 32 wide, one head, projected to the UNet's context.
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=1, image_size=64,
              patch_size=16, projection_dim=32, hidden_act="gelu", layer_norm_eps=1e-5)


def make_models(seed: int = 50):
    """(UNetSpatioTemporalConditionModel, AutoencoderKLTemporalDecoder, CLIPVisionModelWithProjection), every
    parameter perturbed so that no two tensors of a kind are equal (a misplaced one shows)."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(**UNET)
        vae = AutoencoderKLTemporalDecoder(**VAE)
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION))
        with torch.no_grad():
            for module in (unet, vae, vision):
                for p in module.parameters():
                    p.add_(torch.randn_like(p) * 0.02)
            # Stability's file has no quant_conv; the loader makes it the identity, as ComfyUI encodes.
            vae.quant_conv.weight.copy_(torch.eye(8)[:, :, None, None])
            vae.quant_conv.bias.zero_()
    return unet.eval(), vae.eval(), vision.eval()


# -- diffusers names -> Stability's ---------------------------------------------------------
_RES = (("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
        ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection."))


def _resnet(rest: str) -> str:
    if rest.startswith("time_mixer."):
        return rest
    half, rest = rest.split(".", 1)
    for new, old in _RES:
        if rest.startswith(new):
            rest = old + rest[len(new):]
            break
    return ("time_stack." if half == "temporal_res_block" else "") + rest


def _transformer(rest: str) -> str:
    rest = rest.replace("temporal_transformer_blocks.", "time_stack.")
    return re.sub(r"^time_pos_embed\.linear_([12])\.", lambda m: f"time_pos_embed.{0 if m[1] == '1' else 2}.", rest)


def sgm_unet_key(key: str) -> str:
    for new, old in (("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
                     ("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2."),
                     ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2.")):
        if key.startswith(new):
            return old + key[len(new):]
    if m := re.match(r"mid_block\.resnets\.([01])\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}." + _resnet(m[2])
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return "middle_block.1." + _transformer(m[1])
    if m := re.match(r"down_blocks\.(\d)\.resnets\.(\d)\.(.*)", key):
        return f"input_blocks.{1 + 3 * int(m[1]) + int(m[2])}.0." + _resnet(m[3])
    if m := re.match(r"down_blocks\.(\d)\.attentions\.(\d)\.(.*)", key):
        return f"input_blocks.{1 + 3 * int(m[1]) + int(m[2])}.1." + _transformer(m[3])
    if m := re.match(r"down_blocks\.(\d)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{3 + 3 * int(m[1])}.0.op.{m[2]}"
    if m := re.match(r"up_blocks\.(\d)\.resnets\.(\d)\.(.*)", key):
        return f"output_blocks.{3 * int(m[1]) + int(m[2])}.0." + _resnet(m[3])
    if m := re.match(r"up_blocks\.(\d)\.attentions\.(\d)\.(.*)", key):
        return f"output_blocks.{3 * int(m[1]) + int(m[2])}.1." + _transformer(m[3])
    if m := re.match(r"up_blocks\.(\d)\.upsamplers\.0\.(.*)", key):
        block = int(m[1])
        return f"output_blocks.{3 * block + 2}.{1 if block == 0 else 2}.{m[2]}"
    raise KeyError(key)


_VRES = (("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."))
_ATTN = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."))


def _video_resnet(rest: str) -> str:
    if rest == "time_mixer.mix_factor":
        return "mix_factor"
    half, rest = rest.split(".", 1)
    if half == "temporal_res_block":
        for new, old in _VRES:
            if rest.startswith(new):
                return "time_stack." + old + rest[len(new):]
    return rest.replace("conv_shortcut.", "nin_shortcut.")


def sgm_vae_key(key: str, levels: int) -> str | None:
    side, _, rest = key.partition(".")
    if side == "quant_conv":
        return None  # not in Stability's first_stage_model
    if rest.startswith("conv_norm_out."):
        return f"{side}.norm_out.{rest[len('conv_norm_out.'):]}"
    if rest.startswith("time_conv_out."):
        return "decoder.conv_out.time_mix_conv." + rest[len("time_conv_out."):]
    if m := re.match(r"mid_block\.resnets\.(\d)\.(.*)", rest):
        inner = _video_resnet(m[2]) if side == "decoder" else m[2].replace("conv_shortcut.", "nin_shortcut.")
        return f"{side}.mid.block_{int(m[1]) + 1}.{inner}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", rest):
        inner = m[1]
        for new, old in _ATTN:
            if inner.startswith(new):
                inner = old + inner[len(new):]
                break
        return f"{side}.mid.attn_1.{inner}"
    if m := re.match(r"down_blocks\.(\d)\.resnets\.(\d)\.(.*)", rest):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut.', 'nin_shortcut.')}"
    if m := re.match(r"down_blocks\.(\d)\.downsamplers\.0\.(.*)", rest):
        return f"encoder.down.{m[1]}.downsample.{m[2]}"
    if m := re.match(r"up_blocks\.(\d)\.resnets\.(\d)\.(.*)", rest):
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{_video_resnet(m[3])}"
    if m := re.match(r"up_blocks\.(\d)\.upsamplers\.0\.(.*)", rest):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"
    return key


def open_clip_state(vision) -> dict:
    """A transformers CLIP vision tower's weights under open_clip's names."""
    import torch

    s = vision.state_dict()
    out = {"class_embedding": s["vision_model.embeddings.class_embedding"],
           "conv1.weight": s["vision_model.embeddings.patch_embedding.weight"],
           "positional_embedding": s["vision_model.embeddings.position_embedding.weight"],
           "proj": s["visual_projection.weight"].t().contiguous()}
    for side, name in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for kind in ("weight", "bias"):
            out[f"{name}.{kind}"] = s[f"vision_model.{side}.{kind}"]
    for i in range(vision.config.num_hidden_layers):
        layer, block = f"vision_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{block}attn.in_proj_{kind}"] = torch.cat([s[f"{layer}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for new, old in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{block}{old}.{kind}"] = s[f"{layer}{new}.{kind}"]
    return out


def checkpoint_state(unet, vae, vision) -> dict:
    from ..formats.svd_files import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX

    out = {UNET_PREFIX + sgm_unet_key(k): v for k, v in unet.state_dict().items()}
    levels = len(vae.config.block_out_channels)
    for key, value in vae.state_dict().items():
        name = sgm_vae_key(key, levels)
        if name is not None:
            out[VAE_PREFIX + name] = value[:, :, None, None] if ".mid.attn_1." in name and value.ndim == 2 else value
    out.update({CLIP_PREFIX + k: v for k, v in open_clip_state(vision).items()})
    return {k: v.detach().contiguous() for k, v in out.items()}


def save_svd(target: Path, seed: int = 50) -> Path:
    from safetensors.torch import save_file

    from .tiny import build_atomically

    return build_atomically(target, lambda p: save_file(checkpoint_state(*make_models(seed)), str(p)))
