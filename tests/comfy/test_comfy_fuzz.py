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
