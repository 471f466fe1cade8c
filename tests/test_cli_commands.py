"""Packs add ``lcmgraph`` subcommands through CLI_COMMANDS; the engine knows none of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lcmgraph import Input, Node, Output, cli
from lcmgraph import types as T
from lcmgraph.registry import NodeRegistry, RegistryError

ROOT = Path(__file__).parent.parent


class Echo(Node):
    inputs = (Input("x", T.INT, default=0),)
    outputs = (Output("x", T.INT),)

    def execute(self, ctx, x):
        return {"x": x}


def _add_hello(subparsers):
    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("--name", default="world")
    p.set_defaults(handler=lambda args: print(f"hello {args.name}") or 7)


def test_a_pack_command_is_listed_and_runs(monkeypatch, capsys):
    monkeypatch.setattr(cli, "cli_commands", lambda: [("greeter", _add_hello)])
    assert cli.main(["--help"]) == 0
    assert "say hello" in capsys.readouterr().out
    assert cli.main(["hello", "--name", "pack"]) == 7
    assert capsys.readouterr().out == "hello pack\n"


def test_a_broken_pack_command_is_reported_and_the_rest_still_works(monkeypatch, capsys):
    def broken(subparsers):
        raise RuntimeError("no parser today")

    monkeypatch.setattr(cli, "cli_commands", lambda: [("broken", broken), ("greeter", _add_hello)])
    assert cli.main(["hello"]) == 7
    err = capsys.readouterr().err
    assert "node pack 'broken'" in err and "no parser today" in err


def test_a_pack_cannot_take_a_built_in_command(monkeypatch, capsys):
    def takes_run(subparsers):
        subparsers.add_parser("run")

    monkeypatch.setattr(cli, "cli_commands", lambda: [("thief", takes_run)])
    parser = cli.build_parser()
    assert "node pack 'thief'" in capsys.readouterr().err
    assert parser.parse_args(["run", "w.json"]).workflow == "w.json"


def test_cli_commands_must_be_functions():
    registry = NodeRegistry()
    with pytest.raises(RegistryError, match="CLI_COMMANDS"):
        registry.register_pack("bad", [Echo], cli_commands=["train"])
    assert registry.names() == []
    registry.register_pack("good", [Echo], cli_commands=[_add_hello])
    assert registry.cli_commands() == [("good", _add_hello)]


def test_the_diffusion_pack_adds_the_trainers():
    from lcmgraph_nodes import diffusion
    from lcmgraph_nodes.diffusion.train.cli import run_train
    from lcmgraph_nodes.diffusion.train.lora_cli import run_lora

    assert ("diffusion", diffusion.CLI_COMMANDS[0]) in cli.cli_commands()
    parser = cli.build_parser()
    assert parser.parse_args(["train", "unet"]).handler is run_train
    for name in ("train-lcm-lora", "train-lora"):
        assert parser.parse_args([name, "--run", "r"]).handler is run_lora


def test_the_engine_does_not_import_the_diffusion_pack():
    # lcmgraph (the engine) must work without the diffusion pack: no import of it anywhere.
    hits = [str(p.relative_to(ROOT)) for p in (ROOT / "lcmgraph").rglob("*.py")
            if "lcmgraph_nodes" in p.read_text()]
    assert hits == []


def test_validate_does_not_import_torch():
    code = ("import sys; from lcmgraph.cli import main; "
            "rc = main(['validate', 'workflows/txt2img_lcm.json']); "
            "sys.exit(rc or ('torch' in sys.modules and 3))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
