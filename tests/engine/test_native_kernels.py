"""The compiled module on its own: error classes and messages, output shapes and layout, inputs
that need a copy, chunking invariance, panics, concurrency (busy kernels, the GIL released).

Behaviour shared with the Python twins (formulas, parity) is tested in ``tests/audio``; this file
covers what only the native engine has. Skipped in the Python-only session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

if os.environ.get("REMOTEMEDIA_RUNTIME") == "python":
    pytest.skip(
        "Python-only session: these tests exercise the Rust engine", allow_module_level=True
    )

from hypothesis import given, settings
from hypothesis import strategies as st

from stream import _engine as rs
from stream.errors import ConfigError, EngineError, FormatError, StreamError

Block = npt.NDArray[np.float32]

KERNELS: dict[str, Callable[..., rs.Kernel]] = {
    "passthrough": lambda **kw: rs.PassThroughKernel(**kw),
    "gain": lambda **kw: rs.GainKernel(-6.0, **kw),
    "channel_mix": lambda **kw: rs.ChannelMixKernel(1, **kw),
    "resample": lambda **kw: rs.ResampleKernel(16000, **kw),
    "rebuffer": lambda **kw: rs.RebufferKernel(samples=100, **kw),
}


GAIN_LIMIT = "gain_db must be finite and at most 770.0"
RATE_LIMIT = "sample_rate must be an int in 1000..=384000 Hz"
FORMATS = "format must be one of ['fltp', 'flt', 's16p', 's16']"


def noise(channels: int, n: int, seed: int = 0) -> Block:
    return np.random.default_rng(seed).uniform(-1, 1, (channels, n)).astype(np.float32)


def raises(cls: type[StreamError], stage: str, message: str, fn: Callable[[], Any]) -> None:
    """``fn()`` raises exactly ``cls`` with ``"{stage}: {message}"`` and ``.stage`` set."""
    with pytest.raises(cls) as info:
        fn()
    assert type(info.value) is cls
    assert str(info.value) == f"{stage}: {message}"
    assert info.value.stage == stage


def joined(blocks: list[Block]) -> Block:
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((0, 0), np.float32)


# --------------------------------------------------------------------------- module


def test_module_exports_the_documented_api() -> None:
    assert isinstance(rs.__version__, str) and rs.__version__
    for name in rs.__all__:
        assert hasattr(rs, name), name
    for name in ("GainKernel", "ChannelMixKernel", "ResampleKernel", "RebufferKernel"):
        assert issubclass(getattr(rs, name), rs.Kernel)
    assert issubclass(rs.PassThroughKernel, rs.Kernel)
    assert not issubclass(rs.FormatConvertKernel, rs.Kernel)
    with pytest.raises(TypeError):
        rs.Kernel()  # abstract: only the subclasses construct


def test_defaults_and_properties() -> None:
    g = rs.GainKernel()
    assert (g.gain_db, g.ramp_ms, g.stage) == (0.0, 5.0, "gain")
    r = rs.ResampleKernel(16000)
    assert (r.sample_rate, r.input_rate, r.latency_samples, r.latency_seconds) == (
        16000,
        None,
        0,
        0.0,
    )
    assert r.stage == "resample" and r.output_rate(48000) == 16000
    m = rs.ChannelMixKernel(2)
    assert (m.channels, m.stage) == (2, "channel_mix")
    b = rs.RebufferKernel(samples=4)
    assert (b.samples, b.frame_ms, b.pad_final, b.stage) == (4, None, False, "rebuffer")
    b = rs.RebufferKernel(frame_ms=2.5, pad_final=True)
    assert (b.samples, b.frame_ms, b.pad_final) == (None, 2.5, True)
    assert rs.PassThroughKernel().stage == "passthrough"
    f = rs.FormatConvertKernel("s16")
    assert (f.format, f.stage) == ("s16", "format_convert")
    assert "GainKernel" in repr(g) and "gain" in repr(g)


def test_resample_latency_after_first_block() -> None:
    r = rs.ResampleKernel(16000)
    r.process(noise(1, 960), 48000)
    # K = 191 taps at 48 kHz: delay (191 - 1) / 2 = 95 input samples = 31.67 output samples.
    assert r.input_rate == 48000
    assert r.latency_seconds == pytest.approx(95 / 48000)
    assert r.latency_samples == 32
    r.flush()
    assert r.input_rate is None and r.latency_samples == 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", list(KERNELS))
def test_input_checks_in_contract_order(name: str) -> None:
    k = KERNELS[name](stage="s")
    expected = "expected a float32 array of shape (channels, samples)"
    raises(
        FormatError,
        "s",
        f"{expected}, got float64 with 2 dimension(s)",
        lambda: k.process(np.zeros((1, 4)), 8000),  # type: ignore[arg-type]
    )
    raises(
        FormatError,
        "s",
        f"{expected}, got float32 with 1 dimension(s)",
        lambda: k.process(np.zeros(4, np.float32), 8000),
    )
    raises(
        FormatError,
        "s",
        f"{expected}, got list with 0 dimension(s)",
        lambda: k.process([[0.0]], 8000),  # type: ignore[arg-type]
    )
    # Empty before the rate, the rate before non-finite samples.
    raises(
        FormatError,
        "s",
        "empty frame (0 channels, 4 samples)",
        lambda: k.process(np.zeros((0, 4), np.float32), 0),
    )
    bad = np.zeros((2, 4), np.float32)
    bad[1, 2] = np.nan
    bad[1, 3] = np.inf
    raises(FormatError, "s", "invalid sample rate 0", lambda: k.process(bad, 0))
    raises(FormatError, "s", "invalid sample rate -8000", lambda: k.process(bad, -8000))
    raises(
        FormatError, "s", "non-finite sample at channel 1, index 2", lambda: k.process(bad, 8000)
    )


@pytest.mark.parametrize("name", ["resample", "rebuffer"])
def test_stateful_kernels_reject_mid_stream_changes(name: str) -> None:
    k = KERNELS[name](stage="s")
    k.process(noise(2, 50), 48000)
    raises(
        FormatError,
        "s",
        "sample rate changed mid-stream from 48000 to 44100 Hz",
        lambda: k.process(noise(2, 50), 44100),
    )
    raises(
        FormatError,
        "s",
        "channel count changed mid-stream from 2 to 1",
        lambda: k.process(noise(1, 50), 48000),
    )
    k.reset()
    k.process(noise(1, 50), 44100)  # a new stream takes any format


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rs.GainKernel(float("nan"), stage="k"), f"{GAIN_LIMIT}, got nan"),
        (lambda: rs.GainKernel(800.0, stage="k"), f"{GAIN_LIMIT}, got 800.0"),
        (
            lambda: rs.GainKernel(0.0, -1.0, stage="k"),
            "ramp_ms must be a finite number >= 0, got -1.0",
        ),
        (
            lambda: rs.GainKernel("loud", stage="k"),  # type: ignore[arg-type]
            "gain_db must be a number, got 'loud'",
        ),
        (lambda: rs.ChannelMixKernel(0, stage="k"), "channels must be an int in 1..=64, got 0"),
        (
            lambda: rs.ChannelMixKernel(2.0, stage="k"),  # type: ignore[arg-type]
            "channels must be an int, got 2.0",
        ),
        (lambda: rs.ResampleKernel(999, stage="k"), f"{RATE_LIMIT}, got 999"),
        (lambda: rs.RebufferKernel(stage="k"), "give exactly one of samples or frame_ms"),
        (lambda: rs.RebufferKernel(0, stage="k"), "samples must be an int >= 1, got 0"),
        (lambda: rs.RebufferKernel(frame_ms=0.0, stage="k"), "frame_ms must be > 0, got 0.0"),
        (lambda: rs.FormatConvertKernel("s32", stage="k"), f"{FORMATS}, got 's32'"),
    ],
)
def test_bad_settings_are_config_errors(make: Callable[[], Any], message: str) -> None:
    raises(ConfigError, "k", message, make)


def test_gain_setter_validates() -> None:
    g = rs.GainKernel(stage="g")
    raises(ConfigError, "g", f"{GAIN_LIMIT}, got inf", lambda: setattr(g, "gain_db", float("inf")))
    assert g.gain_db == 0.0
    g.gain_db = -12
    assert g.gain_db == -12.0


def test_unsupported_rate_pair_is_a_format_error_and_the_stream_can_retry() -> None:
    r = rs.ResampleKernel(44101, stage="r")
    raises(
        FormatError,
        "r",
        "unsupported rate pair 44100 -> 44101 Hz (44101 phases)",
        lambda: r.process(noise(1, 10), 44100),
    )
    assert r.input_rate is None
    assert len(joined(r.process(noise(1, 441), 44101))[0]) == 441


def test_channel_mix_rejects_unsupported_layouts() -> None:
    raises(
        FormatError,
        "m",
        "cannot mix 3 channels to 2; supported: mono to any, any to mono, or the same count",
        lambda: rs.ChannelMixKernel(2, stage="m").process(noise(3, 4), 8000),
    )


def test_errors_fall_back_to_builtins_without_stream_errors() -> None:
    """If ``stream.errors`` cannot be imported, errors are ValueError/RuntimeError, still named."""
    code = """
