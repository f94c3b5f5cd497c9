"""The Kalman canceller pair (``KalmanAecKernel``: Rust in the engine, the numpy twin in
media_nodes/audio/kalman_kernel.py) against issue 11's goals, on the benchmark's deterministic
scenes (media_nodes.audio.echo_scene: 20 s, a 160 ms room, -60 dBFS noise, double talk at
14-17 s): 20 dB of echo reduction within 2 s of far-end speech and of a room change, 35 dB once
converged, and in double talk the near-end within 2 dB of its level (over the double talk and in
the median 0.25 s window) with the echo 20 dB under it; at 16 and 48 kHz, on both backends. Then
parity between the twins, split invariance, whole frames and typed errors.

Everything is measured by inversion, as benchmarks/echo_quality.py does: the echo as the kernel
leaves it is half the difference of the outputs for the scene and for the scene with far end and
echo negated; the near-end as it passed in double talk half the difference of the outputs for
the scene and for the scene with the near-end negated.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media_nodes.audio.echo_scene import echo_scene
from media_nodes.audio.kalman_aec import block_samples
from media_nodes.audio.kalman_kernel import KalmanAecKernel as PythonKalman
from stream.errors import ConfigError, FormatError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
DT = (14.0, 17.0)
CHANGE_S = 7.0


def kernel_class(backend: str) -> Any:
    if backend == "python":
        return PythonKalman
    from stream import _engine

    if not hasattr(_engine, "KalmanAecKernel"):
        pytest.skip("the installed engine predates KalmanAecKernel")
    return _engine.KalmanAecKernel


@pytest.fixture
def kalman(backend: str) -> Any:
    """The ``KalmanAecKernel`` class of the backend under test."""
    return kernel_class(backend)


def run(kernel: Any, near: F32, far: F32, rate: int, sizes: list[int]) -> tuple[F32, int]:
    """The kernel's output for ``near``/``far`` fed in blocks of ``sizes`` (in turn), and its
    ``latency_samples``."""
    outs: list[F32] = []
    pos, k, lat = 0, 0, 0
    while pos < near.shape[1]:
        n = sizes[k % len(sizes)]
        k += 1
        outs += kernel.process(near[:, pos : pos + n].copy(), far[:, pos : pos + n].copy(), rate)
        lat = kernel.latency_samples
        pos += n
    outs += kernel.flush()
    return np.concatenate(outs, axis=1), lat


def cancel(cls: Any, mic: F64, far: F64, rate: int) -> F64:
    """``mic`` through a new kernel in 20 ms frames, its latency taken off."""
    y, lat = run(
        cls(), mic.astype(np.float32)[None], far.astype(np.float32)[None], rate, [rate // 50]
    )
    return np.concatenate([y[0, lat:], np.zeros(lat)]).astype(np.float64)


def db(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    return float(10 * np.log10(np.sum(np.square(a)) / max(float(np.sum(np.square(b))), 1e-30)))


def scene(rate: int, near_gain: float, change: bool) -> dict[str, Any]:
    return echo_scene(
        20.0,
        rate=rate,
        double_talk=DT,
        seed=0,
        near_gain=near_gain,
        path_change_s=CHANGE_S if change else None,
    )


@cache
def measured(backend: str, rate: int, near_gain: float, change: bool) -> dict[str, float]:
    """The goal's figures for one scene (the benchmark's definitions)."""
    cls = kernel_class(backend)
    s = scene(rate, near_gain, change)
    y = cancel(cls, s["mic"], s["far"], rate)
    far_inv = cancel(cls, s["mic"] - 2 * s["echo"], -s["far"], rate)
    near_inv = cancel(cls, s["mic"] - 2 * s["near"], s["far"], rate)
    alone = cancel(cls, s["near"] + s["noise"], np.zeros_like(s["far"]), rate)
    echo_left = (y - far_inv) / 2
    start = CHANGE_S if change else 0.0
    ends = np.arange(start + 1.0, DT[0] + 1e-9, 0.1)
    erle = np.array(
        [
            db(
                s["echo"][int((t - 1) * rate) : int(t * rate)],
                echo_left[int((t - 1) * rate) : int(t * rate)],
            )
            for t in ends
        ]
    )
    first = float(ends[np.argmax(erle >= 20.0)] - start) if (erle >= 20.0).any() else np.inf
    conv_from = max(7.0, start + 3.0)
    converged = [
        db(
            s["echo"][int((t - 1) * rate) : int(t * rate)],
            echo_left[int((t - 1) * rate) : int(t * rate)],
        )
        for t in np.arange(conv_from + 1.0, DT[0] + 1e-9, 1.0)
    ]
    a, b = int(DT[0] * rate), int(DT[1] * rate)
    near = (y[a:b] - near_inv[a:b]) / 2
    passed = alone[a:b]
    w = rate // 4
    powers = [
        (np.mean(near[i : i + w] ** 2), np.mean(passed[i : i + w] ** 2))
        for i in range(0, b - a - w + 1, w)
    ]
    loudest = max(p for _, p in powers)
    changes = [10 * np.log10(n / p) for n, p in powers if p > loudest * 1e-4 and n > 0]
    return {
        "first": first,
        "converged": float(np.mean(converged)),
        "near_level": db(near, passed),
        "near_median": float(np.median(changes)),
        "echo_under_near": db(near, echo_left[a:b]),
    }


CASES = [(16000, 0.35, False), (16000, 0.7, True), (48000, 0.35, False), (48000, 0.7, True)]


@pytest.mark.parametrize(("rate", "near_gain", "change"), CASES)
def test_goals_of_issue_11(backend: str, rate: int, near_gain: float, change: bool) -> None:
    m = measured(backend, rate, near_gain, change)
    assert m["first"] <= 2.0, m  # 20 dB within 2 s (of the start or of the room change)
    assert m["converged"] >= 35.0, m
    assert m["near_level"] >= -2.0, m
    assert m["near_median"] >= -2.0, m  # no ducking in the quieter windows
    assert m["echo_under_near"] >= 20.0, m


@pytest.mark.parametrize("rate", [16000, 48000])
def test_twins_agree(rate: int) -> None:
    ours, twin = (measured(b, rate, 0.35, False) for b in ("rust", "python"))
    for key in ("converged", "echo_under_near"):
        assert abs(ours[key] - twin[key]) <= 1.0, (key, ours, twin)
    for key in ("near_level", "near_median"):
        assert abs(ours[key] - twin[key]) <= 0.2, (key, ours, twin)


def test_output_does_not_depend_on_the_split(kalman: Any) -> None:
    s = echo_scene(3.0, rate=16000, double_talk=(1.5, 2.5), seed=3)
    mic, far = s["mic"].astype(np.float32)[None], s["far"].astype(np.float32)[None]
    whole, _ = run(kalman(), mic, far, 16000, [320])
    ragged, _ = run(kalman(), mic, far, 16000, [7, 160, 1, 333, 480, 31])
    assert whole.shape == ragged.shape == mic.shape
    np.testing.assert_array_equal(whole, ragged)


def _engine_kernel() -> Any:
    from stream import _engine

    if not hasattr(_engine, "KalmanAecKernel"):
        pytest.skip("the engine is not built")
    return _engine.KalmanAecKernel


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from([8000, 16000, 32000, 48000]),
    seconds=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**31),
    sizes=st.lists(st.integers(1, 2000), min_size=1, max_size=6),
    filter_ms=st.sampled_from([10.0, 64.0, 200.0]),
    frame_ms=st.sampled_from([2.0, 10.0, 20.0, 35.0]),
)
def test_twins_give_the_same_samples_however_the_input_is_split(
    rate: int, seconds: float, seed: int, sizes: list[int], filter_ms: float, frame_ms: float
) -> None:
    """Random echo and double talk, any split: each twin gives the same samples as for one
    frame size, and the twins agree within float32 rounding (both compute in float64; the FFTs
    round differently, measured 2e-19 over 20 s)."""
    rust = _engine_kernel()
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    far = rng.standard_normal(n) * 0.1
    near = np.convolve(far, rng.standard_normal(rate // 100) * 0.05)[:n]
    near += rng.standard_normal(n) * 0.02 * (rng.random() < 0.5)
    mic, ref = near.astype(np.float32)[None], far.astype(np.float32)[None]
    outs = {}
    for name, cls in (("rust", rust), ("python", PythonKalman)):
        whole, _ = run(cls(filter_ms, frame_ms), mic, ref, rate, [rate // 50])
        split, _ = run(cls(filter_ms, frame_ms), mic, ref, rate, sizes)
        assert whole.shape == split.shape == mic.shape
        np.testing.assert_array_equal(whole, split, err_msg=name)
        outs[name] = whole
    np.testing.assert_allclose(outs["rust"], outs["python"], rtol=0, atol=1e-6)


def random_echo(rate: int, n: int, seed: int) -> tuple[F32, F32]:
    """``n`` samples of white far-end at ``rate`` and its echo through a random 10 ms path, as
    ``(1, n)`` float32 ``(mic, ref)``."""
    rng = np.random.default_rng(seed)
    far = rng.standard_normal(n) * 0.1
    near = np.convolve(far, rng.standard_normal(rate // 100) * 0.05)[:n]
    return near.astype(np.float32)[None], far.astype(np.float32)[None]


#: A move mid-stream: at ``at`` s of half a second, by ``shift_ms``.
MIDSTREAM_MOVE = given(
    rate=st.sampled_from([8000, 16000, 32000, 48000]),
    seed=st.integers(0, 2**31),
    at=st.floats(0.05, 0.4),
    shift_ms=st.floats(-150.0, 150.0),
    filter_ms=st.sampled_from([64.0, 200.0]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@MIDSTREAM_MOVE
def test_twins_shift_their_filters_alike(
    rate: int, seed: int, at: float, shift_ms: float, filter_ms: float
) -> None:
    """``shift_far`` mid-stream (a move of the bulk delay): both twins round it to the same
    whole blocks (0 when it is under half a block or as long as the filter) and go on giving
    the same samples within float32 rounding."""
    rust = _engine_kernel()
    n, cut = int(0.5 * rate), int(at * rate)
    mic, ref = random_echo(rate, n, seed)
    delta = round(shift_ms * rate / 1000)
    outs, moved = {}, {}
    for name, cls in (("rust", rust), ("python", PythonKalman)):
        k = cls(filter_ms, 20.0)
        blocks = k.process(mic[:, :cut], ref[:, :cut], rate)
        moved[name] = k.shift_far(delta)
        blocks += k.process(mic[:, cut:], ref[:, cut:], rate) + k.flush()
        outs[name] = np.concatenate(blocks, axis=1)
    block = block_samples(rate)
    parts = -(-round(filter_ms * rate / 1000) // block)
    m = round(delta / block)
    assert moved["rust"] == moved["python"] == (m * block if 0 < abs(m) < parts else 0)
    np.testing.assert_allclose(outs["rust"], outs["python"], rtol=0, atol=1e-6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from([8000, 16000, 32000, 48000]),
    seed=st.integers(0, 2**31),
    at=st.floats(0.05, 0.4),
    shift_ms=st.sampled_from([0.0, -40.0, 90.0]),
    filter_ms=st.sampled_from([64.0, 200.0, 600.0]),
    to_ms=st.sampled_from([10.0, 64.0, 200.0, 600.0]),
)
def test_twins_resize_their_filters_alike(
    rate: int, seed: int, at: float, shift_ms: float, filter_ms: float, to_ms: float
) -> None:
    """``set_filter_ms`` mid-stream (after a shift, as "auto" ends its search filter): both
    twins keep the lags both lengths cover and go on giving the same samples within float32
    rounding; the same length changes nothing; later streams get the new length."""
    rust = _engine_kernel()
    n, cut = int(0.5 * rate), int(at * rate)
    mic, ref = random_echo(rate, n, seed)
    outs = {}
    for name, cls in (("rust", rust), ("python", PythonKalman)):
        for resize in (True, False):
            k = cls(filter_ms, 20.0)
            blocks = k.process(mic[:, :cut], ref[:, :cut], rate)
            k.shift_far(round(shift_ms * rate / 1000))
            if resize:
                k.set_filter_ms(to_ms)
                assert k.filter_ms == to_ms
            blocks += k.process(mic[:, cut:], ref[:, cut:], rate) + k.flush()
            outs[name, resize] = np.concatenate(blocks, axis=1)
        assert k.filter_ms == filter_ms
    if to_ms == filter_ms:
        np.testing.assert_array_equal(outs["rust", True], outs["rust", False])
        np.testing.assert_array_equal(outs["python", True], outs["python", False])
    np.testing.assert_allclose(outs["rust", True], outs["python", True], rtol=0, atol=1e-6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@MIDSTREAM_MOVE
def test_twins_follow_a_jump_of_the_far_end_alike(
    rate: int, seed: int, at: float, shift_ms: float, filter_ms: float
) -> None:
    """``advance_far`` (far-end with no near-end: a skipped frame) and ``rewind_far`` (the far-end
    continues earlier: a stretched one) mid-stream: both twins take the same samples (whole
    blocks, none between blocks) and go on giving the same samples within float32 rounding."""
    rust = _engine_kernel()
    n, cut = int(0.5 * rate), int(at * rate)
    jump = round(shift_ms * rate / 1000)
    mic, ref = random_echo(rate, n + abs(jump), seed)
    outs, took = {}, {}
    for name, cls in (("rust", rust), ("python", PythonKalman)):
        k = cls(filter_ms, 20.0)
        blocks = k.process(mic[:, :cut], ref[:, :cut], rate)
        if jump < 0:
            took[name] = k.advance_far(ref[:, cut : cut - jump])
            rest = cut - jump
        else:
            took[name] = k.rewind_far(jump)
            rest = cut - jump
        blocks += k.process(mic[:, cut:n], ref[:, max(rest, 0) : max(rest, 0) + n - cut], rate)
        outs[name] = np.concatenate(blocks + k.flush(), axis=1)
    block = block_samples(rate)
    if jump < 0:
        whole = (-jump // block) * block if cut % block == 0 else 0
        assert took["rust"] == took["python"] == whole
    else:
        assert took["rust"] == took["python"] == round(jump / block) * block
    np.testing.assert_allclose(outs["rust"], outs["python"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_a_playout_skip_or_stretch_keeps_the_echo_cancelled(kalman: Any, rate: int) -> None:
    """A playout buffer drops 20 ms of a converged canceller's near-end (a skip) or hands out
    20 ms of concealment the media repeats after (a stretch). Told of it (``advance_far`` with
    the dropped frame's far-end; ``rewind_far`` before the concealment, which comes with the
    far-end it repeats), the canceller keeps its depth in the half second after; fed on as if
    nothing happened its far-end history is a frame off. Measured, skip / stretch, both twins:
    16 kHz 27.3 / 34.0 dB after, 29.6 / 30.0 before, not told 10.6 / 13.3; 48 kHz 61.9 / 63.5
    after, not told 43.7 / 46.9."""
    s = echo_scene(4.0, rate=rate, double_talk=None, seed=2)
    mic = s["echo"].astype(np.float32)[None]
    far = s["far"].astype(np.float32)[None]
    f, cut, half = rate // 50, 3 * rate, rate // 2
    results = {}
    for kind in ("skip", "stretch"):
        for told in (True, False):
            k = kalman(200.0)
            lat = block_samples(rate)
            head = k.process(mic[:, :cut], far[:, :cut], rate)
            if kind == "skip":  # near-end [cut, cut + f) never arrives
                if told:
                    assert k.advance_far(far[:, cut : cut + f]) == f
                tail = k.process(mic[:, cut + f :], far[:, cut + f :], rate)
                echo_after = mic[0, cut + f : cut + f + half]
            else:  # a concealed frame, then the media again from cut
                if told:
                    assert k.rewind_far(f) == f
                conceal = mic[:, cut - f : cut]
                tail = k.process(conceal, far[:, cut - f : cut], rate)
                tail += k.process(mic[:, cut:], far[:, cut:], rate)
                echo_after = np.concatenate([conceal[0], mic[0, cut : cut + half - f]])
            y = np.concatenate(head + tail, axis=1)[0, lat:].astype(np.float64)
            before = db(mic[0, cut - half : cut], y[cut - half : cut])
            after = db(echo_after, y[cut : cut + half])
            results[kind, told] = (round(before, 1), round(after, 1))
    for kind in ("skip", "stretch"):
        before, after = results[kind, True]
        assert after >= 25.0 and after >= before - 8.0, results
        assert results[kind, False][1] <= after - 8.0, results


def test_a_filter_cut_to_the_echo_keeps_cancelling(kalman: Any) -> None:
    """A 600 ms filter that learnt an echo 300 ms late, shifted to it and cut to 200 ms (what
    "auto" does when its search finds the echo), cancels as well as before the cut from the
    next block on, where a new 200 ms filter at that delay starts from nothing (measured over
    the quarter seconds before and after: 44.4 dB, 48.9 dB; the new filter 11.8 dB)."""
    rate = 16000
    s = echo_scene(3.0, rate=rate, double_talk=None, seed=1)
    d, move = int(0.3 * rate), int(0.29 * rate)  # the room starts 10 ms after the delay
    echo = np.concatenate([np.zeros(d), s["echo"]])[: len(s["echo"])]
    mic = echo.astype(np.float32)[None]
    far = s["far"].astype(np.float32)[None]
    late = np.zeros_like(far)  # the far-end as fed after the move
    late[:, move:] = far[:, : far.shape[1] - move]
    cut, end, q = 2 * rate, int(2.5 * rate), rate // 4
    k = kalman(600.0)
    blocks = k.process(mic[:, :cut], far[:, :cut], rate)
    assert k.shift_far(move) == move  # whole 2 ms blocks
    k.set_filter_ms(200.0)
    blocks += k.process(mic[:, cut:end], late[:, cut:end], rate)
    lat = int(k.latency_samples)
    y = np.concatenate(blocks, axis=1)[0, lat:].astype(np.float64)  # y[i]: mic sample i
    fresh = kalman(200.0)
    z = np.concatenate(fresh.process(mic[:, cut:end], late[:, cut:end], rate), axis=1)[0, lat:]
    before = db(echo[cut - q : cut], y[cut - q : cut])
    after = db(echo[cut : cut + q], y[cut : cut + q])
    new = db(echo[cut : cut + q], z[:q])
    assert after >= before - 3.0 and after >= new + 10.0, (before, after, new)


def test_with_no_echo_the_output_is_never_louder_than_the_microphone(kalman: Any) -> None:
    """A far end and a near-end talker but no echo at all (headphones): the talker's pitch can
    match the far end's for a while, and the filters learnt it as an echo path, then played the
    next loud far-end syllable into the output (this scene: +11.3 and +27.6 dB over the
    microphone in seconds 4 and 5). With the DIVERGED guard no second is louder than the
    microphone (measured: at most -0.03 dB)."""
    rate = 16000
    s = echo_scene(6.0, rate=rate, double_talk=(0.0, 6.0), seed=4)
    mic = (s["near"] + s["noise"]).astype(np.float32)[None]
    far = s["far"].astype(np.float32)[None]
    out, lat = run(kalman(120.0), mic, far, rate, [320])
    y = out[0, lat:]  # y[i]: microphone sample i
    for t in range(6):
        a, b = t * rate, min((t + 1) * rate, len(y))
        assert db(y[a:b], mic[0, a:b]) <= 1.0, t


def test_each_call_emits_whole_frames_and_flush_the_tail(kalman: Any) -> None:
    k = kalman(frame_ms=10.0)
    x = np.full((1, 250), 0.1, np.float32)
    sizes = []
    for _ in range(5):
        sizes += [o.shape[1] for o in k.process(x, x, 16000)]
    assert all(n % 160 == 0 for n in sizes) and k.frame_samples == 160
    tail = [o.shape[1] for o in k.flush()]
    assert sum(sizes) + sum(tail) == 5 * 250
    assert k.pending_samples == 0


def test_typed_errors_name_the_stage(kalman: Any) -> None:
    k = kalman(stage="aec")
    x = np.zeros((1, 160), np.float32)
    with pytest.raises(FormatError, match=r"aec.*8000, 16000, 32000 or 48000 Hz, got 44100"):
        k.process(x, x, 44100)
    with pytest.raises(FormatError, match=r"aec.*mono"):
        k.process(np.zeros((2, 160), np.float32), x, 16000)
    with pytest.raises(FormatError, match=r"aec.*far: 80 samples, expected 160"):
        k.process(x, x[:, :80], 16000)
    k.process(x, x, 16000)
    with pytest.raises(FormatError, match=r"aec.*sample rate changed"):
        k.process(x, x, 48000)
    with pytest.raises(ConfigError, match="filter_ms"):
        kalman(filter_ms=5.0)
    with pytest.raises(ConfigError, match="frame_ms"):
        kalman(frame_ms=0.5)
    with pytest.raises(ConfigError, match=r"aec.*filter_ms"):
        k.set_filter_ms(5000.0)
    assert k.filter_ms == 200.0
