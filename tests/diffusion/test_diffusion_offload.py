"""Model-level CPU offload: same pixels, and only the running stage is placed on the device.

On this CPU-only machine the device *is* the CPU, so the moves are no-ops: these
tests pin the call paths (every node activates its stage) and the bookkeeping;
the memory effect is measured by the GPU benchmark.
"""

from __future__ import annotations

from lcmgraph_nodes.diffusion.models.manager import SERVICE

from .diffusion_helpers import image_of, link, max_diff, txt2img


def test_offload_gives_the_same_image_and_tracks_stages(make_engine):
    plain = image_of(make_engine(), txt2img(seed=5, steps=4))
    engine = make_engine(offload=True)
    flow = txt2img(seed=5, steps=4)
    offloaded = image_of(engine, flow)
    assert max_diff(plain, offloaded) == 0.0
    manager = engine.service(SERVICE)
    assert manager.offload is True
    (key,) = manager.loaded_keys()
    assert manager.stages == {key: "vae"}  # the last thing that ran was the decode


def test_offload_moves_other_checkpoints_off_the_device(make_engine):
    engine = make_engine(offload=True)
    image_of(engine, txt2img(ckpt="tiny", seed=1))
    flow = txt2img(ckpt="tiny-lcm", seed=1)
    flow.nodes["decode"]["inputs"]["latent"] = link("sampler", "latent")
    value = image_of(engine, flow)
    assert value.shape == (1, 64, 64, 3)
    manager = engine.service(SERVICE)
    assert len(manager.loaded_keys()) == 2
    assert sorted(manager.stages.values()) == ["cpu", "vae"]  # the first checkpoint went back to the CPU
