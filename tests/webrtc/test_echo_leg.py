"""EchoCancel on a WebRTC leg: a peer without echo cancellation hears the server and echoes it.

The Python peer (on the client test host) plays what the server sends through a synthetic room
(``room_response``: 150 ms of decaying noise after 10 ms, -6 dB, as ``echo_scene``), adds its own
speech-like talker and -60 dBFS noise, and sends that as its microphone. The server runs a
manifest as ``remotemedia serve`` does: ``Resample(16000)`` -> ``Probe`` (records the inbound
audio: the same run with AEC off, sample for sample) -> ``EchoCancel(reference="peer")`` ->
``FarEndTalker`` (records the cancelled audio, answers with a speech-like far-end). ERLE is the
energy of the inbound (AEC off) over the cancelled (AEC on) audio while only the far-end talks;
the near-end passes when its level in the cancelled audio matches the inbound's, in double talk
and alone. Both recordings are on the inbound clock; the client's own signal is found in them by
cross-correlation.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.frames import AudioFrame
from stream.testing import speech_like

from .conftest import manifest

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from stream.transport.echo_reference import PeerReference  # noqa: E402
from stream.transport.webrtc import Peer  # noqa: E402

RATE = 48000  # the peer's audio


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


AEC_RATE = 16000  # the server's pipeline
FRAME = 960
NEAR_AT_S = 9.5  # the peer's talker starts, on the peer's clock
NEAR_S = 3.5
FAR_S = 11.5  # the server's talker, from its first inbound frame
# Windows on the peer's clock: far-end only (after 2-4 s to find the delay and 4-5 s to
# converge), double talk, near-end only (the far-end's echo has died away).
ERLE_S = (7.5, 9.5)
DOUBLE_S = (9.7, 11.2)
NEAR_ONLY_S = (12.2, 12.9)
ERLE_MIN_DB = 10.0
AEC3_ERLE_MIN_DB = 20.0  # over ERLE_S
KALMAN_ERLE_MIN_DB = 25.0  # the default's, over ERLE_S
EARLY_S = 3  # issue 11: 25 dB within 3 s, read in 0.5 s windows (the plot's and benchmark's)


def room_response(rate: int = RATE, seed: int = 0) -> np.ndarray:
    """As ``echo_scene``: decaying Gaussian noise (150 ms, 30 ms time constant) after 10 ms of
    direct-path delay, -6 dB energy gain."""
    rng = np.random.default_rng(seed)
    taps = int(0.150 * rate)
    rir = rng.standard_normal(taps) * np.exp(-np.arange(taps) / (0.030 * rate))
    rir = np.concatenate([np.zeros(int(0.010 * rate)), rir])
    return rir * (0.5 / np.sqrt(np.sum(rir**2)))


class Room:
    """The peer's loudspeaker-to-microphone path: what it played, convolved with ``rir``
    (FFT overlap-add, state carried between frames)."""

    def __init__(self, rir: np.ndarray, block: int = FRAME) -> None:
        self.taps = rir.shape[0]
        self.size = 1 << int(np.ceil(np.log2(block + self.taps - 1)))
        self.spectrum = np.fft.rfft(rir, self.size)
        self.tail = np.zeros(self.taps - 1)

    def push(self, x: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        y = np.fft.irfft(np.fft.rfft(x, self.size) * self.spectrum, self.size)[: m + self.taps - 1]
        y[: self.tail.shape[0]] += self.tail
        self.tail = y[m:].copy()
        return y[:m]


class Loudspeaker:
    """The peer's playout: received audio placed by its pts ``delay`` samples after the
    microphone sample being captured when the first frame came (a fixed-delay jitter buffer, as
    a device has, so the echo path does not move). Audio that comes after its turn is lost
    (``late`` samples); a frame a whole ``delay`` late starts the buffer over (``resets``)."""

    def __init__(self, delay: int = 10 * FRAME, size: int = RATE) -> None:
        self.ring = np.zeros(size)
        self.size = size
        self.delay = delay
        self.position = 0  # the next sample to play, on the microphone's clock
        self.shift: int | None = None  # from a received pts to the microphone's clock
        self.late = 0
        self.resets = 0

    def received(self, frame: Any) -> None:
        if not isinstance(frame, AudioFrame) or frame.pts is None:
            return
        x = frame.samples[0].astype(np.float64)
        n = x.shape[0]
        if self.shift is None or frame.pts + self.shift + n <= self.position - self.delay:
            self.resets += self.shift is not None
            self.shift = self.position + self.delay - frame.pts
        at = frame.pts + self.shift
        skip = min(max(0, self.position - at), n)
        self.late += skip
        stop = min(n, self.position + self.size - at)
        if stop > skip:
            self.ring[np.arange(at + skip, at + stop) % self.size] = x[skip:stop]

    def play(self, n: int) -> np.ndarray:
        idx = np.arange(self.position, self.position + n) % self.size
        out = self.ring[idx].copy()
        self.ring[idx] = 0.0
        self.position += n
        return out


def near_end() -> np.ndarray:
    """The peer's own talker on its microphone's clock: silent, then NEAR_S of speech-like."""
    x = np.zeros(int((NEAR_AT_S + NEAR_S + 0.3) * RATE))
    a = int(NEAR_AT_S * RATE)
    x[a : a + int(NEAR_S * RATE)] = 0.7 * speech_like(NEAR_S, seed=2, rate=RATE)
    return x


def _load(path: Path, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} was not written")
        time.sleep(0.1)
    return np.load(path)


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a**2) / max(float(np.sum(b**2)), 1e-30)))


def _lag(x: np.ndarray, ref: np.ndarray) -> int:
    """Where ``ref`` sits in ``x`` (FFT cross-correlation peak)."""
    n = 1 << int(np.ceil(np.log2(x.shape[0] + ref.shape[0])))
    c = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(c))
    return lag if lag < n // 2 else lag - n


def _gain_db(x: np.ndarray, ref: np.ndarray) -> float:
    """The level of ``ref`` in ``x`` (least-squares gain, dB)."""
    return float(20 * np.log10(abs(np.dot(x, ref)) / np.dot(ref, ref)))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _outbound(k: int, value: int = 1000) -> AudioFrame:
    """The outbound track's k-th 20 ms frame: s16 stereo at 48 kHz, pts on its sample clock."""
    return AudioFrame(np.full((FRAME, 2), value, np.int16), RATE, k * FRAME, planar=False)


