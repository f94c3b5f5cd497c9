"""The voice front end: ``HighPass``, ``NoiseSuppress``, ``AutoGain`` (Rust on ``sonora``, the
twins on livekit's WebRTC C++) and ``VoiceProcessor`` composing them with ``EchoCancel``.

Signals are deterministic (``stream.testing.speech_like``, seeded noise), so every figure is
fixed; each assertion leaves a margin under what was measured (the figures are in the comments
and in docs/stages-audio.md). Levels are compared per 0.5 s window, as the twins are different
code of one algorithm (docs/kernels.md).
"""

from __future__ import annotations

import asyncio
import os
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from media_nodes.audio import AutoGain, HighPass, NoiseSuppress, VoiceProcessor
from media_nodes.audio.echo_scene import echo_scene
from stream import Pipeline
from stream.errors import ConfigError, FormatError, NodeError
from stream.frames import AudioFrame
from stream.testing import speech_like

from ._util import kernel_module

F64 = npt.NDArray[np.float64]
RATES = (8000, 16000, 32000, 48000)
PYTHON_ONLY = os.environ.get("REMOTEMEDIA_RUNTIME", "").strip().lower() == "python"
KERNELS = ("HighPassKernel", "NoiseSuppressKernel", "AutoGainKernel")


def kernel(backend: str, name: str) -> Any:
    if backend == "python":
        pytest.importorskip("livekit.rtc", reason="the twins need livekit (the twins extra)")
    return getattr(kernel_module(backend), name)()


