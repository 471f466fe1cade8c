"""Inpainting nodes: a noise mask on a latent (SetLatentNoiseMask), and the
samplers keep everything outside it (models/sampling.py, StableDiffusionInpaintPipeline's
4-channel loop); InpaintModelConditioning gives an inpainting model (9-channel
UNet) its mask and masked image through the conditioning."""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .models import costs, values
from .models.interrupt import checked_inside
from .models.manager import SERVICE
from .models.vae_codec import crop_to_multiple, encode
from .models.values import Conditioning, InpaintConcat, Latent, VaeRef, noise_mask


class SetLatentNoiseMask(Node):
    """Let the samplers change only the masked area (1) of this latent.

    The mask may have any size (it is resized to the latent, bilinear, when
    sampling); outside it, each step puts back the source latent noised to
    the step's level, so the result keeps the source there up to the VAE's
    round trip. With denoise 1 the masked area starts from pure noise."""

    category = "latent/inpaint"
    inputs = (Input("latent", T.LATENT), Input("mask", T.MASK))
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent: Latent, mask):
        return {"latent": replace(latent, noise_mask=noise_mask(mask))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = upstream.get("latent")
        return Estimate({"latent": size}) if isinstance(size, costs.Size) else None


def grow_mask(mask, grow_by: int):
    """``[B, 1, H, W]`` mask rounded to 0/1 and grown by a ``grow_by`` square
    (ComfyUI's VAEEncodeForInpaint: a box filter, clamped, rounded); 0 keeps it."""
    import math

    import torch

    if grow_by == 0:
        return mask.round()
    kernel = torch.ones((1, 1, grow_by, grow_by))
    padding = math.ceil((grow_by - 1) / 2)
    grown = torch.clamp(torch.nn.functional.conv2d(mask.round(), kernel, padding=padding), 0, 1)
    return grown[:, :, :mask.shape[2], :mask.shape[3]].round()


class VAEEncodeForInpaint(Node):
    """Encode an image for inpainting at full denoise, as ComfyUI's node does.

    The mask is resized to the image (bilinear) and rounded; the masked
    pixels are replaced by neutral grey (0.5) before encoding, so that the
    sampler does not redraw what was there; the latent's noise mask is the
    mask grown by ``grow_mask_by`` pixels (a square), which hides the seam.
    Use it with denoise 1; for partial denoise keep the pixels
    (VAEEncode + SetLatentNoiseMask). Sides are centre-cropped to a multiple of 8."""

    category = "latent/inpaint"
    inputs = (
        Input("vae", T.VAE),
        Input("image", T.IMAGE),
        Input("mask", T.MASK),
        Input("grow_mask_by", T.INT, default=6, min=0, max=64, step=1,
              description="pixels the noise mask grows beyond the mask, for a seamless edge"),
    )
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, vae: VaeRef, image, mask, grow_mask_by):
        import torch

        loaded = ctx.service(SERVICE).realise_vae(vae, ctx)
        mask = noise_mask(mask)
        mask = torch.nn.functional.interpolate(mask, size=(image.shape[1], image.shape[2]), mode="bilinear")
        factor = loaded.scale_factor
        h, w = image.shape[1] // factor * factor, image.shape[2] // factor * factor
        top, left = (image.shape[1] - h) // 2, (image.shape[2] - w) // 2
        image = crop_to_multiple(image, factor)
        mask = mask[:, :, top:top + h, left:left + w]
        keep = (1.0 - mask.round()).squeeze(1).unsqueeze(-1)  # [B, H, W, 1]
        pixels = (image[..., :3] - 0.5) * keep + 0.5
        with checked_inside([loaded.vae.encoder], ctx.check_interrupt):
            samples = encode(loaded.vae, pixels, False, loaded.arch)
        return {"latent": Latent(samples, noise_mask=grow_mask(mask, grow_mask_by))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return costs.vae_encoding(upstream)


class InpaintModelConditioning(Node):
    """Prepare an inpainting model's inputs, as ComfyUI's node of this name.

    An inpainting checkpoint (SD1.5-/SDXL-inpainting: a UNet of 9 input
    channels) sees, besides its latents, the mask and the image with the masked
    pixels neutral grey, encoded; both ride on the conditioning outputs, which the
    sampler feeds to such a UNet (a plain UNet ignores them). The latent is the
    whole image encoded; ``noise_mask`` also sets the mask as its noise mask,
    so that the sampler keeps everything outside it. The mask is resized to the
    image (bilinear); sides are centre-cropped to a multiple of 8."""

    category = "conditioning/inpaint"
    version = 1
    inputs = (
        Input("positive", T.CONDITIONING),
        Input("negative", T.CONDITIONING),
        Input("vae", T.VAE),
        Input("image", T.IMAGE),
        Input("mask", T.MASK),
        Input("noise_mask", T.BOOLEAN, default=True,
              description="also let the sampler change only the masked area of the latent"),
    )
    outputs = (Output("positive", T.CONDITIONING), Output("negative", T.CONDITIONING), Output("latent", T.LATENT))

    def execute(self, ctx, positive: Conditioning, negative: Conditioning, vae: VaeRef, image, mask, noise_mask):
        import torch

        loaded = ctx.service(SERVICE).realise_vae(vae, ctx)
        mask = values.noise_mask(mask)
        mask = torch.nn.functional.interpolate(mask, size=(image.shape[1], image.shape[2]), mode="bilinear")
        factor = loaded.scale_factor
        h, w = image.shape[1] // factor * factor, image.shape[2] // factor * factor
        top, left = (image.shape[1] - h) // 2, (image.shape[2] - w) // 2
        image = crop_to_multiple(image, factor)[..., :3]
        mask = mask[:, :, top:top + h, left:left + w].contiguous()
        keep = (1.0 - mask.round()).squeeze(1).unsqueeze(-1)  # [B, H, W, 1]
        with checked_inside([loaded.vae.encoder], ctx.check_interrupt):
            masked = encode(loaded.vae, (image - 0.5) * keep + 0.5, False, loaded.arch)
            samples = encode(loaded.vae, image, False, loaded.arch)
        concat = InpaintConcat(masked, mask)
        return {
            "positive": positive.map(lambda entry: replace(entry, inpaint=concat)),
            "negative": negative.map(lambda entry: replace(entry, inpaint=concat)),
            "latent": Latent(samples, noise_mask=mask if noise_mask else None),
        }

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return costs.vae_encoding(upstream)  # two encodes, one after the other: one's peak


NODES = [SetLatentNoiseMask, VAEEncodeForInpaint, InpaintModelConditioning]
