"""Durable job queue, history and output index in SQLite (WAL).

Every state change is committed before it is announced, so a process killed
at any point (kill -9) restarts with the queue and history it had. Used from
the event loop thread only; each statement is a few tens of microseconds.

A job's workflow document (up to the JSON body limit) lives in its own table
and is read only when wanted (the worker, ``GET /api/jobs/{id}?workflow=1``):
listing the queue or the history never loads it. Finished jobs are pruned by
count and age (``prune``); the file shrinks as they go (incremental vacuum).
A row that cannot be decoded is shown as a failed job saying so, never an error.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import Retention
from .jobs import CANCELLED, FINISHED, QUEUED, RUNNING, Job
from .records import enc, job_from_row

SCHEMA_VERSION = 2

JOBS_COLUMNS = """(
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    seq INTEGER NOT NULL,
    outputs_requested TEXT,
    title TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    result TEXT,
    outputs TEXT,
    error TEXT
)"""

TABLES = f"""
CREATE TABLE IF NOT EXISTS jobs {JOBS_COLUMNS};
CREATE TABLE IF NOT EXISTS workflows (
    job_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS files (
    folder TEXT NOT NULL,
    path TEXT NOT NULL,
    job_id TEXT NOT NULL,
    node TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (folder, path)
);
CREATE TABLE IF NOT EXISTS uploads (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL
);
"""

INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_finished ON jobs(finished);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs(owner, status);
CREATE INDEX IF NOT EXISTS files_by_job ON files(job_id);
"""

_COLUMNS = ("id, client_id, owner, status, seq, outputs_requested, title, created, "
            "started, finished, result, outputs, error")
_V1_COLUMNS = ("id, client_id, status, seq, outputs_requested, title, created, "
               "started, finished, result, outputs, error")
#: Bytes of free pages handed back to the file system per prune (incremental vacuum).
VACUUM_PAGES = 4096
#: The write-ahead log is cut back to this size after a checkpoint.
WAL_LIMIT = 4 * 1024 * 1024


class StoreError(Exception):
    """The database cannot be used; the message names the file and what to do."""


class JobStore:
    def __init__(self, path: Path, synchronous: str = "NORMAL"):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(_unusable(path, exc)) from None
        try:
            self._open(synchronous)
        except StoreError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(_unusable(path, exc)) from None

    def _open(self, synchronous: str) -> None:
        db, path = self._db, self.path
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path} was written by a newer lcmgraph (schema {version}; this one reads "
                             f"{SCHEMA_VERSION}); use another --data-dir or upgrade")
        fresh = not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='jobs'").fetchone()
        if fresh:  # must precede the first table; lets pruning give space back to the file system
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of this process (kill -9);
        # only an OS crash or power loss can drop the last transactions.
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        if not fresh:
            check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise StoreError(_damaged(path, f"the integrity check failed: {check}"))
        if not fresh and version < SCHEMA_VERSION:
            self._migrate(version)
        db.executescript(TABLES + INDEXES)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _migrate(self, version: int) -> None:
        """Schema 1 kept the workflow in the jobs row: move it to its own table, add owners."""
        db = self._db
        columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
        with self._tx():
            db.execute(f"CREATE TABLE jobs_v2 {JOBS_COLUMNS}")
            db.execute("CREATE TABLE IF NOT EXISTS workflows (job_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, "
                       "size INTEGER NOT NULL DEFAULT 0)")
            if "workflow" in columns:  # cancelled jobs' documents are not kept any more
                db.execute("INSERT OR REPLACE INTO workflows (job_id, workflow, size) "
                           "SELECT id, workflow, length(CAST(workflow AS BLOB)) FROM jobs WHERE status<>?",
                           (CANCELLED,))
            source = _COLUMNS if "owner" in columns else _V1_COLUMNS
            db.execute(f"INSERT INTO jobs_v2 ({source}) SELECT {source} FROM jobs")
            db.execute("DROP TABLE jobs")
            db.execute("ALTER TABLE jobs_v2 RENAME TO jobs")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # auto_vacuum changes on an existing file take effect with a VACUUM (once).
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("VACUUM")

    def close(self) -> None:
        self._db.close()

    # -- writes ---------------------------------------------------------------
    def add(self, job: Job) -> None:
        with self._tx():
            self._db.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.client_id, job.owner, job.status, job.seq, enc(job.outputs_requested),
                 job.title, job.created, job.started, job.finished, enc(job.result), enc(job.outputs),
                 enc(job.error)),
            )
            text = job.workflow_text or ""
            self._db.execute("INSERT OR REPLACE INTO workflows VALUES (?,?,?)", (job.id, text, len(text)))

    def mark_running(self, job_ids: Iterable[str], when: float) -> None:
        with self._tx():
            for job_id in job_ids:
                self._db.execute("UPDATE jobs SET status=?, started=? WHERE id=? AND status=?",
                                 (RUNNING, when, job_id, QUEUED))

    def requeue(self, job_id: str) -> None:
        """A running job goes back to the queue, in its old place (its worker was lost)."""
        with self._tx():
            self._db.execute("UPDATE jobs SET status=?, started=NULL WHERE id=? AND status=?",
                             (QUEUED, job_id, RUNNING))

    def finish(self, job: Job, files: Iterable[tuple[str, str, str]] = ()) -> None:
        """Record a finished job and index its files ((folder, relative path, node))."""
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET status=?, finished=?, result=?, outputs=?, error=?, outputs_requested=? "
                "WHERE id=?",
                (job.status, job.finished, enc(job.result), enc(job.outputs), enc(job.error),
                 enc(job.outputs_requested), job.id),
            )
            for folder, rel, node in files:
                self._db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)",
                                 (folder, rel, job.id, node, job.finished or time.time()))
            if job.status == CANCELLED:  # it never ran: its document is not kept
                self._db.execute("DELETE FROM workflows WHERE job_id=?", (job.id,))

    def reorder(self, ordered_ids: list[str], seqs: list[int]) -> None:
        with self._tx():
            for job_id, seq in zip(ordered_ids, seqs, strict=True):
                self._db.execute("UPDATE jobs SET seq=? WHERE id=? AND status=?", (seq, job_id, QUEUED))

    def recover(self, message: str) -> list[str]:
        """At start-up: jobs left 'running' by a crash are marked failed (not re-run:
        a job that crashed the process would crash it again on every restart)."""
        try:
            stale = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE status=?", (RUNNING,))]
            error = enc({"code": "server_restart", "message": message})
            with self._tx():
                for job_id in stale:
                    self._db.execute("UPDATE jobs SET status='failed', finished=?, error=? WHERE id=?",
                                     (time.time(), error, job_id))
        except sqlite3.Error as exc:
            raise StoreError(_unusable(self.path, exc)) from None
        return stale

    def delete(self, job_ids: Iterable[str]) -> list[tuple[str, str]]:
        """Remove finished jobs, their workflows and index entries; returns the
        (folder, path) of the files they had indexed (the caller removes them)."""
        ids = list(job_ids)
        files: list[tuple[str, str]] = []
        if not ids:
            return files
        with self._tx():
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                files += [(r[0], r[1]) for r in self._db.execute(
                    f"SELECT folder, path FROM files WHERE job_id IN ({marks})", chunk)]
                self._db.execute(f"DELETE FROM files WHERE job_id IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM workflows WHERE job_id IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)
        self.vacuum()
        return files

    def prune(self, retention: Retention, now: float | None = None) -> list[str]:
        """Remove the finished jobs past the retention limits (oldest first); their
        output files stay on disk, unindexed. Returns the removed ids."""
        now = time.time() if now is None else now
        finished = [s for s in FINISHED if s != CANCELLED]
        marks = ",".join("?" * len(finished))
        doomed = [r[0] for r in self._db.execute(
            f"SELECT id FROM jobs WHERE status IN ({marks}) ORDER BY finished DESC, id LIMIT -1 OFFSET ?",
            (*finished, max(0, retention.keep_history)))]
        doomed += [r[0] for r in self._db.execute(
            "SELECT id FROM jobs WHERE status=? ORDER BY finished DESC, id LIMIT -1 OFFSET ?",
            (CANCELLED, max(0, retention.keep_cancelled)))]
        if retention.max_age > 0:
            all_marks = ",".join("?" * len(FINISHED))
            doomed += [r[0] for r in self._db.execute(
                f"SELECT id FROM jobs WHERE status IN ({all_marks}) AND finished < ?",
                (*FINISHED, now - retention.max_age))]
        doomed = list(dict.fromkeys(doomed))
        self.delete(doomed)
        self.trim_workflows(retention.max_workflow_bytes)
        return doomed

    def trim_workflows(self, budget: int) -> int:
        """Keep the workflow documents of finished jobs, newest first, within
        ``budget`` bytes; older ones are dropped (the job stays, its PNGs keep
        their embedded copy). Returns how many were dropped."""
        marks = ",".join("?" * len(FINISHED))
        rows = self._db.execute(
            f"SELECT job_id FROM (SELECT w.job_id, SUM(w.size) OVER (ORDER BY j.finished DESC, j.id "
            f"ROWS UNBOUNDED PRECEDING) AS total FROM workflows w JOIN jobs j ON j.id = w.job_id "
            f"WHERE j.status IN ({marks})) WHERE total > ?", (*FINISHED, max(0, budget))).fetchall()
        if rows:
            with self._tx():
                for chunk in _chunks([r[0] for r in rows]):
                    self._db.execute(f"DELETE FROM workflows WHERE job_id IN ({','.join('?' * len(chunk))})",
                                     chunk)
            self.vacuum()
        return len(rows)

    def finished_workflow_bytes(self) -> int:
        marks = ",".join("?" * len(FINISHED))
        return self._db.execute(
            f"SELECT COALESCE(SUM(w.size), 0) FROM workflows w JOIN jobs j ON j.id = w.job_id "
            f"WHERE j.status IN ({marks})", FINISHED).fetchone()[0]

    def vacuum(self) -> None:
        """Hand free pages back to the file system (a no-op without auto_vacuum)."""
        self._db.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()

    def record_upload(self, name: str, owner: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO uploads VALUES (?,?,?)", (name, owner, time.time()))

    # -- reads ----------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return job_from_row(row) if row else None

    def workflow(self, job_id: str) -> str | None:
        """The job's stored workflow document (JSON text), if it still has one."""
        row = self._db.execute("SELECT workflow FROM workflows WHERE job_id=?", (job_id,)).fetchone()
        return row[0] if row and isinstance(row[0], str) and row[0] else None

    def queued(self, limit: int | None = None, owner: str | None = None) -> list[Job]:
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE status=?"
        args: tuple[Any, ...] = (QUEUED,)
        if owner is not None:
            sql += " AND owner=?"
            args += (owner,)
        sql += " ORDER BY seq, created"
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        return [job_from_row(r) for r in self._db.execute(sql, args)]

    def queued_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT id FROM jobs WHERE status=? ORDER BY seq, created", (QUEUED,))]

    def running(self) -> list[Job]:
        return [job_from_row(r) for r in self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status=? ORDER BY started", (RUNNING,))]

    def count(self, *statuses: str) -> int:
        marks = ",".join("?" * len(statuses))
        return self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", statuses).fetchone()[0]

    def seq_bounds(self) -> tuple[int, int]:
        low, high = self._db.execute("SELECT MIN(seq), MAX(seq) FROM jobs").fetchone()
        return (low or 0, high or 0)

    def history(self, limit: int, offset: int, client_id: str | None = None,
                owner: str | None = None) -> tuple[list[Job], int]:
        where, args = self._finished_where(client_id, owner)
        # SQLite integers are 64-bit: a caller's huge offset means "past the end", not an error.
        limit, offset = max(0, min(limit, 2**62)), max(0, min(offset, 2**62))
        total = self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY finished DESC, id LIMIT ? OFFSET ?",
            [*args, limit, offset])
        return [job_from_row(r) for r in rows], total

    def finished_ids(self, owner: str | None = None) -> list[str]:
        where, args = self._finished_where(None, owner)
        return [r[0] for r in self._db.execute(f"SELECT id FROM jobs WHERE {where}", args)]

    def file_owner(self, folder: str, rel: str) -> str | None:
        row = self._db.execute("SELECT job_id FROM files WHERE folder=? AND path=?", (folder, rel)).fetchone()
        return row[0] if row else None

    def job_owner(self, job_id: str) -> str | None:
        row = self._db.execute("SELECT owner FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row[0] if row else None

    def upload_owner(self, name: str) -> str | None:
        row = self._db.execute("SELECT owner FROM uploads WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def uploads_of_others(self, owner: str) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM uploads WHERE owner<>?", (owner,))}

    def size_bytes(self) -> int:
        """The database's size: its pages in use and free, plus the write-ahead log."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        wal = Path(f"{self.path}-wal")
        return pages * page + (wal.stat().st_size if wal.exists() else 0)

    # -- helpers --------------------------------------------------------------
    def _finished_where(self, client_id: str | None, owner: str | None) -> tuple[str, list[Any]]:
        marks = ",".join("?" * len(FINISHED))
        where, args = f"status IN ({marks})", list(FINISHED)
        if client_id is not None:
            where += " AND client_id=?"
            args.append(client_id)
        if owner is not None:
            where += " AND owner=?"
            args.append(owner)
        return where, args

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


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _unusable(path: Path, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return _damaged(path, text)
    if isinstance(exc, sqlite3.OperationalError) and "malformed" in text:
        return _damaged(path, text)
    return (f"cannot open the job database {path}: {text}. Check that it and its folder exist and are "
            f"readable and writable by this user, or choose another --data-dir")


def _damaged(path: Path, why: str) -> str:
    return (f"the job database {path} is damaged ({why}). Stop the server, move the file aside "
            f"(mv {path} {path}.damaged, and any {path.name}-wal / {path.name}-shm next to it) and start "
            f"again: a new, empty database is created; or choose another --data-dir")
