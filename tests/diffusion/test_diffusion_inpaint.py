"""Masked sampling (SetLatentNoiseMask) equals diffusers' StableDiffusionInpaintPipeline
for a 4-channel UNet, and keeps the unmasked part of the source."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .diffusion_helpers import Flow, gen, image_of, link, max_diff, reference, value_of

TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def mask_png(models):
    """Right half white (1 = repaint), on 8-pixel cells so that any resize agrees."""
    from PIL import Image

    pixels = np.zeros((64, 64), dtype=np.uint8)
    pixels[:, 32:] = 255
    path = models / "input" / "right.png"
    if not path.exists():
        Image.fromarray(pixels, mode="L").save(path)
    return path


def _flow(sampler="LCMSampler", ckpt="tiny", masked=True, **inputs) -> Flow:
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint=ckpt)
    f.add("pos", "TextEncode", clip=link("ckpt", "clip"), text="a red circle")
    f.add("load", "LoadImage", image="hint.png")
    f.add("encode", "VAEEncode", vae=link("ckpt", "vae"), image=link("load", "image"))
    latent = link("encode", "latent")
    if masked:
        f.add("mask", "LoadImageMask", image="right.png", channel="red")
        f.add("setmask", "SetLatentNoiseMask", latent=latent, mask=link("mask", "mask"))
        latent = link("setmask", "latent")
    f.add("sampler", sampler, model=link("ckpt", "model"), positive=link("pos", "conditioning"), latent=latent,
          **inputs)
    f.add("decode", "VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent"))
    return f


def _inpaint_pipe(models, scheduler: str, name="tiny"):
    import diffusers
    from diffusers import StableDiffusionInpaintPipeline

    base = reference(models, name)
    pipe = StableDiffusionInpaintPipeline(**base.components)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(base.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _source(engine) -> torch.Tensor:
    return value_of(engine, _flow(steps=4), "encode", "latent").samples


def _reference(models, engine, mask_png, scheduler, **kwargs):
    from PIL import Image

    pipe = _inpaint_pipe(models, scheduler)
    source = _source(engine)
    # The source as latents (no second VAE encode, which would draw from the generator).
    return pipe("a red circle", image=source, masked_image_latents=source, mask_image=Image.open(mask_png),
                height=64, width=64, generator=gen(kwargs.pop("seed")), output_type="np", **kwargs).images


def test_lcm_sampler_mask_matches_inpaint_pipeline(engine, models, mask_png):
    ours = image_of(engine, _flow(seed=3, steps=4, guidance=1.0))
    ref = _reference(models, engine, mask_png, "LCMScheduler", seed=3, num_inference_steps=4, guidance_scale=1.0,
                     strength=1.0)
    assert max_diff(ours, ref) <= TOL
    plain = image_of(engine, _flow(masked=False, seed=3, steps=4, guidance=1.0))
    assert max_diff(plain, ours) > 1e-3  # the mask does something


def test_sampler_euler_cfg_partial_denoise_matches(engine, models, mask_png):
    ours = image_of(engine, _flow("Sampler", scheduler="euler", seed=9, steps=6, cfg=2.0, denoise=0.6))
    ref = _reference(models, engine, mask_png, "EulerDiscreteScheduler", seed=9, num_inference_steps=6,
                     guidance_scale=2.0, strength=0.6)
    assert max_diff(ours, ref) <= TOL


def test_sampler_lcm_truncated_matches(engine, models, mask_png):
    ours = image_of(engine, _flow("Sampler", scheduler="lcm", seed=5, steps=4, cfg=1.0, denoise=0.5))
    ref = _reference(models, engine, mask_png, "LCMScheduler", seed=5, num_inference_steps=4,
                     guidance_scale=1.0, strength=0.5)
    assert max_diff(ours, ref) <= TOL


def test_unmasked_part_is_the_source(engine):
    out = value_of(engine, _flow(seed=3, steps=4), "sampler", "latent")
    source = _source(engine)
    assert out.noise_mask is not None  # carried, as ComfyUI's KSampler does
    assert float((out.samples[..., :4] - source[..., :4]).abs().max()) <= 1e-6  # left half: kept exactly
    assert float((out.samples[..., 4:] - source[..., 4:]).abs().max()) > 1e-2  # right half: redrawn
    # Pixels: the unmasked latent decodes to the VAE round trip up to what the
    # decoder mixes in from the redrawn half — a lot for the tiny random VAE,
    # whose mid-block attention sees the whole latent (measured: mean 0.047 on
    # the left quarter, 0.18 on the redrawn half).
    ours = image_of(engine, _flow(seed=3, steps=4))
    trip = _roundtrip(engine)
    kept = np.abs(ours[:, :, :8] - trip[:, :, :8]).mean()
    redrawn = np.abs(ours[:, :, 32:] - trip[:, :, 32:]).mean()
    assert kept < redrawn / 3, (kept, redrawn)


def _roundtrip(engine):
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint="tiny")
    f.add("load", "LoadImage", image="hint.png")
    f.add("encode", "VAEEncode", vae=link("ckpt", "vae"), image=link("load", "image"))
    f.add("decode", "VAEDecode", vae=link("ckpt", "vae"), latent=link("encode", "latent"))
    return image_of(engine, f)


def test_fewstep_and_img2img_mask(engine, models, mask_png):
    """FewStepSampler (lcm preset) and Img2Img's mask input take the same masked path."""
    lcm = image_of(engine, _flow(seed=4, steps=4, guidance=1.0, denoise=0.5))
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint="tiny")
    f.add("pos", "TextEncode", clip=link("ckpt", "clip"), text="a red circle")
    f.add("load", "LoadImage", image="hint.png")
    f.add("mask", "LoadImageMask", image="right.png", channel="red")
    f.add("sampler", "Img2Img", model=link("ckpt", "model"), vae=link("ckpt", "vae"),
          positive=link("pos", "conditioning"), image=link("load", "image"), mask=link("mask", "mask"),
          strength=0.5, seed=4, steps=4, guidance=1.0)
    f.add("decode", "VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent"))
    assert max_diff(image_of(engine, f), lcm) <= TOL
    few = value_of(engine, _flow("FewStepSampler", preset="lcm", seed=4, steps=4), "sampler", "latent")
    source = _source(engine)
    assert float((few.samples[..., :4] - source[..., :4]).abs().max()) <= 1e-6


