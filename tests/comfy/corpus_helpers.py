"""The corpus of public ComfyUI workflows (tests/comfy/corpus/, sources in
sources.json): import each file, and make the imported workflows runnable on
the test session's tiny models.

The model mapping lives here, not in the importer: a workflow names the
user's files (v1-5-pruned-emaonly.safetensors, sd_xl_base_1.0...), which the
tests replace by the tiny built ones of the same architecture (a name with
"xl" in it is SDXL), and sizes and steps are shrunk so each run takes a
second or so on a CPU."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lcmgraph.comfy import ComfyImportError, load_any

CORPUS = Path(__file__).parent / "corpus"
SOURCES = CORPUS / "sources.json"

SIZE = 64  # pixels: the smallest EmptyLatent allows
STEPS = 2

#: Architecture -> the tiny files standing in for the user's (tests/diffusion/conftest.py builds them).
FILES = {
    "sd15": {"checkpoint": "tiny", "lora": "a.safetensors", "controlnet": "cn"},
    "sdxl": {"checkpoint": "tiny-xl", "lora": "xl.safetensors", "controlnet": "cn-xl"},
}
IMAGE = "hint.png"
VAE = "builtin:tiny-shapes-vae"
UPSCALER = "builtin:tiny-upscale-2x"
CLIP_VISION = "builtin:tiny-clip-vision"
IP_ADAPTERS = {"sd15": "builtin:tiny-ip-adapter", "sdxl": "builtin:tiny-ip-adapter-xl"}
SVD = "builtin:tiny-svd"
FRAMES = 2
#: Architecture -> the tiny embedding standing in for every ``embedding:NAME`` (``save_embeddings`` writes them).
EMBEDDINGS = {"sd15": "tiny", "sdxl": "tiny-xl"}
_EMBEDDING = re.compile(r"embedding:[^\s,()\[\]]+", re.IGNORECASE)


def save_embeddings(folder: Path) -> Path:
    """Two-vector embeddings for the tiny text encoders (width 32; SDXL's with both encoders' vectors)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rows = torch.randn(2, 32, generator=torch.Generator().manual_seed(0)) * 0.01
    save_file({"emb_params": rows}, str(folder / f"{EMBEDDINGS['sd15']}.safetensors"))
    save_file({"clip_l": rows, "clip_g": rows.clone()}, str(folder / f"{EMBEDDINGS['sdxl']}.safetensors"))
    return folder


