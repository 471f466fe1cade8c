"""The values that flow between diffusion nodes.

All are frozen dataclasses: nodes never change a value they receive (a
cached upstream value would silently change), and the engine's cache can
count their tensor bytes and write them to its disk tier.

Model values (MODEL, CLIP, VAE, CONTROL_NET) are *handles*: a checkpoint
path plus its file identity, and for MODEL/CLIP the list of LoRA patches to
apply. The weights themselves live in the per-engine model manager, which
realises a handle's patch list right before the model is used.

Tensor conventions:

* LATENT ``samples``: ``[B, 4, h, w]`` float32 on the CPU, *scaled* by the
  VAE's ``scaling_factor`` — the space the UNet works in (diffusers' convention).
* IMAGE: ``[B, H, W, C]`` float32 in 0..1 on the CPU (ComfyUI's convention).
* MASK: ``[B, H, W]`` float32 in 0..1, 1 = the area to change (ComfyUI's
  convention: a PNG's transparent pixels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

ARCHES = ("sd15", "sdxl")


@dataclass(frozen=True)
class LoraPatch:
    path: str
    identity: str
    weight: float

    @property
    def adapter_name(self) -> str:
        # The file's identity, not its name: a replaced file is a new adapter.
        return "lora_" + hashlib.sha1(self.identity.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Merge:
    """Weights that replace a model's own before its LoRAs apply (model merging,
    as ComfyUI's ``add_patches``): per weight, ``first``'s times strength_model
    plus ``second``'s times strength_patch, each with its own patches realised.

    ``rules`` are ``(prefix, strength_model, strength_patch)``: the longest
    prefix of the weight's block name (its LDM name for a UNet:
    ``input_blocks.4.1...``, ``middle_block``, ``out``) picks the pair, and the
    first rule is the default. A weight ``second`` lacks, or has in another
    shape, stays ``first``'s."""

    first: Any  # ModelRef | ClipRef
    second: Any
    rules: tuple[tuple[str, float, float], ...]


@dataclass(frozen=True)
class UnetFile:
    """A UNet-only file replacing a checkpoint's UNet (LoadUNet)."""

    path: str
    identity: str


@dataclass(frozen=True)
class ModelRef:
    """MODEL: the denoiser of a checkpoint plus the LoRA patches to apply to it;
    ``unet``, when set, replaces the checkpoint's UNet (LoadUNet).

    ``base`` (a Merge) replaces the checkpoint's weights first: merged weights
    are realised by the model manager like LoRAs, on the checkpoint's modules."""

    checkpoint: str
    identity: str
    arch: str
    loras: tuple[LoraPatch, ...] = ()
    base: Merge | None = None
    #: Patches realised on the UNet around sampling (FreeU): (name, settings...) tuples.
    patches: tuple[tuple, ...] = ()
    #: ComfyUI's RescaleCFG multiplier (diffusers' guidance_rescale); 0 = off.
    rescale_cfg: float = 0.0
    unet: UnetFile | None = None

    def with_lora(self, patch: LoraPatch) -> ModelRef:
        return replace(self, loras=(*self.loras, patch))

    def merged(self, second: ModelRef, rules) -> ModelRef:
        """This model's weights merged with ``second``'s (its LoRAs and patches folded in)."""
        weights = lambda ref: replace(ref, patches=(), rescale_cfg=0.0)  # noqa: E731 - sampling options, not weights
        return replace(self, loras=(), base=Merge(weights(self), weights(second), tuple(rules)))

    def with_unet(self, unet: UnetFile) -> ModelRef:
        return replace(self, unet=unet)


