"""From a reference image to an ``IPAdapterPatch``, as IPAdapter_plus's
``ipadapter_execute`` does before it patches the model:

1. the CLIP vision tower encodes the image (``clip_preprocess``: short side to
   224, centre crop): basic adapters read the projected ``image_embeds``,
   plus / full ones the penultimate hidden states;
2. the negative side: ``image_negative`` encoded the same way, else zeros
   (basic) or a black image encoded (plus / full) — ComfyUI's choice, where
   diffusers encodes a mid-grey one;
3. several images combine (``combine_embeds``) before the projection, or stay
   side by side (concat: every row attends over all images' tokens);
4. the adapter's projection makes the image tokens, and each cross-attention
   layer's ``to_k_ip`` / ``to_v_ip`` their keys and values.

CLIP vision towers and IP-Adapter files are loaded once per engine through
the model manager (``load_clip_vision`` / ``load_adapter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ipadapter import IPAdapterPatch


@dataclass
class LoadedClipVision:
    key: str
    model: Any
    nbytes: int


@dataclass
class LoadedAdapter:
    key: str
    label: str
    kind: str  # basic / plus / full (formats.ipadapter_files)
    model: Any  # the projection: diffusers' ImageProjection / IPAdapterPlusImageProjection / ...FullImageProjection
    layers: list  # (to_k_ip, to_v_ip) weights per attn2 layer, processor order, on the CPU
    nbytes: int

    @property
    def input_width(self) -> int:
        """The width of the CLIP output the projection reads (image embeds or hidden states)."""
        first = next(m for m in self.model.modules() if hasattr(m, "in_features"))
        return int(first.in_features)

    @property
    def sdxl(self) -> bool:
        """IPAdapter_plus's test: SDXL adapters write 2048-wide keys (and have 70 layers)."""
        return self.layers[0][0].shape[1] == 2048 or len(self.layers) == 70


def load_clip_vision(manager, path: str, identity: str, ctx: Any = None) -> LoadedClipVision:
    from .manager import ModelLoadError

    def build() -> LoadedClipVision:
        import torch

        from ..formats.clip_vision_files import ClipVisionFileError
        from ..formats.clip_vision_files import load_clip_vision as load

        try:
            model = load(path)
        except ClipVisionFileError as exc:
            raise ModelLoadError(str(exc)) from exc
        # fp32 on CPUs (quality; it runs once per image), the engine's dtype on accelerators, as ComfyUI;
        # with offload it waits in CPU memory and joins the device to encode (manager.activate).
        dtype = manager.dtype if str(manager.device).startswith("cuda") else torch.float32
        model.to(device="cpu" if manager.offload else manager.device, dtype=dtype)
        return LoadedClipVision("clipvision:" + identity, model, sum(p.numel() * p.element_size() for p in model.parameters()))

    from ..formats.clip_vision_files import tower_bytes

    return manager.standalone("clipvision:" + identity, path, "loading CLIP vision model", ctx, build,
                              incoming=tower_bytes(path))


def load_adapter(manager, path: str, identity: str, ctx: Any = None) -> LoadedAdapter:
    from .manager import ModelLoadError

    def build() -> LoadedAdapter:
        from diffusers import UNet2DConditionModel

        from ..formats.ipadapter_files import (
            IPAdapterFileError,
            adapter_kind,
            layer_weights,
            read_ipadapter,
        )

        label = Path(path).name
        try:
            parts = read_ipadapter(path)
            kind = adapter_kind(parts, label)
            layers = layer_weights(parts, label)
            # diffusers' own conversion (it does not use the UNet with low_cpu_mem_usage off).
            projection = UNet2DConditionModel._convert_ip_adapter_image_proj_to_diffusers(
                None, parts["image_proj"], low_cpu_mem_usage=False)
        except IPAdapterFileError as exc:
            raise ModelLoadError(str(exc)) from exc
        except (KeyError, RuntimeError) as exc:
            raise ModelLoadError(f"IP-Adapter {label!r} could not be read: {type(exc).__name__}: {exc}") from exc
        projection.eval().to("cpu" if manager.offload else manager.device)
        nbytes = sum(p.numel() * 4 for p in projection.parameters()) + sum(k.numel() * 8 for k, _ in layers)
        return LoadedAdapter("ipadapter:" + identity, label, kind, projection, layers, nbytes)

    return manager.standalone("ipadapter:" + identity, path, "loading IP-Adapter", ctx, build)


