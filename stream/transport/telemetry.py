"""OpenTelemetry traces of sessions: the ``otel`` extra, configured by the standard variables.

Tracing is on when ``opentelemetry-sdk`` is installed (``pip install 'remotemedia[otel]'``) and
the environment asks for it: ``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``), or an OTLP
endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and
neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none``. Everything else (service
name and resource attributes, sampler, batch delays, headers, timeouts) is the SDK's own reading
of the ``OTEL_*`` variables. OTLP goes over HTTP/protobuf (the exporter the extra installs).

A session is one trace: a ``session`` span from the offer to the close (its attributes: session
id, worker, placement; the close reason), with a child span per phase (``offer``, ``ice``,
``dtls``, ``pipeline``) and sampled stage spans under ``pipeline``: one frame in
``REMOTEMEDIA_TRACE_FRAMES`` (default 50, a second of 20 ms frames) per stage, timed as the
pipeline ran it. Worker processes set up their own exporter from the same (inherited)
environment.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger("stream.transport")

FRAME_EVERY_DEFAULT = 50
PHASES = ("offer", "ice", "dtls", "pipeline")

_tracer: Any = None
_provider: Any = None
_configured = False
_WALL_OFFSET_NS = time.time_ns() - time.perf_counter_ns()


def wanted() -> bool:
    """Whether the environment asks for traces (whatever is installed)."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def frame_every() -> int:
    """One frame in this many gets stage spans (``REMOTEMEDIA_TRACE_FRAMES``; 0: none)."""
    raw = os.environ.get("REMOTEMEDIA_TRACE_FRAMES", "")
    try:
        return max(0, int(raw)) if raw else FRAME_EVERY_DEFAULT
    except ValueError:
        log.warning(
            "REMOTEMEDIA_TRACE_FRAMES=%r is not a count: using %d", raw, FRAME_EVERY_DEFAULT
        )
        return FRAME_EVERY_DEFAULT


def tracer() -> Any:
    """The tracer sessions use, set up on first call; None when tracing is off or not installed."""
    global _tracer, _provider, _configured
    if _configured:
        return _tracer
    _configured = True
    if not wanted():
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning(
            "OTEL_* variables ask for traces but opentelemetry-sdk is not installed: "
            "pip install 'remotemedia[otel]'"
        )
        return None
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter: Any
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("the OTLP/HTTP exporter is not installed: pip install 'remotemedia[otel]'")
            return None
        exporter = OTLPSpanExporter()
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console)", exporter_name)
        return None
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "remotemedia"}))
    _provider = TracerProvider(resource=resource)
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer = _provider.get_tracer("remotemedia.transport")
    return _tracer


def shutdown() -> None:
    """Export what is buffered (at exit of a server or worker)."""
    if _provider is not None:
        _provider.shutdown()


def reset() -> None:
    """Export what is buffered and forget the set-up: the next ``tracer()`` reads the environment
    again (tests; a worker process after fork)."""
    global _tracer, _provider, _configured
    shutdown()
    _tracer = _provider = None
    _configured = False


def current_trace_id() -> str:
    """The current span's trace id in hex ("" when there is none)."""
    if _tracer is None:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def wall_ns(perf_ns: int) -> int:
    """A ``time.perf_counter_ns()`` reading as wall-clock ns (span times are wall-clock)."""
    return perf_ns + _WALL_OFFSET_NS


class SessionTrace:
    """The spans of one session. Every method is a no-op when tracing is off, so callers need no
    checks; ``trace_id`` is then ""."""

    def __init__(self, session_id: str, **attributes: Any) -> None:
        self._tracer = tracer()
        self._root: Any = None
        self._phase: Any = None
        self._phase_name = ""
        self._pipeline: Any = None
        self.frame_every = frame_every() if self._tracer is not None else 0
        if self._tracer is not None:
            self._root = self._tracer.start_span(
                "session", attributes={"session.id": session_id, **_clean(attributes)}
            )
        self._trace_id = (
            format(self._root.get_span_context().trace_id, "032x") if self._root is not None else ""
        )

    @property
    def trace_id(self) -> str:
        """The session's trace id in hex ("" when tracing is off), also after ``close()``."""
        return self._trace_id

    def context(self) -> Any:
        """The OpenTelemetry context with the session span current (None when off)."""
        if self._root is None:
            return None
        from opentelemetry import trace

        return trace.set_span_in_context(self._root)

    def set(self, **attributes: Any) -> None:
        """Add attributes to the session span (placement, reasons)."""
        if self._root is not None:
            self._root.set_attributes(_clean(attributes))

    def phase(self, name: str, **attributes: Any) -> None:
        """End the phase open now (if any) and start ``name`` (one of ``PHASES``)."""
        if self._root is None or name == self._phase_name:
            return
        self._end_phase()
        self._phase_name = name
        self._phase = self._tracer.start_span(
            name, context=self.context(), attributes=_clean(attributes)
        )
        if name == "pipeline":
            self._pipeline = self._phase

    def _end_phase(self) -> None:
        if self._phase is not None:
            self._phase.end()
        self._phase = None
        self._phase_name = ""

    def stage(
        self, name: str, kind: str, backend: str, start_perf_ns: int, end_perf_ns: int
    ) -> None:
        """One sampled frame through stage ``name``: a span under ``pipeline``, timed as it ran."""
        if self._pipeline is None:
            return
        from opentelemetry import trace

        span = self._tracer.start_span(
            f"stage {name}",
            context=trace.set_span_in_context(self._pipeline),
            start_time=wall_ns(start_perf_ns),
            attributes={"stage.name": name, "stage.type": kind, "stage.backend": backend},
        )
        span.end(end_time=wall_ns(end_perf_ns))

    def close(self, reason: str) -> None:
        """End every open span; the session span records why the session ended."""
        if self._root is None:
            return
        self._end_phase()
        self._pipeline = None
        self._root.set_attribute("session.close_reason", reason)
        self._root.end()
        self._root = None


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attributes OpenTelemetry takes: str/bool/int/float, None left out, others as str."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return out


__all__ = [
    "PHASES",
    "SessionTrace",
    "current_trace_id",
    "reset",
    "shutdown",
    "tracer",
    "wanted",
]
