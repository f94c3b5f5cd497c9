"""Echo cancellation: ``EchoCancel`` removes what a loudspeaker played from a microphone signal.

Shows a stage with two inputs: the near-end (the microphone) flows through the pipeline, the
far-end (what the speaker played) comes in as ``reference``, a stream of its own aligned by
timestamps. The echo path here is synthetic (``echo_scene``: a speech-like far-end through a
150 ms room response, a near-end talker in double talk, -60 dBFS noise); ``--delay-ms`` adds a
bulk delay to it, as a network round trip does, which ``delay_ms="auto"`` finds. It prints the
echo return loss enhancement (ERLE) second by second, and the near-end's level in double talk.

    python examples/echo_cancel.py                    # 20 s at 16 kHz
    python examples/echo_cancel.py --delay-ms 300     # the echo 300 ms late: "auto" finds it
    python examples/echo_cancel.py --out cleaned.wav

Live, with a speaker and a microphone (``remotemedia live --aec`` builds the same)::

    mic = MicrophoneSource(sample_rate=16000)
    speaker = SpeakerSink()
    aec = EchoCancel(reference=speaker.reference(microphone=mic))  # what the speaker played
    # microphone -> echo-cancelled -> your stages; the far-end audio -> speaker:
    await asyncio.gather(Pipeline([mic, aec, ...]).run(), Pipeline([speaker]).run(far_end))

On a WebRTC server, ``{"type": "EchoCancel", "params": {"reference": "peer"}}`` in the
manifest cancels the echo of what the session sends to a peer without echo cancellation of its
own (docs/webrtc.md).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import numpy as np

from media_nodes import EchoCancel, FileSink
from media_nodes.audio.echo_scene import echo_scene
from stream import AudioFrame, Event, Pipeline
from stream.testing import split_frames


def db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a**2) / max(float(np.sum(b**2)), 1e-30)))


def joined(items: list[Any]) -> np.ndarray:
    return np.concatenate([f.samples[0] for f in items if isinstance(f, AudioFrame)]).astype(float)


async def main(args: argparse.Namespace) -> None:
    dt = (args.seconds * 0.7, args.seconds * 0.85)
    s = echo_scene(args.seconds, rate=args.rate, double_talk=dt)
    r = s["rate"]
    d = int(args.delay_ms * r / 1000)
    echo = np.concatenate([np.zeros(d), s["echo"]])[: s["echo"].size]  # the bulk delay
    mic = (echo + s["near"] + s["noise"]).astype(np.float32)[None, :]
    far = s["far"].astype(np.float32)[None, :]
    aec = EchoCancel(reference=split_frames(far, r, r // 50), delay_ms=args.mode, name="aec")
    sink = [FileSink(args.out, name="output")] if args.out else []
    pipeline = Pipeline([aec, *sink], name="echo")
    out: list[Any] = []
    async with pipeline:
        async for item in pipeline.process(split_frames(mic, r, r // 50)):
            out.append(item)
            if isinstance(item, Event):
                print(
                    f"{item.time:5.1f} s  echo delay found: {item.payload['estimate_ms']:.1f} ms, "
                    f"filter window from {item.payload['delay_ms']:.1f} ms"
                )
    if args.out:  # the sink took the audio; run again for the figures
        aec = EchoCancel(reference=split_frames(far, r, r // 50), delay_ms=args.mode)
        out = await Pipeline([aec]).run(split_frames(mic, r, r // 50))
    y = joined(out)
    # What is left of the echo: the output minus the near-end as the canceller passes it with
    # no echo at all (Speex notches DC, so the near-end comes out with low voices shifted a bit).
    alone = (s["near"] + s["noise"]).astype(np.float32)[None, :]
    silent = split_frames(np.zeros_like(alone), r, r // 50)
    passed = joined(await Pipeline([EchoCancel(silent, delay_ms=0.0)]).run(split_frames(alone, r)))
    residual = y - passed
    print(f"{args.seconds:g} s at {r} Hz, echo {args.delay_ms:g} ms late, delay_ms={args.mode!r}")
    print("second  ERLE")
    a, b = (int(t * r) for t in dt)
    for t in range(int(args.seconds)):
        sl = slice(t * r, (t + 1) * r)
        label = " (double talk)" if a < (t + 1) * r and t * r < b else ""
        print(f"{t:4d}-{t + 1:<3d}{db(echo[sl], residual[sl]):5.1f} dB{label}")
    gain = float(np.dot(y[a:b], passed[a:b]) / np.dot(passed[a:b], passed[a:b]))
    print(f"near-end level in double talk: {20 * np.log10(abs(gain)):+.2f} dB")
    print(f"ERLE after double talk: {db(echo[b + r :], residual[b + r :]):.1f} dB")
    if args.out:
        print(f"wrote {args.out}")
    print(pipeline.describe())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="bulk delay of the echo")
    parser.add_argument(
        "--mode", default="auto", help='EchoCancel delay_ms: "auto" (default) or a number'
    )
    parser.add_argument("--out", help="write the echo-cancelled audio here")
    ns = parser.parse_args()
    if ns.mode != "auto":
        ns.mode = float(ns.mode)
    asyncio.run(main(ns))
