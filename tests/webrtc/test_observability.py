"""A live session traced and logged: its spans reach a real OTLP/HTTP receiver on the peer's
host, its JSON log lines carry the session and trace ids; in-process and on a worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stream.testing import split_frames, tone

from .conftest import manifest

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytest.importorskip("opentelemetry.sdk", reason="pip install 'remotemedia[otel]'")
pytestmark = pytest.mark.webrtc

from hosts.otlp import OtlpReceiver  # noqa: E402

from stream.transport.webrtc import connect  # noqa: E402

CHAIN = [
    {"type": "Gain", "name": "gain", "params": {"gain_db": -6}},
    {"type": "LevelMeter", "name": "meter"},
]


@pytest.mark.parametrize("workers", [0, 1])
def test_session_trace_and_json_logs(
    hosts: Any, start_server: Any, tmp_path: Path, workers: int
) -> None:
    receiver = OtlpReceiver(hosts.client_ip)
    endpoint: dict[str, str] = {}

    async def start_receiver() -> None:
        endpoint["url"] = await receiver.start()

    # The receiver lives on the peer's host, in a loop of its own thread: the server's exporter
    # posts to it across the test network.
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve_receiver() -> None:
        from hosts.netns import _enter_netns

        _enter_netns(hosts.namespaces["client"])
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start_receiver())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve_receiver, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint["url"],
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "remotemedia-observed",
            "REMOTEMEDIA_TRACE_FRAMES": "10",
        }
        args = ["--pipeline", manifest(tmp_path, CHAIN), "--log-format", "json"]
        if workers:
            args += ["--workers", str(workers)]
        server = start_server(*args, env=env)
        frames = split_frames(tone(440, 2.0, 48000, amplitude=0.5), 48000, 960)
        hosts.run_async("client", lambda: connect(server.url, frames, []))
        server.wait_for(lambda s: s["sessions"] == 0 and s["sessions_total"] == 1)

        def complete(spans: list[dict[str, Any]]) -> bool:
            names = {s["name"] for s in spans}
            return {"session", "offer", "ice", "dtls", "pipeline"} <= names

        spans = asyncio.run_coroutine_threadsafe(
            receiver.wait_for(complete, timeout=30), loop
        ).result(40)
    finally:
        if endpoint:
            asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    sessions = [s for s in spans if s["name"] == "session"]
    assert len(sessions) == 1
    session = sessions[0]
    assert session["service"] == "remotemedia-observed"
    attrs = session["attributes"]
    assert attrs["session.close_reason"]
    assert attrs.get("worker") == ("worker 0" if workers else None)
    phases = {s["name"]: s for s in spans if s["parent"] == session["id"]}
    assert set(phases) == {"offer", "ice", "dtls", "pipeline"}
    order = [phases[p]["start"] for p in ("offer", "ice", "dtls", "pipeline")]
    assert order == sorted(order)
    stages = [s for s in spans if s["name"].startswith("stage ")]
    assert stages, "no sampled stage spans"
    assert all(s["parent"] == phases["pipeline"]["id"] for s in stages)
    assert all(s["trace"] == session["trace"] for s in spans)
    # 2 s of audio is about 100 frames per stage, one in ten sampled
    kinds = {s["attributes"]["stage.type"] for s in stages}
    assert kinds & {"Gain", "LevelMeter", "FusedSegment"}
    # The server's JSON log lines of that session carry its id and trace id.
    records = []
    for line in server.lines:
        if line.startswith("{"):
            records.append(json.loads(line))
    mine = [r for r in records if r.get("session") == attrs["session.id"]]
    assert mine, "no log line names the session:\n" + server.log()
    # lines from the process that runs the session carry its trace id (the front's "answered"
    # line for a worker's session does not know it)
    traced = [r for r in mine if "trace_id" in r]
    assert traced and all(r["trace_id"] == session["trace"] for r in traced)
    assert any("closing" in r["message"] for r in traced)
    if workers:
        assert all(r.get("worker") == "worker 0" for r in traced)
