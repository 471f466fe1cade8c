"""Segment Anything (SAM): the released checkpoints on transformers' ``SamModel``,
and the box-prompted prediction comfyui_segment_anything runs.

The files (``sam_vit_{b,l,h}_*.pth``) are plain state dicts with the original
module names; they are renamed to transformers' (after transformers' own
conversion script) and loaded strictly, through ``torch.load(weights_only=True)``
only. The sizes (width, depth, heads, window, global-attention blocks, image
size) are read from the tensors, so ViT-B/L/H and tiny test files load alike.

Prediction, as segment-anything's ``SamPredictor`` with ``multimask_output=False``:
the image's longer side resized to the model's input size (1024; PIL bilinear),
normalised with SAM's pixel statistics on the 0..255 scale, padded right and
bottom; boxes scaled into that frame; the low-resolution mask logits resized to
the padded square, cropped, resized to the image and thresholded at 0.
"""

from __future__ import annotations

import re
from pathlib import Path

FOLDER = "sams"
#: comfyui_segment_anything's model list: widget value -> file name (dl.fbaipublicfiles.com / lkeab/hq-sam).
MODELS = {
    "sam_vit_h (2.56GB)": "sam_vit_h_4b8939.pth",
    "sam_vit_l (1.25GB)": "sam_vit_l_0b3195.pth",
    "sam_vit_b (375MB)": "sam_vit_b_01ec64.pth",
    "sam_hq_vit_h (2.57GB)": "sam_hq_vit_h.pth",
    "sam_hq_vit_l (1.25GB)": "sam_hq_vit_l.pth",
    "sam_hq_vit_b (379MB)": "sam_hq_vit_b.pth",
    "mobile_sam(39MB)": "mobile_sam.pt",
}
UNSUPPORTED = {"sam_hq": "SAM-HQ", "mobile_sam": "MobileSAM"}
_PIXEL_MEAN = (123.675, 116.28, 103.53)
_PIXEL_STD = (58.395, 57.12, 57.375)

# transformers' convert_sam_to_hf.py renames, applied in this order as substring replacements.
_RENAMES = (
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
)
_HYPERNETWORK = re.compile(r"(.*\.output_hypernetworks_mlps\.\d+)\.layers\.(\d+)\.(.*)")


class SamFileError(ValueError):
    """A SAM file that cannot be used; the message names it."""


def to_transformers(state: dict) -> dict:
    """The original checkpoint's names -> transformers' SamModel names."""
    out = {}
    for key, value in state.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        for old, new in _RENAMES:
            key = key.replace(old, new)
        if m := _HYPERNETWORK.match(key):
            key = f"{m[1]}.{ {'0': 'proj_in', '1': 'layers.0', '2': 'proj_out'}[m[2]] }.{m[3]}"
        out[key] = value
    out["shared_image_embedding.positional_embedding"] = out["prompt_encoder.shared_embedding.positional_embedding"]
    return out


def config_from(state: dict):
    """transformers' SamConfig for the network whose original weights are ``state``."""
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    try:
        width, _, patch, _ = state["image_encoder.patch_embed.proj.weight"].shape
        depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks."))
        head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        grid = state["image_encoder.pos_embed"].shape[1]
        spans = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(depth)]
        output_channels = state["image_encoder.neck.0.weight"].shape[0]
        decoder_width = state["mask_decoder.iou_token.weight"].shape[1]
        decoder_mlp = state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]
        decoder_depth = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers."))
        iou_hidden = state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]
        mask_channels = state["prompt_encoder.mask_downscaling.3.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as exc:
        raise SamFileError(f"misses {exc} of a Segment Anything checkpoint") from exc
    window = (min(spans) + 1) // 2
    image_size = grid * patch
    global_blocks = [i for i, span in enumerate(spans) if span == 2 * grid - 1]
    vision = SamVisionConfig(hidden_size=width, output_channels=output_channels, num_hidden_layers=depth,
                             num_attention_heads=width // head_dim, image_size=image_size, patch_size=patch,
                             window_size=window, global_attn_indexes=global_blocks,
                             num_pos_feats=output_channels // 2, mlp_dim=state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
    prompt = SamPromptEncoderConfig(hidden_size=output_channels, image_size=image_size, patch_size=patch,
                                    mask_input_channels=mask_channels)
    # SAM's decoder always has 8 heads; the head count is not visible in the tensors.
    decoder = SamMaskDecoderConfig(hidden_size=decoder_width, mlp_dim=decoder_mlp, num_hidden_layers=decoder_depth,
                                   num_attention_heads=8, iou_head_hidden_dim=iou_hidden)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def load_model(path: str | Path):
    """SamModel with the weights of ``path`` (eval mode, float32, CPU)."""
    from transformers import SamModel

    from lcmgraph.weight_files import WeightFileError, read_weights

    path = Path(path)
    for marker, name in UNSUPPORTED.items():
        if marker in path.name:
            raise SamFileError(f"{path.name!r} is a {name} checkpoint, which lcmgraph does not load yet; "
                               f"use sam_vit_b / sam_vit_l / sam_vit_h")
    try:
        state, _ = read_weights(path)
        state = {k.removeprefix("module."): v for k, v in dict(state).items()}
        config = config_from(state)
    except (WeightFileError, SamFileError) as exc:
        raise SamFileError(f"SAM file {path.name!r} {exc}") from exc
    model = SamModel(config)
    try:
        model.load_state_dict({k: v.float() for k, v in to_transformers(state).items()}, strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        detail = (lines[1] if len(lines) > 1 else lines[0]).strip()[:300]
        raise SamFileError(f"{path.name!r} is not a Segment Anything checkpoint: {detail}") from exc
    return model.eval()


def model_input(image, side: int):
    """uint8 ``[H, W, 3]`` -> (``[1, 3, side, side]`` normalised and padded, (h, w) resized size)."""
    import numpy as np
    import torch
    from PIL import Image

    height, width = image.shape[:2]
    scale = side / max(height, width)
    new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR), dtype=np.float32)
    x = (resized - np.array(_PIXEL_MEAN, np.float32)) / np.array(_PIXEL_STD, np.float32)
    x = torch.from_numpy(x).permute(2, 0, 1)
    x = torch.nn.functional.pad(x, (0, side - new_w, 0, side - new_h))
    return x[None].contiguous(), (new_h, new_w)


def segment(model, image, boxes):
    """The union of the masks SAM draws in ``boxes`` (``[N, 4]`` x0, y0, x1, y1 in pixels)
    over one uint8 ``[H, W, 3]`` image, as a bool ``[H, W]`` tensor."""
    import torch
    import torch.nn.functional as F

    height, width = image.shape[:2]
    if len(boxes) == 0:
        return torch.zeros(height, width, dtype=torch.bool)
    side = model.config.vision_config.image_size
    device = next(model.parameters()).device
    pixels, (new_h, new_w) = model_input(image, side)
    scale = torch.tensor([new_w / width, new_h / height, new_w / width, new_h / height])
    boxes = torch.as_tensor(boxes, dtype=torch.float32) * scale
    with torch.no_grad():
        out = model(pixel_values=pixels.to(device), input_boxes=boxes[None].to(device), multimask_output=False)
    logits = out.pred_masks[0, :, 0].float().cpu()[:, None]  # [N, 1, 256, 256]
    logits = F.interpolate(logits, (side, side), mode="bilinear", align_corners=False)[..., :new_h, :new_w]
    logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False)
    return (logits[:, 0] > 0.0).any(dim=0)
