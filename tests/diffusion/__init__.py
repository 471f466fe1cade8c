"""Tests of the diffusion node pack (a package so its conftest does not shadow tests/conftest.py)."""
