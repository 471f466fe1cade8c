"""The lazy safetensors reader returns what the format's own loader returns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lcmgraph_nodes.diffusion.formats.single_file_reader import (
    LazyStateDict,
    SafetensorsFormatError,
)
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mixed(tmp_path):
    gen = torch.Generator().manual_seed(3)
    tensors = {
        "f32": torch.randn(3, 5, generator=gen),
        "f16": torch.randn(7, generator=gen).half(),
        "bf16": torch.randn(2, 2, 2, generator=gen).bfloat16(),
        "i64": torch.arange(6).reshape(2, 3),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path), metadata={"note": "hi"})
    return path


def test_reads_every_dtype_like_load_file(mixed):
    expected = load_file(str(mixed))
    lazy = LazyStateDict(mixed)
    assert set(lazy) == set(expected) and len(lazy) == len(expected) and lazy.metadata["note"] == "hi"
    for key, value in expected.items():
        got = lazy[key]
        assert got.dtype == value.dtype and got.shape == value.shape and torch.equal(got, value)
        assert lazy.shape(key) == tuple(value.shape) and lazy.file_dtype(key) == value.dtype


def test_converts_only_floating_point_tensors(mixed):
    expected = load_file(str(mixed))
    lazy = LazyStateDict(mixed, dtype=torch.float32)
    assert lazy["f16"].dtype == torch.float32 and torch.equal(lazy["f16"], expected["f16"].float())
    assert lazy["bf16"].dtype == torch.float32 and lazy["i64"].dtype == torch.int64
    assert lazy["flag"].dtype == torch.bool


def test_converting_out_of_the_map_keeps_every_neighbour_intact(tmp_path):
    """Converted tensors come out of the map, whose pages under them are handed
    back; tensors that share those pages' ends (here int64 ones, which are views
    of the map, one of them written to as a fused LoRA would) keep their values."""
    gen = torch.Generator().manual_seed(5)
    tensors = {}
    for i in range(6):  # several pages each, at offsets that are not page-aligned
        tensors[f"w{i}"] = torch.randn(1000 + 37 * i, 3, generator=gen)
        tensors[f"ids{i}"] = torch.arange(11 + i, dtype=torch.int64)
    path = tmp_path / "pages.safetensors"
    save_file(tensors, str(path))
    expected = load_file(str(path))
    lazy = LazyStateDict(path, dtype=torch.bfloat16)
    ids = {k: lazy[k] for k in expected if k.startswith("ids")}
    ids["ids2"].fill_(-1)  # a private write into the map, next to w2's pages
    weights = {k: lazy[k] for k in expected if k.startswith("w")}
    for key, value in weights.items():
        assert weights[key].dtype == torch.bfloat16 and torch.equal(weights[key], value.to(torch.bfloat16))
    for key, value in ids.items():
        assert torch.equal(value, torch.full_like(value, -1) if key == "ids2" else expected[key]), key
    assert torch.equal(lazy["w3"], expected["w3"].to(torch.bfloat16))  # read again after its pages went


def test_a_write_to_a_mapped_weight_reaches_neither_the_file_nor_another_load(mixed):
    original = load_file(str(mixed))["f32"]
    a = LazyStateDict(mixed)["f32"]  # a view of a copy-on-write map: no copy made
    a.zero_()  # what fusing a LoRA in place does
    assert torch.equal(load_file(str(mixed))["f32"], original)  # the file is untouched
    assert torch.equal(LazyStateDict(mixed)["f32"], original)  # and a second load sees the file


def test_a_file_replaced_while_loaded_leaves_the_weights_intact(mixed, tmp_path):
    original = load_file(str(mixed))["f32"]
    a = LazyStateDict(mixed)["f32"]
    replacement = tmp_path / "new.safetensors"
    save_file({"f32": torch.zeros(3, 5)}, str(replacement))
    replacement.replace(mixed)  # how downloads and copies replace a file: a rename
    assert torch.equal(a, original)


def test_data_cut_short_is_refused(mixed, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(mixed.read_bytes()[:-8])
    with pytest.raises(SafetensorsFormatError, match="not a valid safetensors file"):
        LazyStateDict(cut)


def test_load_rss_helper_measures_a_load_in_a_fresh_process(tiny_sd15):
    """bench/load_rss.py's measurement, on the tiny file (its numbers go in the README)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("load_rss", ROOT / "bench" / "load_rss.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure("ours", tiny_sd15.file, tiny_sd15.folder, "float32")
    assert "error" not in result, result
    weights = sum(t.numel() * t.element_size() for t in load_file(str(tiny_sd15.file)).values())
    assert result["params_bytes"] == weights
    assert result["peak_used"] >= result["peak"] >= result["before"] > 0


def _resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident set from /proc (Linux)")
def test_release_hands_a_views_pages_back_and_the_values_come_back_from_the_file(tmp_path):
    gen = torch.Generator().manual_seed(5)
    tensors = {"big": torch.randn(16, 1024, 1024, generator=gen), "small": torch.randn(10, generator=gen)}
    path = tmp_path / "big.safetensors"
    save_file(tensors, str(path))
    sd = LazyStateDict(path)
    big, small = sd["big"], sd["small"]
    assert float(big.sum()) == pytest.approx(float(tensors["big"].sum()), rel=1e-4)  # 64 MB faulted in
    before = _resident_mb()
    anonymous = torch.ones(1000)
    assert sd.release([anonymous]) == 0  # not the file's: never touched
    assert sd.release([big, small]) == (16 * 1024 * 1024 + 10) * 4
    assert before - _resident_mb() > 48  # the view's pages left the resident set
    assert torch.equal(big, tensors["big"]) and torch.equal(small, tensors["small"])  # read back from the file
    assert torch.equal(anonymous, torch.ones(1000))
    converted = LazyStateDict(path, dtype=torch.bfloat16)["small"]
    assert sd.release([converted]) == 0  # a converted copy is not a view of this map
