"""WebRTC transport figures (``stream.transport.rtp_stats``): a live session on loopback counts
its RTP packets, jitter and round trip, its host keeps them when it ends, and ``/metrics``
exports them; the Grafana dashboard and the alert rules in ``deploy/`` name only metrics that
``/metrics`` exports, and ``promtool`` accepts the rules."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from typing import Any

import pytest

from stream import Pipeline
from stream.metrics import Histogram

from .conftest import REPO

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytest.importorskip("prometheus_client", reason="prometheus_client is not installed")

from aiortc.mediastreams import AudioStreamTrack
from prometheus_client.parser import text_string_to_metric_families

from media_nodes import Gain
from stream.transport.host import SessionHost
from stream.transport.prom import Totals, render
from stream.transport.rtp_stats import TransportStats, clock_rates, jitter_buffers
from stream.transport.session import SessionOptions

from .loopback import LOOPBACK, loopback_peer

DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
RULES = REPO / "deploy" / "prometheus-rules.yaml"


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and want <= set(got))


async def _live_session(until: Any, timeout: float = 40.0) -> dict[str, Any]:
    """A session on a ``SessionHost`` served to an aiortc peer on 127.0.0.1, sending audio and
    taking the pipeline's output back, run until ``until(session_status)``; then closed.

    Returns the live session status last seen, the host's status after the close (its
    ``metrics``), and how many jitter buffers the session had."""
    host = SessionHost(
        lambda: Pipeline([Gain(gain_db=-6.0, name="gain")]),
        SessionOptions(ice_addresses=LOOPBACK),
    )
    async with loopback_peer(host, "s1", AudioStreamTrack()):  # 20 ms of silence, paced
        session = host.sessions["s1"]
        buffers = len(jitter_buffers(session.pc))
        deadline = time.monotonic() + timeout
        while True:
            live = host.status()["list"][0]
            if until(live):
                break
            assert time.monotonic() < deadline, f"not reached in {timeout} s: {live}"
            await asyncio.sleep(0.1)  # polling with a deadline: samples come every second
        await host.close_all("test over")
        return {"live": live, "after": host.status(), "buffers": buffers}


def _flowing(status: dict[str, Any]) -> bool:
    t = status["transport"]
    return bool(
        t["packets_received"]["audio"] > 50
        and t["packets_sent"]["audio"] > 0
        and t["jitter"]["audio"]["count"] > 0
        and t["round_trip"]["count"] > 0
    )


def test_a_live_session_counts_rtp_and_its_host_keeps_the_figures_when_it_ends() -> None:
    got = asyncio.run(_live_session(_flowing))
    live = TransportStats.from_dict(got["live"]["transport"])
    assert got["buffers"] == 1  # the adaptive jitter buffer is found where use_jitter_buffer put it
    now = got["live"]["transport"]["now"]
    assert now["round_trip_s"] is not None and now["round_trip_s"] >= 0
    assert set(now["jitter_s"]) == {"audio"}
    assert live.bytes_received > 0 and live.bytes_sent > 0
    assert live.packets_received["video"] == 0  # no video was offered

    after = got["after"]
    assert after["sessions"] == 0
    ended = TransportStats.from_dict(after["metrics"]["ended_transport"])
    # the last sample is taken at the close: never fewer than the live figures
    assert ended.packets_received["audio"] >= live.packets_received["audio"]
    assert ended.packets_sent["audio"] >= live.packets_sent["audio"]
    assert ended.round_trip.count >= live.round_trip.count
    assert ended.jitter_buffer_held == 0  # an ended session holds nothing

    # /metrics of that host: the ended session's figures, exactly
    exported = _samples(render({**after, "sessions_total": 1}, Totals()))
    received = _value(exported, "remotemedia_rtp_received_packets_total", kind="audio")
    assert received == ended.packets_received["audio"]
    assert (
        _value(exported, "remotemedia_rtp_sent_packets_total", kind="audio")
        == (ended.packets_sent["audio"])
    )
    assert _value(exported, "remotemedia_rtp_round_trip_seconds_count") == ended.round_trip.count
    jitter = _value(exported, "remotemedia_rtp_jitter_seconds_count", kind="audio")
    assert jitter == ended.jitter["audio"].count
    assert _value(exported, "remotemedia_jitter_buffer_held_packets", worker="front") == 0


def _transport(received: int, held: int, rtt_ms: float) -> dict[str, Any]:
    return TransportStats(
        packets_received={"audio": received, "video": 0},
        packets_sent={"audio": received, "video": 0},
        packets_lost={"audio": 1, "video": 0},
        remote_packets_lost={"audio": 2, "video": 0},
        jitter={"audio": Histogram.of([2_000_000]), "video": Histogram()},
        round_trip=Histogram.of([round(rtt_ms * 1e6)]),
        jitter_buffer_lost=3,
        jitter_buffer_held=held,
    ).to_dict()


def _status(ended: dict[str, Any] | None, live: list[dict[str, Any]], instance: str) -> Any:
    metrics = {"instance": instance, "ended": {}, "ended_stats": None, "ended_transport": ended}
    return {
        "sessions": len(live),
        "sessions_total": 2,
        "list": [{"session": "a", "worker": 0, "transport": t} for t in live],
        "workers": [{"index": 0, "alive": True, "cpu": 0.2, "metrics": metrics}],
        "worker_restarts": 0,
    }


def test_transport_counters_stay_monotonic_across_session_ends_and_worker_restarts() -> None:
    totals = Totals()
    first = _samples(render(_status(None, [_transport(100, 2, 10)], "A"), totals))
    assert _value(first, "remotemedia_rtp_received_packets_total", kind="audio") == 100
    assert _value(first, "remotemedia_jitter_buffer_held_packets", worker="0") == 2
    lost_in = _value(first, "remotemedia_rtp_lost_packets_total", direction="inbound")
    assert (lost_in, _value(first, "remotemedia_rtp_lost_packets_total", direction="outbound")) == (
        1,
        2,
    )
    # the session ended on its worker: its final figures are the host's ended totals
    ended = TransportStats.from_dict(_transport(120, 0, 10)).ended().to_dict()
    second = _samples(render(_status(ended, [], "A"), totals))
    assert _value(second, "remotemedia_rtp_received_packets_total", kind="audio") == 120
    assert _value(second, "remotemedia_jitter_buffer_held_packets") == 0
    # the worker was replaced: its new host starts from zero, with one live session
    third = _samples(render(_status(None, [_transport(10, 1, 50)], "B"), totals))
    assert _value(third, "remotemedia_rtp_received_packets_total", kind="audio") == 130
    assert _value(third, "remotemedia_jitter_buffer_lost_packets_total") == 6
    assert _value(third, "remotemedia_jitter_buffer_held_packets") == 1  # the live session's
    assert _value(third, "remotemedia_rtp_round_trip_seconds_count") == 2
    # 10 ms and 50 ms round trips: one under 20 ms, both under 60 ms
    assert _value(third, "remotemedia_rtp_round_trip_seconds_bucket", le=_le_over(0.02)) == 1
    assert _value(third, "remotemedia_rtp_round_trip_seconds_bucket", le=_le_over(0.06)) == 2


def _le_over(seconds: float) -> str:
    from stream.metrics import BOUNDS_NS

    return repr(min(b for b in BOUNDS_NS if b >= seconds * 1e9) / 1e9)


def test_clock_rates_come_from_each_sections_first_payload_format() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0 111",
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:0 PCMU/8000",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=rtpmap:96 VP8/90000",
        ]
    )
    assert clock_rates(sdp) == {"audio": 8000, "video": 90000}
    assert clock_rates("v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\n") == {"video": 90000}


# -- deploy/: the dashboard and the alert rules against what /metrics exports

#: functions, aggregations and keywords that may appear in the expressions
_PROMQL_WORDS = frozenset(
    [
        "sum",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "max",
        "min",
        "avg",
        "count",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "clamp_min",
        "clamp_max",
        "abs",
        "topk",
        "bottomk",
        "max_over_time",
        "min_over_time",
        "avg_over_time",
        "delta",
        "deriv",
        "changes",
        "resets",
        "label_replace",
        "vector",
        "scalar",
        "offset",
        "time",
    ]
)


def _exported_names() -> set[str]:
    """Every series name a scrape of ``render()`` carries, from a status with a worker, a live
    session (pipeline and transport figures) and the telephony routes' figures."""

    async def stats() -> dict[str, Any]:
        pipeline = Pipeline([Gain(gain_db=-6.0, name="gain")])
        async with pipeline:
            async for _ in pipeline.process([]):
                pass
        return pipeline.stats().to_dict()

    pipeline = asyncio.run(stats())
    metrics = {"instance": "A", "ended": {"peer left": 1}, "ended_stats": pipeline}
    status = {
        "sessions": 1,
        "sessions_total": 1,
        "rejected": {"503": 1},
        "list": [
            {"session": "a", "worker": 0, "pipeline": pipeline, "transport": _transport(5, 0, 9)}
        ],
        "workers": [
            {"index": 0, "alive": True, "cpu": 0.1, "metrics": metrics, "loop_lag_s": 0.001}
        ],
        "worker_restarts": 0,
        "calls": {"calls": 0, "calls_total": 0, "ended": {}, "refused": {}, "playout_total": {}},
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(render(status, Totals()).decode()):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def _metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside braces or by/without lists) or durations."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r'"[^"]*"', "", expr)  # strings
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {w for w in words if w not in _PROMQL_WORDS and not re.fullmatch(r"e\d*", w)}


def _dashboard_exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _dashboard_exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _dashboard_exprs(v)]
    return []


