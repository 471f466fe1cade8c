"""Which ComfyUI class is which preprocessor node (``COMFY_MAPPINGS``): one
to one, both ways, under the same names. ``Canny`` is ComfyUI core
(comfy_extras/nodes_canny.py); the others come from comfyui_controlnet_aux,
whose nodes put their own widgets first and ``resolution`` last."""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping


def _same(node: str, widgets: tuple[str, ...], title: str, ignore: tuple[str, ...] = ()) -> ComfyMapping:
    inputs = {"image": "image", **{w: w for w in widgets if w not in ignore}}
    return ComfyMapping(node, inputs, ("image",), widgets, ignore=ignore, title=title, export=True)


COMFY_MAPPINGS: dict[str, ComfyMapping] = {
    "Canny": _same("Canny", ("low_threshold", "high_threshold"), "Canny"),
    "CannyEdgePreprocessor": _same("CannyEdgePreprocessor", ("low_threshold", "high_threshold", "resolution"),
                                   "Canny Edge"),
    # TileDetector never reads resolution: dropped on import, left out on export.
    "TilePreprocessor": _same("TilePreprocessor", ("pyrUp_iters", "resolution"), "Tile", ignore=("resolution",)),
    "BinaryPreprocessor": _same("BinaryPreprocessor", ("bin_threshold", "resolution"), "Binary Lines"),
    "ColorPreprocessor": _same("ColorPreprocessor", ("resolution",), "Color Pallete"),
    "LineartStandardPreprocessor": _same("LineartStandardPreprocessor",
                                         ("guassian_sigma", "intensity_threshold", "resolution"), "Standard Lineart"),
    "LineArtPreprocessor": _same("LineArtPreprocessor", ("coarse", "resolution"), "Realistic Lineart"),
    "DepthAnythingPreprocessor": _same("DepthAnythingPreprocessor", ("ckpt_name", "resolution"), "Depth Anything"),
    "DepthAnythingV2Preprocessor": _same("DepthAnythingV2Preprocessor", ("ckpt_name", "resolution"),
                                         "Depth Anything V2 - Relative"),
}

__all__ = ["COMFY_MAPPINGS"]
