"""Single-file ControlNets for the tests: a diffusers ``ControlNetModel`` written as
one ``.safetensors`` in the original ControlNet layout (the inverse of
controlnet_files' loading) or in diffusers' own key names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lcmgraph_nodes.diffusion.formats.single_file_arch import METADATA_KEY, UNET
from lcmgraph_nodes.diffusion.formats.single_file_export import unet_to_ldm

# Config values no tensor shape shows; pinned in the metadata so that a tiny
# (non-standard) ControlNet loads back exactly as it was built.
UNSHAPED = ("attention_head_dim", "num_attention_heads", "norm_num_groups", "norm_eps", "act_fn", "upcast_attention",
            "flip_sin_to_cos", "freq_shift", "addition_time_embed_dim", "controlnet_conditioning_channel_order",
            "global_pool_conditions")


def controlnet_to_ldm(state_dict: dict, config, prefix: str = "control_model.") -> dict:
    """diffusers ControlNet names -> ``input_blocks/zero_convs/input_hint_block/middle_block_out``.

    The UNet-shaped part (time/label embedding, conv_in, down and mid blocks) is
    named as in a UNet, by single_file_export's converter."""
    n_hint = 1 + max(int(m[1]) for k in state_dict if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k)))
    fixed = {"controlnet_cond_embedding.conv_in": "input_hint_block.0",
             "controlnet_cond_embedding.conv_out": f"input_hint_block.{2 * (n_hint + 1)}",
             "controlnet_mid_block": "middle_block_out.0"}
    out, unet_part = {}, {}
    for key, value in state_dict.items():
        head, _, param = key.rpartition(".")
        if head in fixed:
            out[f"{fixed[head]}.{param}"] = value
        elif m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)", head):
            out[f"input_hint_block.{2 * (int(m[1]) + 1)}.{param}"] = value  # SiLUs sit between the convs
        elif m := re.fullmatch(r"controlnet_down_blocks\.(\d+)", head):
            out[f"zero_convs.{m[1]}.0.{param}"] = value
        else:
            unet_part[key] = value
    ldm = unet_to_ldm(unet_part, {**config, "up_block_types": []})  # a ControlNet has no up blocks
    out.update({k.removeprefix(UNET): v for k, v in ldm.items()})
    return {prefix + k: v.contiguous() for k, v in out.items()}


def save_controlnet_file(path: Path, net, layout: str = "ldm", prefix: str = "control_model.", pin: bool = True,
                         extra: dict | None = None) -> Path:
    """Write ``net`` as one file: ``layout`` "ldm" (with ``prefix``) or "diffusers"; ``extra`` tensors are added."""
    from safetensors.torch import save_file

    state = net.state_dict()
    if layout == "ldm":
        tensors = controlnet_to_ldm(state, net.config, prefix)
    else:
        tensors = {k: v.contiguous() for k, v in state.items()}
    tensors.update(extra or {})
    metadata = {"format": "pt"}
    if pin:
        metadata[METADATA_KEY] = json.dumps({"controlnet": {k: net.config[k] for k in UNSHAPED if k in net.config}})
    save_file(tensors, str(path), metadata=metadata)
    return Path(path)
