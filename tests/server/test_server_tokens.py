"""Tokens stay secret: never in the access log, readable from a file or the
environment instead of the command line."""

import argparse
import logging

import pytest

from lcmgraph.server.cli import add_serve_arguments, config_from_args, main
from lcmgraph.server.connections import redact
from tests.server.harness import ServerProcess, serve, solid_doc

SECRET = "s3cret-token-0123456789-abcdef"


def test_the_access_log_never_shows_a_token(tmp_path, caplog):
    logger = logging.getLogger("test.access")

    async def body(h):
        h.headers = {"Authorization": f"Bearer {SECRET}"}
        job = (await h.wait((await h.submit(solid_doc(1)))["job"]["id"]))["id"]
        h.headers = {}
        await h.call("GET", f"/api/files/output/{job}/solid_1.png?thumbnail=32&token={SECRET}", 200)
        ws = await h.client.ws_connect(f"/api/ws?client_id=x&token={SECRET}")
        await ws.receive_json()
        await ws.close()
        await h.call("GET", f"/api/queue?token={SECRET}", 401)

    with caplog.at_level(logging.INFO, logger="test.access"):
        serve(tmp_path, body, token=SECRET, access_log=logger)
    lines = [r.getMessage() for r in caplog.records if r.name == "test.access"]
    assert len(lines) >= 5, lines
    assert not [line for line in lines if SECRET in line], lines
    assert any("/api/ws?client_id=x&token=*** HTTP/1.1\" 101" in line for line in lines), lines
    assert any("?thumbnail=32&token=*** HTTP/1.1\" 200" in line for line in lines), lines


def test_log_records_are_redacted_tracebacks_included():
    from lcmgraph.server.connections import RedactingFilter

    try:
        raise ValueError(f"bad line b'GET /x?token={SECRET} HTTP/1.1'")
    except ValueError:
        import sys

        record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling %s",
                                   (f"/api/ws?token={SECRET}",), sys.exc_info())
    assert RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert SECRET not in formatted and "token=***" in formatted and "ValueError" in formatted


def test_redaction():
    assert redact("/api/ws?token=abc&x=1") == "/api/ws?token=***&x=1"
    assert redact("/a?x=1&TOKEN=abc;y=2") == "/a?x=1&TOKEN=***;y=2"
    assert redact("/a?access_token=abc") == "/a?access_token=***"
    assert redact("/a?mytoken=abc") == "/a?mytoken=abc"


def _config(*argv, env=None, monkeypatch=None):
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_the_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LCMGRAPH_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text(f"{SECRET}\n")
    path.chmod(0o600)
    assert _config("--token-file", str(path)).token == SECRET
    monkeypatch.setenv("LCMGRAPH_TOKEN", "from-the-environment-1234")
    assert _config().token == "from-the-environment-1234"
    assert _config("--token", "given-on-the-command-line").token == "given-on-the-command-line"
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    assert "visible to other local users in `ps`" in helps["token"]


@pytest.mark.parametrize(("argv", "content", "message"), [
    (["--token-file", "{path}"], "", "error: the token file {path} is empty; write a long random token on its "
                                     "first line"),
    (["--token-file", "{path}", "--token", "x" * 20], "t" * 20, "error: give --token or --token-file, not both"),
    (["--token-file", "{missing}"], None, "error: cannot read the token file {missing}: [Errno 2] No such file "
                                         "or directory"),
    (["--users", "{path}"], "alice:one-token-0000000\nbob\n", "error: users file {path}, line 2: expected "
                                                              "NAME:TOKEN or NAME:sha256:HEX"),
])
def test_unusable_token_and_users_files_stop_start_up(tmp_path, capsys, monkeypatch, argv, content, message):
    monkeypatch.delenv("LCMGRAPH_TOKEN", raising=False)
    path, missing = tmp_path / "secret", tmp_path / "missing"
    if content is not None:
        path.write_text(content)
    argv = [a.format(path=path, missing=missing) for a in argv]
    code = main([*argv, "--data-dir", str(tmp_path / "data"), "--no-entry-points"])
    assert code == 2
    assert message.format(path=path, missing=missing) in capsys.readouterr().err


def test_a_real_server_with_debug_logging_keeps_the_token_out_of_its_log(tmp_path):
    path = tmp_path / "token"
    path.write_text(SECRET)
    path.chmod(0o600)
    server = ServerProcess(tmp_path, "--debug", "--token-file", str(path))
    try:
        auth = {"Authorization": f"Bearer {SECRET}"}
        job = server.request("POST", "/api/jobs", {"workflow": solid_doc(2)}, 201, headers=auth)["job"]["id"]
        import time

        deadline = time.monotonic() + 15
        while server.request("GET", f"/api/jobs/{job}", headers=auth)["job"]["status"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.request("GET", f"/api/files/output/{job}/solid_2.png?token={SECRET}", None, 200)
        server.request("GET", f"/api/queue?token={SECRET}", None, 401)
        import socket

        host, port = server.base.removeprefix("http://").rsplit(":", 1)
        for head in (f"G@T /api/ws?token={SECRET} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                     f"GET /api/ws?token={SECRET} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SECRET}\r\n"
                     f"Content-Length: x\r\n\r\n"):
            with socket.create_connection((host, int(port))) as sock:  # malformed: aiohttp logs an error
                sock.settimeout(5)
                sock.sendall(head.encode())
                assert sock.recv(100).startswith(b"HTTP/1.")
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert "aiohttp.access" in log and "token=***" in log
    assert SECRET not in log
