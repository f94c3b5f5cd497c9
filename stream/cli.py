"""The ``remotemedia`` command (also ``python -m stream``).

With no arguments it runs the demo job: a generated stereo test signal at 48 kHz, in 20 ms frames
as a live source would send them, through a speech-model front end (down-mix, resample to 16 kHz,
gain, 512-sample frames, int16), written to a WAV file, then the per-stage table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import wave
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np

from .errors import StreamError
from .frames import AudioFrame
from .pipeline import Pipeline
from .testing import noise, split_frames, tone


def demo_signal(seconds: float, sample_rate: int = 48000) -> np.ndarray:
    """Stereo: a 440 Hz tone left, a 1 kHz tone right, light noise on both."""
    left = tone(440.0, seconds, sample_rate, amplitude=0.4)
    right = tone(1000.0, seconds, sample_rate, amplitude=0.3)
    return np.concatenate([left, right]) + noise(seconds, sample_rate, 2, amplitude=0.05)


def demo_pipeline(backend: str | None) -> Pipeline:
    from media_nodes import ChannelMix, FormatConvert, Gain, Rebuffer, Resample

    return Pipeline(
        [
            ChannelMix(channels=1, name="mix", backend=backend),
            Resample(sample_rate=16000, name="resample", backend=backend),
            Gain(gain_db=-3.0, name="gain", backend=backend),
            Rebuffer(samples=512, name="rebuffer", backend=backend),
            FormatConvert(format="s16", name="to_s16", backend=backend),
        ],
        name="demo",
    )


async def _frames(signal: np.ndarray, rate: int) -> AsyncIterator[AudioFrame]:
    for frame in split_frames(signal, rate, 960):
        yield frame


async def run_demo(out: Path, seconds: float, backend: str | None) -> str:
    signal = demo_signal(seconds)
    pipeline = demo_pipeline(backend)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    written = 0
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        async with pipeline:
            async for frame in pipeline.process(_frames(signal, 48000)):
                wav.writeframes(frame.samples.tobytes())
                written += frame.num_samples
    elapsed = time.perf_counter() - started
    return (
        f"{seconds:.1f} s of 48 kHz stereo -> {out} ({written} samples at 16 kHz mono s16) "
        f"in {elapsed * 1000:.0f} ms, {seconds / elapsed:.0f}x real time\n{pipeline.describe()}"
    )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser = argparse.ArgumentParser(prog="remotemedia", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", parents=[common], help="run the demo job (the default)")
    demo.add_argument("--out", type=Path, default=Path("out/demo.wav"), help="WAV file to write")
    demo.add_argument("--seconds", type=float, default=10.0, help="length of the test signal")
    demo.add_argument("--backend", choices=["auto", "rust", "python"], default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "demo")  # the demo job is the default command
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s"
    )
    try:
        print(asyncio.run(run_demo(args.out, args.seconds, args.backend)))
    except (StreamError, OSError) as exc:
        if args.debug:
            raise
        print(f"remotemedia: error: {exc}", file=sys.stderr)
        return 1
    return 0
