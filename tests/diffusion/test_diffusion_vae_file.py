"""LoadVAE (ComfyUI's VAELoader): a VAE of its own, from a diffusers folder or
one .safetensors file in the original (LDM) or diffusers layout, offline; it
replaces the checkpoint's VAE wherever the VAE value goes, and the latents
it reads are scaled by the factor of the model they come from."""

from __future__ import annotations

import pytest
import torch
from lcmgraph_nodes.diffusion.builtin import tiny
from lcmgraph_nodes.diffusion.formats.vae_files import VaeFileError, load_vae, save_ldm_vae
from safetensors.torch import save_file

from lcmgraph.results import NodeFailed
from tests.helpers import assert_close_portable

from .diffusion_helpers import gen, image_of, link, max_diff, reference, txt2img, value_of


@pytest.fixture(scope="module")
def vae_files(models):
    """The same tiny VAE (seed 31) as a folder, an LDM file (bare and prefixed) and a diffusers-layout file."""
    folder = models / "vae"
    vae = tiny.make_vae("sd15", seed=31)
    vae.save_pretrained(folder / "own-vae", safe_serialization=True)
    save_ldm_vae(folder / "own-vae.safetensors", vae)
    from lcmgraph_nodes.diffusion.formats.single_file_export import vae_to_ldm

    ldm = {k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()}  # first_stage_model.*
    # Only what no shape tells and is not the scaling factor: the tiny VAE's group norm size.
    groups = {"lcmgraph.configs": '{"vae": {"norm_num_groups": 8}}'}
    save_file(ldm, str(folder / "own-vae-prefixed.safetensors"), metadata=groups)
    bare = {k.removeprefix("first_stage_model."): v for k, v in ldm.items()}
    save_file(bare, str(folder / "own-vae-nofactor.safetensors"), metadata=groups)
    save_file(bare, str(folder / "own-sdxl-vae.safetensors"), metadata=groups)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(folder / "own-vae-diffusers.safetensors"),
              metadata=groups)
    return vae


def decode_ref(vae, samples):
    with torch.no_grad():
        image = vae.decode(samples / vae.config.scaling_factor).sample
    return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)


@pytest.mark.parametrize("name", ["own-vae", "own-vae.safetensors", "own-vae-prefixed.safetensors",
                                  "own-vae-diffusers.safetensors"])
def test_every_layout_decodes_as_diffusers_does(engine, vae_files, name):
    flow = txt2img(size=64, seed=3, steps=2)
    flow.add("vae", "LoadVAE", vae=name)
    flow.nodes["decode"]["inputs"]["vae"] = link("vae", "vae")
    latent = value_of(engine, flow, "sampler", "latent").samples
    ours = image_of(engine, flow)
    assert_close_portable(ours, decode_ref(vae_files, latent).numpy(), f"{name} decode")
    plain = image_of(engine, txt2img(size=64, seed=3, steps=2))  # the checkpoint's own VAE
    assert max_diff(ours, plain) > 1e-3


def test_the_loaded_vae_replaces_the_checkpoints_in_a_diffusers_pipeline(engine, models, vae_files):
    from diffusers import LCMScheduler

    flow = txt2img(prompt="a red circle", size=64, seed=7, steps=4)
    flow.add("vae", "LoadVAE", vae="own-vae.safetensors")
    flow.nodes["decode"]["inputs"]["vae"] = link("vae", "vae")
    ours = image_of(engine, flow)
    pipe = reference(models, "tiny")
    pipe.vae = vae_files
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    ref = pipe("a red circle", height=64, width=64, num_inference_steps=4, guidance_scale=1.0, generator=gen(7),
               output_type="np").images
    assert max_diff(ours, ref) <= 1e-5


