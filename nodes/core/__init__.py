"""Core pack: primitive value nodes that feed widgets from one place.

A "Seed" INT node wired into several samplers, or one prompt STRING shared
by two TextEncodes, is how sweeps and the editor keep values in sync.
"""

from lcmgraph import Input, Node, Output
from lcmgraph import types as T


class Int(Node):
    """An integer value (a seed, a step count) to wire into several inputs."""

    category = "primitive"
    inputs = (Input("value", T.INT, default=0, min=-(2**63), max=2**63 - 1),)
    outputs = (Output("value", T.INT),)

    def execute(self, ctx, value):
        return {"value": value}


class Float(Node):
    """A number to wire into several inputs."""

    category = "primitive"
    inputs = (Input("value", T.FLOAT, default=0.0),)
    outputs = (Output("value", T.FLOAT),)

    def execute(self, ctx, value):
        return {"value": value}


class String(Node):
    """A text (a prompt) to wire into several inputs."""

    category = "primitive"
    inputs = (Input("value", T.STRING, default="", multiline=True),)
    outputs = (Output("value", T.STRING),)

    def execute(self, ctx, value):
        return {"value": value}


class Boolean(Node):
    """A switch to wire into several inputs."""

    category = "primitive"
    inputs = (Input("value", T.BOOLEAN, default=False),)
    outputs = (Output("value", T.BOOLEAN),)

    def execute(self, ctx, value):
        return {"value": value}


NODES = [Int, Float, String, Boolean]
