"""EchoCancel's buffers against the plain numpy they replaced (bit for bit): the placed reference
ring (was an array concatenated on every frame), the estimator's ring reads (were fancy-indexed)
and its decimation (was ``reshape(-1, q).mean(axis=1)``). Backend-independent: pure numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from media_nodes.audio.echo_cancel import _PlacedReference
from media_nodes.audio.echo_delay import _decimate, _Ring

SETTINGS = settings(max_examples=60, deadline=None)

# One step on the placed reference: ("append", n, silent), ("drop", by), ("restart", jump).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 5000), st.booleans()),
        st.tuples(st.just("drop"), st.integers(0, 6000)),
        st.tuples(st.just("restart"), st.integers(-9000, 9000)),
    ),
    min_size=1,
    max_size=40,
)


@SETTINGS
@given(steps=steps, channels=st.integers(1, 2), first=st.integers(-50_000, 50_000))
def test_placed_reference_reads_what_an_array_would_hold(
    steps: list[tuple[object, ...]], channels: int, first: int
) -> None:
    rng = np.random.default_rng(len(steps))
    ring = _PlacedReference()
    ring.restart(first, channels)
    model, start = np.zeros((channels, 0), np.float32), first
    for step in steps:
        if step[0] == "append":
            n, silent = int(step[1]), bool(step[2])  # type: ignore[call-overload]
            x = rng.standard_normal((channels, n)).astype(np.float32)
            ring.append(None if silent else x, n)
            model = np.concatenate([model, np.zeros_like(x) if silent else x], axis=1)
        elif step[0] == "drop":
            upto = start + int(step[1])  # type: ignore[call-overload]
            drop = min(max(0, upto - start), model.shape[1])
            assert ring.drop(upto) == (drop > 0)
            model, start = model[:, drop:], start + drop
        else:
            start = ring.end + int(step[1])  # type: ignore[call-overload]
            ring.restart(start, channels)
            model = np.zeros((channels, 0), np.float32)
        assert (ring.start, ring.end) == (start, start + model.shape[1])
        if model.shape[1]:
            a = start + int(rng.integers(0, model.shape[1]))
            b = int(rng.integers(a, start + model.shape[1] + 1))
            out = np.full((channels, b - a), np.nan, np.float32)
            ring.read_into(out, a)
            np.testing.assert_array_equal(out, model[:, a - start : b - start])


@SETTINGS
@given(q=st.integers(1, 12), n=st.integers(0, 4000), scale=st.sampled_from([1e-4, 0.5, 1e4]))
def test_decimate_is_numpys_mean_bit_for_bit(q: int, n: int, scale: float) -> None:
    x = (np.random.default_rng(n).standard_normal(n) * scale).astype(np.float32)
    expected = x[: n // q * q].reshape(-1, q).mean(axis=1)
    got = _decimate(x, q)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@SETTINGS
@given(
    writes=st.lists(st.tuples(st.integers(-300, 3000), st.integers(0, 900)), min_size=1),
    a=st.integers(-2000, 6000),
    length=st.integers(0, 3000),
)
def test_ring_read_is_the_fancy_indexed_read(
    writes: list[tuple[int, int]], a: int, length: int
) -> None:
    ring = _Ring(1000)
    pos = 0
    for i, (gap, n) in enumerate(writes):
        pos += gap
        ring.write(pos, np.full(n, i + 1, np.float32))
        pos += n
    b = a + length
    expected = np.zeros(b - a, np.float32)
    assert ring.first is not None
    lo, hi = max(a, ring.first, ring.end - ring.size), min(b, ring.end)
    if hi > lo:
        expected[lo - a : hi - a] = ring.buf[np.arange(lo, hi) % ring.size]
    np.testing.assert_array_equal(ring.read(a, b), expected)