async def test_peer_reference_stamps_sent_audio_on_the_inbound_clock() -> None:
    clock = FakeClock()
    ref = PeerReference(clock=clock, max_ms=5000.0)  # read at the end: keep all
    reader = ref.frames()
    rng = np.random.default_rng(0)
    # Inbound: pts from 0 at the peer, each frame reaching the pipeline 5-40 ms after its end
    # (network, jitter buffer). Outbound: the track's pts from 0, handed to the encoder 0-40 ms
    # before its time (the track's lead); its clock starts 0.35 s after the inbound's.
    in_origin, out_origin = 100.0, 100.35
    events: list[tuple[float, str, int]] = []
    t_in = t_out = 0.0
    for k in range(150):  # 3 s of each, each stream in order
        t_in = max(t_in, in_origin + (k + 1) * 0.02 + rng.uniform(0.005, 0.04))
        t_out = max(t_out, out_origin + k * 0.02 - rng.uniform(0.0, 0.04))
        events += [(t_in, "in", k), (t_out, "out", k)]
    for t, kind, k in sorted(events):
        clock.now = t
        if kind == "in":
            ref.heard(AudioFrame(np.zeros((1, FRAME), np.float32), RATE, k * FRAME))
        else:
            ref.sent(_outbound(k, 1000 + k))
    ref.close()
    got = [f async for f in reader]
    stats = ref.stats
    assert stats["reanchors"] == 0 and stats["dropped"] == 0
    # Held until both clocks had 0.5 s to settle (up to max_ms), then all stamped.
    assert stats["sent"] == 150 and stats["unaligned"] == 0 and len(got) == 150
    # Stamped 0.35 s later on the inbound clock, up to the smallest delays met (5 ms in, a lead
    # of 40 ms out): the offset is within those 45 ms, and the pts are continuous.
    offset = stats["offset_ms"] / 1000
    assert 0.35 - 0.045 - 0.005 <= offset <= 0.35 + 0.005
    first = 150 - len(got)
    for i, f in enumerate(got):
        assert f.pts == (first + i) * FRAME + round(offset * RATE)
        assert f.sample_rate == RATE and f.samples.shape == (1, FRAME)
        assert f.samples.dtype == np.float32
        assert f.samples[0, 0] == pytest.approx((1000 + first + i) / 32768)


