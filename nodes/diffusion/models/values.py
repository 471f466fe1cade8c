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
class UnetFile:
    """A UNet-only file replacing a checkpoint's UNet (LoadUNet)."""

    path: str
    identity: str


@dataclass(frozen=True)
class ModelRef:
    """MODEL: the denoiser of a checkpoint plus the LoRA patches to apply to it;
    ``unet``, when set, replaces the checkpoint's UNet (LoadUNet)."""

    checkpoint: str
    identity: str
    arch: str
    loras: tuple[LoraPatch, ...] = ()
    unet: UnetFile | None = None

    def with_lora(self, patch: LoraPatch) -> ModelRef:
        return replace(self, loras=(*self.loras, patch))

    def with_unet(self, unet: UnetFile) -> ModelRef:
        return replace(self, unet=unet)


@dataclass(frozen=True)
class ClipRef:
    """CLIP: the text encoder(s) of a checkpoint plus their LoRA patches."""

    checkpoint: str
    identity: str
    arch: str
    loras: tuple[LoraPatch, ...] = ()

    def with_lora(self, patch: LoraPatch) -> ClipRef:
        return replace(self, loras=(*self.loras, patch))


@dataclass(frozen=True)
class VaeRef:
    checkpoint: str
    identity: str
    arch: str


@dataclass(frozen=True)
class ControlNetRef:
    path: str
    identity: str
    arch: str


@dataclass(frozen=True)
class ControlHint:
    """One ControlNet applied to a conditioning (ApplyControlNet stacks them)."""

    controlnet: ControlNetRef
    image: Any  # IMAGE tensor
    strength: float
    start: float
    end: float


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

    def with_control(self, hint: ControlHint) -> Conditioning:
        return replace(self, controls=(*self.controls, hint))


@dataclass(frozen=True)
class Latent:
    samples: Any  # [B, 4, h, w], scaled latent space
