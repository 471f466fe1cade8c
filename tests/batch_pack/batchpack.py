"""Test pack for batching: a node with an ``execute_batch`` hook that records
its calls in a per-engine service (no global state), refuses inputs that
cannot share a call, and fails on a bad input."""

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

CALLS = "batchtest.calls"


class Double(Node):
    """y = x * factor, in `steps` progress steps; negative x fails. Batched when the factors agree."""

    category = "test"
    inputs = (
        Input("x", T.FLOAT),
        Input("factor", T.FLOAT, default=2.0, min=0.0, max=10.0),
        Input("steps", T.INT, default=1, min=1, max=100),
    )
    outputs = (Output("y", T.FLOAT),)
    batch_inputs = ()  # x only ever comes through a link; factor and steps must match

    def execute(self, ctx, x, factor, steps):
        ctx.service(CALLS).append(("execute", x))
        if x < 0:
            raise ValueError(f"x must not be negative, got {x}")
        for step in range(steps):
            ctx.progress(step + 1, steps)
        return {"y": x * factor}

    def execute_batch(self, ctx, inputs_list):
        xs = [inputs["x"] for inputs in inputs_list]
        if len({(i["factor"], i["steps"]) for i in inputs_list}) > 1:
            ctx.service(CALLS).append(("refused", xs))
            return None
        ctx.service(CALLS).append(("batch", xs))
        if any(x < 0 for x in xs):
            raise ValueError("a negative x in the batch")
        steps = inputs_list[0]["steps"]
        for step in range(steps):
            ctx.progress(step + 1, steps, previews=[f"preview of {x}" for x in xs])
        return [{"y": i["x"] * i["factor"]} for i in inputs_list]


NODES = [Double]
SERVICES = {CALLS: lambda engine: []}