def test_batched_masked_sampling_equals_single_runs(make_engine, monkeypatch):
    """The server's batch path: two seeds share one loop, each keeps its own mask blend."""
    from lcmgraph_nodes.diffusion.models import sampling

    from lcmgraph import RunRequest

    seen: list[int] = []
    real = sampling._denoise
    monkeypatch.setattr(sampling, "_denoise", lambda ctx, reqs, report: seen.append(len(reqs)) or real(ctx, reqs, report))
    docs = []
    for seed in (3, 8):
        f = _flow(seed=seed, steps=4, guidance=1.0)
        f.add("capture", "Capture", value=link("decode", "image"))
        docs.append(f.doc("capture"))
    outcomes = make_engine().run_batch([RunRequest(d) for d in docs])
    assert seen == [2]
    reference = make_engine()
    for outcome, doc in zip(outcomes, docs, strict=True):
        want = reference.run(doc).values["decode"]["image"].numpy()
        assert max_diff(outcome.values["decode"]["image"].numpy(), want) <= 1e-4


def test_latent_ops_carry_the_mask():
    from lcmgraph_nodes.diffusion import latents as L
    from lcmgraph_nodes.diffusion.models.values import Latent

    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, :, 32:] = 1
    latent = Latent(torch.randn(2, 4, 8, 8), noise_mask=mask)
    flipped = L.LatentFlip().execute(None, latent, "y-axis: horizontally")["latent"]
    assert torch.equal(flipped.noise_mask[0, 0, :, :32], torch.ones(64, 32))
    picked = L.LatentFromBatch().execute(None, latent, 1, 1)["latent"]
    assert picked.noise_mask.shape[0] == 1 and not bool(picked.noise_mask.any())
    repeated = L.RepeatLatentBatch().execute(None, latent, 2)["latent"]
    assert repeated.noise_mask.shape[0] == 4
    cropped = L.LatentCrop().execute(None, Latent(torch.randn(1, 4, 16, 16), noise_mask=mask[:1]), 64, 64, 64, 0)
    assert tuple(cropped["latent"].noise_mask.shape[-2:]) == (32, 32)  # the same part, at the mask's resolution
    assert bool(cropped["latent"].noise_mask.all())
    upscaled = L.LatentUpscaleBy().execute(None, latent, "nearest-exact", 2.0)["latent"]
    assert upscaled.noise_mask is mask  # resized when sampling


def test_vae_encode_for_inpaint_greys_the_mask_and_grows_the_noise_mask(engine, models):
    from lcmgraph_nodes.diffusion.inpaint import grow_mask

    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint="tiny")
    f.add("load", "LoadImage", image="hint.png")
    f.add("mask", "LoadImageMask", image="right.png", channel="red")
    f.add("enc", "VAEEncodeForInpaint", vae=link("ckpt", "vae"), image=link("load", "image"),
          mask=link("mask", "mask"), grow_mask_by=6)
    latent = value_of(engine, f, "enc", "latent")
    grown = latent.noise_mask
    assert grown.shape == (1, 1, 64, 64)
    # ComfyUI's 6x6 box with padding 3 grows the left edge by 2 pixels
    assert bool(grown[..., 30:].all()) and not bool(grown[..., :30].any())
    # The encoded pixels: the image with the masked half neutral grey.
    f.add("grey", "VAEEncode", vae=link("ckpt", "vae"), image=link("load", "image"))
    plain = value_of(engine, f, "grey", "latent").samples
    assert float((latent.samples - plain).abs().max()) > 1e-3
    assert torch.equal(grow_mask(torch.ones(1, 1, 8, 8), 6), torch.ones(1, 1, 8, 8))
    assert torch.equal(grow_mask(torch.full((1, 1, 8, 8), 0.4), 0), torch.zeros(1, 1, 8, 8))
