"""Upscale models (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, SPAN, ... : whatever
spandrel recognises) from the ``upscale_models`` folder, and tiled upscaling.

``.safetensors`` files are read as they are; ``.pth`` / ``.pt`` / ``.ckpt``
only with ``torch.load(weights_only=True)``: no pickled code runs. spandrel
detects the architecture from the tensor names and shapes.

spandrel imports torchvision for two architectures that are not upscalers
(LaMa inpainting's rotation, RestoreFormer's normalisation). PyPI has no
torchvision build for the CPU wheel of torch this project pins, and its CUDA
build fails to import beside it, so when torchvision cannot be imported those
two names are stand-ins that refuse to run, only while spandrel imports.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from pathlib import Path
from typing import Any

FOLDER = "upscale_models"
_IMPORT_LOCK = threading.Lock()


class UpscaleFileError(Exception):
    """An upscale model file that cannot be used; the message names it."""


def _needs_torchvision(*_args, **_kwargs):
    raise RuntimeError("this spandrel architecture needs torchvision, which is not installed here")


def _stand_ins() -> dict[str, types.ModuleType]:
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")

    class InterpolationMode:
        NEAREST, BILINEAR, BICUBIC = "nearest", "bilinear", "bicubic"

    functional.InterpolationMode = InterpolationMode
    functional.rotate = functional.normalize = _needs_torchvision
    root.transforms, transforms.functional = transforms, functional
    return {"torchvision": root, "torchvision.transforms": transforms, "torchvision.transforms.functional": functional}


def spandrel() -> Any:
    """The spandrel module, imported with torchvision stand-ins when torchvision cannot be imported."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    with _IMPORT_LOCK:
        try:
            return importlib.import_module("spandrel")
        except ImportError as exc:
            if "spandrel" in str(exc) and "torchvision" not in str(exc):
                raise UpscaleFileError("upscale models need the spandrel package (make setup installs it)") from exc
        except RuntimeError as exc:  # a torchvision that cannot load its operators
            if "torchvision" not in str(exc):
                raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith(("torchvision.", "spandrel"))]:
            del sys.modules[name]
        stand_ins = _stand_ins()
        sys.modules.update(stand_ins)
        try:
            return importlib.import_module("spandrel")
        finally:
            for name, module in stand_ins.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]


def load_upscale_model(path: str | Path) -> Any:
    """A spandrel ImageModelDescriptor (``.model``, ``.scale``, ``.input_channels``...), in eval mode."""
    from lcmgraph.weight_files import WeightFileError, read_weights

    path = Path(path)
    label = path.name
    try:
        state, _ = read_weights(path)
    except WeightFileError as exc:
        raise UpscaleFileError(f"upscale model {label!r} {exc}") from exc
    lib = spandrel()
    if isinstance(state, dict):
        # Some trainers wrap the weights ("params_ema", "params", "state_dict"); spandrel unwraps those too.
        state = lib.canonicalize_state_dict(state) if hasattr(lib, "canonicalize_state_dict") else state
    try:
        descriptor = lib.ModelLoader().load_from_state_dict(state)
    except Exception as exc:
        raise UpscaleFileError(f"{label!r} is not an upscale model spandrel knows: {exc}") from exc
    if not isinstance(descriptor, lib.ImageModelDescriptor):
        raise UpscaleFileError(f"{label!r} is a {type(descriptor).__name__} model, not an image upscaler")
    return descriptor.eval()


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    """How many tiles ``upscale_tiled`` runs per image."""
    if height <= tile and width <= tile:
        return 1
    return len(range(0, max(1, height - overlap), tile - overlap)) * len(range(0, max(1, width - overlap), tile - overlap))


def upscale_tiled(descriptor: Any, image, tile: int, overlap: int, device, dtype, progress=None):
    """``image`` ([B, H, W, C] float 0..1) upscaled by ``descriptor.scale`` in
    tiles as ComfyUI's ``tiled_scale`` lays them (tile x tile pixels, ``overlap``
    apart, the overlaps blended with masks that fade over ``overlap x scale``
    pixels; an image of one tile runs whole). ``progress(done, total)`` after each
    tile (it may raise to interrupt). Returns [B, H*scale, W*scale, 3] in 0..1."""
    import itertools

    import torch

    scale = descriptor.scale
    model = descriptor.model
    batch, height, width, _ = image.shape
    x = image.movedim(-1, 1)
    out_h, out_w = round(height * scale), round(width * scale)
    result = torch.empty((batch, 3, out_h, out_w), dtype=torch.float32)
    total, done = batch * tile_count(height, width, tile, overlap), 0
    run = lambda part: model(part.to(device=device, dtype=dtype)).float().cpu()  # noqa: E731
    with torch.no_grad():
        for b in range(batch):
            item = x[b:b + 1]
            if height <= tile and width <= tile:
                result[b:b + 1] = run(item)
                done += 1
                if progress is not None:
                    progress(done, total)
                continue
            out = torch.zeros((1, 3, out_h, out_w))
            div = torch.zeros((1, 3, out_h, out_w))
            feather = round(overlap * scale)
            spots = itertools.product(range(0, max(1, height - overlap), tile - overlap),
                                      range(0, max(1, width - overlap), tile - overlap))
            for y, x0 in spots:
                top, left = max(0, min(height - overlap, y)), max(0, min(width - overlap, x0))
                part = item[:, :, top:top + min(tile, height - top), left:left + min(tile, width - left)]
                up = run(part)
                mask = torch.ones_like(up)
                for t in range(feather):
                    fade = (1.0 / feather) * (t + 1)
                    for dim in (2, 3):
                        mask.narrow(dim, t, 1).mul_(fade)
                        mask.narrow(dim, mask.shape[dim] - 1 - t, 1).mul_(fade)
                oy, ox = round(top * scale), round(left * scale)
                out[:, :, oy:oy + up.shape[2], ox:ox + up.shape[3]] += up * mask
                div[:, :, oy:oy + up.shape[2], ox:ox + up.shape[3]] += mask
                done += 1
                if progress is not None:
                    progress(done, total)
            result[b:b + 1] = out / div
    return result.movedim(1, -1).clamp(0, 1)