def run(
    k: Any, x: F64, rate: int, sizes: tuple[int, ...] = (), keep: list[int] | None = None
) -> F64:
    """``x`` (mono or ``(C, n)``) through ``k`` in blocks of ``sizes`` (cycled; 20 ms if none),
    then flushed; ``keep`` gets the kernel's latency before the flush ends the stream."""
    x2 = np.atleast_2d(x).astype(np.float32)
    sizes = sizes or (rate // 50,)
    outs, pos, i = [], 0, 0
    while pos < x2.shape[1]:
        n = sizes[i % len(sizes)]
        outs += k.process(np.ascontiguousarray(x2[:, pos : pos + n]), rate)
        pos, i = pos + n, i + 1
    if keep is not None:
        keep.append(int(k.latency_samples))
    outs += k.flush()
    y = np.concatenate(outs, axis=1).astype(np.float64)
    return y[0] if np.ndim(x) == 1 else y


def level_db(x: F64) -> float:
    return float(10 * np.log10(np.mean(np.square(x)) + 1e-20))


def windows_db(y: F64, x: F64, w: int) -> F64:
    """Level of ``y`` over ``x`` in dB per window of ``w`` samples."""
    n = min(len(x), len(y)) // w * w
    return np.array([level_db(y[i : i + w]) - level_db(x[i : i + w]) for i in range(0, n, w)])


def talker(seconds: float, rate: int, level: float, seed: int = 11) -> tuple[F64, F64]:
    """Speech-like signal at ``level`` dBFS over its active samples; and the mask of those."""
    sp = speech_like(seconds, seed=seed, rate=rate)
    active = sp != 0
    return sp * 10 ** (level / 20) / np.sqrt(np.mean(sp[active] ** 2)), active


# ----------------------------------------------------------------------------- HighPass


@pytest.mark.parametrize("rate", RATES)
def test_high_pass_removes_hum_and_passes_the_voice_band(backend: str, rate: int) -> None:
    t = np.arange(2 * rate) / rate
    hum, tone = 0.3 * np.sin(2 * np.pi * 50 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)
    k = kernel(backend, "HighPassKernel")
    down = level_db(hum[rate:]) - level_db(run(k, hum, rate)[rate:])
    passed = level_db(run(k, tone, rate)[rate:]) - level_db(tone[rate:])
    # Measured, both twins: 68.0-68.2 dB at 8/16/32 kHz, 21.2 dB at 48 kHz (the module runs at
    # its 32 kHz processing rate there); 1 kHz -0.39 dB (48 kHz: -0.45 dB).
    assert down >= (20.0 if rate == 48000 else 60.0), down
    assert abs(passed) <= 1.0, passed


# ----------------------------------------------------------------------------- NoiseSuppress


@pytest.mark.parametrize("rate", [16000, 48000])
def test_noise_suppress_lowers_stationary_noise_under_speech(backend: str, rate: int) -> None:
    speech, active = talker(10, rate, -25.0)
    noise = 10 ** (-45 / 20) * np.random.default_rng(2).standard_normal(len(speech))
    lat: list[int] = []
    y = run(kernel(backend, "NoiseSuppressKernel"), speech + noise, rate, keep=lat)
    y = y[lat[0] :]
    n = len(y)
    settled = np.arange(n) >= 2 * rate  # the suppressor's noise estimate settles first
    # Pauses: samples at least 50 ms from any speech (the suppressor's gain follows the
    # syllables' edges with its smoothing; 0.84 s of such samples here).
    guard = rate // 20
    near = np.convolve(active.astype(np.float64), np.ones(2 * guard + 1), "same")[:n] > 0
    pauses, talk = ~near & settled, active[:n] & settled
    noise_down = level_db(noise[:n][pauses]) - level_db(y[pauses])
    speech_change = level_db(y[talk]) - level_db((speech + noise)[:n][talk])
    # Measured (docs/stages-audio.md): noise 11.7 (16 kHz) / 13.2 dB (48 kHz) down in the
    # pauses in Rust, 11.8 / 13.8 dB in the C++ twin; speech -1.5 / -0.6 dB on both.
    assert noise_down >= 10.0, noise_down
    assert abs(speech_change) <= 3.0, speech_change


# ----------------------------------------------------------------------------- AutoGain


@pytest.mark.parametrize("rate", [16000, 48000])
def test_auto_gain_lifts_a_quiet_talker_and_holds_through_a_pause(backend: str, rate: int) -> None:
    speech, _ = talker(14, rate, -40.0, seed=3)
    speech[9 * rate : 11 * rate] = 0.0  # a 2 s pause: only the room noise
    x = speech + 10 ** (-70 / 20) * np.random.default_rng(1).standard_normal(len(speech))
    y = run(kernel(backend, "AutoGainKernel"), x, rate)
    gain = windows_db(y, x, rate // 4)  # 0.25 s windows
    # Measured: the gain starts at 15 dB and settles at 20.2-21.4 dB (16 kHz) and 20.8 dB
    # (48 kHz) on both twins, where the -70 dBFS noise reaches AGC2's -50 dBFS noise ceiling.
    assert gain[-8:].min() >= 18.0, gain
    assert gain.max() <= 30.0, gain
    before = gain[35]  # 8.75-9 s, the last window of speech before the pause
    # Measured: within 0.1 dB of `before` all through the pause, both twins.
    assert gain[36:44].max() - before <= 3.0, gain[34:46]
    assert abs(level_db(y[-2 * rate :]) - level_db(x[-2 * rate :]) - gain[-8:].mean()) < 1.0


# ----------------------------------------------------------------------------- the twins agree


def _both(name: str) -> tuple[Any, Any]:
    if PYTHON_ONLY:
        pytest.skip("parity needs the engine")
    return kernel("rust", name), kernel("python", name)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_twins_agree_per_half_second(rate: int) -> None:
    """Measured (max over 0.5 s windows of |rust - python| in dB): HighPass 0.0002; NoiseSuppress
    0.18 (16 kHz) / 0.15 (48 kHz) on noisy speech; AutoGain 2.8 / 0.1 once settled (after 7 s),
    but up to 11.8 / 2.1 dB while the gain adapts: sonora's AGC2 moves its gain on other frames
    than WebRTC's C++ does (at 16 kHz it first lowers it for 1.5 s), then both settle within a
    few dB."""
    w = rate // 2
    speech, _ = talker(10, rate, -25.0)
    noisy = speech + 10 ** (-45 / 20) * np.random.default_rng(2).standard_normal(len(speech))
    rs, py = _both("HighPassKernel")
    assert np.abs(windows_db(run(rs, speech, rate), run(py, speech, rate), w)).max() <= 0.05
    rs, py = _both("NoiseSuppressKernel")
    assert np.abs(windows_db(run(rs, noisy, rate), run(py, noisy, rate), w)).max() <= 0.5
    quiet, _ = talker(14, rate, -40.0, seed=3)
    quiet += 10 ** (-70 / 20) * np.random.default_rng(1).standard_normal(len(quiet))
    rs, py = _both("AutoGainKernel")
    d = windows_db(run(rs, quiet, rate), run(py, quiet, rate), w)
    assert np.abs(d[14:]).max() <= 3.5, d
    assert np.abs(d).max() <= 15.0, d


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("name", KERNELS)
def test_split_invariant_and_the_sample_count_kept(backend: str, name: str) -> None:
    """The module takes 10 ms sub-frames: however the input is split, the same sub-frames reach
    it, so the output is the same samples (block boundaries differ: whole sub-frames per
    call), and flush's zero-padded last sub-frame keeps the count."""
    rate = 16000
    x = np.stack([talker(1.5, rate, -30.0, seed=s)[0] for s in (4, 5)])
    x = x[:, : rate + 1234]
    whole = run(kernel(backend, name), x, rate, (x.shape[1],))
    assert whole.shape == x.shape
    sizes = tuple(int(v) for v in np.random.default_rng(9).integers(1, 700, 40))
    for split in ((1, 159, 161), (7, 480, 13), sizes):
        np.testing.assert_array_equal(run(kernel(backend, name), x, rate, split), whole)
    k = kernel(backend, name)
    blocks = k.process(x[:, :250].astype(np.float32), rate)
    assert [b.shape for b in blocks] == [(2, 160)] and k.pending_samples == 90
    assert k.frame_samples == 160


@pytest.mark.parametrize("name", KERNELS)
def test_channels_are_independent(backend: str, name: str) -> None:
    rate = 48000
    a, _ = talker(1.0, rate, -30.0, seed=6)
    b, _ = talker(1.0, rate, -40.0, seed=7)
    two = run(kernel(backend, name), np.stack([a, b]), rate)
    np.testing.assert_array_equal(two[1], run(kernel(backend, name), b, rate))


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("rate", RATES)
def test_latency_is_what_is_declared(backend: str, name: str, rate: int) -> None:
    """Chirp bursts (300 Hz up): the output's best lag against the input is the kernel's
    ``latency_samples`` (measured the same on both twins)."""
    t = np.arange(int(0.2 * rate)) / rate
    f1 = min(3500.0, 0.4 * rate)
    chirp = 0.2 * np.sin(2 * np.pi * (300 * t + (f1 - 300) * t**2 / 0.4)) * np.hanning(len(t))
    gap = np.zeros(int(0.3 * rate))
    x = np.concatenate([np.concatenate([gap, chirp * (0.5 + 0.5 * (k % 2))]) for k in range(8)])
    lat: list[int] = []
    y = run(kernel(backend, name), x, rate, keep=lat)
    n = len(y)
    lags = [float(np.dot(y[lag:n], x[: n - lag])) for lag in range(400)]
    assert abs(int(np.argmax(lags)) - lat[0]) <= 2, (int(np.argmax(lags)), lat[0])


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", KERNELS)
def test_bad_input_is_a_format_error_naming_the_stage(backend: str, name: str) -> None:
    mod = kernel_module(backend)
    if backend == "python":
        pytest.importorskip("livekit.rtc")
    k = getattr(mod, name)(stage="vp")
    ok = np.zeros((1, 160), np.float32)
    cases: list[tuple[Any, Any, str]] = [
        (
            ok,
            44100,
            "vp: the WebRTC audio processing module runs at 8000, 16000, 32000 or "
            "48000 Hz, got 44100 Hz; put Resample before it",
        ),
        (
            ok.astype(np.float64),
            16000,
            "vp: expected a float32 array of shape (channels, "
            "samples), got float64 with 2 dimension(s)",
        ),
        (
            np.full((1, 160), np.nan, np.float32),
            16000,
            "vp: non-finite sample at channel 0, index 0",
        ),
        (ok, 16000.0, "vp: invalid sample rate 16000.0"),
    ]
    for samples, rate, message in cases:
        with pytest.raises(FormatError) as info:
            k.process(samples, rate)
        assert str(info.value) == message and info.value.stage == "vp"
    k.process(ok, 16000)
    with pytest.raises(
        FormatError, match=r"^vp: sample rate changed mid-stream from 16000 to 8000"
    ):
        k.process(ok, 8000)
    with pytest.raises(FormatError, match=r"^vp: channel count changed mid-stream from 1 to 2"):
        k.process(np.zeros((2, 160), np.float32), 16000)


def test_rust_kernels_are_guarded_fusable_kernels() -> None:
    """A panic inside a fusable kernel's call is caught by its stage's guard (``NamedStage``,
    the same for every ``Kernel``) and raised as EngineError naming the stage: these kernels
    are ``Kernel``s, and fuse into a ``Chain`` like any other."""
    if PYTHON_ONLY:
        pytest.skip("needs the engine")
    from stream import _engine

    ks = [getattr(_engine, n)(stage=n) for n in KERNELS]
    assert all(isinstance(k, _engine.Kernel) for k in ks)
    chain = _engine.Chain(ks)
    x = talker(0.5, 16000, -30.0)[0].astype(np.float32)[None, :]
    fused = np.concatenate(chain.process(x, 16000) + chain.flush(), axis=1)
    alone = x.astype(np.float64)[0]
    for n in KERNELS:
        alone = run(getattr(_engine, n)(), alone, 16000, (alone.size,))
    np.testing.assert_array_equal(fused[0], alone.astype(np.float32))


# ----------------------------------------------------------------------------- VoiceProcessor


def _frames(x: F64, rate: int, ms: int = 20) -> list[AudioFrame]:
    n = rate * ms // 1000
    return [
        AudioFrame(np.ascontiguousarray(x[None, i : i + n], np.float32), rate, i, Fraction(1, rate))
        for i in range(0, len(x) - n + 1, n)
    ]


def _joined(items: list[Any]) -> F64:
    return np.concatenate([f.samples[0] for f in items if isinstance(f, AudioFrame)]).astype(
        np.float64
    )


def test_voice_processor_is_its_stages_in_order(backend: str) -> None:
    rate = 16000
    speech, _ = talker(4, rate, -30.0)
    x = speech + 0.2 * np.sin(2 * np.pi * 50 * np.arange(len(speech)) / rate)
    node = VoiceProcessor(name="vp")
    out = asyncio.run(Pipeline([node]).run(_frames(x, rate)))
    rows = node.stages()
    assert [r["name"] for r in rows] == ["vp.high_pass", "vp.noise", "vp.gain"]
    assert [r["type"] for r in rows] == ["HighPass", "NoiseSuppress", "AutoGain"]
    assert {r["backend"] for r in rows} == {backend} and node.backend == backend
    assert all(r["fused"] == (backend == "rust") for r in rows)
    assert node.backend_reason.startswith(f"vp.high_pass: {backend}")
    # The same as the three stages one after another (same backend, same blocks).
    alone = x
    for name in KERNELS:
        alone = run(kernel(backend, name), alone, rate)
    got = _joined(out)
    assert len(got) == len(_frames(x, rate)) * rate // 50
    np.testing.assert_array_equal(got, alone[: len(got)].astype(np.float32))


def test_voice_processor_with_an_echo_reference_and_rnnoise(backend: str) -> None:
    pytest.importorskip("pyrnnoise") if backend == "python" else None
    rate = 48000
    scene = echo_scene(6.0, rate, double_talk=None, seed=2)
    node = VoiceProcessor(echo=_frames(scene["far"], rate), noise="rnnoise", name="vp")
    out = asyncio.run(Pipeline([node]).run(_frames(scene["mic"], rate)))
    assert [r["type"] for r in node.stages()] == ["HighPass", "EchoCancel", "Denoise", "AutoGain"]
    y = _joined(out)
    assert len(y) > 4 * rate
    # Echo cancelled, then the gain (AGC2 starts at 15 dB and lifts what sounds like speech):
    # the last 2 s well under the same chain's output without the canceller (measured 25.4 dB
    # under; 14.6-37.0 dB over seeds 0-3) and under the echo's own level (measured 9.4 dB).
    bare = VoiceProcessor(noise="rnnoise", name="vp")
    z = _joined(asyncio.run(Pipeline([bare]).run(_frames(scene["mic"], rate))))
    assert level_db(y[-2 * rate :]) < level_db(z[-2 * rate :]) - 12.0
    assert level_db(y[-2 * rate :]) < level_db(scene["echo"][-2 * rate :]) - 3.0


def test_voice_processor_settings_manifest_and_peer_reference() -> None:
    with pytest.raises(ConfigError, match=r"^vp: noise must be None, 'webrtc' or 'rnnoise'"):
        VoiceProcessor(noise="speex", name="vp")
    with pytest.raises(ConfigError, match=r"^vp: gain must be True or False"):
        VoiceProcessor(gain=1, name="vp")  # type: ignore[arg-type]
    node = VoiceProcessor(echo="peer", gain=False, name="vp")
    assert node.reference == "peer" and node.params() == {
        "echo": "peer",
        "noise": "webrtc",
        "gain": False,
        "high_pass": True,
    }
    with pytest.raises(ConfigError, match="fixed at construction"):
        node.gain = True
    node.use_reference([])  # what a WebRTC session does for echo="peer"
    with pytest.raises(ConfigError, match=r"^vp: VoiceProcessor has a manifest form only"):
        VoiceProcessor(echo=[], name="vp").params()
    with pytest.raises(ConfigError, match=r"^vp: use_reference\(\) is for echo='peer' only"):
        VoiceProcessor(name="vp").use_reference([])


def test_voice_processor_errors_name_it_and_the_inner_stage(backend: str) -> None:
    node = VoiceProcessor(name="vp")
    frame = AudioFrame(np.zeros((1, 441), np.float32), 44100, 0, Fraction(1, 44100))
    with pytest.raises(NodeError) as info:
        asyncio.run(Pipeline([node]).run([frame]))
    err = info.value.__cause__
    assert isinstance(err, FormatError) and err.stage == "vp", repr(err)
    assert str(err).startswith("vp: the WebRTC audio processing module runs at 8000, 16000")
    assert str(err).endswith("(in vp.high_pass)")
    nan = AudioFrame(np.full((1, 320), np.nan, np.float32), 16000, 0, Fraction(1, 16000))
    with pytest.raises(NodeError) as info:
        asyncio.run(Pipeline([VoiceProcessor(name="vp")]).run([nan]))
    assert str(info.value.__cause__) == (
        "vp: non-finite sample at channel 0, index 0 (in vp.high_pass)"
    )


def test_nodes_build_with_no_settings(backend: str) -> None:
    for cls in (HighPass, NoiseSuppress, AutoGain):
        node = cls(name="n")
        node.initialize()
        assert node.backend == backend
        out = node.process(AudioFrame(np.zeros((1, 320), np.float32), 16000, 0, Fraction(1, 16000)))
        assert [f.samples.shape for f in out] == [(1, 320)] and out[0].pts == 0
        assert node.latency_samples == (96 if cls is NoiseSuppress else 0)  # at 16 kHz
