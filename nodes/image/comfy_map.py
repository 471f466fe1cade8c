"""Which ComfyUI class is which image-pack node (``COMFY_MAPPINGS``). Every
class maps one to one, both ways: renamed inputs, outputs by index, and the
class's widgets in the order ComfyUI's UI format saves them."""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping


def _same(node: str, sockets: dict[str, str], widgets: tuple[str, ...], outputs: tuple[str, ...], title: str,
          ignore: tuple[str, ...] = ()) -> ComfyMapping:
    """A class whose widgets keep their names here (``sockets`` are the renamed links)."""
    inputs = {**sockets, **{w: w for w in widgets if w not in ignore}}
    return ComfyMapping(node, inputs, outputs, widgets, ignore=ignore, title=title, export=True)


_IMAGE = {"image": "image"}
_MASK = {"mask": "mask"}

COMFY_MAPPINGS: dict[str, ComfyMapping] = {
    "ImageScale": _same("ImageScale", _IMAGE, ("upscale_method", "width", "height", "crop"), ("image",),
                        "Upscale Image"),
    "ImageScaleBy": _same("ImageScaleBy", _IMAGE, ("upscale_method", "scale_by"), ("image",), "Upscale Image By"),
    # Older ComfyUI versions save two widget values (no resolution_steps): it then keeps its default, 1.
    "ImageScaleToTotalPixels": _same("ImageScaleToTotalPixels", _IMAGE, ("upscale_method", "megapixels", "resolution_steps"),
                                     ("image",), "ImageScaleToTotalPixels"),
    "PrepImageForClipVision": _same("PrepImageForClipVision", _IMAGE, ("interpolation", "crop_position", "sharpening"),
                                    ("image",), "Prep Image For ClipVision"),
    "ImageInvert": _same("ImageInvert", _IMAGE, (), ("image",), "Invert Image"),
    "ImageBatch": _same("ImageBatch", {"image1": "image1", "image2": "image2"}, (), ("image",), "Batch Images"),
    "ImageCrop": _same("ImageCrop", _IMAGE, ("width", "height", "x", "y"), ("image",), "ImageCrop"),
    "ImagePadForOutpaint": _same("ImagePadForOutpaint", _IMAGE, ("left", "top", "right", "bottom", "feathering"),
                                 ("image", "mask"), "Pad Image for Outpainting"),
    "EmptyImage": ComfyMapping("EmptyImage", {"width": "width", "height": "height", "batch_size": "batch",
                                              "color": "color"}, ("image",), ("width", "height", "batch_size", "color"),
                               title="EmptyImage", export=True),
    # The frontend adds LoadImage's upload button after the class's own widgets.
    "LoadImageMask": _same("LoadImageMask", {}, ("image", "channel", "upload"), ("mask",), "Load Image (as Mask)",
                           ignore=("upload",)),
    "ImageToMask": _same("ImageToMask", _IMAGE, ("channel",), ("mask",), "Convert Image to Mask"),
    "MaskToImage": _same("MaskToImage", _MASK, (), ("image",), "Convert Mask to Image"),
    "InvertMask": _same("InvertMask", _MASK, (), ("mask",), "InvertMask"),
    "SolidMask": _same("SolidMask", {}, ("value", "width", "height"), ("mask",), "SolidMask"),
    "MaskComposite": _same("MaskComposite", {"destination": "destination", "source": "source"},
                           ("x", "y", "operation"), ("mask",), "MaskComposite"),
    "GrowMask": _same("GrowMask", _MASK, ("expand", "tapered_corners"), ("mask",), "GrowMask"),
    "FeatherMask": _same("FeatherMask", _MASK, ("left", "top", "right", "bottom"), ("mask",), "FeatherMask"),
}

__all__ = ["COMFY_MAPPINGS"]
