"""Log lines for operators: plain text or one JSON object per line, with the session's context.

``configure(fmt, level)`` sets up the root logger once (``remotemedia serve --log-format json``).
Every record gets ``session``, ``stage``, ``worker`` and ``trace_id`` fields: from the record's
``extra=`` when a call gives them, else from the context variables ``bind()`` sets (a session's
tasks inherit them: asyncio copies the context into each task it creates), else empty. The
trace id is the current OpenTelemetry span's, when tracing is on (``telemetry.py``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
FIELDS = ("session", "stage", "worker", "trace_id")

_context: dict[str, contextvars.ContextVar[str]] = {
    name: contextvars.ContextVar(f"remotemedia_log_{name}", default="") for name in FIELDS
}
_worker_name = os.environ.get("REMOTEMEDIA_WORKER", "")


def set_worker(name: str) -> None:
    """Name this process's worker in every log line (a worker process calls it at start)."""
    global _worker_name
    _worker_name = name


def worker_name() -> str:
    """This process's worker name ("" in the front or a plain process)."""
    return _worker_name


def bind(**values: str) -> None:
    """Set context fields (``session=``, ``stage=``) for this task and the tasks it creates."""
    for name, value in values.items():
        _context[name].set(value)


@contextmanager
def bound(**values: str) -> Iterator[None]:
    """``bind()`` for the length of a block."""
    tokens = [(_context[name], _context[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _trace_id() -> str:
    from . import telemetry

    return telemetry.current_trace_id()


class ContextFilter(logging.Filter):
    """Puts the context fields on each record (a record's own ``extra=`` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in FIELDS:
            if not getattr(record, name, ""):
                if name == "worker":
                    value = _worker_name
                elif name == "trace_id":
                    value = _context[name].get() or _trace_id()
                else:
                    value = _context[name].get()
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context
    fields that are set, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, "")
            if value:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` with ``[session=...]`` when the line belongs to one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        tags = [f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, "")]
        return f"{text} [{' '.join(tags)}]" if tags else text


def configure(fmt: LogFormat = "text", level: int = logging.INFO) -> None:
    """Send log records to stderr in ``fmt``, at ``level``, with the context fields."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if level > logging.DEBUG:  # aiortc and aioice log every ICE check at INFO
        for name in ("aioice", "aiortc", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)


__all__ = ["FORMATS", "LogFormat", "bind", "bound", "configure", "set_worker", "worker_name"]
