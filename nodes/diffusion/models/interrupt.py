"""Interrupts that act inside one long model call.

An interrupt normally takes effect at the next progress step, between UNet
calls. A 1024x1024 UNet call or VAE decode on a CPU lasts many seconds, so
while one runs, a forward pre-hook on each of the model's blocks checks the
run's control and raises ``Interrupted`` there: the call stops within one
block. Compiled modules get no hooks (a hook would break the compiled graph);
for them the interrupt waits for the step's end, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .fastpath import is_compiled

#: Block containers of diffusers' UNet2DConditionModel, ControlNetModel and the VAE's encoder/decoder.
BLOCK_LISTS = ("down_blocks", "up_blocks")
SINGLE_BLOCKS = ("mid_block",)


def _blocks(module: Any) -> list:
    blocks = []
    for name in BLOCK_LISTS:
        blocks.extend(getattr(module, name, None) or ())
    for name in SINGLE_BLOCKS:
        block = getattr(module, name, None)
        if block is not None:
            blocks.append(block)
    return blocks


@contextmanager
def checked_inside(modules: list[Any], check: Callable[[], None]) -> Iterator[None]:
    """While the block runs, ``check()`` runs before every block of ``modules``."""
    handles = []
    for module in modules:
        if module is None or is_compiled(module):
            continue
        for block in _blocks(module):
            handles.append(block.register_forward_pre_hook(lambda _module, _args: check()))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
