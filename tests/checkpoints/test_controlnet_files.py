"""Single-file ControlNets (controlnet_files): both key layouts load to the
weights and config of the diffusers folder they were written from; real
SD1.5/SDXL layouts read back as the real configs; other files are refused
with a sentence."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from lcmgraph_nodes.diffusion.builtin import tiny_addons
from lcmgraph_nodes.diffusion.formats.controlnet_config import controlnet_arch
from lcmgraph_nodes.diffusion.formats.controlnet_files import (
    ControlNetFileError,
    controlnet_config,
    controlnet_file_config,
    load_controlnet_file,
)
from lcmgraph_nodes.diffusion.formats.single_file_arch import METADATA_KEY, shipped_configs
from safetensors.torch import save_file

from .controlnet_fixtures import controlnet_to_ldm, save_controlnet_file

LAYOUTS = {"ldm": ("ldm", "control_model."), "ldm-bare": ("ldm", ""), "diffusers": ("diffusers", "")}


class Folder:
    """A tiny ControlNet (tiny_addons) with every parameter made distinct, as a diffusers folder."""

    def __init__(self, arch: str, root: Path):
        from diffusers import ControlNetModel

        built = tiny_addons.save_controlnet(root / f"built-{arch}", arch=arch)
        net = ControlNetModel.from_pretrained(built)
        # Fresh norms and biases are all ones/zeros: a loader that swapped two
        # same-shaped tensors would still pass a weight comparison.
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        self.arch, self.root, self.path = arch, root, root / f"cn-{arch}"
        net.save_pretrained(self.path, safe_serialization=True)
        self.model = ControlNetModel.from_pretrained(self.path)  # the folder form, as the engine reads it

    def file(self, layout: str, pin: bool = True, **kwargs) -> Path:
        kind, prefix = LAYOUTS[layout]
        target = self.root / f"cn-{self.arch}-{layout}{'' if pin else '-unpinned'}.safetensors"
        return save_controlnet_file(target, self.model, kind, prefix, pin=pin, **kwargs)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Folder]:
    root = tmp_path_factory.mktemp("controlnets")
    return {arch: Folder(arch, root) for arch in ("sd15", "sdxl")}


def _config_diff(a, b) -> dict:
    norm = lambda v: list(v) if isinstance(v, tuple | list) else v  # noqa: E731
    a, b = dict(a), dict(b)
    return {k: (a[k], b.get(k)) for k in a if not k.startswith("_") and norm(a[k]) != norm(b.get(k))}


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert [k for k in sa if sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k])] == []


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_a_file_loads_the_folder_weights_and_config(folders, arch, layout):
    folder = folders[arch]
    path = folder.file(layout)
    net = load_controlnet_file(path)
    _assert_same_weights(folder.model, net)
    assert _config_diff(folder.model.config, net.config) == {}
    # The header alone, as LoadControlNet reads it: what it holds (the rest is ControlNetModel's defaults).
    header = controlnet_file_config(path)
    assert _config_diff(header, net.config) == {} and controlnet_arch(header) == arch


def test_half_precision_is_read_as_half(folders):
    folder = folders["sd15"]
    net = load_controlnet_file(folder.file("ldm"), torch.float16)
    _assert_same_weights(folder.model.to(torch.float16), net)
    folder.model.to(torch.float32)


@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
def test_an_sd15_file_needs_no_metadata(folders, layout):
    """The tiny SD1.5 ControlNet has SD1.5's head rule, so shapes alone give its config."""
    folder = folders["sd15"]
    assert _config_diff(folder.model.config, load_controlnet_file(folder.file(layout, pin=False)).config) == {}


def test_an_sdxl_file_of_non_standard_size_must_pin_the_time_width(folders):
    with pytest.raises(ControlNetFileError, match="pin addition_time_embed_dim") as info:
        controlnet_file_config(folders["sdxl"].file("diffusers", pin=False))
    assert "cn-sdxl-diffusers-unpinned.safetensors" in str(info.value)


def test_an_original_file_with_the_whole_model_loads_its_controlnet(folders):
    """ControlNet 1.0 releases carried the SD model beside control_model.*."""
    folder = folders["sd15"]
    extra = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3)}
    path = folder.root / "with-model.safetensors"
    save_controlnet_file(path, folder.model, "ldm", extra=extra)
    _assert_same_weights(folder.model, load_controlnet_file(path))


def test_the_shuffle_controlnet_is_known_by_its_name(folders):
    """control_v11e_sd15_shuffle pools its output (global_average_pooling in its yaml); no tensor shows it."""
    folder = folders["sd15"]
    path = save_controlnet_file(folder.root / "control_v11e_sd15_shuffle.safetensors", folder.model, pin=False)
    assert load_controlnet_file(path).config.global_pool_conditions is True
    assert load_controlnet_file(folder.file("ldm", pin=False)).config.global_pool_conditions is False


