"""Shows file-to-file processing: any file ffmpeg reads (mp3, m4a, ogg, mp4 with video...) becomes
16 kHz mono 16-bit WAV, the input most speech models want, keeping its length to the sample.

    python examples/transcode.py talk.mp4 talk-16k.wav

The same with the command line: ``remotemedia process talk.mp4 talk-16k.wav --chain
"mix:1,resample:16000"``.
"""

from __future__ import annotations

import argparse
import asyncio

from media_nodes import ChannelMix, FileSink, FileSource, Resample
from stream import Pipeline


async def transcode(src: str, dst: str) -> Pipeline:
    pipeline = Pipeline(
        [
            FileSource(src, video=False, name="input"),
            ChannelMix(channels=1, name="mono"),
            Resample(sample_rate=16000, name="16k"),
            FileSink(dst, name="output"),
        ],
        name="transcode",
    )
    async with pipeline:
        async for _ in pipeline.process():
            pass  # the sink writes; nothing comes out
    return pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output", help="a .wav path")
    args = parser.parse_args()
    pipeline = asyncio.run(transcode(args.input, args.output))
    print(pipeline.describe())


if __name__ == "__main__":
    main()
