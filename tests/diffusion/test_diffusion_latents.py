"""The latent nodes against ComfyUI's formulas on small tensors (cells of 8
pixels, batch_index), their size facts for budgets, and a hires-fix pass
(txt2img -> LatentUpscaleBy -> a second LCMSampler with denoise) on the
tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lcmgraph_nodes.diffusion import latents as L
from lcmgraph_nodes.diffusion.models.costs import Size
from lcmgraph_nodes.diffusion.models.values import Latent
from lcmgraph_nodes.image.ops.resample import resize

from lcmgraph import WorkflowInvalid

from .diffusion_helpers import link, txt2img, value_of
from .test_diffusion_budget import budget_engine, saved


def run(cls, **inputs):
    return cls().execute(None, **inputs)["latent"]


def lat(*shape, seed=0, **extra):
    return Latent(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), **extra)


# -- upscale ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic"])
def test_upscale_to_pixels_acts_on_cells(method):
    x = lat(2, 4, 8, 6)
    out = run(L.LatentUpscale, latent=x, upscale_method=method, width=100, height=130, crop="disabled")
    # 100 // 8 = 12 cells wide, 130 // 8 = 16 high
    assert torch.equal(out.samples, F.interpolate(x.samples, size=(16, 12), mode=method))


def test_upscale_sides_of_zero_and_the_64_pixel_floor():
    x = lat(1, 4, 8, 12)  # 96x64 pixels
    assert run(L.LatentUpscale, latent=x, upscale_method="bilinear", width=0, height=128, crop="disabled").samples.shape[2:] == (16, 24)
    # 48 px -> 64 at least; the height follows (43 px) and is raised to 64 too
    assert run(L.LatentUpscale, latent=x, upscale_method="bilinear", width=48, height=0, crop="disabled").samples.shape[2:] == (8, 8)
    assert run(L.LatentUpscale, latent=x, upscale_method="bilinear", width=0, height=0, crop="center") is x
    out = run(L.LatentUpscale, latent=x, upscale_method="nearest-exact", width=64, height=64, crop="center")
    assert torch.equal(out.samples, x.samples[:, :, :, 2:10])  # 12 cells cut to 8, centred


def test_upscale_by_rounds_cells_and_bislerp_resizes():
    x = lat(1, 4, 5, 7)
    out = run(L.LatentUpscaleBy, latent=x, upscale_method="bislerp", scale_by=1.5)
    assert out.samples.shape == (1, 4, 8, 10)  # round(7.5) = 8, round(10.5) = 10
    assert torch.equal(out.samples, resize(x.samples, 10, 8, "bislerp"))


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"])
def test_every_method_commutes_with_the_vae_scaling(method):
    # lcmgraph's latents are ComfyUI's times the scaling factor: the results correspond.
    x = lat(1, 4, 6, 6, seed=2)
    scaled = run(L.LatentUpscaleBy, latent=Latent(x.samples * 0.13025), upscale_method=method, scale_by=1.7).samples
    plain = run(L.LatentUpscaleBy, latent=x, upscale_method=method, scale_by=1.7).samples
    assert torch.allclose(scaled, plain * 0.13025, atol=1e-6)


# -- composite, blend ------------------------------------------------------------------------
def test_composite_pastes_at_cells_and_cuts_at_the_edge():
    to, source = Latent(torch.zeros(1, 1, 4, 4)), Latent(torch.ones(1, 1, 3, 3))
    out = run(L.LatentComposite, latent_to=to, latent_from=source, x=16, y=8, feather=0).samples[0, 0]
    expected = torch.zeros(4, 4)
    expected[1:4, 2:4] = 1.0
    assert torch.equal(out, expected)
    same = run(L.LatentComposite, latent_to=to, latent_from=source, x=64, y=0, feather=0)
    assert torch.equal(same.samples, to.samples)


def test_composite_feathers_the_inner_edges():
    to, source = Latent(torch.zeros(1, 1, 4, 4)), Latent(torch.ones(1, 1, 2, 2))
    # At cell (1, 1) with 2 cells of feather every pasted cell is on two faded edges: 1/2 x 1/2.
    out = run(L.LatentComposite, latent_to=to, latent_from=source, x=8, y=8, feather=16).samples[0, 0]
    assert out[1:3, 1:3].tolist() == [[0.25, 0.25], [0.25, 0.25]]
    # At the corner (0, 0) only the edges inside the destination fade.
    source = Latent(torch.ones(1, 1, 3, 3))
    out = run(L.LatentComposite, latent_to=to, latent_from=source, x=0, y=0, feather=16).samples[0, 0]
    rows = torch.tensor([1.0, 1.0, 0.5])  # bottom: last row x 1/2, the one above x 2/2
    assert torch.allclose(out[:3, :3], rows[:, None] * rows[None, :])


def test_composite_broadcasts_one_source_over_a_batch():
    to = Latent(torch.zeros(3, 4, 2, 2), batch_index=(4, 5, 6))
    out = run(L.LatentComposite, latent_to=to, latent_from=Latent(torch.ones(1, 4, 1, 1)), x=0, y=0, feather=0)
    assert out.samples[:, :, 0, 0].eq(1).all() and out.batch_index == (4, 5, 6)
    with pytest.raises(ValueError, match="batch of 2"):
        run(L.LatentComposite, latent_to=Latent(torch.zeros(3, 4, 2, 2)), latent_from=Latent(torch.ones(2, 4, 1, 1)),
            x=0, y=0, feather=0)


def test_blend_mixes_and_resizes_the_second():
    a, b = lat(1, 4, 4, 4), lat(1, 4, 4, 4, seed=1)
    assert torch.allclose(run(L.LatentBlend, latent1=a, latent2=b, blend_factor=0.3).samples,
                          a.samples * 0.3 + b.samples * 0.7)
    c = lat(1, 4, 6, 8, seed=2)
    expected = a.samples * 0.5 + resize(c.samples, 4, 4, "bicubic", "center") * 0.5
    assert torch.allclose(run(L.LatentBlend, latent1=a, latent2=c, blend_factor=0.5).samples, expected)


# -- batches --------------------------------------------------------------------------------
def test_from_batch_clamps_and_remembers_the_images():
    x = lat(4, 4, 2, 2)
    out = run(L.LatentFromBatch, latent=x, batch_index=2, length=5)
    assert torch.equal(out.samples, x.samples[2:4]) and out.batch_index == (2, 3)
    out = run(L.LatentFromBatch, latent=x, batch_index=9, length=1)
    assert torch.equal(out.samples, x.samples[3:4]) and out.batch_index == (3,)
    again = run(L.LatentFromBatch, latent=Latent(x.samples, batch_index=(10, 11, 12, 13)), batch_index=1, length=2)
    assert again.batch_index == (11, 12)


def test_repeat_extends_the_batch_index_past_the_originals():
    x = lat(2, 4, 2, 2)
    out = run(L.RepeatLatentBatch, latent=x, amount=3)
    assert torch.equal(out.samples, x.samples.repeat(3, 1, 1, 1)) and out.batch_index is None
    out = run(L.RepeatLatentBatch, latent=Latent(x.samples, batch_index=(2, 3)), amount=3)
    assert out.batch_index == (2, 3, 4, 5, 6, 7)


# -- transforms ---------------------------------------------------------------------------
def test_flip_rotate_crop():
    x = lat(1, 4, 16, 24)
    assert torch.equal(run(L.LatentFlip, latent=x, flip_method="x-axis: vertically").samples, x.samples.flip(2))
    assert torch.equal(run(L.LatentFlip, latent=x, flip_method="y-axis: horizontally").samples, x.samples.flip(3))
    quarter = run(L.LatentRotate, latent=x, rotation="90 degrees").samples
    assert quarter.shape == (1, 4, 24, 16)
    assert torch.equal(quarter[0, 0, 0], x.samples[0, 0, :, 0].flip(0))  # clockwise: the left column becomes the top row
    assert run(L.LatentRotate, latent=x, rotation="none").samples.shape == x.samples.shape
    crop = run(L.LatentCrop, latent=x, width=64, height=72, x=40, y=8).samples
    assert torch.equal(crop, x.samples[:, :, 1:10, 5:13])
    # x / y stay 8 cells from the far edge: 160 // 8 = 20 > 24 - 8
    crop = run(L.LatentCrop, latent=x, width=64, height=64, x=160, y=400).samples
    assert torch.equal(crop, x.samples[:, :, 8:16, 16:24])


# -- sizes and budgets ------------------------------------------------------------------------
def test_estimates_follow_the_sizes():
    size = {"latent": Size(2, 64, 96)}
    est = L.LatentUpscale.estimate(None, dict(width=0, height=128, upscale_method="area", crop="disabled"), size)
    assert est.outputs["latent"] == Size(2, 128, 192)
    assert L.LatentUpscaleBy.estimate(None, dict(scale_by=1.5, upscale_method="area"), size).outputs["latent"] == Size(2, 96, 144)
    assert L.LatentRotate.estimate(None, dict(rotation="270 degrees"), size).outputs["latent"] == Size(2, 96, 64)
    assert L.RepeatLatentBatch.estimate(None, dict(amount=4), size).outputs["latent"] == Size(8, 64, 96)
    assert L.LatentFromBatch.estimate(None, dict(batch_index=1, length=4), size).outputs["latent"] == Size(1, 64, 96)
    assert L.LatentCrop.estimate(None, dict(width=64, height=64, x=0, y=0), size).outputs["latent"] == Size(2, 64, 64)


def test_an_8x_latent_upscale_of_1024_is_refused_by_a_4_megapixel_budget(models, tmp_path):
    engine = budget_engine(models, tmp_path, memory_gb=64.0)
    flow = txt2img(size=1024, steps=1)
    flow.add("up", "LatentUpscaleBy", latent=link("sampler", "latent"), scale_by=8.0)
    flow.nodes["decode"]["inputs"]["latent"] = link("up", "latent")
    problems = engine.validate(saved(flow))
    assert [str(p) for p in problems][0] == (
        "node 'up' input 'scale_by': an upscaled latent of 8192x8192 needs 67,108,864 pixels, above this server's "
        "limit of 4,194,304 pixels (--max-pixels)")
    assert ("decode", "latent") in [(p.node, p.input) for p in problems]  # the decode learns the size too
    flow.nodes["up"]["inputs"]["scale_by"] = 2.0
    assert engine.validate(saved(flow)) == []
    with pytest.raises(WorkflowInvalid):
        flow.nodes["up"]["inputs"]["scale_by"] = 8.0
        engine.run(saved(flow))


def test_hires_fix_upscales_the_latent_and_samples_it_again(engine):
    flow = txt2img(prompt="a red circle", size=64, seed=5, steps=2, guidance=1.0)
    flow.add("up", "LatentUpscaleBy", latent=link("sampler", "latent"), upscale_method="bilinear", scale_by=1.5)
    flow.add("second", "LCMSampler", model=link("ckpt", "model"), positive=link("pos", "conditioning"),
             latent=link("up", "latent"), seed=5, steps=2, denoise=0.5)
    flow.nodes["decode"]["inputs"]["latent"] = link("second", "latent")
    first = value_of(engine, flow, "sampler", "latent").samples
    upscaled = value_of(engine, flow, "up", "latent").samples
    assert torch.equal(upscaled, F.interpolate(first, size=(12, 12), mode="bilinear"))
    image = value_of(engine, flow, "decode", "image")
    assert image.shape == (1, 96, 96, 3)
    second = value_of(engine, flow, "second", "latent").samples
    assert not torch.allclose(second, upscaled)  # the second pass changed it
