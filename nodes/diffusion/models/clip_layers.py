"""Prompt embeddings from a chosen CLIP layer, as ComfyUI's CLIPSetLastLayer
makes them (comfy/sd1_clip.py): ``layer`` counts from the end, -1 the last.

* SD1.5 (CLIP-L): the layer's hidden state through the final layer norm
  (diffusers' ``clip_skip = -layer - 1``).
* SDXL (CLIP-L + OpenCLIP-G): each encoder's hidden state at ``layer``
  without the final norm, side by side (diffusers' ``clip_skip = -layer - 2``:
  SDXL's default, -2, is already the penultimate layer); the pooled
  embedding is always the last layer's.
* A layer past an encoder's depth means its last layer, normed, as in ComfyUI.

Tokens are diffusers' (padded to the tokenizer's length, truncated), so
-1 on SD1.5 and -2 on SDXL give exactly what TextEncode gives without a layer.
"""

from __future__ import annotations


def _final_norm(encoder):
    # transformers >= 5.6 flattened CLIPTextModel; CLIPTextModelWithProjection keeps text_model.
    return getattr(encoder, "text_model", encoder).final_layer_norm


def pick_layer(encoder, out, layer: int | None, norm: bool):
    """The prompt embeddings at ``layer`` of an encoder output (with hidden
    states): None or a layer past its depth is the last layer (normed)."""
    if layer is None or abs(layer) > len(out.hidden_states) - 1:
        return out.last_hidden_state
    hidden = out.hidden_states[layer]
    return _final_norm(encoder)(hidden) if norm else hidden


def _hidden(tokenizer, encoder, text: str, layer: int, norm: bool):
    """(the layer's hidden state, the encoder's output) for ``text``."""
    tokens = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    device = next(encoder.parameters()).device
    mask = tokens.attention_mask.to(device) if getattr(encoder.config, "use_attention_mask", False) else None
    out = encoder(tokens.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
    return pick_layer(encoder, out, layer, norm), out


def encode_at_layer(pipe, arch: str, text: str, layer: int):
    """(embeds [1, 77, D], pooled [1, D2] or None) for ``text`` at ``layer``."""
    import torch

    if layer >= 0:
        raise ValueError(f"CLIP layer {layer}: layers count from the end (-1 is the last)")
    with torch.no_grad():
        if arch != "sdxl":
            embeds, _ = _hidden(pipe.tokenizer, pipe.text_encoder, text, layer, norm=True)
            return embeds.to(pipe.text_encoder.dtype), None
        parts, pooled = [], None
        for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            hidden, out = _hidden(tokenizer, encoder, text, layer, norm=False)
            parts.append(hidden)
            pooled = out[0]  # the second encoder's projected pooled embedding
        return torch.cat(parts, dim=-1).to(pipe.text_encoder_2.dtype), pooled
