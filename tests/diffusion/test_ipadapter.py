"""IP-Adapter (ComfyUI_IPAdapter_plus's nodes): parity with diffusers' own
IP-Adapter path on the tiny model, the semantics of weight types, step range,
several images and the negative rows, and the errors a user meets."""

from __future__ import annotations

import pytest
import torch

from .diffusion_helpers import gen, link, max_diff, reference, run_to, txt2img, value_of

# The two sides compute the same sums in another order (diffusers adds the image attention before
# to_out, the hook adds to_out's projection of it after): measured 2e-7 apart on 0..1 pixels.
TOL = 1e-5


def _ip(f, weight=1.0, weight_type="linear", adapter="builtin:tiny-ip-adapter", node="IPAdapterAdvanced",
        image="hint.png", **extra):
    f.add("img", "LoadImage", image=image)
    f.add("ipl", "IPAdapterModelLoader", ipadapter_file=adapter)
    inputs = dict(model=link("ckpt", "model"), ipadapter=link("ipl", "ipadapter"), image=link("img", "image"),
                  weight=weight, weight_type=weight_type, **extra)
    if node == "IPAdapterAdvanced":
        f.add("cv", "CLIPVisionLoader", clip_name="builtin:tiny-clip-vision")
        inputs["clip_vision"] = link("cv", "clip_vision")
    f.add("ipa", node, **inputs)
    f.nodes["sampler"]["inputs"]["model"] = link("ipa", "model")
    return f


def _image(engine, f):
    return value_of(engine, f, "decode", "image").numpy()


def _files(engine):
    files = engine.runtime.files
    return (files.resolve("ipadapter", "builtin:tiny-ip-adapter"), files.resolve("clip_vision", "builtin:tiny-clip-vision"))


@pytest.fixture(scope="module")
def sd(models):
    return reference(models, "tiny")


def test_parity_with_diffusers_ip_adapter_under_cfg(engine, sd, models):
    """The same adapter file, image embeddings and seed through diffusers' IPAdapterAttnProcessor:
    the same image, with CFG (negative rows get the zero-embedding tokens)."""
    from diffusers import LCMScheduler
    from lcmgraph_nodes.diffusion.formats.clip_vision_files import load_clip_vision
    from lcmgraph_nodes.diffusion.formats.ipadapter_files import read_ipadapter
    from lcmgraph_nodes.diffusion.models.ipadapter_embeds import encode
    from PIL import Image

    ours = _image(engine, _ip(txt2img(prompt="a red circle", seed=5, steps=3, guidance=1.6), weight=0.7))
    adapter_path, vision_path = _files(engine)
    pixels = torch.from_numpy(__import__("numpy").asarray(Image.open(models / "input" / "hint.png").convert("RGB"),
                                                          dtype="float32") / 255.0)[None]
    positive = encode(load_clip_vision(vision_path), pixels, hidden_states=False)
    pipe = sd
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.unet._load_ip_adapter_weights([read_ipadapter(adapter_path)])
    try:
        pipe.set_ip_adapter_scale(0.7)
        embeds = torch.cat([torch.zeros_like(positive), positive])[:, None]  # [neg; pos], one image each
        ref = pipe("a red circle", height=64, width=64, num_inference_steps=3, guidance_scale=1.6,
                   ip_adapter_image_embeds=[embeds], generator=gen(5), output_type="np").images
    finally:
        pipe.unload_ip_adapter()
    assert max_diff(ours, ref) <= TOL
    plain = _image(engine, txt2img(prompt="a red circle", seed=5, steps=3, guidance=1.6))
    assert max_diff(ours, plain) > 1e-3  # the adapter changes the image


@pytest.mark.parametrize("ckpt,adapter,guidance", [("tiny", "builtin:tiny-ip-adapter-plus", 1.6),
                                                     ("tiny-xl", "builtin:tiny-ip-adapter-xl", 1.0)])
