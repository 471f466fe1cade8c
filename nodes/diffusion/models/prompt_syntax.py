"""ComfyUI's prompt syntax, parsed as comfy/sd1_clip.py reads it (no torch here).

* ``(text)`` multiplies the weight of what it holds by 1.1, ``(text:1.3)``
  sets it; parentheses nest, an inner weight replaces the outer one and an
  inner plain ``(...)`` multiplies the weight it is in.
* ``\\(`` and ``\\)`` are literal parentheses.
* ``embedding:NAME`` (at the start of a weighted piece, or after a space or a
  newline) is a textual-inversion embedding from the ``embeddings`` folder;
  text after NAME's first whitespace carries on as text. A trailing comma is
  tried off the name when the name with it is not found.
* Square brackets mean nothing (they are A1111's syntax, not ComfyUI's).

``chunks`` then lays the tokens out as ComfyUI's tokenizer does: 75 tokens
per chunk between start and end tokens, padded to 77; a piece of 8 tokens or
more is split at the chunk edge, a shorter one moves whole to the next chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EMBEDDING = "embedding:"
_OPEN, _CLOSE = "\0\2", "\0\1"  # escaped parentheses while weights are parsed
_EMBEDDING_SPLIT = re.compile(f"[ \n]{EMBEDDING}")
#: A piece of this many tokens or more may be split between two chunks.
LONG_PIECE = 8
CHUNK = 77


@dataclass(frozen=True)
class Piece:
    """Text to tokenize, or (``embedding``) the name of an embedding, with its weight."""

    text: str
    weight: float
    embedding: bool = False
    #: For an embedding: the text after its name, tokenized as one piece after it.
    rest: str = ""


def _escape(text: str) -> str:
    return text.replace("\\)", _CLOSE).replace("\\(", _OPEN)


def _unescape(text: str) -> str:
    return text.replace(_CLOSE, ")").replace(_OPEN, "(")


def _top_level(text: str) -> list[str]:
    """Split into the text between top-level parentheses and the parenthesised
    parts (each with its parentheses). An unmatched ')' stays in the text."""
    parts, current, depth = [], "", 0
    for char in text:
        if char == "(":
            if depth == 0:
                if current:
                    parts.append(current)
                current = ""
            current += char
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                parts.append(current + ")")
                current = ""
            else:
                current += char
        else:
            current += char
    if current:
        parts.append(current)
    return parts


def _weighted(text: str, weight: float) -> list[tuple[str, float]]:
    out = []
    for part in _top_level(text):
        if len(part) >= 2 and part[0] == "(" and part[-1] == ")":
            inner, inner_weight = part[1:-1], weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight = float(inner[colon + 1:])
                    inner = inner[:colon]
                except ValueError:
                    pass  # "(a:b)" is text with a colon, weighted 1.1
            out.extend(_weighted(inner, inner_weight))
        else:
            out.append((part, weight))
    return out


def weighted_segments(text: str) -> list[tuple[str, float]]:
    """The prompt as (text, weight) segments, escapes resolved."""
    return [(_unescape(t), w) for t, w in _weighted(_escape(text), 1.0)]


def pieces(text: str) -> list[Piece]:
    """The prompt as text and embedding pieces, in order."""
    out = []
    for segment, weight in weighted_segments(text):
        parts = _EMBEDDING_SPLIT.split(segment)
        items = [parts[0]] + [EMBEDDING + p for p in parts[1:]]
        for item in items:
            if not item:
                continue
            if item.startswith(EMBEDDING):
                words = item[len(EMBEDDING):].strip("\n").split()
                if words:
                    out.append(Piece(words[0], weight, embedding=True, rest=" ".join(words[1:])))
                continue
            out.append(Piece(item, weight))
    return out


def is_plain(text: str) -> bool:
    """True when the syntax changes nothing: the text is encoded as written."""
    return weighted_segments(text) == ([(text, 1.0)] if text else []) and not any(p.embedding for p in pieces(text))


def embedding_names(text: str) -> list[str]:
    """The names ``embedding:NAME`` refers to, in order (as written: see ``resolve_names``)."""
    if EMBEDDING not in text:
        return []
    return [p.text for p in pieces(text) if p.embedding]


def resolve_names(text: str, find: Callable[[str], Any]) -> list[Piece]:
    """``pieces`` with each embedding name replaced by what ``find(name)`` returns
    (a file name), trying the name without its commas as ComfyUI does: the commas
    then carry on as text. Raises KeyError(name) for an embedding not found."""
    out = []
    for piece in pieces(text):
        if not piece.embedding:
            out.append(piece)
            continue
        found, rest = find(piece.text), piece.rest
        if found is None:
            stripped = piece.text.strip(",")
            found = find(stripped) if stripped and stripped != piece.text else None
            if found is None:
                raise KeyError(stripped or piece.text)
            rest = f"{piece.text[len(stripped):]} {rest}"
        out.append(Piece(found, piece.weight, embedding=True))
        if rest:
            out.append(Piece(rest, piece.weight))
    return out


# -- chunks ----------------------------------------------------------------------------
def chunks(groups: list[list[tuple[Any, float]]], start: int, end: int, pad: int) -> list[list[tuple[Any, float]]]:
    """ComfyUI's layout of token groups (one per piece: ``(token id or vector,
    weight)`` pairs) into chunks of CHUNK: start token, up to CHUNK - 2 tokens,
    end token, padding."""
    batch: list[tuple[Any, float]] = [(start, 1.0)]
    out = [batch]
    room = CHUNK - 1  # tokens a chunk holds before its end token
    for group in groups:
        large = len(group) >= LONG_PIECE
        while group:
            if len(group) + len(batch) > room:
                remaining = room - len(batch)
                if large:
                    batch.extend(group[:remaining])
                    batch.append((end, 1.0))
                    group = group[remaining:]
                else:
                    batch.append((end, 1.0))
                    batch.extend([(pad, 1.0)] * remaining)
                batch = [(start, 1.0)]
                out.append(batch)
            else:
                batch.extend(group)
                group = []
    batch.append((end, 1.0))
    batch.extend([(pad, 1.0)] * (CHUNK - len(batch)))
    return out
