"""The one weight-file reader: safetensors with their metadata, plain-tensor pickles,
and a pickle that would run code refused (the reason says why, the caller names the file)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from lcmgraph.weight_files import WeightFileError, read_weights


def test_safetensors_with_metadata_and_plain_pickles(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "w.safetensors"), metadata={"heads": "2"})
    tensors, metadata = read_weights(tmp_path / "w.safetensors")
    assert torch.equal(tensors["a"], torch.ones(2)) and metadata == {"heads": "2"}
    torch.save({"image_proj": {"w": torch.zeros(1)}}, tmp_path / "w.bin")
    nested, metadata = read_weights(tmp_path / "w.bin")
    assert torch.equal(nested["image_proj"]["w"], torch.zeros(1)) and metadata == {}


class Payload:
    """Any class of the pickling program: unpickling it would import and run that program's code."""


def test_a_pickle_with_code_is_refused(tmp_path):
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(WeightFileError, match=r"^could not be read \(only .safetensors, and .pt/.pth/.bin files "
                                              r"holding plain tensors, are read\): UnpicklingError"):
        read_weights(tmp_path / "evil.pt")
