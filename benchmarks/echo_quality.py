"""EchoCancel quality and cost on a synthetic echo path (media_nodes.audio.echo_scene.
echo_scene: speech-like far-end through a 150 ms decaying-noise room response after 10 ms, a
speech-like near-end in double talk, -60 dBFS noise).

1. ERLE before/after double talk, the near-end's level and SNR in double talk (30 s scenes).
2. Convergence: how long from a cold start until ERLE reaches 20 dB (first 1 s window at 20 dB,
   and from when every 2 s window stays at 20 dB), ERLE at 5/10/20 s; the same after the echo
   path changes (another room from 20 s on); and with the echo 300 ms late, found by
   ``delay_ms="auto"`` (when the delay was found, then as above).
3. Double talk after convergence, the near-end at three levels against the echo: its attenuation,
   its SNR against what is left of the echo in and out, ERLE during and after.
4. The kernel's cost per 20 ms frame on each backend.
5. Every system through the ``EchoCancel`` node, at 16 and 48 kHz, one table row per scene: the
   speech-like scene with the near-end in double talk at three levels, real-ish speech both ways
   (fixed sentences spoken by ``espeak-ng``, resampled by PyAV; rows skipped when it is not
   installed), a room change mid-stream, and the echo 0, 150 and 450 ms late with
   ``delay_ms="auto"``. Per row: the first 1 s window at 20 dB, the mean once converged, and in
   double talk the near-end's level change and the echo under it. ``--plot`` draws echo
   reduction over time per system (16 kHz) to docs/echo-erle.png (matplotlib: the dev extras
   bring it, through pyrnnoise).

Systems side by side: ``speex`` (``EchoCancel(algorithm="speex")``'s kernel; both backends give
the same samples, so one row), ``kalman-rust`` and ``kalman-python`` (the default,
``algorithm="kalman"``: our frequency-domain Kalman canceller with a shadow filter and a
residual-echo suppressor, media_nodes/audio/kalman_aec.py, the twins in float64),
``aec3-rust`` (``algorithm="aec3"``'s Rust kernel, ``sonora``) and ``aec3-python`` (its Python
twin: WebRTC's own audio processing module through livekit, the reference every browser runs).
AEC3's and Kalman's output lags the input by ``latency_samples``; it is taken off before
measuring (as the node does). AEC3's suppressor and comfort noise reshape the -60 dBFS noise,
which caps its ERLE here at 25-30 dB (tests/audio/test_aec3.py measures the converged figure at
-90 dBFS: 47-49 dB).

ERLE is echo energy over residual-echo energy: the output minus the near-end and noise as the
canceller passes them alone (its DC notch shifts the phase of low voices: subtracting the raw
near-end would count that as echo). In sections 1 and 3 the near level is the gain of that passed
near-end in the output (least squares), its SNR is against everything else in the output. Section
5 measures double talk by inversion instead (``double_talk``): a suppressor changes the near-end's
gain per band and per block, which a least-squares gain cannot follow, so that way counted the
change as echo left.

    python benchmarks/echo_quality.py           # full: 3 seeds, 16 kHz
    python benchmarks/echo_quality.py --smoke   # short scenes, 1 seed: proves it runs
    python benchmarks/echo_quality.py --plot    # and writes docs/echo-erle.png
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from media_nodes.audio.aec3_kernel import Aec3Kernel as PythonAec3
from media_nodes.audio.echo_cancel import EchoCancel
from media_nodes.audio.echo_cancel_kernel import EchoCancelKernel as PythonEchoCancel
from media_nodes.audio.echo_scene import echo_scene, room_response
from media_nodes.audio.kalman_kernel import KalmanAecKernel as PythonKalman
from stream import Event, engine_available
from stream.frames import AudioFrame
from stream.testing import run_node, split_frames


def cancel(kernel: Any, mic: Any, far: Any, rate: int) -> tuple[Any, float]:
    step = rate // 50  # 20 ms frames, as a live stream sends them
    outs = []
    t0 = time.perf_counter()
    for i in range(0, mic.shape[1], step):
        outs += kernel.process(mic[:, i : i + step].copy(), far[:, i : i + step].copy(), rate)
    lat = int(kernel.latency_samples)  # before the flush resets it
    outs += kernel.flush()
    per_frame = (time.perf_counter() - t0) / (mic.shape[1] / step) * 1e6
    y = np.concatenate(outs, axis=1)[0].astype(np.float64)
    # Output sample i is input sample i: the kernel's delay taken off (AEC3; Speex has none).
    return np.concatenate([y[lat:], np.zeros(lat)]), per_frame


def db(a: Any, b: Any) -> float:
    with np.errstate(divide="ignore"):  # no echo at all in a window: -inf dB, not a warning
        return float(10 * np.log10(np.sum(np.square(a)) / max(float(np.sum(np.square(b))), 1e-30)))


def rows(s: dict[str, Any]) -> tuple[Any, Any]:
    return s["mic"].astype(np.float32)[None], s["far"].astype(np.float32)[None]


def erle_track(s: dict[str, Any], y: Any, window_s: float, hop_s: float = 0.1) -> Any:
    """(window end times, ERLE of each window) over the whole scene."""
    r = s["rate"]
    residual = y - s["near"] - s["noise"]
    w, h = int(window_s * r), int(hop_s * r)
    ends = np.arange(w, len(y) + 1, h)
    return ends / r, np.array([db(s["echo"][e - w : e], residual[e - w : e]) for e in ends])


def convergence(s: dict[str, Any], y: Any, start: float, stop: float) -> tuple[float, float]:
    """Seconds from ``start`` until a 1 s window reaches 20 dB, and until every 2 s window up
    to ``stop`` stays at 20 dB (nan: never)."""
    t1, e1 = erle_track(s, y, 1.0)
    t2, e2 = erle_track(s, y, 2.0)
    sel1 = (t1 - 1.0 >= start) & (t1 <= stop)
    first = t1[sel1][e1[sel1] >= 20.0]
    sel2 = (t2 - 2.0 >= start) & (t2 <= stop)
    held = np.nan
    below = np.flatnonzero(sel2 & (e2 < 20.0))
    if sel2.any():
        last_below = t2[below[-1]] if below.size else start + 2.0 - 0.1
        if last_below < t2[sel2][-1]:
            held = last_below + 0.1 - start
    return (first[0] - start if first.size else np.nan), held


def erle_at(s: dict[str, Any], y: Any, t: float) -> float:
    r = s["rate"]
    sl = slice(int((t - 1) * r), int(t * r))
    return db(s["echo"][sl], (y - s["near"] - s["noise"])[sl])


async def cancel_node(
    s: dict[str, Any], delay_ms: float | str, algorithm: str, backend: str
) -> tuple[Any, list[Event]]:
    r = s["rate"]
    mic, far = rows(s)
    node = EchoCancel(
        split_frames(far, r, r // 50), delay_ms=delay_ms, algorithm=algorithm, backend=backend
    )
    out = await run_node(node, split_frames(mic, r, r // 50))
    audio = np.concatenate([o.samples for o in out if isinstance(o, AudioFrame)], axis=1)
    return audio[0].astype(np.float64), [o for o in out if isinstance(o, Event)]


def delayed(s: dict[str, Any], delay_s: float) -> dict[str, Any]:
    """``s`` with the echo ``delay_s`` later (a far peer's round trip)."""
    d = int(delay_s * s["rate"])
    echo = np.concatenate([np.zeros(d), s["echo"]])[: len(s["echo"])]
    return {**s, "echo": echo, "mic": echo + s["near"] + s["noise"]}


def fmt(x: float) -> str:
    return "never" if np.isnan(x) else f"{x:.1f} s"


def passed(cls: Any, s: dict[str, Any]) -> Any:
    """The near-end and noise as the canceller passes them with no echo at all: the reference
    for "passed" (Speex notches DC, which shifts the phase of low voices a little)."""
    alone = (s["near"] + s["noise"]).astype(np.float32)[None]
    return cancel(cls(), alone, np.zeros_like(alone), s["rate"])[0]


def section_erle(systems: dict[str, Any], seeds: list[int], rate: int, smoke: bool) -> None:
    seconds, dt = (8.0, (4.0, 6.0)) if smoke else (30.0, (15.0, 18.0))
    print(f"\n## ERLE and double talk: {seconds:.0f} s, double talk {dt[0]:.0f}-{dt[1]:.0f} s")
    print(
        "system      seed | ERLE 1st half before dt | 2nd half | after dt | dt near level | "
        "SNR in/out"
    )
    for (name, cls), seed in ((item, seed) for item in systems.items() for seed in seeds):
        s = echo_scene(seconds, rate=rate, double_talk=dt, seed=seed)
        r = s["rate"]
        mic, far = rows(s)
        y, _ = cancel(cls(), mic, far, r)
        through = passed(cls, s)
        res = y - through
        a, b = int(dt[0] * r), int(dt[1] * r)

        def erle(i: int, j: int, res: Any = res, s: Any = s) -> float:
            return db(s["echo"][i:j], res[i:j])

        near = through[a:b]
        gain = 20 * np.log10(abs(float(np.dot(y[a:b], near) / np.dot(near, near))))
        print(
            f"{name:11} {seed:4} | {erle(0, a // 2):23.1f} | {erle(a // 2, a):8.1f} | "
            f"{erle(b + r, len(y)):8.1f} | {gain:+13.2f} | "
            f"{db(s['near'][a:b], s['echo'][a:b] + s['noise'][a:b]):+.1f} / "
            f"{db(near, res[a:b]):+.1f}"
        )


def section_convergence(systems: dict[str, Any], seeds: list[int], rate: int, smoke: bool) -> None:
    seconds, change = (12.0, 6.0) if smoke else (40.0, 20.0)
    print(
        f"\n## Convergence to 20 dB ERLE, far-end only, {seconds:.0f} s, another room from "
        f"{change:.0f} s (1 s window first at 20 dB / every 2 s window at 20 dB from then)"
    )
    print(
        "system      seed | cold start: first / held | ERLE at 5 / 10 / 20 s | "
        "after the change: first / held"
    )
    for (name, cls), seed in ((item, seed) for item in systems.items() for seed in seeds):
        s = echo_scene(seconds, rate=rate, double_talk=None, seed=seed, path_change_s=change)
        mic, far = rows(s)
        y, _ = cancel(cls(), mic, far, s["rate"])
        cold = convergence(s, y, 0.0, change)
        moved = convergence(s, y, change, seconds)
        at = [erle_at(s, y, t) for t in (5.0, 10.0, change)]
        print(
            f"{name:11} {seed:4} | {fmt(cold[0]):>10} / {fmt(cold[1]):>7} | "
            f"{at[0]:5.1f} / {at[1]:5.1f} / {at[2]:5.1f} dB | {fmt(moved[0]):>9} / {fmt(moved[1])}"
        )


def section_auto(nodes: dict[str, Any], seeds: list[int], rate: int, smoke: bool) -> None:
    """Through the node (``nodes``: name -> (algorithm, backend))."""
    seconds = 12.0 if smoke else 30.0
    print(
        f'\n## delay_ms="auto": the echo 300 ms late (beyond the 200 ms filter), far-end only, '
        f"{seconds:.0f} s"
    )
    print(
        "system      seed | delay found at | estimate | bulk delay | to 20 dB: first / held | "
        "delay 0: ERLE"
    )
    for (name, (algorithm, backend)), seed in (
        (item, seed) for item in nodes.items() for seed in seeds
    ):
        s = delayed(echo_scene(seconds, rate=rate, double_talk=None, seed=seed), 0.3)
        y, events = asyncio.run(cancel_node(s, "auto", algorithm, backend))
        y0, _ = asyncio.run(cancel_node(s, 0.0, algorithm, backend))
        e = events[0] if events else None
        first, held = convergence(s, y, 0.0, seconds)
        tail = slice(len(y) // 2, len(y))
        print(
            f"{name:11} {seed:4} | {(f'{e.time:.1f} s' if e else 'never'):>14} | "
            f"{(e.payload['estimate_ms'] if e else float('nan')):6.1f} ms | "
            f"{(e.payload['delay_ms'] if e else float('nan')):7.1f} ms | "
            f"{fmt(first):>9} / {fmt(held):>7} | {db(s['echo'][tail], (y0 - s['noise'])[tail]):.1f} dB"
        )


def section_double_talk(systems: dict[str, Any], seeds: list[int], rate: int, smoke: bool) -> None:
    conv, dt = (6.0, 3.0) if smoke else (16.0, 4.0)
    print(
        f"\n## Double talk after {conv:.0f} s of far-end only, {dt:.0f} s of both "
        "(near level: the gain of the near-end as passed alone, in the output, by least squares; "
        "per-band gains of a suppressor read lower here than the level change, which the last "
        "section measures by inversion, as issue 11's goal asks)"
    )
    print(
        "system      near/echo | near level | near SNR in / out | ERLE in dt | ERLE 2 s after "
        "(seeds mean)"
    )
    for (name, cls), gain in (
        (item, gain) for item in systems.items() for gain in (0.35, 0.7, 1.4)
    ):
        figures = []
        for seed in seeds:
            s = echo_scene(
                conv + dt + 2.0, rate=rate, double_talk=(conv, conv + dt), seed=seed, near_gain=gain
            )
            r = s["rate"]
            mic, far = rows(s)
            y, _ = cancel(cls(), mic, far, r)
            through = passed(cls, s)
            a, b = int(conv * r), int((conv + dt) * r)
            near, echo = through[a:b], s["echo"][a:b]
            residual = y[a:b] - near
            g = float(np.dot(y[a:b], near) / np.dot(near, near))
            after = slice(b, b + 2 * r)
            figures.append(
                (
                    db(s["near"][a:b], echo),
                    20 * np.log10(abs(g)),
                    db(s["near"][a:b], echo + s["noise"][a:b]),
                    db(near, residual),
                    db(echo, residual),
                    db(s["echo"][after], (y - through)[after]),
                )
            )
        m = np.mean(figures, axis=0)
        print(
            f"{name:11} {m[0]:+8.1f} dB | {m[1]:+9.2f} dB | {m[2]:+7.1f} / {m[3]:+5.1f} dB | "
            f"{m[4]:8.1f} dB | {m[5]:8.1f} dB"
        )


def section_cost(kernels: dict[str, Any], rate: int, smoke: bool) -> None:
    print()
    for r in sorted({rate, 48000 if not smoke else rate}):
        s = echo_scene(4.0 if smoke else 10.0, rate=r)
        m2, f2 = rows(s)
        costs = {
            name: min(cancel(cls(), m2, f2, r)[1] for _ in range(3))
            for name, cls in kernels.items()
        }
        shown = ", ".join(f"{k} {v:.1f}" for k, v in costs.items())
        print(f"kernel cost per 20 ms frame at {r} Hz (µs, best of 3): {shown}")


# Fixed sentences for the espeak-ng scenes: the far-end talker (the loudspeaker) and, in double
# talk, the near-end talker in another voice.
FAR_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back when you have a moment to talk about the schedule.",
    "We will meet at the station at half past nine tomorrow morning.",
    "It is going to rain this afternoon, so take an umbrella with you.",
)
NEAR_SENTENCES = (
    "Sorry, could you say that again? I did not hear the last part.",
    "Yes, that works for me, I will bring the documents.",
)
DOCS_PLOT = Path(__file__).resolve().parents[1] / "docs" / "echo-erle.png"


def espeak(sentences: tuple[str, ...], voice: str, rate: int, seconds: float) -> Any:
    """The sentences spoken by ``espeak-ng -v voice`` (0.4 s apart, repeated to ``seconds``),
    resampled to ``rate`` by PyAV and scaled to the RMS of ``speech_like`` (float64)."""
    import av

    from stream.testing import speech_like

    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(sentences):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            with av.open(str(wav)) as container:
                for frame in container.decode(audio=0):
                    chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
            chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
            parts += [np.concatenate(chunks).astype(np.float64), np.zeros(int(0.4 * rate))]
    one = np.concatenate(parts)
    n = int(seconds * rate)
    x = np.tile(one, n // len(one) + 1)[:n]
    target = np.sqrt(np.mean(np.square(speech_like(seconds, seed=1, rate=rate))))
    return x * (target / np.sqrt(np.mean(np.square(x))))


def espeak_scene(
    seconds: float, rate: int, double_talk: tuple[float, float], near_gain: float = 0.7
) -> dict[str, Any]:
    """``echo_scene``'s layout (seed 0's room and noise) with espeak-ng speech both ways."""
    base = echo_scene(seconds, rate=rate, double_talk=None, seed=0)
    far = espeak(FAR_SENTENCES, "en-us", rate, seconds)
    n = len(far)
    echo = np.convolve(far, room_response(rate, np.random.default_rng(0)))[:n]
    near = near_gain * espeak(NEAR_SENTENCES, "en-us+f3", rate, seconds)
    a, b = (int(t * rate) for t in double_talk)
    near[:a] = 0.0
    near[b:] = 0.0
    noise = base["noise"]
    return {**base, "far": far, "echo": echo, "near": near, "mic": echo + near + noise}


def scene_rows(
    rate: int, smoke: bool, have_espeak: bool
) -> list[tuple[str, str, dict[str, Any], float | str, float]]:
    """(label, key of its near-end, scene, delay_ms, from when "first" and the mean count)."""
    seconds, dt, change = (10.0, (7.0, 9.0), 4.0) if smoke else (20.0, (14.0, 17.0), 7.0)
    out: list[tuple[str, str, dict[str, Any], float | str, float]] = []

    def synth(gain: float, **kw: Any) -> dict[str, Any]:
        return echo_scene(seconds, rate=rate, double_talk=dt, seed=0, near_gain=gain, **kw)

    gains = (0.7,) if smoke else (0.35, 0.7, 1.4)
    out += [(f"speech-like, dt near x{g}", f"synth{g}", synth(g), 0.0, 0.0) for g in gains]
    if have_espeak:
        out.append(("espeak-ng, dt near x0.7", "espeak", espeak_scene(seconds, rate, dt), 0.0, 0.0))
    if not smoke:
        out.append(
            (
                f"room change at {change:.0f} s",
                "synth0.7",
                synth(0.7, path_change_s=change),
                0.0,
                change,
            )
        )
    for ms in (150,) if smoke else (0, 150, 450):
        out.append(
            (f'delay {ms} ms, "auto"', "synth0.7", delayed(synth(0.7), ms / 1000), "auto", 0.0)
        )
    return out


def section_scenes(nodes: dict[str, Any], rates: list[int], smoke: bool, plot: Path | None) -> None:
    """Every system through the EchoCancel node on each scene, one row per scene, rate, system."""
    have_espeak = shutil.which("espeak-ng") is not None
    seconds, dt = (10.0, (7.0, 9.0)) if smoke else (20.0, (14.0, 17.0))
    conv_from = 4.0 if smoke else 7.0
    print(
        f"\n## Through the node, {seconds:.0f} s scenes, double talk (dt) {dt[0]:.0f}-{dt[1]:.0f} s"
        " after far-end only"
    )
    if not have_espeak:
        print("espeak-ng is not installed (apt-get install espeak-ng): no espeak-ng rows")
    print(
        "first: the first 1 s window at >= 20 dB ERLE (its end, from the start or the room "
        "change); first, echo only: the same on the echo alone (the noise apart, by far-end "
        "inversion, below: where the echo is near the -60 dBFS noise a suppressor takes noise out "
        f"with it, which the first column counts as echo left); mean: the mean of the 1 s windows' ERLE from {conv_from:.0f} s (3 s after the "
        "room change) to dt; echo only: the same with the noise apart (by far-end inversion: the "
        "scene again with far end and echo negated, half the difference of the outputs is the "
        "echo as the node leaves it); in dt, by inversion (the scene run twice, the near-end's sign "
        "flipped in the second: half the difference of the outputs is the near-end as the node "
        "passed it, half the sum the echo and noise left): the near-end over the echo in the "
        "microphone; the near-end's level in the output against the node's output for the "
        "near-end alone, over the double talk and the median of its 0.25 s windows where the "
        "near-end speaks (the suppressor's ducking); the near-end over what is left of the echo "
        "and noise; the near-end over the echo alone (the noise apart, by far-end inversion: what "
        "issue 11's 'echo at least 20 dB under the near-end' asks)"
    )
    print(
        "| scene | rate | system | first >= 20 dB | first, echo only | mean converged | "
        "mean echo only | "
        "dt near/echo in | dt near level | dt near level, median 0.25 s | dt near/(echo+noise) "
        "out | dt near/echo out, noise apart |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    tracks: dict[str, list[tuple[str, Any, Any]]] = {}
    for rate in rates:
        for label, near_key, s, delay_ms, start in scene_rows(rate, smoke, have_espeak):
            r = s["rate"]
            a, b = int(dt[0] * r), int(dt[1] * r)
            for name, (algorithm, backend) in nodes.items():
                y, _ = asyncio.run(cancel_node(s, delay_ms, algorithm, backend))
                key = (name, r, near_key)
                if key not in _PASSED:
                    alone = {**s, "mic": s["near"] + s["noise"], "far": np.zeros_like(s["far"])}
                    _PASSED[key] = asyncio.run(cancel_node(alone, 0.0, algorithm, backend))[0]
                through = _PASSED[key]
                t1, e1 = erle_track({**s, "near": through, "noise": 0.0}, y, 1.0)
                ok = (t1 - 1.0 >= start) & (t1 <= dt[0]) & (e1 >= 20.0)
                first = t1[ok][0] - start if ok.any() else np.nan
                conv = (t1 - 1.0 >= max(conv_from, start + 3.0)) & (t1 <= dt[0])
                # The echo alone as the node leaves it: far and echo negated, the same noise and
                # near-end; half the difference of the outputs (``mean echo only``).
                far_inv = {**s, "far": -s["far"], "mic": s["mic"] - 2 * s["echo"]}
                y_far, _ = asyncio.run(cancel_node(far_inv, delay_ms, algorithm, backend))
                # erle_track's residual is y - near - noise: with near = (y + y_far) / 2 it is
                # the echo left, (y - y_far) / 2.
                _, e2 = erle_track({**s, "near": (y + y_far) / 2, "noise": 0.0}, y, 1.0)
                echo_only = float(np.mean(e2[conv]))
                ok2 = (t1 - 1.0 >= start) & (t1 <= dt[0]) & (e2 >= 20.0)
                first_echo = t1[ok2][0] - start if ok2.any() else np.nan
                inverted = {**s, "mic": s["mic"] - 2 * s["near"]}
                y_inv, _ = asyncio.run(cancel_node(inverted, delay_ms, algorithm, backend))
                dt_in = db(s["near"][a:b], s["echo"][a:b])
                level, median, out = double_talk(y, y_inv, through, a, b, r)
                # the echo alone in dt, the noise apart: half the difference of the far-end runs
                echo_out = db((y[a:b] - y_inv[a:b]) / 2, (y[a:b] - y_far[a:b]) / 2)
                print(
                    f"| {label} | {r // 1000} kHz | {name} | {fmt(first)} | {fmt(first_echo)} | "
                    f"{float(np.mean(e1[conv])):.1f} dB | {echo_only:.1f} dB | {dt_in:+.1f} dB | "
                    f"{level:+.2f} dB | "
                    f"{median:+.2f} dB | {out:+.1f} dB | {echo_out:+.1f} dB |"
                )
                if plot is not None and r == rates[0]:
                    t, e = erle_track({**s, "near": through, "noise": 0.0}, y, 0.5)
                    # Windows where the echo is under the -60 dBFS noise (pauses of the far-end
                    # talker) have no echo to reduce: left out of the curve.
                    power = np.array(
                        [np.mean(np.square(s["echo"][int((x - 0.5) * r) : int(x * r)])) for x in t]
                    )
                    e = np.where(power > 1e-6, e, np.nan)
                    tracks.setdefault(label, []).append((name, t, e))
    if plot is not None:
        save_plot(tracks, dt, plot, rates[0])


_PASSED: dict[tuple[str, int, str], Any] = {}


def double_talk(
    y: Any, y_inv: Any, through: Any, a: int, b: int, rate: int
) -> tuple[float, float, float]:
    """Double talk in ``[a, b)`` by inversion: ``y`` the output for echo + near-end, ``y_inv`` for
    echo - near-end, ``through`` the output for the near-end alone. Half the difference is the
    near-end as the node passed it in double talk, half the sum the echo (and noise) left; the
    two runs are the same samples until double talk, and a canceller's gains depend on signal
    powers, which the sign does not change. Returns the near-end's level change over the double
    talk, the median of its 0.25 s windows' changes where the near-end speaks (-40 dB under its
    loudest window: the suppressor's ducking, which an energy sum hides), and the near-end over
    the echo left (dB)."""
    near = (y[a:b] - y_inv[a:b]) / 2
    left = (y[a:b] + y_inv[a:b]) / 2
    alone = through[a:b]
    w = rate // 4
    powers = [
        (np.mean(near[i : i + w] ** 2), np.mean(alone[i : i + w] ** 2))
        for i in range(0, len(alone) - w + 1, w)
    ]
    loudest = max(p for _, p in powers)
    changes = [10 * np.log10(n / p) for n, p in powers if p > loudest * 1e-4 and n > 0]
    return db(near, alone), float(np.median(changes)), db(near, left)


def save_plot(
    tracks: dict[str, list[tuple[str, Any, Any]]], dt: tuple[float, float], path: Path, rate: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [k for k in tracks if "x0.35" not in k and "x1.4" not in k and "delay 0 " not in k]
    cols = 2
    rows_n = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(11, 3.0 * rows_n), sharey=True, squeeze=False)
    for ax, label in zip(axes.flat, shown, strict=False):
        for name, t, e in tracks[label]:
            ax.plot(t - 0.25, e, label=name, linewidth=1.2)
        ax.axvspan(*dt, color="0.85", label="double talk")
        ax.axhline(20.0, color="0.5", linestyle=":", linewidth=1)
        if label.startswith("room change"):
            ax.axvline(float(label.split()[3]), color="0.3", linestyle="--", linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.set_ylim(-5, 55)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("ERLE, dB (0.5 s windows)")
    for ax in axes[-1, :]:
        ax.set_xlabel("time, s")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle(f"Echo reduction over time through EchoCancel, {rate // 1000} kHz")
    fig.tight_layout(rect=(0.0, 0.04, 1.0, 1.0))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"plot written to {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rate", type=int, default=16000)
    ap.add_argument(
        "--plot",
        nargs="?",
        const=DOCS_PLOT,
        type=Path,
        default=None,
        help=f"write the ERLE-over-time plot (default path {DOCS_PLOT})",
    )
    args = ap.parse_args()
    seeds = [0] if args.smoke else [0, 1, 2]
    # Every kernel, for the cost; the quality systems: Speex once (both backends give the same
    # samples), AEC3 on each backend (different code of one algorithm).
    kernels: dict[str, Any] = {"speex-python": PythonEchoCancel}
    speex: Any = PythonEchoCancel
    aec3: dict[str, Any] = {}
    kalman: dict[str, Any] = {}
    nodes: dict[str, Any] = {"speex": ("speex", "python")}
    if engine_available():
        from stream import _engine

        speex = kernels["speex-rust"] = _engine.EchoCancelKernel
        nodes["speex"] = ("speex", "rust")
        if hasattr(_engine, "Aec3Kernel"):
            aec3["aec3-rust"] = kernels["aec3-rust"] = _engine.Aec3Kernel
            nodes["aec3-rust"] = ("aec3", "rust")
        if hasattr(_engine, "KalmanAecKernel"):
            kalman["kalman-rust"] = kernels["kalman-rust"] = _engine.KalmanAecKernel
            nodes["kalman-rust"] = ("kalman", "rust")
    try:
        import livekit.rtc  # noqa: F401  (the AEC3 twin's module)
    except ImportError:
        print("livekit is not installed (pip install 'remotemedia[twins]'): no aec3-python rows")
    else:
        aec3["aec3-python"] = kernels["aec3-python"] = PythonAec3
        nodes["aec3-python"] = ("aec3", "python")
    kalman["kalman-python"] = kernels["kalman-python"] = PythonKalman
    nodes["kalman-python"] = ("kalman", "python")
    systems = {"speex": speex, **aec3, **kalman}
    print(f"rate {args.rate} Hz; systems: {', '.join(systems)}")
    section_erle(systems, seeds, args.rate, args.smoke)
    section_convergence(systems, seeds, args.rate, args.smoke)
    section_auto(nodes, seeds, args.rate, args.smoke)
    section_double_talk(systems, seeds, args.rate, args.smoke)
    section_cost(kernels, args.rate, args.smoke)
    section_scenes(nodes, [16000] if args.smoke else [16000, 48000], args.smoke, args.plot)


if __name__ == "__main__":
    main()
