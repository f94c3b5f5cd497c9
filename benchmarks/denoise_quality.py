"""Denoise quality: SNR gain on a speech-like signal (stream.testing.speech_like: vowels through
formant filters) plus white or pink noise, Rust kernel vs Python twin, and how far noise alone
is attenuated. Each output is aligned by its kernel's own latency before the SNR is taken.

    python benchmarks/denoise_quality.py           # 4 s of signal per case
    python benchmarks/denoise_quality.py --smoke   # 1 s: proves it runs
"""

from __future__ import annotations

import argparse

import numpy as np
import numpy.typing as npt

from media_nodes.audio.denoise import DenoiseKernel as PythonDenoise
from stream import engine_available
from stream.testing import add_noise, snr, speech_like

RATE = 48000
SKIP = RATE // 2  # the model settles in its first half second


def denoise(kernel: object, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    outs: list[npt.NDArray[np.float32]] = []
    for i in range(0, x.shape[-1], 960):  # 20 ms frames, as a live stream sends them
        outs += kernel.process(np.ascontiguousarray(x[None, i : i + 960]), RATE)  # type: ignore[attr-defined]
    outs += kernel.flush()  # type: ignore[attr-defined]
    return np.concatenate(outs, axis=1)[0]


def main(smoke: bool) -> None:
    seconds = 1.0 if smoke else 4.0
    clean = speech_like(seconds, seed=0)
    backends = {"python": PythonDenoise}
    if engine_available():
        from stream import _engine

        backends["rust"] = _engine.DenoiseKernel
    print(f"# Denoise: SNR gain on {seconds:.0f} s of speech-like signal plus noise, dB")
    print(f"{'noise':>6} {'SNR in':>7} " + " ".join(f"{b:>8}" for b in backends))
    for kind in ("white", "pink"):
        for snr_in in (0, 5, 10):
            noisy = add_noise(clean, kind, snr_in)
            gains = []
            for make in backends.values():
                kernel = make(stage="denoise")
                y = denoise(kernel, noisy)
                lag = kernel.latency_samples
                out = y[lag:][: clean.size - lag]
                ref = clean[: out.size]
                before = snr(clean[SKIP:], noisy[SKIP:])
                gains.append(snr(ref[SKIP:], out[SKIP:]) - before)
            print(f"{kind:>6} {snr_in:>7} " + " ".join(f"{g:>+8.1f}" for g in gains))
    rng = np.random.default_rng(1)
    quiet = (0.01 * rng.standard_normal(clean.size)).astype(np.float32)  # -40 dBFS RMS
    cuts = []
    for make in backends.values():
        y = denoise(make(stage="denoise"), quiet)
        cuts.append(10 * np.log10(np.mean(quiet[SKIP:] ** 2) / np.mean(y[SKIP : quiet.size] ** 2)))
    print(
        "noise alone (-40 dBFS) attenuated by: "
        + ", ".join(f"{b} {c:.1f} dB" for b, c in zip(backends, cuts, strict=True))
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    main(parser.parse_args().smoke)
