"""The voice front end's cost per 20 ms frame: HighPass, NoiseSuppress, AutoGain and
VoiceProcessor (the three in a row, no echo canceller), 16 and 48 kHz, both backends.

Each stage is the node, fed 20 ms mono frames of a speech-like talker with noise (the node's
own per-frame path: input checks, kernel, pts). Times are CPU time of this process
(``time.process_time``: what a stream costs a core, whatever else the machine runs), best of
``--repeats`` runs, in µs per 20 ms frame; "% core" is that over 20 ms.

    python benchmarks/voice_cost.py            # 10 s of audio, best of 3
    python benchmarks/voice_cost.py --smoke    # 1 s, one run: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from fractions import Fraction
from typing import Any

import numpy as np

from media_nodes.audio import AutoGain, HighPass, NoiseSuppress, VoiceProcessor
from stream import AudioFrame, Pipeline, engine_available
from stream.testing import speech_like

FRAME_S = 0.02
STAGES: dict[str, Any] = {
    "HighPass": HighPass,
    "NoiseSuppress": NoiseSuppress,
    "AutoGain": AutoGain,
    "VoiceProcessor": VoiceProcessor,
}


def frames(seconds: float, rate: int) -> list[AudioFrame]:
    x = speech_like(seconds, seed=1, rate=rate) * 0.3
    x += 10 ** (-50 / 20) * np.random.default_rng(0).standard_normal(len(x))
    n = int(rate * FRAME_S)
    return [
        AudioFrame(x[None, i : i + n].astype(np.float32), rate, i, Fraction(1, rate))
        for i in range(0, len(x) - n + 1, n)
    ]


def cost_us(cls: Any, backend: str, items: list[AudioFrame], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        node = cls(backend=backend)
        pipeline = Pipeline([node], stats=False)
        start = time.process_time()
        asyncio.run(pipeline.run(items))
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    seconds, repeats = (1.0, 1) if args.smoke else (args.seconds, args.repeats)
    backends = ("python", "rust") if engine_available() else ("python",)
    print(
        f"{'stage':<16} {'rate':>6} " + " ".join(f"{b + ' µs':>10} {'% core':>7}" for b in backends)
    )
    for rate in (16000, 48000):
        items = frames(seconds, rate)
        for name, cls in STAGES.items():
            cells = []
            for backend in backends:
                us = cost_us(cls, backend, items, repeats)
                cells.append(f"{us:>10.1f} {us / (FRAME_S * 1e6) * 100:>6.2f}%")
            print(f"{name:<16} {rate:>6} " + " ".join(cells))


if __name__ == "__main__":
    main()
