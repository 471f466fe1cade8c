"""Durable job queue, history and output index in SQLite (WAL).

Every state change is committed before it is announced, so a process killed
at any point (kill -9) restarts with the queue and history it had. Used from
the event loop thread only; each statement is a few tens of microseconds.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .jobs import FINISHED, QUEUED, RUNNING, Job

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    status TEXT NOT NULL,
    seq INTEGER NOT NULL,
    workflow TEXT NOT NULL,
    outputs_requested TEXT,
    title TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    result TEXT,
    outputs TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_finished ON jobs(finished);
CREATE TABLE IF NOT EXISTS files (
    folder TEXT NOT NULL,
    path TEXT NOT NULL,
    job_id TEXT NOT NULL,
    node TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (folder, path)
);
CREATE INDEX IF NOT EXISTS files_by_job ON files(job_id);
"""

_COLUMNS = ("id, client_id, status, seq, workflow, outputs_requested, title, created, "
            "started, finished, result, outputs, error")


class StoreError(Exception):
    pass


class JobStore:
    def __init__(self, path: Path, synchronous: str = "NORMAL"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of this process (kill -9);
        # only an OS crash or power loss can drop the last transactions.
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path} was written by a newer lcmgraph (schema {version}; this one reads "
                             f"{SCHEMA_VERSION}); use another --data-dir or upgrade")
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # -- writes ---------------------------------------------------------------
    def add(self, job: Job) -> None:
        self._db.execute(
            f"INSERT INTO jobs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (job.id, job.client_id, job.status, job.seq, job.workflow_text,
             _enc(job.outputs_requested), job.title, job.created, job.started, job.finished,
             _enc(job.result), _enc(job.outputs), _enc(job.error)),
        )

    def mark_running(self, job_ids: Iterable[str], when: float) -> None:
        with self._tx():
            for job_id in job_ids:
                self._db.execute("UPDATE jobs SET status=?, started=? WHERE id=? AND status=?",
                                 (RUNNING, when, job_id, QUEUED))

    def finish(self, job: Job, files: Iterable[tuple[str, str, str]] = ()) -> None:
        """Record a finished job and index its files ((folder, relative path, node))."""
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET status=?, finished=?, result=?, outputs=?, error=? WHERE id=?",
                (job.status, job.finished, _enc(job.result), _enc(job.outputs), _enc(job.error), job.id),
            )
            for folder, rel, node in files:
                self._db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)",
                                 (folder, rel, job.id, node, job.finished or time.time()))

    def reorder(self, ordered_ids: list[str], seqs: list[int]) -> None:
        with self._tx():
            for job_id, seq in zip(ordered_ids, seqs, strict=True):
                self._db.execute("UPDATE jobs SET seq=? WHERE id=? AND status=?", (seq, job_id, QUEUED))

    def recover(self, message: str) -> list[str]:
        """At start-up: jobs left 'running' by a crash are marked failed (not re-run:
        a job that crashed the process would crash it again on every restart)."""
        stale = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE status=?", (RUNNING,))]
        error = _enc({"code": "server_restart", "message": message})
        with self._tx():
            for job_id in stale:
                self._db.execute("UPDATE jobs SET status='failed', finished=?, error=? WHERE id=?",
                                 (time.time(), error, job_id))
        return stale

    # -- reads ----------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def queued(self, limit: int | None = None) -> list[Job]:
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE status=? ORDER BY seq, created"
        args: tuple[Any, ...] = (QUEUED,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        return [_job(r) for r in self._db.execute(sql, args)]

    def queued_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT id FROM jobs WHERE status=? ORDER BY seq, created", (QUEUED,))]

    def running(self) -> list[Job]:
        return [_job(r) for r in self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status=? ORDER BY started", (RUNNING,))]

    def count(self, status: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status=?", (status,)).fetchone()[0]

    def seq_bounds(self) -> tuple[int, int]:
        low, high = self._db.execute("SELECT MIN(seq), MAX(seq) FROM jobs").fetchone()
        return (low or 0, high or 0)

    def history(self, limit: int, offset: int, client_id: str | None = None) -> tuple[list[Job], int]:
        marks = ",".join("?" * len(FINISHED))
        where, args = f"status IN ({marks})", list(FINISHED)
        if client_id is not None:
            where += " AND client_id=?"
            args.append(client_id)
        total = self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY finished DESC, id LIMIT ? OFFSET ?",
            [*args, limit, offset])
        return [_job(r) for r in rows], total

    def file_owner(self, folder: str, rel: str) -> str | None:
        row = self._db.execute("SELECT job_id FROM files WHERE folder=? AND path=?", (folder, rel)).fetchone()
        return row[0] if row else None

    # -- helpers --------------------------------------------------------------
    def _tx(self):
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        return False


def _enc(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, separators=(",", ":"))


def _dec(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _job(row: tuple) -> Job:
    (job_id, client, status, seq, workflow, requested, title, created, started, finished,
     result, outputs, error) = row
    return Job(id=job_id, client_id=client, status=status, seq=seq, workflow_text=workflow,
               outputs_requested=_dec(requested), title=title, created=created, started=started,
               finished=finished, result=_dec(result), outputs=_dec(outputs), error=_dec(error))
