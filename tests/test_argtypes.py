"""Command-line numbers: the range each option states, NaN never inside it, "auto" where allowed."""

from __future__ import annotations

import pytest

from lcmgraph.cli import build_parser


@pytest.mark.parametrize("argv, dest, value", [
    (["serve", "--max-pixels", "1,048,576"], "max_pixels", 1_048_576),
    (["serve", "--max-memory", "auto"], "max_memory", "auto"),
    (["serve", "--max-memory", "0.5"], "max_memory", 0.5),
    (["serve", "--batch", "auto"], "batch", "auto"),
    (["serve", "--keep-days", "0"], "keep_days", 0.0),
    (["run", "w.json", "--threads", "3"], "threads", 3),
])
def test_numbers_in_range_are_read(argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize("argv, message", [
    (["serve", "--max-memory", "nan"], "argument --max-memory: expected 'auto' or gigabytes above 0, got 'nan'"),
    (["serve", "--max-memory", "0"], "argument --max-memory: expected 'auto' or gigabytes above 0, got '0'"),
    (["serve", "--header-timeout", "nan"], "argument --header-timeout: expected seconds from 0.1 to 86400, got 'nan'"),
    (["serve", "--batch", "65"], "argument --batch: expected 'auto' or a whole number from 1 to 64, got '65'"),
    (["serve", "--keep-history", "1.5"], "argument --keep-history: expected a whole number of at least 1, got '1.5'"),
    (["run", "w.json", "--threads", "0"], "argument --threads: expected a whole number of threads above 0, got '0'"),
])
def test_numbers_out_of_range_name_the_range(argv, message, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert message in capsys.readouterr().err


def test_auto_is_only_read_where_allowed(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--max-pixels", "auto"])
    assert "argument --max-pixels: expected a whole number above 0, got 'auto'" in capsys.readouterr().err
