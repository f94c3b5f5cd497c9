"""Noise suppression: RNNoise (``Denoise``) on a noisy talker, with the SNR before and after.

Shows a chain around a fixed-rate stage: ``Denoise`` runs at 48 kHz, so a file's audio is
resampled to it and back (the engine fuses the three into one native call per frame), and a
user's own stage beside built-in ones (``Keep``, which keeps what goes to the file). Without
``--input`` a speech-like talker (``stream.testing.speech_like``) gets white or pink noise at
``--snr-db``: the clean signal is known, so the SNR is measured exactly (aligned by the stage's
latency). With ``--input`` there is no clean signal: the SNR is estimated from frame levels
(speech: the loudest 10 % of 20 ms frames; noise: the quietest 10 %).

    python examples/denoise_file.py                          # generated, 4 s, white noise, 0 dB
    python examples/denoise_file.py --noise pink --snr-db 5 --out clean.wav
    python examples/denoise_file.py --input noisy.wav --out clean.wav
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import numpy as np

from media_nodes import Denoise, FileSink, FileSource, Resample
from stream import AudioFrame, Node, Pipeline
from stream.testing import add_noise, snr, speech_like, split_frames

RATE = 48000


def estimated_snr(x: np.ndarray, rate: int) -> float:
    """Speech over noise from 20 ms frame levels: the loudest 10 % over the quietest 10 %."""
    n = rate // 50
    frames = x[: x.size // n * n].reshape(-1, n)
    power = np.sort(np.mean(frames.astype(np.float64) ** 2, axis=1))
    k = max(1, power.size // 10)
    return float(10 * np.log10(np.mean(power[-k:]) / max(float(np.mean(power[:k])), 1e-20)))


class Keep(Node):
    """A user stage: passes audio on and keeps a copy (to measure what goes to the file)."""

    def __init__(self) -> None:
        super().__init__(name="keep")
        self.frames: list[AudioFrame] = []

    def process(self, item: Any) -> Any:
        if isinstance(item, AudioFrame):
            self.frames.append(item)
        return item

    def audio(self) -> np.ndarray:
        blocks = [f.samples[0] for f in self.frames]
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


async def read(path: str) -> tuple[list[AudioFrame], int]:
    """A file's audio as mono float frames, and its rate."""
    frames = await Pipeline([FileSource(path, video=False, channels=1)]).run()
    if not frames:
        raise SystemExit(f"{path}: no audio")
    return frames, frames[0].sample_rate


async def main(args: argparse.Namespace) -> None:
    denoise, keep = Denoise(name="denoise"), Keep()
    sink = [FileSink(args.out, name="output")] if args.out else []
    if args.input:
        frames, rate = await read(args.input)
        x = np.concatenate([f.samples[0] for f in frames])
        stages: list[Node] = [Resample(RATE, name="48k"), denoise, Resample(rate, name="back")]
        pipeline = Pipeline([*stages, keep, *sink], name="denoise")
        await pipeline.run(frames)
        print(f"{args.input}: {x.size / rate:.2f} s at {rate} Hz")
        print(f"estimated SNR in  {estimated_snr(x, rate):6.1f} dB")
        print(f"estimated SNR out {estimated_snr(keep.audio(), rate):6.1f} dB")
    else:
        clean = speech_like(args.seconds, seed=0, rate=RATE)
        noisy = add_noise(clean, args.noise, args.snr_db)
        pipeline = Pipeline([denoise, keep, *sink], name="denoise")
        await pipeline.run(split_frames(noisy[None, :], RATE, RATE // 50))
        y = keep.audio()
        lat = denoise.latency_samples  # the output lags the input by the model's frame
        skip = RATE // 2  # the model settles in its first half second
        end = clean.size - lat
        before = snr(clean[skip:end], noisy[skip:end])
        after = snr(clean[skip:end], y[skip + lat : end + lat])
        print(f"{args.noise} noise, {args.seconds:g} s of speech-like talker at 48 kHz")
        print(f"SNR in  {before:6.1f} dB")
        print(f"SNR out {after:6.1f} dB  ({after - before:+.1f} dB)")
    if args.out:
        print(f"wrote {args.out}")
    print(pipeline.describe())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="a noisy audio file; default: a generated talker")
    parser.add_argument("--out", help="write the denoised audio here")
    parser.add_argument("--seconds", type=float, default=4.0, help="generated length")
    parser.add_argument("--noise", choices=["white", "pink"], default="white")
    parser.add_argument("--snr-db", type=float, default=0.0, help="generated noise level")
    asyncio.run(main(parser.parse_args()))
