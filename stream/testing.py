"""Test helpers shipped with the package: signal and frame factories, and ``run_node``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from .frames import AudioFrame
from .node import Node
from .pipeline import Pipeline


def tone(
    freq_hz: float,
    seconds: float,
    sample_rate: int = 48000,
    channels: int = 1,
    amplitude: float = 0.5,
) -> npt.NDArray[np.float32]:
    """A sine of ``freq_hz`` as a float32 ``(channels, samples)`` array."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * freq_hz * t)
    return np.repeat(wave[None, :], channels, axis=0).astype(np.float32)


def noise(
    seconds: float,
    sample_rate: int = 48000,
    channels: int = 1,
    amplitude: float = 0.1,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """Uniform white noise in [-amplitude, amplitude] as float32 ``(channels, samples)``."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    return rng.uniform(-amplitude, amplitude, (channels, n)).astype(np.float32)


def split_frames(
    samples: npt.NDArray[np.float32],
    sample_rate: int,
    sizes: int | Sequence[int] = 960,
    timed: bool = True,
) -> list[AudioFrame]:
    """Cut a ``(channels, samples)`` array into AudioFrames of ``sizes`` (an int, or a list that
    is cycled), with pts counted in samples when ``timed``."""
    seq = [sizes] if isinstance(sizes, int) else list(sizes)
    frames, pos, k = [], 0, 0
    n = samples.shape[1]
    while pos < n:
        size = seq[k % len(seq)]
        k += 1
        block = np.ascontiguousarray(samples[:, pos : pos + size])
        tb = Fraction(1, sample_rate) if timed else None
        frames.append(AudioFrame(block, sample_rate, pos if timed else None, tb))
        pos += size
    return frames


def join_frames(frames: Iterable[AudioFrame]) -> npt.NDArray[np.float32]:
    """Concatenate planar frames back into one ``(channels, samples)`` array."""
    blocks = [f.samples for f in frames]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((1, 0), np.float32)


async def run_node(node: Node, items: Iterable[Any], use_rust: bool = True) -> list[Any]:
    """Run one node over ``items`` in a pipeline of its own, flush included."""
    return list(await Pipeline([node], name=f"test:{node.name}").run(list(items), use_rust))


__all__ = ["join_frames", "noise", "run_node", "split_frames", "tone"]
