"""A third-party-style node pack for the editor tests: the editor must show
these nodes, their widgets and their own socket type with no change to web/."""

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

PALETTE = "PALETTE"  # a type only this pack knows


class MakePalette(Node):
    """A palette of a few levels per channel."""

    category = "editor test"
    inputs = (
        Input("levels", T.INT, default=4, min=2, max=16, step=2, description="levels per channel"),
        Input("mode", T.ENUM, default="round", choices=("round", "floor")),
    )
    outputs = (Output("palette", PALETTE),)

    def execute(self, ctx, levels, mode):
        return {"palette": (levels, mode)}


class Posterize(Node):
    """Reduce an image to the levels of a palette."""

    category = "editor test"
    inputs = (Input("image", T.IMAGE), Input("palette", PALETTE))
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, palette):
        levels, mode = palette
        scaled = image * (levels - 1)
        scaled = scaled.round() if mode == "round" else scaled.floor()
        return {"image": scaled / (levels - 1)}


NODES = [MakePalette, Posterize]