@dataclass(frozen=True)
class ClipRef:
    """CLIP: the text encoder(s) of a checkpoint plus their LoRA patches.

    ``layer`` is ComfyUI's ``stop_at_clip_layer`` (CLIPSetLastLayer): the
    encoder layer whose output the prompt's embeddings are, -1 the last. None:
    the architecture's own choice, as in diffusers and ComfyUI without the
    node (SD1.5: the last layer; SDXL: the penultimate, without final norm).
    """

    checkpoint: str
    identity: str
    arch: str
    loras: tuple[LoraPatch, ...] = ()
    layer: int | None = None
    base: Merge | None = None  # merged text-encoder weights (CLIPMergeSimple...), as ModelRef's

    def with_lora(self, patch: LoraPatch) -> ClipRef:
        return replace(self, loras=(*self.loras, patch))

    def merged(self, second: ClipRef, rules) -> ClipRef:
        return replace(self, loras=(), base=Merge(replace(self, layer=None), replace(second, layer=None), tuple(rules)))


@dataclass(frozen=True)
class VaeRef:
    """VAE: a checkpoint's VAE, or (``standalone``) a VAE file or folder of its
    own (LoadVAE), whose latents are ``arch``'s (its scaling factor)."""

    checkpoint: str
    identity: str
    arch: str
    standalone: bool = False
    #: LoadVAE's latent_format ("auto", "sd15", "sdxl"): how ``arch`` was chosen.
    latent_format: str = "auto"


@dataclass(frozen=True)
class ControlNetRef:
    path: str
    identity: str
    arch: str


@dataclass(frozen=True)
class UpscaleModelRef:
    """UPSCALE_MODEL: an upscale model file (ESRGAN, SwinIR, ...) by path and identity."""

    path: str
    identity: str


@dataclass(frozen=True)
class ClipVisionRef:
    """CLIP_VISION: a CLIP vision tower's file by path and identity."""

    path: str
    identity: str


@dataclass(frozen=True)
class VideoConditioning:
    """CONDITIONING of a video model (SVD_img2vid_Conditioning): the init image's CLIP
    embeddings ``[1, B, D]``, its VAE latent ``[B, 4, h, w]`` (unscaled: the UNet reads it as
    the encoder gave it) concatenated to every frame, and the micro-conditioning."""

    image_embeds: Any
    concat_latent: Any
    fps: int
    motion_bucket_id: int
    augmentation_level: float
    arch: str = "svd"

    def map(self, fn):
        """What the text-conditioning nodes (zero-out, combine, areas, ControlNet) call: refused."""
        raise ValueError("this is a video model's conditioning (SVD_img2vid_Conditioning): the text-conditioning "
                         "nodes do not apply to it; connect it to the sampler")


@dataclass(frozen=True)
class IPAdapterRef:
    """IPADAPTER: an IP-Adapter file, with the CLIP vision tower it reads (the unified loader's pair)."""

    path: str
    identity: str
    clip_vision: ClipVisionRef | None = None


@dataclass(frozen=True)
class ControlHint:
    """One ControlNet applied to a conditioning (ApplyControlNet stacks them)."""

    controlnet: ControlNetRef
    image: Any  # IMAGE tensor
    strength: float
    start: float
    end: float


@dataclass(frozen=True)
class InpaintConcat:
    """What an inpainting UNet (9 input channels) gets besides its latents
    (InpaintModelConditioning; ComfyUI's ``concat_latent_image`` and
    ``concat_mask``): the masked image's latents ``[B, 4, h, w]`` (scaled, the
    masked pixels grey) and the mask ``[B, 1, H, W]`` in 0..1 at any size,
    1 = repaint. The sampler resizes both to the latent (the mask bilinear,
    then rounded, as ComfyUI) and feeds ``cat([latents, mask, masked])``."""

    latent: Any
    mask: Any


