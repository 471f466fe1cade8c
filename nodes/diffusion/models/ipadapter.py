"""IP-Adapter at sampling time, as ComfyUI_IPAdapter_plus (cubiq) computes it.

An ``IPAdapterPatch`` (in ``ModelRef.patches``) carries what the node computed:
per cross-attention layer the image tokens' keys and values for the positive
and the negative rows. ``install`` hooks every ``attn2`` of the UNet: the
layer's own query attends over the image tokens and the result, times the
layer's weight, is added before ``to_out`` (ComfyUI adds it to the attention
output that ``to_out`` then projects; diffusers' IPAdapterAttnProcessor does
the same). Being a forward hook, it composes with whatever attention
processor the fast path chose and with LoRAs.

Per-layer weights follow IPAdapter_plus's ``weight_type``: its layer index
counts spatial transformers (diffusers' ``Transformer2DModel``) in forward
order, input -> middle -> output, 16 of them on SD1.5 and 11 on SDXL; the
file's ``ip_adapter.N`` numbering is diffusers' processor order (down, up,
mid). ``start_at`` / ``end_at`` compare the timestep as ComfyUI compares
sigmas: active while ``(1 - end) * 999 <= t <= (1 - start) * 999``.

Which rows of a UNet call are negative is told by the sampler
(``mark_rows``) before each call: ``[negatives; positives]`` under CFG in
the plain loop, per region in the regional one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KIND = "ipadapter"
WEIGHT_TYPES = ("linear", "ease in", "ease out", "ease in-out", "reverse in-out", "weak input", "weak output",
                "weak middle", "strong middle", "style transfer", "composition", "strong style transfer",
                "style and composition", "style transfer precise", "composition precise")
EMBEDS_SCALING = ("V only", "K+V", "K+V w/ C penalty", "K+mean(V) w/ C penalty")
COMBINE = ("concat", "add", "subtract", "average", "norm average")
_ROWS = "_lcmgraph_negative_rows"


@dataclass(frozen=True, eq=False)  # tensors inside: equal only to itself (the manager compares patch tuples)
class IPAdapterPatch:
    label: str
    #: per attn2 layer in processor order: (k_pos, v_pos, k_neg, v_neg), each [1, tokens, width]
    layers: tuple
    weight: float
    weight_type: str
    scaling: str
    start: float
    end: float
    sdxl: bool
    #: MASK [B, H, W] in 0..1 where the image acts (ComfyUI's attn_mask), or None
    mask: Any = None
    #: how many images' tokens sit side by side in each layer's keys (concat), for K+mean(V)
    images: int = 1

    def as_patch(self) -> tuple:
        return (KIND, self)


def mark_rows(unet, negative: list[bool] | None) -> None:
    """Tell the IP-Adapter hooks which rows of the next UNet call are negative (None: none)."""
    setattr(unet, _ROWS, negative)


# -- per-layer weights (IPAdapter_plus ipadapter_execute / ipadapter_attention) --------------
def _style_maps(w: float, wc: float, sdxl: bool) -> dict[str, dict[int, float]]:
    every = lambda idx, v: {i: v for i in idx}  # noqa: E731
    if sdxl:
        return {
            "style transfer": {6: w},
            "composition": {3: w},
            "strong style transfer": every((0, 1, 2, 4, 5, 6, 7, 8, 9, 10), w),
            "style and composition": {3: wc, 6: w},
            "style transfer precise": {3: wc, 6: w},
            "composition precise": {**every((0, 1, 2, 4, 5, 7, 8, 9, 10), 0.1 * w), 3: wc, 6: w},
        }
    style = every((0, 1, 2, 3, 9, 10, 11, 12, 13, 14, 15), w)
    return {
        "style transfer": style,
        "composition": {4: 0.25 * w, 5: w},
        "strong style transfer": every((0, 1, 2, 3, *range(6, 16)), w),
        "style and composition": {**every(range(4), w), 4: 0.25 * wc, 5: wc, **every(range(9, 16), w)},
        "style transfer precise": {**every(range(4), w), 4: 0.25 * wc, 5: wc, **every(range(9, 16), w)},
        "composition precise": {**every(range(4), w), 4: 0.25 * wc, 5: wc, **every((6, 7, 8), 0.1 * w),
                                **every(range(9, 16), w)},
    }


def layer_weight(weight_type: str, w: float, index: int, block: str, sdxl: bool) -> float:
    """The weight of spatial transformer ``index`` (forward order) in ``block``
    ("input", "middle", "output") for IPAdapterAdvanced (composition weight = weight)."""
    maps = _style_maps(w, w, sdxl)
    if weight_type in maps:
        return maps[weight_type].get(index, 0.0)
    count = 11 if sdxl else 16
    ramp = {"ease in": 1 - index / count, "ease out": index / count,
            "ease in-out": 1 - abs(index - count / 2) / (count / 2),
            "reverse in-out": abs(index - count / 2) / (count / 2)}
    if weight_type in ramp:
        return w * (0.05 + 0.95 * ramp[weight_type])
    weak = {"weak input": ("input",), "weak output": ("output",), "weak middle": ("middle",),
            "strong middle": ("input", "output")}
    if weight_type in weak:
        return w * 0.2 if block in weak[weight_type] else w
    if weight_type == "linear":
        return w
    raise ValueError(f"unknown weight_type {weight_type!r}")


def swapped(weight_type: str, index: int, sdxl: bool) -> bool:
    """The 'precise' types give the image to the negative rows instead (negative guidance) on some layers."""
    composition = {3} if sdxl else {4, 5}
    if weight_type == "style transfer precise":
        return index in composition
    if weight_type == "composition precise":
        return index not in composition
    return False


def spatial_transformers(unet) -> list[tuple[Any, str]]:
    """(Transformer2DModel, block kind) in forward order: down, mid, up."""
    out = []
    for kind, blocks in (("input", unet.down_blocks), ("middle", [unet.mid_block]), ("output", unet.up_blocks)):
        for block in blocks:
            for attention in getattr(block, "attentions", None) or ():
                out.append((attention, kind))
    return out


def cross_attentions(unet) -> list:
    """The attn2 modules in diffusers' processor order (the file's ip_adapter.1, .3, ... order)."""
    modules = dict(unet.named_modules())
    return [modules[name[:-len(".processor")]] for name in unet.attn_processors if name.endswith("attn2.processor")]


# -- the hooks ------------------------------------------------------------------------------
def install(unet, patches: tuple[IPAdapterPatch, ...]) -> list:
    """Hook the patches into ``unet``'s cross-attentions; the handles undo it."""
    import torch

    attn2 = cross_attentions(unet)
    owner = {}
    for index, (transformer, kind) in enumerate(spatial_transformers(unet)):
        for module in transformer.modules():
            owner[id(module)] = (index, kind)
    for patch in patches:
        if len(patch.layers) != len(attn2):
            raise ValueError(f"IP-Adapter {patch.label!r} has {len(patch.layers)} cross-attention layers, this "
                             f"UNet {len(attn2)}: it was made for another model (SD1.5 adapters need an SD1.5 "
                             "model, SDXL ones an SDXL model)")
        for layer, module in zip(patch.layers, attn2, strict=True):
            width = module.to_q.out_features if hasattr(module.to_q, "out_features") else module.inner_dim
            if layer[0].shape[-1] != width:
                raise ValueError(f"IP-Adapter {patch.label!r} does not fit this UNet: its layer is "
                                 f"{layer[0].shape[-1]} wide, the UNet's {width}")
    state: dict[str, Any] = {"t": None}
    handles = [unet.register_forward_pre_hook(_call_hook(unet, state), with_kwargs=True)]
    device, dtype = unet.device, unet.dtype
    for i, module in enumerate(attn2):
        index, kind = owner[id(module)]
        steps = []
        for patch in patches:
            weight = layer_weight(patch.weight_type, patch.weight, index, kind, patch.sdxl)
            if weight:
                k_pos, v_pos, k_neg, v_neg = (t.to(device=device, dtype=dtype) for t in patch.layers[i])
                if swapped(patch.weight_type, index, patch.sdxl):
                    # the image goes to the negative rows; the positive rows see zero tokens (no contribution)
                    k_pos, v_pos, k_neg, v_neg = torch.zeros_like(k_pos), torch.zeros_like(v_pos), k_pos, v_pos
                # row 0: positive, row 1: negative; a call picks one per batch row
                steps.append((patch, torch.cat([k_pos, k_neg]), torch.cat([v_pos, v_neg]), weight))
        if steps:
            handles.append(module.register_forward_hook(_attention_hook(state, steps), with_kwargs=True))
    return handles