def test_parity_plus_and_sdxl(engine, models, ckpt, adapter, guidance):
    """The resampler (plus) adapter, negative rows from a black image as ComfyUI encodes them; and
    an SDXL adapter on the SDXL UNet (70 layers on a real one, 3 here) without CFG."""
    import numpy as np
    from diffusers import LCMScheduler
    from lcmgraph_nodes.diffusion.formats.clip_vision_files import load_clip_vision
    from lcmgraph_nodes.diffusion.formats.ipadapter_files import read_ipadapter
    from lcmgraph_nodes.diffusion.models.ipadapter_embeds import encode
    from PIL import Image

    f = _ip(txt2img(ckpt=ckpt, prompt="a blue square", seed=9, steps=2, guidance=guidance), adapter=adapter,
            weight=0.9)
    ours = _image(engine, f)
    files = engine.runtime.files
    tower = load_clip_vision(files.resolve("clip_vision", "builtin:tiny-clip-vision"))
    pixels = torch.from_numpy(np.asarray(Image.open(models / "input" / "hint.png").convert("RGB"),
                                         dtype=np.float32) / 255.0)[None]
    plus = "plus" in adapter
    positive = encode(tower, pixels, hidden_states=plus)
    negative = encode(tower, torch.zeros(1, 224, 224, 3), True) if plus else torch.zeros_like(positive)
    pipe = reference(models, ckpt)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.unet._load_ip_adapter_weights([read_ipadapter(files.resolve("ipadapter", adapter))])
    pipe.set_ip_adapter_scale(0.9)
    embeds = (torch.cat([negative, positive]) if guidance > 1 else positive)[:, None]
    ref = pipe("a blue square", height=64, width=64, num_inference_steps=2, guidance_scale=guidance,
               ip_adapter_image_embeds=[embeds], generator=gen(9), output_type="np").images
    assert max_diff(ours, ref) <= TOL
    assert max_diff(ours, _image(engine, txt2img(ckpt=ckpt, prompt="a blue square", seed=9, steps=2,
                                                 guidance=guidance))) > 1e-3


def test_weight_zero_and_a_range_that_never_starts_leave_the_model_as_it_was(engine):
    plain = _image(engine, txt2img(seed=2, steps=3))
    assert max_diff(_image(engine, _ip(txt2img(seed=2, steps=3), weight=0.0)), plain) == 0.0
    # start_at 0.9 .. end_at 1.0: active for t <= 99.9, and LCM's 3 steps run at t = 999, 679, 339.
    late = _ip(txt2img(seed=2, steps=3), start_at=0.9, end_at=1.0)
    assert max_diff(_image(engine, late), plain) == 0.0
    first_only = _ip(txt2img(seed=2, steps=3), start_at=0.0, end_at=0.1)  # t >= 899.1: the first step
    full = _image(engine, _ip(txt2img(seed=2, steps=3)))
    step_one = _image(engine, first_only)
    assert max_diff(step_one, plain) > 1e-3 and max_diff(step_one, full) > 1e-3


