"""The AEC3 kernel pair (``Aec3Kernel``: Rust on ``sonora``, the twin on livekit's WebRTC C++)
on the deterministic scenes of media_nodes.audio.echo_scene: echo reduction over time and once
converged, double talk, parity between the twins, split invariance, whole frames, typed errors.

Echo reduction (ERLE) is the echo's energy over the residual's, the residual being the output
minus the near-end and noise as the kernel passes them alone (no far end), both aligned by the
kernel's ``latency_samples`` (the benchmark's definition, benchmarks/echo_quality.py). AEC3's
suppressor and comfort noise reshape the noise, so on the repo scene's -60 dBFS noise every AEC3
(the C++ one too) reads 25-30 dB converged; the converged figure is measured with the noise at
-90 dBFS (``quiet``), where the echo reduction itself is what is measured.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from media_nodes.audio.echo_scene import echo_scene
from stream.errors import ConfigError, FormatError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
WINDOW_S = 0.5


def python_kernel() -> Any:
    pytest.importorskip("livekit.rtc", reason="the AEC3 twin needs livekit (the twins extra)")
    from media_nodes.audio.aec3_kernel import Aec3Kernel

    return Aec3Kernel


def rust_kernel() -> Any:
    from stream import _engine

    if not hasattr(_engine, "Aec3Kernel"):
        pytest.skip("the installed engine predates Aec3Kernel")
    return _engine.Aec3Kernel


def kernel_class(backend: str) -> Any:
    return rust_kernel() if backend == "rust" else python_kernel()


@pytest.fixture
def aec3(backend: str) -> Any:
    """The ``Aec3Kernel`` class of the backend under test."""
    return kernel_class(backend)


def run(kernel: Any, near: F32, far: F32, rate: int, sizes: list[int]) -> F32:
    outs: list[F32] = []
    pos, k = 0, 0
    while pos < near.shape[1]:
        n = sizes[k % len(sizes)]
        k += 1
        outs += kernel.process(near[:, pos : pos + n].copy(), far[:, pos : pos + n].copy(), rate)
        pos += n
    outs += kernel.flush()
    return np.concatenate(outs, axis=1)


def cancel(cls: Any, mic: F64, far: F64, rate: int) -> F64:
    """``mic`` through a new kernel in 20 ms frames (as a live stream sends them), the kernel's
    latency removed: output sample ``i`` is input sample ``i``'s."""
    k = cls()
    y = run(k, mic.astype(np.float32)[None], far.astype(np.float32)[None], rate, [rate // 50])[0]
    lat = _latency(cls, rate)
    return np.concatenate([y[lat:], np.zeros(lat)]).astype(np.float64)


def _latency(cls: Any, rate: int) -> int:
    k = cls()
    k.process(np.zeros((1, rate // 100), np.float32), np.zeros((1, rate // 100), np.float32), rate)
    lat: int = k.latency_samples
    return lat


def db(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    return float(10 * np.log10(np.sum(np.square(a)) / max(float(np.sum(np.square(b))), 1e-30)))


def scene(rate: int, quiet: bool, seconds: float = 20.0, **kw: Any) -> dict[str, Any]:
    """``echo_scene``; ``quiet``: its noise 30 dB lower (-90 dBFS)."""
    s = echo_scene(seconds, rate=rate, **kw)
    if quiet:
        s["noise"] = s["noise"] * 10 ** (-30 / 20)
        s["mic"] = s["echo"] + s["near"] + s["noise"]
    return s


@cache
def _outputs(backend: str, rate: int, quiet: bool, dt: bool) -> tuple[F64, F64, F64]:
    """(output, near+noise as passed alone, output of the inverted near-end) of one scene."""
    cls = kernel_class(backend)
    s = scene(rate, quiet, double_talk=(12.0, 15.0) if dt else None)
    y = cancel(cls, s["mic"], s["far"], rate)
    passed = cancel(cls, s["near"] + s["noise"], np.zeros_like(s["far"]), rate)
    inverted = cancel(cls, s["echo"] - s["near"] + s["noise"], s["far"], rate) if dt else y
    return y, passed, inverted


def windows(s: dict[str, Any], y: F64, passed: F64) -> tuple[F64, F64]:
    """Per 0.5 s window: ERLE (dB) and output level (dBFS)."""
    r = s["rate"]
    w = int(WINDOW_S * r)
    res = y - passed
    n = len(y) // w
    erle = np.array(
        [db(s["echo"][i * w : (i + 1) * w], res[i * w : (i + 1) * w]) for i in range(n)]
    )
    level = np.array(
        [10 * np.log10(np.mean(np.square(y[i * w : (i + 1) * w])) + 1e-20) for i in range(n)]
    )
    return erle, level


def speech_start_s(s: dict[str, Any]) -> float:
    """When the far end first speaks (its envelope above -40 dBFS)."""
    loud = np.flatnonzero(np.abs(s["far"]) > 0.01)
    return float(loud[0] / s["rate"])


@pytest.mark.parametrize("rate", [16000, 48000])
def test_echo_reduction_over_time_and_converged(backend: str, rate: int) -> None:
    aec3 = kernel_class(backend)
    del aec3  # skips early when the backend's kernel is missing
    s = scene(rate, quiet=True, double_talk=None)
    y, passed, _ = _outputs(backend, rate, True, False)
    erle, _ = windows(s, y, passed)
    start = speech_start_s(s)
    # Within 2 s of far-end speech (from 0.2 s): a 0.5 s window at >= 20 dB (measured: the very
    # first window, on both backends at 16 and 48 kHz).
    first = (np.flatnonzero(erle >= 20.0)[0] + 1) * WINDOW_S
    assert first - start <= 2.0, (first, start, erle[:8])
    # From 2.5 s on every window stays at >= 20 dB (measured minimum 24.3-26.3 dB).
    assert erle[5:].min() >= 20.0, erle
    # Converged (10-20 s, energy over the span): >= 35 dB (measured 46.6-49.4 dB; 28 dB with the
    # repo scene's -60 dBFS noise).
    r = s["rate"]
    tail = slice(10 * r, 20 * r)
    converged = db(s["echo"][tail], (y - passed)[tail])
    assert converged >= 35.0, converged


@pytest.mark.parametrize("rate", [16000, 48000])
def test_converged_with_the_noise_of_the_repo_scene(backend: str, rate: int) -> None:
    """With -60 dBFS noise, by far-end inversion: run A has far and echo, run B both negated and
    the same noise. The linear filter sees the same problem, the suppressor and comfort noise the
    same powers, so (A - B) / 2 is the echo as the kernel leaves it and (A + B) / 2 the noise as it
    passes it: echo reduction without the noise floor that caps the residual-based figure."""
    cls = kernel_class(backend)
    s = scene(rate, quiet=False, double_talk=None)
    a = cancel(cls, s["mic"], s["far"], rate)
    b = cancel(cls, -s["echo"] + s["noise"], -s["far"], rate)
    r = s["rate"]
    tail = slice(10 * r, 20 * r)
    echo_left = (a - b)[tail] / 2
    # Measured (seed 0, 10-20 s): 41.1 dB on both backends at 16 kHz, 40.8 (Rust) / 45.7 dB
    # (Python) at 48 kHz.
    assert db(s["echo"][tail], echo_left) >= 35.0
    # Before the far end speaks the runs are the same samples: the inversion is exact there.
    start = int(0.9 * speech_start_s(s) * r)
    assert np.array_equal(a[:start], b[:start])


@pytest.mark.parametrize("rate", [16000, 48000])
def test_double_talk_keeps_the_near_end(backend: str, rate: int) -> None:
    kernel_class(backend)
    s = scene(rate, quiet=False, double_talk=(12.0, 15.0))
    a, passed, b = _outputs(backend, rate, False, True)
    r = s["rate"]
    dt = slice(12 * r, 15 * r)
    # By inversion: run A has echo + near, run B echo - near; they are identical before the
    # double talk, so (A - B) / 2 is the near-end as output, (A + B) / 2 what is left of the echo
    # (and noise).
    near_out = (a - b)[dt] / 2
    echo_left = (a + b)[dt] / 2
    near_in = passed[dt]
    gain_db = 20 * np.log10(abs(float(np.dot(near_out, near_in) / np.dot(near_in, near_in))))
    # Measured: -1.28 to -1.35 dB on both backends, 16 and 48 kHz.
    assert abs(gain_db) <= 2.0, gain_db
    # The echo left under the near-end (noise included), near/echo about -3 dB: measured 20.9-24.0
    # dB; at near/echo -9 dB it is 17 dB, so the 20 dB holds here only with no margin and
    # is asserted at 18 (the suppressor is not tuned yet).
    assert db(near_in, echo_left) >= 18.0


@pytest.mark.parametrize("rate", [16000, 48000])
def test_twins_agree_in_echo_reduction_and_level(rate: int) -> None:
    py, rs = python_kernel(), rust_kernel()
    del py, rs
    s = scene(rate, quiet=False, double_talk=(12.0, 15.0))
    e_py, l_py = windows(s, *_outputs("python", rate, False, True)[:2])
    e_rs, l_rs = windows(s, *_outputs("rust", rate, False, True)[:2])
    # Windows with far-end speech (the ERLE of a silent window is noise over noise).
    w = int(WINDOW_S * s["rate"])
    active = np.array(
        [
            db(s["echo"][i * w : (i + 1) * w], s["noise"][i * w : (i + 1) * w]) > 10
            for i in range(len(e_py))
        ]
    )
    erle_diff = np.abs(e_py - e_rs)[active]
    level_diff = np.abs(l_py - l_rs)
    # Measured (seed 0): ERLE diff mean 0.24 / 0.66 dB, max 1.2 / 3.1 dB; level diff mean 0.17 /
    # 0.39 dB, 95th percentile 0.45 / 1.23 dB, at 16 / 48 kHz (at 48 kHz the port drifts further
    # from C++, as docs/aec3-evaluation.md found).
    assert erle_diff.mean() <= 3.0 and np.percentile(erle_diff, 90) <= 3.0, erle_diff
    assert level_diff.mean() <= 1.0 and np.percentile(level_diff, 90) <= 1.5, level_diff


def test_output_does_not_depend_on_the_split(aec3: Any) -> None:
    s = scene(16000, quiet=False, seconds=3.0, double_talk=(2.0, 2.5))
    mic = s["mic"].astype(np.float32)[None]
    far = np.stack([s["far"], 0.5 * s["far"]]).astype(np.float32)
    ref = run(aec3(), mic, far, 16000, [320])
    assert ref.shape == mic.shape
    assert np.array_equal(run(aec3(), mic, far, 16000, [1, 999, 77, 4000]), ref)


def test_each_call_emits_whole_frames_and_flush_the_tail(aec3: Any) -> None:
    k = aec3()
    x = np.zeros((1, 500), np.float32)
    out = k.process(x, x, 16000)
    assert [b.shape for b in out] == [(1, 320)] and k.pending_samples == 180
    assert k.frame_samples == 320 and k.latency_samples == 128 and k.frame_ms == 20.0
    assert [b.shape for b in k.flush()] == [(1, 180)]
    assert k.frame_samples is None and k.process(x[:, :10], x[:, :10], 16000) == []
    k.reset()
    assert k.pending_samples == 0 and aec3(frame_ms=30).frame_ms == 30.0


def test_typed_errors_name_the_stage(aec3: Any) -> None:
    for frame_ms in (5, 15.0, 110, float("nan")):
        with pytest.raises(ConfigError, match=r"^aec: frame_ms must be a multiple of 10.0 in") as e:
            aec3(frame_ms=frame_ms, stage="aec")
        assert e.value.stage == "aec"
    k = aec3(stage="aec")
    x = np.zeros((1, 320), np.float32)
    bad = x.copy()
    bad[0, 7] = np.nan
    cases: list[tuple[Any, Any, Any, str]] = [
        (x.astype(np.float64), x, 16000, "aec: near: expected a float32 array"),
        (x, [1.0], 16000, "aec: far: expected a float32 array"),
        (x, x, 0, "aec: near: invalid sample rate 0"),
        (x, x, 16000.0, "aec: near: invalid sample rate 16000.0"),
        (
            np.zeros((2, 320), np.float32),
            x,
            16000,
            "aec: near: echo cancellation takes mono near-end audio, got 2 channels",
        ),
        (x, x[:, :100], 16000, "aec: far: 100 samples, expected 320"),
        (x, x, 44100, "aec: AEC3 runs at 8000, 16000, 32000 or 48000 Hz, got 44100 Hz"),
        (x, bad, 16000, "aec: far: non-finite sample at channel 0, index 7"),
    ]
    for near, far, rate, msg in cases:
        with pytest.raises(FormatError) as info:
            k.process(near, far, rate)
        assert str(info.value).startswith(msg) and info.value.stage == "aec"
    k.process(x, x, 16000)
    with pytest.raises(FormatError, match="sample rate changed mid-stream from 16000 to 8000"):
        k.process(x, x, 8000)
    with pytest.raises(FormatError, match="far: channel count changed mid-stream from 1 to 2"):
        k.process(x, np.zeros((2, 320), np.float32), 16000)
