"""Deprecated: the session workers' code now lives in modules named for what they hold.

``worker_protocol`` (``WorkerHandle``, ``WorkerPool``, ``GONE_NOTICE``), ``process_workers``
(``Worker``, ``ProcessWorkerPool``, ``CpuMeter``), ``worker_process`` (``worker_main``, the
worker's own loop) and ``supervisor`` (``restart_delay``). The old names still work here, with
a ``DeprecationWarning`` saying where each one went.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "GONE_NOTICE": "worker_protocol",
    "OnClosed": "worker_protocol",
    "OnDied": "worker_protocol",
    "WorkerHandle": "worker_protocol",
    "WorkerPool": "worker_protocol",
    "CpuMeter": "process_workers",
    "ProcessWorkerPool": "process_workers",
    "Worker": "process_workers",
    "cpu_seconds": "process_workers",
    "pid_alive": "process_workers",
    "detached_main": "worker_process",
    "worker_main": "worker_process",
    "HEALTHY_AFTER_S": "supervisor",
    "RESTART_FIRST_S": "supervisor",
    "RESTART_MAX_S": "supervisor",
    "restart_delay": "supervisor",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"stream.transport.workers.{name} is deprecated: import it from stream.transport.{module}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f"stream.transport.{module}"), name)


__all__ = sorted(_MOVED)