import sys
import numpy as np
from stream import _engine
sys.modules["stream.errors"] = None  # any import of it now fails
try:
    _engine.GainKernel(stage="g").process(np.zeros((1, 1)), 8000)
except Exception as exc:
    print(type(exc).__name__, exc.stage, exc)
try:
    _engine.selftest_panic("x")
except Exception as exc:
    print(type(exc).__name__, exc.stage)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ValueError g g: expected a float32 array")
    assert lines[1] == "RuntimeError selftest"


# --------------------------------------------------------------------------- panics


def test_panic_surfaces_as_engine_error() -> None:
    with pytest.raises(EngineError) as info:
        rs.selftest_panic("on purpose")
    assert info.value.stage == "selftest"
    assert "on purpose" in str(info.value)
    assert str(info.value).startswith("selftest: internal error (Rust panic")
    # The process is fine and panics again on demand.
    with pytest.raises(EngineError):
        rs.selftest_panic("again")
    assert rs.GainKernel().process(noise(1, 4), 8000)[0].shape == (1, 4)


# --------------------------------------------------------------------------- arrays


@pytest.mark.parametrize("name", [n for n in KERNELS if n != "passthrough"])
def test_outputs_are_new_c_contiguous_float32(name: str) -> None:
    k = KERNELS[name]()
    x = noise(2, 960)
    outs = k.process(x, 48000) + k.flush()
    assert outs
    for out in outs:
        assert out.dtype == np.float32 and out.ndim == 2
        assert out.flags.c_contiguous and out.flags.writeable
        assert not np.shares_memory(out, x)
        out[...] = 0  # owned by the caller
    assert not np.any(x == 0)


