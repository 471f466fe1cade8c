"""bench/gpu_train.py's plumbing: what comes back from the device machine must reassemble
(the tool returns files of at most 16 MiB), and each phase is sized from its own log."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import gpu_train  # noqa: E402


def test_an_export_comes_back_in_parts_that_reassemble(tmp_path):
    folder = tmp_path / "tiny-shapes"
    (folder / "unet").mkdir(parents=True)
    payload = bytes(range(256)) * 4000  # 1 MB that does not compress
    (folder / "unet" / "weights.bin").write_bytes(payload)
    (folder / "training.json").write_text("{}\n")
    out = tmp_path / "out"
    out.mkdir()
    gpu_train.pack(out, "export", folder, part=300_000)
    parts = sorted(out.iterdir(), key=lambda p: int(p.suffix[1:]))
    assert len(parts) == 4 and all(p.stat().st_size <= 300_000 for p in parts)
    joined = tmp_path / "joined.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        tar.extractall(tmp_path / "back", filter="data")
    assert (tmp_path / "back" / "tiny-shapes" / "unet" / "weights.bin").read_bytes() == payload


def test_speed_and_the_last_evaluation_come_from_the_trainers_logs(tmp_path):
    log = tmp_path / "unet.log.jsonl"
    rows = [{"time": 100.0 + 0.5 * s, "step": s, "loss": 0.1} for s in (1, 20, 40, 60)]
    rows.insert(2, {"time": 111.0, "step": 30, "eval10_colour_shape": 0.5, "eval10_position": 0.9})
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert gpu_train.seconds_per_step(log, 20) == 0.5  # steps 20..60, the warm-up step left out
    assert gpu_train.last_eval(log, "eval10_colour_shape")["eval10_position"] == 0.9
