"""Voice activity: the speech segments of a file (or of a generated talker), by EnergyVAD and, when
it is installed, SileroVAD; the speech alone written to a file (EnergyVAD's gate).

Shows detection stages and events: the VADs pass the audio on and emit ``speech_start`` /
``speech_end`` events beside it, which come out of ``Pipeline.process()`` in order with the
frames; ``EnergyVAD(gate=True)`` passes only the speech (with 200 ms of pre-roll) to a
``FileSink``. Without ``--input`` the talker is generated: a few utterances of speech-like sound
(``stream.testing.speech_like``) with pauses, over a -50 dBFS noise floor.

    python examples/vad_segments.py                       # generated, 8 s
    python examples/vad_segments.py --input talk.wav --gate speech.wav
    python examples/vad_segments.py --device              # the default microphone, 10 s

SileroVAD comes with ``pip install remotemedia[silero]``; on synthetic vowels it finds less than
on real speech (docs/stages-audio.md).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from media_nodes import ChannelMix, EnergyVAD, FileSink, FileSource, Resample, SileroVAD
from stream import Event, Pipeline
from stream.errors import BackendUnavailable
from stream.node import Node
from stream.testing import speech_like, split_frames

RATE = 16000


def talker(seconds: float) -> np.ndarray:
    """Utterances of 1.2 s of speech-like sound, each followed by 0.8 s of pause, over noise."""
    x = 10 ** (-50 / 20) * np.random.default_rng(0).standard_normal(int(seconds * RATE))
    for i, start in enumerate(np.arange(0.5, seconds - 1.2, 2.0)):
        a = int(start * RATE)
        x[a : a + int(1.2 * RATE)] += speech_like(1.2, seed=i, rate=RATE)
    return x.astype(np.float32)[None, :]


class Seconds(Node):
    """Passes audio on, adding up its duration (what the gate let through)."""

    def __init__(self) -> None:
        super().__init__(name="passed")
        self.seconds = 0.0

    def process(self, item: Any) -> Any:
        self.seconds += getattr(item, "duration", 0.0)
        return item


async def generated(seconds: float) -> AsyncIterator[Any]:
    for frame in split_frames(talker(seconds), RATE, RATE // 50):
        yield frame


def silero() -> Node | None:
    """SileroVAD when its model and runtime are installed, else None (said why)."""
    from media_nodes.audio.silero_vad import model_path

    try:
        model_path()
    except BackendUnavailable as exc:
        print(f"SileroVAD not used: {exc}")
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        print("SileroVAD not used: onnxruntime is not installed (pip install remotemedia[silero])")
        return None
    return SileroVAD(name="silero")


async def main(args: argparse.Namespace) -> None:
    stages: list[Node] = []
    source: Any = None
    if args.device:
        from media_nodes.devices import MicrophoneSource

        stages.append(MicrophoneSource(sample_rate=RATE, channels=1, name="mic"))
        print(f"listening on the default microphone for {args.seconds:g} s")
    elif args.input:
        stages.append(FileSource(args.input, video=False, name="input"))
    else:
        source = generated(args.seconds)
    stages += [ChannelMix(1, name="mono"), Resample(RATE, name="16k")]
    if not args.energy_only and (vad := silero()) is not None:
        stages.append(vad)
    passed = Seconds()
    stages += [EnergyVAD(threshold_db=args.threshold_db, gate=True, name="energy"), passed]
    if args.gate:
        stages.append(FileSink(args.gate, name="gated"))
    pipeline = Pipeline(stages, name="vad")
    segments: dict[str, list[tuple[float, float]]] = {}
    async with pipeline:
        stream: AsyncIterator[Any] = pipeline.process(source)
        if args.device:
            stream = _for(stream, args.seconds)
        async for item in stream:
            if isinstance(item, Event) and item.kind == "speech_end":
                begin = item.payload["start_time"]
                end = begin + item.payload["duration"]
                segments.setdefault(item.stage, []).append((begin, end))
                print(f"{item.stage:>7}: speech {begin:6.2f} s - {end:6.2f} s")
    for stage, found in segments.items():
        total = sum(b - a for a, b in found)
        print(f"{stage}: {len(found)} segments, {total:.2f} s of speech")
    print(f"gate: {passed.seconds:.2f} s of audio passed (speech and pre-roll)")
    if args.gate:
        print(f"wrote it to {args.gate}")
    print(pipeline.describe())


async def _for(stream: AsyncIterator[Any], seconds: float) -> AsyncIterator[Any]:
    """``stream`` for ``seconds`` of wall time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async for item in stream:
        yield item
        if loop.time() > end:
            return


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="an audio file (any FFmpeg reads); default: generated")
    parser.add_argument("--device", action="store_true", help="the default microphone instead")
    parser.add_argument("--seconds", type=float, default=8.0, help="generated/recorded length")
    parser.add_argument("--gate", metavar="OUT", help="write the speech alone here (.wav)")
    parser.add_argument("--threshold-db", type=float, default=-40.0, help="EnergyVAD threshold")
    parser.add_argument("--energy-only", action="store_true", help="skip SileroVAD")
    asyncio.run(main(parser.parse_args()))
