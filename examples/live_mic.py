"""Live audio: the microphone through a gain stage to the speaker, printing the level as it goes.

Shows a pipeline between two real devices: ``MicrophoneSource`` delivers 20 ms frames in real
time, ``Gain`` runs on the Rust engine (or its Python twin), a small level meter prints the RMS
level about five times a second, and ``SpeakerSink`` plays the result, resampling when the
speaker's rate differs from the microphone's. At the end it prints each device's counters
(dropped input frames, output underruns) and the pipeline's per-stage table.

    python examples/live_mic.py                       # default devices, 10 s, -6 dB
    python examples/live_mic.py --list                # the devices PortAudio sees
    python examples/live_mic.py --input 2 --output "USB" --seconds 30 --gain-db 0

Wear headphones: a microphone next to a speaker feeds back. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
from typing import Any

import numpy as np

from media_nodes.audio import Gain
from media_nodes.devices import MicrophoneSource, SpeakerSink, list_devices
from stream import Pipeline
from stream.frames import AudioFrame
from stream.node import Node


class LevelMeter(Node):
    """Passes frames on; prints their RMS level in dBFS every ``every_ms`` of audio."""

    def __init__(self, every_ms: float = 200.0, *, name: str | None = None) -> None:
        super().__init__(name)
        self.every_ms = every_ms
        self._sum = 0.0
        self._count = 0

    def process(self, frame: Any) -> Any:
        if isinstance(frame, AudioFrame):
            samples = frame.samples.astype(np.float64)
            self._sum += float(np.sum(samples * samples))
            self._count += samples.size
            if self._count >= self.every_ms / 1000 * frame.sample_rate * frame.channels:
                rms = math.sqrt(self._sum / self._count)
                db = 20 * math.log10(rms) if rms > 0 else -math.inf
                time_s = frame.time or 0.0
                print(f"{time_s:7.2f} s  level {db:6.1f} dBFS  {'#' * max(0, int(db + 60))}")
                self._sum, self._count = 0.0, 0
        return frame


def parse_device(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.isdigit() else text


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="input device: index or part of its name (default: system)")
    parser.add_argument("--output", help="output device: index or part of its name")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run")
    parser.add_argument("--gain-db", type=float, default=-6.0, help="gain applied in between")
    parser.add_argument("--list", action="store_true", help="list the devices and exit")
    args = parser.parse_args()
    if args.list:
        for d in list_devices():
            marks = ("in " if d["default_input"] else "") + ("out" if d["default_output"] else "")
            print(
                f"{d['index']:3} {d['name']:<40} in {d['max_input_channels']:3} "
                f"out {d['max_output_channels']:3} {d['default_sample_rate']:8.0f} Hz  {marks}"
            )
        return

    mic = MicrophoneSource(device=parse_device(args.input), name="microphone")
    speaker = SpeakerSink(device=parse_device(args.output), name="speaker")
    pipeline = Pipeline(
        [mic, Gain(gain_db=args.gain_db, name="gain"), LevelMeter(name="meter"), speaker],
        name="live_mic",
    )
    async with pipeline:
        assert mic.device_info is not None and speaker.device_info is not None
        print(f"from {mic.device_info.name!r} at {mic.sample_rate} Hz")
        print(f"to   {speaker.device_info.name!r} at {speaker.device_rate} Hz")
        with contextlib.suppress(TimeoutError):
            async with (
                asyncio.timeout(args.seconds),
                contextlib.aclosing(pipeline.process()) as outputs,
            ):
                async for _ in outputs:  # the speaker emits nothing; this runs until the timeout
                    pass
        print(f"microphone: {mic.stats}")
        print(f"speaker:    {speaker.stats}")
        print(pipeline.describe())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
