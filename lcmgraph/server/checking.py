"""Validating (and converting) submitted documents without stalling the API.

A small document is checked on the event loop: it takes well under a
millisecond. A big one (judged by the body's bytes and by how many values
the document holds, not only its nodes) goes to a thread of a small pool;
at most ``validation_workers`` run at once, later ones wait up to
``validation_wait`` seconds (at most ``max_validation_waiting`` of them), else
the request is answered 503 with Retry-After. Problem lists are cut to the
first ``max_problems`` and the rest counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from .config import Limits
from .errors import ApiError

T = TypeVar("T")
#: How deep ``too_costly`` looks into a document (doc > nodes > node > inputs > value).
COST_DEPTH = 5
RETRY_AFTER = "2"


def too_costly(document: Any, limit: int, depth: int = COST_DEPTH) -> bool:
    """Whether the document holds more than ``limit`` values (object members and
    array items, counted ``depth`` levels deep). Stops as soon as it knows, so
    it costs at most about ``limit`` steps whatever the document's size."""
    total = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        total += len(item)
        if total > limit:
            return True
        if level < depth:
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return False


class Checker:
    """Runs costly checks on its own threads, a few at a time."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.workers = max(1, limits.validation_workers)
        self._slots = asyncio.Semaphore(self.workers)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="lcmgraph-check")
        self.waiting = 0
        self.running = 0

    def inline(self, document: Any, body_bytes: int | None) -> bool:
        """Cheap enough to run on the event loop."""
        if body_bytes is not None and body_bytes > self.limits.inline_validation_bytes:
            return False
        return not too_costly(document, self.limits.inline_validation_cost)

    async def run(self, here: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a checking thread, once a slot is free."""
        if self.waiting >= self.limits.max_validation_waiting and self._slots.locked():
            raise self._busy(here, self._full_text())
        self.waiting += 1
        try:
            async with asyncio.timeout(self.limits.validation_wait):
                await self._slots.acquire()
        except TimeoutError:
            raise self._busy(here, f"no checking slot came free within {self.limits.validation_wait:g} s "
                                   f"({self._full_text()})") from None
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self.running -= 1
            self._slots.release()

    async def call(self, here: str, document: Any, body_bytes: int | None, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` inline for a small ``document``, else on a checking thread."""
        if self.inline(document, body_bytes):
            return fn(*args)
        return await self.run(here, fn, *args)

    def _full_text(self) -> str:
        n, waiting = self.workers, self.limits.max_validation_waiting
        return (f"{n} large workflow{'s are' if n != 1 else ' is'} being checked and "
                f"{waiting or 'none'} may wait (the limits)")

    def _busy(self, here: str, why: str) -> ApiError:
        return ApiError(503, "busy", f"{here}: {why}; retry in a moment", headers={"Retry-After": RETRY_AFTER},
                        limit=self.workers)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


CHECKER_KEY: web.AppKey[Checker] = web.AppKey("lcmgraph_checker", Checker)


def checker_of(request: web.Request) -> Checker:
    return request.app[CHECKER_KEY]


def capped(problems: list, limit: int) -> tuple[list[dict], int]:
    """The first ``limit`` problems as JSON, and how many there are in all."""
    return [p.to_json() if hasattr(p, "to_json") else p for p in problems[:limit]], len(problems)


def more_text(count: int, shown: int) -> str:
    return f"and {count - shown:,} more"
