"""Shared helpers for the engine tests (import as ``from tests.helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

from lcmgraph import Engine, EngineConfig

TESTS = Path(__file__).parent
PACKS = TESTS / "packs"


def make_engine(tmp_path: Path, **overrides) -> Engine:
    """An isolated engine with the test pack loaded from its plugin directory."""
    config = EngineConfig(
        plugin_dirs=[PACKS],
        plugins_from_env=False,
        home=tmp_path / "home",
        models_dir=tmp_path / "models",
        output_dir=tmp_path / "out",
        **overrides,
    )
    return Engine(config)


def doc(nodes: dict, **extra) -> dict:
    """A workflow document from a compact {id: (type, inputs)} mapping."""
    out = {"format": "lcmgraph.workflow", "version": 1,
           "nodes": {k: {"type": t, "inputs": i} for k, (t, i) in nodes.items()}}
    out.update(extra)
    return out


def link(node: str, output: str) -> dict:
    return {"link": [node, output]}


# -- comparing two differently loaded copies of a model -----------------------------------
#
# Bitwise equality is only portable where both sides run the same kernels on the
# same memory layout: the same loaded weights, two loads through the same loader
# (a diffusers folder is memory-mapped, so its tensors sit at the file's offsets
# every time), data compared with data (weights, token ids, file bytes).
# It is NOT portable between copies loaded or allocated differently: a diffusers
# folder vs a single file (mapped at its own file's offsets, or converted into
# fresh buffers), a safetensors round trip into new buffers, fused vs unfused weights,
# another process. MKL (torch's CPU BLAS) picks its GEMM code path by CPU and by
# the operands' alignment; two paths sum in different orders, so float32 results
# differ in the last bits (seen: 2.4e-7 on SDXL's projected text embeds, while
# the hidden states before it happened to be equal). Such comparisons use
# ``assert_close_portable``: a stated tolerance far below what a real loading
# bug moves (a swapped, transposed or missing tensor changes outputs at order
# one; fp16 rounding alone is 4.9e-4 relative per weight).

#: Relative tolerance: about 8 float32 ulps (eps = 1.19e-7).
PORTABLE_RTOL = 1e-6
#: Absolute floor for values near zero of unit-scale activations: their rounding
#: error scales with the summands (~1), not with the (small) result.
PORTABLE_ATOL = 1e-6
#: Tolerance for a whole network's output (a UNet forward: dozens of layers, each
#: adding its last-bit differences): measured 2.7e-6 on the tiny SDXL UNet between
#: a folder load and a single file mapped at other file offsets. Five orders of
#: magnitude below what a swapped or missing tensor moves (order one).
NETWORK_TOL = 1e-5
#: Absolute tolerance for IMAGEs (0..1) after a few denoising steps and a VAE
#: decode, where last-bit differences grow: rounding every ControlNet weight by
#: one ulp moved the tiny models' pixels by at most 1.1e-6 (sd15 and sdxl,
#: measured), so 1e-5 leaves headroom below the > 1e-4 the tests call a change.
#: 1e-5 is 0.003 of a uint8 level: a saved PNG can still differ by one level
#: where a value sits on a rounding boundary, so PNG bytes are not compared.
IMAGE_ATOL = 1e-5


def assert_close_portable(actual, expected, what: str, *, rtol: float = PORTABLE_RTOL,
                          atol: float = PORTABLE_ATOL) -> None:
    """``actual`` equals ``expected`` up to float32 summation order (see above).

    ``what`` names the compared values in the failure message. Takes torch
    tensors or numpy arrays (same shape and dtype on both sides)."""
    import torch

    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol,
                               msg=lambda detail: f"{what}: {detail}")


def file_engine(tmp_path: Path) -> Engine:
    """An engine with two nodes over the input folder: ReadText (a file input,
    keyed by the file's identity) and Show (an output node)."""
    from lcmgraph import Input, Node, Output
    from lcmgraph import types as T
    from lcmgraph.registry import NodeRegistry

    class ReadText(Node):
        inputs = (Input("name", T.STRING, folder="input"),)
        outputs = (Output("text", T.STRING),)

        def execute(self, ctx, name):
            return {"text": ctx.resolve_file("input", name).read_text()}

    class Show(Node):
        output_node = True
        inputs = (Input("text", T.STRING),)

        def execute(self, ctx, text):
            ctx.add_result(text=text)

    registry = NodeRegistry()
    registry.register_pack("files", [ReadText, Show])
    (tmp_path / "input").mkdir(exist_ok=True)
    return Engine(EngineConfig(models_dir=tmp_path, home=tmp_path), registry=registry)

