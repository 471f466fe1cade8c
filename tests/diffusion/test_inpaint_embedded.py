"""LCM inpainting on the embedded model (issue #16): a 4-channel checkpoint, a
noise mask over the shape, the LCM-LoRA at 4 steps, and the prompt "a large
blue star": the region follows the new prompt (read by the evaluator), and
away from the mask the image keeps the source's pixels to a few levels of 255
(not quite the VAE's own round trip: see the second test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lcmgraph import Engine, EngineConfig

#: (shape, colour, background) of the source scenes; the shape sits in the centre.
SOURCES = [("circle", "red", "white"), ("square", "green", "yellow"), ("triangle", "orange", "gray"),
           ("cross", "purple", "white"), ("circle", "yellow", "black"), ("square", "red", "white"),
           ("triangle", "pink", "white"), ("cross", "green", "gray")]
MARGIN = 24  # mask: the centre square [MARGIN, 128 - MARGIN) of the 128x128 image


def workflow(source: str, background: str, seed: int) -> dict:
    link = lambda node, out: {"link": [node, out]}  # noqa: E731
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-shapes"}},
        "lora": {"type": "ApplyLoRA", "inputs": {"model": link("ckpt", "model"),
                                                 "lora": "builtin:tiny-shapes-lcm-lora", "weight": 1.0}},
        "text": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"),
                                                  "text": f"a large blue star on a {background} background, center"}},
        "image": {"type": "LoadImage", "inputs": {"image": source}},
        "mask": {"type": "LoadImageMask", "inputs": {"image": "mask.png", "channel": "red"}},
        "encode": {"type": "VAEEncode", "inputs": {"vae": link("ckpt", "vae"), "image": link("image", "image")}},
        "masked": {"type": "SetLatentNoiseMask", "inputs": {"latent": link("encode", "latent"),
                                                            "mask": link("mask", "mask")}},
        "sampler": {"type": "LCMSampler", "inputs": {"model": link("lora", "model"), "positive": link("text", "conditioning"),
                                                     "latent": link("masked", "latent"), "seed": seed, "steps": 4,
                                                     "guidance": 1.0}},
        "decode": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}},
        "round_trip": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("encode", "latent")}},
        "show": {"type": "PreviewImage", "inputs": {"image": link("decode", "image")}},
        "show_round_trip": {"type": "PreviewImage", "inputs": {"image": link("round_trip", "image")}},
    }}


@pytest.fixture(scope="module")
def inpainted(tmp_path_factory):
    from lcmgraph_nodes.diffusion.train import dataset

    home = tmp_path_factory.mktemp("inpaint-embedded")
    inputs = home / "models" / "input"
    inputs.mkdir(parents=True)
    mask = np.zeros((128, 128, 3), np.uint8)
    mask[MARGIN:-MARGIN, MARGIN:-MARGIN] = 255
    Image.fromarray(mask).save(inputs / "mask.png")
    engine = Engine(EngineConfig(device="cpu", home=home, models_dir=home / "models", output_dir=home / "out",
                                 plugins_from_env=False))
    out = []
    for seed, (shape, colour, background) in enumerate(SOURCES):
        name = f"{colour}-{shape}.png"
        Image.fromarray(dataset.render(dataset.make_scene(shape, colour, background, "center", "large"), 128)).save(
            inputs / name)
        values = engine.run(workflow(name, background, seed)).values
        source = torch.from_numpy(np.asarray(Image.open(inputs / name), dtype=np.float32) / 255)
        out.append((values["decode"]["image"][0], values["round_trip"]["image"][0], source))
    return out


def test_the_masked_shape_becomes_a_blue_star(inpainted):
    from lcmgraph_nodes.diffusion.builtin import _SHIPPED
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.evaluator import load_evaluator, predict

    images = torch.stack([image for image, _, _ in inpainted]).permute(0, 3, 1, 2) * 2 - 1
    pred = predict(load_evaluator(_SHIPPED / "tiny-shapes-evaluator.safetensors"), images)
    read = [(dataset.SHAPES[int(s)], dataset.FG_NAMES[int(c)]) for s, c in zip(pred["shape"], pred["colour"],
                                                                                  strict=True)]
    print(f"\nread after inpainting: {read}")
    # Measured 2026-11-30: star in 4 of 8, blue in 3 and cyan (blue's neighbour in the palette) in 4,
    # a blue star in 1; the source's own shape and colour never survive. The embedded model is weak
    # here (README "Masks and regions"); these floors say the region follows the new prompt.
    assert sum(colour in ("blue", "cyan") for _, colour in read) >= 6
    assert sum(shape == "star" for shape, _ in read) >= 3
    assert not any((shape, colour) == (s, c) for (shape, colour), (s, c, _) in zip(read, SOURCES, strict=True))


def test_pixels_away_from_the_mask_keep_the_round_trip(inpainted):
    keep = torch.ones(128, 128, dtype=torch.bool)
    keep[MARGIN - 16:-(MARGIN - 16), MARGIN - 16:-(MARGIN - 16)] = False  # 16 px beyond the mask: the VAE's reach
    inside = torch.zeros(128, 128, dtype=torch.bool)
    inside[MARGIN:-MARGIN, MARGIN:-MARGIN] = True
    for image, round_trip, source in inpainted:
        vae_error = float((round_trip - source).abs()[keep].mean())  # the VAE's own round trip
        away = float((image - source).abs()[keep].mean())
        changed = float((image - round_trip).abs()[inside].mean())
        print(f"away from the mask: |inpainted - source| {away:.4f}, VAE round trip {vae_error:.4f}; "
              f"inside the mask: |inpainted - round trip| {changed:.3f}")
        # Measured 2026-11-30: away 0.011-0.040 of 1 against the VAE's own 0.005-0.014, inside
        # 0.10-0.28. Not within the round trip: the latent outside the mask is the source's
        # exactly, but the decoder's GroupNorm layers normalise over the whole image, so the
        # new shape shifts every pixel a little (the tiny VAE has no attention).
        assert away <= 0.05 and changed > 2.5 * away
