"""Tiny Segment Anything / Grounding DINO files as the released ones are laid out,
and a small BERT vocabulary, for the segment tests and the corpus.

The Grounding DINO checkpoint is written under IDEA-Research's module names,
renamed back from a tiny transformers model by this file's own table (the
inverse of the loader's, written separately); ``ORIGINAL_KEYS`` lists names
read from GroundingDINO's source (groundingdino/models/GroundingDINO/*.py),
which the file must contain."""

from __future__ import annotations

import re
from pathlib import Path

import torch

#: Names the released groundingdino_swint_ogc.pth carries (module names in IDEA-Research/GroundingDINO).
ORIGINAL_KEYS = (
    "backbone.0.patch_embed.proj.weight", "backbone.0.layers.0.blocks.0.attn.qkv.weight",
    "backbone.0.layers.0.blocks.0.attn.relative_position_bias_table", "backbone.0.layers.0.downsample.reduction.weight",
    "backbone.0.norm1.weight", "transformer.level_embed", "transformer.tgt_embed.weight",
    "transformer.encoder.layers.0.self_attn.sampling_offsets.weight",
    "transformer.encoder.text_layers.0.self_attn.in_proj_weight", "transformer.encoder.fusion_layers.0.gamma_v",
    "transformer.encoder.fusion_layers.0.attn.values_l_proj.weight",
    "transformer.decoder.layers.0.ca_text.in_proj_weight", "transformer.decoder.layers.0.catext_norm.weight",
    "transformer.decoder.ref_point_head.layers.0.weight", "transformer.enc_out_bbox_embed.layers.0.weight",
    "bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
    "feat_map.weight", "input_proj.0.0.weight", "bbox_embed.0.layers.0.weight",
)