def test_passthrough_returns_the_same_object() -> None:
    x = noise(2, 8)
    assert rs.PassThroughKernel().process(x, 8000)[0] is x
    assert rs.PassThroughKernel().flush() == []


def make_layouts() -> dict[str, Block]:
    """The same 2 x 301 block in layouts that cannot be read in place."""
    base = noise(2, 301, seed=1)
    wide = noise(2, 602, seed=2)
    wide[:, ::2] = base
    raw = np.zeros(base.nbytes + 1, np.uint8)
    unaligned: Block = np.ndarray(base.shape, np.float32, buffer=raw, offset=1)
    unaligned[...] = base
    assert not unaligned.flags.aligned
    readonly = base.copy()
    readonly.flags.writeable = False
    return {
        "fortran": np.asfortranarray(base),
        "strided": wide[:, ::2],
        "unaligned": unaligned,
        "readonly": readonly,
    }


@pytest.mark.parametrize("layout", ["fortran", "strided", "unaligned", "readonly"])
def test_any_layout_is_read_correctly(layout: str) -> None:
    x = make_layouts()[layout]
    want = np.ascontiguousarray(x)
    got = rs.GainKernel(0.0).process(x, 8000)[0]
    np.testing.assert_array_equal(got, want)
    a = joined(rs.ResampleKernel(16000).process(x, 44100))
    b = joined(rs.ResampleKernel(16000).process(want, 44100))
    np.testing.assert_array_equal(a, b)


