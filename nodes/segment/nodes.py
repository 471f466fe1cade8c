"""comfyui_segment_anything's nodes: the model loaders and the text-prompted
segmentation (Grounding DINO finds the boxes, SAM draws the masks). Inputs keep
the pack's names, lists, ranges and defaults (comfy_map.py maps its class names)."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from . import grounding_dino as G
from . import sam as S
from .service import SERVICE, GroundingDinoRef, SamRef

SAM_MODEL = "SAM_MODEL"
GROUNDING_DINO_MODEL = "GROUNDING_DINO_MODEL"
_SAM_SOURCE = "dl.fbaipublicfiles.com/segment_anything (HQ: huggingface.co/lkeab/hq-sam)"
_DINO_SOURCE = "huggingface.co/ShilongLiu/GroundingDINO"


def _sam(ctx, ref: SamRef):
    service = ctx.service(SERVICE)
    return service.get("sam:" + ref.identity, lambda: S.load_model(ref.path).to(service.device), ctx,
                       "loading Segment Anything")


def _dino(ctx, ref: GroundingDinoRef):
    service = ctx.service(SERVICE)
    model = service.get("dino:" + ref.identity, lambda: G.load_model(ref.path).to(service.device), ctx,
                        "loading Grounding DINO")
    tokenizer = service.get("bert:" + ref.tokenizer, lambda: G.load_tokenizer(ref.tokenizer))
    return model, tokenizer


def _resolve(ctx, node: str, folder: str, name: str, source: str):
    try:
        return ctx.resolve_file(folder, name), ctx.file_identity(folder, name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{node} needs {name} ({source}) in the {folder} model folder: {exc}") from exc


class SAMModelLoader(Node):
    """Load a Segment Anything model (Meta's released ViT-B / L / H checkpoints) from
    the sams folder, under comfyui_segment_anything's names."""

    category = "segment"
    inputs = (Input("model_name", T.ENUM, choices=tuple(S.MODELS), default="sam_vit_h (2.56GB)",
                    description="the model; its file (e.g. sam_vit_h_4b8939.pth) lives in sams/"),)
    outputs = (Output("sam_model", SAM_MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model_name):
        path, identity = _resolve(ctx, "SAMModelLoader", S.FOLDER, S.MODELS[model_name], _SAM_SOURCE)
        ref = SamRef(str(path), identity)
        _sam(ctx, ref)  # a file that cannot be used fails here, at its loader
        return {"sam_model": ref}


class GroundingDinoModelLoader(Node):
    """Load a Grounding DINO detector (IDEA-Research's released SwinT / SwinB checkpoints)
    from the grounding-dino folder, with bert-base-uncased's vocab.txt from the
    bert-base-uncased folder or the Hugging Face cache."""

    category = "segment"
    inputs = (Input("model_name", T.ENUM, choices=tuple(G.MODELS), default="GroundingDINO_SwinT_OGC (694MB)",
                    description="the model; its file (e.g. groundingdino_swint_ogc.pth) lives in grounding-dino/"),)
    outputs = (Output("grounding_dino_model", GROUNDING_DINO_MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model_name):
        path, identity = _resolve(ctx, "GroundingDinoModelLoader", G.FOLDER, G.MODELS[model_name], _DINO_SOURCE)
        try:
            vocab = ctx.resolve_file(G.TOKENIZER_FOLDER, "vocab.txt").parent
        except FileNotFoundError as exc:
            vocab = G.cached_tokenizer_folder()
            if vocab is None:
                raise FileNotFoundError(
                    f"GroundingDinoModelLoader needs bert-base-uncased's tokenizer (vocab.txt from "
                    f"huggingface.co/google-bert/bert-base-uncased) in the {G.TOKENIZER_FOLDER} model folder or "
                    f"the Hugging Face cache: {exc}") from exc
        ref = GroundingDinoRef(str(path), identity, str(vocab))
        _dino(ctx, ref)
        return {"grounding_dino_model": ref}


class GroundingDinoSAMSegment(Node):
    """Segment what ``prompt`` names: Grounding DINO finds every box whose best word
    scores above ``threshold``, SAM draws a mask in each, and their union is the MASK;
    IMAGE is the image, black outside it. An image where nothing is found gets an
    empty mask (and a black image)."""

    category = "segment"
    inputs = (
        Input("sam_model", SAM_MODEL),
        Input("grounding_dino_model", GROUNDING_DINO_MODEL),
        Input("image", T.IMAGE),
        Input("prompt", T.STRING, default="", description="what to find, e.g. 'face' or 'red car. dog'"),
        Input("threshold", T.FLOAT, default=0.3, min=0.0, max=1.0, step=0.01,
              description="the detection score a box must pass"),
    )
    outputs = (Output("image", T.IMAGE), Output("mask", T.MASK))

    def execute(self, ctx, sam_model, grounding_dino_model, image, prompt, threshold):
        import numpy as np
        import torch

        if not prompt.strip():
            raise ValueError("prompt is empty: say what to segment (e.g. 'face')")
        sam = _sam(ctx, sam_model)
        dino, tokenizer = _dino(ctx, grounding_dino_model)
        masks, found = [], 0
        for index, one in enumerate(image):
            pixels = np.clip(one[..., :3].detach().cpu().numpy() * 255.0, 0, 255).astype(np.uint8)  # as the pack
            boxes = G.detect(dino, tokenizer, pixels, prompt, float(threshold))
            found += len(boxes)
            masks.append(S.segment(sam, pixels, boxes))
            ctx.progress(index + 1, len(image), stage="segmenting", boxes=len(boxes))
        mask = torch.stack(masks).to(torch.float32)
        quantised = torch.from_numpy(np.clip(image[..., :3].detach().cpu().numpy() * 255.0, 0, 255).astype(np.uint8))
        return {"image": quantised.to(torch.float32) / 255.0 * mask[..., None], "mask": mask}


NODES = [SAMModelLoader, GroundingDinoModelLoader, GroundingDinoSAMSegment]
