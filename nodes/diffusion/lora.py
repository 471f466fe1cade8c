"""LoRA adapters through peft, as diffusers loads them.

An adapter is loaded once per model under a name derived from the file's
identity (``load_lora_weights(adapter_name=...)``: peft, kohya and other
formats diffusers converts). Before a module runs, the patch list of the
value that asked for it is *realised*: ``set_adapters`` with the listed
weights, or adapters disabled when the list is empty, so a no-LoRA branch
sees the untouched base weights. Nothing is fused: unfusing is not bitwise
exact, and a fused model could not serve two branches with different weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .values import LoraPatch

log = logging.getLogger(__name__)

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


class LoraMismatch(Exception):
    """A LoRA file that cannot be applied to the model it was given."""


def _components_with(pipe: Any, name: str) -> set[str]:
    found = set()
    for component in COMPONENTS:
        module = getattr(pipe, component, None)
        if module is not None and name in (getattr(module, "peft_config", None) or {}):
            found.add(component)
    return found


def _drop(pipe: Any, name: str) -> None:
    """Remove whatever part of a failed adapter got injected."""
    for component in _components_with(pipe, name):
        module = getattr(pipe, component)
        try:
            if component == "unet":
                module.delete_adapters(name)
            else:
                from peft.tuners.tuners_utils import BaseTunerLayer

                for sub in module.modules():
                    if isinstance(sub, BaseTunerLayer):
                        sub.delete_adapter(name)
                module.peft_config.pop(name, None)
        except Exception as exc:  # noqa: BLE001 - best effort, the original error matters more
            log.warning("could not remove the partly loaded adapter %s from %s: %s", name, component, exc)


def load_adapter(pipe: Any, path: str, name: str, arch: str) -> set[str]:
    """Load the LoRA at ``path`` into ``pipe`` as adapter ``name``; return the
    components it patches. Raises LoraMismatch when it does not fit."""
    path_obj = Path(path)
    label = path_obj.name
    try:
        if path_obj.is_dir():
            pipe.load_lora_weights(str(path_obj), adapter_name=name)
        else:
            pipe.load_lora_weights(str(path_obj.parent), weight_name=path_obj.name, adapter_name=name)
    except Exception as exc:
        _drop(pipe, name)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "safetensor" in type(exc).__name__.lower() or "header" in detail.lower():
            raise LoraMismatch(f"LoRA {label!r} is not a readable safetensors file: {detail}") from exc
        raise LoraMismatch(f"LoRA {label!r} does not fit this {arch} model: {detail}") from exc
    components = _components_with(pipe, name)
    if not components:
        raise LoraMismatch(
            f"LoRA {label!r} does not fit this {arch} model: none of its layers match the model's "
            "(is it made for another architecture?)"
        )
    return components


def _merged(patches: Iterable[LoraPatch]) -> dict[str, float]:
    """Adapter name -> total weight; the same file applied twice adds up."""
    weights: dict[str, float] = {}
    for patch in patches:
        weights[patch.adapter_name] = weights.get(patch.adapter_name, 0.0) + float(patch.weight)
    return weights


def realise_adapters(module: Any, component: str, patches: Iterable[LoraPatch], adapters: Mapping[str, set[str]]) -> None:
    """Make ``module`` compute exactly ``base + sum(weight_i * lora_i)`` for the listed patches."""
    if not getattr(module, "peft_config", None):
        return  # no adapter was ever loaded into it: already the base model
    wanted = {n: w for n, w in _merged(patches).items() if component in adapters.get(n, ())}
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    if component == "unet":
        if wanted:
            module.set_adapters(list(wanted), list(wanted.values()))
            module.enable_lora()
        else:
            module.disable_lora()
    elif wanted:
        set_adapters_for_text_encoder(list(wanted), module, list(wanted.values()))
        enable_lora_for_text_encoder(module)
    else:
        disable_lora_for_text_encoder(module)
