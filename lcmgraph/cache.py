"""Content-keyed caches of node outputs.

A node's key is a hash of its type, version, literal inputs (files by
identity) and the keys of its upstream values — Merkle style, so a key
changes exactly when something that can change the result changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import serialize
from .sizeof import nbytes

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 4 * 1024**3


def node_key(
    type_name: str,
    version: int,
    literals: Mapping[str, Any],
    upstream: Mapping[str, tuple[str, str]],
    cacheable: bool = True,
) -> str:
    """``upstream`` maps input name -> (upstream key, output name)."""
    if not cacheable:
        return "volatile-" + uuid.uuid4().hex
    payload = json.dumps(
        [type_name, version, literals, upstream], sort_keys=True, separators=(",", ":"), default=repr
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:40]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    disk_hits: int = 0


class MemoryCache:
    """LRU of node outputs bounded by the bytes their tensors hold."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.stats = CacheStats()

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.stats.misses += 1
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return item[0]

    def put(self, key: str, value: Any, size: int | None = None) -> bool:
        size = nbytes(value) if size is None else size
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted
                self.stats.evictions += 1
        return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class DiskCache:
    """Second tier: serialisable outputs as safetensors files, shared between processes."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return serialize.load(path)
        except Exception as exc:  # a damaged cache file is a miss, not a failure
            log.warning("ignoring unreadable cache file %s: %s", path, exc)
            return None

    def put(self, key: str, value: Any) -> bool:
        try:
            serialize.save(value, self._path(key))
            return True
        except serialize.NotSerializable:
            return False
        except OSError as exc:
            log.warning("could not write cache file for %s: %s", key, exc)
            return False


class OutputCache:
    """Memory LRU in front of an optional disk tier."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, directory: str | Path | None = None):
        self.memory = MemoryCache(max_bytes)
        self.disk = DiskCache(directory) if directory else None

    @property
    def stats(self) -> CacheStats:
        return self.memory.stats

    def get(self, key: str) -> Any | None:
        value = self.memory.get(key)
        if value is None and self.disk is not None:
            value = self.disk.get(key)
            if value is not None:
                self.memory.stats.disk_hits += 1
                self.memory.put(key, value)
        return value

    def put(self, key: str, value: Any) -> None:
        self.memory.put(key, value)
        if self.disk is not None:
            self.disk.put(key, value)
