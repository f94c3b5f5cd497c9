"""Session traces reach a real OTLP/HTTP receiver; JSON log lines carry the session's context."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hosts.otlp import OtlpReceiver

from stream.transport import logs, telemetry

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "remotemedia-test")
    monkeypatch.setenv("REMOTEMEDIA_TRACE_FRAMES", "2")
    telemetry.reset()
    yield
    telemetry.reset()


async def test_session_spans_reach_an_otlp_receiver(
    otel_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = OtlpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", await receiver.start())
    try:
        trace = telemetry.SessionTrace("s1", worker=0, placement="local", unset=None)
        assert len(trace.trace_id) == 32
        for phase in ("offer", "ice", "dtls", "pipeline"):
            trace.phase(phase)
        for frame in range(4):
            if frame % trace.frame_every == 0:
                trace.stage("gain1", "Gain", "rust", 1_000 * frame, 1_000 * frame + 500)
        trace.close("peer left")
        await asyncio.to_thread(telemetry.shutdown)  # flushes the batch to the receiver
    finally:
        await receiver.stop()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in receiver.spans:
        by_name.setdefault(span["name"], []).append(span)
    (session,) = by_name["session"]
    assert session["service"] == "remotemedia-test"
    assert session["attributes"] == {
        "session.id": "s1",
        "worker": 0,
        "placement": "local",
        "session.close_reason": "peer left",
    }
    assert all(s["trace"] == trace.trace_id for s in receiver.spans)
    for phase in ("offer", "ice", "dtls", "pipeline"):
        (span,) = by_name[phase]
        assert span["parent"] == session["id"]
        assert session["start"] <= span["start"] <= span["end"] <= session["end"]
    stages = by_name["stage gain1"]
    assert len(stages) == 2  # frames 0 and 2 of 4, one in two sampled
    for span in stages:
        assert span["parent"] == by_name["pipeline"][0]["id"]
        assert span["end"] - span["start"] == 500
        assert span["attributes"]["stage.backend"] == "rust"


def test_tracing_is_off_without_the_environment_asking(
    otel_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert not telemetry.wanted()
    trace = telemetry.SessionTrace("s2")
    trace.phase("offer")
    trace.close("done")
    assert trace.trace_id == "" and telemetry.tracer() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry.wanted()


def _capture(fmt: logs.LogFormat) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(f"stream.test_logs_{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


async def test_json_lines_carry_the_session_of_the_task() -> None:
    logger, stream = _capture("json")
    logs.set_worker("w1")

    async def session_task(name: str) -> None:
        logs.bind(session=name)
        await asyncio.sleep(0)
        logger.info("frame from %s", name)

    await asyncio.gather(session_task("a"), session_task("b"))
    logger.warning("no session here", extra={"stage": "gain1"})
    try:
        raise ValueError("bad frame")
    except ValueError:
        logger.exception("failed")
    logs.set_worker("")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["message"], x.get("session")) for x in lines[:2]] == [
        ("frame from a", "a"),
        ("frame from b", "b"),
    ]
    assert lines[2]["stage"] == "gain1" and "session" not in lines[2]
    assert all(x["worker"] == "w1" for x in lines)
    assert lines[3]["level"] == "error" and "ValueError: bad frame" in lines[3]["exception"]


def test_text_lines_tag_the_context() -> None:
    logger, stream = _capture("text")
    with logs.bound(session="abc"):
        logger.info("hello")
    logger.info("bye")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("hello [session=abc]") and second.endswith("bye")
    with pytest.raises(ValueError, match="log format"):
        logs.configure("xml")  # type: ignore[arg-type]