def test_the_grafana_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs(dashboard)
    assert len(exprs) >= 12, exprs
    exported = _exported_names()
    used: set[str] = set()
    for expr in exprs:
        names = _metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} names {sorted(names - exported)}, not exported"
        used |= names
    # what the dashboard is for: sessions, stage p99, queues, drops, loop lag, workers, transport
    for name in [
        "remotemedia_sessions_active",
        "remotemedia_sessions_started_total",
        "remotemedia_sessions_refused_total",
        "remotemedia_stage_processing_seconds_bucket",
        "remotemedia_stage_queue_high_water",
        "remotemedia_dropped_items_total",
        "remotemedia_event_loop_lag_seconds",
        "remotemedia_worker_cpu_cores",
        "remotemedia_worker_restarts_total",
        "remotemedia_rtp_lost_packets_total",
        "remotemedia_rtp_jitter_seconds_bucket",
        "remotemedia_rtp_round_trip_seconds_bucket",
    ]:
        assert name in used, f"the dashboard shows no {name}"
    uids = [p.get("id") for p in dashboard["panels"]]
    assert len(uids) == len(set(uids)), "panel ids repeat"


def _rule_exprs() -> list[str]:
    # the rules file is YAML; its expressions are the `expr:` values (one line or folded)
    text = RULES.read_text()
    exprs: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not m:
            continue
        value = m.group(2).strip()
        if value in (">", ">-", "|", "|-"):
            indent = len(m.group(1))
            body = []
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt.strip())
            value = " ".join(body)
        exprs.append(value)
    return exprs


def test_the_alert_rules_query_only_exported_metrics() -> None:
    exprs = _rule_exprs()
    assert len(exprs) >= 5, exprs
    exported = _exported_names()
    for expr in exprs:
        names = _metric_names(expr)
        assert names and names <= exported, f"{expr!r}: {sorted(names - exported)} not exported"


def test_promtool_accepts_the_alert_rules_and_they_fire() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian package prometheus)")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout
    tests = REPO / "tests" / "webrtc" / "prometheus-rules-test.yaml"
    done = subprocess.run(
        [promtool, "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tests.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
