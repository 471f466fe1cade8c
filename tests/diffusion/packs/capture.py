"""Test pack: an output node that makes any value reachable from a run's result."""

from lcmgraph import Input, Node
from lcmgraph import types as T


class Capture(Node):
    """Requests its input so that a test can read it from RunResult.values."""

    category = "testing"
    output_node = True
    inputs = (Input("value", T.ANY),)

    def execute(self, ctx, value):
        return {}


NODES = [Capture]
