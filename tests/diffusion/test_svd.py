"""Stable Video Diffusion: Stability's single-file layout loads (names checked
against ones read from public SVD converters), the open_clip image tower gives
what open_clip's own structure computes, and ComfyUI's img2vid path equals
diffusers' StableVideoDiffusionPipeline on the same modules for the same noise."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lcmgraph_nodes.diffusion.builtin import tiny_svd
from lcmgraph_nodes.diffusion.formats import clip_vision_files, svd_files
from lcmgraph_nodes.diffusion.models import svd
from safetensors import safe_open

#: Names in Stability's svd / svd_xt files, read from public converters' tables (DiffSynth-Studio's
#: svd_unet.py / svd_vae_decoder.py state-dict maps, diffusers-style UNet converters) — one per rule.
REAL_NAMES = (
    "model.diffusion_model.input_blocks.1.0.time_stack.emb_layers.1.weight",
    "model.diffusion_model.input_blocks.1.1.time_stack.0.ff_in.net.0.proj.weight",
    "model.diffusion_model.input_blocks.1.1.time_stack.0.ff.net.2.weight",
    "model.diffusion_model.input_blocks.3.0.op.weight",
    "model.diffusion_model.middle_block.1.time_pos_embed.2.weight",
    "model.diffusion_model.middle_block.1.time_stack.0.attn1.to_k.weight",
    "model.diffusion_model.output_blocks.2.1.conv.weight",
    "model.diffusion_model.output_blocks.5.2.conv.weight",
    "first_stage_model.decoder.up.0.block.0.time_stack.in_layers.0.weight",
    "first_stage_model.decoder.up.0.block.0.time_stack.in_layers.2.weight",
    "first_stage_model.decoder.up.0.block.0.time_stack.out_layers.0.weight",
    "first_stage_model.decoder.conv_out.time_mix_conv.weight",
    "first_stage_model.decoder.conv_out.weight",
    "first_stage_model.decoder.mid.attn_1.k.bias",
    "first_stage_model.decoder.mid.block_1.mix_factor",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tiny_svd.save_svd(tmp_path_factory.mktemp("svd") / "svd_xt.safetensors")
    unet, vae = svd_files.load_svd(path)
    return path, unet, vae, clip_vision_files.load_clip_vision(path)


def test_the_file_has_stabilitys_names_and_every_tensor_lands_where_it_was(tiny):
    path, unet, vae, vision = tiny
    with safe_open(str(path), "pt") as f:
        names = set(f.keys())
    assert set(REAL_NAMES) <= names
    assert not any("quant_conv" in n for n in names)  # first_stage_model has none
    source_unet, source_vae, source_vision = tiny_svd.make_models()
    for mine, theirs in ((unet, source_unet), (vae, source_vae), (vision, source_vision)):
        expected = theirs.state_dict()
        for key, value in mine.state_dict().items():
            assert torch.equal(value, expected[key]), key
    assert unet.config.num_attention_heads == (1, 1, 1, 1) and vision.config.hidden_act == "gelu"


def open_clip_embeds(visual: dict, pixels, heads: int):
    """open_clip's VisionTransformer forward from its own weights (torch's MultiheadAttention)."""
    x = F.conv2d(pixels, visual["conv1.weight"], stride=visual["conv1.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([visual["class_embedding"].expand(x.shape[0], 1, -1), x], 1) + visual["positional_embedding"]
    width = x.shape[-1]
    x = F.layer_norm(x, (width,), visual["ln_pre.weight"], visual["ln_pre.bias"])
    layer = 0
    while f"transformer.resblocks.{layer}.ln_1.weight" in visual:
        p = f"transformer.resblocks.{layer}."
        attention = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        attention.load_state_dict({"in_proj_weight": visual[p + "attn.in_proj_weight"],
                                   "in_proj_bias": visual[p + "attn.in_proj_bias"],
                                   "out_proj.weight": visual[p + "attn.out_proj.weight"],
                                   "out_proj.bias": visual[p + "attn.out_proj.bias"]})
        y = F.layer_norm(x, (width,), visual[p + "ln_1.weight"], visual[p + "ln_1.bias"])
        x = x + attention(y, y, y, need_weights=False)[0]
        y = F.layer_norm(x, (width,), visual[p + "ln_2.weight"], visual[p + "ln_2.bias"])
        y = F.linear(F.gelu(F.linear(y, visual[p + "mlp.c_fc.weight"], visual[p + "mlp.c_fc.bias"])),
                     visual[p + "mlp.c_proj.weight"], visual[p + "mlp.c_proj.bias"])
        x = x + y
        layer += 1
    pooled = F.layer_norm(x[:, 0], (width,), visual["ln_post.weight"], visual["ln_post.bias"])
    return pooled @ visual["proj"]


def test_the_open_clip_tower_computes_what_open_clip_does(tiny):
    path, _, _, vision = tiny
    with safe_open(str(path), "pt") as f:
        visual = {k[len(svd_files.CLIP_PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(svd_files.CLIP_PREFIX)}
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = vision(pixel_values=pixels).image_embeds
        expected = open_clip_embeds(visual, pixels, heads=1)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def svd_scheduler():
    from diffusers import EulerDiscreteScheduler

    # diffusers' SVD scheduler config (stabilityai/stable-video-diffusion-img2vid-xt's scheduler_config.json)
    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  interpolation_type="linear", num_train_timesteps=1000,
                                  prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
                                  timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)


def test_karras_sigmas_are_diffusers_svd_schedules():
    scheduler = svd_scheduler()
    scheduler.set_timesteps(20)
    ours = svd.sigmas_for("karras", 20)
    torch.testing.assert_close(ours, scheduler.sigmas.float(), rtol=1e-5, atol=1e-7)
    exponential = svd.sigmas_for("exponential", 4)
    assert torch.allclose(exponential[:4].log().diff(), exponential[:4].log().diff()[0].expand(3))  # log-even
    # denoise keeps the last int(steps * denoise) steps, as every lcmgraph sampler: ComfyUI's KSampler(4, 0.5)
    # imports as steps 8, denoise 0.5, and both run the last 4 of the 8-step karras schedule.
    assert svd.sigmas_for("karras", 8, denoise=0.5).tolist() == svd.sigmas_for("karras", 8)[-5:].tolist()
    with pytest.raises(ValueError, match="schedule 'sgm_uniform' is not one SVD sampling supports"):
        svd.sigmas_for("sgm_uniform", 4)


def test_img2vid_equals_diffusers_pipeline(tiny):
    """Same modules, same init image (64 px, on the 8-bit grid, so neither side resizes or
    quantises it differently), fps 6, no augmentation, linear guidance 1 -> 2.5 over 4 frames,
    3 euler steps on karras sigmas, the same starting noise; decoded as one clip."""
    from diffusers import StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    _, unet, vae, vision = tiny
    gen = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (1, 64, 64, 3), generator=gen).float() / 255.0
    frames, steps = 4, 3
    positive, negative, empty = svd.conditioning(vision, lambda px: svd.encode_latent(vae, px), image, 64, 64,
                                                 frames, 127, 6, 0.0)
    noise = torch.randn(empty.samples.shape, generator=torch.Generator().manual_seed(7))
    latents = svd.denoise(unet, empty.samples, positive, negative, svd.sigmas_for("karras", steps), noise, 2.5,
                          first_cfg=1.0)
    ours = svd.decode(svd.LoadedSvd("k", torch.nn.ModuleDict({"unet": unet, "vae": vae}), 0), latents)

    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=vision, unet=unet, scheduler=svd_scheduler(),
                                        feature_extractor=CLIPImageProcessor())
    pipe.set_progress_bar_config(disable=True)
    calls = []  # what the UNet is told: its micro-conditioning moves a random tiny model's frames by only ~1e-4
    hook = unet.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["added_time_ids"].clone()), with_kwargs=True)
    svd.denoise(unet, empty.samples, positive, negative, svd.sigmas_for("karras", 1), noise, 2.5, first_cfg=1.0)
    out = pipe(image.movedim(-1, 1), height=64, width=64, num_frames=frames, num_inference_steps=steps,
               min_guidance_scale=1.0, max_guidance_scale=2.5, fps=6, motion_bucket_id=127, noise_aug_strength=0.0,
               decode_chunk_size=frames, latents=noise[None], output_type="pt").frames[0]
    hook.remove()
    assert calls[0].tolist() == [[5.0, 127.0, 0.0]] * 2  # ComfyUI: fps_id = fps - 1; negative and positive
    assert torch.equal(calls[0], calls[1])  # diffusers' pipeline asks the same (its fps=6 also becomes 5)
    expected = out.movedim(1, -1)
    assert ours.shape == expected.shape == (frames, 64, 64, 3)
    assert float(expected.std()) > 0.01
    torch.testing.assert_close(ours, expected, atol=2e-4, rtol=0)  # fp32 sums in another order; sigmas 2e-6 apart


def test_linear_guidance_runs_frame_by_frame(tiny):
    """cfg 1 everywhere skips the negative (ComfyUI's cfg-1 shortcut) and equals guidance 1 -> 1."""
    _, unet, vae, vision = tiny
    image = torch.full((1, 64, 64, 3), 0.5)
    positive, negative, empty = svd.conditioning(vision, lambda px: svd.encode_latent(vae, px), image, 64, 64, 2,
                                                 127, 6, 0.0)
    noise = torch.randn(empty.samples.shape, generator=torch.Generator().manual_seed(3))
    sigmas = svd.sigmas_for("karras", 2)
    plain = svd.denoise(unet, empty.samples, positive, negative, sigmas, noise, 1.0)
    linear = svd.denoise(unet, empty.samples, positive, negative, sigmas, noise, 1.0, first_cfg=1.0)
    torch.testing.assert_close(plain, linear, atol=1e-4, rtol=1e-4)  # a batch of 1 vs 2 through the UNet
    strong = svd.denoise(unet, empty.samples, positive, negative, sigmas, noise, 3.0, first_cfg=1.0)
    assert (strong - plain)[0].abs().max() < (strong - plain)[1].abs().max()  # the last frame gets the most
    assert math.isclose(float(sigmas[0]), 700.0, rel_tol=1e-6)


def video_workflow(sampler="euler", frames=3, model_node="guidance", **sampling):
    nodes = {
        "svd": {"type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": "builtin:tiny-svd"}},
        "img": {"type": "LoadImage", "inputs": {"image": "hint.png"}},
        "cond": {"type": "SVDImg2VidConditioning", "inputs": {
            "clip_vision": {"link": ["svd", "clip_vision"]}, "init_image": {"link": ["img", "image"]},
            "vae": {"link": ["svd", "vae"]}, "width": 64, "height": 48, "video_frames": frames,
            "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
        "guidance": {"type": "VideoLinearCFGGuidance", "inputs": {"model": {"link": ["svd", "model"]}, "min_cfg": 1.0}},
        "sample": {"type": "Sampler", "inputs": {
            "model": {"link": [model_node, "model"]}, "positive": {"link": ["cond", "positive"]},
            "negative": {"link": ["cond", "negative"]}, "latent": {"link": ["cond", "latent"]}, "seed": 5,
            "scheduler": sampler, "schedule": "karras", "steps": 2, "cfg": 2.5, **sampling}},
        "decode": {"type": "VAEDecode", "inputs": {"vae": {"link": ["svd", "vae"]}, "latent": {"link": ["sample", "latent"]}}},
        "save": {"type": "SaveAnimatedWEBP", "inputs": {"image": {"link": ["decode", "image"]}, "filename_prefix": "clip",
                                                        "fps": 10.0, "lossless": False, "quality": 85, "method": "default"}},
    }
    return {"format": "lcmgraph.workflow", "version": 1, "nodes": nodes}


def test_a_video_workflow_writes_an_animated_webp(engine):
    from PIL import Image

    result = engine.run(video_workflow())
    frames = result.values["decode"]["image"]
    assert frames.shape == (3, 48, 64, 3) and float(frames.std()) > 0
    saved = result.outputs["save"]["images"][0]
    with Image.open(saved["path"]) as webp:
        assert webp.format == "WEBP" and webp.n_frames == 3 and webp.size == (64, 48)
        assert b'"SaveAnimatedWEBP"' in webp.info["exif"]  # the workflow, in EXIF as ComfyUI writes it
        webp.seek(1)
        webp.load()
        assert webp.info["duration"] == 100  # fps 10


def test_a_split_run_continues_without_new_noise(engine):
    """KSamplerAdvanced's two halves (steps 0-2 with leftover noise, then 2-4 adding none)
    give the one-piece run; denoise 0 changes nothing."""
    whole = engine.run(video_workflow(steps=4)).values["sample"]["latent"].samples
    flow = video_workflow(steps=4, end_step=2)
    nodes = flow["nodes"]
    nodes["second"] = {"type": "Sampler", "inputs": {**nodes["sample"]["inputs"], "latent": {"link": ["sample", "latent"]},
                                                     "start_step": 2, "end_step": 10000, "seed": 99}}
    nodes["decode"]["inputs"]["latent"] = {"link": ["second", "latent"]}
    split = engine.run(flow).values["second"]["latent"].samples
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-5)
    untouched = engine.run(video_workflow(denoise=0.0)).values
    assert torch.equal(untouched["sample"]["latent"].samples, untouched["cond"]["latent"].samples)


def test_video_models_name_what_they_cannot_do(engine, models):
    import shutil

    from lcmgraph.results import NodeFailed

    with pytest.raises(NodeFailed, match="sampler 'dpmpp_2m' does not run Stable Video Diffusion here; use euler"):
        engine.run(video_workflow(sampler="dpmpp_2m"))
    wrong = {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-random"}},
        "g": {"type": "VideoLinearCFGGuidance", "inputs": {"model": {"link": ["ckpt", "model"]}, "min_cfg": 1.0}},
        "out": {"type": "Capture", "inputs": {"value": {"link": ["g", "model"]}}}}, "outputs": ["out"]}
    with pytest.raises(NodeFailed, match="must be a Stable Video Diffusion model"):
        engine.run(wrong)
    freeu = video_workflow()
    freeu["nodes"]["freeu"] = {"type": "FreeU", "inputs": {"model": {"link": ["svd", "model"]}}}
    freeu["nodes"]["guidance"]["inputs"]["model"] = {"link": ["freeu", "model"]}
    with pytest.raises(NodeFailed, match="freeu on a Stable Video Diffusion model is not supported"):
        engine.run(freeu)
    shutil.copy(models / "loras" / "a.safetensors", models / "checkpoints" / "not-svd.safetensors")
    with pytest.raises(NodeFailed, match="'not-svd.safetensors' is not a Stable Video Diffusion checkpoint"):
        engine.run({**video_workflow(), "nodes": {**video_workflow()["nodes"], "svd": {
            "type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": "not-svd.safetensors"}}}})
    image_loader = {"format": "lcmgraph.workflow", "version": 1, "outputs": ["out"], "nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "builtin:tiny-svd"}},
        "out": {"type": "Capture", "inputs": {"value": {"link": ["ckpt", "model"]}}}}}
    with pytest.raises(NodeFailed, match="Stable Video Diffusion checkpoint: load it with ImageOnlyCheckpointLoader"):
        engine.run(image_loader)


