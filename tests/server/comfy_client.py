"""A ComfyUI API client written after ComfyUI's own script_examples
(basic_api_example.py, websockets_api_example.py): urllib for HTTP, exactly as
they use it (the JSON body sent without a JSON Content-Type), and
``websocket-client`` for /ws. Used by the tests to drive a real
``lcmgraph serve`` process as those scripts drive ComfyUI."""

from __future__ import annotations

import json
import struct
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

import websocket  # websocket-client, as ComfyUI's example uses

PREVIEW_IMAGE = 1


@dataclass
class Run:
    prompt_id: str
    images: dict[str, list[tuple[dict, bytes]]]  # node id -> [(its /history entry, the /view bytes)]
    messages: list[dict] = field(default_factory=list)
    previews: list[tuple[int, bytes]] = field(default_factory=list)  # (image type, image bytes)


class ComfyClient:
    def __init__(self, address: str):
        self.address = address  # "127.0.0.1:8188"
        self.client_id = str(uuid.uuid4())

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://{self.address}{path}", timeout=60) as response:
            return response.read()

    def queue_prompt(self, prompt: dict, with_client: bool = True) -> dict:
        body = {"prompt": prompt, **({"client_id": self.client_id} if with_client else {})}
        request = urllib.request.Request(f"http://{self.address}/prompt", data=json.dumps(body).encode("utf-8"))
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def history(self, prompt_id: str) -> dict:
        return json.loads(self._get(f"/history/{prompt_id}"))

    def view(self, filename: str, subfolder: str, folder_type: str) -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
        return self._get(f"/view?{query}")

    def upload_image(self, name: str, data: bytes, subfolder: str = "", overwrite: bool = False) -> dict:
        """POST /upload/image as ComfyUI's frontend sends it (multipart form)."""
        boundary = uuid.uuid4().hex
        parts = [(b'Content-Disposition: form-data; name="image"; filename="' + name.encode() + b'"\r\n'
                  b"Content-Type: image/png\r\n\r\n" + data)]
        for key, value in (("subfolder", subfolder), ("type", "input"), ("overwrite", str(overwrite).lower())):
            parts.append(f'Content-Disposition: form-data; name="{key}"\r\n\r\n{value}'.encode())
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
        body += b"--" + boundary.encode() + b"--\r\n"
        request = urllib.request.Request(f"http://{self.address}/upload/image", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def connect(self) -> websocket.WebSocket:
        ws = websocket.WebSocket()
        ws.connect(f"ws://{self.address}/ws?clientId={self.client_id}", timeout=120)
        return ws

    def run(self, ws: websocket.WebSocket, prompt: dict) -> Run:
        """websockets_api_example.py's get_images: queue, read /ws until 'executing'
        with node None for this prompt (binary frames are previews), then /history and /view."""
        prompt_id = self.queue_prompt(prompt)["prompt_id"]
        run = Run(prompt_id, {})
        while True:
            out = ws.recv()
            if isinstance(out, bytes):
                event, image_type = struct.unpack(">II", out[:8])
                assert event == PREVIEW_IMAGE, event
                run.previews.append((image_type, out[8:]))
                continue
            message = json.loads(out)
            run.messages.append(message)
            data = message.get("data", {})
            if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                break
        self._fetch(run)
        return run

    def run_without_websocket(self, prompt: dict, timeout: float = 120.0) -> Run:
        """basic_api_example.py queues and returns; to see the images, poll /history."""
        prompt_id = self.queue_prompt(prompt, with_client=False)["prompt_id"]
        deadline = time.monotonic() + timeout
        while prompt_id not in self.history(prompt_id):
            assert time.monotonic() < deadline, f"prompt {prompt_id} not in /history after {timeout} s"
            time.sleep(0.1)
        run = Run(prompt_id, {})
        self._fetch(run)
        return run

    def _fetch(self, run: Run) -> None:
        history = self.history(run.prompt_id)[run.prompt_id]
        for node_id, node_output in history["outputs"].items():
            for image in node_output.get("images", []):
                data = self.view(image["filename"], image["subfolder"], image["type"])
                run.images.setdefault(node_id, []).append((image, data))
