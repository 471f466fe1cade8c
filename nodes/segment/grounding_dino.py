"""Grounding DINO: the released checkpoints on transformers'
``GroundingDinoForObjectDetection``, and the box detection
comfyui_segment_anything runs before SAM.

The files (``groundingdino_swint_ogc.pth``, ``groundingdino_swinb_cogcoor.pth``)
hold ``{"model": state dict}`` with IDEA-Research's module names, BERT's
weights included; they are renamed to transformers' (after transformers'
conversion script, with transformers 5's Swin names) and loaded strictly,
through ``torch.load(weights_only=True)`` only. The sizes are read from the
tensors. Only BERT's vocabulary comes from elsewhere: ``vocab.txt`` of
bert-base-uncased, in the ``bert-base-uncased`` model folder (as ComfyUI keeps
it) or in the Hugging Face cache.

Detection, as the pack's ``groundingdino_predict``: the image's shorter side
resized to 800 (the longer at most 1333; PIL bilinear), ImageNet-normalised;
the caption lower-cased, stripped and ended with "."; every query whose best
token probability is above ``threshold`` gives a box (no text threshold, no
non-maximum suppression), scaled to the image's pixels as x0, y0, x1, y1.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

FOLDER = "grounding-dino"
TOKENIZER_FOLDER = "bert-base-uncased"
#: comfyui_segment_anything's model list: widget value -> weights file (huggingface.co/ShilongLiu/GroundingDINO).
MODELS = {
    "GroundingDINO_SwinT_OGC (694MB)": "groundingdino_swint_ogc.pth",
    "GroundingDINO_SwinB (938MB)": "groundingdino_swinb_cogcoor.pth",
}
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_SWIN = "model.backbone.conv_encoder.model."

# (original pattern, transformers replacement) applied with re.sub, first match wins.
_RENAMES = (
    (r"^backbone\.0\.patch_embed\.proj\.", _SWIN + "swin.embeddings.patch_embeddings.projection."),
    (r"^backbone\.0\.patch_embed\.norm\.", _SWIN + "swin.embeddings.norm."),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.norm1\.", _SWIN + r"swin.encoder.layers.\1.blocks.\2.layernorm_before."),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.norm2\.", _SWIN + r"swin.encoder.layers.\1.blocks.\2.layernorm_after."),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.", _SWIN + r"swin.encoder.layers.\1.blocks.\2.attention.o_proj."),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table$",
     _SWIN + r"swin.encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table"),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.", _SWIN + r"swin.encoder.layers.\1.blocks.\2.mlp."),
    (r"^backbone\.0\.layers\.(\d+)\.downsample\.", _SWIN + r"swin.encoder.layers.\1.downsample."),
    (r"^backbone\.0\.norm(\d)\.", None),  # hidden_states_norms.stage{n+1}: see _rename
    (r"^transformer\.encoder\.layers\.(\d+)\.self_attn\.", r"model.encoder.layers.\1.deformable_layer.self_attn."),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm1\.", r"model.encoder.layers.\1.deformable_layer.self_attn_layer_norm."),
    (r"^transformer\.encoder\.layers\.(\d+)\.linear1\.", r"model.encoder.layers.\1.deformable_layer.fc1."),
    (r"^transformer\.encoder\.layers\.(\d+)\.linear2\.", r"model.encoder.layers.\1.deformable_layer.fc2."),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm2\.", r"model.encoder.layers.\1.deformable_layer.final_layer_norm."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.self_attn\.out_proj\.",
     r"model.encoder.layers.\1.text_enhancer_layer.self_attn.out_proj."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.linear1\.", r"model.encoder.layers.\1.text_enhancer_layer.fc1."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.linear2\.", r"model.encoder.layers.\1.text_enhancer_layer.fc2."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.norm1\.", r"model.encoder.layers.\1.text_enhancer_layer.layer_norm_before."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.norm2\.", r"model.encoder.layers.\1.text_enhancer_layer.layer_norm_after."),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.gamma_v$", r"model.encoder.layers.\1.fusion_layer.vision_param"),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.gamma_l$", r"model.encoder.layers.\1.fusion_layer.text_param"),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.layer_norm_v\.", r"model.encoder.layers.\1.fusion_layer.layer_norm_vision."),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.layer_norm_l\.", r"model.encoder.layers.\1.fusion_layer.layer_norm_text."),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.attn\.(values_|out_)?v_proj\.",
     r"model.encoder.layers.\1.fusion_layer.attn.\2vision_proj."),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.attn\.(values_|out_)?l_proj\.",
     r"model.encoder.layers.\1.fusion_layer.attn.\2text_proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.cross_attn\.", r"model.decoder.layers.\1.encoder_attn."),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm1\.", r"model.decoder.layers.\1.encoder_attn_layer_norm."),
    (r"^transformer\.decoder\.layers\.(\d+)\.ca_text\.out_proj\.", r"model.decoder.layers.\1.encoder_attn_text.out_proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.catext_norm\.", r"model.decoder.layers.\1.encoder_attn_text_layer_norm."),
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"model.decoder.layers.\1.self_attn.out_proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm2\.", r"model.decoder.layers.\1.self_attn_layer_norm."),
    (r"^transformer\.decoder\.layers\.(\d+)\.linear1\.", r"model.decoder.layers.\1.fc1."),
    (r"^transformer\.decoder\.layers\.(\d+)\.linear2\.", r"model.decoder.layers.\1.fc2."),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm3\.", r"model.decoder.layers.\1.final_layer_norm."),
    (r"^transformer\.decoder\.norm\.", "model.decoder.layer_norm."),
    (r"^transformer\.decoder\.ref_point_head\.", "model.decoder.reference_points_head."),
    (r"^transformer\.decoder\.bbox_embed\.", "model.decoder.bbox_embed."),
    (r"^transformer\.enc_output\.", "model.enc_output."),
    (r"^transformer\.enc_output_norm\.", "model.enc_output_norm."),
    (r"^transformer\.enc_out_bbox_embed\.", "model.encoder_output_bbox_embed."),
    (r"^transformer\.level_embed$", "model.level_embed"),
    (r"^transformer\.tgt_embed\.", "model.query_position_embeddings."),
    (r"^bert\.", "model.text_backbone."),
    (r"^feat_map\.", "model.text_projection."),
    (r"^input_proj\.", "model.input_proj_vision."),
    (r"^bbox_embed\.", "bbox_embed."),
)
# Fused q/k/v (timm's qkv; nn.MultiheadAttention's in_proj) -> transformers' three projections.
_FUSED = (
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$",
     _SWIN + r"swin.encoder.layers.\1.blocks.\2.attention.{}_proj.\3", ("q", "k", "v")),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$",
     r"model.encoder.layers.\1.text_enhancer_layer.self_attn.{}.\2", ("query", "key", "value")),
    (r"^transformer\.decoder\.layers\.(\d+)\.ca_text\.in_proj_(weight|bias)$",
     r"model.decoder.layers.\1.encoder_attn_text.{}.\2", ("query", "key", "value")),
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$",
     r"model.decoder.layers.\1.self_attn.{}.\2", ("query", "key", "value")),
)
_DROPPED = re.compile(r"(\.relative_position_index$|^bert\.pooler\.|^bert\.embeddings\.position_ids$)")


class GroundingDinoFileError(ValueError):
    """A Grounding DINO file (or its tokenizer) that cannot be used; the message names it."""


def to_transformers(state: dict) -> dict:
    """The original checkpoint's names -> transformers' GroundingDinoForObjectDetection names."""
    out = {}
    for key, value in state.items():
        if _DROPPED.search(key):
            continue
        for pattern, template, parts in _FUSED:
            if m := re.match(pattern, key):
                for part, chunk in zip(parts, value.chunk(3, dim=0), strict=True):
                    out[m.expand(template.format(part))] = chunk
                break
        else:
            out[_rename(key)] = value
    return out


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        if m := re.match(pattern, key):
            if replacement is None:  # backbone.0.norm{n}: the norm after Swin stage n + 1
                return f"{_SWIN}hidden_states_norms.stage{int(m[1]) + 1}.{key[m.end():]}"
            return m.expand(replacement) + key[m.end():]
    return key  # unknown: the strict load names it


def _count(state: dict, prefix: str) -> int:
    found = {int(m[1]) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return 1 + max(found) if found else 0


def config_from(state: dict):
    """transformers' GroundingDinoConfig for the network whose original weights are ``state``."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    try:
        embed, _, patch, _ = state["backbone.0.patch_embed.proj.weight"].shape
        stages = _count(state, "backbone.0.layers.")
        depths = [_count(state, f"backbone.0.layers.{i}.blocks.") for i in range(stages)]
        tables = [state[f"backbone.0.layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in range(stages)]
        swin_mlp = state["backbone.0.layers.0.blocks.0.mlp.fc1.weight"].shape[0] // embed
        levels, d_model = state["transformer.level_embed"].shape
        queries = state["transformer.tgt_embed.weight"].shape[0]
        enc_layers, dec_layers = _count(state, "transformer.encoder.layers."), _count(state, "transformer.decoder.layers.")
        enc_ffn = state["transformer.encoder.layers.0.linear1.weight"].shape[0]
        dec_ffn = state["transformer.decoder.layers.0.linear1.weight"].shape[0]
        enc_sampling = state["transformer.encoder.layers.0.self_attn.attention_weights.weight"].shape[0]
        dec_sampling = state["transformer.decoder.layers.0.cross_attn.attention_weights.weight"].shape[0]
        words, text_width = state["bert.embeddings.word_embeddings.weight"].shape
        positions = state["bert.embeddings.position_embeddings.weight"].shape[0]
        token_types = state["bert.embeddings.token_type_embeddings.weight"].shape[0]
        text_layers = _count(state, "bert.encoder.layer.")
        text_ffn = state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as exc:
        raise GroundingDinoFileError(f"misses {exc} of a Grounding DINO checkpoint") from exc
    heads = max(1, d_model // 32)  # 8 at the released width 256; not visible in the tensors
    swin = SwinConfig(embed_dim=embed, patch_size=patch, depths=depths, num_heads=[t.shape[1] for t in tables],
                      window_size=(math.isqrt(tables[0].shape[0]) + 1) // 2, mlp_ratio=float(swin_mlp),
                      out_indices=[2, 3, 4])
    bert = BertConfig(vocab_size=words, hidden_size=text_width, num_hidden_layers=text_layers,
                      num_attention_heads=max(1, text_width // 64), intermediate_size=text_ffn,
                      max_position_embeddings=positions, type_vocab_size=token_types)
    return GroundingDinoConfig(backbone_config=swin, text_config=bert, d_model=d_model, num_feature_levels=levels,
                               num_queries=queries, encoder_layers=enc_layers, decoder_layers=dec_layers,
                               encoder_ffn_dim=enc_ffn, decoder_ffn_dim=dec_ffn, encoder_attention_heads=heads,
                               decoder_attention_heads=heads, encoder_n_points=enc_sampling // (heads * levels),
                               decoder_n_points=dec_sampling // (heads * levels))


def load_model(path: str | Path):
    """GroundingDinoForObjectDetection with the weights of ``path`` (eval mode, float32, CPU)."""
    from transformers import GroundingDinoForObjectDetection

    from lcmgraph.weight_files import WeightFileError, read_weights

    path = Path(path)
    try:
        state, _ = read_weights(path)
        state = dict(state)
        state = {k.removeprefix("module."): v for k, v in dict(state.get("model", state)).items()}
        config = config_from(state)
    except (WeightFileError, GroundingDinoFileError) as exc:
        raise GroundingDinoFileError(f"Grounding DINO file {path.name!r} {exc}") from exc
    model = GroundingDinoForObjectDetection(config)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in to_transformers(state).items()}, strict=False)
    missing = [k for k in missing if not k.startswith(_SWIN + "swin.layernorm.")]  # Swin's last norm: unused here
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise GroundingDinoFileError(f"{path.name!r} is not a Grounding DINO checkpoint: {what}")
    return model.eval()


def load_tokenizer(folder: str | Path):
    """BERT's tokenizer from a folder holding bert-base-uncased's ``vocab.txt``."""
    from transformers import BertTokenizer

    return BertTokenizer.from_pretrained(str(folder))


def cached_tokenizer_folder() -> Path | None:
    """bert-base-uncased in the Hugging Face cache (where the pack's first run put it), if there."""
    from huggingface_hub import try_to_load_from_cache

    for repo in ("bert-base-uncased", "google-bert/bert-base-uncased"):
        found = try_to_load_from_cache(repo, "vocab.txt")
        if isinstance(found, str):
            return Path(found).parent
    return None


def model_input(image):
    """uint8 ``[H, W, 3]`` -> ``[1, 3, h, w]``: shorter side 800 (longer at most 1333), ImageNet-normalised."""
    import numpy as np
    import torch
    from PIL import Image

    height, width = image.shape[:2]
    short, long = min(height, width), max(height, width)
    size = 800
    if long / short * size > 1333:
        size = int(round(1333 * short / long))
    if short == size:
        new_h, new_w = height, width
    elif width < height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_h, new_w = size, int(size * width / height)
    resized = image if (new_h, new_w) == (height, width) else np.asarray(
        Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    x = (resized.astype(np.float32) / 255.0 - np.array(_MEAN, np.float32)) / np.array(_STD, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def caption(prompt: str) -> str:
    text = prompt.lower().strip()
    return text if text.endswith(".") else text + "."


def detect(model, tokenizer, image, prompt: str, threshold: float):
    """Boxes ``[N, 4]`` (x0, y0, x1, y1 in pixels) of the queries above ``threshold`` in one uint8 image."""
    import torch

    height, width = image.shape[:2]
    device = next(model.parameters()).device
    tokens = tokenizer([caption(prompt)], padding="longest", return_tensors="pt")
    limit = model.config.max_text_len
    tokens = {k: v[:, :limit].to(device) for k, v in tokens.items()}
    with torch.no_grad():
        out = model(pixel_values=model_input(image).to(device), **tokens)
    scores = out.logits[0].float().sigmoid().max(dim=1).values.cpu()
    boxes = out.pred_boxes[0].float().cpu()[scores > threshold]
    centre, size = boxes[:, :2], boxes[:, 2:]
    corners = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    return corners * torch.tensor([width, height, width, height], dtype=torch.float32)
