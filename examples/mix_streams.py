"""Mixing: a talker and a music bed mixed into one stream by ``Mixer``, each with its own gain, the
bed ducked by 12 dB halfway through; the mix written to a file and its levels printed.

Shows a source that takes other streams as inputs: ``Mixer([talker, bed], gains_db=[0, -6])``
aligns its inputs by timestamp on one sample clock, applies a gain per input, and starts a
pipeline of its own; ``set_gain_db(1, -18)`` changes the bed's gain from the next frame on. The
inputs here are another pipeline's output (a 330 Hz ``ToneSource`` through a ``Gain``) and a
generated speech-like talker, or a file (``--input``) resampled to the mix's rate. The frames are
collected, then written with a ``FileSink``.

    python examples/mix_streams.py                       # 6 s, writes mix.wav
    python examples/mix_streams.py --input talk.wav --out mix.wav --bed-db -12
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from media_nodes import ChannelMix, FileSink, FileSource, Gain, Mixer, Resample, ToneSource
from stream import AudioFrame, Pipeline
from stream.testing import speech_like, split_frames

RATE = 48000


async def talker(args: argparse.Namespace) -> AsyncIterator[Any]:
    if args.input:
        chain = [
            FileSource(args.input, video=False, name="talk"),
            ChannelMix(1, name="mono"),
            Resample(RATE, name="48k"),
        ]
        async for frame in Pipeline(chain, name="talker").process():
            yield frame
    else:
        x = speech_like(args.seconds, seed=3, rate=RATE).astype(np.float32)[None, :]
        for frame in split_frames(x, RATE, RATE // 50):
            yield frame


def bed(seconds: float) -> AsyncIterator[Any]:
    """A tone through a Gain: a pipeline's output as a Mixer input."""
    low = ToneSource(330.0, sample_rate=RATE, amplitude=0.2, duration_s=seconds, name="low")
    return Pipeline([low, Gain(-3.0, name="bed_gain")], name="bed").process()


def level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(max(float(np.mean(x.astype(np.float64) ** 2)), 1e-20)))


def tone_db(x: np.ndarray, hz: float) -> float:
    """The level of the ``hz`` component of ``x`` (dBFS RMS, by FFT over whole periods)."""
    spectrum = np.fft.rfft(x.astype(np.float64) * np.hanning(x.size))
    k = round(hz * x.size / RATE)
    amplitude = 2 * np.abs(spectrum[k - 2 : k + 3]).max() / np.sum(np.hanning(x.size))
    return float(20 * np.log10(max(amplitude / np.sqrt(2), 1e-10)))


async def main(args: argparse.Namespace) -> None:
    mixer = Mixer([talker(args), bed(args.seconds)], gains_db=[0.0, args.bed_db], name="mix")
    frames: list[AudioFrame] = []
    ducked = False
    pipeline = Pipeline([mixer], name="mix")
    async with pipeline:
        async for frame in pipeline.process():
            if not isinstance(frame, AudioFrame):
                continue  # events of the inputs' stages come through too
            frames.append(frame)
            t = (frame.pts or 0) / RATE
            if not ducked and t >= args.seconds / 2:
                # from the next frame the mixer makes (a few are already queued downstream)
                mixer.set_gain_db(1, args.bed_db - 12.0)
                ducked = True
                print(f"{t:4.1f} s  the bed ducked to {args.bed_db - 12.0:g} dB")
    y = np.concatenate([f.samples[0] for f in frames])
    await Pipeline([FileSink(args.out, name="output")], name="write").run(frames)
    print(f"mixed {len(frames)} frames ({y.size / RATE:.2f} s) into {args.out}")
    print("second  mix RMS   bed (330 Hz)")
    for t in range(int(y.size // RATE)):
        sec = y[t * RATE : (t + 1) * RATE]
        print(f"{t:4d}   {level_db(sec):6.1f} dB  {tone_db(sec, 330.0):6.1f} dB")
    print(pipeline.describe())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="the talker from a file; default: generated")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--bed-db", type=float, default=-6.0, help="the bed's gain in the mix")
    parser.add_argument("--out", default="mix.wav")
    asyncio.run(main(parser.parse_args()))
