"""Stage 5: write the trained parts as a diffusers pipeline folder (safetensors)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import text
from .generate import SCHEDULER_CONFIG, make_pipeline


def build_parts(run: Path, ema: bool = True):
    """(unet, vae, text_encoder, tokenizer) from the checkpoints in ``run``, with the
    VAE's scaling_factor set from the cached latents; and the UNet stage's recipe (a dict)."""
    from . import unet as unet_mod
    from . import vae as vae_mod
    from .common import load_state

    run = Path(run)
    vae = vae_mod.load_vae(run)
    ustate = load_state(run / "unet.pt")
    cfg = unet_mod.UnetConfig(**ustate["config"])
    models = unet_mod.Models(cfg, ustate["train"]["seed"])
    models.unet.load_state_dict(ustate["ema_unet" if ema else "unet"])
    models.text_encoder.load_state_dict(ustate["ema_text" if ema else "text_encoder"])
    vae.register_to_config(scaling_factor=ustate["scaling_factor"])
    parts = models.unet.eval(), vae.eval(), models.text_encoder.eval(), models.tokenizer
    return parts, {**ustate["train"], "step": ustate["step"]}


def export(run: Path, target: Path, ema: bool = True) -> Path:
    """Save the pipeline to ``target`` (replaced), with a small ``training.json`` note."""
    (unet, vae, text_encoder, tokenizer), recipe = build_parts(run, ema)
    pipe = make_pipeline(unet, vae, text_encoder, tokenizer)
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    # The scheduler as SD1.5 ships it (diffusers' defaults differ from SD's).
    sched = json.loads((tmp / "scheduler" / "scheduler_config.json").read_text())
    sched.update(SCHEDULER_CONFIG)
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=2, sort_keys=True) + "\n")
    # The training noise goes with the model: a LoRA trained on it (train-lora) must use the same.
    note = {"unet_steps": recipe["step"], "ema": ema, "max_length": text.MAX_LENGTH,
            "pyramid_noise": recipe.get("pyramid_noise") or 0.0,
            "offset_noise": 0.0 if recipe.get("pyramid_noise") else recipe.get("offset_noise", 0.0)}
    (tmp / "training.json").write_text(json.dumps(note, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def trained_noise(folder: Path) -> dict:
    """``{"pyramid_noise": float, "offset_noise": float | None}`` an exported model was trained
    with, from the ``training.json`` ``export`` writes: no pyramid noise and an unknown offset
    (None) where a folder does not say (not ours, or exported before the noise was recorded)."""
    note = Path(folder) / "training.json"
    recipe = json.loads(note.read_text()) if note.is_file() else {}
    offset = recipe.get("offset_noise")
    return {"pyramid_noise": float(recipe.get("pyramid_noise") or 0.0),
            "offset_noise": None if offset is None else float(offset)}
