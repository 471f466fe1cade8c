"""The rules the editor reads from the node schema (GET /api/nodes) instead of
keeping copies: the link rule as data, and the node-id pattern."""

import json
import re

from lcmgraph import types as T
from lcmgraph import workflow as wf
from tests.server.harness import serve

#: Ids at the edges of the rule; the browser test (tests/web) runs them through JS too.
NODE_ID_SAMPLES = [
    "a", "A", "0", "_", "ckpt", "vae_decode", "node.2", "ns:sampler", "a-b", "x" * 64, "_" + "." * 63,
    "", ".a", ":a", "-a", "x" * 65, "a b", "a/b", "a\n", "\na", "a\r", "é", "a\u00e9", "ａ", "a$", "a*",
    "1:2:3", "a\t", "a\x00",
]


def parse_accepts(node_id: str) -> bool:
    _, problems = wf.parse({"nodes": {node_id: {"type": "Anything", "inputs": {}}}})
    return not problems


def rule_from_table(rules: dict, output_type: str, input_type: str) -> bool:
    """The link rule as a client reads the served table (what web/src/types.js does)."""
    any_type = rules["any"]
    return (output_type == input_type or any_type in (output_type, input_type)
            or output_type in rules["also_accepts"].get(input_type, []))


def test_the_schema_serves_the_link_rules_and_the_node_id_pattern(tmp_path):
    async def body(h):
        _, schema = await h.call("GET", "/api/nodes", 200)
        assert schema["link_rules"] == {"any": "*", "also_accepts": {"ENUM": ["STRING"], "FLOAT": ["INT"]}}
        assert schema["link_rules"] == T.link_rules()
        assert schema["node_id_pattern"] == wf.NODE_ID_PATTERN
        assert schema == h.server.engine.registry.schema()

    serve(tmp_path, body)


def test_link_compatible_is_the_served_table():
    rules = json.loads(json.dumps(T.link_rules()))  # as a client receives it
    types = [*T.BUILTIN_TYPES, T.ANY, "UPSCALE_MODEL", ""]
    for output_type in types:
        for input_type in types:
            assert T.link_compatible(output_type, input_type) == rule_from_table(rules, output_type, input_type), \
                (output_type, input_type)
    assert T.link_compatible(T.INT, T.FLOAT) and not T.link_compatible(T.FLOAT, T.INT)
    assert T.link_compatible(T.STRING, T.ENUM) and not T.link_compatible(T.ENUM, T.STRING)


def test_node_id_pattern_accepts_exactly_what_parse_accepts():
    # An ECMAScript test of ^...$ is a Python fullmatch (Python's $ alone would also
    # match before a final newline); the browser test runs the same ids through JS.
    pattern = re.compile(wf.NODE_ID_PATTERN)
    for node_id in NODE_ID_SAMPLES:
        assert bool(pattern.fullmatch(node_id)) == parse_accepts(node_id) == bool(wf.NODE_ID.match(node_id)), \
            repr(node_id)
    assert parse_accepts("x" * 64) and not parse_accepts("x" * 65) and not parse_accepts("a\n")


def test_the_published_json_schema_uses_the_same_pattern():
    published = wf.json_schema()
    assert published["properties"]["nodes"]["propertyNames"]["pattern"] == wf.NODE_ID_PATTERN