SWIN = "model.backbone.conv_encoder.model."
_BACK = (  # transformers -> original, first match wins
    (SWIN + r"swin\.embeddings\.patch_embeddings\.projection\.", "backbone.0.patch_embed.proj."),
    (SWIN + r"swin\.embeddings\.norm\.", "backbone.0.patch_embed.norm."),
    (SWIN + r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_before\.", r"backbone.0.layers.\1.blocks.\2.norm1."),
    (SWIN + r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_after\.", r"backbone.0.layers.\1.blocks.\2.norm2."),
    (SWIN + r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.o_proj\.", r"backbone.0.layers.\1.blocks.\2.attn.proj."),
    (SWIN + r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.relative_position_bias\.",
     r"backbone.0.layers.\1.blocks.\2.attn."),
    (SWIN + r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.", r"backbone.0.layers.\1.blocks.\2.mlp."),
    (SWIN + r"swin\.encoder\.layers\.(\d+)\.downsample\.", r"backbone.0.layers.\1.downsample."),
    (r"model\.encoder\.layers\.(\d+)\.deformable_layer\.self_attn_layer_norm\.", r"transformer.encoder.layers.\1.norm1."),
    (r"model\.encoder\.layers\.(\d+)\.deformable_layer\.self_attn\.", r"transformer.encoder.layers.\1.self_attn."),
    (r"model\.encoder\.layers\.(\d+)\.deformable_layer\.fc1\.", r"transformer.encoder.layers.\1.linear1."),
    (r"model\.encoder\.layers\.(\d+)\.deformable_layer\.fc2\.", r"transformer.encoder.layers.\1.linear2."),
    (r"model\.encoder\.layers\.(\d+)\.deformable_layer\.final_layer_norm\.", r"transformer.encoder.layers.\1.norm2."),
    (r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.self_attn\.out_proj\.",
     r"transformer.encoder.text_layers.\1.self_attn.out_proj."),
    (r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.fc1\.", r"transformer.encoder.text_layers.\1.linear1."),
    (r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.fc2\.", r"transformer.encoder.text_layers.\1.linear2."),
    (r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.layer_norm_before\.", r"transformer.encoder.text_layers.\1.norm1."),
    (r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.layer_norm_after\.", r"transformer.encoder.text_layers.\1.norm2."),
    (r"model\.encoder\.layers\.(\d+)\.fusion_layer\.vision_param", r"transformer.encoder.fusion_layers.\1.gamma_v"),
    (r"model\.encoder\.layers\.(\d+)\.fusion_layer\.text_param", r"transformer.encoder.fusion_layers.\1.gamma_l"),
    (r"model\.encoder\.layers\.(\d+)\.fusion_layer\.layer_norm_vision\.", r"transformer.encoder.fusion_layers.\1.layer_norm_v."),
    (r"model\.encoder\.layers\.(\d+)\.fusion_layer\.layer_norm_text\.", r"transformer.encoder.fusion_layers.\1.layer_norm_l."),
    (r"model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.(\w*?)vision_proj\.", r"transformer.encoder.fusion_layers.\1.attn.\2v_proj."),
    (r"model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.(\w*?)text_proj\.", r"transformer.encoder.fusion_layers.\1.attn.\2l_proj."),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.", r"transformer.decoder.layers.\1.norm1."),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn_text_layer_norm\.", r"transformer.decoder.layers.\1.catext_norm."),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn_text\.out_proj\.", r"transformer.decoder.layers.\1.ca_text.out_proj."),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn\.", r"transformer.decoder.layers.\1.cross_attn."),
    (r"model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"transformer.decoder.layers.\1.norm2."),
    (r"model\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.decoder.layers.\1.self_attn.out_proj."),
    (r"model\.decoder\.layers\.(\d+)\.fc1\.", r"transformer.decoder.layers.\1.linear1."),
    (r"model\.decoder\.layers\.(\d+)\.fc2\.", r"transformer.decoder.layers.\1.linear2."),
    (r"model\.decoder\.layers\.(\d+)\.final_layer_norm\.", r"transformer.decoder.layers.\1.norm3."),
    (r"model\.decoder\.layer_norm\.", "transformer.decoder.norm."),
    (r"model\.decoder\.reference_points_head\.", "transformer.decoder.ref_point_head."),
    (r"model\.decoder\.bbox_embed\.", "transformer.decoder.bbox_embed."),
    (r"model\.enc_output_norm\.", "transformer.enc_output_norm."),
    (r"model\.enc_output\.", "transformer.enc_output."),
    (r"model\.encoder_output_bbox_embed\.", "transformer.enc_out_bbox_embed."),
    (r"model\.level_embed", "transformer.level_embed"),
    (r"model\.query_position_embeddings\.", "transformer.tgt_embed."),
    (r"model\.text_backbone\.", "bert."),
    (r"model\.text_projection\.", "feat_map."),
    (r"model\.input_proj_vision\.", "input_proj."),
)
_SPLIT = (  # transformers' separate projections -> the original fused tensor
    (SWIN + r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.q_proj\.(weight|bias)",
     r"backbone.0.layers.\1.blocks.\2.attn.qkv.\3", ("q_proj", "k_proj", "v_proj")),
    (r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.self_attn\.query\.(weight|bias)",
     r"transformer.encoder.text_layers.\1.self_attn.in_proj_\2", ("query", "key", "value")),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn_text\.query\.(weight|bias)",
     r"transformer.decoder.layers.\1.ca_text.in_proj_\2", ("query", "key", "value")),
    (r"model\.decoder\.layers\.(\d+)\.self_attn\.query\.(weight|bias)",
     r"transformer.decoder.layers.\1.self_attn.in_proj_\2", ("query", "key", "value")),
)


def tiny_grounding_dino(seed: int = 0):
    """A transformers Grounding DINO with the released layout at toy sizes (random weights)."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        SwinConfig,
    )

    torch.manual_seed(seed)
    swin = SwinConfig(embed_dim=8, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2], window_size=7, out_indices=[2, 3, 4],
                      mlp_ratio=2.0)
    bert = BertConfig(vocab_size=1100, hidden_size=64, num_hidden_layers=1, num_attention_heads=1,
                      intermediate_size=32, max_position_embeddings=64)
    config = GroundingDinoConfig(backbone_config=swin, text_config=bert, d_model=64, encoder_layers=1,
                                 decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
                                 decoder_attention_heads=2, num_queries=12, encoder_n_points=2, decoder_n_points=2)
    model = GroundingDinoForObjectDetection(config).eval()
    with torch.no_grad():  # spread the boxes and scores: the defaults put every query at one box
        for name, p in model.named_parameters():
            if "bbox_embed" in name or "query_position" in name:
                p.copy_(torch.randn_like(p) * 0.3)
    return model


def original_state(model) -> dict:
    """``model``'s weights under the original module names, fused projections cat'ed back."""
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(SWIN + "swin.layernorm.")}
    out = {}
    for key in list(state):
        if key not in state:
            continue
        for pattern, target, parts in _SPLIT:
            if m := re.fullmatch(pattern, key):
                names = [key.replace(parts[0], part) for part in parts]
                out[m.expand(target)] = torch.cat([state.pop(n) for n in names])
                break
        else:
            if m := re.fullmatch(SWIN + r"hidden_states_norms\.stage(\d)\.(\w+)", key):
                out[f"backbone.0.norm{int(m[1]) - 1}.{m[2]}"] = state.pop(key)
                continue
            value = state.pop(key)
            for pattern, replacement in _BACK:
                if m := re.match(pattern, key):
                    key = m.expand(replacement) + key[m.end():]
                    break
            out[key] = value
    for layer in range(4):  # the original keeps Swin's index buffers too (dropped on load)
        for block in range(2):
            if f"backbone.0.layers.{layer}.blocks.{block}.attn.qkv.weight" in out:
                out[f"backbone.0.layers.{layer}.blocks.{block}.attn.relative_position_index"] = torch.zeros(49, dtype=torch.long)
    out["bert.embeddings.position_ids"] = torch.arange(64)[None]
    return out


#: Words the tests' prompts use; transformers fixes [CLS], [SEP], "." and "?" at bert-base-uncased's ids.
WORDS = ("a", "face", "red", "block", "cat", "dog", "person", "on", "the", "green")


def save_tokenizer(folder: Path) -> Path:
    """A bert-base-uncased-shaped vocab.txt (1,100 entries, the special tokens at their real ids)."""
    vocab = [f"[unused{i}]" for i in range(1100)]
    for i, token in {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}.items():
        vocab[i] = token
    for i, word in enumerate(WORDS):
        vocab[200 + i] = word
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder


def save_segment_models(root: Path) -> dict[str, list[Path]]:
    """Tiny files under the names comfyui_segment_anything's model lists give, as engine ``folders``."""
    from .reference_sam import tiny_sam

    sams, dino, bert = root / "sams", root / "grounding-dino", root / "bert-base-uncased"
    sams.mkdir(parents=True, exist_ok=True)
    dino.mkdir(parents=True, exist_ok=True)
    state = tiny_sam().state_dict()
    for name in ("sam_vit_h_4b8939.pth", "sam_vit_l_0b3195.pth", "sam_vit_b_01ec64.pth"):
        torch.save(state, sams / name)
    torch.save({"model": original_state(tiny_grounding_dino())}, dino / "groundingdino_swint_ogc.pth")
    save_tokenizer(bert)
    return {"sams": [sams], "grounding-dino": [dino], "bert-base-uncased": [bert]}