async def test_peer_reference_follows_a_drift_past_reanchor_ms_and_serves_readers() -> None:
    clock = FakeClock()
    ref = PeerReference(clock=clock, reanchor_ms=20.0, max_ms=200.0, window_s=2.0)
    first, second = ref.frames(), ref.frames()
    for k in range(600):  # 12 s; from 4 s to 8 s the inbound frames come 20 ms later a second
        late = 0.02 * min(max(0.0, (k - 200) / 50), 4.0)
        clock.now = 100.0 + (k + 1) * 0.02 + late
        ref.heard(AudioFrame(np.zeros((1, FRAME), np.float32), RATE, k * FRAME))
        clock.now = 100.0 + k * 0.02
        ref.sent(_outbound(k))
    ref.close()
    # The inbound clock drifted 80 ms: the stamps followed in steps of over 20 ms.
    stats = ref.stats
    assert stats["reanchors"] >= 1 and -80.0 <= stats["offset_ms"] <= -60.0, stats
    # Each reader got its own frames, bounded by max_ms (neither read while they came).
    a, b = [f async for f in first], [f async for f in second]
    assert [f.pts for f in a] == [f.pts for f in b] and len(a) == 10
    assert stats["dropped"] > 0


@dataclass
class Leg:
    """What one run of the leg measured (see the module docstring)."""

    echo_dbfs: float
    erle: float
    per_second: list[float]
    early: list[float]  # ERLE per 0.5 s window over the first EARLY_S
    double_in: float
    double_out: float
    alone: float
    events: list[dict[str, Any]]
    glitches: dict[str, int]
    report: str


def run_leg(
    hosts: Any, start_server: Any, tmp_path: Path, algorithm: str | None = None, **aec_params: Any
) -> Leg:
    """One run; ``algorithm`` None: the manifest names none (EchoCancel's default, Kalman)."""
    tmp_path.mkdir()
    raw_path, out_path = tmp_path / "raw.npz", tmp_path / "out.npz"
    aec = {"reference": "peer", **aec_params}
    if algorithm is not None:
        aec["algorithm"] = algorithm
    nodes = [
        {"type": "Resample", "name": "to16k", "params": {"sample_rate": AEC_RATE}},
        {"type": "webrtc.echo_nodes:Probe", "name": "mic", "params": {"path": str(raw_path)}},
        {"type": "EchoCancel", "name": "aec", "params": aec},
        {
            "type": "webrtc.echo_nodes:FarEndTalker",
            "name": "talker",
            "params": {"path": str(out_path), "seconds": FAR_S, "rate": AEC_RATE},
        },
    ]
    server = start_server(
        "--allow-module", "webrtc.echo_nodes", "--pipeline", manifest(tmp_path, nodes, "echo")
    )
    near = near_end()
    room = Room(room_response())
    speaker = Loudspeaker()
    noise = np.random.default_rng(3).standard_normal(near.shape[0]) * 10 ** (-60 / 20)
    underruns: list[int] = []

    async def microphone() -> Any:
        for k in range(0, near.shape[0] - FRAME + 1, FRAME):
            x = room.push(speaker.play(FRAME)) + near[k : k + FRAME] + noise[k : k + FRAME]
            yield AudioFrame(x.astype(np.float32)[None, :], RATE, k)

    async def run() -> Any:
        async with Peer(server.url, microphone(), speaker.received) as peer:
            await peer.wait_sent(NEAR_AT_S + NEAR_S + 15)
            await asyncio.sleep(0.3)
            assert peer.audio_track is not None
            underruns.append(peer.audio_track.underruns)
        return peer.result

    started = time.monotonic()
    result = hosts.run_async("client", run)
    raw, out = _load(raw_path), _load(out_path)
    took = time.monotonic() - started
    messages = result.messages
    events = [{**m["payload"], "at": m["time"]} for m in messages if m.get("kind") == "echo_delay"]
    stats = [m["echo_reference"] for m in messages if m.get("type") == "stats"]
    # Both recordings on the inbound clock at 16 kHz; the peer's sample 0 found by its talker.
    x, y = raw["samples"].astype(np.float64), out["samples"].astype(np.float64)
    shift = int(out["first"]) - int(raw["first"])
    n = min(x.shape[0] - shift, y.shape[0])
    x, y = x[shift : shift + n], y[:n]
    talker = resample(near, AEC_RATE, RATE)
    at = _lag(x, talker)

    def span(window: tuple[float, float]) -> slice:
        return slice(at + int(window[0] * AEC_RATE), at + int(window[1] * AEC_RATE))

    d = span(DOUBLE_S)
    own = talker[d.start - at : d.stop - at]
    # The peer's echo path moved under it: its microphone track sent silence it had not
    # captured (it ran late), or its playout lost audio or started over.
    glitches = {
        "mic underruns": underruns[0] if underruns else -1,
        "playout late samples": speaker.late,
        "playout resets": speaker.resets,
    }
    leg = Leg(
        echo_dbfs=float(10 * np.log10(np.mean(x[span(ERLE_S)] ** 2))),
        erle=_db(x[span(ERLE_S)], y[span(ERLE_S)]),
        per_second=[
            round(_db(x[span((t, t + 1))], y[span((t, t + 1))]), 1) for t in range(int(ERLE_S[1]))
        ],
        early=[
            round(_db(x[span((t / 2, t / 2 + 0.5))], y[span((t / 2, t / 2 + 0.5))]), 1)
            for t in range(2 * EARLY_S)
        ],
        double_in=_gain_db(x[d], own),
        double_out=_gain_db(y[d], own),
        alone=_db(y[span(NEAR_ONLY_S)], x[span(NEAR_ONLY_S)]),
        events=events,
        glitches={k: v for k, v in glitches.items() if v},
        report="",
    )
    warnings = [line for line in server.lines if "WARNING" in line][-5:]
    leg.report = (
        f"echo {leg.echo_dbfs:.1f} dBFS, ERLE {leg.erle:.1f} dB over {ERLE_S} s (per second "
        f"{leg.per_second}; per 0.5 s to {EARLY_S} s {leg.early}); near-end in double talk "
        f"{leg.double_in:+.2f} dB in, "
        f"{leg.double_out:+.2f} dB out; near-end alone out/in {leg.alone:+.2f} dB; echo_delay "
        f"events {events}; reference {stats[-1] if stats else None}; peer started at "
        f"{at / AEC_RATE:.3f} s; peer glitches {leg.glitches}; server warnings {warnings}; "
        f"run {took:.1f} s"
    )
    print(leg.report)
    server.stop()
    return leg


