"""Video: an mp4 scaled, turned gray and brought to a constant frame rate, written to a new mp4.

Shows the video stages in a file-to-file pipeline: ``FileSource`` decodes the pictures (and the
sound, which the video stages pass through untouched), ``Resize`` scales them, ``Grayscale``
drops the color, ``FrameRate`` drops or repeats pictures by timestamp to a constant rate, and
``FileSink`` encodes the result (h264, or mpeg4 without libx264). Without ``--input`` a test
clip is made first with PyAV: a moving color gradient at 30 fps, with a tone.

    python examples/video_resize.py                               # makes clip.mp4 -> small.mp4
    python examples/video_resize.py --input talk.mp4 --size 640x360 --fps 15 --out small.mp4
    python examples/video_resize.py --color                       # keep the color
"""

from __future__ import annotations

import argparse
import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from media_nodes import FileSink, FileSource, FrameRate, Grayscale, Resize
from stream import Pipeline, VideoFrame
from stream.node import Node


def make_clip(path: str, seconds: float, width: int = 640, height: int = 480) -> None:
    """A test mp4: a gradient sliding by 4 pixels a frame at 30 fps, and a 440 Hz tone."""
    fps, rate = 30, 48000
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(path, "w") as out:
        video: Any = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio: Any = out.add_stream("aac", rate=rate, layout="mono")
        x = np.arange(width)[None, :, None]
        y = np.arange(height)[:, None, None]
        for i in range(int(seconds * fps)):
            rgb = np.concatenate(
                [(x + 4 * i) % 256 + 0 * y, (y + 2 * i) % 256 + 0 * x, 128 + 0 * (x + y)], axis=2
            ).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        sound = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        sound.sample_rate, sound.pts, sound.time_base = rate, 0, Fraction(1, rate)
        out.mux(audio.encode(sound))
        out.mux(audio.encode(None))
        out.mux(video.encode(None))


class Count(Node):
    """A user stage: passes everything on, counting pictures and noting the last one's size."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.pictures = 0
        self.shape: tuple[int, int, str] | None = None

    def process(self, item: Any) -> Any:
        if isinstance(item, VideoFrame):
            self.pictures += 1
            self.shape = (item.width, item.height, item.format)
        return item


async def main(args: argparse.Namespace) -> None:
    src = args.input
    if src is None:
        src = str(Path(args.out).with_name("clip.mp4"))
        make_clip(src, args.seconds)
        print(f"made {src}: {args.seconds:g} s, 640x480 at 30 fps, with a tone")
    width, height = (int(v) for v in args.size.lower().split("x"))
    before, after = Count("in"), Count("out")
    stages: list[Node] = [FileSource(src, name="input"), before, Resize(width, height)]
    if not args.color:
        stages.append(Grayscale())
    stages += [FrameRate(args.fps), after, FileSink(args.out, name="output")]
    pipeline = Pipeline(stages, name="video")
    await pipeline.run()
    print(f"in:  {before.pictures} pictures, {before.shape}")
    print(f"out: {after.pictures} pictures, {after.shape}, {args.fps:g} fps -> {args.out}")
    with av.open(args.out) as check:
        stream = check.streams.video[0]
        print(
            f"written: {stream.codec_context.name} {stream.width}x{stream.height}, "
            f"{sum(1 for _ in check.decode(video=0))} frames"
        )
    print(pipeline.describe())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="a video file; default: a generated clip")
    parser.add_argument("--out", default="small.mp4")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT (320x240)")
    parser.add_argument("--fps", type=float, default=15.0, help="output frame rate (15)")
    parser.add_argument("--seconds", type=float, default=3.0, help="the generated clip's length")
    parser.add_argument("--color", action="store_true", help="keep the color (no Grayscale)")
    asyncio.run(main(parser.parse_args()))
