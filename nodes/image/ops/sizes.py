"""Image and latent sizes as budget facts (lcmgraph/budget.py).

Nodes that make or reshape IMAGE, MASK and LATENT values pass a ``Size``
(batch, height, width in image pixels) to the nodes downstream, so a
server's pixel and batch limits hold however a size was reached (an
upscale by 8 of a 1024x1024 latent is refused like an 8192x8192 empty
one). The diffusion pack's costs build on the same class.
"""

from __future__ import annotations

from dataclasses import dataclass

from lcmgraph.budget import Estimate, Usage


@dataclass(frozen=True)
class Size:
    """A LATENT's, IMAGE's or MASK's batch and size, in image pixels."""

    batch: int
    height: int
    width: int

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def describe(self) -> str:
        batch = f", batch {self.batch}" if self.batch != 1 else ""
        return f"{self.width}x{self.height}{batch}"


def pixels(size: Size, what: str, input_name: str | None) -> Usage:
    return Usage("pixels", size.pixels, f"{what} of {size.width}x{size.height}", input_name)


def batch(size: Size, input_name: str | None) -> Usage:
    return Usage("batch", size.batch, f"a batch of {size.batch} images", input_name)


def sized(output: str, size: Size, what: str, input_name: str | None, batch_input: str | None = None) -> Estimate:
    """A node that makes ``size``: its pixels (and its batch, when an input decides it) are limited."""
    usage = [pixels(size, what, input_name)]
    if batch_input is not None:
        usage.append(batch(size, batch_input))
    return Estimate({output: size}, tuple(usage))


def upstream_size(upstream, name: str) -> Size | None:
    size = upstream.get(name)
    return size if isinstance(size, Size) else None


def same_size(output: str, upstream, name: str) -> Estimate | None:
    """A node whose output has its input's size: the fact passes on."""
    size = upstream_size(upstream, name)
    return Estimate({output: size}) if size is not None else None
