"""Model merging as ComfyUI's comfy_extras/nodes_model_merging(_model_specific).py
computes it, and CheckpointSave.

A merge node returns a new MODEL / CLIP value whose weights are a per-weight
``first * strength_model + second * strength_patch`` of its inputs (each with
its own LoRAs and merges realised first); the model manager writes them into
the first model's modules right before use and restores the originals for any
other value (models/merging.py), as it does with LoRAs. Nothing is patched in
place: the inputs stay what they were for every other branch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .models.manager import SERVICE
from .models.values import ClipRef, ModelRef

_RATIO = dict(default=1.0, min=0.0, max=1.0, step=0.01)
_MULTIPLIER = dict(default=1.0, min=-10.0, max=10.0, step=0.01)


def _pair(first, second, what: str):
    if first is None or second is None:
        raise ValueError(f"both {what}s are needed (an ApplyLoRA without a clip input passes none on)")
    if first.arch != second.arch:
        raise ValueError(f"cannot merge a {first.arch} {what} with a {second.arch} one: their weights do not match")


def _ratio_rules(pairs) -> tuple[tuple[str, float, float], ...]:
    """ModelMergeBlocks' rules: ``(prefix, ratio)`` -> first * ratio + second * (1 - ratio)."""
    return tuple((prefix, float(ratio), 1.0 - float(ratio)) for prefix, ratio in pairs)


class ModelMergeSimple(Node):
    """model1 x ratio + model2 x (1 - ratio), weight by weight (ratio 1 is model1)."""

    category = "advanced/model_merging"
    inputs = (Input("model1", T.MODEL), Input("model2", T.MODEL), Input("ratio", T.FLOAT, **_RATIO))
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model1: ModelRef, model2: ModelRef, ratio):
        _pair(model1, model2, "model")
        return {"model": model1.merged(model2, _ratio_rules([("", ratio)]))}


class ModelMergeBlocks(Node):
    """model1 x ratio + model2 x (1 - ratio) with a ratio per part of the UNet:
    input (the down blocks, conv_in and the time and SDXL size embeddings),
    middle (the mid block) and out (the up blocks and the final norm/conv)."""

    category = "advanced/model_merging"
    inputs = (Input("model1", T.MODEL), Input("model2", T.MODEL), Input("input", T.FLOAT, **_RATIO),
              Input("middle", T.FLOAT, **_RATIO), Input("out", T.FLOAT, **_RATIO))
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model1: ModelRef, model2: ModelRef, input, middle, out):  # noqa: A002 - ComfyUI's name
        _pair(model1, model2, "model")
        # LDM block names: "out" also prefixes output_blocks, as in ComfyUI; the rest takes the first ratio.
        return {"model": model1.merged(model2, _ratio_rules([("input", input), ("middle", middle), ("out", out)]))}


class ModelMergeAdd(Node):
    """model1 + model2, weight by weight (e.g. a difference ModelMergeSubtract made)."""

    category = "advanced/model_merging"
    inputs = (Input("model1", T.MODEL), Input("model2", T.MODEL))
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model1: ModelRef, model2: ModelRef):
        _pair(model1, model2, "model")
        return {"model": model1.merged(model2, (("", 1.0, 1.0),))}


class ModelMergeSubtract(Node):
    """(model1 - model2) x multiplier, weight by weight, as ComfyUI computes it
    (model1 x multiplier - model2 x multiplier)."""

    category = "advanced/model_merging"
    inputs = (Input("model1", T.MODEL), Input("model2", T.MODEL), Input("multiplier", T.FLOAT, **_MULTIPLIER))
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model1: ModelRef, model2: ModelRef, multiplier):
        _pair(model1, model2, "model")
        return {"model": model1.merged(model2, (("", float(multiplier), -float(multiplier)),))}


