from __future__ import annotations

import pytest
import torch

from tests.helpers import make_engine

# Two cores: keep torch from oversubscribing them.
torch.set_num_threads(1)


@pytest.fixture
def engine(tmp_path):
    return make_engine(tmp_path)
