"""``GET /metrics``: a real Prometheus server scrapes a running ``serve`` with a live session
(per-stage p99, session counts, RTP packets received).

The exposition itself (``stream.transport.prom.render``) is checked in-process too: counters stay
monotonic when sessions end and when a worker's host is replaced.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from stream import Pipeline
from stream.metrics import BOUNDS_NS

from .conftest import REPO, manifest
from .metrics_nodes import Busy

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytest.importorskip("prometheus_client", reason="prometheus_client is not installed")

from prometheus_client.parser import text_string_to_metric_families

from stream.transport.prom import FRONT, Totals, render

PROMETHEUS = Path("/usr/bin/prometheus")
PROM_PORT = 9090  # on the client test host: a namespace of its own, nothing else listens there
CHAIN = [
    {"type": "Gain", "name": "gain", "params": {"gain_db": -6}},
    {"type": "webrtc.metrics_nodes:Busy", "name": "busy", "params": {"ms": 1.0}},
]


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    return sum(v for (n, got), v in samples.items() if n == name and set(want) <= set(got))


async def _session_stats(frames: int, ms: float) -> dict[str, Any]:
    """A session's pipeline figures as a host reports them (``PipelineStats.to_dict()``)."""
    pipeline = Pipeline([Busy(ms, name="busy")])
    async with pipeline:
        async for _ in pipeline.process(list(range(frames))):
            pass
    pipeline.count_drop("paused", 1)
    return pipeline.stats().to_dict()


def test_render_keeps_counters_monotonic_across_session_ends_and_worker_restarts() -> None:
    live = asyncio.run(_session_stats(4, 1.0))
    final = asyncio.run(_session_stats(6, 1.0))

    def status(metrics: dict[str, Any], sessions: list[dict[str, Any]]) -> dict[str, Any]:
        worker = {"index": 0, "alive": True, "cpu": 0.5, "metrics": metrics, "loop_lag_s": 0.001}
        return {
            "sessions": len(sessions),
            "sessions_total": 3,
            "rejected": {"503": 2},
            "list": [{"session": "a", "worker": 0, "pipeline": p} for p in sessions],
            "workers": [worker],
            "worker_restarts": 0,
        }

    totals = Totals()
    first = _samples(
        render(status({"instance": "A", "ended": {}, "ended_stats": None}, [live]), totals)
    )
    assert _value(first, "remotemedia_stage_items_in_total", stage="busy", worker="0") == 4
    assert _value(first, "remotemedia_sessions_active") == 1
    assert _value(first, "remotemedia_sessions_refused_total", status="503") == 2
    assert _value(first, "remotemedia_worker_cpu_cores", worker="0") == 0.5
    # the session ended (its final figures went into its host's totals)
    ended = {"instance": "A", "ended": {"peer left": 1}, "ended_stats": final}
    second = _samples(render(status(ended, []), totals))
    assert _value(second, "remotemedia_stage_items_in_total", stage="busy") == 6
    assert _value(second, "remotemedia_sessions_ended_total", reason="peer left") == 1
    assert _value(second, "remotemedia_dropped_items_total", reason="paused") == 1
    # the worker was replaced: its new host counts from zero, the old totals are kept
    fresh: dict[str, Any] = {"instance": "B", "ended": {}, "ended_stats": None}
    third = _samples(render(status(fresh, [live]), totals))
    assert _value(third, "remotemedia_stage_items_in_total", stage="busy") == 6 + 4
    assert _value(third, "remotemedia_sessions_ended_total", reason="peer left") == 1
    count = _value(third, "remotemedia_stage_processing_seconds_count", stage="busy")
    assert count == 10
    # every observation took 1 ms at least: no bucket under a millisecond holds any
    under = [b for b in BOUNDS_NS if b < 1_000_000]
    le = repr(under[-1] / 1e9)
    assert _value(third, "remotemedia_stage_processing_seconds_bucket", stage="busy", le=le) == 0
    assert _value(third, "remotemedia_event_loop_lag_seconds", worker="0") == 0.001
    assert FRONT == "front"


