"""Model merging realised on the shared modules, reversibly and exactly.

A MODEL or CLIP value with a ``base`` (values.Merge) asks for weights that
are not its checkpoint's: for each weight, ComfyUI's patch arithmetic
(comfy/model_patcher.py ``add_patches``, comfy/lora.py ``calculate_weight``)

    w = w_first * strength_model + strength_patch * w_second

in float32, where ``w_first`` and ``w_second`` are the two models' weights
with their own patches realised first (their merges, then their LoRAs:
``w + weight * delta``, deltas from peft's ``get_delta_weight``). The pair of
strengths comes from the weight's block (``block_names``).

The result is written into the checkpoint's modules in place, after each
changed weight's original is copied aside (to CPU memory), exactly as the
LoRA fusion does (lora_fuse.py): another ``base`` (or none) copies the
originals back first, so a cached value never changes under another
branch's feet. Originals are read from those copies, never from the live
(merged or LoRA-fused) weights, so merging a model with a patched version of
itself works. LoRAs listed after the merge apply on top as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .lora import _merged


class CannotMerge(Exception):
    """Two models whose weights cannot be merged; says why."""


@dataclass
class MergeState:
    """The merged state of one component (unet, text_encoder...) of a loaded checkpoint."""

    #: the Merge written into the weights now; None = the checkpoint's own weights
    signature: Any = None
    #: id(weight) -> (weight, original copy): every weight a merge ever changed
    backups: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    builds: int = 0

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for key in self.dirty:
                weight, original = self.backups[key]
                weight.copy_(original)
        self.dirty.clear()
        self.signature = None

    def write(self, weight: Any, value: Any) -> None:
        import torch

        key = id(weight)
        with torch.no_grad():
            if key not in self.backups:
                original = torch.empty(weight.shape, dtype=weight.dtype, device="cpu",
                                       pin_memory=weight.device.type == "cuda")
                original.copy_(weight.detach())
                self.backups[key] = (weight, original)
            weight.copy_(value.to(device=weight.device, dtype=weight.dtype))
        self.dirty.add(key)

    def original(self, weight: Any) -> Any | None:
        entry = self.backups.get(id(weight))
        return entry[1] if entry is not None else None

    @property
    def nbytes(self) -> int:
        return sum(o.numel() * o.element_size() for _, o in self.backups.values())


def _canonical(name: str) -> str:
    # peft wraps a layer as ``x.base_layer``: weights keep the plain model's names.
    return name.replace(".base_layer.", ".").replace(".base_layer", "")


class ComponentView:
    """One loaded component as merges read it: original weights by their plain
    names (from the backups where the live weight is merged or LoRA-fused), and
    peft's LoRA layers by module name."""

    def __init__(self, module: Any, merge: MergeState, fused: Any = None):
        from peft.tuners.tuners_utils import BaseTunerLayer

        if fused is not None:
            fused.wrap()  # peft's layers back in the tree (weights unchanged) to read LoRA deltas
        self.fused = fused
        self.merge = merge
        self.params = {_canonical(n): p for n, p in module.named_parameters() if ".lora_" not in n}
        self.layers = {_canonical(n): m for n, m in module.named_modules() if isinstance(m, BaseTunerLayer)}

    def original(self, key: str) -> Any | None:
        weight = self.params.get(key)
        if weight is None:
            return None
        backup = self.merge.original(weight)
        if backup is None and self.fused is not None and id(weight) in self.fused.dirty:
            backup = self.fused.backups[id(weight)][1]  # not merged: fusion's copy is the original
        return (backup if backup is not None else weight.detach()).to(device=weight.device)

    def lora_delta(self, key: str, weights: dict[str, float]) -> Any | None:
        """sum(weight * delta) of the named adapters on this weight (float32), or None."""
        if not weights or not key.endswith(".weight"):
            return None
        layer = self.layers.get(key[: -len(".weight")])
        if layer is None:
            return None
        from .lora_fuse import CannotFuse, _check_fusable

        names = [n for n in weights if n in getattr(layer, "lora_A", {})]
        try:
            _check_fusable(layer, names)
        except CannotFuse as exc:
            raise CannotMerge(f"a LoRA with {exc} cannot be folded into merged weights") from None
        total = None
        saved = dict(layer.scaling)
        try:
            for name in names:
                layer.set_scale(name, weights[name])
                delta = layer.get_delta_weight(name).float()
                total = delta if total is None else total + delta
        finally:
            layer.scaling.update(saved)
        return total


def ldm_names(unet: Any) -> dict[str, str]:
    """diffusers UNet weight name -> its LDM name (input_blocks.1.0..., middle_block...,
    output_blocks..., out..., time_embed..., label_emb...), as ComfyUI's block merges name them."""
    from ..formats.single_file_arch import UNET
    from ..formats.single_file_export import unet_to_ldm

    names = {_canonical(n): _canonical(n) for n, _ in unet.named_parameters() if ".lora_" not in n}
    try:
        ldm = unet_to_ldm(names, dict(unet.config))
    except ValueError:
        return names
    return {diffusers: key.removeprefix(UNET) for key, diffusers in ldm.items()}


def strengths(rules, block: str) -> tuple[float, float]:
    """(strength_model, strength_patch) for a weight of ``block``: the longest rule prefix it starts with."""
    best, pair = -1, (rules[0][1], rules[0][2])
    for prefix, strength_model, strength_patch in rules:
        if prefix and block.startswith(prefix) and len(prefix) > best:
            best, pair = len(prefix), (strength_model, strength_patch)
    return pair


class Evaluator:
    """Computes a ref's effective weights key by key: ``view(ref)`` gives the
    ComponentView of the checkpoint a ref names (loaded by the manager)."""

    def __init__(self, view, blocks: dict[str, str] | None = None):
        self.view = view
        self.blocks = blocks if blocks is not None else {}

    def value(self, ref: Any, key: str) -> Any | None:
        view = self.view(ref)
        if ref.base is not None:
            weight = self.merged(ref.base, key)
        else:
            weight = view.original(key)
            weight = None if weight is None else weight.float()
        if weight is None:
            return None
        delta = view.lora_delta(key, _merged(ref.loras))
        if delta is not None:
            weight = weight + delta.to(weight.device)
        return weight

    def merged(self, merge: Any, key: str) -> Any | None:
        first = self.value(merge.first, key)
        if first is None:
            return None
        strength_model, strength_patch = strengths(merge.rules, self.blocks.get(key, key))
        if strength_patch == 0.0 and strength_model == 1.0:
            return first
        second = self.value(merge.second, key)
        if second is None:
            return first  # a weight the other model lacks gets no patch
        if strength_model != 1.0:
            first = first * strength_model
        # As ComfyUI: a weight of another shape is only scaled ("WEIGHT NOT MERGED").
        if strength_patch != 0.0 and second.shape == first.shape:
            first = first + strength_patch * second.to(first.device)
        return first