@pytest.mark.parametrize("algorithm", [None, "aec3", "speex"], ids=["default", "aec3", "speex"])
def test_echo_of_the_outbound_audio_is_cancelled(
    hosts: Any, start_server: Any, tmp_path: Path, algorithm: str | None
) -> None:
    leg = run_leg(hosts, start_server, tmp_path / "1", algorithm)
    if leg.erle < ERLE_MIN_DB and leg.glitches:
        # The test peer's own echo path moved mid-run (on a starved machine): that run cannot
        # measure the canceller, so it is run once more and judged on the second run alone.
        first = leg.report
        leg = run_leg(hosts, start_server, tmp_path / "2", algorithm)
        leg.report = f"{leg.report} (a second run; the first: {first})"
    report = leg.report
    # The delay was found (the peer's round trip is far beyond the 200 ms filter) and kept.
    assert leg.events and 50 <= leg.events[-1]["estimate_ms"] <= 900, report
    assert len(leg.events) <= 2, report
    # Without AEC the echo is there, far above the peer's -60 dBFS noise; with it, it is reduced
    # (Speex: measured 12.6-19.4 dB, also with both cores kept busy by other processes).
    assert leg.echo_dbfs > -45.0, report
    assert leg.erle >= ERLE_MIN_DB, report
    assert abs(leg.alone) <= 1.0, report
    if algorithm == "speex":
        # The near-end passes: its level in the output within 2 dB of the input's (measured
        # 0.1-0.5).
        assert abs(leg.double_out - leg.double_in) <= 2.0, report
        return
    if algorithm == "aec3":
        # Measured 31.7-32.5 dB over ERLE_S, 28-30 dB in the second second: AEC3 finds the
        # ~370 ms round trip itself, so "auto" reports it and keeps the bulk delay (a move would
        # restart the canceller). Its stock suppressor ducks the near-end in double talk where
        # the echo is louder than it (docs/aec3-evaluation.md): measured 4.9-6.9 dB here; a
        # suppressor that removed the talker would take 20 dB or more.
        assert leg.erle >= AEC3_ERLE_MIN_DB, report
        assert max(leg.per_second[:3]) >= 25.0, report
        assert abs(leg.double_out - leg.double_in) <= 10.0, report
        return
    # Kalman (the default), issue 11's goals on the leg: 25 dB within 3 s ("auto" finds the
    # round trip at 1.75-2.25 s, the filter converges after it: measured 37 dB in the 2.5-3 s
    # window; a 1 s window straddling the convergence read 23.8-42.7), deeper once converged,
    # and the near-end kept in double talk within 2 dB (measured 0.34-0.45 dB).
    assert leg.erle >= KALMAN_ERLE_MIN_DB, report
    assert max(leg.early) >= 25.0, report
    assert abs(leg.double_out - leg.double_in) <= 2.0, report
