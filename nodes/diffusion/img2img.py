"""Img2Img: the one-node form of VAEEncode -> LCMSampler(denoise=strength).

Strength uses LCM's semantics (LatentConsistencyModelImg2ImgPipeline): all
``steps`` run, spread over the low-noise ``strength`` part of the
original_inference_steps grid. The standard semantics would truncate a
4-step schedule to int(4 * strength) steps — one or two steps at the
strengths people use, which LCM renders as mush.
"""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .models import costs
from .models.manager import SERVICE
from .models.sampling import SampleRequest, sample, sample_batch
from .models.vae_codec import crop_to_multiple, encode
from .models.values import Latent, noise_mask
from .samplers import _SEED, sampled


class Img2Img(Node):
    """Re-draw an image from a prompt with the LCM schedule; strength 1 ignores the image.

    The same as VAEEncode followed by LCMSampler with denoise = strength (the
    parity tests hold it to that and to diffusers' LCM img2img pipeline).
    """

    category = "sampling"
    version = 2
    inputs = (
        Input("model", T.MODEL),
        Input("vae", T.VAE),
        Input("positive", T.CONDITIONING),
        Input("negative", T.CONDITIONING, optional=True),
        Input("image", T.IMAGE),
        Input("strength", T.FLOAT, default=0.5, min=0.01, max=1.0, step=0.01,
              description="how much of the schedule runs: 0.3 keeps the layout, 0.8 keeps little"),
        Input("seed", T.INT, **_SEED),
        Input("steps", T.INT, default=4, min=1, max=50),
        Input("guidance", T.FLOAT, default=1.0, min=0.0, max=30.0, step=0.1),
        Input("original_inference_steps", T.INT, default=50, min=1, max=1000),
        Input("mask", T.MASK, optional=True,
              description="inpainting: only the masked area (1) changes, as with SetLatentNoiseMask"),
    )
    outputs = (Output("latent", T.LATENT),)
    batch_inputs = ("seed", "guidance")

    @classmethod
    def check_inputs(cls, literals):
        steps, ois, strength = (literals.get(k) for k in ("steps", "original_inference_steps", "strength"))
        if None not in (steps, ois, strength) and int(ois * strength) < steps:
            return [("steps", f"{steps} steps do not fit in original_inference_steps x strength = {int(ois * strength)}")]
        return []

    def execute(self, ctx, **inputs):
        req = self.request(ctx, **inputs)
        return {"latent": sampled(req, sample(ctx, req))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = upstream.get("image")
        if not isinstance(size, costs.Size):
            return costs.sampler(literals, {})
        latent = costs.Size(size.batch, size.height // 8 * 8, size.width // 8 * 8)
        sampled = costs.sampler(literals, {"latent": latent})
        return Estimate({"latent": latent}, (*sampled.usage, costs.vae_memory(size, False, "encoding", "image")))

    def execute_batch(self, ctx, inputs_list):
        """Each image is encoded on its own, then one LCM loop samples them all."""
        reqs = [self.request(ctx, **inputs) for inputs in inputs_list]
        latents = sample_batch(ctx, reqs)
        return None if latents is None else [{"latent": sampled(r, x)} for r, x in zip(reqs, latents, strict=True)]

    @staticmethod
    def request(ctx, model, vae, positive, negative, image, strength, seed, steps, guidance,
                original_inference_steps, mask=None):
        loaded = ctx.service(SERVICE).realise_vae(vae, ctx)
        image = crop_to_multiple(image, loaded.scale_factor)
        init = Latent(encode(loaded.vae, image, False, loaded.arch), noise_mask=noise_mask(mask))
        return SampleRequest(
            model, positive, negative, init, seed, steps, guidance, scheduler="lcm", denoise=strength,
            original_inference_steps=original_inference_steps, strength_mode="lcm",
        )


NODES = [Img2Img]
