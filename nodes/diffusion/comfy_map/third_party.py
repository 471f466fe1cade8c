"""Single nodes of third-party ComfyUI packs whose meaning an lcmgraph node
has exactly (import only; the export writes ComfyUI's own classes).

* WAS Node Suite's ``Seed`` (WAS_Seed): outputs a SEED dict, the seed as
  NUMBER, FLOAT and INT. Its number and int outputs are the core Int node's
  value; the dict and float have no lcmgraph type (a link from them is refused).
* YANC's ``> Save Image`` (YANCSaveImage): a PNG in the output folder
  (``folder``/``filename_prefix``) with the workflow embedded: SaveImage.
  lcmgraph names the files ``prefix_00001.png`` (YANC: ``prefix_00001.png``
  too, ComfyUI's SaveImage ``prefix_00001_.png``) and never overwrites, which
  makes ``overwrite_warning`` moot; a file name from ``filename_opt``, an
  image format other than PNG, metadata turned off or date placeholders are
  refused, lcmgraph's SaveImage having none of them.
"""

from __future__ import annotations

from lcmgraph.comfy import SEED_CONTROL, ComfyMapping, ConversionError, Converted


def was_seed(ctx, node) -> Converted:
    return Converted("Int", {"value": node.inputs.get("seed", 0)}, {1: "value", 3: "value"})


def yanc_save_image(ctx, node) -> Converted:
    get = node.inputs.get
    if get("filename_opt") is not None:
        raise ConversionError("filename_opt names the file itself; lcmgraph's SaveImage numbers its files")
    prefix, folder = ctx.literal(node, "filename_prefix", "ComfyUI"), ctx.literal(node, "folder", "")
    if ctx.literal(node, "extension", "png") != "png":
        raise ConversionError(f"extension {get('extension')!r}: lcmgraph's SaveImage writes PNG files only")
    if not ctx.literal(node, "include_metadata", True):
        raise ConversionError("include_metadata false: lcmgraph's SaveImage always embeds the workflow")
    if "%" in f"{folder}{prefix}":
        raise ConversionError(f"date placeholders in {folder}/{prefix!r} have no lcmgraph equivalent")
    if not prefix:
        ctx.note("an empty filename_prefix: lcmgraph names the files lcmgraph_00001.png")
    inputs = {"filename_prefix": f"{folder}/{prefix}" if folder else prefix}
    if get("images") is not None:
        inputs["image"] = get("images")
    return Converted("SaveImage", inputs, {})


MAPPINGS: dict[str, ComfyMapping] = {
    "Seed": ComfyMapping("Int", {"seed": "value"}, widgets=("seed", SEED_CONTROL), ignore=("control_after_generate",),
                         title="Seed", convert=was_seed),
    "> Save Image": ComfyMapping(
        "SaveImage", widgets=("filename_prefix", "folder", "overwrite_warning", "include_metadata"),
        title="😼> Save Image", convert=yanc_save_image),
}
