"""Bench pack: an output node that ends a workflow at an IMAGE without writing a
file, so the benchmark's image is what the diffusers baselines return (a PIL
image made on the host), not a PNG on disk."""

from lcmgraph import Input, Node
from lcmgraph import types as T


class BenchImage(Node):
    """Requests its image; bench/gpu_worker.py reads it from the run's values."""

    category = "testing"
    output_node = True
    inputs = (Input("image", T.IMAGE),)

    def execute(self, ctx, image):
        return {}


NODES = [BenchImage]
