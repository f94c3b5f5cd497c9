"""Prometheus exposition of a ``WebRTCServer``: what ``GET /metrics`` answers.

``metrics_response(server)`` gathers the server's status (``gather_status()``, the front's own
session host's totals and each worker's, from its last status reply) and renders it with
``prometheus_client`` in the text exposition format; ``render(status, totals)`` does the
rendering from a gathered status dict alone. docs/metrics.md lists every metric.

Counters stay monotonic while sessions come and go: a session host keeps the totals of the
sessions that ended on it (``SessionHost.metrics()``), and ``Totals`` (one per server) keeps
what a host had counted when it went away (a worker restarted: its new host starts from zero),
its live sessions' last figures included.

Labels: ``stage``, ``type``, ``backend``, ``worker`` (``front`` for sessions in the server's
process, else the worker's index); no per-session label.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..metrics import BOUNDS_NS, Histogram, PipelineStats
from .host import loop_lag
from .rtp_stats import KINDS, TransportStats

PREFIX = "remotemedia"
FRONT = "front"  # the worker label of sessions in the server's own process

_LE = [repr(b / 1e9) for b in BOUNDS_NS] + ["+Inf"]  # bucket bounds in seconds


@dataclass
class _Host:
    """What was last seen of one session host (the front's, or a worker slot's)."""

    instance: str | None = None
    ended: dict[str, int] = field(default_factory=dict)
    ended_stats: PipelineStats | None = None
    live: PipelineStats | None = None
    ended_transport: TransportStats | None = None
    live_transport: TransportStats | None = None


@dataclass
class _Base:
    """Totals of hosts that went away (per worker label)."""

    ended: dict[str, int] = field(default_factory=dict)
    stats: PipelineStats | None = None
    transport: TransportStats | None = None


def _add(a: PipelineStats | None, b: PipelineStats | None) -> PipelineStats | None:
    return b if a is None else a if b is None else a.merge(b)


def _add_t(a: TransportStats | None, b: TransportStats | None) -> TransportStats | None:
    return b if a is None else a if b is None else a.merge(b)


class Totals:
    """Monotonic totals of one server across session ends and worker restarts.

    ``update(worker, host_metrics, live, live_transport)`` after each gathering, per host: its
    ``SessionHost.metrics()`` dict and the merged pipeline and transport figures of its live
    sessions. ``stats(worker)``, ``transport(worker)`` and ``ended()`` then give what to expose.
    """

    def __init__(self) -> None:
        self._hosts: dict[str, _Host] = {}
        self._base: dict[str, _Base] = {}

    def update(
        self,
        worker: str,
        host_metrics: dict[str, Any] | None,
        live: PipelineStats | None,
        live_transport: TransportStats | None = None,
    ) -> None:
        last = self._hosts.setdefault(worker, _Host())
        if host_metrics is None:  # no reply this time (worker busy or dead): keep the last
            return
        instance = str(host_metrics.get("instance"))
        if last.instance is not None and instance != last.instance:
            base = self._base.setdefault(worker, _Base())
            for reason, n in last.ended.items():
                base.ended[reason] = base.ended.get(reason, 0) + n
            base.stats = _add(base.stats, _add(last.ended_stats, last.live))
            gone = _add_t(last.ended_transport, last.live_transport)
            base.transport = _add_t(base.transport, None if gone is None else gone.ended())
        raw = host_metrics.get("ended_stats")
        raw_transport = host_metrics.get("ended_transport")
        self._hosts[worker] = _Host(
            instance=instance,
            ended={str(k): int(v) for k, v in host_metrics.get("ended", {}).items()},
            ended_stats=None if raw is None else PipelineStats.from_dict(raw),
            live=live,
            ended_transport=None
            if raw_transport is None
            else TransportStats.from_dict(raw_transport),
            live_transport=live_transport,
        )

    def workers(self) -> list[str]:
        return sorted(set(self._hosts) | set(self._base))

    def stats(self, worker: str) -> PipelineStats | None:
        """Everything counted on ``worker``: gone hosts, ended and live sessions."""
        host = self._hosts.get(worker, _Host())
        base = self._base.get(worker, _Base())
        return _add(base.stats, _add(host.ended_stats, host.live))

    def transport(self, worker: str) -> TransportStats | None:
        """Transport figures of ``worker``: gone hosts, ended and live sessions (the held
        packets: live sessions only)."""
        host = self._hosts.get(worker, _Host())
        base = self._base.get(worker, _Base())
        return _add_t(base.transport, _add_t(host.ended_transport, host.live_transport))

    def live(self, worker: str) -> PipelineStats | None:
        """The live sessions of ``worker`` at the last update, added up."""
        host = self._hosts.get(worker)
        return None if host is None else host.live

    def ended(self) -> dict[str, int]:
        """Sessions ended, by reason, over every host."""
        out: dict[str, int] = {}
        for part in [h.ended for h in self._hosts.values()] + [
            b.ended for b in self._base.values()
        ]:
            for reason, n in part.items():
                out[reason] = out.get(reason, 0) + n
        return out


_totals: weakref.WeakKeyDictionary[Any, Totals] = weakref.WeakKeyDictionary()


def totals_of(server: Any) -> Totals:
    """The ``Totals`` kept for ``server`` (made on first use, gone with the server)."""
    found = _totals.get(server)
    if found is None:
        found = _totals[server] = Totals()
    return found


async def metrics_response(server: Any) -> tuple[bytes, str]:
    """``(body, content type)`` of ``GET /metrics`` for ``server`` (a ``WebRTCServer``).

    Wiring, in the aiohttp app: ``body, ctype = await prom.metrics_response(server)``, then a
    response with that body and ``Content-Type: ctype`` (it carries the format's version).
    """
    status = await server.gather_status()
    status.setdefault("loop_lag_s", await loop_lag())
    if "workers" in status:
        handles = {w.index: w for w in getattr(server, "workers", [])}
        for entry in status["workers"]:
            handle = handles.get(entry.get("index"))
            if handle is not None and "error" not in entry:
                entry.setdefault("metrics", getattr(handle, "metrics", None))
                entry.setdefault("loop_lag_s", getattr(handle, "loop_lag_s", None))
    else:
        local = getattr(server, "local", None)
        if local is not None:
            status.setdefault("metrics", local.metrics())
    return render(status, totals_of(server)), CONTENT_TYPE_LATEST


def render(status: dict[str, Any], totals: Totals | None = None) -> bytes:
    """The exposition text of a gathered status (``WebRTCServer.gather_status()`` with the
    hosts' ``metrics``: ``status["metrics"]`` without workers, each ``workers[i]["metrics"]``
    with). ``totals`` carries counts across calls (a new one: this status alone)."""
    totals = totals if totals is not None else Totals()
    live: dict[str, PipelineStats | None] = {}
    transport: dict[str, TransportStats | None] = {}
    for session in status.get("list", []):
        worker = _worker(session.get("worker"))
        raw = session.get("pipeline")
        if raw is not None:
            live[worker] = _add(live.get(worker), PipelineStats.from_dict(raw))
        raw = session.get("transport")
        if raw is not None:
            transport[worker] = _add_t(transport.get(worker), TransportStats.from_dict(raw))
    if "workers" in status:
        for entry in status["workers"]:
            worker = _worker(entry.get("index"))
            totals.update(worker, entry.get("metrics"), live.get(worker), transport.get(worker))
    else:
        totals.update(FRONT, status.get("metrics"), live.get(FRONT), transport.get(FRONT))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(list(_families(status, totals))))
    return generate_latest(registry)


def _worker(index: Any) -> str:
    return FRONT if index is None else str(index)


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _buckets(hist: Histogram) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    seen = 0
    for le, n in zip(_LE, hist.counts, strict=True):
        seen += n
        out.append((le, float(seen)))
    return out


def _families(status: dict[str, Any], totals: Totals) -> Iterator[Metric]:
    p = PREFIX
    yield _gauge(f"{p}_sessions_active", "Sessions live now.", status.get("sessions", 0))
    yield _counter(
        f"{p}_sessions_started", "Sessions started (offers taken).", status.get("sessions_total", 0)
    )
    ended = CounterMetricFamily(
        f"{p}_sessions_ended", "Sessions ended, by close reason.", labels=["reason"]
    )
    for reason, n in sorted(totals.ended().items()):
        ended.add_metric([reason], n)
    yield ended
    refused = CounterMetricFamily(
        f"{p}_sessions_refused",
        "Requests refused, by HTTP status (503 full or draining, 400 bad offer, 401 token,"
        " 413 too large, 408 too slow, 429 rate limited).",
        labels=["status"],
    )
    for code, n in sorted(status.get("rejected", {}).items()):
        refused.add_metric([str(code)], n)
    yield refused
    calls = status.get("calls")
    if isinstance(calls, dict):  # serve --calls: the telephony routes' own figures
        yield from _call_families(calls)

    labels = ["stage", "type", "backend", "worker"]
    time_s = HistogramMetricFamily(
        f"{p}_stage_processing_seconds",
        "Time a stage spent in process() per item (a fused segment's one native call, shown"
        " for each member).",
        labels=labels,
    )
    items_in = CounterMetricFamily(f"{p}_stage_items_in", "Items a stage took in.", labels=labels)
    items_out = CounterMetricFamily(
        f"{p}_stage_items_out", "Items a stage gave out.", labels=labels
    )
    depth = GaugeMetricFamily(
        f"{p}_stage_queue_depth",
        "Items in the bounded queue after a stage with a task of its own, summed over live"
        " sessions.",
        labels=labels,
    )
    hwm = GaugeMetricFamily(
        f"{p}_stage_queue_high_water",
        "The most items that queue held at once, over every session.",
        labels=labels,
    )
    latency = HistogramMetricFamily(
        f"{p}_pipeline_latency_seconds",
        "End to end: from an item entering a pipeline to the next item leaving it.",
        labels=["worker"],
    )
    drops = CounterMetricFamily(
        f"{p}_dropped_items", "Items dropped, by reason.", labels=["reason", "worker"]
    )
    for worker in totals.workers():
        stats = totals.stats(worker)
        if stats is None:
            continue
        for s in stats.stages:
            values = [s.name, s.type, s.backend, worker]
            time_s.add_metric(values, _buckets(s.time), s.time.sum_ns / 1e9)
            items_in.add_metric(values, s.items_in)
            items_out.add_metric(values, s.items_out)
            if s.queue_size is not None:
                depth.add_metric(values, _live_depth(totals, worker, s.name))
                hwm.add_metric(values, s.queue_hwm or 0)
        latency.add_metric([worker], _buckets(stats.latency), stats.latency.sum_ns / 1e9)
        for reason, n in sorted(stats.drops.items()):
            drops.add_metric([reason, worker], n)
    yield from (time_s, items_in, items_out, depth, hwm, latency, drops)
    yield from _transport_families(totals)

    lag = GaugeMetricFamily(
        f"{p}_event_loop_lag_seconds",
        "How long a callback scheduled now waited for the event loop, at the last scrape.",
        labels=["worker"],
    )
    lag.add_metric([FRONT], float(status.get("loop_lag_s") or 0.0))
    cpu = GaugeMetricFamily(
        f"{p}_worker_cpu_cores", "Cores a worker kept busy lately.", labels=["worker"]
    )
    up = GaugeMetricFamily(f"{p}_worker_up", "1 while a worker serves.", labels=["worker"])
    for entry in status.get("workers", []):
        worker = _worker(entry.get("index"))
        cpu.add_metric([worker], float(entry.get("cpu") or 0.0))
        up.add_metric([worker], 1.0 if entry.get("alive") else 0.0)
        if entry.get("loop_lag_s") is not None:
            lag.add_metric([worker], float(entry["loop_lag_s"]))
    yield from (lag, cpu, up)
    yield _counter(
        f"{p}_worker_restarts", "Workers restarted after dying.", status.get("worker_restarts", 0)
    )


def _transport_families(totals: Totals) -> Iterator[Metric]:
    """WebRTC transport figures (``rtp_stats.TransportStats``), per worker."""
    p = PREFIX
    received = CounterMetricFamily(
        f"{p}_rtp_received_packets",
        "RTP packets received from peers, by media kind.",
        labels=["kind", "worker"],
    )
    sent = CounterMetricFamily(
        f"{p}_rtp_sent_packets",
        "RTP packets sent to peers, by media kind.",
        labels=["kind", "worker"],
    )
    lost = CounterMetricFamily(
        f"{p}_rtp_lost_packets",
        "RTP packets lost: direction inbound (peer to server, from sequence gaps), outbound"
        " (server to peer, as the peer reported in RTCP).",
        labels=["kind", "direction", "worker"],
    )
    rx_bytes = CounterMetricFamily(
        f"{p}_transport_received_bytes",
        "Bytes received over peer connections' transports (RTP, RTCP, data channel).",
        labels=["worker"],
    )
    tx_bytes = CounterMetricFamily(
        f"{p}_transport_sent_bytes",
        "Bytes sent over peer connections' transports (RTP, RTCP, data channel).",
        labels=["worker"],
    )
    jitter = HistogramMetricFamily(
        f"{p}_rtp_jitter_seconds",
        "Inbound RTP interarrival jitter, observed once per session per sample (about a"
        " second): a distribution over session-seconds.",
        labels=["kind", "worker"],
    )
    rtt = HistogramMetricFamily(
        f"{p}_rtp_round_trip_seconds",
        "Round trip time from RTCP reports, observed once per session per sample once known.",
        labels=["worker"],
    )
    jb_lost = CounterMetricFamily(
        f"{p}_jitter_buffer_lost_packets",
        "Audio packets a jitter buffer gave up waiting for (missing or too late).",
        labels=["worker"],
    )
    jb_dropped = CounterMetricFamily(
        f"{p}_jitter_buffer_dropped_packets",
        "Audio packets a jitter buffer dropped to shrink a standing backlog.",
        labels=["worker"],
    )
    jb_late = CounterMetricFamily(
        f"{p}_jitter_buffer_late_packets",
        "Audio packets that came after a jitter buffer had given up their turn (not played).",
        labels=["worker"],
    )
    jb_held = GaugeMetricFamily(
        f"{p}_jitter_buffer_held_packets",
        "Audio packets jitter buffers hold now, summed over live sessions.",
        labels=["worker"],
    )
    for worker in totals.workers():
        t = totals.transport(worker)
        if t is None:
            continue
        for kind in KINDS:
            received.add_metric([kind, worker], t.packets_received.get(kind, 0))
            sent.add_metric([kind, worker], t.packets_sent.get(kind, 0))
            lost.add_metric([kind, "inbound", worker], t.packets_lost.get(kind, 0))
            lost.add_metric([kind, "outbound", worker], t.remote_packets_lost.get(kind, 0))
            hist = t.jitter.get(kind)
            if hist is not None:
                jitter.add_metric([kind, worker], _buckets(hist), hist.sum_ns / 1e9)
        rx_bytes.add_metric([worker], t.bytes_received)
        tx_bytes.add_metric([worker], t.bytes_sent)
        rtt.add_metric([worker], _buckets(t.round_trip), t.round_trip.sum_ns / 1e9)
        jb_lost.add_metric([worker], t.jitter_buffer_lost)
        jb_dropped.add_metric([worker], t.jitter_buffer_dropped)
        jb_late.add_metric([worker], t.jitter_buffer_late)
        jb_held.add_metric([worker], t.jitter_buffer_held)
    yield from (received, sent, lost, rx_bytes, tx_bytes, jitter, rtt, jb_lost, jb_dropped, jb_late)
    yield jb_held


def _live_depth(totals: Totals, worker: str, stage: str) -> int:
    live = totals.live(worker)
    if live is None:
        return 0
    return sum(s.queue_depth or 0 for s in live.stages if s.name == stage)


def _call_families(calls: dict[str, Any]) -> Iterator[Metric]:
    """Phone and WebSocket calls (``serve --calls``): counts, ends, refusals, playout."""
    p = PREFIX
    yield _gauge(f"{p}_calls_active", "Calls live now.", calls.get("calls", 0))
    yield _counter(f"{p}_calls_started", "Calls taken.", calls.get("calls_total", 0))
    ended = CounterMetricFamily(f"{p}_calls_ended", "Calls ended, by reason.", labels=["reason"])
    for reason, n in sorted(calls.get("ended", {}).items()):
        ended.add_metric([reason], n)
    yield ended
    refused = CounterMetricFamily(
        f"{p}_calls_refused", "Calls refused, by HTTP status.", labels=["status"]
    )
    for code, n in sorted(calls.get("refused", {}).items()):
        refused.add_metric([str(code)], n)
    yield refused
    playout = CounterMetricFamily(
        f"{p}_call_playout_frames",
        "Inbound call audio frames by what the playout buffer did: played (frames), concealed"
        " (loss concealment or comfort noise in a gap), lost, late, skipped.",
        labels=["kind"],
    )
    for kind, n in sorted(calls.get("playout_total", {}).items()):
        playout.add_metric([kind], n)
    yield playout


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


__all__ = ["FRONT", "PREFIX", "Totals", "metrics_response", "render", "totals_of"]
