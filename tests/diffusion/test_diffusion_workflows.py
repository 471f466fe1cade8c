"""Every example workflow in workflows/ runs offline on the built-in tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lcmgraph.pngmeta import workflow_from_png

from .diffusion_helpers import new_engine

_ROOT = Path(__file__).resolve().parents[2] / "workflows"
#: The examples, and one per few-step family (workflows/fewstep/, the README's table).
WORKFLOWS = sorted(_ROOT.glob("*.json")) + sorted(_ROOT.glob("fewstep/*.json"))


@pytest.fixture(scope="module")
def shared(models, tmp_path_factory):
    # One home for the module: the built-in files are built once and reused.
    return new_engine(models, tmp_path_factory.mktemp("workflows"))


def test_the_examples_are_there():
    from lcmgraph_nodes.diffusion.models.presets import PRESETS

    names = {p.name for p in WORKFLOWS}
    assert {"txt2img_lcm.json", "img2img_lcm.json", "controlnet_lcm.json", "lora_stack_lcm.json",
            "sdxl_lcm.json", "inpaint_lcm.json", "outpaint_lcm.json", "regions_lcm.json"} <= names
    assert {p.stem for p in WORKFLOWS if p.parent.name == "fewstep"} == set(PRESETS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs_and_saves_pngs_that_embed_it(shared, path):
    doc = json.loads(path.read_text())
    assert shared.validate(doc) == []
    result = shared.run(doc)
    images = [img for out in result.outputs.values() for img in out.get("images", [])]
    assert images, f"{path.name} saved nothing"
    for image in images:
        assert Path(image["path"]).is_file()
        assert workflow_from_png(image["path"]) == doc


def test_lora_stack_example_differs_from_its_base_branch(shared):
    import numpy as np
    from PIL import Image

    doc = json.loads((_ROOT / "lora_stack_lcm.json").read_text())
    result = shared.run(doc)
    lora = np.asarray(Image.open(result.outputs["save"]["images"][0]["path"]), dtype=np.int16)
    base = np.asarray(Image.open(result.outputs["save_base"]["images"][0]["path"]), dtype=np.int16)
    assert np.abs(lora - base).max() > 0


def test_inpaint_example_runs_both_branches(shared):
    """The inpainting model's branch and the plain model's draw different images."""
    import numpy as np
    from PIL import Image

    doc = json.loads((_ROOT / "inpaint_lcm.json").read_text())
    result = shared.run(doc)
    model = np.asarray(Image.open(result.outputs["save"]["images"][0]["path"]), dtype=np.int16)
    plain = np.asarray(Image.open(result.outputs["plain_save"]["images"][0]["path"]), dtype=np.int16)
    assert model.shape == plain.shape == (64, 64, 3)
    assert np.abs(model - plain).max() > 0
