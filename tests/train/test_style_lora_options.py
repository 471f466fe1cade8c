"""The style LoRA's options for keeping the prompt's colour (#21): ``--targets no-text`` leaves
the layers that read the text alone, ``--fill-weight`` weighs the loss on the latent cells
of the shape's fill; both survive a resume, and misuse is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lcmgraph_nodes.diffusion.train import dataset
from lcmgraph_nodes.diffusion.train import lora as L
from safetensors.torch import load_file

SHAPES = Path(__file__).resolve().parents[2] / "nodes" / "diffusion" / "builtin" / "tiny-shapes"


def test_the_fill_mask_covers_the_pixels_drawn_in_the_fill_colour():
    for index in range(12):
        scene = dataset.sample_scene(0, index)
        image = dataset.render(scene, 128, style="outline").astype(int)
        # The fill's own colour, read from the render (not from the mask's drawing code).
        drawn = (np.abs(image - np.array(dataset.COLOURS[scene.colour])).sum(-1) < 12).mean()
        mask = dataset.fill_mask(scene, 128)
        assert mask.min() >= 0 and mask.max() == 1.0
        assert abs(mask.mean() - drawn) < 0.01, (scene, mask.mean(), drawn)
        # At the latent side (128 / 8) it keeps the same area, spread over fewer cells.
        assert abs(dataset.fill_mask(scene, 16).mean() - mask.mean()) < 0.01


def test_fill_weights_put_the_weight_on_the_fill_and_one_elsewhere():
    scenes = [dataset.sample_scene(0, i) for i in range(4)]
    w = L.fill_weights(scenes, 16, 4.0)
    assert w.shape == (4, 1, 16, 16)
    mask = torch.from_numpy(np.stack([dataset.fill_mask(s, 16) for s in scenes])).unsqueeze(1)
    assert torch.equal(w[mask == 0], torch.ones(int((mask == 0).sum())))
    assert torch.equal(w[mask == 1], torch.full((int((mask == 1).sum()),), 4.0))
    centre = scenes[0]
    row, col = int(centre.cy * 16), int(centre.cx * 16)
    assert w[0, 0, row, col] == 4.0  # the shape's centre cell is inside the fill


def test_no_text_targets_skip_only_the_cross_attention_key_and_value():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(SHAPES / "unet"))
    every, no_text = L.adapted_layers(unet, "all"), L.adapted_layers(unet, "no-text")
    dropped = sorted(set(every) - set(no_text))
    assert dropped and all(n.endswith(("attn2.to_k", "attn2.to_v")) for n in dropped)
    assert any(n.endswith("attn2.to_q") for n in no_text) and any(n.endswith("attn1.to_k") for n in no_text)
    with pytest.raises(ValueError, match="unknown LoRA targets 'text'; one of all, no-text"):
        L.adapted_layers(unet, "text")


@pytest.fixture(scope="module")
def style_run(tmp_path_factory):
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("style")
    tc = L.LoraTrain(kind="style", style="outline", steps=3, batch=4, pool=8, rank=2, warmup=1, log_every=1,
                     resolution=64, fill_weight=4.0, targets="no-text", oversample="background=black:3",
                     scales="0.6:1.0")
    pipe, step = L.train_lora(run, SHAPES, tc, device="cpu", quiet=True)
    return run, pipe, step


def test_a_no_text_fill_weighted_style_lora_trains_and_saves_without_the_text_layers(style_run, tmp_path):
    run, pipe, step = style_run
    assert step == 3
    keys = load_file(str(L.save_lora(pipe, tmp_path / "style.safetensors")))
    assert keys and not any("attn2.to_k" in k or "attn2.to_v" in k for k in keys)
    assert any("attn2.to_q" in k for k in keys) and any("attn1.to_v" in k for k in keys)


def test_a_resumed_run_keeps_its_fill_weight_and_targets(style_run):
    run, _, _ = style_run
    # Resumed with the defaults: the run folder's own settings win, as for every other setting.
    _, step = L.train_lora(run, SHAPES, L.LoraTrain(kind="style", steps=4), device="cpu", quiet=True)
    saved = torch.load(run / "lora.pt", weights_only=False)["train"]
    assert step == 4 and saved["fill_weight"] == 4.0 and saved["targets"] == "no-text"
    assert saved["oversample"] == "background=black:3" and saved["scales"] == "0.6:1.0"


def test_fill_weight_needs_data_that_knows_where_the_fill_is(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (64, 64), "red").save(data / "a.png")
    tc = L.LoraTrain(kind="style", steps=1, batch=1, rank=2, data=str(data), resolution=64, fill_weight=3.0)
    with pytest.raises(ValueError, match="fill_weight needs the shapes data .* has no scenes"):
        L.train_lora(tmp_path / "run", SHAPES, tc, device="cpu", quiet=True)
    assert not (tmp_path / "run" / "lora-latents.pt").exists()  # refused before encoding the folder
    tc = L.LoraTrain(kind="style", steps=1, batch=1, rank=2, data=str(data), resolution=64, oversample="size=small:2")
    with pytest.raises(ValueError, match="oversample needs the shapes data .* has none"):
        L.train_lora(tmp_path / "run2", SHAPES, tc, device="cpu", quiet=True)


def test_a_bad_oversample_spec_is_refused_before_any_work(tmp_path):
    tc = L.LoraTrain(kind="style", steps=1, batch=1, rank=2, resolution=64, oversample="background=black")
    with pytest.raises(ValueError, match="write it as ATTRIBUTE=VALUE:K"):
        L.train_lora(tmp_path / "run", SHAPES, tc, device="cpu", quiet=True)
    assert not (tmp_path / "run" / "lora-latents.pt").exists()


def test_oversampling_draws_the_named_items_that_many_times_as_often():
    scenes = [dataset.sample_scene(0, i) for i in range(2048)]
    black = torch.tensor([s.background == "black" for s in scenes])
    w = L.oversample_weights(scenes, "background=black:3")
    assert torch.equal(w[black], torch.full((int(black.sum()),), 3.0, dtype=torch.float64))
    assert torch.equal(w[~black], torch.ones(int((~black).sum()), dtype=torch.float64))
    # Rules multiply where they meet: a small black-background item is drawn 6x as often.
    both = L.oversample_weights(scenes, "background=black:3, size=small:2")
    small_black = [i for i, s in enumerate(scenes) if s.background == "black" and s.size == "small"]
    assert both[small_black[0]] == 6.0
    # The draw follows the weights: black backgrounds are about 1/10 of the pool, 3x as
    # likely they are about a quarter of the draws (binomial sd over 16,000 draws: 0.0035).
    gen = torch.Generator().manual_seed(0)
    drawn = torch.cat([L.draw_items(len(scenes), 16, gen, w) for _ in range(1000)])
    expected = float(w[black].sum() / w.sum())
    assert abs(float(black[drawn].float().mean()) - expected) < 0.015, expected
    # A spec without a rule is no spec: the uniform draw, not a multinomial over equal weights.
    assert L.oversample_weights(scenes, " , ") is None and L.oversample_weights(scenes, "") is None
    # Without a spec the draw is the uniform one every earlier run used (same seed, same items).
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(L.draw_items(2048, 16, a), torch.randint(0, 2048, (16,), generator=b))


@pytest.mark.parametrize("spec, message", [
    ("bg=black:3", "oversample 'bg=black:3': unknown attribute 'bg'; one of shape, colour, background, position, size"),
    ("colour=black:3", "oversample 'colour=black:3': colour has no value 'black'; one of red, orange, yellow, green, "
                       "cyan, blue, purple, pink"),
    ("background=black", "oversample 'background=black': write it as ATTRIBUTE=VALUE:K, e.g. background=black:3"),
    ("background=black:0", "oversample 'background=black:0': the factor after ':' must be a number > 0"),
    ("background=black:x", "oversample 'background=black:x': the factor after ':' must be a number > 0"),
    ("background=black:inf", "oversample 'background=black:inf': the factor after ':' must be a number > 0"),
])
def test_a_bad_oversample_spec_names_the_rule_and_what_is_wrong(spec, message):
    scenes = [dataset.sample_scene(0, i) for i in range(4)]
    with pytest.raises(ValueError) as e:
        L.oversample_weights(scenes, spec)
    assert str(e.value) == message


def test_a_run_saved_before_runs_recorded_their_noise_keeps_its_offset_noise(style_run, tmp_path):
    import shutil

    run, _, _ = style_run
    old = tmp_path / "old"
    shutil.copytree(run, old)
    state = torch.load(old / "lora.pt", weights_only=False)
    assert state["train"]["pyramid_noise"] == 0.8  # a new run records the base's pyramid noise
    del state["train"]["pyramid_noise"]  # as a run from before sitting 7 saved it
    state["train"]["offset_noise"] = 0.3
    torch.save(state, old / "lora.pt")
    _, step = L.train_lora(old, SHAPES, L.LoraTrain(kind="style", steps=state["step"] + 1), device="cpu", quiet=True)
    saved = torch.load(old / "lora.pt", weights_only=False)["train"]
    assert step == state["step"] + 1
    assert saved["pyramid_noise"] == 0.0 and saved["offset_noise"] == 0.3  # not the base's 0.8 pyramid


def test_a_resumed_run_keeps_training_at_random_weights(style_run, monkeypatch):
    run, _, _ = style_run
    set_to = []
    real = L.set_adapter_scale
    monkeypatch.setattr(L, "set_adapter_scale", lambda unet, scale: set_to.append(scale) or real(unet, scale))
    step = torch.load(run / "lora.pt", weights_only=False)["step"]
    # Resumed without --scales: the run folder's 0.6:1.0 still holds for the new steps.
    L.train_lora(run, SHAPES, L.LoraTrain(kind="style", steps=step + 2), device="cpu", quiet=True)
    drawn = set_to[0::2]
    assert len(drawn) == 2 and all(0.6 <= s <= 1.0 and s != 1.0 for s in drawn), set_to
    assert set_to[1::2] == [1.0, 1.0]


def test_a_run_at_random_weights_leaves_its_layers_at_weight_one(style_run):
    from peft.tuners.lora import LoraLayer

    _, pipe, _ = style_run
    scalings = [v for m in pipe.unet.modules() if isinstance(m, LoraLayer) for v in m.scaling.values()]
    assert scalings and all(v == 1.0 for v in scalings)  # evaluated and saved as a user loads it


def test_the_adapter_scale_is_the_weight_a_user_would_give_the_lora():
    from diffusers import UNet2DConditionModel
    from peft.tuners.lora import LoraLayer

    unet = UNet2DConditionModel.from_pretrained(str(SHAPES / "unet"))
    L.add_adapter(unet, 2, 0, "no-text")
    layer = next(m for n, m in unet.named_modules() if isinstance(m, LoraLayer) and n.endswith("attn1.to_q"))
    for p in layer.lora_B.values():
        torch.nn.init.normal_(p.weight)  # peft starts B at zero: no delta to scale
    x = torch.randn(2, 5, layer.in_features)
    with torch.no_grad():
        base = layer.base_layer(x)
        L.set_adapter_scale(unet, 1.0)
        full = layer(x) - base
        L.set_adapter_scale(unet, 0.6)
        part = layer(x) - base
    assert full.abs().max() > 0.1
    torch.testing.assert_close(part, 0.6 * full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", ["0.6", "1:0.5", "a:b", "0:1", "0.5:inf"])
def test_a_bad_scales_spec_is_refused_with_the_form_it_wants(spec, tmp_path):
    with pytest.raises(ValueError) as e:
        L.train_lora(tmp_path / "run", SHAPES, L.LoraTrain(kind="style", steps=1, scales=spec), device="cpu", quiet=True)
    assert str(e.value) == f"scales {spec!r}: write it as LO:HI with 0 < LO <= HI, e.g. 0.6:1.0"


def test_scales_are_for_style_loras():
    with pytest.raises(ValueError, match="scales is for style LoRAs; an LCM-LoRA is used at 1.0"):
        L.train_lora(Path("unused"), SHAPES, L.LoraTrain(kind="lcm", steps=1, scales="0.6:1.0"), device="cpu", quiet=True)