def _call_hook(unet, state: dict):
    """Once per UNet call: its timestep, latent size and which rows are negative (as the
    row picks of the layers' keys and values), for every hooked layer of that call."""
    def hook(module, args, kwargs):
        import torch

        t = args[1] if len(args) > 1 else kwargs.get("timestep")
        sample = args[0] if args else kwargs["sample"]
        state["t"] = float(t.flatten()[0]) if hasattr(t, "flatten") else float(t)
        state["shape"] = tuple(sample.shape[-2:])
        rows = getattr(unet, _ROWS, None)
        negative = list(rows) if rows is not None and len(rows) == sample.shape[0] else [False] * sample.shape[0]
        state["negative"] = negative
        state["pick"] = torch.tensor([int(n) for n in negative], device=sample.device)
        state["masks"] = {}  # per (patch, tokens): the mask at that layer's resolution, made once per call
    return hook


def _active(patch: IPAdapterPatch, t: float | None) -> bool:
    if t is None:
        return True
    return (1 - patch.end) * 999 <= t + 1e-6 and t - 1e-6 <= (1 - patch.start) * 999


def _attention_hook(state: dict, steps: list):
    def hook(module, args, kwargs, output):

        hidden = args[0] if args else kwargs["hidden_states"]
        pick, negative = state["pick"], state["negative"]
        query = None
        added = None
        for patch, keys, values, weight in steps:
            if not _active(patch, state["t"]):
                continue
            if query is None:
                query = module.to_q(hidden)
            out = _scaled_attention(module, query, keys[pick], values[pick], weight, patch.scaling, patch.images)
            if patch.mask is not None:
                key = (id(patch), query.shape[1])
                if key not in state["masks"]:
                    state["masks"][key] = _mask_weights(patch.mask, state["shape"], query.shape[1], negative).to(out)
                out = out * state["masks"][key]
            added = out if added is None else added + out
        if added is None:
            return output
        # to_out is linear: its call minus its bias is its weight times the image term, including a
        # LoRA on to_out whether peft keeps it beside the weight or fused into it (ComfyUI merges it).
        to_out = module.to_out[0]
        bias = getattr(to_out, "base_layer", to_out).bias
        projected = to_out(added)
        return output + (projected - bias if bias is not None else projected)
    return hook


