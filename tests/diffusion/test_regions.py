"""Regional conditioning's blend against ComfyUI's formula (comfy/samplers.py:
get_area_and_mult and calc_cond_batch, restated here loop by loop) on a toy
"UNet" over small tensors, and the preparation ComfyUI does before sampling
(fractional areas, mask bounds, areas paired across the CFG halves, hints)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lcmgraph_nodes.diffusion.models import regions
from lcmgraph_nodes.diffusion.models.regional_step import RegionalStep
from lcmgraph_nodes.diffusion.models.values import Conditioning

H, W, B, C = 16, 24, 2, 4


def prompt(value: float, **region) -> Conditioning:
    return Conditioning("sd15", torch.full((1, 3, 8), value), **region)


def toy_unet(x, t, encoder_hidden_states, **_):
    """Depends on the prompt, the cell's own value and (through a cumulative sum)
    on where the cell sits in its window, so a cropped call differs from a crop."""
    scale = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    return (x * scale + 0.01 * x.cumsum(dim=3) + 0.001 * float(t),)


def comfy_denoised(entries, x, t, model):
    """ComfyUI's blend of one half: sum(pred * mult) / (sum(mult) + 1e-37) per cell,
    written from its description (areas in cells, 8-cell fades at inner edges,
    masks times mask_strength, strength, windows cut to the latent)."""
    out, count = torch.zeros_like(x), torch.full_like(x, 1e-37)
    for e in entries:
        h, w, y, x0 = (H, W, 0, 0) if e.area is None else e.area[1:]
        h, w = min(H - y, h), min(W - x0, w)
        mult = torch.ones((B, C, h, w))
        if e.mask is not None:
            m = torch.nn.functional.interpolate(e.mask.unsqueeze(1), size=(H, W), mode="bilinear").squeeze(1)
            mult = (m[:B, y:y + h, x0:x0 + w] * e.mask_strength).unsqueeze(1).repeat(B // m.shape[0], C, 1, 1)
        elif e.area is not None:
            for axis, (extent, offset, full) in ((2, (h, y, H)), (3, (w, x0, W))):
                fade = min(8, extent // 4)
                for i in range(extent):
                    factor = 1.0
                    if offset != 0 and i < fade:
                        factor *= (i + 1) / fade
                    if offset + extent < full and i >= extent - fade:
                        factor *= (extent - i) / fade
                    mult.narrow(axis, i, 1).mul_(factor)
        mult = mult * e.strength
        crop = x[:, :, y:y + h, x0:x0 + w]
        pred = model(crop, t, encoder_hidden_states=e.embeds.repeat(B, 1, 1))[0]
        out[:, :, y:y + h, x0:x0 + w] += pred * mult
        count[:, :, y:y + h, x0:x0 + w] += mult
    return out / count


def step(positive, negative=None, cfg=False, prediction="sample"):
    scheduler = SimpleNamespace(config={"prediction_type": prediction}, alphas_cumprod=torch.linspace(0.99, 0.01, 1000))
    req = SimpleNamespace(positive=positive, negative=negative, guidance=2.0)
    run = SimpleNamespace(req=req, latents=torch.zeros(B, C, H, W), scheduler=scheduler, concat=None,
                          timestep_cond=None)
    loaded = SimpleNamespace(arch="sd15")
    return RegionalStep(None, None, loaded, [run], cfg, 4, "cpu", torch.float32)


def x_in():
    return torch.randn((B, C, H, W), generator=torch.Generator().manual_seed(1))


def test_two_areas_and_a_weak_base_blend_as_comfyui():
    left = prompt(1.0, area=("latent", 16, 14, 0, 0))
    right = prompt(3.0, area=("latent", 12, 14, 4, 10), strength=1.5)
    base = prompt(2.0, strength=0.25)
    x, t = x_in(), torch.tensor(500)
    positive = Conditioning.combine([base, left, right])
    (_, got), = step(positive).predict(toy_unet, [x], t, 0)
    expected = comfy_denoised([base, left, right], x, t, toy_unet)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    # the regions really differ: the left columns follow "left", the right ones "right"
    assert not torch.allclose(got[..., :4], got[..., -4:])


def test_masks_with_strength_and_a_window_cut_to_the_latent():
    mask = torch.zeros(1, 32, 48)
    mask[:, :, :20] = 1.0
    mask[:, 8:24, 30:] = 0.5
    masked = prompt(1.0, mask=mask, mask_strength=0.7)
    outside = prompt(4.0, area=("latent", 40, 40, 8, 16))  # sticks out: cut to 8 x 8 cells
    x, t = x_in(), torch.tensor(700)
    (_, got), = step(Conditioning.combine([masked, outside])).predict(toy_unet, [x], t, 0)
    torch.testing.assert_close(got, comfy_denoised([masked, outside], x, t, toy_unet), rtol=1e-6, atol=1e-6)


def test_cells_no_entry_covers_get_a_zero_clean_latent():
    only_left = prompt(1.0, area=("latent", H, 8, 0, 0))
    x, t = x_in(), torch.tensor(300)
    (_, got), = step(only_left).predict(toy_unet, [x], t, 0)
    assert torch.equal(got[..., 8:], torch.zeros_like(got[..., 8:]))  # ComfyUI: the denoised sum is 0 there
    # epsilon prediction: the blended prediction is the one of a zero clean latent there
    (_, eps), = step(only_left, prediction="epsilon").predict(toy_unet, [x], t, 0)
    alpha_bar = float(torch.linspace(0.99, 0.01, 1000)[300])
    x0 = (x - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar ** 0.5
    assert x0[..., 8:].abs().max() < 1e-5
    torch.testing.assert_close(eps[..., :4], toy_unet(x[..., :8], t, only_left.embeds.repeat(B, 1, 1))[0][..., :4])


def test_a_single_full_image_area_is_the_plain_prediction_bitwise():
    x, t = x_in(), torch.tensor(999)
    plain = prompt(2.0)
    (_, got), = step(prompt(2.0, area=("latent", H, W, 0, 0))).predict(toy_unet, [x], t, 0)
    assert torch.equal(got, toy_unet(x, t, plain.embeds.repeat(B, 1, 1))[0])


@pytest.mark.parametrize(("span", "active"), [
    ((0.0, 1.0), [999, 759, 499, 259]), ((0.0, 0.5), [999, 759]), ((0.5, 1.0), [499, 259]),
    ((0.25, 0.75), [499, 259]), ((0.3, 0.7), [499]), ((1.0, 1.0), []), ((0.0, 0.0), []),
])
def test_timestep_ranges_pick_steps_as_comfyui_sigmas_do(span, active):
    part = regions.resolve(prompt(1.0, timestep_range=span), regions.POSITIVE, (H, W))
    assert [t for t in (999, 759, 499, 259) if part.active(t)] == active


def test_an_entry_out_of_its_range_does_not_run():
    x, t = x_in(), torch.tensor(999)
    late = prompt(5.0, timestep_range=(0.5, 1.0))
    (_, got), = step(Conditioning.combine([prompt(2.0), late])).predict(toy_unet, [x], t, 0)
    assert torch.equal(got, toy_unet(x, t, prompt(2.0).embeds.repeat(B, 1, 1))[0])


def test_fractional_areas_and_mask_bounds_resolve_to_cells():
    part = regions.resolve(prompt(1.0, area=("fraction", 0.5, 0.25, 0.5, 0.6)), 0, (H, W))
    assert part.box == (8, 6, 8, 14)
    mask = torch.zeros(1, H, W)
    mask[0, 2:5, 3:15] = 1
    assert regions.resolve(prompt(1.0, mask=mask, mask_bounds=True), 0, (H, W)).box == (8, 12, 2, 3)
    assert regions.resolve(prompt(1.0, mask=torch.zeros(1, H, W), mask_bounds=True), 0, (H, W)).box == (8, 8, 0, 0)
    with pytest.raises(ValueError, match="outside"):
        regions.resolve(prompt(1.0, area=("latent", 8, 8, 0, W)), 0, (H, W))


def test_each_area_gets_a_negative_of_the_same_area():
    area = prompt(1.0, area=("latent", 8, 8, 0, 8), strength=2.0)
    negative = Conditioning.combine([prompt(-1.0), prompt(-2.0, area=("latent", 16, 16, 0, 0))])
    parts = regions.parts(Conditioning.combine([prompt(0.5), area]), negative, True, (H, W))
    neg = [p for p in parts if p.half == regions.NEGATIVE]
    assert len(neg) == 3
    copy = neg[-1]
    # the area, strength... of the positive's entry, the prompt of the smallest negative around it
    assert copy.box == (8, 8, 0, 8) and copy.entry.strength == 2.0
    assert torch.equal(copy.entry.embeds, negative.entries[1].embeds)
    # the negative's 16 x 16 area got a positive copy with the positive's prompt without an area
    pos = [p for p in parts if p.half == regions.POSITIVE]
    assert [p.box for p in pos] == [None, (8, 8, 0, 8), (16, 16, 0, 0)]
    assert torch.equal(pos[-1].entry.embeds, prompt(0.5).embeds)


def test_hints_stay_on_their_entries_and_reach_the_negative_as_comfyui():
    hint = SimpleNamespace(image=torch.zeros(1, 8, 8, 3))
    hinted = prompt(1.0).with_control(hint)
    parts = regions.parts(Conditioning.combine([hinted, prompt(2.0, area=("latent", 8, 8, 0, 0))]), prompt(-1.0),
                          True, (H, W))
    assert [len(p.entry.controls) for p in parts if p.half == regions.POSITIVE] == [1, 0]
    # the negative's entry without an area takes the positive's hints; the area's copy has none
    assert [(p.box, len(p.entry.controls)) for p in parts if p.half == regions.NEGATIVE] == [(None, 1),
                                                                                           ((8, 8, 0, 0), 0)]


def test_cfg_blends_each_half_by_itself():
    pos = Conditioning.combine([prompt(1.0, area=("latent", H, 12, 0, 0)), prompt(3.0, area=("latent", H, 12, 0, 12))])
    neg = prompt(-1.0)
    x, t = x_in(), torch.tensor(600)
    (uncond, cond), = step(pos, neg, cfg=True).predict(toy_unet, [x], t, 0)
    torch.testing.assert_close(cond, comfy_denoised(pos.entries, x, t, toy_unet), rtol=1e-6, atol=1e-6)
    negative_entries = [neg, *(regions.with_prompt_of(e, neg) for e in pos.entries)]
    torch.testing.assert_close(uncond, comfy_denoised(negative_entries, x, t, toy_unet), rtol=1e-6, atol=1e-6)
