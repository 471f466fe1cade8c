"""What a runtime's model services hold: for ``GET /api/workers``.

Any service a pack started that keeps models (``loaded_keys()``, and a
``loads`` counter of reads from disk) is reported; the engine knows nothing
of what the models are.
"""

from __future__ import annotations

from typing import Any


def held_models(runtime: Any) -> dict[str, Any]:
    models: list[str] = []
    loads = 0
    device = runtime.device
    for service in list(getattr(runtime, "_services", {}).values()):
        if hasattr(service, "loaded_keys"):
            models += list(service.loaded_keys())
            loads += int(getattr(service, "loads", 0))
            device = getattr(service, "device", device)
    return {"device": device, "models": models, "loads": loads}