def save_ipadapters(root: Path) -> dict[str, list[Path]]:
    """Tiny IP-Adapter files under the names IPAdapterUnifiedLoader's presets look for (its
    file lookup is the thing tested), as ``folders`` for the engine."""
    from lcmgraph_nodes.diffusion.builtin import tiny_ipadapter

    adapters, vision = root / "ipadapter", root / "clip_vision"
    tiny_ipadapter.save_ip_adapter(adapters / "ip-adapter_sd15.safetensors")
    tiny_ipadapter.save_ip_adapter(adapters / "ip-adapter-plus_sd15.safetensors", kind="plus")
    tiny_ipadapter.save_ip_adapter(adapters / "ip-adapter_sdxl_vit-h.safetensors", arch="sdxl")
    tiny_ipadapter.save_ip_adapter(adapters / "ip-adapter-plus_sdxl_vit-h.safetensors", arch="sdxl", kind="plus")
    tiny_ipadapter.save_clip_vision(vision / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors")
    return {"ipadapter": [adapters], "clip_vision": [vision]}


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.json") if p != SOURCES)


@dataclass
class Imported:
    path: Path
    document: dict | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def blockers(self) -> list[str]:
        """Why the import failed, one short reason per problem (node types and settings, without node ids)."""
        reasons = []
        for problem in self.problems:
            found = re.search(r"node type '([^']+)'", problem)
            reason = f"node type {found.group(1)}" if found else re.sub(r"^node [^ ]+ (\([^)]*\))?:? ?", "", problem)
            reasons.append(reason)
        return reasons


def import_file(path: Path, registry) -> Imported:
    result = Imported(path)
    try:
        result.document = load_any(json.loads(path.read_text(encoding="utf-8")), registry)
    except ComfyImportError as exc:
        result.problems = list(exc.problems)
    return result


def _arch(document: dict) -> str:
    names = [str(n["inputs"].get("checkpoint", "")) for n in document["nodes"].values() if n["type"] == "LoadCheckpoint"]
    return "sdxl" if any(re.search("xl", name, re.IGNORECASE) for name in names) else "sd15"


def runnable(document: dict) -> dict:
    """The imported workflow on the tiny models, at SIZE pixels and at most STEPS steps."""
    doc = json.loads(json.dumps(document))
    arch = _arch(doc)
    files = FILES[arch]
    for node in doc["nodes"].values():
        kind, inputs = node["type"], node["inputs"]
        literal = {k for k, v in inputs.items() if not isinstance(v, dict)}
        if kind == "LoadCheckpoint":
            inputs["checkpoint"] = files["checkpoint"]
        elif kind == "ApplyLoRA":
            inputs["lora"] = files["lora"]
        elif kind == "LoadControlNet":
            inputs["controlnet"] = files["controlnet"]
        elif kind == "LoadVAE":
            inputs["vae"] = VAE
        elif kind == "UpscaleModelLoader":
            inputs["model_name"] = UPSCALER
        elif kind == "IPAdapterModelLoader":
            inputs["ipadapter_file"] = IP_ADAPTERS[arch]
        elif kind == "CLIPVisionLoader":
            inputs["clip_name"] = CLIP_VISION
        elif kind == "ImageOnlyCheckpointLoader":
            inputs["ckpt_name"] = SVD
        elif kind == "SVDImg2VidConditioning":
            inputs.update({k: SIZE for k in ("width", "height") if k in literal})
            if "video_frames" in literal:
                inputs["video_frames"] = min(inputs["video_frames"], FRAMES)
        elif kind == "TextEncode" and isinstance(inputs.get("text"), str):
            inputs["text"] = _EMBEDDING.sub(f"embedding:{EMBEDDINGS[arch]}", inputs["text"])
        elif kind in ("LoadImage", "LoadImageMask"):
            inputs["image"] = IMAGE
        elif kind in ("EmptyLatent", "EmptyImage", "SolidMask"):
            inputs.update({k: SIZE for k in ("width", "height") if k in literal or k not in inputs})
            if "batch" in literal:
                inputs["batch"] = 1
        elif kind in ("LatentUpscale", "ImageScale"):
            inputs.update({k: SIZE + 32 for k in ("width", "height") if k in literal})
        elif kind in ("LatentUpscaleBy", "ImageScaleBy") and "scale_by" in literal:
            inputs["scale_by"] = min(inputs["scale_by"], 1.5)
        elif kind in ("LCMSampler", "Sampler") and "steps" in literal:
            _shrink_steps(inputs, doc["nodes"])
    return doc


def _shrink_steps(inputs: dict, nodes: dict) -> None:
    steps = inputs["steps"]
    if steps <= STEPS:
        return
    inputs["steps"] = STEPS
    for name in ("start_step", "end_step"):  # KSamplerAdvanced's split, kept in proportion
        value = inputs.get(name)
        if isinstance(value, int) and value < steps:
            inputs[name] = value * STEPS // steps
        elif isinstance(value, dict) and nodes[value["link"][0]]["type"] == "Int":
            # A split step shared through a value node: strictly inside the shrunk run, for both halves
            # (idempotent: the second sampler reading it finds it in range already).
            source = nodes[value["link"][0]]["inputs"]
            if isinstance(source["value"], int) and 0 < source["value"] < steps:
                source["value"] = max(1, min(STEPS - 1, round(source["value"] * STEPS / steps)))
    start, end = inputs.get("start_step", 0), inputs.get("end_step", STEPS)
    if isinstance(start, int) and isinstance(end, int) and end <= start:
        inputs["end_step"] = start + 1
    if isinstance(inputs.get("denoise"), float | int) and inputs["denoise"] * STEPS < 1:
        inputs["denoise"] = 1.0 / STEPS
