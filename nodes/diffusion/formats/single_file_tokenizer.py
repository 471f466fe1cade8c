"""CLIP tokenizers without the hub, built from the BPE table shipped in
``configs/clip/`` (OpenAI's, MIT licence).

The CLIP vocabulary is ordered: 256 byte symbols, the same 256 with ``</w>``,
one entry per merge in merge order, then ``<|startoftext|>``,
``<|endoftext|>`` — 49408 in all. Cutting it after the first ``n - 2``
entries and keeping the merges that produced them is again a valid BPE
tokenizer, so a text encoder with an ``n``-row embedding (tiny test models)
gets the tokenizer that matches its size, and ``n = 49408`` gives exactly the
tokenizer of ``openai/clip-vit-large-patch14``.
"""

from __future__ import annotations

import functools
import gzip
import itertools
from collections.abc import Iterable
from pathlib import Path

CLIP_VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_BPE_FILE = Path(__file__).parent / "configs" / "clip" / "bpe_simple_vocab_16e6.txt.gz"
_N_BYTE_SYMBOLS = 512
MIN_VOCAB_SIZE = _N_BYTE_SYMBOLS + 2


def bytes_to_unicode() -> list[str]:
    # CLIP's (and GPT-2's) reversible byte -> printable character table.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@functools.lru_cache(maxsize=1)
def _full_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    # The table has 262k merges; CLIP uses the first 48894. Reading only those
    # keeps the rest from ever becoming Python strings.
    with gzip.open(_BPE_FILE, "rt", encoding="utf-8") as f:
        next(f)  # version header
        merges = tuple(line.rstrip("\n") for line in itertools.islice(f, CLIP_VOCAB_SIZE - _N_BYTE_SYMBOLS - 2))
    symbols = bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    return tuple(vocab), merges


def clip_vocab_and_merges(vocab_size: int = CLIP_VOCAB_SIZE) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP vocabulary cut to ``vocab_size`` entries (specials last), and its merges."""
    if not MIN_VOCAB_SIZE <= vocab_size <= CLIP_VOCAB_SIZE:
        raise ValueError(f"a CLIP BPE vocabulary has {MIN_VOCAB_SIZE}..{CLIP_VOCAB_SIZE} entries, not {vocab_size}")
    vocab, merges = _full_table()
    tokens = list(vocab[: vocab_size - 2]) + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, [tuple(m.split()) for m in merges[: vocab_size - 2 - _N_BYTE_SYMBOLS]]


def word_vocab_and_merges(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small CLIP BPE vocabulary (the tiny and the embedded models'): every
    byte (word-inner and word-final), then merges that spell each of ``words``
    as one token, then the two special tokens. Each word gets the merges that
    join it left to right as BPE leaves it under the merges so far; they rank
    after all earlier ones, so earlier words are unaffected. Any other text
    still encodes, byte by byte."""
    vocab: dict[str, int] = {}
    for ch in bytes_to_unicode():
        vocab.setdefault(ch, len(vocab))
    for ch in bytes_to_unicode():
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = _bpe(list(word[:-1]) + [word[-1] + "</w>"], merges)
        acc = pieces[0]
        for piece in pieces[1:]:
            merges.append((acc, piece))
            acc += piece
            vocab.setdefault(acc, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def _bpe(pieces: list[str], merges: list[tuple[str, str]]) -> list[str]:
    ranks = {m: i for i, m in enumerate(merges)}
    while len(pieces) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(pieces, pieces[1:], strict=False))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]
    return pieces


def clip_tokenizer(vocab_size: int = CLIP_VOCAB_SIZE, model_max_length: int = 77, pad_token: str = EOS):
    """A transformers ``CLIPTokenizer``; SD1.5 pads with ``<|endoftext|>``, SDXL's second encoder with ``!``."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges(vocab_size)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=pad_token,
        model_max_length=model_max_length,
    )


def tokenizer_to_json(tokenizer) -> str:
    """A CLIP tokenizer as compact JSON (vocabulary, merges, special tokens) for a file's metadata."""
    import json

    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    return json.dumps({
        "vocab": tokenizer.get_vocab(), "merges": merges, "model_max_length": tokenizer.model_max_length,
        **{name: str(getattr(tokenizer, name)) for name in ("bos_token", "eos_token", "pad_token", "unk_token")},
    })


def tokenizer_from_json(text: str):
    import json

    from transformers import CLIPTokenizer

    spec = json.loads(text)
    spec["merges"] = [tuple(m) for m in spec["merges"]]
    return CLIPTokenizer(**spec)


def is_clip_bpe(tokenizer) -> bool:
    """Whether ``tokenizer`` is exactly what :func:`clip_tokenizer` would build for its size."""
    vocab = tokenizer.get_vocab()
    return MIN_VOCAB_SIZE <= len(vocab) <= CLIP_VOCAB_SIZE and vocab == clip_vocab_and_merges(len(vocab))[0]
