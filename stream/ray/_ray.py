"""The one place that imports Ray, lazily: nothing of it loads until a Ray feature is used.

Ray is an optional dependency (``pip install remotemedia[ray]``); ``require_ray()`` turns its
absence into ``BackendUnavailable`` saying so. The module is typed ``Any`` on purpose: Ray's
hints are partial (decorated actor classes have no static type), and every call into it sits
behind the few functions here and in ``stage.py``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..errors import BackendUnavailable

INSTALL_HINT = "pip install remotemedia[ray] (or pip install ray)"


def require_ray() -> Any:
    """The ``ray`` module; raises BackendUnavailable with the install command when missing."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise BackendUnavailable(f"Ray is not installed: {INSTALL_HINT}") from exc


def ray_available() -> bool:
    """Whether Ray can be imported here (imports it when it can)."""
    try:
        require_ray()
    except BackendUnavailable:
        return False
    return True


def connect(address: str | None = None) -> Any:
    """Join a Ray cluster once per process; returns the ``ray`` module.

    ``address``: ``"host:port"`` of a head started with ``ray start --head``, ``"auto"`` (the
    cluster this machine belongs to), ``"local"`` (start one in this process), or None: Ray's own
    default (``RAY_ADDRESS``, else a cluster running here, else a new local one). Does nothing
    when this process is already connected.
    """
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if address is not None:
            kwargs["address"] = address
        ray.init(**kwargs)
    return ray


def ray_errors() -> tuple[type[BaseException], ...]:
    """Ray's own failures (dead actor, lost object, system error): transport errors to us."""
    ray = require_ray()
    return (ray.exceptions.RayError,)


__all__ = ["INSTALL_HINT", "connect", "ray_available", "ray_errors", "require_ray"]
