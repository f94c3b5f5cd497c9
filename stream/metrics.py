"""The metrics model: what ``Pipeline.stats()`` returns, per stage and per pipeline.

Plain, typed data (frozen dataclasses) with ``to_dict()``/``from_dict()``, so the figures of a
session travel as JSON or pickles from worker processes and Ray workers to the front, and
figures of many sessions add up (``merge``).

Times are histograms over fixed, log-spaced buckets (``BOUNDS_NS``: 1 us to 10 s, five per
decade, and one bucket past the last), the same for every stage, pipeline and process: counts of
any two histograms add bucket by bucket, and Prometheus exposes them as its histograms.
Quantiles (p50/p90/p99) are interpolated within a bucket, as Prometheus's
``histogram_quantile`` does, and never exceed the exact ``max``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import Any

#: Upper bounds (inclusive, nanoseconds) of the histogram buckets; a last bucket holds the rest.
BOUNDS_NS: tuple[int, ...] = tuple(round(1000 * 10 ** (k / 5)) for k in range(36))
N_BUCKETS = len(BOUNDS_NS) + 1


def bucket_of(ns: int) -> int:
    """The index of the bucket ``ns`` falls in (what the pipeline's hot path inlines)."""
    return bisect.bisect_left(BOUNDS_NS, ns)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts of durations per bucket of ``BOUNDS_NS``, with their sum and maximum (ns)."""

    counts: tuple[int, ...] = (0,) * N_BUCKETS
    sum_ns: int = 0
    max_ns: int = 0

    def __post_init__(self) -> None:
        if len(self.counts) != N_BUCKETS:
            raise ValueError(f"a histogram has {N_BUCKETS} buckets, got {len(self.counts)}")

    @classmethod
    def of(cls, durations_ns: list[int]) -> Histogram:
        """A histogram of the given durations (ns)."""
        counts = [0] * N_BUCKETS
        for ns in durations_ns:
            counts[bucket_of(ns)] += 1
        return cls(tuple(counts), sum(durations_ns), max(durations_ns, default=0))

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1) in ns, interpolated in its bucket; 0.0 when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"a quantile is within 0..1, got {q}")
        total = self.count
        if total == 0:
            return 0.0
        rank = q * total
        seen = 0
        for i, n in enumerate(self.counts):
            if n and seen + n >= rank:
                low = BOUNDS_NS[i - 1] if i > 0 else 0
                high = BOUNDS_NS[i] if i < len(BOUNDS_NS) else self.max_ns
                value = low + (high - low) * max(0.0, rank - seen) / n
                return float(min(value, self.max_ns))
            seen += n
        return float(self.max_ns)  # pragma: no cover - the loop always returns

    @property
    def p50_ns(self) -> float:
        return self.quantile(0.50)

    @property
    def p90_ns(self) -> float:
        return self.quantile(0.90)

    @property
    def p99_ns(self) -> float:
        return self.quantile(0.99)

    def merge(self, other: Histogram) -> Histogram:
        """Both histograms' observations in one."""
        return Histogram(
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            self.sum_ns + other.sum_ns,
            max(self.max_ns, other.max_ns),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the counts, sum and max, and the derived figures in microseconds."""
        return {
            "count": self.count,
            "counts": list(self.counts),
            "sum_ns": self.sum_ns,
            "max_ns": self.max_ns,
            "p50_us": round(self.p50_ns / 1000, 3),
            "p90_us": round(self.p90_ns / 1000, 3),
            "p99_us": round(self.p99_ns / 1000, 3),
            "max_us": round(self.max_ns / 1000, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        return cls(tuple(int(n) for n in data["counts"]), int(data["sum_ns"]), int(data["max_ns"]))


@dataclass(frozen=True, slots=True)
class StageStats:
    """One stage: items taken and given, time in ``process()``, the queue after it.

    Members of a fused segment (one native call for several stages) each show the segment's
    counts and time (``segment`` names it). ``queue_*`` describe the bounded queue a stage with
    a task of its own (async or streaming) feeds; None for stages run inline. ``queue_hwm`` is
    the most items that queue held at once.
    """

    name: str
    type: str
    backend: str
    segment: str
    fused: bool
    items_in: int
    items_out: int
    time: Histogram
    queue_size: int | None = None
    queue_depth: int | None = None
    queue_hwm: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "backend": self.backend,
            "segment": self.segment,
            "fused": self.fused,
            "items_in": self.items_in,
            "items_out": self.items_out,
            "time": self.time.to_dict(),
            "queue_size": self.queue_size,
            "queue_depth": self.queue_depth,
            "queue_hwm": self.queue_hwm,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageStats:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            backend=str(data["backend"]),
            segment=str(data["segment"]),
            fused=bool(data["fused"]),
            items_in=int(data["items_in"]),
            items_out=int(data["items_out"]),
            time=Histogram.from_dict(data["time"]),
            queue_size=data.get("queue_size"),
            queue_depth=data.get("queue_depth"),
            queue_hwm=data.get("queue_hwm"),
        )

    def merge(self, other: StageStats) -> StageStats:
        """The same stage of two pipelines added up (queue depth summed, high-water the max)."""

        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return replace(
            self,
            items_in=self.items_in + other.items_in,
            items_out=self.items_out + other.items_out,
            time=self.time.merge(other.time),
            queue_depth=add(self.queue_depth, other.queue_depth),
            queue_hwm=max(self.queue_hwm or 0, other.queue_hwm or 0)
            if self.queue_hwm is not None or other.queue_hwm is not None
            else None,
        )


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """A pipeline's figures: its stages, end-to-end latency, and items dropped by reason.

    ``latency``: for each item that entered (from the input stream, or from the source stage),
    the time until the last stage had finished with an item after it (a sink: written it), or
    an item left the pipeline, whichever came first (exact for one-in, one-out stages; an item a
    stage before the last buffers waits for the output it is part of). ``drops``: items dropped, by
    reason, by whoever drives the pipeline (``Pipeline.count_drop``); the pipeline's own queues
    never drop (a full queue holds the stage before it). ``enabled`` False: ``stats=False``,
    histograms and latency not kept (counters still are).
    """

    name: str
    enabled: bool
    items_in: int
    items_out: int
    latency: Histogram
    stages: tuple[StageStats, ...]
    drops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "items_in": self.items_in,
            "items_out": self.items_out,
            "latency": self.latency.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "drops": dict(self.drops),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineStats:
        return cls(
            name=str(data["name"]),
            enabled=bool(data["enabled"]),
            items_in=int(data["items_in"]),
            items_out=int(data["items_out"]),
            latency=Histogram.from_dict(data["latency"]),
            stages=tuple(StageStats.from_dict(s) for s in data["stages"]),
            drops={str(k): int(v) for k, v in data["drops"].items()},
        )

    def merge(self, other: PipelineStats) -> PipelineStats:
        """Two runs of the same chain added up; stages matched by (name, type, backend), the
        ones only in ``other`` appended."""
        mine = {_key(s): s for s in self.stages}
        theirs = {_key(s): s for s in other.stages}
        stages = [s.merge(theirs[k]) if k in theirs else s for k, s in mine.items()]
        stages += [s for k, s in theirs.items() if k not in mine]
        drops = dict(self.drops)
        for reason, n in other.drops.items():
            drops[reason] = drops.get(reason, 0) + n
        return replace(
            self,
            enabled=self.enabled or other.enabled,
            items_in=self.items_in + other.items_in,
            items_out=self.items_out + other.items_out,
            latency=self.latency.merge(other.latency),
            stages=tuple(stages),
            drops=drops,
        )

    def table(self) -> str:
        """The per-stage table ``--stats`` prints: counts, p50/p99/max, queue high-water."""
        head = (
            f"  {'stage':<22} {'backend':<8} {'in/out':>13} {'p50 us':>8} {'p99 us':>8}"
            f" {'max us':>9} {'queue hwm':>9}"
        )
        lines = [f"stats of {self.name!r}" + ("" if self.enabled else " (stats=False)"), head]
        for s in self.stages:
            hwm = "-" if s.queue_hwm is None else f"{s.queue_hwm}/{s.queue_size}"
            name = s.name if not s.fused else f"{s.name}*"
            lines.append(
                f"  {name:<22} {s.backend:<8} {f'{s.items_in}/{s.items_out}':>13}"
                f" {s.time.p50_ns / 1000:>8.1f} {s.time.p99_ns / 1000:>8.1f}"
                f" {s.time.max_ns / 1000:>9.1f} {hwm:>9}"
            )
        lat = self.latency
        lines.append(
            f"  end to end: {self.items_in} in, {self.items_out} out; latency p50"
            f" {lat.p50_ns / 1000:.1f} us, p99 {lat.p99_ns / 1000:.1f} us,"
            f" max {lat.max_ns / 1000:.1f} us"
        )
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.drops.items())) or "none counted"
        lines.append(f"  drops: {dropped}")
        if any(s.fused for s in self.stages):
            lines.append("  * fused: the segment's one native call, shown for each member")
        return "\n".join(lines)


def _key(stage: StageStats) -> tuple[str, str, str]:
    return stage.name, stage.type, stage.backend


__all__ = ["BOUNDS_NS", "N_BUCKETS", "Histogram", "PipelineStats", "StageStats", "bucket_of"]
