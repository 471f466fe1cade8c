"""Server settings and limits: plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..cluster.options import RayOptions
    from .users import UserTable

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
API_VERSION = 1


@dataclass(frozen=True)
class Limits:
    """Every bound the server enforces; each breach is a 4xx naming the limit."""

    #: A JSON request body (a workflow submission).
    max_json_bytes: int = 2 * 1024 * 1024
    #: An uploaded image file.
    max_upload_bytes: int = 32 * 1024 * 1024
    #: Decoded image size (uploads, thumbnails): width * height and each side.
    max_image_pixels: int = 40_000_000
    max_image_side: int = 16384
    #: Nesting depth of any JSON value in a request.
    max_json_depth: int = 64
    #: Jobs waiting in the queue (the running one not counted) -> 429 beyond.
    max_queue: int = 1000
    #: Open WebSocket connections -> 429 beyond.
    max_ws_clients: int = 1000
    #: Messages buffered for one slow WebSocket client before progress is
    #: dropped and, if still full, the client is disconnected.
    ws_buffer: int = 2000
    #: Incoming WebSocket message size (clients only send small commands).
    max_ws_message: int = 64 * 1024
    #: Page size bound for /api/history.
    max_history_page: int = 500
    #: Step previews: longest side, JPEG quality, minimum seconds between two.
    preview_side: int = 256
    preview_quality: int = 75
    progress_interval: float = 0.05
    #: Thumbnails: default and largest longest side.
    thumbnail_side: int = 256
    max_thumbnail_side: int = 1024
    #: Image decodes running at once (each may hold max_image_pixels * 4 bytes).
    image_workers: int = 2
    #: Bytes buffered for one slow WebSocket client: progress beyond it is
    #: dropped, any other message disconnects the client (1013).
    ws_buffer_bytes: int = 4 * 1024 * 1024
    #: Bytes buffered for all WebSocket clients together; past it the client
    #: holding the most is disconnected.
    ws_total_buffer_bytes: int = 64 * 1024 * 1024
    #: Longest ``data`` a WebSocket ping may carry to be echoed.
    max_ping_data: int = 64
    #: Workflows up to this many nodes + inputs and body bytes are validated on
    #: the event loop (fast); bigger ones on a thread, a few at a time.
    inline_validation_cost: int = 200
    inline_validation_bytes: int = 64 * 1024
    #: Validations (and ComfyUI conversions) running on threads at once; more
    #: wait up to validation_wait seconds, at most max_validation_waiting of them.
    validation_workers: int = 2
    validation_wait: float = 10.0
    max_validation_waiting: int = 32
    #: Problems listed in an answer (the rest are counted).
    max_problems: int = 100
    #: Seconds a connection may take to send a complete request head, counted
    #: from when it opened or its previous response ended (aiohttp's keep-alive
    #: timer: slow-loris connections are closed after it).
    header_timeout: float = 15.0
    #: Seconds a request body may take to arrive in all, and the longest it
    #: may pause (no bytes at all) on the way; 408 past either.
    body_timeout: float = 300.0
    body_idle_timeout: float = 15.0
    #: Open HTTP connections (WebSockets included); more are closed at once.
    max_connections: int = 1000
    #: Request head limits (aiohttp's parser): request line, one header, header count.
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64


@dataclass(frozen=True)
class Retention:
    """How many finished jobs the history keeps, and for how long (oldest go first)."""

    #: Done, failed and interrupted jobs kept (the newest).
    keep_history: int = 1000
    #: Cancelled jobs kept (the newest); they never ran, so fewer are kept.
    keep_cancelled: int = 100
    #: Finished jobs older than this many seconds are removed (0: no age limit).
    max_age: float = 30 * 86400.0
    #: Bytes of workflow documents kept for finished jobs (the newest first);
    #: older jobs stay in the history without theirs. Cancelled jobs keep none.
    max_workflow_bytes: int = 256 * 1024 * 1024


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8188
    #: With a token every /api request must carry it.
    token: str | None = None
    #: Explicitly allow a non-loopback bind without a token.
    insecure: bool = False
    #: SQLite database (jobs.sqlite3) and, by default, outputs/.
    data_dir: Path = Path("lcmgraph-data")
    #: Where jobs write files (one sub-folder per job); default data_dir/outputs.
    output_dir: Path | None = None
    #: Example workflows (*.json); default <repo>/workflows or ./workflows.
    workflows_dir: Path | None = None
    #: The editor's static files; default <repo>/web/dist, then <repo>/web.
    web_dir: Path | None = None
    #: The browser editor served at /: "lcmgraph" (web_dir), or "comfy": ComfyUI's
    #: frontend, with the routes it needs (routes/comfy_frontend.py).
    frontend: str = "lcmgraph"
    #: Extra Host names accepted (DNS-rebinding guard); "*" accepts any.
    allow_hosts: tuple[str, ...] = ()
    #: Extra origins ("https://editor.example:8443") allowed to change state.
    allow_origins: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    #: Most jobs run as one batch (same graph, only batchable literals differ); 1: one at a time.
    max_batch: int = 1
    #: What the history keeps (count and age of finished jobs).
    retention: Retention = field(default_factory=Retention)
    #: Per-user tokens (``--users FILE``); the ``token`` above is an admin besides them.
    users: UserTable | None = None
    #: Run jobs on Ray worker actors (``--ray``, lcmgraph/cluster) instead of the worker thread.
    ray: RayOptions | None = None

    @property
    def outputs_path(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path(self.data_dir) / "outputs"

    @property
    def database_path(self) -> Path:
        return Path(self.data_dir) / "jobs.sqlite3"
