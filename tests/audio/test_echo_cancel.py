"""EchoCancel on both backends: ERLE on a synthetic echo path after convergence, the near-end
kept in double talk, bit-identical backends, split invariance (kernel, and node with either
stream split any way), typed errors, the node's alignment of the reference by timestamps, a
reference at another rate, the bulk delay found by "auto", and reference="peer"
(docs/stages-audio.md, EchoCancel)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media_nodes.audio import EchoCancel
from media_nodes.audio import echo_cancel as echo_cancel_module
from media_nodes.audio.echo_scene import echo_scene
from stream import Event
from stream.errors import BackendUnavailable, ConfigError, FormatError, NodeError
from stream.events import PLAYOUT_SHIFT
from stream.frames import AudioFrame
from stream.manifest import from_manifest, to_manifest
from stream.testing import join_frames, run_node, split_frames

from ._util import kernel_module

F32 = npt.NDArray[np.float32]


def resample(x: np.ndarray, to_rate: int, from_rate: int) -> np.ndarray:
    """``x`` (1-D) at ``to_rate``, time-aligned (the resampler's delay removed): the engine's
    Python twin, run whole."""
    from media_nodes.audio.resample import ResampleKernel

    k = ResampleKernel(to_rate)
    y = np.concatenate(
        [*k.process(np.asarray(x, np.float32)[None, :], from_rate), *k.flush()], axis=1
    )[0]
    n = round(x.shape[0] * to_rate / from_rate)
    return y[k.latency_samples : k.latency_samples + n].astype(np.float64)


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


@pytest.fixture(scope="module")
def scene() -> dict[str, Any]:
    return echo_scene(30.0, double_talk=(15.0, 18.0))


def db(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    return float(10 * np.log10(np.sum(np.square(a)) / np.sum(np.square(b))))


def test_erle_after_convergence_and_near_end_kept(
    kernels: ModuleType, scene: dict[str, Any]
) -> None:
    r = scene["rate"]
    mic = scene["mic"].astype(np.float32)[None]
    far = scene["far"].astype(np.float32)[None]
    y = run(kernels.EchoCancelKernel(), mic, far, r, [320])[0].astype(np.float64)
    assert y.size == mic.shape[1]
    # The near-end and noise as the canceller passes them with no echo: Speex notches DC, which
    # shifts the phase of low voices, so the raw near-end is not what a perfect canceller emits.
    alone = (scene["near"] + scene["noise"]).astype(np.float32)[None]
    passed = run(kernels.EchoCancelKernel(), alone, np.zeros_like(alone), r, [320])[0]
    residual = y - passed
    # Far-end only, after the filter converged (about 15 s of speech-like far-end): >= 20 dB.
    tail = slice(20 * r, 30 * r)
    assert db(scene["echo"][tail], residual[tail]) >= 20.0
    # Double talk (15-18 s): the near-end passes at its level, and what is left of the echo is
    # far below it (measured over seeds 0-2: level within 0.02 dB, SNR +20.5 to +29.8 dB).
    dt = slice(15 * r, 18 * r)
    near = passed[dt]
    gain_db = 20 * np.log10(abs(float(np.dot(y[dt], near) / np.dot(near, near))))
    assert abs(gain_db) <= 0.5
    assert db(near, residual[dt]) >= 15.0


def test_backends_are_identical_and_split_invariant(scene: dict[str, Any]) -> None:
    from media_nodes.audio.echo_cancel_kernel import EchoCancelKernel as Py

    r = scene["rate"]
    n = 4 * r
    mic = scene["mic"][:n].astype(np.float32)[None]
    far = np.stack([scene["far"][:n], 0.5 * scene["far"][:n]]).astype(np.float32)
    ref = run(Py(filter_ms=100.0), mic, far, r, [320])
    assert np.array_equal(run(Py(filter_ms=100.0), mic, far, r, [1, 999, 77, 4000]), ref)
    pytest.importorskip("stream._engine")
    from stream import _engine

    assert np.array_equal(run(_engine.EchoCancelKernel(filter_ms=100.0), mic, far, r, [333]), ref)


def test_each_call_emits_whole_frames_and_flush_the_tail(kernels: ModuleType) -> None:
    k = kernels.EchoCancelKernel()
    x = np.zeros((1, 500), np.float32)
    out = k.process(x, x, 16000)
    assert [b.shape for b in out] == [(1, 320)] and k.pending_samples == 180
    assert k.frame_samples == 320 and k.filter_samples == 3200 and k.latency_samples == 0
    assert [b.shape for b in k.flush()] == [(1, 180)]
    assert k.frame_samples is None and k.process(x[:, :10], x[:, :10], 16000) == []


def test_typed_errors_name_the_stage(kernels: ModuleType) -> None:
    with pytest.raises(ConfigError, match=r"^aec: filter_ms must be a number in \[10.0, 2000.0\]"):
        kernels.EchoCancelKernel(filter_ms=5, stage="aec")
    k = kernels.EchoCancelKernel(stage="aec")
    x = np.zeros((1, 320), np.float32)
    cases: list[tuple[Any, Any, int, str]] = [
        (x.astype(np.float64), x, 16000, "aec: near: expected a float32 array"),
        (x, [1.0], 16000, "aec: far: expected a float32 array"),
        (x, x, 0, "aec: near: invalid sample rate 0"),
        (
            np.zeros((2, 320), np.float32),
            np.zeros((1, 320), np.float32),
            16000,
            "aec: near: echo cancellation takes mono near-end audio, got 2 channels",
        ),
        (x, x[:, :100], 16000, "aec: far: 100 samples, expected 320"),
        (x, x, 4000, "aec: echo cancellation runs at 8000 to 96000 Hz, got 4000 Hz"),
    ]
    bad = x.copy()
    bad[0, 7] = np.nan
    cases.append((x, bad, 16000, "aec: far: non-finite sample at channel 0, index 7"))
    for near, far, rate, msg in cases:
        with pytest.raises(FormatError) as info:
            k.process(near, far, rate)
        assert str(info.value).startswith(msg) and info.value.stage == "aec"
    k.process(x, x, 16000)
    with pytest.raises(FormatError, match="sample rate changed mid-stream from 16000 to 8000"):
        k.process(x, x, 8000)


async def _frames(frames: list[Any]) -> AsyncIterator[Any]:
    for f in frames:
        yield f


async def test_node_aligns_the_reference_by_timestamps(backend: str, scene: dict[str, Any]) -> None:
    r = scene["rate"]
    n = 6 * r
    mic = scene["mic"][:n].astype(np.float32)[None]
    far = scene["far"][:n].astype(np.float32)[None]
    expected = run(kernel_module(backend).EchoCancelKernel(), mic, far, r, [320])
    # The reference comes in other frame sizes, starting 1 s before the microphone's first frame
    # (pts in samples), and the microphone starts at pts = 1 s too: only timestamps align them.
    pre = np.zeros((1, r), np.float32)
    ref = split_frames(np.concatenate([pre, far], axis=1), r, 480)
    near = split_frames(mic, r, 160)
    for f in near:
        f.pts = (f.pts or 0) + r
    node = EchoCancel(_frames(ref), algorithm="speex")
    out = await run_node(node, near)
    assert node.backend == backend and node.unreferenced_frames == 0
    assert np.array_equal(join_frames(out), expected)
    assert out[0].pts == r and out[1].pts == r + 320


async def test_node_without_reference_passes_the_near_end_through(backend: str) -> None:
    r = 16000
    mic = (0.1 * np.sin(np.arange(r) / 7.0)).astype(np.float32)[None]
    node = EchoCancel(_frames([]), stall_ms=0, algorithm="speex")
    out = join_frames(await run_node(node, split_frames(mic, r, 320)))
    assert node.unreferenced_frames == 50
    # Only Speex's DC-removal notch (a small phase shift at low frequencies) and 16-bit
    # quantization touch it: the level is kept (measured -0.04 dB), the waveform within 12 dB.
    assert abs(db(out[:, r // 10 :], mic[:, r // 10 :])) < 0.5
    assert db(mic, out - mic) > 10.0


def delayed_scene(
    scene: dict[str, Any], delay_s: float, seconds: float, rate: int | None = None
) -> tuple[F32, F32, int]:
    """``scene``'s microphone with the echo ``delay_s`` later (a far peer's round trip), and its
    far-end, both cut to ``seconds`` and resampled to ``rate``: ``(mic, far, rate)``."""
    r = scene["rate"]
    n = int(seconds * r)
    d = int(delay_s * r)
    echo = np.concatenate([np.zeros(d), scene["echo"]])[:n]
    mic, far = echo + scene["near"][:n] + scene["noise"][:n], scene["far"][:n]
    rate = rate or r
    if rate != r:
        mic, far = resample(mic, rate, r), resample(far, rate, r)
    return mic.astype(np.float32)[None], far.astype(np.float32)[None], rate


def _media(out: list[Any]) -> tuple[F32, list[tuple[str, float | None, dict[str, Any]]]]:
    frames = [o for o in out if isinstance(o, AudioFrame)]
    events = [(e.kind, e.time, e.payload) for e in out if isinstance(e, Event)]
    return join_frames(frames), events


# Frame sizes, cycled: any from 1 sample up, a few hundred on average (3 s in 8 to 200 frames).
SIZES = st.lists(st.integers(1, 3000), min_size=1, max_size=6).filter(
    lambda sizes: sum(sizes) >= 120 * len(sizes)
)


@pytest.fixture(scope="module")
def scene8k() -> dict[str, Any]:
    return echo_scene(3.0, rate=8000, double_talk=(2.0, 2.5), seed=4)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    near_sizes=SIZES,
    ref_sizes=SIZES,
    delay=st.sampled_from([0.0, 35.0, "auto"]),
    algorithm=st.sampled_from(["kalman", "aec3", "speex"]),
    late=st.sampled_from([0.25, 0.09]),
)
async def test_node_output_does_not_depend_on_the_split(
    backend: str,
    scene8k: dict[str, Any],
    near_sizes: list[int],
    ref_sizes: list[int],
    delay: float | str,
    algorithm: str,
    late: float,
) -> None:
    # 8 kHz, the echo 250 or 90 ms late: with "auto" the delay is found and moved mid-stream
    # at a position that must not depend on the frames either (the kernel flushed; for Kalman
    # and the 90 ms echo, its filters shifted instead).
    mic, far, r = delayed_scene(scene8k, late, 3.0)

    async def run(near_split: int | list[int], ref_split: int | list[int]) -> Any:
        node = EchoCancel(
            split_frames(far, r, ref_split), filter_ms=100.0, delay_ms=delay, algorithm=algorithm
        )
        out = _media(await run_node(node, split_frames(mic, r, near_split)))
        assert node.backend == backend
        # (with a bulk delay the frames before the reference's start lack it: they count)
        assert node.unreferenced_frames == 0 or delay != 0.0
        return out

    whole_audio, whole_events = await run(mic.shape[1], far.shape[1])
    audio, events = await run(near_sizes, ref_sizes)
    assert np.array_equal(audio, whole_audio)
    assert audio.shape == mic.shape
    assert events == whole_events
    if delay == "auto":
        assert [e[0] for e in events] == ["echo_delay"]


async def test_auto_finds_the_bulk_delay_and_cancels_beyond_the_filter(
    backend: str, scene: dict[str, Any]
) -> None:
    # The echo 300 ms late: beyond a 200 ms filter at delay 0. "auto" finds the room's strongest
    # path (its response starts 10 ms after the direct-path delay) and starts the filter 20 ms
    # before it, so the window covers the whole response.
    mic, far, r = delayed_scene(scene, 0.3, 15.0, 16000)
    results = {}
    for delay in (0.0, "auto"):
        node = EchoCancel(split_frames(far, r, 320), delay_ms=delay, algorithm="speex")
        audio, events = _media(await run_node(node, split_frames(mic, r, 320)))
        tail = slice(11 * r, 15 * r)
        results[delay] = db(mic[0, tail], audio[0, tail])
        if delay == "auto":
            assert [e[0] for e in events] == ["echo_delay"]
            _, at, payload = events[0]
            assert 310.0 <= payload["estimate_ms"] <= 330.0  # measured 312.9
            assert payload["delay_ms"] == pytest.approx(payload["estimate_ms"] - 20.0)
            assert payload["ratio"] > 10.0 and at is not None and at <= 4.0
            assert node.bulk_delay_ms == payload["delay_ms"] <= 310.0
            assert node.delay_changes == 1
    # far-end only, 11-15 s (measured: 0.9 dB at delay 0, 17.0 dB with "auto")
    assert results[0.0] < 2.0
    assert results["auto"] >= 14.0


async def test_kalman_keeps_its_filters_when_auto_moves_the_bulk_delay(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 48 kHz, the echo 150 ms late: the search filter (KALMAN_SEARCH_MS from delay 0) holds the
    # room; "auto" moves the bulk delay to it and the filters move along (whole 4 ms blocks) and
    # are cut to 200 ms instead of starting over. Measured over the half second after the move
    # (at 1.0 s; the noise counted as left): 20.1 dB, 8.5 dB when the kernel is flushed instead.
    scene = echo_scene(4.0, rate=48000, double_talk=None, seed=0)
    mic, far, r = delayed_scene(scene, 0.15, 4.0)
    results = {}
    for carry in (True, False):
        if not carry:
            monkeypatch.setattr(EchoCancel, "_carry_over", lambda self, delta: 0)
        node = EchoCancel(split_frames(far, r, 960))
        audio, events = _media(await run_node(node, split_frames(mic, r, 960)))
        [(kind, at, payload)] = events
        assert kind == "echo_delay" and at is not None and node.delay_changes == 1
        if carry:
            assert payload["delay_ms"] % 4.0 == 0.0  # whole blocks from 0
            assert 135.0 <= payload["delay_ms"] <= 145.0  # measured 140
        a, b = int(at * r), int((at + 0.5) * r)
        left = audio[0, a:b] - scene["near"][a:b] - scene["noise"][a:b]
        echo = mic[0, a:b] - scene["near"][a:b] - scene["noise"][a:b]
        results[carry] = db(echo, left)
    assert results[True] >= 17.0, results
    assert results[True] >= results[False] + 6.0, results


async def test_kalman_cancels_a_late_echo_while_auto_searches(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16 kHz, the echo 450 ms late: past the 200 ms filter at delay 0, inside the search filter
    # (KALMAN_SEARCH_MS) Kalman runs from the start until "auto" finds the delay; then it is cut
    # to 200 ms at the echo, keeping what it learnt. Measured over 1-2 s (the echo starts at
    # 0.45 s, the delay is found at 1.5 s; the noise counted as left): 19.9 dB, 7.1 dB without
    # the search filter.
    scene = echo_scene(4.0, rate=16000, double_talk=None, seed=0)
    mic, far, r = delayed_scene(scene, 0.45, 4.0)
    results = {}
    for search in (True, False):
        if not search:
            monkeypatch.setattr(echo_cancel_module, "KALMAN_SEARCH_MS", 0.0)
        node = EchoCancel(split_frames(far, r, 320))
        audio, events = _media(await run_node(node, split_frames(mic, r, 320)))
        [(kind, _, payload)] = events
        assert kind == "echo_delay" and 440.0 <= payload["delay_ms"] <= 445.0  # measured 444
        assert node._kernel.filter_ms == 200.0  # cut back once the delay was found
        a, b = r, 2 * r
        left = audio[0, a:b] - scene["near"][a:b] - scene["noise"][a:b]
        results[search] = db(mic[0, a:b] - scene["noise"][a:b], left)
        if search:
            # Issue 11's goal on the echo alone (the noise apart, by far-end inversion: far end
            # and echo negated, half the difference of the outputs is the echo left): 20 dB in a
            # 1 s window ending by 2 s; measured 45.3 dB in the first, ending at 1.0 s.
            echo = mic[0] - scene["near"][: mic.shape[1]] - scene["noise"][: mic.shape[1]]
            inverted = EchoCancel(split_frames(-far, r, 320))
            flipped = (mic - 2 * echo).astype(np.float32)
            y_far, _ = _media(await run_node(inverted, split_frames(flipped, r, 320)))
            echo_left = (audio[0] - y_far[0]) / 2
            ends = [r + i * r // 10 for i in range(11)]  # windows ending at 1.0 .. 2.0 s
            reduction = [db(echo[e - r : e], echo_left[e - r : e]) for e in ends]
            assert max(reduction) >= 20.0, reduction
    assert results[True] >= 16.0 and results[True] >= results[False] + 8.0, results


async def test_the_search_filter_ends_when_no_echo_is_found(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No echo at all (the microphone hears another talker): the search filter runs for
    # EST_SEARCH_S, then it is cut to filter_ms at delay 0.
    s = echo_scene(6.0, rate=16000, double_talk=(0.0, 6.0), seed=4)
    mic = (s["near"] + s["noise"]).astype(np.float32)[None]
    far = s["far"].astype(np.float32)[None]
    cuts: list[tuple[int | None, float]] = []
    narrow = EchoCancel._narrow

    def spy(self: EchoCancel) -> None:
        cuts.append((self._next, self._kernel.filter_ms))
        narrow(self)

    monkeypatch.setattr(EchoCancel, "_narrow", spy)
    node = EchoCancel(split_frames(far, 16000, 320), filter_ms=120.0)
    audio, events = _media(await run_node(node, split_frames(mic, 16000, 320)))
    assert events == [] and node.delay_changes == 0 and audio.shape == mic.shape
    search_end = round(echo_cancel_module.EST_SEARCH_S * 16000)
    assert cuts == [(search_end, echo_cancel_module.KALMAN_SEARCH_MS)]  # frames end on it
    assert node._kernel.filter_ms == 120.0


async def test_a_reference_at_another_rate_is_resampled(
    backend: str, scene: dict[str, Any]
) -> None:
    # The far-end at 48 kHz (as a WebRTC session sends it), the microphone at 16 kHz.
    mic, _, r = delayed_scene(scene, 0.0, 12.0, 16000)
    _, far48, _ = delayed_scene(scene, 0.0, 12.0, 48000)
    node = EchoCancel(split_frames(far48, 48000, 960))
    audio, _ = _media(await run_node(node, split_frames(mic, r, 320)))
    assert node.unreferenced_frames <= 1  # the resampler's delay: the first frame's start
    tail = slice(8 * r, 12 * r)  # measured 17 dB (a 16 kHz reference: 17 dB)
    assert db(mic[0, tail], audio[0, tail]) >= 12.0


def test_settings_and_the_peer_reference_form() -> None:
    with pytest.raises(ConfigError, match=r"^aec: reference must be a stream of AudioFrames or"):
        EchoCancel("speaker", name="aec")
    with pytest.raises(ConfigError, match=r"^aec: reference must be an iterable"):
        EchoCancel(5, name="aec")  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"^aec: delay_ms must be a number in \[0.0, 10000.0\] or"
    ):
        EchoCancel([], delay_ms="late", name="aec")
    with pytest.raises(ConfigError, match=r"^aec: delay_ms must be a number in \[0.0, 10000.0\]"):
        EchoCancel([], delay_ms=-1, name="aec")
    assert EchoCancel([], algorithm="speex").delay_ms == 0.0
    assert EchoCancel([]).delay_ms == "auto" and EchoCancel("peer").delay_ms == "auto"
    with pytest.raises(ConfigError, match="manifest form only with reference='peer'"):
        EchoCancel([]).params()
    with pytest.raises(ConfigError, match="use_reference"):
        EchoCancel([]).use_reference([])
    manifest = {
        "version": 1,
        "name": "leg",
        "nodes": [{"type": "EchoCancel", "name": "aec", "params": {"reference": "peer"}}],
    }
    node = from_manifest(manifest).nodes[0]
    assert isinstance(node, EchoCancel) and node.peer_reference
    assert to_manifest(from_manifest(manifest))["nodes"][0]["params"] == {
        "reference": "peer",
        "filter_ms": 200.0,
        "frame_ms": 20.0,
        "stall_ms": 50.0,
        "delay_ms": "auto",
        "algorithm": "kalman",
    }


async def test_a_peer_reference_is_bound_before_it_runs(backend: str) -> None:
    r = 16000
    mic = (0.1 * np.sin(np.arange(r) / 7.0)).astype(np.float32)[None]
    with pytest.raises(ConfigError, match="reference='peer' is the audio a WebRTC session sends"):
        await run_node(EchoCancel("peer", name="aec"), split_frames(mic, r, 320))
    node = EchoCancel("peer", delay_ms=0.0)
    node.use_reference(_frames(split_frames(np.zeros_like(mic), r, 480)))
    out = join_frames(await run_node(node, split_frames(mic, r, 320)))
    assert out.shape == mic.shape and node.unreferenced_frames == 0


# ------------------------------------------------------------- Kalman (the default) and AEC3

# The AEC3 kernels' output delay (both twins, tests/audio/test_aec3.py), per rate.
AEC3_LATENCY = {8000: 88, 16000: 128, 32000: 260, 48000: 430}


def _kalman_kernel(backend: str) -> Any:
    cls = getattr(kernel_module(backend), "KalmanAecKernel", None)
    if cls is None:
        pytest.skip("the installed engine predates KalmanAecKernel")
    return cls


def _aec3_kernel(backend: str) -> Any:
    if backend == "python":
        pytest.importorskip("livekit.rtc", reason="the AEC3 twin needs livekit (the twins extra)")
    cls = getattr(kernel_module(backend), "Aec3Kernel", None)
    if cls is None:
        pytest.skip("the installed engine predates Aec3Kernel")
    return cls


def _quiet_scene(seconds: float, rate: int) -> dict[str, Any]:
    """``echo_scene`` with its noise 30 dB lower (-90 dBFS): AEC3's suppressor and comfort noise
    reshape noise, so only there does the echo reduction itself show (test_aec3.py)."""
    s = echo_scene(seconds, rate=rate)
    s["noise"] = s["noise"] * 10 ** (-30 / 20)
    s["mic"] = s["echo"] + s["near"] + s["noise"]
    return s


async def _through_node(
    mic: F32, far: F32, rate: int, start: int = 0, **kw: Any
) -> tuple[EchoCancel, list[AudioFrame]]:
    """``mic`` in 20 ms frames from pts ``start`` through a default EchoCancel whose reference
    is ``far`` in 30 ms frames, timed alike."""
    near = split_frames(mic, rate, rate // 50)
    ref = split_frames(far, rate, rate * 3 // 100)
    for f in [*near, *ref]:
        f.pts = (f.pts or 0) + start
    node = EchoCancel(_frames(ref), **kw)
    out = [o for o in await run_node(node, near) if isinstance(o, AudioFrame)]
    return node, out


def _aligned(out: list[AudioFrame], start: int, n: int) -> F32:
    """The output samples placed by their pts on the input's clock, ``[start, start + n)``
    (silence where none came out)."""
    y = np.zeros(n, np.float32)
    for f in out:
        assert f.pts is not None
        a = f.pts - start
        lo, hi = max(a, 0), min(a + f.num_samples, n)
        if hi > lo:
            y[lo:hi] = f.samples[0, lo - a : hi - a]
    return y


async def test_default_is_kalman_and_the_node_takes_its_latency_off(backend: str) -> None:
    kalman = _kalman_kernel(backend)
    r = 16000
    s = echo_scene(4.0, rate=r, double_talk=(3.0, 3.5))
    mic, far = s["mic"].astype(np.float32)[None], s["far"].astype(np.float32)[None]
    node, out = await _through_node(mic, far, r, start=r, delay_ms=0.0)
    assert node.algorithm == "kalman" and node.backend == backend
    assert type(node.kernel) is kalman and node.latency_samples == 32  # one 2 ms block
    assert node.backend_reason.endswith("; algorithm 'kalman'")
    lat = 32
    pad = np.zeros((1, lat), np.float32)
    direct = run(kalman(), np.concatenate([mic, pad], 1), np.concatenate([far, pad], 1), r, [320])
    assert np.array_equal(join_frames(out), direct[:, lat:])
    assert [f.pts for f in out[:3]] == [r, r + 320 - lat, r + 640 - lat]
    assert out[0].num_samples == 320 - lat and all(f.num_samples == 320 for f in out[1:-1])
    assert sum(f.num_samples for f in out) == mic.shape[1]
    # Kalman does not search the delay itself: a stream reference gets "auto" by default.
    assert EchoCancel([]).delay_ms == "auto"
    assert EchoCancel([], algorithm="aec3").delay_ms == 0.0


KALMAN_BLOCK = {8000: 16, 32000: 128, 48000: 192}  # its latency: one canceller block
REFUSED = {
    "kalman": "the Kalman canceller runs at 8000, 16000, 32000 or 48000 Hz",
    "aec3": "AEC3 runs at 8000, 16000, 32000 or 48000 Hz",
}


@pytest.mark.parametrize("algorithm", ["kalman", "aec3"])
@pytest.mark.parametrize("rate", [8000, 32000, 48000])
async def test_the_node_runs_at_each_of_the_algorithms_rates(
    backend: str, algorithm: str, rate: int
) -> None:
    (_kalman_kernel if algorithm == "kalman" else _aec3_kernel)(backend)
    s = echo_scene(1.0, rate=rate)
    mic, far = s["mic"].astype(np.float32)[None], s["far"].astype(np.float32)[None]
    node, out = await _through_node(mic, far, rate, algorithm=algorithm)
    latency = KALMAN_BLOCK[rate] if algorithm == "kalman" else AEC3_LATENCY[rate]
    assert node.latency_samples == latency and node.unreferenced_frames == 0
    assert out[0].pts == 0 and out[0].sample_rate == rate
    assert sum(f.num_samples for f in out) == mic.shape[1]
    assert all(b.pts == a.pts + a.num_samples for a, b in pairwise(out))


@pytest.mark.parametrize("algorithm", ["kalman", "aec3"])
async def test_other_rates_are_refused_naming_the_stage(backend: str, algorithm: str) -> None:
    (_kalman_kernel if algorithm == "kalman" else _aec3_kernel)(backend)
    x = np.zeros((1, 4410), np.float32)
    node = EchoCancel(_frames(split_frames(x, 44100, 882)), name="aec", algorithm=algorithm)
    with pytest.raises(NodeError) as info:
        await run_node(node, split_frames(x, 44100, 882))
    cause = info.value.__cause__
    assert isinstance(cause, FormatError) and cause.stage == "aec"
    assert str(cause).startswith(f"aec: {REFUSED[algorithm]}, got 44100 Hz; put Resample before it")


async def test_aec3_node_takes_its_latency_off(backend: str) -> None:
    aec3 = _aec3_kernel(backend)
    r = 16000
    s = echo_scene(4.0, rate=r, double_talk=(3.0, 3.5))
    mic, far = s["mic"].astype(np.float32)[None], s["far"].astype(np.float32)[None]
    node, out = await _through_node(mic, far, r, start=r, algorithm="aec3")
    assert node.algorithm == "aec3" and node.backend == backend
    assert type(node.kernel) is aec3 and node.latency_samples == AEC3_LATENCY[r]
    assert node.backend_reason.endswith("; algorithm 'aec3'")
    # The node feeds the kernel what a direct run feeds it, then latency_samples of silence
    # (drained at the end), and drops the kernel's first latency_samples (its warm-up): output
    # sample p is near-end sample p, stamped with its time, and the sample count is kept.
    lat = AEC3_LATENCY[r]
    pad = np.zeros((1, lat), np.float32)
    direct = run(aec3(), np.concatenate([mic, pad], 1), np.concatenate([far, pad], 1), r, [320])
    assert np.array_equal(join_frames(out), direct[:, lat:])
    assert [f.pts for f in out[:3]] == [r, r + 320 - lat, r + 640 - lat]
    assert out[0].num_samples == 320 - lat and all(f.num_samples == 320 for f in out[1:-1])
    assert sum(f.num_samples for f in out) == mic.shape[1]


async def test_aec3_echo_reduction_through_the_node(backend: str) -> None:
    """The kernel tests' measure (tests/audio/test_aec3.py), through the node: ERLE per 0.5 s
    window is the echo over the residual, the residual being the output minus what the node
    passes of the near-end and noise alone; outputs placed on the input's clock by their pts."""
    _aec3_kernel(backend)
    r, seconds = 16000, 12.0
    s = _quiet_scene(seconds, r)
    n = s["mic"].shape[0]
    f32 = np.float32
    mic, far = s["mic"].astype(f32)[None], s["far"].astype(f32)[None]
    _, out = await _through_node(mic, far, r, algorithm="aec3")
    alone = (s["near"] + s["noise"]).astype(f32)[None]
    _, passed_out = await _through_node(alone, np.zeros_like(alone), r, algorithm="aec3")
    y = _aligned(out, 0, n).astype(np.float64)
    residual = y - _aligned(passed_out, 0, n)
    w = r // 2
    erle = np.array(
        [db(s["echo"][i * w : (i + 1) * w], residual[i * w : (i + 1) * w]) for i in range(n // w)]
    )
    # Far-end speech starts at 0.2 s; the first window with >= 20 dB within 2 s of it (measured:
    # the very first, on both backends), and every window from 2.5 s on (measured min 24.8-26.0).
    first = (np.flatnonzero(erle >= 20.0)[0] + 1) * 0.5
    assert first <= 2.2, erle[:8]
    assert erle[5:].min() >= 20.0, erle
    # Converged (8-12 s): >= 35 dB (measured 47.1 / 47.9 dB, Python / Rust).
    tail = slice(8 * r, n)
    assert db(s["echo"][tail], residual[tail]) >= 35.0


async def test_auto_delay_takes_aec3_past_its_own_range(backend: str) -> None:
    """AEC3 finds echo paths up to about 450 ms itself; an echo 700 ms late needs the node's
    bulk alignment ("auto"), as with Speex."""
    _aec3_kernel(backend)
    scene = _quiet_scene(12.0, 16000)
    mic, far, r = delayed_scene(scene, 0.7, 12.0)
    results = {}
    for delay in (0.0, "auto"):
        node = EchoCancel(split_frames(far, r, 320), delay_ms=delay, algorithm="aec3")
        audio, events = _media(await run_node(node, split_frames(mic, r, 320)))
        tail = slice(8 * r, 12 * r)
        assert audio.shape == mic.shape
        results[delay] = db(mic[0, tail], audio[0, tail])
        if delay == "auto":
            assert [e[0] for e in events] == ["echo_delay"]
            assert 690.0 <= events[0][2]["estimate_ms"] <= 740.0
    # measured, 8-12 s: 1.9 dB at delay 0; with "auto" (estimate 713 ms) 44.2 / 47.1 dB
    assert results[0.0] < 10.0, results
    assert results["auto"] >= 25.0, results


def test_the_default_needs_no_libspeexdsp(monkeypatch: pytest.MonkeyPatch) -> None:
    """libspeexdsp made unloadable (the Python twin's loader): Speex is unavailable, the
    default (Kalman) builds as before. (The Rust Speex kernel loads the library the same way.)"""
    from media_nodes.audio import echo_cancel_kernel

    monkeypatch.setattr(echo_cancel_kernel, "LIBRARY", "libspeexdsp-missing.so.1")
    monkeypatch.setattr(echo_cancel_kernel, "_LIB", None)
    speex = EchoCancel([], algorithm="speex", backend="python", name="aec")
    with pytest.raises(BackendUnavailable, match=r"^aec: echo cancellation needs libspeexdsp"):
        speex.build_kernel()
    node = EchoCancel([], backend="python", name="aec")
    node.build_kernel()
    assert node.backend == "python" and type(node.kernel).__name__ == "KalmanAecKernel"
    assert node.backend_reason == "asked for (backend='python'); algorithm 'kalman'"


def _played_out(mic: F32, rate: int, moves: dict[int, int]) -> tuple[list[Any], F32]:
    """``mic`` as a playout buffer hands it out in 20 ms frames: before media frame ``i`` in
    ``moves``, ``+1`` inserts a concealed frame (the last one again, halved) and ``-1`` drops
    frame ``i``, each after a ``playout_shift`` event. Returns the items (pts continuous) and
    the samples as handed out."""
    f = rate // 50
    items: list[Any] = []
    played: list[F32] = []
    i, at = 0, 0
    while (i + 1) * f <= mic.shape[1]:
        move = moves.get(i, 0)
        if move:
            items.append(Event(PLAYOUT_SHIFT, "caller", at / rate, {"shift_ms": 20.0 * move}))
        if move > 0:
            x = 0.5 * mic[:, (i - 1) * f : i * f]
            items.append(AudioFrame(x.copy(), rate, pts=at))
            played.append(x)
            at += f
        if move < 0:
            i += 1  # dropped
        x = mic[:, i * f : (i + 1) * f]
        items.append(AudioFrame(x.copy(), rate, pts=at))
        played.append(x)
        at += f
        i += 1
    return items, np.concatenate(played, axis=1)


async def test_playout_shifts_keep_the_echo_where_the_canceller_learnt_it(backend: str) -> None:
    """A call's playout buffer stretches the near-end by a frame (2.5 s) and skips two (3.5 s).
    With the ``playout_shift`` events the default canceller follows (far-end read moved, the
    kernel's history re-labelled or fed the dropped frames' far-end) and keeps its depth over
    the half second after each (measured 25.8 / 27.8 dB, both backends); the same audio
    without the events loses it (3.1 / 14.2 dB). Echo 150 ms late, "auto"; the echo left is
    measured on the echo alone."""
    scene = echo_scene(4.5, rate=16000, double_talk=None, seed=3)
    r = scene["rate"]
    mic, far, _ = delayed_scene(scene, 0.15, 4.5)
    echo = mic - scene["noise"][: mic.shape[1]].astype(np.float32)[None]
    moves = {125: +1, 175: -1, 177: -1}
    results = {}
    for told in (True, False):
        items, played = _played_out(mic, r, moves)
        _, echo_played = _played_out(echo, r, moves)
        if not told:
            items = [x for x in items if not isinstance(x, Event)]
        node = EchoCancel(split_frames(far, r, r * 3 // 100))
        out = [o for o in await run_node(node, items) if isinstance(o, AudioFrame)]
        y = _aligned(out, 0, played.shape[1])
        noise = played[0] - echo_played[0]
        after = []
        for a in (int(2.52 * r), int(3.52 * r)):  # pipeline time: after each move
            b = a + r // 2
            after.append(db(echo_played[0, a:b], y[a:b] - noise[a:b]))
        results[told] = after
        if told:
            assert node.delay_changes >= 1 and node.unreferenced_frames == 0
    assert min(results[True]) >= 18.0, results
    assert max(results[False]) <= min(results[True]) - 8.0, results


async def test_a_bad_playout_shift_is_a_typed_error_naming_the_stage() -> None:
    r = 16000
    for payload in ({}, {"shift_ms": "20"}, {"shift_ms": float("nan")}, {"shift_ms": 1e9}):
        node = EchoCancel(_frames([]), stall_ms=0, name="aec")
        frames = split_frames(np.zeros((1, r // 10), np.float32), r, 320)
        items = [frames[0], Event(PLAYOUT_SHIFT, "caller", 0.02, payload), *frames[1:]]
        with pytest.raises(NodeError) as info:
            await run_node(node, items)
        assert info.value.stage == "aec" and "shift_ms" in str(info.value)
