"""Tokenizer and text encoder, built locally (no hub).

The tokenizer is a real ``CLIPTokenizer`` (so diffusers' ``encode_prompt``
works unchanged): every byte is a token (any text encodes), and BPE merges
spell each caption word (``dataset.WORDS``) and the comma as one token. The
text encoder is a ``CLIPTextModel`` with 64-wide hidden states, two layers and
``model_max_length`` 20 (captions are ~13 tokens; longer prompts truncate).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.single_file_tokenizer import word_vocab_and_merges
from . import dataset
from .common import seeded

MAX_LENGTH = 20


def vocab_and_merges(words=dataset.WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The caption words and the comma, one token each (sorted: the shipped tokenizer's order)."""
    return word_vocab_and_merges(sorted(set(words) | {","}))


def make_tokenizer():
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>", model_max_length=MAX_LENGTH)


@dataclass
class TextConfig:
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4


def make_text_encoder(cfg: TextConfig, tokenizer, seed: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = tokenizer.get_vocab()
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        max_position_embeddings=MAX_LENGTH, projection_dim=cfg.hidden_size, hidden_act="gelu",
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
        layer_norm_eps=1e-5,
    )
    return seeded(seed, lambda: CLIPTextModel(config))


def token_ids(tokenizer, texts: list[str]):
    """``[B, MAX_LENGTH]`` ids padded as diffusers' ``encode_prompt`` pads them."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids
