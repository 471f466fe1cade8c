"""Property: whatever ComfyUI-shaped garbage comes in (tests/comfy/mutations.py),
lcmgraph.comfy gives a result or a ComfyImportError / ComfyExportError (PNG
text: a WorkflowFileError), never another exception. Seeded and bounded."""

from __future__ import annotations

import json
import random
import time

from lcmgraph.comfy import ComfyExportError, ComfyImportError, detect, load_any, to_api
from lcmgraph.comfy.api_format import is_link
from lcmgraph.comfy.png import document_from_text
from lcmgraph.workflow import FORMAT, WorkflowFileError, parse

from . import mutations

SEED = 20261130
DOCUMENTS = 4000
PNG_TEXTS = 400
TIME_BUDGET = 45.0


def _import(document, registry, allow_missing: bool, outcomes: dict) -> dict | None:
    try:
        result = load_any(document, registry, allow_missing=allow_missing)
    except ComfyImportError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems), exc.problems
        str(exc)
        outcomes["refused"] += 1
        return None
    if detect(document) not in ("comfy_api", "comfy_ui"):
        assert result is document  # not ComfyUI's: passed on for the workflow parser
        outcomes["passed on"] += 1
        return None
    assert result["format"] == FORMAT
    json.dumps(result)  # what the server sends back
    parse(result)  # readable by the workflow parser, whatever it finds wrong
    outcomes["imported"] += 1
    return result


def _export(document, registry, outcomes: dict) -> None:
    try:
        prompt = to_api(document, registry)
    except ComfyExportError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems), exc.problems
        outcomes["export refused"] += 1
        return
    json.dumps(prompt)
    for comfy_id, entry in prompt.items():
        assert isinstance(entry["class_type"], str) and isinstance(entry["inputs"], dict), (comfy_id, entry)
        assert all(is_link(v) for v in entry["inputs"].values() if isinstance(v, list)), (comfy_id, entry)
    outcomes["exported"] += 1


def test_mutated_comfy_documents_import_and_export_or_are_refused(registry):
    rng = random.Random(SEED)
    outcomes = dict.fromkeys(["imported", "refused", "passed on", "exported", "export refused"], 0)
    started = time.monotonic()
    for _ in range(DOCUMENTS):
        document = mutations.random_document(rng)
        imported = _import(document, registry, rng.random() < 0.3, outcomes)
        if imported is not None:
            _export(imported, registry, outcomes)
            _export(mutations.mutate(rng, imported), registry, outcomes)  # lcmgraph documents of odd shapes
    assert time.monotonic() - started < TIME_BUDGET
    # The mutants reach every outcome, each often: the test exercises the converters, not just their doors.
    assert min(outcomes.values()) > DOCUMENTS // 50, outcomes


def test_the_same_mutant_gives_the_same_outcome(registry):
    rng = random.Random(SEED + 1)
    for _ in range(200):
        document = mutations.random_document(rng)
        first = second = None
        try:
            first = load_any(document, registry)
        except ComfyImportError as exc:
            first = exc.problems
        try:
            second = load_any(json.loads(json.dumps(document)), registry)
        except ComfyImportError as exc:
            second = exc.problems
        assert first == second


def test_png_text_chunks_of_garbage(registry):
    rng = random.Random(SEED + 2)
    seen = {"read": 0, "refused": 0}
    for _ in range(PNG_TEXTS):
        chunks = {}
        for key in rng.sample(["prompt", "workflow", "lcmgraph.workflow", "parameters"], rng.randint(0, 3)):
            text = json.dumps(mutations.random_document(rng))
            roll = rng.random()
            if roll < 0.2:
                text = text[: rng.randrange(len(text) + 1)]
            elif roll < 0.3:
                text = rng.choice(["NaN", "-Infinity", "1" * 5000, "[" * 5000, "", "null", '"x"', "\ufeff{}"])
            chunks[key] = text
        try:
            load_any(document_from_text(chunks, "fuzz.png"), registry)
            seen["read"] += 1
        except WorkflowFileError:  # ComfyImportError is one too
            seen["refused"] += 1
    assert min(seen.values()) > PNG_TEXTS // 20, seen


#: What every JSON path of the real files gets in turn (and then the key or item is removed).
WRONG = [None, "x", 1.5, 2**70, {}, ["3", 0]]


def _every_path(value, prefix=()):
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _every_path(child, (*prefix, key))


def test_a_wrong_value_at_every_path_of_the_real_files(registry):
    """Exhaustive where the random test samples: each path of each real file,
    each wrong value, and the path removed. (This found a Sampler steps of
    1.5 that kept the export computing for ever.)"""
    outcomes = dict.fromkeys(["imported", "refused", "passed on", "exported", "export refused"], 0)
    for original in mutations.REAL.values():
        for path in list(_every_path(original))[1:]:
            for wrong in [*WRONG, KeyError]:
                document = mutations.copied(original)
                parent = document
                for key in path[:-1]:
                    parent = parent[key]
                if wrong is KeyError:
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = mutations.copied(wrong)
                imported = _import(document, registry, False, outcomes)
                if imported is not None:
                    _export(imported, registry, outcomes)
    assert min(n for kind, n in outcomes.items() if kind != "passed on") > 100, outcomes
