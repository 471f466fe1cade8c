"""Every workflow of the corpus (public ComfyUI files, tests/comfy/corpus/)
is imported; every one that imports runs on the tiny models. The floors are
the counts measured when the corpus was collected: raise them as packs map
more of ComfyUI (docs/comfyui.md lists what blocks which file)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lcmgraph import Engine, EngineConfig

from ..preprocess.annotator_files import save_annotators
from ..segment.tiny_files import save_segment_models
from .corpus_helpers import (
    SOURCES,
    corpus_files,
    import_file,
    runnable,
    save_embeddings,
    save_ipadapters,
)
from .helpers import PACKS

#: Measured: files that import, and of those the ones that run. Raise, never lower.
IMPORT_FLOOR = 41
RUN_FLOOR = 41


@pytest.fixture(scope="module")
def engine(models, tmp_path_factory):
    """The tiny models, and tiny embeddings standing in for the ones the prompts name."""
    tmp = tmp_path_factory.mktemp("corpus")
    return Engine(EngineConfig(home=tmp / "home", models_dir=models, output_dir=tmp / "out", plugins_from_env=False,
                               plugin_dirs=PACKS, device="cpu", folders={"embeddings": [save_embeddings(tmp / "emb")],
                                                                  **save_ipadapters(tmp / "ipa"),
                                                                  "annotators": [save_annotators(tmp / "annotators")],
                                                                  **save_segment_models(tmp / "segment")}))


@pytest.fixture(scope="module")
def imported(registry):
    return [import_file(path, registry) for path in corpus_files()]


def test_the_corpus_names_its_sources():
    files = {p.name for p in corpus_files()}
    sources = json.loads(SOURCES.read_text())["files"]
    assert set(sources) == files
    assert len(files) >= 40
    for entry in sources.values():
        assert entry["repository"].count("/") == 1 and len(entry["commit"]) == 40 and entry["path"]


def test_the_corpus_imports(imported):
    failed = [i for i in imported if i.document is None]
    blockers = Counter(reason for i in failed for reason in set(i.blockers))
    report = "\n".join(f"  {count:3} x {reason}" for reason, count in blockers.most_common())
    print(f"\ncorpus: {len(imported) - len(failed)} of {len(imported)} files import "
          f"({100 * (len(imported) - len(failed)) / len(imported):.0f}%); blocked by:\n{report}")
    for result in failed:  # never silent: every problem names its node
        assert result.problems and all(p.startswith(("node ", "link ")) for p in result.problems), result.path.name
    assert len(imported) - len(failed) >= IMPORT_FLOOR


def test_the_imported_corpus_runs(imported, engine):
    ran, failures = 0, []
    for result in imported:
        if result.document is None:
            continue
        try:
            engine.run(runnable(result.document))
        except Exception as exc:  # noqa: BLE001 - invalid or failing: reported with the file's name below
            failures.append(f"{result.path.name}: {type(exc).__name__}: {exc}")
            continue
        ran += 1
    print(f"\ncorpus: {ran} of {len(imported)} files run ({100 * ran / len(imported):.0f}%)")
    print("\n".join(failures))
    assert ran >= RUN_FLOOR, failures
