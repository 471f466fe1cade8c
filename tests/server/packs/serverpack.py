"""Nodes the server tests need beyond the math pack: step previews and a
result whose file lies outside every served folder."""

from lcmgraph import Input, Node
from lcmgraph import types as T


class PreviewSteps(Node):
    """Output node: `steps` progress steps, each with a 320x200 preview image."""

    category = "test"
    output_node = True
    inputs = (Input("steps", T.INT, default=3, min=1, max=100),)

    def execute(self, ctx, steps):
        from PIL import Image

        for i in range(steps):
            ctx.progress(i + 1, steps, preview=Image.new("RGB", (320, 200), (40 * i % 256, 90, 200)))
        ctx.add_result(values=[steps])
        return {}


class WriteElsewhere(Node):
    """Output node: reports a file outside the output folder (its path must not leak)."""

    category = "test"
    output_node = True
    inputs = (Input("value", T.FLOAT, default=1.0),)

    def execute(self, ctx, value):
        path = ctx.engine.home / "elsewhere.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not served")
        ctx.add_result(images=[{"filename": "elsewhere.png", "path": str(path)}])
        return {}


NODES = [PreviewSteps, WriteElsewhere]