def _prometheus_config(tmp_path: Path, target: str) -> Path:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {"job_name": "remotemedia", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    return config


@pytest.mark.webrtc
@pytest.mark.parametrize("workers", [0, 1])
def test_prometheus_scrapes_serve_and_answers_p99_and_session_count(
    hosts: Any, start_server: Any, tmp_path: Path, workers: int
) -> None:
    """Sessions in the server's process (worker label ``front``) and on a process worker
    (``0``: its figures travel in its status replies)."""
    if not PROMETHEUS.exists():
        pytest.skip(f"{PROMETHEUS} is missing (Debian package prometheus)")
    server = start_server(
        "--pipeline",
        manifest(tmp_path, CHAIN),
        "--status-rate",
        "0",
        "--allow-module",
        "webrtc.metrics_nodes",
        "--workers",
        str(workers),
    )
    target = urllib.parse.urlsplit(server.url).netloc
    prom_log = tmp_path / "prometheus.log"
    with prom_log.open("w") as log_file:  # a file: a pipe nobody reads blocks it once full
        prom = hosts.popen(
            "client",
            [
                str(PROMETHEUS),
                f"--config.file={_prometheus_config(tmp_path, target)}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={hosts.client_ip}:{PROM_PORT}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    peer = hosts.popen(
        "client",
        [*_connect_argv(server.url), "--seconds", "60"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://{hosts.client_ip}:{PROM_PORT}/api/v1/query"

    def query(expr: str) -> list[dict[str, Any]]:
        async def call() -> bytes:
            url = f"{base}?{urllib.parse.urlencode({'query': expr})}"
            with urllib.request.urlopen(url, timeout=10) as resp:
                return bytes(resp.read())

        try:
            answer = json.loads(hosts.run_async("client", call))
        except OSError:  # not listening yet
            return []
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def until(expr: str, ok: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = query(expr)
            if got and ok(got):
                return got
            if time.monotonic() > deadline or prom.poll() is not None:
                err = "\n".join(prom_log.read_text().splitlines()[-20:])
                raise AssertionError(f"{expr}: {got}\n{err}\n{server.log()}")
            time.sleep(0.5)  # polling with a deadline: Prometheus scrapes every second

    try:
        server.wait_for(lambda s: s["sessions"] == 1 and s["list"][0]["frames_in"] > 50, 30)
        active = until("remotemedia_sessions_active", lambda r: float(r[0]["value"][1]) == 1)
        assert active[0]["metric"]["job"] == "remotemedia"
        p99 = until(
            "histogram_quantile(0.99, sum by (le, stage) "
            '(remotemedia_stage_processing_seconds_bucket{stage="busy"}))',
            lambda r: float(r[0]["value"][1]) > 0,
        )
        # each item kept the busy stage 1 ms: its p99 is at least that (interpolated within the
        # bucket holding 1 ms, so at least that bucket's lower bound); a lower bound only
        assert float(p99[0]["value"][1]) >= max(b for b in BOUNDS_NS if b < 1_000_000) / 1e9
        gain = until(
            'remotemedia_stage_items_in_total{stage="gain"}', lambda r: float(r[0]["value"][1]) > 50
        )
        assert gain[0]["metric"]["worker"] == ("0" if workers else "front")
        assert gain[0]["metric"]["backend"] in ("python", "rust")
        seen = float(gain[0]["value"][1])
        # the transport: the live session's RTP packets, sampled about once a second
        rtp_expr = 'sum(remotemedia_rtp_received_packets_total{kind="audio"})'
        rtp = until(rtp_expr, lambda r: float(r[0]["value"][1]) > 0)
        rtp_seen = float(rtp[0]["value"][1])
        peer.terminate()
        peer.wait(20)
        until(
            "remotemedia_sessions_ended_total", lambda r: sum(float(x["value"][1]) for x in r) >= 1
        )
        until("remotemedia_sessions_active", lambda r: float(r[0]["value"][1]) == 0)
        # a scrape that timed out on a busy machine leaves no sample: ask until there is one
        after = until('remotemedia_stage_items_in_total{stage="gain"}', bool)
        assert float(after[0]["value"][1]) >= seen  # the ended session's counts are kept
        assert float(until(rtp_expr, bool)[0]["value"][1]) >= rtp_seen
        started = until("remotemedia_sessions_started_total", bool)
        assert float(started[0]["value"][1]) == 1
    finally:
        for proc in (peer, prom):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _connect_argv(url: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "stream.transport", "connect", url, "--tone", "500"]
