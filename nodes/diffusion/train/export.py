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


def install_decoder(run: Path, model: Path) -> Path:
    """Replace the decoder of the exported folder ``model`` with ``run``'s fine-tuned one
    (``run/decoder.pt``, from ``train decoder``) and note its steps in ``training.json``.

    The decoder fine-tune runs beside the UNet (a seeded run folder, on the CPU, while the UNet
    trains elsewhere), so it needs a way into the export. Only a decoder trained on the same
    encoder fits: the UNet's latents come from that encoder, so a mismatch is refused and the
    folder is left as it was."""
    import torch
    from diffusers import AutoencoderKL

    from .common import load_state

    run, model = Path(run), Path(model)
    decoder = load_state(run / "decoder.pt")
    if decoder is None:
        raise FileNotFoundError(f"{run / 'decoder.pt'} does not exist: train one with "
                                f"`lcmgraph train decoder --run {run}`")
    if not (model / "vae").is_dir():
        raise FileNotFoundError(f"{model / 'vae'} does not exist: --out must be an exported model folder")
    vae = AutoencoderKL.from_pretrained(model / "vae")
    state = load_state(run / "vae.pt")
    if state is None:
        raise FileNotFoundError(f"{run / 'vae.pt'} does not exist: the decoder's run starts from "
                                f"`lcmgraph train seed --run {run}`")
    trained = state["model"]
    for name, tensor in vae.state_dict().items():  # everything the decoder fine-tune froze
        if not name.startswith("decoder.") and (name not in trained or not torch.equal(tensor, trained[name])):
            raise ValueError(f"{run}'s encoder differs from {model}'s ({name}): its decoder reads other latents")
    vae.decoder.load_state_dict(decoder["decoder"])
    tmp, old = model / "vae.tmp", model / "vae.old"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp, safe_serialization=True)
    shutil.copyfile(model / "vae" / "config.json", tmp / "config.json")  # the same config, without a local path
    (model / "vae").rename(old)  # swapped by renames: interrupted, the old decoder is whole in vae.old
    tmp.rename(model / "vae")
    shutil.rmtree(old)
    note_path = model / "training.json"
    note = json.loads(note_path.read_text()) if note_path.is_file() else {}
    note.update(decoder_steps=decoder["step"], decoder_outline=decoder["train"].get("outline", 0.0))
    note_path.write_text(json.dumps(note, indent=2) + "\n")
    return model