def encode(clip_vision: Any, images: Any, hidden_states: bool) -> Any:
    """CLIP vision outputs of IMAGE ``[B, H, W, C]`` (float32, CPU): ``[B, D]`` image embeds,
    or the penultimate hidden states ``[B, tokens, width]``."""
    import torch

    from ..formats.clip_vision_files import preprocess

    first = next(clip_vision.parameters())
    pixels = preprocess(images, clip_vision.config.image_size).to(device=first.device, dtype=first.dtype)
    with torch.no_grad():
        out = clip_vision(pixel_values=pixels, output_hidden_states=hidden_states)
    return (out.hidden_states[-2] if hidden_states else out.image_embeds).float().cpu()


def combine(embeds: Any, how: str) -> Any:
    """IPAdapter_plus's combine_embeds over the image batch (dim 0); concat keeps them apart."""
    import torch

    if how == "concat" or embeds.shape[0] == 1:
        return embeds
    if how == "add":
        return embeds.sum(dim=0, keepdim=True)
    if how == "subtract":
        return embeds[0:1] - embeds[1:].mean(dim=0, keepdim=True)
    if how == "average":
        return embeds.mean(dim=0, keepdim=True)
    if how == "norm average":  # as IPAdapter_plus: each feature normalised across the images
        return (embeds / torch.norm(embeds, dim=0, keepdim=True)).mean(dim=0, keepdim=True)
    raise ValueError(f"unknown combine_embeds {how!r}")


def _to_size(x: Any, size: int) -> Any:
    """IPAdapter_plus's tensor_to_size: repeat the last row, or cut, to ``size`` rows."""
    import torch

    if x.shape[0] >= size:
        return x[:size]
    return torch.cat([x, x[-1:].repeat(size - x.shape[0], *([1] * (x.ndim - 1)))])


def make_patch(adapter: LoadedAdapter, clip_vision: Any, image: Any, negative: Any, *, weight: float,
               weight_type: str, combine_embeds: str, start: float, end: float, scaling: str, sdxl: bool,
               mask: Any = None, vision_label: str = "") -> IPAdapterPatch:
    import torch

    hidden = adapter.kind in ("plus", "full")
    positive = encode(clip_vision, image, hidden)
    if positive.shape[-1] != adapter.input_width:
        what = "hidden states" if hidden else "image embeddings"
        raise ValueError(f"IP-Adapter {adapter.label!r} reads {adapter.input_width}-wide CLIP {what}; CLIP vision "
                         f"{vision_label!r} gives {positive.shape[-1]} (1024 = ViT-H embeds, 1280 = ViT-H hidden "
                         "states or ViT-bigG embeds): pick the tower the adapter was trained with (ip-adapter_sdxl "
                         "needs ViT-bigG, the *_vit-h ones and SD1.5's ViT-H)")
    if negative is not None:
        uncond = encode(clip_vision, negative, hidden)
    elif hidden:
        uncond = encode(clip_vision, torch.zeros(1, 224, 224, 3), hidden)
    else:
        uncond = torch.zeros_like(positive)
    uncond = _to_size(uncond, positive.shape[0])
    positive = combine(positive, combine_embeds)
    if combine_embeds != "concat":
        uncond = uncond[0:1]
    projection = adapter.model
    with torch.no_grad():
        first = next(projection.parameters())
        tokens = [projection(e.to(device=first.device, dtype=first.dtype)).float().cpu() for e in (positive, uncond)]
    images = tokens[0].shape[0]
    # [images, T, C] -> one row of all images' tokens (ComfyUI's concat: the view over heads joins them).
    tokens = [t.reshape(1, -1, t.shape[-1]) for t in tokens]
    layers = []  # float32 on the CPU: install() moves them to the UNet's device and dtype once
    for k_weight, v_weight in adapter.layers:
        pos, neg = tokens
        layers.append((pos @ k_weight.T, pos @ v_weight.T, neg @ k_weight.T, neg @ v_weight.T))
    mask = None if mask is None else mask.detach().float().cpu()
    return IPAdapterPatch(adapter.label, tuple(layers), float(weight), weight_type, scaling, float(start), float(end),
                          sdxl, mask, images)