def test_step_range_matches_comfyui_sigma_comparison():
    """ComfyUI compares sigmas (percent_to_sigma on the discrete SD schedule); the hook compares
    timesteps. Same decision at every timestep for a grid of ranges."""
    from lcmgraph_nodes.diffusion.models.ipadapter import IPAdapterPatch, _active

    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas = torch.cumprod(1 - betas, 0)
    log_sigmas = (((1 - alphas) / alphas) ** 0.5).log()

    def sigma(t: float) -> float:  # ModelSamplingDiscrete.sigma: log-linear between integer steps
        low, high = int(t), min(int(t) + 1, 999)
        w = t - low
        return float(((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp())

    def percent_to_sigma(p: float) -> float:
        return 999999999.9 if p <= 0 else 0.0 if p >= 1 else sigma((1 - p) * 999)

    for start, end in [(0.0, 1.0), (0.0, 0.5), (0.25, 0.75), (0.5, 1.0), (0.1, 0.2), (0.333, 0.8)]:
        patch = IPAdapterPatch("x", (), 1.0, "linear", "V only", start, end, False)
        for t in range(0, 1000, 7):
            comfy = percent_to_sigma(end) <= sigma(t) <= percent_to_sigma(start)
            assert _active(patch, float(t)) == comfy, (start, end, t)


def test_concat_of_one_image_twice_equals_the_image_once(engine):
    """concat puts both images' tokens side by side: attention over duplicated tokens is the same
    attention; average of two equal images is the image too."""
    from lcmgraph_nodes.diffusion.models.ipadapter_embeds import combine

    single = _image(engine, _ip(txt2img(seed=3, steps=2)))
    f = _ip(txt2img(seed=3, steps=2))
    f.add("two", "ImageBatch", image1=link("img", "image"), image2=link("img", "image"))
    f.nodes["ipa"]["inputs"]["image"] = link("two", "image")
    assert max_diff(_image(engine, f), single) <= 1e-5
    f.nodes["ipa"]["inputs"]["combine_embeds"] = "average"
    assert max_diff(_image(engine, f), single) <= 1e-5
    # Two different images: concat, average and each image alone are four different results.
    f.add("other", "EmptyImage", width=64, height=64, color=0xCC3311)
    f.nodes["two"]["inputs"]["image2"] = link("other", "image")
    results = {}
    for how in ("concat", "average"):
        f.nodes["ipa"]["inputs"]["combine_embeds"] = how
        results[how] = _image(engine, f)
    alone = _ip(txt2img(seed=3, steps=2))
    alone.add("other", "EmptyImage", width=64, height=64, color=0xCC3311)
    alone.nodes["ipa"]["inputs"]["image"] = link("other", "image")
    results["second"] = _image(engine, alone)
    results["first"] = single
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert max_diff(results[a], results[b]) > 1e-4, (a, b)
    e = torch.tensor([[1.0, 2.0], [3.0, -2.0]])
    assert torch.equal(combine(e, "add"), torch.tensor([[4.0, 0.0]]))
    assert torch.equal(combine(e, "subtract"), torch.tensor([[-2.0, 4.0]]))
    norm = torch.tensor([10.0 ** 0.5, 8.0 ** 0.5])  # per feature, across the images (IPAdapter_plus's quirk)
    assert torch.allclose(combine(e, "norm average"), ((e / norm).mean(0, keepdim=True)))


def test_weight_types_follow_ipadapter_plus_tables():
    from lcmgraph_nodes.diffusion.models.ipadapter import layer_weight, swapped

    w = 0.8
    assert layer_weight("ease in", w, 0, "input", False) == pytest.approx(w)
    assert layer_weight("ease in", w, 8, "output", False) == pytest.approx(w * (0.05 + 0.95 * 0.5))
    assert layer_weight("ease out", w, 8, "output", False) == pytest.approx(w * (0.05 + 0.95 * 0.5))
    assert layer_weight("ease in-out", w, 8, "output", False) == pytest.approx(w)
    assert layer_weight("reverse in-out", w, 0, "input", True) == pytest.approx(w)
    assert layer_weight("weak input", w, 1, "input", False) == pytest.approx(0.2 * w)
    assert layer_weight("weak input", w, 6, "middle", False) == pytest.approx(w)
    assert layer_weight("strong middle", w, 6, "middle", False) == pytest.approx(w)
    assert layer_weight("strong middle", w, 9, "output", False) == pytest.approx(0.2 * w)
    # SDXL style transfer: only the first up block's second transformer (index 6).
    assert [layer_weight("style transfer", w, i, "", True) for i in range(11)] == [0.0] * 6 + [w] + [0.0] * 4
    assert layer_weight("composition", w, 4, "input", False) == pytest.approx(0.25 * w)
    assert swapped("style transfer precise", 3, True) and not swapped("style transfer precise", 6, True)
    assert swapped("composition precise", 6, True) and not swapped("composition precise", 3, True)


def test_weight_types_and_scaling_change_the_image_where_they_act(engine):
    # At weight 1 'K+V' is 'V only' (keys and values times 1): 0.8 tells them apart. (The tiny UNet
    # has 4 spatial transformers, so the SD1.5 tables' indices 0-3 are all it has.)
    base = _image(engine, _ip(txt2img(seed=4, steps=2, guidance=1.5), weight=0.8))
    for changes in ({"weight_type": "ease in"}, {"embeds_scaling": "K+V"}, {"embeds_scaling": "K+mean(V) w/ C penalty"},
                    {"weight_type": "composition precise"}):  # its swap: the image guides the negative rows
        f = _ip(txt2img(seed=4, steps=2, guidance=1.5), weight=0.8)
        f.nodes["ipa"]["inputs"].update(changes)
        assert max_diff(_image(engine, f), base) > 1e-4, changes


def test_plus_adapter_reads_hidden_states_and_a_negative_image(engine):
    basic = _image(engine, _ip(txt2img(seed=6, steps=2, guidance=1.5)))
    plus = _image(engine, _ip(txt2img(seed=6, steps=2, guidance=1.5), adapter="builtin:tiny-ip-adapter-plus"))
    assert max_diff(plus, basic) > 1e-3
    f = _ip(txt2img(seed=6, steps=2, guidance=1.5), adapter="builtin:tiny-ip-adapter-plus")
    f.add("black", "EmptyImage", width=64, height=64, color=0)
    f.nodes["ipa"]["inputs"]["image_negative"] = link("black", "image")
    # A black negative image is what the plus adapter uses without one (ComfyUI encodes a black 224x224 image).
    assert max_diff(_image(engine, f), plus) <= 1e-5
    f.nodes["black"]["inputs"]["color"] = 0x3366CC  # another negative image: another image
    assert max_diff(_image(engine, f), plus) > 1e-3


def test_attn_mask_zero_removes_the_adapter(engine):
    plain = _image(engine, txt2img(seed=8, steps=2))
    f = _ip(txt2img(seed=8, steps=2))
    f.add("mask", "SolidMask", value=0.0, width=64, height=64)
    f.nodes["ipa"]["inputs"]["attn_mask"] = link("mask", "mask")
    assert max_diff(_image(engine, f), plain) <= 1e-6
    f.nodes["mask"]["inputs"]["value"] = 1.0
    assert max_diff(_image(engine, f), _image(engine, _ip(txt2img(seed=8, steps=2)))) <= 1e-6


def test_an_sdxl_adapter_on_an_sd15_model_is_refused_by_name(engine):
    with pytest.raises(Exception) as err:
        run_to(engine, _ip(txt2img(seed=1, steps=1), adapter="builtin:tiny-ip-adapter-xl"), "decode", "image")
    assert "tiny-ip-adapter-xl" in str(err.value) and "cross-attention layers" in str(err.value)
    # The model is not left patched: nothing stays hooked, and a plain run (not from the cache) is the plain image.
    loaded = next(e for e in engine.service("diffusion.models")._entries.values() if hasattr(e, "patch_handles"))
    assert loaded.patch_handles == [] and loaded.patches == ()
    before = _image(engine, txt2img(seed=1, steps=1, prompt="a plain one"))
    engine.runtime.cache.memory.clear()
    assert max_diff(_image(engine, txt2img(seed=1, steps=1, prompt="a plain one")), before) == 0.0


def test_unified_loader_finds_preset_files_and_names_what_is_missing(models, tmp_path):
    from lcmgraph_nodes.diffusion.builtin import tiny_ipadapter

    from .diffusion_helpers import new_engine

    adapters, vision = tmp_path / "ipa", tmp_path / "cv"
    tiny_ipadapter.save_ip_adapter(adapters / "ip-adapter-plus_sd15.safetensors", kind="plus")
    tiny_ipadapter.save_clip_vision(vision / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors")
    engine = new_engine(models, tmp_path, folders={"ipadapter": [adapters], "clip_vision": [vision]})
    f = txt2img(seed=2, steps=2)
    f.add("unified", "IPAdapterUnifiedLoader", model=link("ckpt", "model"), preset="PLUS (high strength)")
    f.add("img", "LoadImage", image="hint.png")
    f.add("ipa", "IPAdapter", model=link("unified", "model"), ipadapter=link("unified", "ipadapter"),
          image=link("img", "image"), weight=1.0, weight_type="standard")
    f.nodes["sampler"]["inputs"]["model"] = link("ipa", "model")
    unified = _image(engine, f)
    explicit = _ip(txt2img(seed=2, steps=2), adapter="ip-adapter-plus_sd15.safetensors")
    explicit.nodes["cv"]["inputs"]["clip_name"] = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    assert max_diff(unified, _image(engine, explicit)) == 0.0
    f.nodes["unified"]["inputs"]["preset"] = "STANDARD (medium strength)"
    with pytest.raises(Exception) as err:
        run_to(engine, f, "decode", "image")
    assert "no IP-Adapter file in ipadapter/ matches" in str(err.value) and "ip-adapter_sd15" in str(err.value)


def test_faceid_and_foreign_files_are_refused_with_their_names(tmp_path):
    from lcmgraph_nodes.diffusion.formats.clip_vision_files import (
        ClipVisionFileError,
        load_clip_vision,
    )
    from lcmgraph_nodes.diffusion.formats.ipadapter_files import (
        IPAdapterFileError,
        adapter_kind,
        read_ipadapter,
    )
    from safetensors.torch import save_file

    face = tmp_path / "ip-adapter-faceid_sd15.safetensors"
    save_file({"image_proj.proj.0.weight": torch.zeros(2, 2), "image_proj.norm.weight": torch.zeros(2),
               "ip_adapter.1.to_k_ip.weight": torch.zeros(2, 2)}, str(face))
    with pytest.raises(IPAdapterFileError, match="ip-adapter-faceid_sd15.safetensors.*insightface"):
        adapter_kind(read_ipadapter(face), face.name)
    other = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(IPAdapterFileError, match="'lora.safetensors' is not an IP-Adapter file"):
        read_ipadapter(other)
    with pytest.raises(ClipVisionFileError, match="'lora.safetensors' is not a CLIP vision model"):
        load_clip_vision(other)
    openclip = tmp_path / "open_clip.safetensors"
    save_file({"visual.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3, 1)}, str(openclip))
    with pytest.raises(ClipVisionFileError, match="not a CLIP vision model .*nor open_clip's visual.conv1"):
        load_clip_vision(openclip)  # open_clip's layout loads (tests/diffusion/test_svd.py), a fragment does not


def test_clip_vision_file_round_trip_and_preprocess_against_transformers(tmp_path):
    """The tower read back from its file gives the same embeddings; ComfyUI's clip_preprocess
    (torch bicubic, antialiased) lands within 0.06 of transformers' CLIPImageProcessor (PIL
    bicubic) on a real-looking picture — different resamplers, same geometry and normalisation."""
    import numpy as np
    from lcmgraph_nodes.diffusion.builtin import tiny_addons, tiny_ipadapter
    from lcmgraph_nodes.diffusion.formats.clip_vision_files import (
        MEAN,
        STD,
        load_clip_vision,
        preprocess,
    )
    from transformers import CLIPImageProcessor

    model = tiny_ipadapter.make_clip_vision()
    path = tiny_ipadapter.save_clip_vision(tmp_path / "cv.safetensors")
    again = load_clip_vision(path)
    pixels = torch.rand(2, 3, 32, 32, generator=gen(0))
    with torch.no_grad():
        assert torch.equal(model(pixel_values=pixels).image_embeds, again(pixel_values=pixels).image_embeds)
    picture = tiny_addons.hint_image(96).resize((128, 96))
    ours = preprocess(torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)[None], 64)
    theirs = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, image_mean=MEAN,
                                image_std=STD)(images=picture, return_tensors="pt").pixel_values
    assert ours.shape == theirs.shape == (1, 3, 64, 64)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    assert float(((ours - theirs) * std).abs().mean()) <= 0.06


def test_k_mean_v_scales_each_images_mean_and_k_v_sharpens_the_softmax():
    """IPAdapter_plus's embeds_scaling formulas on small tensors (two images of three tokens)."""
    import torch.nn.functional as F
    from lcmgraph_nodes.diffusion.models.ipadapter import _scaled_attention

    class Layer:
        heads = 1

    g = gen(0)
    q, k, v = torch.randn(1, 5, 8, generator=g), torch.randn(1, 6, 8, generator=g), torch.randn(1, 6, 8, generator=g)
    v[:, 3:] += 5  # the second image's values have another mean
    w = 0.7 * 8 / 1280
    per_image = v.view(2, 3, 8)
    mean = per_image.mean(1, keepdim=True)
    expected = F.scaled_dot_product_attention(q, k * w, (per_image - mean + mean * w).reshape(1, 6, 8))
    ours = _scaled_attention(Layer, q, k, v, 0.7, "K+mean(V) w/ C penalty", images=2)
    assert torch.allclose(ours, expected, atol=1e-6)
    assert torch.allclose(_scaled_attention(Layer, q, k, v, 0.7, "K+V"),
                          F.scaled_dot_product_attention(q, k * 0.7, v * 0.7), atol=1e-6)
    assert torch.allclose(_scaled_attention(Layer, q, k, v, 0.7, "V only"),
                          F.scaled_dot_product_attention(q, k, v) * 0.7, atol=1e-6)


def test_attn_mask_at_a_layer_follows_comfyuis_resize_pad_and_rows():
    """ComfyUI_IPAdapter_plus's mask steps (bilinear to the layer's grid by the latent's aspect, pad or
    cut to the token count, one frame per prompt row, both CFG halves alike), written out here."""
    import torch.nn.functional as F
    from lcmgraph_nodes.diffusion.models.ipadapter import _mask_weights

    frames = torch.rand(2, 48, 72, generator=gen(1))
    oh, ow, seq = 8, 12, 96  # a 64x96-pixel latent at one layer
    mask_h = oh / (oh * ow / seq) ** 0.5
    mask_h = int(mask_h) + int(seq % int(mask_h) != 0)
    mask_w = seq // mask_h
    m = F.interpolate(frames[:, None], size=(mask_h, mask_w), mode="bilinear")[:, 0].reshape(2, -1)
    # rows: [negative, negative, positive, positive] (CFG, two images): frames 0, 1 in each half
    ours = _mask_weights(frames, (oh, ow), seq, [True, True, False, False])
    assert ours.shape == (4, seq, 1)
    for row, frame in enumerate((0, 1, 0, 1)):
        assert torch.allclose(ours[row, :, 0], m[frame])
    # three rows per half and two frames: the last frame repeats (tensor_to_size)
    three = _mask_weights(frames, (oh, ow), seq, [False, False, False])
    assert torch.equal(three[2], three[1]) and not torch.equal(three[0], three[1])
    # a token count the grid does not fill: zeros padded around the middle
    odd = _mask_weights(torch.ones(1, 8, 8), (5, 5), 26, [False])[0, :, 0]  # a 6x4 grid: 24 cells
    assert float(odd.sum()) == 24.0 and float(odd[0]) == float(odd[-1]) == 0.0


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_layer_order_on_real_unet_shapes(arch):
    """On the real SD1.5 / SDXL UNet shapes (built on the meta device): 16 / 11 spatial transformers
    in forward order, 16 / 70 cross-attentions in the file's order, and the layers that IPAdapter_plus's
    tables name are where its file keys put them (SDXL style transfer = up_blocks.0.attentions.1 =
    ip_adapter.69..87; the mid block's keys come last: 31 / 121..139)."""
    from diffusers import UNet2DConditionModel
    from lcmgraph_nodes.diffusion.models.ipadapter import (
        cross_attentions,
        layer_weight,
        spatial_transformers,
    )

    configs = {
        "sd15": dict(cross_attention_dim=768, attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
                     down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                     up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2),
        "sdxl": dict(cross_attention_dim=2048, attention_head_dim=(5, 10, 20), block_out_channels=(320, 640, 1280),
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=2,
                     transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                     addition_embed_type="text_time", addition_time_embed_dim=256,
                     projection_class_embeddings_input_dim=2816),
    }
    with torch.device("meta"):
        unet = UNet2DConditionModel(**configs[arch])
    names = {id(m): n for n, m in unet.named_modules()}
    transformers = spatial_transformers(unet)
    attn2 = cross_attentions(unet)
    assert (len(transformers), len(attn2)) == ((16, 16) if arch == "sd15" else (11, 70))
    keys = {}
    for j, module in enumerate(attn2):
        owner = next(i for i, (t, _) in enumerate(transformers) if any(m is module for m in t.modules()))
        keys.setdefault(owner, []).append(2 * j + 1)
    middle = next(i for i, (_, kind) in enumerate(transformers) if kind == "middle")
    if arch == "sdxl":
        assert names[id(transformers[6][0])] == "up_blocks.0.attentions.1" and keys[6] == list(range(69, 88, 2))
        assert middle == 4 and keys[middle] == list(range(121, 140, 2))
        styled = [i for i in range(11) if layer_weight("style transfer", 1.0, i, transformers[i][1], True)]
        assert styled == [6]
    else:
        assert middle == 6 and keys[middle] == [31]
        assert names[id(transformers[4][0])] == "down_blocks.2.attentions.0"  # composition's 0.25 layer


def test_offload_lora_and_compile_keep_the_adapter(models, tmp_path):
    """With offload the adapter and tower move to the device only to run; a LoRA on to_out acts on the
    image term fused or not (ComfyUI merges it); a compiled UNet runs eagerly while patched."""
    from .diffusion_helpers import new_engine

    def flow():
        f = _ip(txt2img(seed=1, steps=2, guidance=1.5))
        f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), lora="a.safetensors", weight=3.0)
        f.nodes["ipa"]["inputs"]["model"] = link("lora", "model")
        return f

    reference = _image(new_engine(models, tmp_path / "a", dtype="fp32", fuse_lora="off"), flow())
    assert max_diff(_image(new_engine(models, tmp_path / "b", dtype="fp32", fuse_lora="on"), flow()), reference) <= 1e-5
    assert max_diff(_image(new_engine(models, tmp_path / "c", dtype="fp32", fuse_lora="off", offload=True), flow()),
                    reference) <= 1e-5
    compiled = new_engine(models, tmp_path / "d", dtype="fp32", fuse_lora="off", compile="default",
                          compile_backend="eager", compile_after=1, compile_cache="off")
    plain = _image(compiled, txt2img(seed=1, steps=2, guidance=1.5))
    _image(compiled, txt2img(seed=1, steps=2, guidance=1.5, prompt="compiles the UNet"))
    assert max_diff(_image(compiled, flow()), reference) <= 1e-5
    # Unpatched again: the compiled call is back and draws the plain image (the prompt's extra space
    # misses the output cache, not the tokenizer).
    assert max_diff(_image(compiled, txt2img(seed=1, steps=2, guidance=1.5, prompt="a red circle ")), plain) <= 1e-6
    unet = next(e for e in compiled.service("diffusion.models")._entries.values() if hasattr(e, "patch_handles")).unet
    assert unet._compiled_call_impl is not None


def test_a_clip_vision_model_of_another_width_is_named(models, tmp_path):
    """The commonest mix-up (ViT-bigG with a ViT-H adapter): named, not a matmul error."""
    from lcmgraph_nodes.diffusion.builtin import tiny_ipadapter
    from lcmgraph_nodes.diffusion.formats.clip_vision_files import save_clip_vision
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .diffusion_helpers import new_engine

    vision = tmp_path / "cv"
    save_clip_vision(CLIPVisionModelWithProjection(CLIPVisionConfig(**{**tiny_ipadapter.VISION, "projection_dim": 48})),
                     vision / "CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors")
    engine = new_engine(models, tmp_path, folders={"clip_vision": [vision]})
    f = _ip(txt2img(seed=1, steps=1))
    f.nodes["cv"]["inputs"]["clip_name"] = "CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors"
    with pytest.raises(Exception) as err:
        run_to(engine, f, "decode", "image")
    message = str(err.value)
    assert "reads 32-wide CLIP image embeddings" in message and "gives 48" in message
    assert "CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors" in message


def test_regional_path_gives_the_negative_rows_their_tokens(engine):
    """Under CFG a conditioning of one whole-image area takes the regional path (its own UNet calls,
    negative and positive windows); with an IP-Adapter it must equal the plain path, row for row."""
    from .test_regions_sampling import FULL_AREA, flow, latent

    def with_adapter(f):
        f.add("img", "LoadImage", image="hint.png")
        f.add("ipl", "IPAdapterModelLoader", ipadapter_file="builtin:tiny-ip-adapter")
        f.add("cv", "CLIPVisionLoader", clip_name="builtin:tiny-clip-vision")
        f.add("ipa", "IPAdapterAdvanced", model=link("ckpt", "model"), ipadapter=link("ipl", "ipadapter"),
              image=link("img", "image"), clip_vision=link("cv", "clip_vision"), weight=1.0, weight_type="linear",
              combine_embeds="concat", start_at=0.0, end_at=1.0, embeds_scaling="V only")
        f.nodes["sampler"]["inputs"]["model"] = link("ipa", "model")
        return f

    settings = dict(sampler="Sampler", scheduler="euler", steps=2, cfg=4.0)
    plain = latent(engine, with_adapter(flow(positive="a", **settings)))
    regional = latent(engine, with_adapter(flow(regions=[FULL_AREA], positive="area", **settings)))
    assert float((plain - regional).abs().max()) <= 1e-5
    assert float((plain - latent(engine, flow(positive="a", **settings))).abs().max()) > 1e-3
