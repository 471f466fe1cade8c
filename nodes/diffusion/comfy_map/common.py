"""Small helpers shared by the conversions."""

from __future__ import annotations

from lcmgraph.comfy import ConversionError


def present(**inputs) -> dict:
    return {k: v for k, v in inputs.items() if v is not None}


def literal(ctx, spec, name):
    value = ctx.value(spec, name)
    if not isinstance(value, int | float | str | bool):
        raise ConversionError(f"input {name!r} must be a value, not a link, for the ComfyUI export to compute with it")
    return value
