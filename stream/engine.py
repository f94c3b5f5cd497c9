"""Backend selection, in one place: the only module that imports the compiled engine.

Each built-in stage picks ``auto | rust | python`` from its ``backend=`` argument, else the
``REMOTEMEDIA_RUNTIME`` environment variable, else ``auto``. ``auto`` runs the Rust kernel when the
engine is built and has one, and otherwise falls back to the Python twin, logging why once.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from .errors import BackendUnavailable, ConfigError

log = logging.getLogger("stream.engine")

_engine: Any
try:
    _engine = importlib.import_module("stream._engine")
    ENGINE_IMPORT_ERROR: str | None = None
except ImportError as exc:  # built without the engine, or it failed to load
    _engine = None
    ENGINE_IMPORT_ERROR = str(exc)

MODES = ("auto", "rust", "python")
ENV_VAR = "REMOTEMEDIA_RUNTIME"
_warned: set[str] = set()
# Kernels the engine has only when built with a cargo feature (slow to compile, so optional):
# why one is missing, as the fallback reason and describe() say it.
_OPTIONAL_KERNELS = {
    "SileroVADKernel": "engine built without the Silero kernel (cargo feature 'silero')",
}


def engine_available() -> bool:
    """True when the compiled Rust engine is importable."""
    return _engine is not None


def engine_version() -> str | None:
    """The engine's version, or None when it is not built."""
    return None if _engine is None else str(_engine.__version__)


def resolve_mode(requested: str | None) -> tuple[str, str]:
    """The mode a stage runs in and where it came from (argument, environment or default)."""
    if requested is not None:
        mode, origin = requested, f"backend={requested!r}"
    elif os.environ.get(ENV_VAR):
        mode, origin = os.environ[ENV_VAR].strip().lower(), f"{ENV_VAR}={os.environ[ENV_VAR]}"
    else:
        mode, origin = "auto", "default"
    if mode not in MODES:
        raise ConfigError(f"backend must be one of {MODES}, got {mode!r} ({origin})")
    return mode, origin


def select_kernel(
    stage: str,
    requested: str | None,
    native_name: str | None,
    python_cls: type[Any],
    kwargs: dict[str, Any],
    force_python: bool = False,
) -> tuple[Any, str, str]:
    """Build a stage's kernel: returns ``(kernel, backend, reason)``.

    Raises BackendUnavailable when ``rust`` was asked for and cannot run.
    """
    mode, origin = resolve_mode(requested)
    if force_python:
        return python_cls(**kwargs, stage=stage), "python", "run(use_rust=False)"
    if mode == "python":
        return python_cls(**kwargs, stage=stage), "python", f"asked for ({origin})"
    native = None if _engine is None or native_name is None else getattr(_engine, native_name, None)
    if native is not None:
        return native(**kwargs, stage=stage), "rust", "native kernel"
    if _engine is None:
        why = f"engine not built ({ENGINE_IMPORT_ERROR})"
    elif native_name in _OPTIONAL_KERNELS:
        why = _OPTIONAL_KERNELS[native_name]
    else:
        why = f"no native {native_name or 'implementation'} in this engine"
    if mode == "rust":
        raise BackendUnavailable(f"backend 'rust' was asked for ({origin}), but {why}", stage=stage)
    if why not in _warned:
        _warned.add(why)
        log.warning("falling back to Python stages: %s", why)
    return python_cls(**kwargs, stage=stage), "python", f"fallback: {why}"


def make_chain(kernels: list[Any]) -> Any:
    """One native call per block through several Rust kernels, GIL released."""
    if _engine is None:  # pragma: no cover - callers only fuse kernels the engine built
        raise BackendUnavailable("the Rust engine is not built")
    return _engine.Chain(kernels)


def engine_class(name: str, backend: str) -> Any | None:
    """The engine's class ``name`` for a stage running on ``backend`` ("rust" or "python"): None
    on the Python backend, or when the engine is not built or has no such class (a helper a
    stage's twin also implements, as ``EchoCancel``'s delay estimator)."""
    return getattr(_engine, name, None) if backend == "rust" else None


def rtp_audio_leg(*args: Any, **kwargs: Any) -> Any:
    """The engine's ``RtpAudioLeg`` (a session's audio RTP: SRTP, jitter buffer, Opus); raises
    BackendUnavailable when the engine is not built or has none."""
    leg = getattr(_engine, "RtpAudioLeg", None)
    if leg is None:
        raise BackendUnavailable("the Rust engine with RtpAudioLeg is not built")
    return leg(*args, **kwargs)


def has_rtp_audio_leg(backend: str | None = None) -> bool:
    """Whether the engine can carry a session's audio RTP (``rtp_audio_leg``): it has the leg,
    and the session's backend (or REMOTEMEDIA_RUNTIME) does not ask for Python only."""
    return hasattr(_engine, "RtpAudioLeg") and resolve_mode(backend)[0] != "python"


__all__ = [
    "ENV_VAR",
    "MODES",
    "engine_available",
    "engine_class",
    "engine_version",
    "has_rtp_audio_leg",
    "make_chain",
    "resolve_mode",
    "rtp_audio_leg",
    "select_kernel",
]
