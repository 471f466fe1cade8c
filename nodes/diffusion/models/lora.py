"""LoRA adapters through peft, as diffusers loads them.

An adapter is loaded once per model under a name derived from the file's
identity. The file is read and converted by diffusers (``lora_state_dict``:
peft/diffusers, kohya and the other formats it understands); the UNet part
goes in through ``load_lora_into_unet``. The text-encoder part mirrors
diffusers' ``_load_lora_into_text_encoder`` but injects with peft directly
rather than through transformers' adapter integration: in transformers 5 most
of that API (add/set/delete/enable adapter) refuses peft < 0.22 (we pin
0.21.2), and its ``load_adapter`` prints a misleading "newly initialized"
load report for every LoRA. The parity tests hold this path to diffusers'
own ``load_lora_weights`` + ``set_adapters`` result.

Before a module runs, the patch list of the value that asked for it is
*realised*: ``set_adapters`` with the listed weights, or adapters disabled
when the list is empty, so a no-LoRA branch sees the untouched base weights.
This module never fuses: unfusing by subtraction is not bitwise exact. The
fast path's fusion (lora_fuse.py, option ``fuse_lora``) folds the UNet's list
into its weights and copies the saved originals back when the list changes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .values import LoraPatch

log = logging.getLogger(__name__)

TEXT_ENCODERS = ("text_encoder", "text_encoder_2")


class LoraMismatch(Exception):
    """A LoRA file that cannot be applied to the model it was given."""


def _tuner_layers(module: Any):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


def _has_adapter(module: Any, name: str) -> bool:
    return any(name in getattr(layer, "lora_A", {}) for layer in _tuner_layers(module))


def _components_with(pipe: Any, name: str) -> set[str]:
    found = set()
    for component in ("unet", *TEXT_ENCODERS):
        module = getattr(pipe, component, None)
        if module is not None and _has_adapter(module, name):
            found.add(component)
    return found


def drop_adapter(pipe: Any, name: str) -> None:
    """Remove adapter ``name`` (or whatever part of a failed one got injected)."""
    for component in _components_with(pipe, name) | {"unet"}:
        module = getattr(pipe, component)
        try:
            if component == "unet":
                if name in (getattr(module, "peft_config", None) or {}):
                    module.delete_adapters(name)
            else:
                for layer in _tuner_layers(module):
                    if name in getattr(layer, "lora_A", {}):
                        layer.delete_adapter(name)
        except Exception as exc:  # noqa: BLE001 - best effort, the original error matters more
            log.warning("could not remove the partly loaded adapter %s from %s: %s", name, component, exc)


def _load_text_encoder(state_dict: dict, network_alphas, metadata, encoder: Any, prefix: str, name: str) -> None:
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from diffusers.utils.peft_utils import _create_lora_config
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    part = {k.removeprefix(f"{prefix}."): v for k, v in state_dict.items() if k.startswith(f"{prefix}.")}
    if not part:
        return
    if metadata is not None:
        metadata = {k.removeprefix(f"{prefix}."): v for k, v in metadata.items() if k.startswith(f"{prefix}.")}
    part = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
    if not hasattr(encoder, "text_model"):  # flattened CLIP in transformers 5; old files say text_model.
        part = {k.removeprefix("text_model."): v for k, v in part.items()}
    rank = {}
    for module_name, _ in encoder.named_modules():
        if module_name.endswith((".q_proj", ".k_proj", ".v_proj", ".out_proj", ".fc1", ".fc2")):
            key = f"{module_name}.lora_B.weight"
            if key in part:
                rank[key] = part[key].shape[1]
    if network_alphas is not None:
        network_alphas = {
            k.removeprefix(f"{prefix}."): v for k, v in network_alphas.items() if k.split(".")[0] == prefix
        }
    config = _create_lora_config(part, network_alphas, metadata, rank, is_unet=False)
    inject_adapter_in_model(config, encoder, adapter_name=name)
    result = set_peft_model_state_dict(encoder, part, adapter_name=name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise ValueError(f"{len(unexpected)} {prefix} LoRA tensors match no layer (e.g. {unexpected[0]})")
    encoder.to(device=encoder.device, dtype=encoder.dtype)


def load_adapter(pipe: Any, path: str, name: str, arch: str) -> set[str]:
    """Load the LoRA at ``path`` into ``pipe`` as adapter ``name``; return the
    components it patches. Raises LoraMismatch when it does not fit."""
    path_obj = Path(path)
    label = path_obj.name
    source = str(path_obj) if path_obj.is_dir() else str(path_obj.parent)
    kwargs = {} if path_obj.is_dir() else {"weight_name": path_obj.name}
    try:
        state_dict, network_alphas, metadata = pipe.lora_state_dict(source, return_lora_metadata=True, **kwargs)
    except Exception as exc:
        raise LoraMismatch(f"LoRA {label!r} could not be read: {_first_line(exc)}") from exc
    if not state_dict or not all("lora" in key for key in state_dict):
        raise LoraMismatch(f"{label!r} is not a LoRA file (its tensor names do not mention lora)")
    try:
        with warnings.catch_warnings():
            # Several adapters per model is the point here, not an accident.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            pipe.load_lora_into_unet(state_dict, network_alphas=network_alphas, unet=pipe.unet, adapter_name=name,
                                     metadata=metadata, _pipeline=pipe)
            for prefix in TEXT_ENCODERS:
                encoder = getattr(pipe, prefix, None)
                if encoder is not None:
                    _load_text_encoder(state_dict, network_alphas, metadata, encoder, prefix, name)
    except Exception as exc:
        drop_adapter(pipe, name)
        raise LoraMismatch(f"LoRA {label!r} does not fit this {arch} model: {_first_line(exc)}") from exc
    components = _components_with(pipe, name)
    if not components:
        raise LoraMismatch(
            f"LoRA {label!r} does not fit this {arch} model: none of its layers match the model's "
            "(is it made for another architecture?)"
        )
    return components


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    mismatches = [line for line in lines if line.startswith("size mismatch")]
    if mismatches:  # torch's load_state_dict report: the headline says nothing, the lines do
        return f"{len(mismatches)} tensor(s) have the wrong shape, e.g. {mismatches[0][:240]}"
    return lines[0][:300]


def _merged(patches: Iterable[LoraPatch]) -> dict[str, float]:
    """Adapter name -> total weight; the same file applied twice adds up."""
    weights: dict[str, float] = {}
    for patch in patches:
        weights[patch.adapter_name] = weights.get(patch.adapter_name, 0.0) + float(patch.weight)
    return weights


def realise_adapters(module: Any, component: str, patches: Iterable[LoraPatch], adapters: Mapping[str, set[str]]) -> None:
    """Make ``module`` compute exactly ``base + sum(weight_i * lora_i)`` for the listed patches."""
    if not any(component in parts for parts in adapters.values()):
        return  # no adapter was ever loaded into it: already the base model
    from diffusers.utils.peft_utils import set_adapter_layers, set_weights_and_activate_adapters

    wanted = {n: w for n, w in _merged(patches).items() if component in adapters.get(n, ())}
    if wanted:
        if component == "unet":
            module.set_adapters(list(wanted), list(wanted.values()))
        else:
            set_weights_and_activate_adapters(module, list(wanted), list(wanted.values()))
    set_adapter_layers(module, enabled=bool(wanted))
