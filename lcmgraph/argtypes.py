"""Command-line numbers checked against their range, with one error sentence each
(``argparse`` prints it after the option's name)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(kind: type, expected: str, *, low: float | None = None, high: float | None = None,
           above: float | None = None, auto: bool = False, separators: bool = False) -> Callable[[str], object]:
    """An ``argparse`` type: ``kind(text)`` within ``[low, high]`` and ``> above`` (each
    optional; NaN is never within), else "expected EXPECTED, got 'TEXT'". ``auto`` also
    passes the word "auto" through; ``separators`` reads 1,000,000 and 1_000_000."""

    def parse(text: str):
        if auto and text == "auto":
            return text
        try:
            value = kind(text.replace(",", "").replace("_", "") if separators else text)
        except ValueError:
            value = None
        within = value is not None and all((
            low is None or value >= low, high is None or value <= high, above is None or value > above))
        if not within:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # what argparse names in its own messages
    return parse
