"""Audio adapter benchmark: the WebRTC conversion paths, before (the transport's old
``AudioConverter``: one stage after the other, a native call each) and after (``AudioAdapter``: one
fused native call per frame), in microseconds per frame, same run, same input.

- out: what ``AudioOutputTrack.put`` does: 16 kHz mono fltp 10 ms frames to 48 kHz stereo s16
  in 960-sample (20 ms) frames for the encoder (conversion plus the track's s16 chunker).
- in: what a session's inbound track does: 48 kHz stereo s16 20 ms frames from the decoder to
  16 kHz mono fltp for the pipeline.

    python benchmarks/adapter_bench.py            # full run; copy the table into docs/benchmarks.md
    python benchmarks/adapter_bench.py --smoke    # a few frames: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from media_nodes.audio import ChannelMix, FormatConvert, Rebuffer, Resample
from stream import AudioFrame, engine_version
from stream.audio_adapter import AudioAdapter
from stream.kernel_node import KernelNode
from stream.testing import noise
from stream.transport.tracks import RTC_SAMPLE_RATE, _Chunker


class OldAudioConverter:
    """The transport's ``AudioConverter`` as it was (stream/transport/tracks.py before the
    adapter): a list of stages, each its own native call per frame. Kept here for comparison."""

    def __init__(
        self,
        format: str = "fltp",
        sample_rate: int | None = None,
        channels: int | None = None,
        frame_samples: int | None = None,
        *,
        fallback_channels: int = 2,
        backend: str | None = None,
        name: str = "convert",
    ) -> None:
        self.format = format
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_samples = frame_samples
        self.fallback_channels = fallback_channels
        self.backend = backend
        self.name = name
        self._key: tuple[int, int] | None = None
        self._stages: list[KernelNode] = []

    def _build(self, frame: AudioFrame) -> list[KernelNode]:
        stages: list[KernelNode] = []
        b, n = self.backend, self.name
        if frame.format != "fltp":
            stages.append(FormatConvert("fltp", name=f"{n}.fltp", backend=b))
        want = self.channels
        if want is None and frame.channels > 2:
            want = self.fallback_channels
        if want is not None and want != frame.channels:
            stages.append(ChannelMix(channels=want, name=f"{n}.mix", backend=b))
        if self.sample_rate is not None and self.sample_rate != frame.sample_rate:
            stages.append(Resample(sample_rate=self.sample_rate, name=f"{n}.resample", backend=b))
        if self.frame_samples is not None:
            stages.append(
                Rebuffer(
                    samples=self.frame_samples, pad_final=True, name=f"{n}.rebuffer", backend=b
                )
            )
        if self.format != "fltp":
            stages.append(FormatConvert(self.format, name=f"{n}.out", backend=b))
        for stage in stages:
            stage.initialize()
        return stages

    def convert(self, frame: AudioFrame) -> list[AudioFrame]:
        key = (frame.sample_rate, frame.channels)
        if key != self._key:
            self._stages = self._build(frame)
            self._key = key
        items: list[Any] = [frame]
        for stage in self._stages:
            out: list[Any] = []
            for item in items:
                out.extend(stage.process(item))
            items = out
        return items


def _frames(rate: int, channels: int, size: int, count: int, s16: bool) -> list[AudioFrame]:
    x = noise(count * size / rate, rate, channels=channels, amplitude=0.5, seed=1)
    out = []
    for i in range(count):
        block = np.ascontiguousarray(x[:, i * size : (i + 1) * size])
        if s16:
            ints = np.clip(np.rint(block * 32768), -32768, 32767).astype(np.int16)
            out.append(AudioFrame(np.ascontiguousarray(ints.T), rate, i * size, planar=False))
        else:
            out.append(AudioFrame(block, rate, i * size))
    return out


def _once(make: Callable[[], Any], frames: list[AudioFrame], chunk: bool) -> float:
    """µs per input frame through a fresh converter (and the output track's chunker)."""
    conv = make()
    chunker = _Chunker(960, 2) if chunk else None
    t0 = time.perf_counter()
    for frame in frames:
        for converted in conv.convert(frame):
            if chunker is not None:
                chunker.push(converted)
    return (time.perf_counter() - t0) / len(frames) * 1e6


def before_after_us(
    old: Callable[[], Any],
    new: Callable[[], Any],
    frames: list[AudioFrame],
    chunk: bool,
    repeats: int,
) -> tuple[float, float]:
    """Best-of-``repeats`` µs per frame of each, the two timed in turn (a busy machine's drift
    then weighs on both alike)."""
    before = after = float("inf")
    for _ in range(repeats):
        before = min(before, _once(old, frames, chunk))
        after = min(after, _once(new, frames, chunk))
    return before, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few frames: proves it runs")
    args = parser.parse_args(argv)
    count, repeats = (20, 1) if args.smoke else (2000, 9)
    out_frames = _frames(16000, 1, 160, count, s16=False)
    in_frames = _frames(48000, 2, 960, count // 2, s16=True)
    backends = (
        ["python"] if os.environ.get("REMOTEMEDIA_RUNTIME") == "python" else ["rust", "python"]
    )
    print(
        f"# adapter_bench: Python {platform.python_version()}, engine {engine_version()}, "
        f"{os.cpu_count()} CPUs, {count} frames, best of {repeats}"
    )
    print(
        "| path | backend | before (AudioConverter) µs/frame | after (AudioAdapter) µs/frame | before/after |"
    )
    print("|---|---|---:|---:|---:|")
    for be in backends:
        cases = [
            (
                "out: 16k mono fltp 10 ms -> 48k stereo s16 960",
                out_frames,
                True,
                lambda b=be: OldAudioConverter("s16", RTC_SAMPLE_RATE, 2, backend=b),
                lambda b=be: AudioAdapter("s16", RTC_SAMPLE_RATE, 2, backend=b),
            ),
            (
                "in: 48k stereo s16 20 ms -> 16k mono fltp",
                in_frames,
                False,
                lambda b=be: OldAudioConverter("fltp", 16000, 1, backend=b),
                lambda b=be: AudioAdapter("fltp", 16000, 1, backend=b),
            ),
        ]
        for label, frames, chunk, old, new in cases:
            before, after = before_after_us(old, new, frames, chunk, repeats)
            print(f"| {label} | {be} | {before:.1f} | {after:.1f} | {before / after:.2f} |")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
