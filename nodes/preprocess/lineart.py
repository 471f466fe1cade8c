"""Line-art hints as comfyui_controlnet_aux computes them.

* ``standard`` (LineartStandardPreprocessor, no model): at the detect size
  (``edges.resize_with_pad``), how much darker each pixel is than its Gaussian
  blur (the smallest channel difference, clipped at 0), divided by the median
  of the values above ``intensity_threshold`` (at least 16), times 127.
* ``realistic`` (LineArtPreprocessor): the "informative drawings" generator
  network (lllyasviel/Annotators ``sk_model.pth``; ``sk_model2.pth`` when
  coarse) on the padded image in 0..1, its sigmoid output times 255
  (truncated), inverted: white lines on black.

The generator (``Generator(3, 1, 3 residual blocks)``, instance norms without
parameters, reflection padding) is built here with the checkpoint's own
module names (``model0.1``, ``model1.0``, ..., ``model4.1``), so its files load
as they are; ``.pth`` files only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

from .edges import resize_with_pad

FOLDER = "annotators"
FILES = {False: "sk_model.pth", True: "sk_model2.pth"}  # coarse -> file (lllyasviel/Annotators on the hub)


class LineartFileError(ValueError):
    """A line-art model file that cannot be used; the message names it."""


def standard(image, sigma: float, threshold: int, resolution: int):
    """One uint8 ``[H, W, 3]`` image -> its standard line-art hint (uint8, 3 equal channels)."""
    import cv2
    import numpy as np

    padded, (height, width) = resize_with_pad(image, resolution, cv2.INTER_CUBIC)
    x = padded.astype(np.float32)
    blurred = cv2.GaussianBlur(x, (0, 0), sigma)
    intensity = np.min(blurred - x, axis=2).clip(0, 255)
    above = intensity[intensity > threshold]
    median = float(np.median(above)) if above.size else float("nan")
    intensity /= max(16.0, median) if median == median else 16.0  # no pixel above: controlnet_aux's max(16, nan)
    line = (intensity * 127.0).clip(0, 255).astype(np.uint8)[:height, :width]
    return np.repeat(line[:, :, None], 3, axis=2)


def generator():
    """The line-art generator with the checkpoint's module names (parameters uninitialised)."""
    import torch.nn as nn

    class Residual(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
                nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

        def forward(self, x):
            return x + self.conv_block(x)

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 64, 7), nn.InstanceNorm2d(64), nn.ReLU(True))
            self.model1 = nn.Sequential(
                nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.InstanceNorm2d(128), nn.ReLU(True),
                nn.Conv2d(128, 256, 3, stride=2, padding=1), nn.InstanceNorm2d(256), nn.ReLU(True))
            self.model2 = nn.Sequential(*(Residual(256) for _ in range(3)))
            self.model3 = nn.Sequential(
                nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(128),
                nn.ReLU(True),
                nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(64),
                nn.ReLU(True))
            self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(64, 1, 7), nn.Sigmoid())

        def forward(self, x):
            return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))

    return Generator()


def load_generator(path: str | Path):
    """The generator with the weights of ``path`` (eval mode, float32, CPU)."""
    from lcmgraph.weight_files import WeightFileError, read_weights

    path = Path(path)
    try:
        state, _ = read_weights(path)
    except WeightFileError as exc:
        raise LineartFileError(f"line-art model {path.name!r} {exc}") from exc
    net = generator()
    try:
        net.load_state_dict({k.removeprefix("module."): v.float() for k, v in dict(state).items()})
    except (RuntimeError, TypeError, ValueError) as exc:
        raise LineartFileError(f"{path.name!r} is not the line-art generator (lllyasviel/Annotators "
                               f"sk_model.pth / sk_model2.pth): {str(exc).splitlines()[0]}") from exc
    return net.eval()


def realistic(image, net, resolution: int):
    """One uint8 ``[H, W, 3]`` image -> its line-art hint from the generator ``net``."""
    import cv2
    import numpy as np
    import torch

    padded, (height, width) = resize_with_pad(image, resolution, cv2.INTER_CUBIC)
    x = torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        line = net(x)[0, 0].numpy()
    line = (line * 255.0).clip(0, 255).astype(np.uint8)
    line = 255 - line[:height, :width]
    return np.repeat(line[:, :, None], 3, axis=2)
