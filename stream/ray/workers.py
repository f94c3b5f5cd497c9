"""Deprecated: Ray session workers now live in ``session_workers`` (the front's ``RayWorker``
and ``RayWorkerPool``) and ``session_actor`` (the ``SessionWorker`` actor, ``resolve_on_node``).
The old names still work here, with a ``DeprecationWarning`` saying where each one went.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "RayWorker": "session_workers",
    "RayWorkerPool": "session_workers",
    "SessionWorker": "session_actor",
    "resolve_on_node": "session_actor",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"stream.ray.workers.{name} is deprecated: import it from stream.ray.{module}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f"stream.ray.{module}"), name)


__all__ = sorted(_MOVED)