def test_a_servers_batch_limit_counts_the_frames(models, tmp_path):
    from lcmgraph import Engine, EngineConfig, WorkflowInvalid
    from lcmgraph.budget import Budget, Limit
    from tests.comfy.helpers import PACKS

    budget = Budget({"batch": Limit(16, "--max-batch")})
    engine = Engine(EngineConfig(home=tmp_path / "home", models_dir=models, output_dir=tmp_path / "out",
                                 plugins_from_env=False, plugin_dirs=PACKS, device="cpu", budget=budget))
    with pytest.raises(WorkflowInvalid) as info:
        engine.run(video_workflow(frames=25))
    problems = [str(p) for p in info.value.problems]  # refused before anything loads, the frames named
    assert problems[0] == ("node 'cond' input 'video_frames': a batch of 25 images needs 25, above this server's "
                           "limit of 16 (--max-batch)")
    assert engine.validate(video_workflow(frames=16)) == []


def test_the_video_workflow_exports_to_comfyuis_api_format_and_back():
    from lcmgraph.comfy import load_any, to_api
    from tests.comfy.helpers import new_registry

    registry = new_registry()
    flow = video_workflow()
    flow["nodes"]["sample"]["inputs"]["schedule"] = "auto"  # an SVD model's auto is karras
    api = to_api(flow, registry)
    by_type = {node["class_type"]: node for node in api.values()}
    assert {"ImageOnlyCheckpointLoader", "SVD_img2vid_Conditioning", "VideoLinearCFGGuidance", "KSampler",
            "VAEDecode", "SaveAnimatedWEBP"} <= set(by_type)
    assert (by_type["KSampler"]["inputs"]["sampler_name"], by_type["KSampler"]["inputs"]["scheduler"]) == ("euler",
                                                                                                          "karras")
    assert by_type["SVD_img2vid_Conditioning"]["inputs"]["video_frames"] == 3
    back = load_any(api, registry)
    assert {n["type"] for n in back["nodes"].values()} >= {"ImageOnlyCheckpointLoader", "SVDImg2VidConditioning",
                                                          "VideoLinearCFGGuidance", "SaveAnimatedWEBP"}