# -- real sizes, without weights ---------------------------------------------------------------
class Shapes(dict):
    """What controlnet_config reads of a LazyStateDict: keys, shapes, metadata."""

    metadata: dict = {}

    def shape(self, key):
        return tuple(self[key].shape)


@functools.cache
def _real(arch: str):
    """A real-size ControlNet on the meta device: the UNet's config, as ControlNetModel.from_unet
    makes it (lllyasviel/control_v11p_sd15_canny, diffusers/controlnet-canny-sdxl-1.0)."""
    import inspect

    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    params = inspect.signature(ControlNetModel.__init__).parameters
    config = {k: v for k, v in shipped_configs(arch)["unet"].items() if k in params}
    with init_empty_weights():
        return ControlNetModel.from_config(config)


@pytest.mark.parametrize(("arch", "zero_convs"), [("sd15", 12), ("sdxl", 9)])
def test_real_layouts_read_back_as_the_real_config(arch, zero_convs):
    net = _real(arch)
    state = net.state_dict()
    ldm = Shapes(controlnet_to_ldm(state, net.config))
    # Names and shapes of the released files' hint encoder, zero convs and middle output.
    assert ldm.shape("control_model.input_hint_block.0.weight") == (16, 3, 3, 3)
    assert ldm.shape("control_model.input_hint_block.14.weight") == (320, 256, 3, 3)
    assert f"control_model.zero_convs.{zero_convs - 1}.0.weight" in ldm and f"control_model.zero_convs.{zero_convs}.0.weight" not in ldm
    assert ldm.shape("control_model.middle_block_out.0.weight") == (1280, 1280, 1, 1)
    if arch == "sdxl":
        assert ldm.shape("control_model.label_emb.0.0.weight") == (1280, 2816)
    for layout in (ldm, Shapes(state)):
        assert _config_diff(controlnet_config(layout), net.config) == {}


# -- files that are not ControlNets -----------------------------------------------------------------
def _tensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    save_file(tensors, str(path), metadata=metadata)
    return path


def _truncated(folders, tmp: Path) -> Path:
    data = folders["sd15"].file("ldm").read_bytes()
    (tmp / "cut.safetensors").write_bytes(data[: len(data) // 2])
    return tmp / "cut.safetensors"


def _without_a_zero_conv(folders, tmp: Path) -> Path:
    folder = folders["sd15"]
    tensors = controlnet_to_ldm(folder.model.state_dict(), folder.model.config)
    return _tensors(tmp / "holes.safetensors", {k: v for k, v in tensors.items() if ".zero_convs.2." not in k})


BAD = {
    "unknown layout": (lambda f, t: _tensors(t / "odd.safetensors", {"encoder.weight": torch.ones(2)}),
                       "not a ControlNet: it has neither input_hint_block"),
    "a single-file checkpoint": (lambda f, t: f["tiny_sd15"].file, "a Stable Diffusion checkpoint (a UNet), not a ControlNet"),
    "a diffusers UNet": (lambda f, t: f["tiny_sd15"].folder / "unet" / "diffusion_pytorch_model.safetensors",
                         "a UNet (it has decoder/output blocks"),
    "a LoRA": (lambda f, t: tiny_addons.save_lora(t / "lora.safetensors"), "a LoRA, not a ControlNet"),
    "a truncated file": (_truncated, "not a valid safetensors file"),
    "a missing tensor": (_without_a_zero_conv, "missing 2 (e.g. controlnet_down_blocks.2.bias"),
    "a pickle": (lambda f, t: _tensors(t / "cn.pth", {"x": torch.ones(1)}), "pickled files (.pth)"),
    "a pin for another component": (
        lambda f, t: _tensors(t / "pin.safetensors", controlnet_to_ldm(f["sd15"].model.state_dict(), f["sd15"].model.config),
                              {METADATA_KEY: '{"unet": {"act_fn": "silu"}}'}),
        "may only hold 'controlnet'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_files_that_are_not_controlnets_are_refused_in_a_sentence(case, folders, tiny_sd15, tmp_path):
    make, expected = BAD[case]
    path = make({**folders, "tiny_sd15": tiny_sd15}, tmp_path)
    # The header-only read (LoadControlNet's first step) cannot see a missing tensor; loading does.
    readers = [load_controlnet_file] if case == "a missing tensor" else [controlnet_file_config, load_controlnet_file]
    for read in readers:
        with pytest.raises(ControlNetFileError) as info:
            read(path)
        message = str(info.value)
        assert expected in message and path.name in message
        assert "\n" not in message
