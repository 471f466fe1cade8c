"""LoRA fused into the UNet's weights, reversibly and exactly.

With peft adapters every patched layer runs its base matmul plus the LoRA
pair (``B(A(x))``) on each call: for an LCM-LoRA on SDXL that is ~200 M extra
parameters per step. Fusing adds ``sum(weight_i * delta_i)`` into the base
weights once, after which the UNet is a plain UNet again.

The immutability rule (a value never changes under another branch's feet)
needs the fusion to be undone *exactly*: unfusing by subtraction is not
bitwise. So the first time a weight is changed its original is copied aside
(to CPU memory: on a GPU the copies of SDXL's patched weights are ~5 GB, which
would otherwise double the UNet's footprint) and restoring copies it back in
place. Weights are only ever written in place (same tensors, same storage), so
compiled graphs and captured CUDA graphs that read them stay valid.

While fused, peft's wrapper layers are taken out of the module tree (each
``LoraLayer`` is replaced by its base layer) so the UNet runs exactly the
modules of the plain model: no per-layer adapter overhead, and a compiled
graph that is the same with or without a LoRA. They are put back before an
adapter is loaded or removed, or when fusion is not possible (DoRA, LoRA
biases, layer kinds other than Linear/Conv2d): then the manager falls back to
peft's unfused adapters.

One fused state per model, keyed by the patch list (adapter -> total weight):
the same list again is a no-op (``hits``); another list restores and fuses anew.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .lora import _merged, realise_adapters
from .values import LoraPatch

log = logging.getLogger(__name__)


class CannotFuse(Exception):
    """An adapter whose layers cannot be folded into plain weights."""


@dataclass
class FusedLora:
    """The fusion state of one model's UNet."""

    #: ((adapter, weight), ...) fused into the base weights now; () = the original weights.
    signature: tuple = ()
    #: id(weight) -> (weight, original copy): every weight fusion ever changed.
    backups: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    #: (parent module, attribute, peft wrapper) taken out of the tree while fused.
    unwrapped: list[tuple[Any, str, Any]] = field(default_factory=list)
    #: ids of weights that differ from their originals now.
    dirty: set[int] = field(default_factory=set)
    #: the tree holds no peft wrapper (checked since the last ``wrap``): no need to look again
    plain: bool = False
    builds: int = 0  # fusions computed
    hits: int = 0  # realisations that found the list already fused
    restores: int = 0  # times the original weights were copied back
    fallback: str | None = None  # why the last list ran unfused, if it did

    # -- the module tree -------------------------------------------------------------
    def wrap(self) -> None:
        """Put peft's wrapper layers back (before adapters are loaded, removed or
        run unfused). The weights stay as they are."""
        for parent, name, wrapper in reversed(self.unwrapped):
            base = getattr(parent, name)
            setattr(parent, name, wrapper)
            # Offload may have moved the base layer while its LoRA pair sat outside the tree.
            weight = getattr(base, "weight", None)
            if weight is not None:
                wrapper.to(weight.device)
        self.unwrapped.clear()
        self.plain = False

    def unwrap(self, unet: Any) -> None:
        """Replace each peft wrapper in ``unet`` by its base layer."""
        if self.unwrapped or self.plain:
            return
        for name, module in list(unet.named_modules()):
            if not _is_tuner(module):
                continue
            parent_name, _, attr = name.rpartition(".")
            parent = unet.get_submodule(parent_name) if parent_name else unet
            if getattr(parent, attr, None) is not module:
                continue  # nested inside another wrapper; that one is handled
            setattr(parent, attr, module.get_base_layer())
            self.unwrapped.append((parent, attr, module))
        self.plain = True

    # -- weights -----------------------------------------------------------------------
    def restore(self) -> set[int]:
        """Copy the original weights back (bitwise). Returns the ids that changed."""
        import torch

        changed = set(self.dirty)
        if changed:
            with torch.no_grad():
                for key in changed:
                    weight, original = self.backups[key]
                    weight.copy_(original, non_blocking=False)
            self.restores += 1
        self.dirty.clear()
        self.signature = ()
        return changed

    def _backup(self, weight: Any) -> None:
        import torch

        key = id(weight)
        if key in self.backups:
            return
        original = torch.empty(weight.shape, dtype=weight.dtype, device="cpu",
                               pin_memory=weight.device.type == "cuda")
        original.copy_(weight.detach())
        self.backups[key] = (weight, original)

    def fuse(self, unet: Any, wanted: Mapping[str, float]) -> set[int]:
        """Add the adapters' deltas (weights as set by ``set_adapters``) into the
        base weights; the tree must hold the wrappers. Returns the changed ids."""
        import torch

        layers = [m for m in unet.modules() if _is_tuner(m) and any(n in m.lora_A for n in wanted)]
        for layer in layers:
            _check_fusable(layer, [n for n in wanted if n in layer.lora_A])
        changed: set[int] = set()
        with torch.no_grad():
            for layer in layers:
                weight = layer.get_base_layer().weight
                total = None
                for name in wanted:
                    if name in layer.lora_A:
                        delta = layer.get_delta_weight(name).float()
                        total = delta if total is None else total + delta
                if total is None:
                    continue
                self._backup(weight)
                fused = weight.detach().float() + total.to(weight.device)
                weight.copy_(fused.to(weight.dtype))
                changed.add(id(weight))
        self.dirty |= changed
        return changed


def _is_tuner(module: Any) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer)


def _check_fusable(layer: Any, names: Iterable[str]) -> None:
    from peft.tuners.lora.layer import Conv2d, Linear

    if type(layer) not in (Linear, Conv2d):
        raise CannotFuse(f"{type(layer).__name__} LoRA layers")
    for name in names:
        if layer.use_dora.get(name, False):
            raise CannotFuse("DoRA adapters")
        if layer.lora_bias.get(name, False):
            raise CannotFuse("LoRA biases")
        if name in getattr(layer, "lora_variant", {}):
            raise CannotFuse(f"{type(layer.lora_variant[name]).__name__} adapters")


def wanted_weights(patches: Iterable[LoraPatch], adapters: Mapping[str, set[str]]) -> dict[str, float]:
    """Adapter -> total weight of the listed patches that reach the UNet."""
    return {n: w for n, w in _merged(patches).items() if "unet" in adapters.get(n, ())}


def realise_fused(state: FusedLora, unet: Any, patches: Iterable[LoraPatch],
                  adapters: Mapping[str, set[str]]) -> tuple[bool, set[int]]:
    """Make ``unet`` compute ``base + sum(weight_i * lora_i)`` with the LoRA
    folded into its weights. Returns (fused, ids of weights that changed): not
    fused means the adapters run unfused through peft (the tree has them)."""
    patches = tuple(patches)
    wanted = wanted_weights(patches, adapters)
    signature = tuple(sorted(wanted.items()))
    if signature == state.signature:
        if state.fallback is not None:  # this list cannot fuse: its adapters are already live
            return False, set()
        state.unwrap(unet)
        if signature:
            state.hits += 1
        return True, set()
    state.wrap()
    changed = state.restore()
    state.fallback = None
    if wanted:
        # set_adapters puts each adapter's weight into peft's scaling, which get_delta_weight uses.
        realise_adapters(unet, "unet", patches, adapters)
        try:
            changed |= state.fuse(unet, wanted)
        except CannotFuse as exc:
            changed |= state.restore()  # base weights back; the adapters set above stay live
            state.fallback = str(exc)
            state.signature = signature
            log.info("LoRA not fused (%s): running the adapters unfused", exc)
            return False, changed
        state.signature = signature
        state.builds += 1
    state.unwrap(unet)
    return True, changed
