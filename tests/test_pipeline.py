"""Pipeline semantics: ordering, node kinds, errors, cleanup, bounded memory, the seed API."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from media_nodes import ChannelMix, Gain, PassThrough, Rebuffer, Resample
from stream import (
    AudioFrame,
    ConfigError,
    FormatError,
    Node,
    NodeError,
    Pipeline,
    Source,
    StreamingNode,
)
from stream.testing import join_frames, split_frames, tone


class Double(Node):
    def process(self, item: int) -> int:
        return item * 2


class DropOdd(Node):
    def process(self, item: int) -> int | None:
        return None if item % 2 else item


class Repeat(Node):
    def process(self, item: int) -> Any:
        yield item
        yield item


class SlowAdd(Node):
    async def process(self, item: int) -> int:
        await asyncio.sleep(0)
        return item + 1


class AsyncExplode(Node):
    async def process(self, item: int) -> Any:
        for k in range(3):
            await asyncio.sleep(0)
            yield item * 10 + k


class Summer(StreamingNode):
    """Consumes the whole stream and emits a running total."""

    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
        total = 0
        assert items is not None
        async for item in items:
            total += item
            yield total


class Counter(Source):
    def __init__(self, n: int, name: str | None = None) -> None:
        super().__init__(name)
        self.n = n

    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
        for i in range(self.n):
            yield i


class Holder(Node):
    """Holds every item and emits them all at end of stream."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[int] = []

    def process(self, item: int) -> None:
        self.held.append(item)

    def flush(self) -> list[int]:
        out, self.held = self.held, []
        return out


