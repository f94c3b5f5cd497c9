"""Property tests: the Rust kernels and their Python twins agree (docs/kernels.md tolerances),
every kernel is invariant to how its input is split into blocks, and a native ``Chain`` equals
its kernels applied one after another.

Needs the engine: only the Python-only session (``REMOTEMEDIA_RUNTIME=python``) skips this module;
anywhere else a missing engine is a failure, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

if os.environ.get("REMOTEMEDIA_RUNTIME") == "python":
    pytest.skip("Python-only session: parity needs the Rust engine", allow_module_level=True)

from hypothesis import given, settings
from hypothesis import strategies as st

import media_nodes.audio as py
from stream import _engine as rs
from stream.errors import FormatError

from ._util import PARITY_TOL, RATES, RESAMPLE_PARITY_TOL, resampled_length

BACKENDS = {"python": py, "rust": rs}
SETTINGS = settings(max_examples=30, deadline=None)

Blocks = list[list[np.ndarray]]  # output blocks per input call, then the flush as the last entry


# --------------------------------------------------------------------------- strategies


@st.composite
def signals(draw: st.DrawFn, max_channels: int = 3, max_len: int = 2400) -> np.ndarray:
    """float32 ``(channels, samples)`` in [-1, 1]: uniform noise, extremes only or sparse clicks."""
    channels = draw(st.integers(1, max_channels))
    n = draw(st.integers(1, max_len))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "extremes", "sparse"]))
    if kind == "uniform":
        x = rng.uniform(-1, 1, (channels, n))
    elif kind == "extremes":
        x = rng.choice([-1.0, 0.0, 1.0], (channels, n))
    else:
        x = np.zeros((channels, n))
        idx = rng.integers(0, n, max(1, n // 100))
        x[:, idx] = rng.uniform(-1, 1, (channels, idx.size))
    return x.astype(np.float32)


@st.composite
def cuts(draw: st.DrawFn, n: int, max_cuts: int = 12) -> list[int]:
    """Sorted cut points splitting ``n`` samples into non-empty blocks."""
    if n < 2:
        return []
    return sorted(draw(st.sets(st.integers(1, n - 1), max_size=max_cuts)))


def split(x: np.ndarray, at: list[int]) -> list[np.ndarray]:
    return [np.ascontiguousarray(b) for b in np.split(x, at, axis=1)]


# --------------------------------------------------------------------------- running kernels


def run(
    kernel: Any,
    blocks: list[np.ndarray],
    rate: int,
    before: dict[int, Callable[[Any], None]] | None = None,
    flush: bool = True,
) -> Blocks:
    """Outputs of each ``process`` call, then of ``flush``; ``before[i](kernel)`` runs before
    block ``i``."""
    out: Blocks = []
    for i, block in enumerate(blocks):
        if before and i in before:
            before[i](kernel)
        out.append(list(kernel.process(block, rate)))
    if flush:
        out.append(list(kernel.flush()))
    return out


def assert_same_blocks(a: Blocks, b: Blocks, tol: float) -> None:
    """Identical block boundaries (per call), values within ``tol``."""
    assert [[blk.shape for blk in call] for call in a] == [
        [blk.shape for blk in call] for call in b
    ]
    for call_a, call_b in zip(a, b, strict=True):
        for x, y in zip(call_a, call_b, strict=True):
            assert x.dtype == y.dtype == np.float32
            assert x.flags.c_contiguous and y.flags.c_contiguous
            if x.size:
                assert float(np.max(np.abs(x.astype(np.float64) - y))) <= tol


def joined(out: Blocks, channels: int) -> np.ndarray:
    blocks = [b for call in out for b in call]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((channels, 0), np.float32)


def set_gain(value: float) -> Callable[[Any], None]:
    def apply(kernel: Any) -> None:
        kernel.gain_db = value

    return apply


# --------------------------------------------------------------------------- Rust vs Python

gains_db = st.floats(-60.0, 12.0, allow_nan=False)


@SETTINGS
@given(x=signals(), rate=st.sampled_from(RATES), data=st.data())
def test_gain_parity(x: np.ndarray, rate: int, data: st.DataObject) -> None:
    gain_db = data.draw(gains_db)
    ramp_ms = data.draw(st.sampled_from([0.0, 0.1, 2.5, 5.0, 20.0]) | st.floats(0.0, 30.0))
    at = data.draw(cuts(x.shape[1]))
    changes = data.draw(st.dictionaries(st.integers(0, len(at)), gains_db, max_size=3))
    before = {i: set_gain(v) for i, v in changes.items()}
    blocks = split(x, at)

    a = run(py.GainKernel(gain_db=gain_db, ramp_ms=ramp_ms, stage="g"), blocks, rate, before)
    b = run(rs.GainKernel(gain_db=gain_db, ramp_ms=ramp_ms, stage="g"), blocks, rate, before)

    assert_same_blocks(a, b, PARITY_TOL)
    assert a[-1] == []  # flush emits nothing


@SETTINGS
@given(x=signals(max_channels=6), data=st.data())
def test_channel_mix_parity(x: np.ndarray, data: st.DataObject) -> None:
    have = x.shape[0]
    channels = data.draw(st.integers(1, 8) if have == 1 else st.sampled_from([1, have]))
    blocks = split(x, data.draw(cuts(x.shape[1])))

    a = run(py.ChannelMixKernel(channels=channels, stage="m"), blocks, 48000)
    b = run(rs.ChannelMixKernel(channels=channels, stage="m"), blocks, 48000)

    assert_same_blocks(a, b, PARITY_TOL)


FORMATS = ["fltp", "flt", "s16p", "s16"]


@SETTINGS
@given(
    src=st.sampled_from(FORMATS),
    dst=st.sampled_from(FORMATS),
    channels=st.integers(1, 4),
    n=st.integers(1, 2000),
    seed=st.integers(0, 2**32 - 1),
)
def test_format_convert_parity(src: str, dst: str, channels: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if src.startswith("s16"):
        planar = rng.integers(-32768, 32768, (channels, n)).astype(np.int16)
    else:  # past full scale too, and exact half-LSB steps (round half to even)
        planar = rng.uniform(-1.2, 1.2, (channels, n)).astype(np.float32)
        planar.flat[: n // 4] = rng.integers(-131072, 131072, min(n // 4, planar.size)) / 131072
    data = planar if src.endswith("p") else np.ascontiguousarray(planar.T)

    a = py.FormatConvertKernel(format=dst, stage="f").process(data, src)
    b = rs.FormatConvertKernel(format=dst, stage="f").process(data, src)

    assert a.shape == b.shape and a.dtype == b.dtype and b.flags.c_contiguous
    if a.dtype == np.int16:
        np.testing.assert_array_equal(a, b)
    else:
        assert float(np.max(np.abs(a.astype(np.float64) - b))) <= PARITY_TOL


@SETTINGS
@given(
    x=signals(max_channels=2, max_len=3000),
    rate_in=st.sampled_from(RATES),
    rate_out=st.sampled_from(RATES),
    data=st.data(),
)
def test_resample_parity(x: np.ndarray, rate_in: int, rate_out: int, data: st.DataObject) -> None:
    blocks = split(x, data.draw(cuts(x.shape[1])))
    kp = py.ResampleKernel(sample_rate=rate_out, stage="r")
    kr = rs.ResampleKernel(sample_rate=rate_out, stage="r")

    a = run(kp, blocks[:1], rate_in, flush=False)
    b = run(kr, blocks[:1], rate_in, flush=False)
    assert kr.input_rate == kp.input_rate == rate_in
    assert kr.latency_samples == kp.latency_samples
    assert kr.latency_seconds == pytest.approx(kp.latency_seconds, rel=1e-12)
    a += run(kp, blocks[1:], rate_in)
    b += run(kr, blocks[1:], rate_in)

    assert_same_blocks(a, b, RESAMPLE_PARITY_TOL)
    assert joined(b, x.shape[0]).shape[1] == resampled_length(x.shape[1], rate_in, rate_out)


@SETTINGS
@given(x=signals(), rate=st.sampled_from(RATES), pad_final=st.booleans(), data=st.data())
def test_rebuffer_parity(x: np.ndarray, rate: int, pad_final: bool, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        size = {"samples": data.draw(st.integers(1, 1200))}
    else:
        size = {"frame_ms": data.draw(st.sampled_from([2.5, 10.0, 20.0]) | st.floats(0.01, 40.0))}
    blocks = split(x, data.draw(cuts(x.shape[1])))

    a = run(py.RebufferKernel(**size, pad_final=pad_final, stage="b"), blocks, rate)
    b = run(rs.RebufferKernel(**size, pad_final=pad_final, stage="b"), blocks, rate)

    assert_same_blocks(a, b, 0.0)  # a copy: bit-exact


@pytest.mark.parametrize(
    ("kwargs", "rate"),
    [
        ({"frame_ms": 10.0}, 22050),  # 220.5 samples
        ({"frame_ms": 2.5}, 44100),  # 110.25
        ({"frame_ms": 0.0625}, 8000),  # 0.5: at least 1
        ({"frame_ms": 1.5}, 1000),  # 1.5
    ],
)
def test_rebuffer_block_size_rounding_parity(kwargs: dict[str, float], rate: int) -> None:
    x = np.linspace(-1, 1, 2000, dtype=np.float32)[None, :]
    a = run(py.RebufferKernel(**kwargs, stage="b"), [x], rate)
    b = run(rs.RebufferKernel(**kwargs, stage="b"), [x], rate)
    assert_same_blocks(a, b, 0.0)


@pytest.mark.parametrize(
    ("ramp_ms", "rate"), [(2.5, 1000), (0.5, 1000), (10.0, 22050), (0.0625, 8000)]
)
def test_gain_ramp_length_rounding_parity(ramp_ms: float, rate: int) -> None:
    x = np.ones((1, 400), np.float32)
    before = {1: set_gain(-20.0)}
    a = run(py.GainKernel(ramp_ms=ramp_ms, stage="g"), split(x, [10, 20]), rate, before)
    b = run(rs.GainKernel(ramp_ms=ramp_ms, stage="g"), split(x, [10, 20]), rate, before)
    assert_same_blocks(a, b, PARITY_TOL)


def test_passthrough_parity() -> None:
    x = np.ones((2, 10), np.float32)
    for module in BACKENDS.values():
        kernel = module.PassThroughKernel(stage="p")
        (out,) = kernel.process(x, 48000)
        assert out is x
        assert kernel.flush() == []
        assert kernel.output_rate(16000) == 16000


def _bad_inputs() -> list[Any]:
    """Inputs every kernel must reject (docs/kernels.md, input checks 1 to 4), and a non-array."""
    nan = np.zeros((2, 8), np.float32)
    nan[1, 2] = np.nan
    cases = [
        ("int16", np.zeros((1, 8), np.int16), 48000),
        ("float64", np.zeros((1, 8)), 48000),
        ("1-D", np.zeros(8, np.float32), 48000),
        ("empty", np.zeros((2, 0), np.float32), 48000),
        ("rate 0", np.zeros((1, 8), np.float32), 0),
        ("nan", nan, 48000),
    ]
    return [pytest.param(block, rate, id=what) for what, block, rate in cases]


KERNEL_ARGS: dict[str, dict[str, Any]] = {
    "GainKernel": {"gain_db": -3.0},
    "ChannelMixKernel": {"channels": 1},
    "ResampleKernel": {"sample_rate": 16000},
    "RebufferKernel": {"samples": 4},
}


def messages_of(cls: str, kwargs: dict[str, Any], block: Any, rate: int) -> list[str | None]:
    """The FormatError message each twin raises for ``block`` (None when it takes it)."""
    messages: list[str | None] = []
    for module in BACKENDS.values():
        kernel = getattr(module, cls)(**kwargs, stage="k")
        try:
            kernel.process(block, rate)
            messages.append(None)
        except FormatError as exc:
            assert exc.stage == "k"
            messages.append(str(exc))
    return messages


@pytest.mark.parametrize("cls", KERNEL_ARGS)
@pytest.mark.parametrize(("block", "rate"), _bad_inputs())
def test_errors_parity(cls: str, block: Any, rate: int) -> None:
    """Both twins reject the same inputs with the same message."""
    python, rust = messages_of(cls, KERNEL_ARGS[cls], block, rate)
    assert python == rust
    assert python is not None and python.startswith("k: ")


def test_passthrough_kernel_checks_input_like_the_others() -> None:
    """The Rust PassThroughKernel applies the common input checks (it runs inside chains); its
    twin must reject the same inputs, or a pipeline behaves differently per backend."""
    diverging = []
    for param in _bad_inputs():
        block, rate = param.values
        python, rust = messages_of("PassThroughKernel", {}, block, rate)
        if python != rust:
            diverging.append(f"{param.id}: python {python!r}, rust {rust!r}")
    assert not diverging, "\n".join(diverging)


@pytest.mark.parametrize("cls", KERNEL_ARGS)
def test_non_array_input_is_a_format_error_on_both(cls: str) -> None:
    """The contract words the message for arrays only; both must still raise it, naming the type."""
    for module in BACKENDS.values():
        kernel = getattr(module, cls)(**KERNEL_ARGS[cls], stage="k")
        with pytest.raises(FormatError, match=r"^k: expected a float32 array .* got list") as info:
            kernel.process([[0.0, 0.1]], 48000)
        assert info.value.stage == "k"


@pytest.mark.parametrize(
    ("cls", "kwargs", "rate"),
    [
        ("GainKernel", {}, 48000),
        ("ChannelMixKernel", {"channels": 2}, 48000),
        ("ResampleKernel", {"sample_rate": 16000}, 44100),
        ("RebufferKernel", {"frame_ms": 10.0}, 44100),
    ],
)
def test_defaults_and_output_rate_parity(cls: str, kwargs: dict[str, Any], rate: int) -> None:
    a = getattr(py, cls)(**kwargs)
    b = getattr(rs, cls)(**kwargs)
    assert a.stage == b.stage
    assert a.output_rate(rate) == b.output_rate(rate)
    if cls == "GainKernel":
        assert a.gain_db == b.gain_db == 0.0


# --------------------------------------------------------------------------- chunking invariance


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(x=signals(max_channels=2), rate=st.sampled_from(RATES), data=st.data())
def test_gain_ramp_is_split_invariant(
    backend: str, x: np.ndarray, rate: int, data: st.DataObject
) -> None:
    module = BACKENDS[backend]
    n = x.shape[1]
    if n < 2:
        return
    p = data.draw(st.integers(1, n - 1))  # the change lands at sample p
    g0, g1 = data.draw(gains_db), data.draw(gains_db)
    ramp_ms = data.draw(st.floats(0.0, 40.0))
    head_cuts = data.draw(cuts(p))
    tail_cuts = data.draw(cuts(n - p))
    whole = [x[:, :p].copy(), x[:, p:].copy()]
    pieces = split(x[:, :p], head_cuts) + split(x[:, p:], tail_cuts)

    ref = run(module.GainKernel(gain_db=g0, ramp_ms=ramp_ms), whole, rate, {1: set_gain(g1)})
    got = run(
        module.GainKernel(gain_db=g0, ramp_ms=ramp_ms),
        pieces,
        rate,
        {len(head_cuts) + 1: set_gain(g1)},
    )

    a, b = joined(ref, x.shape[0]), joined(got, x.shape[0])
    assert a.shape == b.shape == x.shape
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    x=signals(max_channels=2, max_len=3000),
    rate_in=st.sampled_from(RATES),
    rate_out=st.sampled_from(RATES),
    data=st.data(),
)
def test_resample_is_split_invariant(
    backend: str, x: np.ndarray, rate_in: int, rate_out: int, data: st.DataObject
) -> None:
    module = BACKENDS[backend]
    pieces = split(x, data.draw(cuts(x.shape[1], max_cuts=20)))

    ref = run(module.ResampleKernel(sample_rate=rate_out), [x], rate_in)
    got = run(module.ResampleKernel(sample_rate=rate_out), pieces, rate_in)

    a, b = joined(ref, x.shape[0]), joined(got, x.shape[0])
    assert a.shape == b.shape == (x.shape[0], resampled_length(x.shape[1], rate_in, rate_out))
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    taken = made = 0
    for piece, call in zip(pieces, got, strict=False):
        taken += piece.shape[1]
        made += sum(blk.shape[1] for blk in call)
        assert made == resampled_length(taken, rate_in, rate_out)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(x=signals(), pad_final=st.booleans(), size=st.integers(1, 1000), data=st.data())
def test_rebuffer_is_split_invariant(
    backend: str, x: np.ndarray, pad_final: bool, size: int, data: st.DataObject
) -> None:
    module = BACKENDS[backend]
    pieces = split(x, data.draw(cuts(x.shape[1])))

    ref = run(module.RebufferKernel(samples=size, pad_final=pad_final), [x], 48000)
    got = run(module.RebufferKernel(samples=size, pad_final=pad_final), pieces, 48000)

    blocks_ref = [b for call in ref for b in call]
    blocks_got = [b for call in got for b in call]
    assert [b.shape for b in blocks_got] == [b.shape for b in blocks_ref]
    for a, b in zip(blocks_ref, blocks_got, strict=True):
        np.testing.assert_array_equal(b, a)
    out = joined(got, x.shape[0])
    n = x.shape[1]
    np.testing.assert_array_equal(out[:, :n], x)  # nothing lost, nothing repeated
    assert out.shape[1] == (-(-n // size) * size if pad_final else n)
    np.testing.assert_array_equal(out[:, n:], 0)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(x=signals(max_channels=4), data=st.data())
def test_channel_mix_is_split_invariant(backend: str, x: np.ndarray, data: st.DataObject) -> None:
    module = BACKENDS[backend]
    have = x.shape[0]
    channels = data.draw(st.integers(1, 6) if have == 1 else st.sampled_from([1, have]))
    pieces = split(x, data.draw(cuts(x.shape[1])))

    ref = joined(run(module.ChannelMixKernel(channels=channels), [x], 48000), channels)
    got = joined(run(module.ChannelMixKernel(channels=channels), pieces, 48000), channels)

    assert got.shape == ref.shape == (channels, x.shape[1])
    np.testing.assert_array_equal(got, ref)


# --------------------------------------------------------------------------- Chain


def run_sequential(kernels: list[Any], blocks: list[np.ndarray], rate: int) -> list[np.ndarray]:
    """Each block through each kernel in turn; at the end flush stage 1, push its tail through
    the rest, then flush stage 2, and so on (the order docs/kernels.md gives ``Chain``)."""
    rates = [rate]
    for k in kernels:
        rates.append(k.output_rate(rates[-1]))

    def push(items: list[np.ndarray], start: int) -> list[np.ndarray]:
        for i in range(start, len(kernels)):
            items = [o for item in items for o in kernels[i].process(item, rates[i])]
        return items

    out = [o for block in blocks for o in push([block], 0)]
    for i, k in enumerate(kernels):
        out += push(list(k.flush()), i + 1)
    return out


def chain_specs(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    pool: list[tuple[str, dict[str, Any]]] = [
        ("GainKernel", {"gain_db": draw(gains_db), "ramp_ms": 5.0}),
        ("ChannelMixKernel", {"channels": draw(st.sampled_from([1, 2]))}),
        ("ResampleKernel", {"sample_rate": draw(st.sampled_from(RATES))}),
        (
            "RebufferKernel",
            {"samples": draw(st.integers(1, 700)), "pad_final": draw(st.booleans())},
        ),
        ("PassThroughKernel", {}),
    ]
    order = draw(st.permutations(range(len(pool))))
    count = draw(st.integers(2, len(pool)))
    return [pool[i] for i in order[:count]]


def build(specs: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    return [getattr(rs, cls)(**kwargs, stage=f"s{i}") for i, (cls, kwargs) in enumerate(specs)]


@SETTINGS
@given(x=signals(max_channels=2), rate=st.sampled_from(RATES), data=st.data())
def test_chain_equals_kernels_one_after_another(
    x: np.ndarray, rate: int, data: st.DataObject
) -> None:
    specs = chain_specs(data.draw)  # one ChannelMix to 1 or 2 channels: valid for 1 or 2 in
    pieces = split(x, data.draw(cuts(x.shape[1])))
    kernels = build(specs)
    chain = rs.Chain(build(specs))

    expected = run_sequential(kernels, pieces, rate)
    got = [o for p in pieces for o in chain.process(p, rate)] + list(chain.flush())

    assert [b.shape for b in got] == [b.shape for b in expected]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    out_rate = rate
    for k in kernels:
        out_rate = k.output_rate(out_rate)
    assert chain.output_rate(rate) == out_rate


def test_chain_sees_gain_changes_made_on_its_kernels() -> None:
    """The kernels keep their state in the chain's objects: setting gain_db on one mid-stream
    ramps inside the chain exactly as it does on its own."""
    x = np.full((1, 4800), 0.5, np.float32)
    pieces = split(x, list(range(480, 4800, 480)))
    solo = [rs.GainKernel(ramp_ms=5.0), rs.ResampleKernel(sample_rate=16000)]
    fused = [rs.GainKernel(ramp_ms=5.0), rs.ResampleKernel(sample_rate=16000)]
    chain = rs.Chain(fused)

    expected, got = [], []
    for i, p in enumerate(pieces):
        if i == 3:
            solo[0].gain_db = -20.0
            fused[0].gain_db = -20.0
        expected += [o for b in solo[0].process(p, 48000) for o in solo[1].process(b, 48000)]
        got += chain.process(p, 48000)
    assert fused[0].gain_db == -20.0
    a, b = np.concatenate(expected, axis=1), np.concatenate(got, axis=1)
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    assert float(b[0, -1]) == pytest.approx(0.05, abs=1e-4)  # reached -20 dB


def test_chain_errors_name_their_stage() -> None:
    gain = rs.GainKernel(stage="loud")
    resample = rs.ResampleKernel(sample_rate=16000, stage="to16k")
    chain = rs.Chain([gain, resample])
    chain.process(np.zeros((1, 480), np.float32), 48000)
    with pytest.raises(FormatError) as info:
        chain.process(np.zeros((1, 441), np.float32), 44100)
    assert info.value.stage == "to16k"
    assert str(info.value) == "to16k: sample rate changed mid-stream from 48000 to 44100 Hz"
    bad = np.zeros((1, 480), np.float32)
    bad[0, 9] = np.inf
    with pytest.raises(FormatError) as info:
        chain.process(bad, 48000)
    assert info.value.stage == "loud"
    assert str(info.value) == "loud: non-finite sample at channel 0, index 9"


def test_chain_reads_its_input_without_changing_it() -> None:
    x = np.linspace(-1, 1, 960, dtype=np.float32)[None, :]
    before = x.copy()
    chain = rs.Chain([rs.GainKernel(gain_db=6.0), rs.ChannelMixKernel(channels=2)])
    (out,) = chain.process(x, 48000)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(out, x)
    np.testing.assert_allclose(out, np.vstack([x, x]) * np.float32(10 ** (6 / 20)), rtol=1e-6)


def test_chain_reset_drops_state() -> None:
    x = np.ones((1, 1000), np.float32)
    chain = rs.Chain([rs.RebufferKernel(samples=512), rs.GainKernel()])
    assert len(chain.process(x, 48000)) == 1
    chain.reset()
    assert chain.flush() == []
