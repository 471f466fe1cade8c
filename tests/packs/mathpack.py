"""A tiny node pack used by the engine tests: arithmetic on numbers and
tensors, a result collector, a failing node and a slow interruptible node.
Loaded through the plugin-directory route like any third-party pack."""

import time

import torch

from lcmgraph import Input, Node, Output
from lcmgraph import types as T


class Constant(Node):
    """A number."""

    category = "test"
    inputs = (Input("value", T.FLOAT, default=1.0, min=-1e6, max=1e6),)
    outputs = (Output("value", T.FLOAT),)

    def execute(self, ctx, value):
        return {"value": value}


class Add(Node):
    """a + b."""

    category = "test"
    inputs = (Input("a", T.FLOAT), Input("b", T.FLOAT, default=0.0))
    outputs = (Output("sum", T.FLOAT),)

    def execute(self, ctx, a, b):
        return {"sum": a + b}


class Scale(Node):
    """x * factor, with an integer repeat count to test INT widgets."""

    category = "test"
    inputs = (
        Input("x", T.FLOAT),
        Input("factor", T.FLOAT, default=2.0, min=0.0, max=10.0),
        Input("repeat", T.INT, default=1, min=1, max=8),
        Input("mode", T.ENUM, default="mul", choices=("mul", "pow")),
    )
    outputs = (Output("y", T.FLOAT),)

    def execute(self, ctx, x, factor, repeat, mode):
        for _ in range(repeat):
            x = x * factor if mode == "mul" else x**factor
        return {"y": x}


class MakeTensor(Node):
    """A float32 tensor of `size` elements filled with `value` (for byte-budget tests)."""

    category = "test"
    inputs = (Input("value", T.FLOAT), Input("size", T.INT, default=1024, min=1, max=2**28))
    outputs = (Output("tensor", T.LATENT),)

    def execute(self, ctx, value, size):
        return {"tensor": torch.full((size,), float(value))}


class TensorSum(Node):
    category = "test"
    inputs = (Input("tensor", T.LATENT),)
    outputs = (Output("total", T.FLOAT),)

    def execute(self, ctx, tensor):
        return {"total": float(tensor.sum())}


class Collect(Node):
    """Output node: reports the value it receives."""

    category = "test"
    output_node = True
    inputs = (Input("value", T.FLOAT), Input("label", T.STRING, default=""))

    def execute(self, ctx, value, label):
        ctx.add_result(values=[value])
        return {}


class Fail(Node):
    """Raises, to test error reporting."""

    category = "test"
    inputs = (Input("x", T.FLOAT), Input("message", T.STRING, default="boom"))
    outputs = (Output("y", T.FLOAT),)

    def execute(self, ctx, x, message):
        raise RuntimeError(message)


class Slow(Node):
    """Counts `steps` steps of `delay` seconds, reporting progress (interruptible)."""

    category = "test"
    inputs = (Input("x", T.FLOAT), Input("steps", T.INT, default=5, min=1, max=1000),
              Input("delay", T.FLOAT, default=0.01, min=0.0, max=5.0))
    outputs = (Output("y", T.FLOAT),)

    def execute(self, ctx, x, steps, delay):
        for i in range(steps):
            time.sleep(delay)
            ctx.progress(i + 1, steps)
        return {"y": x}


class Noise(Node):
    """A random number: not cacheable."""

    category = "test"
    cacheable = False
    inputs = ()
    outputs = (Output("value", T.FLOAT),)

    def execute(self, ctx):
        return {"value": float(torch.rand(()))}


class SolidImage(Node):
    """Output node: writes an 8x8 grey PNG whose level is `value` (0..255)."""

    category = "test"
    output_node = True
    inputs = (Input("value", T.FLOAT),)

    def execute(self, ctx, value):
        from PIL import Image

        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        path = ctx.output_dir / f"solid_{int(value)}.png"
        Image.new("L", (8, 8), int(value)).save(path)
        ctx.add_result(images=[{"filename": path.name, "path": str(path)}])


class Pair(Node):
    """Two outputs: ``first`` depends only on ``a`` (declared), ``sum`` on both."""

    category = "test"
    inputs = (Input("a", T.FLOAT), Input("b", T.FLOAT, default=0.0))
    outputs = (Output("first", T.FLOAT, depends_on=("a",)), Output("sum", T.FLOAT))

    def execute(self, ctx, a, b):
        return {"first": a, "sum": a + b}


NODES = [SolidImage, Constant, Add, Scale, MakeTensor, TensorSum, Collect, Fail, Slow, Noise, Pair]
