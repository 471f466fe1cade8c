"""The Img2Img node equals VAEEncode -> LCMSampler(denoise=strength) and diffusers' LCM img2img."""

from __future__ import annotations

from .diffusion_helpers import gen, image_of, link, max_diff, reference, txt2img
from .test_diffusion_parity import TOL, _encoded, _img2img_flow, _lcm


def _node_flow(ckpt, **inputs):
    f = txt2img(ckpt=ckpt, prompt="a photo of a tree")
    f.add("load", "LoadImage", image="hint.png")
    del f.nodes["sampler"], f.nodes["empty"]
    f.add("sampler", "Img2Img", model=link("ckpt", "model"), vae=link("ckpt", "vae"),
          positive=link("pos", "conditioning"), image=link("load", "image"), **inputs)
    return f


def test_img2img_node_equals_encode_then_lcm_sampler(engine):
    one_node = image_of(engine, _node_flow("tiny", seed=4, steps=4, strength=0.5, guidance=1.0))
    two_nodes = image_of(engine, _img2img_flow("tiny", "LCMSampler", seed=4, steps=4, denoise=0.5, guidance=1.0))
    assert max_diff(one_node, two_nodes) == 0.0


def test_img2img_node_matches_diffusers_lcm_img2img(engine, models):
    from diffusers import LatentConsistencyModelImg2ImgPipeline

    pipe = _lcm(reference(models, "tiny-lcm", LatentConsistencyModelImg2ImgPipeline))
    ours = image_of(engine, _node_flow("tiny-lcm", seed=9, steps=4, strength=0.6, guidance=1.5))
    ref = pipe("a photo of a tree", image=_encoded(pipe, models), strength=0.6, num_inference_steps=4,
               guidance_scale=1.5, generator=gen(9), output_type="np").images
    assert max_diff(ours, ref) <= TOL


def test_img2img_strength_too_small_for_the_steps_is_a_validation_error(engine):
    f = _node_flow("tiny", steps=8, strength=0.1)
    f.add("save", "SaveImage", image=link("decode", "image"))
    assert [str(p) for p in engine.validate(f.doc("save"))] == [
        "node 'sampler' input 'steps': 8 steps do not fit in original_inference_steps x strength = 5"
    ]
