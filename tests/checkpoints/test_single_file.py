"""A single LDM-layout file loads to the same models as the diffusers folder it came from."""

from __future__ import annotations

import shutil

import pytest
import torch
from lcmgraph_nodes.diffusion.formats.checkpoint_files import ARCH_SD15, ARCH_SDXL, load_checkpoint
from lcmgraph_nodes.diffusion.formats.single_file_export import save_single_file
from lcmgraph_nodes.diffusion.formats.single_file_reader import LazyStateDict
from lcmgraph_nodes.diffusion.formats.single_file_tokenizer import clip_tokenizer

from tests.helpers import NETWORK_TOL, assert_close_portable

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
PROMPT = "a photo of an astronaut riding a horse on mars"


@pytest.fixture(scope="module")
def loaded(tiny_sd15, tiny_sdxl):
    """Each tiny model loaded once from each form; the tests below only read them."""
    return {t.arch: (load_checkpoint(t.folder), load_checkpoint(t.file)) for t in (tiny_sd15, tiny_sdxl)}


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k])]
    assert different == []


def _unet_output(unet, arch: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    sample = torch.randn(1, 4, 16, 16, generator=gen)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=gen)
    extra = {}
    if arch == ARCH_SDXL:
        extra["added_cond_kwargs"] = {"text_embeds": torch.randn(1, 32, generator=gen),
                                      "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}
    with torch.no_grad():
        return unet(sample, 499, encoder_hidden_states=context, **extra).sample


@pytest.mark.parametrize("arch", [ARCH_SD15, ARCH_SDXL])
def test_architecture_is_read_from_the_file(loaded, arch):
    folder, single = loaded[arch]
    assert single.arch == folder.arch == arch
    assert single.extra["format"] == "single_file" and folder.extra["format"] == "folder"
    assert (single.text_encoder_2 is None) == (arch == ARCH_SD15)
    assert (single.tokenizer_2 is None) == (arch == ARCH_SD15)


@pytest.mark.parametrize("arch", [ARCH_SD15, ARCH_SDXL])
def test_single_file_and_folder_have_identical_weights(loaded, arch):
    folder, single = loaded[arch]
    for name in COMPONENTS:
        if getattr(folder, name) is not None:
            _assert_same_weights(getattr(folder, name), getattr(single, name))


@pytest.mark.parametrize("arch", [ARCH_SD15, ARCH_SDXL])
def test_single_file_and_folder_have_the_same_configs(loaded, arch):
    folder, single = loaded[arch]
    for name in COMPONENTS:
        a, b = getattr(folder, name), getattr(single, name)
        if a is None:
            continue
        ca = a.config if isinstance(a.config, dict) else a.config.to_dict()
        cb = b.config if isinstance(b.config, dict) else b.config.to_dict()
        ignore = {"transformers_version", "dtype", "torch_dtype", "architectures"}
        norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        diff = {k: (ca[k], cb.get(k)) for k in ca
                if k not in ignore and not k.startswith("_") and norm(ca[k]) != norm(cb.get(k))}
        assert diff == {}, name


@pytest.mark.parametrize("arch", [ARCH_SD15, ARCH_SDXL])
def test_single_file_unet_gives_the_folder_unet_output(loaded, arch):
    folder, single = loaded[arch]
    expected = _unet_output(folder.unet, arch)
    assert torch.isfinite(expected).all()
    # Folder weights are views at one file's offsets, single-file ones at another's: MKL may take
    # another GEMM path for each, so the outputs are equal up to float32 rounding through the
    # network's depth, not bitwise.
    assert_close_portable(_unet_output(single.unet, arch), expected, f"{arch} UNet output, file vs folder",
                          rtol=NETWORK_TOL, atol=NETWORK_TOL)


@pytest.mark.parametrize("arch", [ARCH_SD15, ARCH_SDXL])
def test_text_encoders_and_tokenizers_match(loaded, arch):
    folder, single = loaded[arch]
    pairs = [(folder.tokenizer, single.tokenizer, folder.text_encoder, single.text_encoder)]
    if arch == ARCH_SDXL:
        pairs.append((folder.tokenizer_2, single.tokenizer_2, folder.text_encoder_2, single.text_encoder_2))
        assert single.tokenizer_2.pad_token == "!"
    for tok_a, tok_b, te_a, te_b in pairs:
        ids_a = tok_a(PROMPT, padding="max_length", max_length=tok_a.model_max_length, return_tensors="pt").input_ids
        ids_b = tok_b(PROMPT, padding="max_length", max_length=tok_b.model_max_length, return_tensors="pt").input_ids
        assert tok_b.model_max_length == 77 and torch.equal(ids_a, ids_b)
        with torch.no_grad():
            out_a, out_b = te_a(ids_a, output_hidden_states=True), te_b(ids_b, output_hidden_states=True)
        # Bitwise-equal weights in differently aligned buffers (views at two files' offsets): MKL's GEMM path may differ, so float32 rounding may too (seen: 2.4e-7).
        assert_close_portable(out_a.hidden_states[-2], out_b.hidden_states[-2], f"{arch} penultimate hidden states")
        assert_close_portable(out_a[0], out_b[0], f"{arch} text encoder output")


@pytest.mark.parametrize("arch", [ARCH_SD15, ARCH_SDXL])
def test_scheduler_config_is_the_architecture_default(loaded, arch):
    folder, single = loaded[arch]
    for key, value in single.scheduler_config.items():
        if not key.startswith("_"):
            assert folder.scheduler_config[key] == value, key
    expected = "PNDMScheduler" if arch == ARCH_SD15 else "EulerDiscreteScheduler"
    assert single.scheduler_config["_class_name"] == expected


def test_sd15_without_pinned_configs_is_inferred_exactly(tiny_sd15, tmp_path, loaded):
    p = tiny_sd15.pipe
    path = save_single_file(tmp_path / "bare.safetensors", p.unet, p.vae, p.text_encoder, pin=False)
    assert "lcmgraph.configs" not in LazyStateDict(path).metadata
    bare = load_checkpoint(path)
    folder = loaded[ARCH_SD15][0]
    for name in ("unet", "vae", "text_encoder"):
        _assert_same_weights(getattr(folder, name), getattr(bare, name))
    # Same weights, differently aligned buffers (file vs folder): equal up to float32 rounding.
    assert_close_portable(_unet_output(bare.unet, ARCH_SD15), _unet_output(folder.unet, ARCH_SD15),
                          "UNet output, unpinned file vs folder", rtol=NETWORK_TOL, atol=NETWORK_TOL)
    ids = folder.tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        assert_close_portable(bare.text_encoder(ids)[0], folder.text_encoder(ids)[0],
                              "text encoder output, unpinned file vs folder")


def test_sdxl_without_pinned_configs_loads_with_rule_based_heads(tiny_sdxl, tmp_path, loaded):
    p = tiny_sdxl.pipe
    path = save_single_file(tmp_path / "bare.safetensors", p.unet, p.vae, p.text_encoder, p.text_encoder_2, pin=False)
    bare = load_checkpoint(path)
    folder = loaded[ARCH_SDXL][0]
    for name in COMPONENTS:
        _assert_same_weights(getattr(folder, name), getattr(bare, name))
    # Head counts change no tensor shape: unpinned, 64-wide heads where the
    # width allows and 8-wide ones elsewhere; the fixture itself uses (2, 4).
    assert list(bare.unet.config.attention_head_dim) == [4, 1]
    assert bare.unet.config.transformer_layers_per_block == [1, 2]
    assert bare.unet.config.addition_time_embed_dim == 8


@pytest.mark.parametrize("file_dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_load_in_the_requested_dtype(tiny_sd15, tmp_path, loaded, file_dtype):
    p = tiny_sd15.pipe
    path = save_single_file(tmp_path / "half.safetensors", p.unet, p.vae, p.text_encoder, dtype=file_dtype)
    folder = loaded[ARCH_SD15][0]
    as_fp32 = load_checkpoint(path)
    as_file_dtype = load_checkpoint(path, torch_dtype=file_dtype)
    for name in ("unet", "vae", "text_encoder"):
        ref = getattr(folder, name).state_dict()
        got32, got_half = getattr(as_fp32, name).state_dict(), getattr(as_file_dtype, name).state_dict()
        for key, value in ref.items():
            if not value.is_floating_point():
                continue
            assert got_half[key].dtype == file_dtype and got32[key].dtype == torch.float32
            assert torch.equal(got_half[key], value.to(file_dtype))
            assert torch.equal(got32[key], value.to(file_dtype).float())


@pytest.mark.parametrize("source", ["file", "folder"])
def test_text_encoders_load_in_their_own_dtype(tiny, source):
    """bf16 UNet and VAE, fp32 text encoders (what dtype auto does on a bf16 CPU): the text
    encoders' weights are the fp32 file's exactly, never rounded through bf16."""
    path = tiny.file if source == "file" else tiny.folder
    full = load_checkpoint(path)
    mixed = load_checkpoint(path, torch_dtype=torch.bfloat16, text_dtype=torch.float32)
    encoders = ["text_encoder"] + (["text_encoder_2"] if tiny.arch == "sdxl" else [])
    for name in encoders:
        got, ref = getattr(mixed, name).state_dict(), getattr(full, name).state_dict()
        assert all(torch.equal(got[k], v) for k, v in ref.items()), name
        assert getattr(mixed, name).dtype == torch.float32
    for name in ("unet", "vae"):
        assert getattr(mixed, name).dtype == torch.bfloat16
        got, ref = getattr(mixed, name).state_dict(), getattr(full, name).state_dict()
        assert all(torch.equal(got[k], v.to(torch.bfloat16)) for k, v in ref.items() if v.is_floating_point())


def test_a_tokenizer_folder_beside_the_file_wins(tiny_sd15, tmp_path):
    path = tmp_path / "model.safetensors"
    shutil.copy(tiny_sd15.file, path)
    sidecar = clip_tokenizer(600)
    sidecar.save_pretrained(tmp_path / "model.tokenizer")
    ckpt = load_checkpoint(path)
    assert ckpt.extra["tokenizer_source"] == str(tmp_path / "model.tokenizer")
    assert len(ckpt.tokenizer) == 600 and ckpt.tokenizer("a cat").input_ids == sidecar("a cat").input_ids


def test_a_non_clip_tokenizer_travels_in_the_metadata(tiny_sd15, tmp_path):
    from lcmgraph_nodes.diffusion.formats.single_file_tokenizer import clip_vocab_and_merges
    from transformers import CLIPTokenizer

    # A vocabulary of its own: the 512 byte symbols, two merges, the specials.
    vocab, _ = clip_vocab_and_merges(514)
    base = {t: i for t, i in vocab.items() if i < 512}
    vocab = {**base, "ca": 512, "cat</w>": 513, "<|startoftext|>": 514, "<|endoftext|>": 515}
    own = CLIPTokenizer(vocab=vocab, merges=[("c", "a"), ("ca", "t</w>")], model_max_length=77)
    p = tiny_sd15.pipe
    path = save_single_file(tmp_path / "own.safetensors", p.unet, p.vae, p.text_encoder, tokenizer=own)
    ckpt = load_checkpoint(path)
    assert ckpt.extra["tokenizer_source"] == "metadata"
    assert ckpt.tokenizer.get_vocab() == own.get_vocab()
    assert ckpt.tokenizer("a cat").input_ids == own("a cat").input_ids == [514, 320, 513, 515]
    # The shipped vocabulary is not copied into files that use it.
    plain = save_single_file(tmp_path / "plain.safetensors", p.unet, p.vae, p.text_encoder, tokenizer=p.tokenizer)
    assert "lcmgraph.tokenizer" not in LazyStateDict(plain).metadata


def test_v_prediction_marker_sets_the_scheduler(tiny_sd15, tmp_path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tiny_sd15.file))
    save_file({**tensors, "v_pred": torch.tensor([])}, str(tmp_path / "vpred.safetensors"))
    assert load_checkpoint(tmp_path / "vpred.safetensors").scheduler_config["prediction_type"] == "v_prediction"
    assert load_checkpoint(tiny_sd15.file).scheduler_config["prediction_type"] == "epsilon"


def test_loaded_single_file_runs_a_pipeline(tiny_sd15, loaded):
    """The components are usable together: one LCM step end to end."""
    from diffusers import LCMScheduler, StableDiffusionPipeline

    single = loaded[ARCH_SD15][1]
    pipe = StableDiffusionPipeline(
        unet=single.unet, vae=single.vae, text_encoder=single.text_encoder, tokenizer=single.tokenizer,
        scheduler=LCMScheduler.from_config(single.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    image = pipe(PROMPT, num_inference_steps=1, guidance_scale=1.0, height=32, width=32, output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()


def test_text_encoders_hand_their_pages_back_and_encode_the_same_after(tiny, tmp_path):
    """TextEncode on the CPU returns the text encoders' mapped pages after each prompt; the
    next prompt reads them again from the file: the same conditioning as a fresh engine's."""
    from lcmgraph_nodes.diffusion.models.manager import SERVICE

    from lcmgraph import Engine, EngineConfig
    from tests.comfy.helpers import PACKS

    shutil.copy(tiny.file, tmp_path / "model.safetensors")

    def engine(name):
        return Engine(EngineConfig(home=tmp_path / name, models_dir=tmp_path / "m", output_dir=tmp_path / "o",
                                   plugins_from_env=False, plugin_dirs=PACKS, device="cpu",
                                   folders={"checkpoints": [tmp_path]}))

    def encode(eng, text):
        doc = {"format": "lcmgraph.workflow", "version": 1, "outputs": ["out"], "nodes": {
            "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "model.safetensors"}},
            "enc": {"type": "TextEncode", "inputs": {"clip": {"link": ["ckpt", "clip"]}, "text": text}},
            "out": {"type": "Capture", "inputs": {"value": {"link": ["enc", "conditioning"]}}}}}
        return eng.run(doc).values["enc"]["conditioning"]

    first = engine("a")
    encode(first, "a cat")
    manager = first.runtime.service(SERVICE)
    loaded = next(iter(manager._entries.values()))
    assert loaded.mapped is not None and manager.release_text(loaded) > 0  # views of the map, handed back
    from lcmgraph_nodes.diffusion.models.merging import MergeState

    loaded.merges["text_encoder"] = MergeState(dirty={0})  # a merge written into the weights: they must stay
    assert manager.release_text(loaded) == 0
    loaded.merges["text_encoder"] = MergeState()
    after = encode(first, PROMPT)
    fresh = encode(engine("b"), PROMPT)
    assert torch.equal(after.embeds, fresh.embeds)
    assert (after.pooled is None and fresh.pooled is None) or torch.equal(after.pooled, fresh.pooled)
