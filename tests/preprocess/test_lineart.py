"""Line-art preprocessors against comfyui_controlnet_aux's recipe on small
images: the standard one's blur difference and median normalisation, and the
realistic one's generator — loaded from a file with the checkpoint's own key
names (lllyasviel/Annotators sk_model.pth lists them), run at the padded
detect size, inverted, cut back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from lcmgraph_nodes.preprocess import lineart, nodes

#: The parameter names of sk_model.pth (controlnet_aux's Generator(3, 1, 3)), weight and bias each.
CHECKPOINT_MODULES = ["model0.1", "model1.0", "model1.3", *(f"model2.{i}.conv_block.{j}" for i in range(3) for j in (1, 5)),
                      "model3.0", "model3.3", "model4.1"]


def picture(height=40, width=56, seed=0):
    gen = np.random.default_rng(seed)
    image = np.full((height, width, 3), 200, np.uint8)
    image[10:30, 12:40] = gen.integers(0, 80, (20, 28, 3))  # a dark textured block on a light ground
    return image


def test_standard_lineart_follows_its_formula():
    image = picture()
    ours = lineart.standard(image, 2.0, 8, 64)
    padded, (height, width) = lineart.resize_with_pad(image, 64, cv2.INTER_CUBIC)
    x = padded.astype(np.float32)
    diff = (cv2.GaussianBlur(x, (0, 0), 2.0) - x).min(axis=2).clip(0, 255)
    norm = max(16.0, float(np.median(diff[diff > 8])))
    expected = ((diff / norm) * 127).clip(0, 255).astype(np.uint8)[:height, :width]
    assert ours.shape == (height, width, 3) and (height, width) == (64, round(56 * 64 / 40))
    assert np.array_equal(ours[:, :, 0], expected) and np.array_equal(ours[:, :, 0], ours[:, :, 2])
    assert int(ours.max()) > 100 and int(ours[0:5, 0:5].max()) == 0  # lines at the block, none on flat ground
    flat = np.full((40, 40, 3), 128, np.uint8)  # nothing above the threshold: the divisor is 16
    assert int(lineart.standard(flat, 2.0, 8, 64).max()) == 0


@pytest.fixture(scope="module")
def sk_model(tmp_path_factory):
    """A generator file with fixed random weights under the checkpoint's names."""
    torch.manual_seed(0)
    net = lineart.generator()
    state = net.state_dict()
    assert sorted({k.rsplit(".", 1)[0] for k in state}) == sorted(CHECKPOINT_MODULES)
    path = tmp_path_factory.mktemp("annotators") / "sk_model.pth"
    torch.save(state, path)
    return path, net.eval()


def test_realistic_lineart_runs_the_generator_at_the_padded_size_and_inverts(sk_model):
    path, reference = sk_model
    net = lineart.load_generator(path)
    image = picture()
    ours = lineart.realistic(image, net, 64)
    padded, (height, width) = lineart.resize_with_pad(image, 64, cv2.INTER_CUBIC)
    with torch.no_grad():
        line = reference(torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None])[0, 0].numpy()
    expected = 255 - (line * 255.0).clip(0, 255).astype(np.uint8)[:height, :width]
    assert ours.shape == (height, width, 3)
    assert np.array_equal(ours[:, :, 1], expected)
    assert padded.shape[:2] == (64, 128) and int(ours.std()) > 0


def test_lineart_node_finds_its_file_and_names_it_when_missing(sk_model, tmp_path):
    path, _ = sk_model

    class Ctx:
        def __init__(self, folder):
            self.folder = folder

        def resolve_file(self, folder, name):
            assert folder == "annotators"
            target = self.folder / name
            if not target.is_file():
                raise FileNotFoundError(f"no file {name!r} in folder {folder!r}")
            return target

    image = torch.from_numpy(picture().astype(np.float32) / 255.0)[None]
    out = nodes.LineArtPreprocessor().execute(Ctx(path.parent), image=image, coarse="disable", resolution=64)["image"]
    assert out.shape == (1, 64, 90, 3)
    with pytest.raises(FileNotFoundError, match="needs sk_model2.pth \\(lllyasviel/Annotators"):
        nodes.LineArtPreprocessor().execute(Ctx(path.parent), image=image, coarse="enable", resolution=64)
    other = tmp_path / "sk_model.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(lineart.LineartFileError, match="'sk_model.pth' is not the line-art generator"):
        lineart.load_generator(other)
