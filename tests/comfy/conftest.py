"""Fixtures for the ComfyUI import/export tests: the diffusion tests' tiny
models (one session-wide build) and engines/registries that know the
ComfyUI mappings."""

from __future__ import annotations

import pytest

from tests.diffusion.conftest import models  # noqa: F401 - the session's tiny models folder

from .helpers import new_engine, new_registry


@pytest.fixture(scope="module")
def registry():
    return new_registry()


@pytest.fixture(scope="module")
def engine(models, tmp_path_factory):  # noqa: F811
    return new_engine(models, tmp_path_factory.mktemp("comfy"))
