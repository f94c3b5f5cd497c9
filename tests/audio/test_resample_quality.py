"""Resampler quality on every backend: tones come through clean, out-of-band tones are rejected.

SNR is measured against a least-squares sine fit at the known frequency (amplitude and phase
free, so the filter delay and passband ripple do not count as noise), after the start transient.
"""

from __future__ import annotations

import numpy as np
import pytest

from media_nodes.audio import Resample
from stream.testing import join_frames, run_node, split_frames, tone

from ._util import db, rms, sine_fit, sine_snr_db

SECONDS = 0.25


async def resample(backend: str, signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    node = Resample(rate_out)
    out = await run_node(node, split_frames(signal, rate_in, rate_in // 50))
    assert node.backend == backend
    return join_frames(out)


def steady(out: np.ndarray, rate_out: int) -> np.ndarray:
    """The output after the filter's start transient (the first 20 ms)."""
    return out[0, rate_out // 50 :]


@pytest.mark.parametrize(
    ("rate_in", "rate_out", "freq", "min_snr"),
    [
        (48000, 16000, 1000, 85.0),
        (48000, 16000, 5000, 85.0),
        (44100, 48000, 1000, 80.0),
        (8000, 48000, 1000, 80.0),
        (48000, 8000, 1000, 80.0),
    ],
)
async def test_tone_snr(
    backend: str, rate_in: int, rate_out: int, freq: int, min_snr: float
) -> None:
    signal = tone(freq, SECONDS, rate_in, amplitude=0.5)
    out = steady(await resample(backend, signal, rate_in, rate_out), rate_out)

    amplitude, _ = sine_fit(out, freq, rate_out)
    assert amplitude == pytest.approx(0.5, rel=1e-3)  # passband gain within 0.01 dB
    snr = sine_snr_db(out, freq, rate_out)
    assert snr >= min_snr, f"{rate_in}->{rate_out} {freq} Hz: SNR {snr:.1f} dB"


async def test_tone_is_where_the_latency_says(backend: str) -> None:
    """The output is the input tone delayed by latency_seconds (phase within 1/100 period)."""
    rate_in, rate_out, freq = 48000, 16000, 1000
    node = Resample(rate_out)
    out = join_frames(await run_node(node, split_frames(tone(freq, SECONDS, rate_in), rate_in)))
    assert node.backend == backend
    node.initialize()
    node.process(split_frames(tone(freq, 0.02, rate_in), rate_in)[0])
    delay = node.kernel.latency_seconds
    node.cleanup()
    y = steady(out, rate_out).astype(np.float64)
    t = np.arange(rate_out // 50, rate_out // 50 + y.size) / rate_out
    ideal = 0.5 * np.sin(2 * np.pi * freq * (t - delay))
    assert db(rms(y - ideal) / 0.5) < -40  # a 1/100-period phase error is -24 dB


@pytest.mark.parametrize("freq", [13000, 9000, 20000])
async def test_rejects_tones_above_the_new_nyquist(backend: str, freq: int) -> None:
    rate_in, rate_out = 48000, 16000
    signal = tone(freq, SECONDS, rate_in, amplitude=0.5)
    out = steady(await resample(backend, signal, rate_in, rate_out), rate_out)
    rejection = db(max(rms(out), 1e-30) / rms(signal))  # exact cancellation is possible
    assert rejection <= -80.0, f"{freq} Hz: only {-rejection:.1f} dB down"


async def test_upsampling_adds_no_images(backend: str) -> None:
    """8k -> 48k: a 3 kHz tone's images (5, 11, 13 kHz ...) stay 80 dB down."""
    out = steady(await resample(backend, tone(3000, SECONDS, 8000), 8000, 48000), 48000)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / 48000)
    peak = spectrum[np.abs(freqs - 3000) < 50].max()
    images = spectrum[freqs > 4200].max()
    assert db(max(images, 1e-30) / peak) <= -80.0
