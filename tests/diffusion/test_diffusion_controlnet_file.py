"""LoadControlNet on single-file ControlNets (controlnet_files): the workflow
image equals the one from the diffusers folder the file was written from, up
to float32 rounding (tests/helpers.py says why not bitwise); a misfit or a
broken file fails in a sentence naming the node, and the engine keeps working."""

from __future__ import annotations

import pytest
from lcmgraph_nodes.diffusion.builtin.tiny import build_atomically

from lcmgraph import NodeFailed
from tests.checkpoints.controlnet_fixtures import save_controlnet_file
from tests.helpers import IMAGE_ATOL, assert_close_portable

from .diffusion_helpers import image_of, link, max_diff, new_engine, txt2img

FOLDERS = {"sd15": ("tiny", "cn"), "sdxl": ("tiny-xl", "cn-xl")}  # checkpoint, ControlNet folder


def _file(models, arch: str, layout: str) -> str:
    """The session's ControlNet folder for ``arch`` written as one file in the controlnet folder."""
    from diffusers import ControlNetModel

    folder = FOLDERS[arch][1]
    name = f"{folder}.safetensors" if layout == "ldm" else f"{folder}-{layout}.safetensors"
    build_atomically(models / "controlnet" / name, lambda p: save_controlnet_file(
        p, ControlNetModel.from_pretrained(models / "controlnet" / folder), layout))
    return name


def _flow(ckpt: str, controlnet: str):
    f = txt2img(ckpt=ckpt, prompt="a city at night", seed=6, steps=2, guidance=1.5)
    f.add("cn", "LoadControlNet", controlnet=controlnet)
    f.add("hint", "LoadImage", image="hint.png")
    f.add("apply", "ApplyControlNet", conditioning=link("pos", "conditioning"), control_net=link("cn", "control_net"),
          image=link("hint", "image"), strength=0.9)
    f.nodes["sampler"]["inputs"]["positive"] = link("apply", "conditioning")
    return f


@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_a_single_file_controlnet_gives_the_folder_image(engine, models, arch, layout):
    ckpt, folder = FOLDERS[arch]
    single = image_of(engine, _flow(ckpt, _file(models, arch, layout)))
    # The file's weights are copied into fresh aligned buffers, the folder's are file-offset
    # views: MKL may take another GEMM path for each, so the image is equal up to rounding.
    assert_close_portable(single, image_of(engine, _flow(ckpt, folder)), f"{arch} {layout} ControlNet image, "
                          "file vs folder", atol=IMAGE_ATOL)
    assert max_diff(single, image_of(engine, txt2img(ckpt=ckpt, prompt="a city at night", seed=6, steps=2,
                                                     guidance=1.5))) > 1e-4  # the control does something


def test_a_single_file_controlnet_for_the_wrong_architecture_names_the_apply_node(fresh_engine, models, make_engine):
    with pytest.raises(NodeFailed, match="made for sdxl models") as info:
        image_of(fresh_engine, _flow("tiny", _file(models, "sdxl", "ldm")))
    assert info.value.node_id == "apply"
    _base_still_works(fresh_engine, make_engine)


def _base_still_works(engine, make_engine):
    flow = txt2img(prompt="a sun", seed=21, steps=2)
    assert max_diff(image_of(engine, flow), image_of(make_engine(), flow)) == 0.0


def _unknown(models, path):
    import torch
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.ones(2)}, str(path))


def _truncated(models, path):
    data = (models / "controlnet" / _file(models, "sd15", "ldm")).read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(("make", "expected"), [(_unknown, "this is not a ControlNet"),
                                                (_truncated, "not a valid safetensors file")], ids=["unknown", "truncated"])
def test_a_broken_controlnet_file_names_the_node_and_the_engine_still_works(models, tmp_path, make_engine, make, expected):
    broken = tmp_path / "extra" / "controlnet"  # searched after the session's folder, which stays clean
    broken.mkdir(parents=True)
    make(models, broken / "broken.safetensors")
    engine = new_engine(models, tmp_path, folders={"controlnet": [models / "controlnet", broken]})
    with pytest.raises(NodeFailed, match=expected) as info:
        image_of(engine, _flow("tiny", "broken.safetensors"))
    assert info.value.node_id == "cn" and "broken.safetensors" in str(info.value)
    _base_still_works(engine, make_engine)
    assert image_of(engine, _flow("tiny", _file(models, "sd15", "ldm"))).shape == (1, 64, 64, 3)