@dataclass(frozen=True)
class Conditioning:
    """Encoded prompt for one architecture.

    ``default_negative`` is what diffusers uses when CFG runs without a
    negative prompt: the encoded empty prompt for SD1.5; ``None`` for SDXL,
    meaning zeros (``force_zeros_for_empty_prompt``).
    """

    arch: str
    embeds: Any  # [1, 77, D]
    pooled: Any = None  # [1, D2], SDXL only
    default_negative: Any = None
    #: SDXL micro-conditioning as (height, width) pairs; None = the image size.
    original_size: tuple[int, int] | None = None
    crop: tuple[int, int] = (0, 0)
    target_size: tuple[int, int] | None = None
    controls: tuple[ControlHint, ...] = ()
    #: An inpainting UNet's extra input (InpaintModelConditioning); other UNets ignore it.
    inpaint: InpaintConcat | None = None
    # -- where and when this entry acts (ComfyUI's area, strength, mask, start/end_percent) --
    #: ("latent", h, w, y, x) in latent cells (ConditioningSetArea: pixels // 8) or
    #: ("fraction", h, w, y, x) of the latent (ConditioningSetAreaPercentage); None: everywhere.
    area: tuple | None = None
    strength: float = 1.0
    #: MASK ``[B, H, W]`` in 0..1 weighting this entry's prediction (ConditioningSetMask), any size.
    mask: Any = None
    mask_strength: float = 1.0
    #: The mask's bounding box becomes the area (ConditioningSetMask's "mask bounds").
    mask_bounds: bool = False
    #: (start, end) fractions of the sampling (ConditioningSetTimestepRange); None: all of it.
    timestep_range: tuple[float, float] | None = None
    #: The entries after this one (ConditioningCombine): a CONDITIONING is the list
    #: ``entries``, sampled separately and blended per region (models/regions.py).
    others: tuple[Conditioning, ...] = ()

    def with_control(self, hint: ControlHint) -> Conditioning:
        return self.map(lambda entry: replace(entry, controls=(*entry.controls, hint)))

    @property
    def entries(self) -> tuple[Conditioning, ...]:
        """This conditioning as ComfyUI's list: one entry per combined prompt."""
        if not self.others:
            return (self,)
        return (replace(self, others=()), *self.others)

    @staticmethod
    def combine(entries) -> Conditioning:
        """The conditioning made of ``entries`` (each a single entry or itself combined), in order."""
        flat = [entry for item in entries for entry in item.entries]
        return flat[0] if len(flat) == 1 else replace(flat[0], others=tuple(flat[1:]))

    def map(self, change) -> Conditioning:
        """``change`` applied to every entry, as ComfyUI's conditioning nodes do."""
        return Conditioning.combine([change(entry) for entry in self.entries])

    @property
    def regional(self) -> bool:
        """Whether sampling it needs the region machinery: several entries, or an
        area, mask, strength or timestep range on its one."""
        return bool(self.others) or self.area is not None or self.mask is not None or self.strength != 1.0 \
            or self.timestep_range is not None


def match_token_lengths(*embeds):
    """Prompt embeddings ``[B, T_i, D]`` of different token counts brought to
    one (their least common multiple) by repeating each, as ComfyUI does when
    it batches conditionings: cross-attention over a prompt repeated k times
    equals attention over the prompt, so each result is unchanged. For CFG's
    negative + positive batch after ConditioningConcat, say."""
    import math

    length = math.lcm(*(e.shape[1] for e in embeds))
    return [e if e.shape[1] == length else e.repeat(1, length // e.shape[1], 1) for e in embeds]


@dataclass(frozen=True)
class Latent:
    samples: Any  # [B, 4, h, w], scaled latent space
    #: Which images of the batch they were drawn from these are (ComfyUI's
    #: ``batch_index``: LatentFromBatch sets it, RepeatLatentBatch extends it),
    #: so that a sampler can give each the noise that image had in the whole
    #: batch. None: images 0..B-1.
    batch_index: tuple[int, ...] | None = None
    #: ComfyUI's ``noise_mask`` (SetLatentNoiseMask, VAEEncodeForInpaint):
    #: ``[B or 1, 1, H, W]`` float32 in 0..1 at any resolution (resized to the
    #: latent, bilinear, when sampling), 1 = the area the sampler may change.
    #: None: the whole latent.
    noise_mask: Any = None


def noise_mask(mask) -> Any:
    """A MASK (``[B, H, W]`` or ``[H, W]``) as a LATENT's noise mask ``[B, 1, H, W]``
    float32 in 0..1 (SetLatentNoiseMask's reshape); None stays None."""
    if mask is None:
        return None
    import torch

    return mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).to(torch.float32).clamp(0.0, 1.0).clone()
