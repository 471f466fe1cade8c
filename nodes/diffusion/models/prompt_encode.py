"""Prompts encoded as ComfyUI encodes them (comfy/sd1_clip.py, sdxl_clip.py):
weights, textual-inversion embeddings and prompts longer than one chunk.

For each text encoder:

1. the prompt's pieces (prompt_syntax.py) become tokens, an embedding's
   vectors standing in for tokens, laid out in chunks of 77;
2. the chunks run through the encoder in one batch, with the empty prompt
   (start, end, padding) as one more row when any weight is not 1; an
   embedding's vectors replace the token embeddings at their places;
3. a weighted token's output becomes ``(z - z_empty) * weight + z_empty``,
   ``z_empty`` being the empty prompt's output at the same position;
4. the chunks are concatenated along the tokens: 154 tokens for two chunks.

SDXL does this for both encoders (CLIP-L pads with its end token, OpenCLIP-G
with "!", id 0) and concatenates their outputs feature-wise (cut to the
shorter); the pooled embedding is OpenCLIP-G's for the first chunk. Layers
follow CLIPSetLastLayer as in clip_layers.py (SD1.5: the last layer through
the final norm by default; SDXL: the penultimate, no norm).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .clip_layers import pick_layer
from .prompt_syntax import Piece, chunks

#: vectors(file name, encoder key, width) -> [n, width] float32
Vectors = Callable[[str, str, int], Any]


def _encoders(pipe, arch: str) -> list[tuple[Any, Any, str, bool]]:
    """(tokenizer, encoder, embedding key, final norm on hidden layers) per encoder."""
    if arch == "sdxl":
        return [(pipe.tokenizer, pipe.text_encoder, "clip_l", False),
                (pipe.tokenizer_2, pipe.text_encoder_2, "clip_g", False)]
    return [(pipe.tokenizer, pipe.text_encoder, "clip_l", True)]


def fits_one_chunk(pipe, arch: str, text: str) -> bool:
    """Whether ``text`` has at most 75 tokens in every tokenizer."""
    return all(len(_token_ids(tok, text)) <= 75 for tok, *_ in _encoders(pipe, arch))


def _token_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, verbose=False)["input_ids"][1:-1])


def encode_pieces(pipe, arch: str, pieces: list[Piece], layer: int | None, vectors: Vectors):
    """(embeds [1, 77 * chunks, D] float32 CPU, pooled [1, D2] or None) for the pieces."""
    import torch

    outputs, pooled = [], None
    with torch.no_grad():
        for tokenizer, encoder, key, norm in _encoders(pipe, arch):
            width = encoder.get_input_embeddings().weight.shape[1]
            groups = []
            for piece in pieces:
                if piece.embedding:
                    groups.append([(v, piece.weight) for v in vectors(piece.text, key, width)])
                else:
                    groups.append([(t, piece.weight) for t in _token_ids(tokenizer, piece.text)])
            start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
            layout = chunks(groups, start, end, pad)
            z, pool = _encode_layout(encoder, layout, start, end, pad, layer, norm, default_layer=-2 if arch == "sdxl" else None)
            outputs.append(z)
            pooled = pool
    if len(outputs) == 2:
        cut = min(o.shape[1] for o in outputs)
        embeds = torch.cat([o[:, :cut] for o in outputs], dim=-1)
        return embeds, pooled.float().cpu()
    return outputs[0], None


def _encode_layout(encoder, layout, start: int, end: int, pad: int, layer: int | None, norm: bool,
                   default_layer: int | None):
    import torch

    weighted = any(w != 1.0 for chunk in layout for _, w in chunk)
    rows, swaps = [], []
    for r, chunk in enumerate(layout):
        row = []
        for c, (token, _) in enumerate(chunk):
            if isinstance(token, int):
                row.append(token)
            else:  # an embedding vector: a placeholder id whose token embedding is replaced
                row.append(start)
                swaps.append((r, c, token))
        rows.append(row)
    if weighted:
        rows.append([start, end] + [pad] * (len(layout[0]) - 2))
    device = next(encoder.parameters()).device
    ids = torch.tensor(rows, dtype=torch.long, device=device)
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        is_end = ids == end
        first_end = torch.where(is_end.any(1), is_end.int().argmax(1), torch.full_like(ids[:, 0], ids.shape[1] - 1))
        mask = (torch.arange(ids.shape[1], device=device)[None] <= first_end[:, None]).long()

    table = encoder.get_input_embeddings()

    def replace_vectors(module, args, output):
        output = output.clone()
        for r, c, vector in swaps:
            output[r, c] = vector.to(device=output.device, dtype=output.dtype)
        return output

    handle = table.register_forward_hook(replace_vectors) if swaps else None
    try:
        out = encoder(ids, attention_mask=mask, output_hidden_states=True)
    finally:
        if handle is not None:
            handle.remove()
    z = pick_layer(encoder, out, layer if layer is not None else default_layer, norm).float()
    pooled = out[0][0:1] if hasattr(out, "text_embeds") else None
    n = len(layout)
    if weighted:
        weights = torch.tensor([[w for _, w in chunk] for chunk in layout], dtype=z.dtype, device=z.device)[..., None]
        empty = z[-1:]
        # Only tokens whose weight is not 1 change (x - e + e need not be x bitwise).
        z = torch.where(weights != 1.0, (z[:n] - empty) * weights + empty, z[:n])
    return z.reshape(1, -1, z.shape[-1]).cpu(), pooled
