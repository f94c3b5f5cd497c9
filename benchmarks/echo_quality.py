"""EchoCancel quality and cost: ERLE on a synthetic echo path (media_nodes.audio.echo_cancel.
echo_scene: speech-like far-end through a 150 ms decaying-noise room response after 10 ms, a
speech-like near-end in double talk, -60 dBFS noise), the near-end's level and SNR in double
talk, and the kernel's cost per 20 ms frame on each backend.

    python benchmarks/echo_quality.py           # 30 s scenes, 3 seeds, 16 kHz
    python benchmarks/echo_quality.py --smoke   # 8 s, 1 seed: proves it runs
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from media_nodes.audio.echo_cancel import EchoCancelKernel as PythonEchoCancel
from media_nodes.audio.echo_cancel import echo_scene
from stream import engine_available


def cancel(kernel: Any, mic: Any, far: Any, rate: int) -> tuple[Any, float]:
    step = rate // 50  # 20 ms frames, as a live stream sends them
    outs = []
    t0 = time.perf_counter()
    for i in range(0, mic.shape[1], step):
        outs += kernel.process(mic[:, i : i + step].copy(), far[:, i : i + step].copy(), rate)
    outs += kernel.flush()
    per_frame = (time.perf_counter() - t0) / (mic.shape[1] / step) * 1e6
    return np.concatenate(outs, axis=1)[0].astype(np.float64), per_frame


def db(a: Any, b: Any) -> float:
    return float(10 * np.log10(np.sum(np.square(a)) / np.sum(np.square(b))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rate", type=int, default=16000)
    args = ap.parse_args()
    seconds, seeds, dt = (8.0, [0], (4.0, 6.0)) if args.smoke else (30.0, [0, 1, 2], (15.0, 18.0))
    kernels: dict[str, Any] = {"python": PythonEchoCancel}
    if engine_available():
        from stream import _engine

        kernels["rust"] = _engine.EchoCancelKernel
    print(f"rate {args.rate} Hz, {seconds:.0f} s, double talk {dt[0]:.0f}-{dt[1]:.0f} s")
    print(
        "backend seed | ERLE 1st half before dt | 2nd half | after dt | dt near level | dt SNR in/out"
    )
    for name, cls in kernels.items():
        for seed in seeds:
            s = echo_scene(seconds, rate=args.rate, double_talk=dt, seed=seed)
            r = s["rate"]
            mic, far = s["mic"].astype(np.float32)[None], s["far"].astype(np.float32)[None]
            y, _ = cancel(cls(), mic, far, r)
            res = y - s["near"] - s["noise"]
            a, b = int(dt[0] * r), int(dt[1] * r)

            def erle(i: int, j: int, res: Any = res, s: Any = s) -> float:
                return db(s["echo"][i:j], res[i:j])

            near = s["near"][a:b]
            print(
                f"{name:7} {seed:4} | {erle(0, a // 2):22.1f} | {erle(a // 2, a):8.1f} | "
                f"{erle(b + r, len(y)):8.1f} | {db(y[a:b], near + s['noise'][a:b]):+13.2f} | "
                f"{db(near, s['mic'][a:b] - near):+.1f} / {db(near, y[a:b] - near):+.1f}"
            )
    rate = 48000 if not args.smoke else args.rate
    s = echo_scene(4.0 if args.smoke else 10.0, rate=rate)
    mic, far = s["mic"].astype(np.float32)[None], s["far"].astype(np.float32)[None]
    for r in sorted({args.rate, rate}):
        if r != rate:
            s2 = echo_scene(4.0 if args.smoke else 10.0, rate=r)
            m2, f2 = s2["mic"].astype(np.float32)[None], s2["far"].astype(np.float32)[None]
        else:
            m2, f2 = mic, far
        costs = {
            name: min(cancel(cls(), m2, f2, r)[1] for _ in range(3))
            for name, cls in kernels.items()
        }
        shown = ", ".join(f"{k} {v:.1f}" for k, v in costs.items())
        print(f"cost per 20 ms frame at {r} Hz, filter 200 ms (µs, best of 3): {shown}")


if __name__ == "__main__":
    main()
