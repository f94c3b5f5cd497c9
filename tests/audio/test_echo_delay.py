"""EchoCancel's bulk delay estimator: the engine's ``DelayEstimator`` against its numpy twin
(``media_nodes.audio.echo_delay``), on the same writes: the same estimates (None in the same
places, the same delay wherever the node would believe it), ratios within 1e-3 relative (measured
1e-7: the FFTs' rounding), and which one the node runs on each backend."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media_nodes.audio.echo_cancel import EchoCancel
from media_nodes.audio.echo_delay import EST_RATIO, DelayEstimator, delay_estimator
from stream import AudioFrame, engine_available
from stream.errors import ConfigError, FormatError

pytestmark = pytest.mark.skipif(not engine_available(), reason="the Rust engine is not built")

RATIO_RTOL = 1e-3


def native(rate: int, **kwargs: Any) -> Any:
    from stream import _engine

    return _engine.DelayEstimator(rate, **kwargs)


def scene(rate: int, seconds: float, delay_s: float, channels: int, seed: int) -> tuple[Any, Any]:
    """A far end of noise bursts and its echo ``delay_s`` late under near-end noise."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    gate = np.repeat(rng.random(n // 800 + 1) < 0.7, 800)[:n]
    far = (rng.standard_normal((channels, n)) * 0.1 * gate).astype(np.float32)
    d = round(delay_s * rate)
    echo = np.concatenate([np.zeros(d), far.mean(axis=0)[: n - d]]) * 0.4
    near = (echo + rng.standard_normal(n) * 0.02)[None, :].astype(np.float32)
    return near, far


def assert_same(a: tuple[float, float] | None, b: tuple[float, float] | None) -> None:
    assert (a is None) == (b is None), (a, b)
    if a is None or b is None:
        return
    assert b[1] == pytest.approx(a[1], rel=RATIO_RTOL)
    if a[1] >= EST_RATIO:  # a peak the node believes: the same delay
        assert b[0] == a[0]


# Writes: (side, offset from the previous write's end, length): gaps, overlaps and jumps.
writes = st.lists(
    st.tuples(st.sampled_from(["near", "far"]), st.integers(-3000, 3000), st.integers(1, 9000)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=30, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 44100, 48000]),
    channels=st.integers(1, 2),
    delay_s=st.floats(0.0, 0.9),
    steps=writes,
    seed=st.integers(0, 2**16),
)
def test_native_estimates_as_the_twin_on_any_writes(
    rate: int, channels: int, delay_s: float, steps: list[tuple[str, int, int]], seed: int
) -> None:
    near, far = scene(rate, 3.0, delay_s, channels, seed)
    twin, rust = DelayEstimator(rate), native(rate)
    assert (rust.lag, rust.size, rust.max_delay) == (twin.lag, twin.size, twin.max_delay)
    n = near.shape[1]
    ends = {"near": 0, "far": 0}
    for side, offset, length in steps:
        pos = ends[side] + offset
        a, b = max(pos, 0), min(pos + length, n)
        if b <= a:
            continue
        x = near if side == "near" else far
        for e in (twin, rust):
            getattr(e, "add_" + side)(a, np.ascontiguousarray(x[:, a:b]))
        ends[side] = b
    for at in {ends["near"], ends["near"] + rate // 3, n, 2 * n}:
        assert_same(twin.estimate(at), rust.estimate(at))


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("delay_s", [0.0, 0.15, 0.45])
def test_native_finds_the_twins_delay_as_a_stream_goes(rate: int, delay_s: float) -> None:
    near, far = scene(rate, 6.0, delay_s, 1, seed=5)
    twin, rust = DelayEstimator(rate), native(rate)
    for e in (twin, rust):  # the reference from max_delay before the start, as the node writes
        e.add_far(-e.max_delay, np.zeros((1, e.max_delay), np.float32))
    hop, found = rate // 50, []
    for pos in range(0, near.shape[1], hop):
        for e in (twin, rust):
            e.add_near(pos, near[:, pos : pos + hop])
            e.add_far(pos, far[:, pos : pos + hop])
        if (pos + hop) % (rate // 4) == 0:
            a, b = twin.estimate(pos + hop), rust.estimate(pos + hop)
            assert_same(a, b)
            found.append(b)
    believed = [f[0] for f in found if f is not None and f[1] >= EST_RATIO]
    assert believed and all(abs(ms - delay_s * 1000) <= 1.0 for ms in believed), believed


def test_bad_input_names_the_stage() -> None:
    e = native(16000, stage="aec")
    with pytest.raises(FormatError, match="aec") as err:
        e.add_near(0, np.zeros((1, 10), np.float64))
    assert err.value.stage == "aec"
    with pytest.raises(FormatError, match="aec"):
        e.add_far(0, np.zeros(10, np.float32))
    for kwargs in ({"max_delay_ms": -1.0}, {"window_s": float("nan")}, {"lag_s": 1e9}):
        with pytest.raises(ConfigError, match="aec"):
            native(16000, stage="aec", **kwargs)
    with pytest.raises(ConfigError):
        native(0)


def test_the_node_runs_the_estimator_of_its_backend() -> None:
    assert isinstance(delay_estimator(16000, "python", "echo"), DelayEstimator)
    assert type(delay_estimator(16000, "rust", "echo")).__module__ == "stream._engine"

    async def run(backend: str) -> Any:
        node = EchoCancel([], delay_ms="auto", backend=backend)
        node.reference = [AudioFrame(np.zeros((1, 320), np.float32), 16000, pts=0)]
        await node.initialize()
        async for _ in node.process(AudioFrame(np.zeros((1, 320), np.float32), 16000, pts=0)):
            pass
        estimator = node._estimator
        await node.cleanup()
        return estimator

    assert isinstance(asyncio.run(run("python")), DelayEstimator)
    assert type(asyncio.run(run("rust"))).__module__ == "stream._engine"
