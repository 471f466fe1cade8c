"""ComfyUI's shapes for what lcmgraph's server knows: queue items, history
items, image references and WebSocket messages (used by routes/comfyui.py
and the /ws endpoint). A job's id is its ComfyUI ``prompt_id``."""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from typing import Any

from .jobs import DONE, FAILED, INTERRUPTED, Job

#: ComfyUI's binary WebSocket frames: a 4-byte big-endian event type, then for a
#: preview a 4-byte big-endian image type, then the image's bytes.
PREVIEW_IMAGE = 1
PREVIEW_FORMATS = {"jpeg": 1, "png": 2}

#: Where the ComfyUI request (prompt, extra_data, number, outputs) is kept in
#: the submitted lcmgraph document, so that /queue and /history can give it back.
META_KEY = "comfy_prompt"


def comfy_images(results: Any) -> Any:
    """lcmgraph's public results of one node -> ComfyUI's: each file entry
    becomes {"filename", "subfolder", "type"} (what /view takes)."""
    if not isinstance(results, dict):
        return {}
    out: dict[str, Any] = {}
    for kind, entries in results.items():
        if not isinstance(entries, list):
            continue
        listed = []
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str) and "folder" in entry:
                subfolder, _, filename = entry["name"].rpartition("/")
                listed.append({"filename": filename, "subfolder": subfolder, "type": entry["folder"]})
        if listed:
            out[kind] = listed
    return out


def comfy_outputs(outputs: Any) -> dict[str, Any]:
    if not isinstance(outputs, dict):
        return {}
    return {node: images for node, results in outputs.items() if (images := comfy_images(results))}


def stored_request(text: str | None) -> dict[str, Any]:
    """The ComfyUI request kept in a job's stored document ({} if none: a job
    submitted through /api/jobs, or its document trimmed by retention)."""
    if not text:
        return {}
    try:
        document = json.loads(text)
    except ValueError:
        return {}
    meta = document.get("meta") if isinstance(document, dict) else None
    kept = meta.get(META_KEY) if isinstance(meta, dict) else None
    return kept if isinstance(kept, dict) else {}


def queue_item(job: Job, kept: dict[str, Any]) -> list[Any]:
    """[number, prompt_id, prompt, extra_data, outputs_to_execute]."""
    extra = dict(kept.get("extra_data") or {})
    extra.setdefault("client_id", job.client_id)
    number = kept.get("number", job.seq)
    return [number, job.id, kept.get("prompt") or {}, extra, kept.get("outputs") or []]


def history_item(job: Job, kept: dict[str, Any]) -> dict[str, Any]:
    start = {"prompt_id": job.id, "timestamp": _ms(job.started or job.created)}
    end = {"prompt_id": job.id, "timestamp": _ms(job.finished or job.created)}
    result = job.result or {}
    messages: list[list[Any]] = [["execution_start", start],
                                 ["execution_cached", {"nodes": list(result.get("cached") or []), **start}]]
    error = job.error or {}
    if job.status == DONE:
        messages.append(["execution_success", end])
    elif job.status == INTERRUPTED:
        messages.append(["execution_interrupted", {**end, "node_id": error.get("node"),
                                                   "node_type": error.get("node_type"), "executed": []}])
    else:
        messages.append(["execution_error", {**end, **_error_fields(error)}])
    return {
        "prompt": queue_item(job, kept),
        "outputs": comfy_outputs(job.outputs),
        "status": {"status_str": "success" if job.status == DONE else "error",
                   "completed": job.status == DONE, "messages": messages},
        "meta": {node: {"node_id": node, "display_node": node} for node in comfy_outputs(job.outputs)},
    }


def _error_fields(error: dict[str, Any]) -> dict[str, Any]:
    return {"node_id": error.get("node"), "node_type": error.get("node_type"), "executed": [],
            "exception_message": str(error.get("message", "")),
            "exception_type": str(error.get("exception") or error.get("code") or "Exception"),
            "traceback": [], "current_inputs": {}, "current_outputs": {}}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def server_features(server: Any) -> dict[str, Any]:
    """ComfyUI's feature flags (GET /features, and the ``feature_flags`` answer on /ws).
    Previews come as plain PREVIEW_IMAGE frames, without metadata."""
    return {"supports_preview_metadata": False, "max_upload_size": server.limits.max_upload_bytes}


def status_message(queue_remaining: int, sid: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return {"type": "status", "data": data}


def preview_frame(data_url: Any) -> bytes | None:
    """A step preview (lcmgraph's ``data:image/jpeg;base64,...``) as ComfyUI's
    binary PREVIEW_IMAGE frame; None if it is not one."""
    if not isinstance(data_url, str) or not data_url.startswith("data:image/"):
        return None
    header, _, payload = data_url.partition(",")
    kind = header[len("data:image/"):].split(";")[0]
    if kind not in PREVIEW_FORMATS or not header.endswith(";base64"):
        return None
    try:
        image = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return struct.pack(">II", PREVIEW_IMAGE, PREVIEW_FORMATS[kind]) + image


def translate(message: dict[str, Any]) -> list[dict[str, Any] | bytes]:
    """One lcmgraph WebSocket message -> ComfyUI's (zero or more; bytes: a binary frame)."""
    kind = message.get("type")
    if kind == "queue":
        running = message.get("running") or []
        return [status_message(len(running) + int(message.get("queued") or 0))]
    prompt_id = message.get("job")
    if prompt_id is None:
        return []
    stamp = _ms(message["time"] if isinstance(message.get("time"), int | float) else time.time())
    node = message.get("node")
    if kind == "job_started":
        return [{"type": "execution_start", "data": {"prompt_id": prompt_id, "timestamp": stamp}}]
    if kind == "run_start":
        return [{"type": "execution_cached", "data": {"nodes": list(message.get("cached") or []),
                                                      "prompt_id": prompt_id, "timestamp": stamp}}]
    if kind == "node_start":
        return [{"type": "executing", "data": {"node": node, "display_node": node, "prompt_id": prompt_id}}]
    if kind == "node_progress":
        progress: list[dict[str, Any] | bytes] = [
            {"type": "progress", "data": {"value": message.get("step"), "max": message.get("total"),
                                          "prompt_id": prompt_id, "node": node}}]
        frame = preview_frame(message.get("preview"))
        if frame is not None:  # after its progress message, as ComfyUI sends them
            progress.append(frame)
        return progress
    if kind == "node_output":
        return [{"type": "executed", "data": {"node": node, "display_node": node,
                                              "output": comfy_images(message.get("results")),
                                              "prompt_id": prompt_id}}]
    end = {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}
    error = message.get("error") or {}
    if kind == f"job_{DONE}":
        return [{"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": stamp}}, end]
    if kind == f"job_{INTERRUPTED}":
        return [{"type": "execution_interrupted", "data": {"prompt_id": prompt_id, "node_id": error.get("node"),
                                                           "node_type": error.get("node_type"),
                                                           "executed": list(message.get("executed") or [])}},
                end]
    if kind == f"job_{FAILED}":
        fields = _error_fields(error)
        fields["executed"] = list(message.get("executed") or [])
        return [{"type": "execution_error", "data": {"prompt_id": prompt_id, "timestamp": stamp, **fields}}, end]
    return []
