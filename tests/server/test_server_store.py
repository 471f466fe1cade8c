"""The job database: schema migration, damaged files and rows, lists that never
load workflow documents."""

import json
import sqlite3

import pytest

from lcmgraph.server.cli import main
from lcmgraph.server.jobs import QUEUED, Job
from lcmgraph.server.store import SCHEMA_VERSION, JobStore, StoreError
from tests.server.harness import const_doc, serve, slow_doc

V1_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, client_id TEXT NOT NULL, status TEXT NOT NULL, seq INTEGER NOT NULL,
    workflow TEXT NOT NULL, outputs_requested TEXT, title TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    started REAL, finished REAL, result TEXT, outputs TEXT, error TEXT);
CREATE INDEX jobs_by_status ON jobs(status, seq);
CREATE INDEX jobs_by_finished ON jobs(finished);
CREATE TABLE files (folder TEXT NOT NULL, path TEXT NOT NULL, job_id TEXT NOT NULL, node TEXT NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (folder, path));
CREATE INDEX files_by_job ON files(job_id);
PRAGMA user_version=1;
"""


def _v1_database(path, jobs):
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    for job_id, status, workflow in jobs:
        db.execute("INSERT INTO jobs (id, client_id, status, seq, workflow, created, finished, outputs) "
                   "VALUES (?,?,?,?,?,?,?,?)", (job_id, "old", status, 1, workflow, 1.0,
                                               None if status == QUEUED else 2.0, '{"out":{"values":[1]}}'))
    db.execute("INSERT INTO files VALUES ('output', 'a1/x.png', 'a1', 'save', 2.0)")
    db.commit()
    db.close()


def test_a_schema_1_database_is_migrated_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    _v1_database(path, [("a1", "done", json.dumps(const_doc(1))), ("q1", QUEUED, json.dumps(const_doc(2)))])
    store = JobStore(path)
    assert store.get("a1").status == "done" and store.get("a1").outputs == {"out": {"values": [1]}}
    assert json.loads(store.workflow("a1")) == const_doc(1)
    assert [j.id for j in store.queued()] == ["q1"] and store.queued()[0].workflow_text is None
    assert store.file_owner("output", "a1/x.png") == "a1"
    columns = {r[1] for r in store._db.execute("PRAGMA table_info(jobs)")}
    assert "workflow" not in columns and "owner" in columns
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    store.close()
    JobStore(path).close()  # a second open finds it current


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match=r"was written by a newer lcmgraph \(schema 99; this one reads 2\)"):
        JobStore(path)


def test_a_damaged_or_unreadable_database_stops_start_up_naming_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LCMGRAPH_TOKEN", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    database = data / "jobs.sqlite3"
    database.write_bytes(b"this is not a database, it is junk " * 200)
    code = main(["--data-dir", str(data), "--no-entry-points", "--models-dir", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"error: the job database {database} is damaged (file is not a database)" in err
    assert f"move the file aside (mv {database} {database}.damaged" in err

    database.unlink()
    database.mkdir()  # unopenable whatever the user's rights
    code = main(["--data-dir", str(data), "--no-entry-points", "--models-dir", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"error: cannot open the job database {database}: unable to open database file" in err


def test_a_database_with_damaged_pages_is_refused_at_start_up(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    for i in range(200):
        store.add(Job(id=f"j{i:03d}", client_id="c", status=QUEUED, seq=i, workflow_text="x" * 3000,
                      outputs_requested=None, created=1.0))
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    raw = bytearray(path.read_bytes())
    for offset in range(4096 * 3, len(raw) - 4096, 4096 * 5):  # scribble over some pages' headers
        raw[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError) as caught:
        JobStore(path)
    assert str(caught.value).startswith(f"the job database {path} is damaged (")
    assert "move the file aside" in str(caught.value)


def test_a_row_that_cannot_be_decoded_is_shown_as_a_failed_job(tmp_path):
    async def body(h):
        good = (await h.wait((await h.submit(const_doc(1)))["job"]["id"]))["id"]
        bad = (await h.wait((await h.submit(const_doc(2)))["job"]["id"]))["id"]
        odd = (await h.wait((await h.submit(const_doc(3)))["job"]["id"]))["id"]
        db = h.server.store._db
        db.execute("UPDATE jobs SET outputs='{not json' WHERE id=?", (bad,))
        db.execute("UPDATE jobs SET result='[1, 2]', created='yesterday' WHERE id=?", (odd,))
        _, history = await h.call("GET", "/api/history", 200)
        listed = {j["id"]: j for j in history["jobs"]}
        assert listed[good]["status"] == "done"
        assert listed[bad]["status"] == "failed"
        assert listed[bad]["error"] == {
            "code": "damaged_record", "stored_status": "done",
            "message": "this job's stored record is damaged (column 'outputs' is not valid JSON); it is shown "
                       "as failed and can be deleted"}
        assert listed[odd]["status"] == "failed" and listed[odd]["error"]["code"] == "damaged_record"
        _, job = await h.call("GET", f"/api/jobs/{bad}", 200)
        assert job["job"]["error"]["code"] == "damaged_record"
        await h.call("DELETE", f"/api/history/{bad}", 200)
        _, history = await h.call("GET", "/api/history", 200)
        assert history["total"] == 2

    serve(tmp_path, body)


def test_a_queued_job_with_a_damaged_record_fails_instead_of_running(tmp_path):
    path = tmp_path / "data" / "jobs.sqlite3"
    store = JobStore(path)
    store.add(Job(id="damaged0", client_id="c", status=QUEUED, seq=1, workflow_text=json.dumps(const_doc(1)),
                  outputs_requested=None, created=1.0))
    store.add(Job(id="fine0000", client_id="c", status=QUEUED, seq=2, workflow_text=json.dumps(const_doc(2)),
                  outputs_requested=None, created=1.0))
    store._db.execute("UPDATE jobs SET outputs_requested='{{' WHERE id='damaged0'")
    store.close()

    async def body(h):
        assert (await h.wait("fine0000"))["status"] == "done"
        damaged = await h.wait("damaged0")
        assert damaged["status"] == "failed" and damaged["error"]["code"] == "damaged_record"
        assert damaged["error"]["stored_status"] == "queued"

    serve(tmp_path, body)


def test_listing_the_queue_and_history_never_reads_workflow_documents(tmp_path):
    big = const_doc(1)
    big["meta"] = {"description": "x" * 200_000}

    async def body(h):
        done = (await h.wait((await h.submit(big))["job"]["id"]))["id"]
        blocker = (await h.submit(slow_doc(steps=1000, delay=0.02)))["job"]["id"]
        await h.wait(blocker, status=("running",))
        for _ in range(5):
            await h.submit(big)
        statements = []
        h.server.store._db.set_trace_callback(statements.append)
        _, queue = await h.call("GET", "/api/queue", 200)
        _, history = await h.call("GET", "/api/history", 200)
        h.server.store._db.set_trace_callback(None)
        assert len(queue["queued"]) == 5 and len(queue["running"]) == 1 and history["total"] == 1
        assert statements and not [s for s in statements if "workflow" in s.lower()], statements
        _, full = await h.call("GET", f"/api/jobs/{done}?workflow=1", 200)  # still there on demand
        assert full["job"]["workflow"] == big
        await h.call("POST", "/api/queue/clear", 200)
        await h.call("POST", "/api/interrupt", 200)

    serve(tmp_path, body)
