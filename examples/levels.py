"""Levels: ``LevelMeter`` measures RMS and peak in dBFS as audio passes, and its ``level`` events
reach a callback subscribed with ``Pipeline.on_event``.

Shows the event side of a pipeline: the meter hands every frame on unchanged and emits a
``level`` event every ``--interval-ms`` of audio (frame and window readings), which goes beside
the media to the pipeline's consumer and to ``on_event`` subscribers; here a callback draws a bar
per event. The input is a file (``--input``), the microphone (``--device``), or a generated
signal: a tone that fades in and out, then speech-like sound.

    python examples/levels.py                           # generated, 3 s
    python examples/levels.py --input talk.wav --interval-ms 250
    python examples/levels.py --device --seconds 10     # the default microphone
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from media_nodes import FileSource, LevelMeter
from stream import Event, Pipeline
from stream.node import Node
from stream.testing import speech_like, split_frames, tone

RATE = 48000


def generated(seconds: float) -> list[Any]:
    """A 440 Hz tone fading in over the first half and out, then speech-like sound."""
    half = seconds / 2
    x = tone(440, half, RATE)[0] * np.sin(np.pi * np.arange(int(half * RATE)) / (half * RATE))
    y = np.concatenate([x, speech_like(seconds - half, seed=1, rate=RATE)])
    return split_frames(y.astype(np.float32)[None, :], RATE, RATE // 50)


class Bars:
    """The callback: one line per level event, counted."""

    def __init__(self) -> None:
        self.events = 0

    def __call__(self, event: Event) -> None:
        self.events += 1
        rms, peak = event.payload["rms_db"], event.payload["peak_db"]
        width = max(0, int((rms + 60) / 60 * 40))
        print(f"{event.time or 0.0:6.2f} s  rms {rms:6.1f} dBFS  peak {peak:6.1f}  {'#' * width}")


async def for_seconds(stream: AsyncIterator[Any], seconds: float) -> AsyncIterator[Any]:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async for item in stream:
        yield item
        if loop.time() > end:
            return


async def main(args: argparse.Namespace) -> None:
    meter = LevelMeter(window_ms=300.0, interval_ms=args.interval_ms, name="meter")
    stages: list[Node] = []
    source: Any = None
    if args.device:
        from media_nodes.devices import MicrophoneSource

        stages.append(MicrophoneSource(name="mic"))
    elif args.input:
        stages.append(FileSource(args.input, video=False, name="input"))
    else:
        source = generated(args.seconds)
    pipeline = Pipeline([*stages, meter], name="levels")
    bars = Bars()
    pipeline.on_event(bars, kind="level")
    seconds = 0.0
    async with pipeline:
        stream: AsyncIterator[Any] = pipeline.process(source, events=False)  # events: callback
        if args.device:
            stream = for_seconds(stream, args.seconds)
        async for frame in stream:
            seconds += frame.duration
    print(
        f"{bars.events} level events over {seconds:.2f} s; last window: rms "
        f"{meter.window_rms_db:.1f} dBFS, peak {meter.window_peak_db:.1f} dBFS"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="an audio file; default: a generated signal")
    parser.add_argument("--device", action="store_true", help="the default microphone instead")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--interval-ms", type=float, default=100.0, help="an event every ... ms")
    asyncio.run(main(parser.parse_args()))