def _scaled_attention(module, query, keys, values, weight: float, scaling: str, images: int = 1):
    """IPAdapter_plus's embeds_scaling: 'V only' scales the output; the K+V modes scale the
    keys too (which sharpens the softmax), by weight x width / 1280 with the C penalty;
    K+mean(V) scales only each image's mean value (over its own tokens)."""
    import torch.nn.functional as F

    if scaling == "V only":
        factor = 1.0
    else:
        factor = weight * (keys.shape[-1] / 1280 if "C penalty" in scaling else 1.0)
        keys = keys * factor
        if scaling.startswith("K+mean(V)"):
            per_image = values.view(values.shape[0], images, -1, values.shape[-1])
            mean = per_image.mean(dim=2, keepdim=True)
            values = (per_image - mean + mean * factor).view(values.shape)
        else:
            values = values * factor
    heads = module.heads
    b, n, width = query.shape
    split = lambda x: x.view(b, -1, heads, width // heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(query), split(keys), split(values))
    out = out.transpose(1, 2).reshape(b, n, width)
    return out * weight if scaling == "V only" else out


def _mask_weights(mask, shape, tokens: int, negative: list[bool]):
    """ComfyUI_IPAdapter_plus's attn_mask at this layer's resolution: [batch, tokens, 1]. Mask
    frame i goes to the i-th positive and the i-th negative row (its last frame repeats)."""
    import torch
    import torch.nn.functional as F

    height, width = shape if shape else (1, tokens)
    mask_h = height / (height * width / tokens) ** 0.5
    mask_h = int(mask_h) + int(tokens % int(mask_h) != 0)
    mask_w = tokens // mask_h
    m = F.interpolate(mask[:, None].float(), size=(mask_h, mask_w), mode="bilinear")[:, 0]
    m = m.reshape(m.shape[0], -1)
    if m.shape[1] < tokens:
        pad = tokens - m.shape[1]
        m = F.pad(m, (pad // 2, pad - pad // 2))
    elif m.shape[1] > tokens:
        cut = (m.shape[1] - tokens) // 2
        m = m[:, cut:cut + tokens]
    seen = {True: 0, False: 0}
    index = []
    for n in negative:  # the row's place within its own half: tensor_to_size, then the halves repeat
        index.append(min(seen[n], m.shape[0] - 1))
        seen[n] += 1
    return m[torch.tensor(index)].unsqueeze(-1)
