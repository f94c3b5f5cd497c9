"""``Pipeline.stats()``: counts, time histograms, queue high-water, latency, drops; plain data."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media_nodes import Gain
from stream import AudioFrame, Event, Node, Pipeline, StreamingNode
from stream.metrics import BOUNDS_NS, N_BUCKETS, Histogram, PipelineStats, bucket_of
from stream.testing import split_frames, tone

SPIN_NS = 2_000_000  # what Spin takes per item, at least
SLEEP_S = 0.004  # what Nap awaits per item (the loop may wake it up to a clock tick early)


class Spin(Node):
    """Busy for SPIN_NS per item: its time is at least that, whatever the load."""

    def process(self, item: Any) -> Any:
        t0 = time.perf_counter_ns()
        while time.perf_counter_ns() - t0 < SPIN_NS:
            pass
        return item


class Nap(Node):
    async def process(self, item: Any) -> Any:
        await asyncio.sleep(SLEEP_S)
        return item


def frames(count: int) -> list[AudioFrame]:
    return split_frames(tone(440, count * 0.01, 48000), 48000, 480)


def below(ns: float) -> int:
    """Observations a histogram can only hold if some were shorter than ``ns``: the buckets
    whose upper bound is under it."""
    return sum(1 for b in BOUNDS_NS if b < ns)


async def test_counts_equal_the_items_pushed(backend: str) -> None:
    items = frames(30)
    pipeline = Pipeline([Gain(-3.0, name="g1"), Gain(3.0, name="g2"), Nap(name="nap")])
    async with pipeline:
        out = [x async for x in pipeline.process(items)]
    stats = pipeline.stats()
    assert len(out) == len(items) == stats.items_in == stats.items_out
    for stage in stats.stages:
        assert (stage.items_in, stage.items_out) == (30, 30), stage
        assert stage.time.count == 30, stage
        assert stage.time.max_ns > 0 and stage.time.sum_ns >= stage.time.max_ns
        assert stage.time.p50_ns <= stage.time.p99_ns <= stage.time.max_ns
    g1, g2, _ = stats.stages
    assert g1.backend == g2.backend == backend
    assert g1.fused == g2.fused == (backend == "rust")
    if backend == "rust":  # one native call: both members show the segment's figures
        assert g1.segment == g2.segment == "g1+g2" and g1.time == g2.time
    assert stats.latency.count == 30 and stats.latency.sum_ns >= 0


async def test_time_shows_a_known_amount_of_work_as_a_lower_bound(backend: str) -> None:
    pipeline = Pipeline([Gain(-1.0, name="gain"), Spin(name="spin"), Nap(name="nap")])
    async with pipeline:
        async for _ in pipeline.process(frames(12)):
            pass
    stats = {s.name: s for s in pipeline.stats().stages}
    spin = stats["spin"].time
    assert sum(spin.counts[: below(SPIN_NS)]) == 0, spin.counts
    assert spin.p50_ns >= BOUNDS_NS[bucket_of(SPIN_NS) - 1] and spin.max_ns >= SPIN_NS
    nap = stats["nap"].time  # an async stage's time is wall time, its await included
    assert sum(nap.counts[: below(SLEEP_S * 1e9 / 2)]) == 0, nap.counts
    # every item went through the spin, so its end-to-end latency is at least that
    latency = pipeline.stats().latency
    assert latency.count == 12 and sum(latency.counts[: below(SPIN_NS)]) == 0


async def test_queue_high_water_is_bounded_by_the_queue_and_reached_when_blocked() -> None:
    size = 3
    asked = asyncio.Event()

    class Numbers(StreamingNode):
        async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
            for i in range(40):
                if i == size + 1:  # items 1..size+1 were put, at most one taken: queue full
                    asked.set()
                yield i

    pipeline = Pipeline([Numbers(name="numbers"), Nap(name="nap")], queue_size=size)
    got = []
    async with pipeline:
        async for item in pipeline.process():
            got.append(item)
            if len(got) == 1:
                await asked.wait()  # the consumer stalls while the source fills the queue
    assert got == list(range(40))
    stages = {s.name: s for s in pipeline.stats().stages}
    for name in ("numbers", "nap"):  # each streams or awaits: a task and a queue each
        assert stages[name].queue_size == size
        assert 1 <= (stages[name].queue_hwm or 0) <= size, stages[name]
    assert stages["numbers"].queue_hwm == size
    assert stages["numbers"].items_out == 40 and stages["numbers"].time.count == 0


async def test_inline_stages_have_no_queue_and_events_are_not_items() -> None:
    items: list[Any] = [*frames(5), Event("mark", "test"), *frames(5)]
    pipeline = Pipeline([Gain(0.0, name="gain")])
    async with pipeline:
        out = [x async for x in pipeline.process(items)]
    stats = pipeline.stats()
    assert len(out) == 11 and (stats.items_in, stats.items_out) == (10, 10)
    (gain,) = stats.stages
    assert gain.queue_size is gain.queue_depth is gain.queue_hwm is None


async def test_stats_round_trip_through_json_and_pickle_free_dicts() -> None:
    pipeline = Pipeline([Gain(-1.0, name="a"), Spin(name="b"), Nap(name="c")], name="rt")
    async with pipeline:
        async for _ in pipeline.process(frames(4)):
            pass
    pipeline.count_drop("late", 2)
    stats = pipeline.stats()
    text = json.dumps(stats.to_dict(), allow_nan=False)
    back = PipelineStats.from_dict(json.loads(text))
    assert back == stats and back.drops == {"late": 2}
    assert json.loads(text)["stages"][1]["time"]["p99_us"] >= SPIN_NS / 1000 * 0.5


async def test_stats_false_keeps_counts_but_no_histograms() -> None:
    pipeline = Pipeline([Gain(-1.0, name="g"), Nap(name="n")], stats=False)
    async with pipeline:
        async for _ in pipeline.process(frames(6)):
            pass
    stats = pipeline.stats()
    assert not stats.enabled and stats.items_in == stats.items_out == 6
    assert all(s.items_in == 6 and s.time.count == 0 for s in stats.stages)
    assert stats.latency.count == 0
    assert "stats=False" in stats.table()


def test_histogram_buckets_quantiles_and_merge() -> None:
    assert len(BOUNDS_NS) + 1 == N_BUCKETS and BOUNDS_NS[0] == 1_000 and BOUNDS_NS[-1] == 10**10
    assert all(b / a < 1.6 for a, b in itertools.pairwise(BOUNDS_NS))
    assert bucket_of(1_000) == 0 and bucket_of(1_001) == 1  # upper bounds are inclusive (le)
    assert bucket_of(10**12) == N_BUCKETS - 1
    values = [5_000] * 90 + [300_000] * 9 + [7_000_000]
    h = Histogram.of(values)
    assert h.count == 100 and h.sum_ns == sum(values) and h.max_ns == 7_000_000
    assert BOUNDS_NS[bucket_of(5_000) - 1] <= h.p50_ns <= BOUNDS_NS[bucket_of(5_000)]
    assert BOUNDS_NS[bucket_of(300_000) - 1] <= h.p99_ns <= BOUNDS_NS[bucket_of(300_000)]
    assert h.quantile(1.0) == 7_000_000 and Histogram().p99_ns == 0.0
    both = h.merge(Histogram.of([20_000_000]))
    assert both.count == 101 and both.max_ns == 20_000_000
    assert Histogram.from_dict(json.loads(json.dumps(both.to_dict()))) == both
    with pytest.raises(ValueError):
        Histogram((0, 1))


async def test_merge_adds_sessions_stage_by_stage() -> None:
    runs = []
    for n in (3, 5):
        pipeline = Pipeline([Gain(-1.0, name="g"), Nap(name="n")])
        async with pipeline:
            async for _ in pipeline.process(frames(n)):
                pass
        pipeline.count_drop("paused", n)
        runs.append(pipeline.stats())
    total = runs[0].merge(runs[1])
    assert total.items_in == 8 and total.drops == {"paused": 8}
    assert [s.items_in for s in total.stages] == [8, 8]
    assert total.stages[1].time.count == 8 and total.latency.count == 8


def test_process_stats_prints_the_per_stage_table(tmp_path: Path) -> None:
    src, out = tmp_path / "in.wav", tmp_path / "out.wav"
    x = np.rint(tone(1000, 0.5, 48000, 1) * 32767).astype(np.int16)
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(x.tobytes())
    result = subprocess.run(
        [sys.executable, "-m", "stream", "process", str(src), str(out), "--chain", "gain:-6",
         "--stats"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("stats of 'process'") :].splitlines()
    assert "p50 us" in table[1] and "p99 us" in table[1] and "queue hwm" in table[1]
    rows = {line.split()[0].rstrip("*"): line.split() for line in table[2:] if line[2] != " "}
    assert {"input", "output"} <= set(rows) and any(k.startswith("gain") for k in rows)
    assert any(line.strip().startswith("drops:") for line in table)
    assert any(line.strip().startswith("end to end:") for line in table)
