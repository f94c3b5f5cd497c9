"""Ray test drivers: each scenario runs inside the test cluster's namespace, as its own driver
process (``python scenarios.py NAME [ARG]``), checks what it can itself and prints one JSON line
of findings for the test to check too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from media_nodes import Gain, Resample
from stream import Pipeline
from stream.errors import FormatError, NodeError, TransportError
from stream.events import Event
from stream.frames import AudioFrame
from stream.node import Node
from stream.ray import RemoteStage, connect
from stream.testing import split_frames, tone

WORKER = {"worker": 1.0}
STAGE_CPUS = 0.25  # the worker node has 1 CPU; a few stages fit at once


def _worker_node_id() -> str:
    ray = connect()
    ids = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "worker" in n["Resources"]]
    assert len(ids) == 1, f"expected one worker node, found {ids}"
    return str(ids[0])


def _input() -> list[Any]:
    """1 s of 48 kHz stereo in 20 ms frames, with an event in the middle."""
    frames: list[Any] = list(split_frames(tone(440, 1.0, 48000, channels=2), 48000, 960))
    frames.insert(25, Event("marker", "test", 0.5, {"n": 1}))
    return frames


def _same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b), f"{len(a)} outputs remote, {len(b)} local"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert type(x) is type(y), f"output {i}: {type(x).__name__} vs {type(y).__name__}"
        if isinstance(x, AudioFrame):
            timing = (x.pts, x.time_base, x.sample_rate, x.samples.shape)
            expected = (y.pts, y.time_base, y.sample_rate, y.samples.shape)
            assert timing == expected, f"output {i}: {timing} remote, {expected} local"
            assert np.array_equal(x.samples, y.samples), f"output {i} samples differ"
        else:
            assert x == y, f"output {i}: {x!r} vs {y!r}"


async def parity(backend: str) -> dict[str, Any]:
    """Resample -> Gain on the worker node gives exactly the local chain's outputs, in order."""
    worker = _worker_node_id()

    def chain() -> list[Any]:
        return [Resample(16000, backend=backend), Gain(-6.0, backend=backend)]

    local = [x async for x in Pipeline(chain(), name="local").process(_input())]
    stages = [
        RemoteStage(node, num_cpus=STAGE_CPUS, resources=WORKER, max_in_flight=4)
        for node in chain()
    ]
    remote = [x async for x in Pipeline(stages, name="remote").process(_input())]
    _same(remote, local)
    for stage in stages:
        assert stage.placement["node_id"] == worker, f"{stage.name} not on the worker node"
        assert stage.backend == backend, f"{stage.name}: {stage.backend} ({stage.backend_reason})"
        assert 1 < stage.peak_in_flight <= stage.max_in_flight, stage.peak_in_flight
    return {
        "outputs": len(remote),
        "events": sum(type(x) is Event for x in remote),
        "backends": [s.backend for s in stages],
        "reasons": [s.backend_reason for s in stages],
        "peak_in_flight": [s.peak_in_flight for s in stages],
        "node": worker,
    }


async def _paced(count: int, period_s: float) -> AsyncIterator[AudioFrame]:
    frames = split_frames(tone(440, count * 0.02, 48000), 48000, 960)
    for frame in frames:
        yield frame
        await asyncio.sleep(period_s)


async def kill(_: str = "") -> dict[str, Any]:
    """Killing the actor mid-stream ends the stream with NodeError <- TransportError, fast."""
    stage = RemoteStage(Gain(-6.0), num_cpus=STAGE_CPUS, resources=WORKER, timeout_s=30)
    got = 0
    started = 0.0
    try:
        async with Pipeline([stage], name="victim") as pipeline:
            pid = stage.actor_pid()
            assert pid is not None
            async for _frame in pipeline.process(_paced(500, 0.01)):
                got += 1
                if got == 20:
                    started = time.monotonic()
                    os.kill(pid, signal.SIGKILL)
    except NodeError as exc:
        waited = time.monotonic() - started
        assert exc.stage == stage.name, exc.stage
        assert isinstance(exc.__cause__, TransportError), repr(exc.__cause__)
        assert waited < 10, f"the failure took {waited:.1f} s to show"
        return {"frames": got, "error": str(exc), "cause": str(exc.__cause__), "waited_s": waited}
    raise AssertionError(f"the stream ended normally after {got} frames")


async def bad_input(_: str = "") -> dict[str, Any]:
    """The wrapped node's own error comes back with its type, naming the frame."""
    frames: list[Any] = list(split_frames(tone(440, 0.1, 48000), 48000, 960))
    frames[3] = AudioFrame(np.zeros((1, 960), np.int16), 48000)
    stage = RemoteStage(Gain(-6.0), num_cpus=STAGE_CPUS, resources=WORKER)
    try:
        await Pipeline([stage]).run(frames)
    except NodeError as exc:
        assert exc.stage == stage.name and exc.index == 3, (exc.stage, exc.index)
        assert isinstance(exc.__cause__, FormatError), repr(exc.__cause__)
        return {"error": str(exc)}
    raise AssertionError("int16 input went through")


async def unplaceable(_: str = "") -> dict[str, Any]:
    """A resource no node has: a TransportError at setup after timeout_s, saying why."""
    stage = RemoteStage(Gain(), num_cpus=0.1, resources={"nowhere": 1}, timeout_s=3)
    t0 = time.monotonic()
    try:
        await stage.initialize()
    except TransportError as exc:
        assert "nowhere" in str(exc), str(exc)
        await stage.cleanup()
        return {"error": str(exc), "waited_s": time.monotonic() - t0}
    raise AssertionError("placed on a node that does not exist")


class Counter(Node):
    """Stamps each item with the order the actor ran it in; async, to drive the actor's loop."""

    def __init__(self) -> None:
        super().__init__("counter")
        self.calls = 0

    async def process(self, item: Any) -> Any:
        await asyncio.sleep(0)
        self.calls += 1
        return (self.calls, item.pts)


async def order(_: str = "") -> dict[str, Any]:
    """An async stateful node, 8 frames in flight: it ran the frames in the order they were sent."""
    frames = list(split_frames(tone(440, 1.0, 48000), 48000, 480))
    stage = RemoteStage(Counter(), num_cpus=STAGE_CPUS, resources=WORKER, max_in_flight=8)
    out = [x async for x in Pipeline([stage]).process(frames)]
    assert out == [(i + 1, f.pts) for i, f in enumerate(frames)], out[:10]
    return {"frames": len(out), "peak_in_flight": stage.peak_in_flight}


SCENARIOS: dict[str, Callable[[str], Any]] = {
    "parity": parity,
    "order": order,
    "kill": kill,
    "bad_input": bad_input,
    "unplaceable": unplaceable,
}

if __name__ == "__main__":
    name, arg = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
    result = asyncio.run(SCENARIOS[name](arg))
    print("RESULT " + json.dumps(result))