def test_format_convert_layouts_and_values() -> None:
    x = np.array([[0.5, -1.0, 1.0], [0.25, 2.0, -0.5 / 32768]], np.float32)
    s16 = rs.FormatConvertKernel("s16").process(x, "fltp")
    assert s16.dtype == np.int16 and s16.shape == (3, 2) and s16.flags.c_contiguous
    np.testing.assert_array_equal(s16, [[16384, 8192], [-32768, 32767], [32767, 0]])
    back = rs.FormatConvertKernel("fltp").process(s16, "s16")
    np.testing.assert_array_equal(back, s16.T.astype(np.float32) / 32768)
    flt = rs.FormatConvertKernel("flt").process(x, "fltp")
    np.testing.assert_array_equal(flt, x.T)
    expected = "expected a 2-D int16 array for s16p, got float32 with 2 dimension(s)"
    raises(
        FormatError,
        "format_convert",
        expected,
        lambda: rs.FormatConvertKernel("fltp").process(x, "s16p"),
    )
    raises(
        ConfigError,
        "format_convert",
        f"{FORMATS}, got 'u8'",
        lambda: rs.FormatConvertKernel("fltp").process(x, "u8"),
    )


# --------------------------------------------------------------------------- streaming


def run_split(kernel: rs.Kernel | rs.Chain, x: Block, rate: int, cuts: list[int]) -> list[Block]:
    out: list[Block] = []
    for a, b in zip([0, *cuts], [*cuts, x.shape[1]], strict=True):
        if b > a:
            out += kernel.process(np.ascontiguousarray(x[:, a:b]), rate)
    return out + kernel.flush()


PAIRS = [(48000, 16000), (44100, 48000), (16000, 44100), (8000, 48000), (96000, 8000)]


@settings(max_examples=40, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    channels=st.integers(1, 3),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
)
def test_resample_output_is_bit_identical_however_the_input_is_split(
    pair: tuple[int, int], channels: int, cuts: list[int]
) -> None:
    rate_in, rate_out = pair
    x = noise(channels, 3000, seed=len(cuts))
    k = rs.ResampleKernel(rate_out)
    whole = joined(run_split(k, x, rate_in, []))
    split = run_split(k, x, rate_in, sorted(cuts))
    assert all(b.shape[1] > 0 for b in split)  # never an empty block
    np.testing.assert_array_equal(joined(split), whole)
    # floor((2 T L + M) / (2 M)) outputs = round half up of T * out / in.
    assert whole.shape[1] == (2 * 3000 * rate_out + rate_in) // (2 * rate_in)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=12), pad=st.booleans())
def test_chain_output_is_independent_of_the_split(cuts: list[int], pad: bool) -> None:
    def chain() -> rs.Chain:
        return rs.Chain(
            [
                rs.ChannelMixKernel(1),
                rs.GainKernel(-3.0),
                rs.ResampleKernel(16000),
                rs.RebufferKernel(frame_ms=20.0, pad_final=pad),
            ]
        )

    x = noise(2, 2000, seed=3)
    whole = run_split(chain(), x, 44100, [])
    split = run_split(chain(), x, 44100, sorted(cuts))
    assert [b.shape for b in split] == [b.shape for b in whole]
    np.testing.assert_array_equal(joined(split), joined(whole))


# --------------------------------------------------------------------------- chain


def test_chain_skips_pass_throughs_and_equals_its_kernels_in_turn() -> None:
    x = noise(2, 960)
    expected, rate = [x], 48000
    for k in [rs.GainKernel(6.0), rs.ResampleKernel(16000), rs.RebufferKernel(samples=100)]:
        expected = [y for b in expected for y in k.process(b, rate)]
        rate = k.output_rate(rate)
    chain = rs.Chain(
        [
            rs.PassThroughKernel(),
            rs.GainKernel(6.0),
            rs.PassThroughKernel(),
            rs.ResampleKernel(16000),
            rs.RebufferKernel(samples=100),
        ]
    )
    assert len(chain) == 5
    assert chain.output_rate(48000) == 16000
    got = chain.process(x, 48000)
    assert [b.shape for b in got] == [(2, 100)] * 3
    np.testing.assert_array_equal(joined(got), joined(expected))
    assert [b.shape for b in chain.flush()] == [(2, 20)]


def test_chain_of_pass_throughs_returns_the_input_object() -> None:
    x = noise(1, 10)
    chain = rs.Chain([rs.PassThroughKernel(), rs.PassThroughKernel()])
    assert chain.process(x, 8000)[0] is x
    assert chain.flush() == [] and chain.output_rate(8000) == 8000


