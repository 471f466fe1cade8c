"""What diffusion nodes cost, estimated before anything runs (lcmgraph/budget.py).

Sizes travel between estimates as ``Size`` facts (batch, height, width in
pixels) on LATENT and IMAGE outputs. Memory is a deliberately rough upper
bound for fp32 on the CPU — the activations a node holds at its peak, not the
model weights (those are the model manager's budget) — good enough to refuse
a job that cannot fit by an order of magnitude (an 8192x8192 batch of 64),
not to predict the last megabyte:

* a VAE decode (or encode) in one piece holds ~2 KiB per output pixel (the
  decoder's 128-channel full-resolution activations, their norm and the
  next conv's output); tiled, only one 512x512 tile's worth plus the image;
* a UNet call holds ~32 KiB per latent cell (320-channel activations kept
  for the skip connections at every resolution), doubled under CFG.
"""

from __future__ import annotations

# Sizes are the image pack's facts: an IMAGE resized there is sized here.
from lcmgraph_nodes.image.ops.sizes import Size, batch, pixels  # noqa: F401

from lcmgraph.budget import Estimate, Usage

VAE_BYTES_PER_PIXEL = 2048
VAE_TILE_PIXELS = 512 * 512
UNET_BYTES_PER_CELL = 32 * 1024
IMAGE_BYTES_PER_PIXEL = 3 * 4  # IMAGE tensors: float32 RGB


def vae_memory(size: Size, tiled: bool, verb: str, input_name: str | None) -> Usage:
    if tiled:
        amount = size.batch * (min(size.pixels, VAE_TILE_PIXELS) * VAE_BYTES_PER_PIXEL
                               + size.pixels * IMAGE_BYTES_PER_PIXEL)
        how = "in tiles"
    else:
        amount = size.batch * size.pixels * (VAE_BYTES_PER_PIXEL + IMAGE_BYTES_PER_PIXEL)
        # the advice only where the node has the switch (the inpainting encoders do not)
        how = "in one piece" + (" (tiled=true needs far less)" if input_name == "tiled" else "")
    return Usage("memory", amount, f"{verb} {size.describe()} {how}", input_name)


def vae_encoding(upstream, tiled: bool = False, input_name: str = "image") -> Estimate | None:
    """A VAE encode of the upstream IMAGE: its latent (sides cut to a multiple of 8) and
    the encoder's activations (the inpainting nodes encode twice, one after the other:
    the same peak)."""
    size = upstream.get("image")
    if not isinstance(size, Size):
        return None
    latent = Size(size.batch, size.height // 8 * 8, size.width // 8 * 8)
    return Estimate({"latent": latent}, (vae_memory(size, tiled, "encoding", input_name),))


def unet_memory(size: Size, cfg: bool, input_name: str | None) -> Usage:
    cells = size.batch * (size.height // 8) * (size.width // 8)
    amount = cells * UNET_BYTES_PER_CELL * (2 if cfg else 1)
    return Usage("memory", amount, f"sampling {size.describe()}{' with CFG' if cfg else ''}", input_name)


def sampler(literals, upstream, latent_input: str = "latent") -> Estimate:
    """A sampler: its steps, and the UNet's activations for the latent it samples."""
    usage = [Usage("steps", literals.get("steps") or 0, f"{literals.get('steps')} sampling steps", "steps")]
    size = upstream.get(latent_input)
    guidance = literals.get("guidance", literals.get("cfg", 1.0)) or 1.0
    if isinstance(size, Size):
        usage.append(unet_memory(size, guidance > 1.0, latent_input))
    return Estimate({"latent": size} if isinstance(size, Size) else {}, tuple(usage))