class Tracker(Node):
    def __init__(self, fail_at: int | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self.fail_at = fail_at
        self.events: list[str] = []

    def initialize(self) -> None:
        self.events.append("init")

    def process(self, item: int) -> int:
        if item == self.fail_at:
            raise RuntimeError(f"boom on {item}")
        return item

    def cleanup(self) -> None:
        self.events.append("cleanup")


async def test_seed_api() -> None:
    p = Pipeline(name="example")
    p.add_node(PassThrough(name="step1"))
    p.add_node(PassThrough(name="step2"))
    assert await p.run([1, 2, 3, 4, 5]) == [1, 2, 3, 4, 5]
    assert await p.run([1, 2, 3], use_rust=False) == [1, 2, 3]
    assert all(n.backend == "python" for n in p.nodes)  # that run was forced to Python
    assert await p.run(7) == 7


async def test_add_node_chains_and_rejects_non_nodes() -> None:
    p = Pipeline().add_node(Double()).add_node(Double())
    assert await p.run([1, 2]) == [4, 8]
    with pytest.raises(ConfigError):
        p.add_node(lambda x: x)  # type: ignore[arg-type]


async def test_node_kinds_keep_order() -> None:
    p = Pipeline([Double(), DropOdd(), Repeat(), SlowAdd(), AsyncExplode(), Summer()])
    out = await p.run([1, 2, 3])
    expected, total = [], 0
    for x in [1, 2, 3]:
        for y in [2 * x, 2 * x]:
            for k in range(3):
                total += (y + 1) * 10 + k
                expected.append(total)
    assert out == expected


async def test_single_item_rules() -> None:
    assert await Pipeline([DropOdd()]).run(3) is None
    assert await Pipeline([Repeat()]).run(3) == [3, 3]


async def test_source_first_when_no_stream() -> None:
    assert await Pipeline([Counter(4), Double()]).run() == [0, 2, 4, 6]
    with pytest.raises(ConfigError, match="source"):
        await Pipeline([Double()]).run()


async def test_flush_tail_goes_through_later_stages() -> None:
    p = Pipeline([Holder(), Double(), SlowAdd()])
    assert await p.run([1, 2, 3]) == [3, 5, 7]


async def test_error_names_stage_and_frame_and_cleans_up() -> None:
    first, bad, last = Tracker(name="first"), Tracker(fail_at=3, name="bad"), Tracker(name="last")
    p = Pipeline([first, SlowAdd(), bad, last])
    with pytest.raises(NodeError) as info:
        await p.run([0, 1, 2, 3])
    err = info.value
    assert err.stage == "bad" and err.index == 2
    assert "stage 'bad' at frame 2" in str(err) and "boom on 3" in str(err)
    assert isinstance(err.__cause__, RuntimeError)
    assert first.events == bad.events == last.events == ["init", "cleanup"]


async def test_consumer_break_cleans_up_and_cancels_tasks() -> None:
    tracker = Tracker()
    p = Pipeline([Counter(1_000_000), SlowAdd(), tracker])
    before = len(asyncio.all_tasks())
    async with p:
        gen = p.process()
        async for item in gen:
            if item >= 5:
                break
        await gen.aclose()
    assert tracker.events == ["init", "cleanup"]
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before


async def test_break_inside_async_with_ends_every_stage_task_before_cleanup_returns() -> None:
    """The README's own pattern, without an explicit aclose(): leaving the loop by `break` must
    not leave the source or any stage task running once `async with` has exited."""

    class Endless(Source):
        ended = False

        async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
            i = 0
            try:
                while True:
                    yield i
                    i += 1
            finally:
                Endless.ended = True

    p = Pipeline([Endless(), SlowAdd(), Double()], name="readme")
    before = asyncio.all_tasks()
    async with p:
        async for item in p.process():
            if item >= 10:
                break
        assert not Endless.ended  # the run is still open here: only cleanup ends it
    # no sleep, no GC: cleanup() itself must have ended the run and awaited its tasks
    assert Endless.ended
    assert asyncio.all_tasks() - before == set()
    # the pipeline can run again afterwards
    async with p:
        async for item in p.process():
            if item >= 2:
                break


async def test_a_stage_that_swallows_its_cancellation_does_not_hang_cleanup() -> None:
    class Stubborn(Node):
        """Ignores the first cancellation, as asyncio.wait_for on 3.11 can when its future
        completes in the same tick, then waits on."""

        swallowed = 0

        async def process(self, item: int) -> int:
            if item == 3:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    Stubborn.swallowed += 1
                    await asyncio.sleep(3600)
            return item

    tracker = Tracker()
    p = Pipeline([Counter(100), Stubborn(), SlowAdd(), tracker])
    start = time.monotonic()
    async with asyncio.timeout(10):  # the old cleanup waited here forever
        async with p:
            gen = p.process()
            async for item in gen:
                if item >= 2:
                    break
            await gen.aclose()
    assert time.monotonic() - start < 5
    assert Stubborn.swallowed == 1 and tracker.events == ["init", "cleanup"]


async def test_slow_consumer_memory_is_bounded() -> None:
    pulled = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    p = Pipeline([SlowAdd(), Double(), SlowAdd()], queue_size=4)
    taken = 0
    async with p:
        gen = p.process(endless())
        async for _ in gen:
            taken += 1
            await asyncio.sleep(0.001)  # a slow consumer
            if taken == 50:
                break
        await gen.aclose()
    # two async stages, each with a queue of 4 and one item in hand, plus the one being pulled
    assert pulled - taken <= 2 * (4 + 1) + 2


async def test_failure_while_upstream_blocked_does_not_hang() -> None:
    class FailLate(Node):
        async def process(self, item: int) -> int:
            if item == 20:
                raise ValueError("late failure")
            await asyncio.sleep(0)
            return item

    p = Pipeline([Counter(10_000), SlowAdd(), FailLate(name="late")], queue_size=2)
    with pytest.raises(NodeError, match="late"):
        await asyncio.wait_for(p.run(), timeout=10)


async def test_audio_chain_with_user_node_between_native_stages(backend: str) -> None:
    class Invert(Node):
        def process(self, frame: AudioFrame) -> AudioFrame:
            return AudioFrame(-frame.samples, frame.sample_rate, frame.pts, frame.time_base)

    x = tone(1000, 0.2, 48000, channels=2)
    nodes = [ChannelMix(1), Gain(-6.0), Invert(), Resample(16000), Rebuffer(samples=256)]
    p = Pipeline(nodes, name="mixed")
    async with p:
        out = [f async for f in p.process(split_frames(x, 48000, 960))]
        rows = p.stages()
    assert [r["backend"] for r in rows] == [backend, backend, "python", backend, backend]
    fused = {r["name"] for r in rows if r["fused"]}
    assert fused == (
        set()
        if backend == "python"
        else {nodes[0].name, nodes[1].name, nodes[3].name, nodes[4].name}
    )
    y = join_frames(out)
    assert y.shape == (1, round(x.shape[1] / 3))
    assert np.all(np.diff([f.pts for f in out]) == 256)
    desc = p.describe()
    assert "mixed" in desc and nodes[2].name in desc and backend in desc


async def test_bad_input_through_pipeline_is_a_node_error(backend: str) -> None:
    p = Pipeline([Gain(-3.0, name="g")])
    good = AudioFrame(np.zeros((1, 960), np.float32), 48000)
    bad = AudioFrame(np.full((1, 960), np.nan, np.float32), 48000)
    with pytest.raises(NodeError) as info:
        await p.run([good, bad])
    assert info.value.stage == "g" and info.value.index == 1
    assert isinstance(info.value.__cause__, FormatError)
    assert "non-finite" in str(info.value)


async def test_many_frames_memory_stays_flat(backend: str) -> None:
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    frame = AudioFrame(tone(440, 0.02, 48000, channels=2), 48000, 0)

    async def frames(n: int) -> AsyncIterator[AudioFrame]:
        for i in range(n):
            yield AudioFrame(frame.samples, 48000, i * 960)

    p = Pipeline([ChannelMix(1), Resample(16000), Gain(-3.0), Rebuffer(samples=512)])
    async with p:
        async for _ in p.process(frames(3000)):
            pass
        gc.collect()
        rss_warm = proc.memory_info().rss
        async for _ in p.process(frames(20000)):
            pass
        gc.collect()
        grown = proc.memory_info().rss - rss_warm
    assert grown < 8 * 1024 * 1024, f"RSS grew {grown / 1e6:.1f} MB over 20000 frames"


async def test_rust_panic_inside_a_stage_is_a_node_error_not_an_abort() -> None:
    from stream import EngineError, engine_available

    if not engine_available():
        pytest.skip("the Rust engine is not built in this environment")
    from stream import _engine

    class Panics(Node):
        def process(self, item: int) -> int:
            if item == 2:
                _engine.selftest_panic("deliberate")
            return item

    tracker = Tracker()
    with pytest.raises(NodeError) as info:
        await Pipeline([Panics(name="panics"), tracker]).run([1, 2, 3])
    assert info.value.stage == "panics" and info.value.index == 1
    assert isinstance(info.value.__cause__, EngineError)
    assert "deliberate" in str(info.value)
    assert tracker.events == ["init", "cleanup"]


class Detector(Node):
    """Emits an event before every item over a threshold."""

    def process(self, item: int) -> Any:
        if item > 2:
            yield self.event("big", time=float(item), value=item)
        yield item


class SeesEvents(Node):
    accepts_events = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def process(self, item: Any) -> Any:
        self.seen.append(item)
        return item


async def test_events_flow_around_stages_in_order_and_reach_subscribers() -> None:
    from stream import Event

    seer = SeesEvents()
    p = Pipeline([Detector(name="det"), Double(), SlowAdd(), Holder(), seer])
    got: list[Event] = []
    p.on_event(got.append, kind="big")
    out = await p.run([1, 3, 4])
    events = [o for o in out if isinstance(o, Event)]
    assert [(e.kind, e.stage, e.time, e.payload) for e in events] == [
        ("big", "det", 3.0, {"value": 3}),
        ("big", "det", 4.0, {"value": 4}),
    ]
    assert got == events
    # Double/SlowAdd never saw the events (they would have failed on them); Holder held the
    # numbers to the end while events went around it, so events come out first
    assert out == [*events, 3, 7, 9]
    assert seer.seen == out
    assert events[0].to_json() == {
        "type": "event",
        "kind": "big",
        "stage": "det",
        "time": 3.0,
        "payload": {"value": 3},
    }


async def test_events_can_be_left_to_subscribers() -> None:
    p = Pipeline([Detector()])
    got: list[Any] = []
    p.on_event(got.append)
    async with p:
        out = [x async for x in p.process([5, 1], events=False)]
    assert out == [5, 1] and len(got) == 1