def _block_inputs(inputs: int, outputs: int):
    """ComfyUI's per-block ratios as (lcmgraph input name, LDM prefix) pairs."""
    names = [("time_embed", "time_embed."), ("label_emb", "label_emb.")]
    names += [(f"input_blocks_{i}", f"input_blocks.{i}") for i in range(inputs)]
    names += [(f"middle_block_{i}", f"middle_block.{i}") for i in range(3)]
    names += [(f"output_blocks_{i}", f"output_blocks.{i}") for i in range(outputs)]
    return [*names, ("out", "out.")]


#: ComfyUI input name (its LDM prefix; SD1's carry a final dot) -> lcmgraph input name.
SD1_BLOCKS = [(name, prefix if name in ("time_embed", "label_emb", "out") else prefix + ".")
              for name, prefix in _block_inputs(12, 12)]
SDXL_BLOCKS = _block_inputs(9, 9)


class ModelMergeSD1(Node):
    """ModelMergeBlocks with a ratio per block of an SD1.5 UNet, named as in the
    original (LDM) layout: input_blocks 0-11, middle_block 0-2, output_blocks 0-11;
    time_embed's ratio is the default for anything else."""

    category = "advanced/model_merging/model_specific"
    blocks = SD1_BLOCKS
    inputs = (Input("model1", T.MODEL), Input("model2", T.MODEL),
              *(Input(name, T.FLOAT, **_RATIO) for name, _ in SD1_BLOCKS))
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model1: ModelRef, model2: ModelRef, **ratios):
        _pair(model1, model2, "model")
        return {"model": model1.merged(model2, _ratio_rules([(p, ratios[n]) for n, p in self.blocks]))}


class ModelMergeSDXL(ModelMergeSD1):
    """ModelMergeBlocks with a ratio per block of an SDXL UNet, named as in the
    original (LDM) layout: input_blocks 0-8, middle_block 0-2, output_blocks 0-8;
    time_embed's ratio is the default for anything else."""

    blocks = SDXL_BLOCKS
    inputs = (Input("model1", T.MODEL), Input("model2", T.MODEL),
              *(Input(name, T.FLOAT, **_RATIO) for name, _ in SDXL_BLOCKS))


class CLIPMergeSimple(Node):
    """clip1 x ratio + clip2 x (1 - ratio), weight by weight (both text encoders for SDXL)."""

    category = "advanced/model_merging"
    inputs = (Input("clip1", T.CLIP), Input("clip2", T.CLIP), Input("ratio", T.FLOAT, **_RATIO))
    outputs = (Output("clip", T.CLIP),)

    def execute(self, ctx, clip1: ClipRef, clip2: ClipRef, ratio):
        _pair(clip1, clip2, "clip")
        return {"clip": clip1.merged(clip2, _ratio_rules([("", ratio)]))}


class CLIPMergeAdd(Node):
    """clip1 + clip2, weight by weight."""

    category = "advanced/model_merging"
    inputs = (Input("clip1", T.CLIP), Input("clip2", T.CLIP))
    outputs = (Output("clip", T.CLIP),)

    def execute(self, ctx, clip1: ClipRef, clip2: ClipRef):
        _pair(clip1, clip2, "clip")
        return {"clip": clip1.merged(clip2, (("", 1.0, 1.0),))}


class CLIPMergeSubtract(Node):
    """(clip1 - clip2) x multiplier, weight by weight."""

    category = "advanced/model_merging"
    inputs = (Input("clip1", T.CLIP), Input("clip2", T.CLIP), Input("multiplier", T.FLOAT, **_MULTIPLIER))
    outputs = (Output("clip", T.CLIP),)

    def execute(self, ctx, clip1: ClipRef, clip2: ClipRef, multiplier):
        _pair(clip1, clip2, "clip")
        return {"clip": clip1.merged(clip2, (("", float(multiplier), -float(multiplier)),))}