def test_chain_flush_pushes_tails_through_later_kernels() -> None:
    gain = rs.GainKernel(20.0)
    chain = rs.Chain([rs.RebufferKernel(samples=64, pad_final=True), gain])
    assert chain.process(np.ones((1, 10), np.float32), 8000) == []
    (tail,) = chain.flush()
    assert tail.shape == (1, 64)
    np.testing.assert_allclose(tail[0, :10], 10.0)
    np.testing.assert_array_equal(tail[0, 10:], 0.0)


def test_chain_errors_name_the_kernel_that_raised() -> None:
    chain = rs.Chain([rs.GainKernel(stage="vol"), rs.ResampleKernel(16000, stage="rs")])
    raises(FormatError, "vol", "invalid sample rate 0", lambda: chain.process(noise(1, 4), 0))
    chain.process(noise(1, 480), 48000)
    raises(
        FormatError,
        "rs",
        "sample rate changed mid-stream from 48000 to 32000 Hz",
        lambda: chain.process(noise(1, 480), 32000),
    )


def test_chain_construction_errors() -> None:
    g = rs.GainKernel()
    once = "a kernel holds one stream, so it can appear only once"
    raises(
        ConfigError,
        "chain",
        f"item 1 is the same kernel as item 0; {once}",
        lambda: rs.Chain([g, g]),
    )
    raises(
        ConfigError,
        "chain",
        "item 0 is a FormatConvertKernel, not a Kernel",
        lambda: rs.Chain([rs.FormatConvertKernel("s16")]),  # type: ignore[list-item]
    )
    raises(ConfigError, "chain", "a chain needs at least one kernel", lambda: rs.Chain([]))


def test_kernels_keep_their_state_between_chain_and_direct_calls() -> None:
    r = rs.ResampleKernel(16000)
    rs.Chain([r]).process(noise(1, 480), 48000)
    assert r.input_rate == 48000
    raises(
        FormatError,
        "resample",
        "sample rate changed mid-stream from 48000 to 8000 Hz",
        lambda: r.process(noise(1, 480), 8000),
    )


# --------------------------------------------------------------------------- concurrency


def heavy() -> tuple[rs.Chain, Block, rs.GainKernel, rs.ResampleKernel]:
    """A chain whose one call takes a while: a minute of stereo, 48 kHz to 1 kHz (~3000 taps)."""
    gain, resample = rs.GainKernel(0.0, 1.0), rs.ResampleKernel(1000)
    return rs.Chain([gain, resample]), noise(2, 48000 * 60), gain, resample


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    return thread, result


def test_gil_is_released_during_a_chain_call() -> None:
    # Hand the GIL over quickly, so the gaps measured are the engine's, not the interpreter's.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        _check_gil_released()
    finally:
        sys.setswitchinterval(previous)


def _check_gil_released() -> None:
    chain, x, _, _ = heavy()
    t0 = time.perf_counter()
    chain.process(x, 48000)
    alone = time.perf_counter() - t0
    chain.reset()
    thread, result = in_thread(lambda: chain.process(x, 48000))
    ticks, last, worst = 0, time.perf_counter(), 0.0
    while thread.is_alive():
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
        ticks += 1
    thread.join()
    assert result and result[0][0].shape == (2, 60000)
    # The same loop with no call beside it, for as long as the call took alone: how many ticks
    # this thread makes when it has the GIL throughout.
    free, end = 0, time.perf_counter() + alone
    while time.perf_counter() < end:
        free += 1
    # With the GIL held this thread would stall for the whole call, ticking only at its edges
    # (about one switch interval: well under 1 % of ``free``). A loaded machine slows both
    # loops alike, so the share is asserted, not the longest gap.
    assert ticks > free / 100, (ticks, free, worst, alone)


def test_a_kernel_busy_in_another_call_is_a_clear_error_not_a_deadlock() -> None:
    chain, x, gain, resample = heavy()
    thread, _ = in_thread(lambda: chain.process(x, 48000))
    seen: list[Exception] = []
    while thread.is_alive() and not seen:
        try:
            resample.process(noise(2, 48), 48000)
        except RuntimeError as exc:
            seen.append(exc)
        time.sleep(0.001)
    # Settings are not stream calls: they wait for the kernel instead of failing.
    gain.gain_db = -6.0
    thread.join()
    assert seen, "the chain call ended before the kernel was seen busy"
    assert str(seen[0]).startswith("resample: kernel is busy in another call")
    assert getattr(seen[0], "stage", None) == "resample"
    assert gain.gain_db == -6.0
