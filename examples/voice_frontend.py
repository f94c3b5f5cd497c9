"""Shows the basic streaming API: stereo 48 kHz frames in, 16 kHz mono frames out with
``async for``, a user's own Python stage between native ones, and which backend each stage ran on.

    python examples/voice_frontend.py
"""

from __future__ import annotations

import asyncio

import numpy as np

from media_nodes import ChannelMix, Gain, Resample
from stream import AudioFrame, Node, Pipeline
from stream.testing import split_frames, tone


class PeakMeter(Node):
    """A user stage in plain Python: records each frame's peak and passes the frame on."""

    def __init__(self) -> None:
        super().__init__(name="peak")
        self.peaks: list[float] = []

    def process(self, frame: AudioFrame) -> AudioFrame:
        self.peaks.append(float(np.abs(frame.samples).max()))
        return frame


async def main() -> None:
    frames = split_frames(tone(440, 2.0, 48000, channels=2), 48000, 960)
    meter = PeakMeter()
    pipeline = Pipeline(
        [ChannelMix(channels=1), Gain(gain_db=-6.0), meter, Resample(sample_rate=16000)],
        name="voice",
    )
    async with pipeline:
        out = [frame async for frame in pipeline.process(frames)]
    print(
        f"{len(frames)} frames in, {len(out)} out; last: {out[-1].samples.shape} at "
        f"{out[-1].sample_rate} Hz, pts {out[-1].pts}; peak after gain {max(meter.peaks):.3f}"
    )
    print(pipeline.describe())


if __name__ == "__main__":
    asyncio.run(main())