class CheckpointSave(Node):
    """Save a model, its CLIP and a VAE as one single-file .safetensors checkpoint
    (the original LDM layout, as ComfyUI writes it) in the output folder, with
    merges and LoRAs folded into the weights. LoadCheckpoint reads it back.
    Files are never overwritten: name_00001_.safetensors, name_00002_..."""

    category = "advanced/model_merging"
    output_node = True
    inputs = (
        Input("model", T.MODEL), Input("clip", T.CLIP), Input("vae", T.VAE),
        Input("filename_prefix", T.STRING, default="checkpoints/lcmgraph",
              description="sub-folders and name in the output folder"),
    )

    def execute(self, ctx, model: ModelRef, clip: ClipRef, vae, filename_prefix):
        if clip is None:
            raise ValueError("no CLIP given (an ApplyLoRA without a clip input passes none on)")
        if clip.arch != model.arch or vae.arch != model.arch:
            raise ValueError(f"the model is {model.arch} but the clip is {clip.arch} and the vae {vae.arch}")
        manager = ctx.service(SERVICE)
        loaded = manager.checkpoint(model, ctx)
        text = manager.checkpoint(clip, ctx)
        encoders = list(text.text_encoders())
        ctx.progress(0, len(encoders) + 2, stage="collecting weights")
        weights = {"unet": manager.effective_weights(model, "unet", ctx)}
        for i, name in enumerate(encoders):
            weights[name] = manager.effective_weights(clip, name, ctx)
            ctx.progress(i + 1, len(encoders) + 2, stage="collecting weights")
        vae_module = manager.realise_vae(vae, ctx).vae
        path = _publish(Path(ctx.output_dir), filename_prefix, lambda part: _write(
            part, loaded, text, vae_module, weights, ctx.workflow_json))
        ctx.progress(len(encoders) + 2, len(encoders) + 2, stage="saved")
        ctx.add_result(checkpoints=[{"filename": path.relative_to(ctx.output_dir).as_posix(), "path": str(path),
                                     "type": "output"}])
        return {}


def _write(part: Path, loaded, text, vae, weights: dict, workflow) -> None:
    from .formats.single_file_export import save_single_file

    pipe, text_pipe = loaded.pipe, text.pipe
    metadata = {}
    if loaded.arch == "sdxl":
        metadata["modelspec.architecture"] = "stable-diffusion-xl-v1-base"
    prediction = loaded.scheduler_config.get("prediction_type", "epsilon")
    metadata["modelspec.predict_key"] = {"epsilon": "epsilon", "v_prediction": "v"}.get(prediction, prediction)
    if workflow is not None:
        metadata["lcmgraph.workflow"] = json.dumps(workflow)
    save_single_file(part, pipe.unet, vae, text_pipe.text_encoder, getattr(text_pipe, "text_encoder_2", None),
                     tokenizer=text_pipe.tokenizer, tokenizer_2=getattr(text_pipe, "tokenizer_2", None),
                     weights=weights, metadata=metadata)


def _publish(folder: Path, prefix: str, write) -> Path:
    """Write a complete file under a hidden temporary name, then give it the
    first free ``stem_NNNNN_.safetensors`` name atomically (a hard link never
    overwrites): never a half-written checkpoint under a real name."""
    from .formats.image_files import _safe_prefix

    sub, stem = _safe_prefix(prefix)
    target = folder / sub if sub else folder
    target.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target, prefix=".", suffix=".safetensors.part")
    os.close(handle)
    part = Path(name)
    try:
        write(part)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        counter = 1
        while True:
            path = target / f"{stem}_{counter:05d}_.safetensors"
            try:
                os.link(part, path)
                return path
            except FileExistsError:
                counter += 1
    finally:
        part.unlink(missing_ok=True)


NODES = [ModelMergeSimple, ModelMergeBlocks, ModelMergeAdd, ModelMergeSubtract, ModelMergeSD1, ModelMergeSDXL,
         CLIPMergeSimple, CLIPMergeAdd, CLIPMergeSubtract, CheckpointSave]
