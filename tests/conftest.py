from __future__ import annotations

import os

import pytest
import torch

from tests.helpers import make_engine

# Two cores: keep torch from oversubscribing them.
torch.set_num_threads(1)
# dtype=auto is bf16 on CPUs with native bf16 (nodes/diffusion/models/cpu.py): the suite
# pins fp32 (subprocesses inherit this), so its numbers are the same on every CPU.
os.environ["LCMGRAPH_CPU_BF16"] = "0"


@pytest.fixture
def engine(tmp_path):
    return make_engine(tmp_path)
