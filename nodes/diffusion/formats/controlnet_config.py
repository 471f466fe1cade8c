"""A ControlNet's diffusers config, from a folder's ``config.json`` or a single
file's tensor shapes, and the architecture (SD1.5 / SDXL) it fits.

Kept apart from controlnet_files (which imports torch) so that loading the
pack stays cheap."""

from __future__ import annotations

import json
from pathlib import Path


def controlnet_arch(config: dict) -> str:
    return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"


def read_controlnet_config(path: Path) -> dict:
    if path.is_file():  # a single-file ControlNet: the config is read from its tensor shapes
        from .controlnet_files import controlnet_file_config

        return controlnet_file_config(path)
    config = path / "config.json" if path.is_dir() else None
    if config is None or not config.is_file():
        raise ValueError(f"{path.name!r} is not a diffusers ControlNet folder (it needs a config.json)")
    try:
        data = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name!r}: unreadable config.json: {exc}") from exc
    if data.get("_class_name") not in (None, "ControlNetModel"):
        raise ValueError(f"{path.name!r} holds a {data.get('_class_name')}, not a ControlNetModel")
    return data
