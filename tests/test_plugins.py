"""Third-party node packs: entry points and plugin directories, failures, collisions."""

import subprocess
import sys

from lcmgraph import Engine, EngineConfig
from tests.helpers import doc, link

PACK_SOURCE = '''
from lcmgraph import Input, Node, Output
from lcmgraph import types as T


class {name}(Node):
    """Doubles a number."""
    category = "third party"
    inputs = (Input("x", T.FLOAT, default=1.0),)
    outputs = (Output("y", T.FLOAT),)

    def execute(self, ctx, x):
        return {{"y": 2 * x}}


class Show{name}(Node):
    output_node = True
    inputs = (Input("value", T.FLOAT),)

    def execute(self, ctx, value):
        ctx.add_result(values=[value])


NODES = [{name}, Show{name}]
'''


def write_distribution(site, dist, module, body):
    """A real installed distribution: a package plus a .dist-info with entry_points.txt."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(body)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"  # as pip names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lcmgraph.nodes]\n{module} = {module}\n")
    (info / "RECORD").write_text("")


def engine_for(tmp_path, **kw):
    return Engine(EngineConfig(home=tmp_path, models_dir=tmp_path, plugins_from_env=False, **kw))


def test_entry_point_pack_is_loaded(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_distribution(site, "lcmgraph-doubler", "doubler_pack", PACK_SOURCE.format(name="Doubler"))
    monkeypatch.syspath_prepend(str(site))
    engine = engine_for(tmp_path)
    assert "Doubler" in engine.registry
    pack = next(p for p in engine.registry.packs if p.name == "doubler_pack")
    assert pack.ok and pack.nodes == ["Doubler", "ShowDoubler"]
    assert "lcmgraph-doubler" in pack.source
    result = engine.run(doc({"d": ("Doubler", {"x": 4}), "s": ("ShowDoubler", {"value": link("d", "y")})}))
    assert result.outputs == {"s": {"values": [8.0]}}
    # built-in packs come through the same route
    assert engine.registry.pack_of("Int") == "core"


def test_plugin_directory_packs_file_and_package(tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "pkgpack").mkdir(parents=True)
    (plugins / "pkgpack" / "__init__.py").write_text("from .impl import NODES\n")
    (plugins / "pkgpack" / "impl.py").write_text(PACK_SOURCE.format(name="Pkg"))
    (plugins / "filepack.py").write_text(PACK_SOURCE.format(name="File"))
    (plugins / "_private.py").write_text("raise SystemExit('must not be imported')")
    engine = engine_for(tmp_path, plugin_dirs=[plugins])
    assert {"Pkg", "File"} <= set(engine.registry.names())
    assert [p.name for p in engine.registry.packs if p.source.startswith(str(plugins))] == ["filepack", "pkgpack"]


def test_plugin_directory_from_environment(tmp_path, monkeypatch):
    plugins = tmp_path / "envplugins"
    plugins.mkdir()
    (plugins / "envpack.py").write_text(PACK_SOURCE.format(name="Env"))
    monkeypatch.setenv("LCMGRAPH_PLUGINS", str(plugins))
    engine = Engine(EngineConfig(home=tmp_path, models_dir=tmp_path))
    assert "Env" in engine.registry


def test_broken_pack_is_reported_and_others_still_load(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("import definitely_not_a_module_xyz\n")
    (plugins / "fine.py").write_text(PACK_SOURCE.format(name="Fine"))
    engine = engine_for(tmp_path, plugin_dirs=[plugins])
    broken = next(p for p in engine.registry.packs if p.name == "broken")
    assert not broken.ok
    assert "Traceback" in broken.error
    assert "ModuleNotFoundError: No module named 'definitely_not_a_module_xyz'" in broken.error
    assert "Fine" in engine.registry


def test_name_collision_is_refused_naming_both_packs(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "alpha.py").write_text(PACK_SOURCE.format(name="Same"))
    (plugins / "beta.py").write_text(PACK_SOURCE.format(name="Same"))
    engine = engine_for(tmp_path, plugin_dirs=[plugins])
    beta = next(p for p in engine.registry.packs if p.name == "beta")
    assert beta.error == (
        "node type 'Same' from pack 'beta' collides with the one already registered "
        "by pack 'alpha'; pack 'beta' was not loaded"
    )
    assert engine.registry.pack_of("Same") == "alpha"


def test_pack_without_nodes_list_is_reported(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "empty.py").write_text("X = 1\n")
    engine = engine_for(tmp_path, plugin_dirs=[plugins])
    empty = next(p for p in engine.registry.packs if p.name == "empty")
    assert empty.error.startswith("pack 'empty'") and "defines no NODES list" in empty.error


def test_cli_reports_broken_pack_and_keeps_going(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("raise RuntimeError('bad plugin init')\n")
    proc = subprocess.run([sys.executable, "-m", "lcmgraph", "nodes", "--plugins", str(plugins)],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "warning: node pack 'broken'" in proc.stderr and "RuntimeError: bad plugin init" in proc.stderr
    assert "Int(value:INT)" in proc.stdout


def test_node_declaration_errors_surface_at_import():
    import pytest

    from lcmgraph import Input, Node

    with pytest.raises(ValueError, match="declares input 'x' twice"):
        type("Dup", (Node,), {"inputs": (Input("x", "FLOAT"), Input("x", "INT"))})
    with pytest.raises(ValueError, match="default of input 'n': 0 is below the minimum 1"):
        Input("n", "INT", default=0, min=1)
    with pytest.raises(ValueError, match="enum input 'e' needs choices"):
        Input("e", "ENUM")


SCHEME_PACK = '''
from pathlib import Path
from lcmgraph import Input, Node
from lcmgraph import types as T

STORE = Path({store!r})


class Vault:
    """Files named vault:NAME live in STORE; the identity is the content."""

    def check(self, engine, folder, rest):
        return None if (STORE / rest).is_file() else f"vault has no {{rest!r}}"

    def resolve(self, engine, folder, rest):
        return STORE / rest

    def identity(self, engine, folder, rest):
        return (STORE / rest).read_text()


class ShowFile(Node):
    output_node = True
    inputs = (Input("name", T.STRING, folder="loras"),)

    def execute(self, ctx, name):
        ctx.add_result(text=[ctx.resolve_file("loras", name).read_text()])


NODES = [ShowFile]
FILE_SCHEMES = {{"vault": Vault()}}
'''


def test_pack_file_schemes_resolve_validate_and_key(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.txt").write_text("alpha")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "vaultpack.py").write_text(SCHEME_PACK.format(store=str(store)))
    engine = engine_for(tmp_path, plugin_dirs=[plugins])
    good = doc({"s": ("ShowFile", {"name": "vault:a.txt"})})
    assert engine.run(good).outputs == {"s": {"text": ["alpha"]}}
    bad = doc({"s": ("ShowFile", {"name": "vault:zz.txt"})})
    assert [str(p) for p in engine.validate(bad)] == ["node 's' input 'name': vault has no 'zz.txt'"]
    # an unknown scheme is just a (missing) file name in the folder
    (problem,) = engine.validate(doc({"s": ("ShowFile", {"name": "nope:a.txt"})}))
    assert "'nope:a.txt' was not found in the loras folder" in problem.message


def test_display_names_are_derived_from_type_names():
    from lcmgraph import Node

    names = {n: type(n, (Node,), {}).display_name for n in ("ApplyLoRA", "VAEDecode", "LCMSampler", "Img2Img")}
    assert names == {"ApplyLoRA": "Apply LoRA", "VAEDecode": "VAE Decode", "LCMSampler": "LCM Sampler",
                     "Img2Img": "Img2Img"}


def test_a_node_without_execute_is_refused_at_registration():
    from lcmgraph import Node
    from lcmgraph.registry import NodeRegistry, RegistryError

    registry = NodeRegistry()
    try:
        registry.register_pack("lazy", [type("Lazy", (Node,), {})])
    except RegistryError as exc:
        assert str(exc) == "pack 'lazy': node 'Lazy' does not implement execute()"
    else:
        raise AssertionError("expected RegistryError")
    assert "Lazy" not in registry
