"""Standalone VAE files (LoadVAE, ComfyUI's VAELoader), offline.

A VAE comes as

* a diffusers folder (``config.json`` + weights, e.g. ``sd-vae-ft-mse`` or
  ``sdxl-vae-fp16-fix``), or a pipeline folder with a ``vae/`` subfolder;
* a single ``.safetensors`` in the original LDM layout (``encoder.down.*``,
  optionally under ``first_stage_model.`` or ``vae.``: ``vae-ft-mse-840000``,
  ``sdxl_vae.safetensors``), converted by diffusers' own key map;
* a single ``.safetensors`` in diffusers' layout (``encoder.down_blocks.*``,
  the fp16-fix repository's weight file under any name).

Shapes give the architecture; what they cannot tell (group norm size,
scaling factor) comes from the shipped SD1.5/SDXL configs, or from the file's
``lcmgraph.configs`` metadata (``{"vae": {...}}``) when it pins them.

Which latent space the VAE serves decides its scaling factor: lcmgraph's
latents are scaled by it (ComfyUI scales inside the model instead, so its
VAELoader never needs to know). ``latent_format`` says it (sd15: 0.18215,
sdxl: 0.13025); "auto" takes a folder's config, else a pinned value, else
the file's name or metadata ("xl" in it means SDXL), else SD1.5.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

LATENT_FORMATS = ("auto", "sd15", "sdxl")
_LDM_PREFIXES = ("first_stage_model.", "vae.")
_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


class VaeFileError(Exception):
    """A VAE that cannot be loaded; the message says why in a sentence."""


def load_vae(path: str | Path, torch_dtype, latent_format: str = "auto"):
    """(AutoencoderKL on the CPU in ``torch_dtype``, the latent format it serves: "sd15" / "sdxl")."""
    if latent_format not in LATENT_FORMATS:
        raise VaeFileError(f"latent format {latent_format!r} is not one of {', '.join(LATENT_FORMATS)}")
    path = Path(path)
    if path.is_dir():
        vae, arch = _load_folder(path, torch_dtype)
    elif path.is_file():
        vae, arch = _load_file(path, torch_dtype, latent_format)
    else:
        raise VaeFileError(f"{path.name}: no such file or folder")
    if latent_format != "auto":
        arch = latent_format
        if _arch_of(vae.config.scaling_factor) != arch:
            vae.register_to_config(scaling_factor=_shipped(arch)["scaling_factor"])
    return vae.eval(), arch


def _shipped(arch: str) -> dict:
    from .single_file_arch import shipped_configs

    return shipped_configs(arch)["vae"]


def _arch_of(scaling_factor: float) -> str:
    return "sdxl" if math.isclose(scaling_factor, _shipped("sdxl")["scaling_factor"], rel_tol=1e-4) else "sd15"


def _load_folder(path: Path, torch_dtype):
    from diffusers import AutoencoderKL

    folder = path / "vae" if (path / "model_index.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise VaeFileError(f"{path.name}: a VAE folder needs a config.json (a diffusers AutoencoderKL folder)")
    try:
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise VaeFileError(f"{path.name}: the VAE folder cannot be loaded ({exc})") from exc
    return vae, _arch_of(vae.config.scaling_factor)


def _load_file(path: Path, torch_dtype, latent_format: str):
    from .single_file_arch import LayoutError, _pinned
    from .single_file_reader import LazyStateDict, SafetensorsFormatError

    if path.suffix.lower() != ".safetensors":
        raise VaeFileError(f"{path.name}: VAE files are read as .safetensors only (pickled .ckpt/.pt/.bin files "
                           "can run arbitrary code when loaded; convert it first)")
    try:
        sd = LazyStateDict(path, dtype=torch_dtype)
        pinned = _pinned(sd.metadata).get("vae", {})
    except (SafetensorsFormatError, LayoutError) as exc:
        raise VaeFileError(str(exc)) from exc
    keys = list(sd.keys())
    if any(k.startswith("model.diffusion_model.") for k in keys):
        raise VaeFileError(f"{path.name}: this is a full checkpoint, not a VAE; load it with LoadCheckpoint and "
                           "use its VAE output")
    prefix = next((p for p in _LDM_PREFIXES if any(k.startswith(p) for k in keys)), "")
    names = [k[len(prefix):] for k in keys if k.startswith(prefix)]
    arch = latent_format if latent_format != "auto" else _guess_arch(path, sd.metadata, pinned)
    base = {k: v for k, v in _shipped(arch).items() if not k.startswith("_")}
    try:
        if any(k.startswith("encoder.down.") for k in names):
            vae = _ldm(sd, prefix, base, pinned, torch_dtype)
        elif any(k.startswith("encoder.down_blocks.") for k in names):
            vae = _diffusers(sd, prefix, base, pinned, torch_dtype)
        else:
            sample = ", ".join(sorted(keys)[:3]) or "no tensors at all"
            raise VaeFileError(f"{path.name}: not a VAE file: no encoder.down.* (LDM) or encoder.down_blocks.* "
                               f"(diffusers) tensors (its first keys: {sample})")
    except LayoutError as exc:
        raise VaeFileError(f"{path.name}: {exc}") from exc
    if latent_format == "auto" and "scaling_factor" in pinned:
        arch = _arch_of(pinned["scaling_factor"])
    return vae, arch


def _guess_arch(path: Path, metadata: dict, pinned: dict) -> str:
    if "scaling_factor" in pinned:
        return _arch_of(pinned["scaling_factor"])
    hints = " ".join([path.name, metadata.get("modelspec.architecture", "")]).lower()
    return "sdxl" if "xl" in hints else "sd15"


class _View:
    """The file's VAE tensors under another prefix (what diffusers' converter
    and the shape reader expect), read on access."""

    def __init__(self, sd, prefix: str, new_prefix: str, rename=lambda k: k):
        self._sd = sd
        self._map = {new_prefix + rename(k[len(prefix):]): k for k in sd.keys() if k.startswith(prefix)}
        self.metadata = sd.metadata

    def keys(self):
        return list(self._map)

    def __iter__(self):
        return iter(self._map)

    def __contains__(self, key):
        return key in self._map

    def __getitem__(self, key):
        return self._sd[self._map[key]]

    def get(self, key, default=None):
        return self[key] if key in self else default

    def shape(self, key):
        return self._sd.shape(self._map[key])


def _ldm(sd, prefix: str, base: dict, pinned: dict, torch_dtype):
    from .single_file_arch import VAE, infer_vae
    from .single_file_loader import _build_vae

    view = _View(sd, prefix, VAE)
    config = {**infer_vae(view, base), **pinned}
    return _build_vae(view, config, torch_dtype)


def _old_attention(key: str) -> str:
    return re.sub(r"\.attentions\.0\.(query|key|value|proj_attn)\.",
                  lambda m: f".attentions.0.{_OLD_ATTENTION[m[1]]}.", key)


def _diffusers(sd, prefix: str, base: dict, pinned: dict, torch_dtype):
    from diffusers import AutoencoderKL

    from .single_file_arch import infer_vae
    from .single_file_loader import _assign, _empty

    view = _View(sd, prefix, "", rename=_old_attention)
    config = {**infer_vae(view, base, prefix="", layout="diffusers"), **pinned}
    model = _empty(lambda: AutoencoderKL.from_config(config))
    state = {}
    for key in view.keys():
        value = view[key]
        if re.search(r"\.attentions\.0\.to_(q|k|v|out\.0)\.weight$", key) and value.ndim == 4:
            value = value[:, :, 0, 0]  # 1x1 convolutions in some exports
        state[key] = value
    return _assign(model, state, "VAE", torch_dtype)


def save_ldm_vae(path: str | Path, vae, pin: bool = True) -> Path:
    """Write ``vae`` as a single LDM-layout file (what ComfyUI's VAELoader reads),
    its unshaped config values pinned in the metadata."""
    import json

    from safetensors.torch import save_file

    from .single_file_arch import METADATA_KEY, VAE
    from .single_file_export import pinned_configs, vae_to_ldm

    sd = {k[len(VAE):]: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()}
    metadata = {"format": "pt"}
    if pin:
        metadata[METADATA_KEY] = json.dumps(pinned_configs(vae=vae))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata=metadata)
    return path
