"""VAEDecode and VAEEncode: latents <-> images through a checkpoint's VAE
(models/vae_codec.py does the arithmetic, as diffusers' pipelines do)."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .models import costs
from .models.interrupt import checked_inside
from .models.manager import SERVICE
from .models.vae_codec import crop_to_multiple, decode, encode
from .models.values import Latent, VaeRef


class VAEDecode(Node):
    """Turn latents into images with the checkpoint's VAE."""

    category = "latent"
    inputs = (
        Input("vae", T.VAE),
        Input("latent", T.LATENT),
        Input("tiled", T.BOOLEAN, default=False, description="decode in overlapping tiles to save memory on large images"),
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, vae: VaeRef, latent: Latent, tiled):
        if vae.arch == "svd":  # the temporal decoder: every frame of the clip at once
            from .models import svd

            manager = ctx.service(SERVICE)
            loaded = manager.activate(svd.load(manager, vae.checkpoint, vae.identity, ctx), "vae")
            with checked_inside([loaded.vae.decoder], ctx.check_interrupt):
                return {"image": svd.decode(loaded, latent.samples)}
        loaded = ctx.service(SERVICE).realise_vae(vae, ctx)
        samples = latent.samples
        if next(loaded.vae.parameters()).device.type == "cpu" and samples.shape[0] * samples.shape[-2] * samples.shape[-1] >= 64 * 64:
            from lcmgraph.allocator import trim

            # From 512² up the decode's activations are the run's largest (GBs): no freed heap beside them.
            # Smaller decodes skip it (the heap's pages would only fault in again in the next sampling).
            trim()
        with checked_inside([loaded.vae.decoder], ctx.check_interrupt):  # stops between decoder blocks / tiles
            return {"image": decode(loaded.vae, latent.samples, tiled, loaded.arch)}

    def execute_batch(self, ctx, inputs_list):
        """Latents of one VAE and size decode as one batch, then split per job."""
        import torch

        first = inputs_list[0]
        if first["vae"].arch == "svd":
            return None
        shape = tuple(first["latent"].samples.shape[1:])
        for inputs in inputs_list[1:]:
            if (inputs["vae"], inputs["tiled"], tuple(inputs["latent"].samples.shape[1:])) != (
                    first["vae"], first["tiled"], shape):
                return None
        loaded = ctx.service(SERVICE).realise_vae(first["vae"], ctx)
        sizes = [inputs["latent"].samples.shape[0] for inputs in inputs_list]
        samples = torch.cat([inputs["latent"].samples for inputs in inputs_list])
        with checked_inside([loaded.vae.decoder], ctx.check_interrupt):
            images = decode(loaded.vae, samples, first["tiled"], loaded.arch)
        return [{"image": part.clone()} for part in images.split(sizes)]

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = upstream.get("latent")
        if not isinstance(size, costs.Size):
            return None
        usage = (costs.pixels(size, "an image", "latent"), costs.batch(size, "latent"),
                 costs.vae_memory(size, literals["tiled"], "decoding", "tiled"))
        return Estimate({"image": size}, usage)


class VAEEncode(Node):
    """Turn images into latents (for img2img). Sides are centre-cropped to a multiple of 8."""

    category = "latent"
    inputs = (
        Input("vae", T.VAE),
        Input("image", T.IMAGE),
        Input("tiled", T.BOOLEAN, default=False, description="encode in overlapping tiles to save memory on large images"),
    )
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, vae: VaeRef, image, tiled):
        if vae.arch == "svd":
            from .models import svd

            manager = ctx.service(SERVICE)
            loaded = manager.activate(svd.load(manager, vae.checkpoint, vae.identity, ctx), "vae")
            latent = svd.encode_latent(loaded.vae, crop_to_multiple(image, 8)[..., :3])
            return {"latent": Latent(latent * svd.SCALING_FACTOR)}
        loaded = ctx.service(SERVICE).realise_vae(vae, ctx)
        image = crop_to_multiple(image, loaded.scale_factor)
        with checked_inside([loaded.vae.encoder], ctx.check_interrupt):
            return {"latent": Latent(encode(loaded.vae, image, tiled, loaded.arch))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return costs.vae_encoding(upstream, literals["tiled"], "tiled")


NODES = [VAEDecode, VAEEncode]