def test_encode_and_img2img_take_the_loaded_vae(engine, vae_files):
    flow = txt2img(size=64)
    flow.add("vae", "LoadVAE", vae="own-vae")
    flow.add("image", "LoadImage", image="hint.png")
    flow.add("enc", "VAEEncode", vae=link("vae", "vae"), image=link("image", "image"))
    latent = value_of(engine, flow, "enc", "latent").samples
    pixels = value_of(engine, flow, "image", "image")
    with torch.no_grad():
        expected = vae_files.encode(pixels.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode() * 0.18215
    assert_close_portable(latent.numpy(), expected.numpy(), "encode")
    flow.add("i2i", "Img2Img", model=link("ckpt", "model"), vae=link("vae", "vae"), positive=link("pos", "conditioning"),
             image=link("image", "image"), strength=0.5, steps=2)
    assert value_of(engine, flow, "i2i", "latent").samples.shape == (1, 4, 8, 8)


def test_the_latent_format_sets_the_scaling_factor(models, vae_files):
    vae, arch = load_vae(models / "vae" / "own-vae.safetensors", torch.float32)
    assert (arch, vae.config.scaling_factor) == ("sd15", 0.18215)  # pinned in the file
    vae, arch = load_vae(models / "vae" / "own-vae.safetensors", torch.float32, "sdxl")
    assert (arch, vae.config.scaling_factor) == ("sdxl", 0.13025)
    # Without a pinned factor the name decides: "xl" means SDXL's latents.
    assert load_vae(models / "vae" / "own-vae-nofactor.safetensors", torch.float32)[1] == "sd15"
    vae, arch = load_vae(models / "vae" / "own-sdxl-vae.safetensors", torch.float32)
    assert (arch, vae.config.scaling_factor) == ("sdxl", 0.13025)
    vae, arch = load_vae(models / "vae" / "own-vae", torch.float32, "sdxl")
    assert (arch, vae.config.scaling_factor) == ("sdxl", 0.13025)


def test_sdxl_latents_decode_with_the_sdxl_factor(engine, vae_files):
    flow = txt2img(ckpt="tiny-xl", size=64, seed=2, steps=2)
    flow.add("vae", "LoadVAE", vae="own-vae.safetensors", latent_format="sdxl")
    flow.nodes["decode"]["inputs"]["vae"] = link("vae", "vae")
    latent = value_of(engine, flow, "sampler", "latent").samples
    with torch.no_grad():
        image = vae_files.decode(latent / 0.13025).sample
    expected = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert_close_portable(image_of(engine, flow), expected.numpy(), "sdxl decode")


def test_offloaded_engines_move_the_vae_to_the_device_in_its_turn(make_engine, vae_files):
    engine = make_engine(offload=True)
    flow = txt2img(size=64, seed=3, steps=2)
    flow.add("vae", "LoadVAE", vae="own-vae")
    flow.nodes["decode"]["inputs"]["vae"] = link("vae", "vae")
    assert image_of(engine, flow).shape == (1, 64, 64, 3)
    manager = engine.runtime.service("diffusion.models")
    assert any(key.startswith("vae:auto:") for key in manager.loaded_keys())


def test_builtin_vae_file_is_the_embedded_models_vae(engine):
    flow = txt2img(ckpt="builtin:tiny-shapes", prompt="a small red circle", size=64, seed=1, steps=2)
    own = image_of(engine, flow)
    flow.add("vae", "LoadVAE", vae="builtin:tiny-shapes-vae")
    flow.nodes["decode"]["inputs"]["vae"] = link("vae", "vae")
    assert_close_portable(image_of(engine, flow), own, "the same VAE from one file")


@pytest.mark.parametrize("name, message", [
    ("tiny", "a VAE folder needs a config.json"),
    ("full.safetensors", "this is a full checkpoint, not a VAE"),
    ("lora.safetensors", "not a VAE file"),
    ("old.ckpt", "read as .safetensors only"),
])
def test_what_is_not_a_vae_is_named(models, vae_files, name, message):
    folder = models / "vae"
    if name == "tiny":
        (folder / "tiny").mkdir(exist_ok=True)
    elif name == "full.safetensors":
        save_file({"model.diffusion_model.x": torch.zeros(1), "first_stage_model.encoder.down.0.x": torch.zeros(1)},
                  str(folder / name))
    elif name == "lora.safetensors":
        save_file({"lora_unet_x.lora_down.weight": torch.zeros(1)}, str(folder / name))
    else:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(VaeFileError, match=message):
        load_vae(folder / name, torch.float32)


def test_a_broken_vae_fails_in_its_own_node(engine, vae_files):
    (engine.runtime.files.roots["vae"][0] / "broken.safetensors").write_bytes(b"\0" * 16)
    flow = txt2img(size=64)
    flow.add("vae", "LoadVAE", vae="broken.safetensors")
    flow.nodes["decode"]["inputs"]["vae"] = link("vae", "vae")
    with pytest.raises(NodeFailed) as info:
        image_of(engine, flow)
    assert info.value.node_id == "vae"
