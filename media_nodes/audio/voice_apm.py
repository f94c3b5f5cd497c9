"""The Python twins of the engine's voice front-end kernels, on WebRTC's own C++.

``HighPassKernel``, ``NoiseSuppressKernel`` and ``AutoGainKernel`` each run one component of
WebRTC's audio processing module through ``livekit``'s ``rtc.AudioProcessingModule`` (PyPI
``livekit``, the ``twins`` extra) with only that component's flag on; livekit's FFI then sets
the module's defaults (webrtc-sys ``AudioProcessingConfig``: ``noise_suppression.enabled``,
``gain_controller2.enabled``, ``high_pass_filter.enabled``), which the Rust kernels
(``rust_engine/src/dsp/voice.rs``, on ``sonora``) set too: the filter full band, noise
suppression at its default level (moderate), AGC2's adaptive digital controller at its defaults
with the limiter. livekit takes int16 frames of exactly 10 ms, so the twins quantise
(``clip(rint(x * 32768))``) and scale back by 1/32768.

Streaming as the Rust kernels: one module per channel (channels independent), 10 ms sub-frames
at 8, 16, 32 or 48 kHz; each call emits one block of every sub-frame completed; ``flush`` runs
the partial sub-frame zero-padded and emits the samples it held. The twins are different code
of one algorithm: they agree in level per window (tests/audio/test_voice.py), not sample for
sample.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from stream.errors import BackendUnavailable, FormatError
from stream.kernel import Block, PyKernel, StreamFormat

from .echo_pair import to_i16

#: The sample rates the module runs natively.
RATES = (8000, 16000, 32000, 48000)
SUB_FRAME_MS = 10
#: The output's delay behind the input, in samples, per component and rate (the module's
#: resampling to its processing rate, band split and the suppressor's overlap-add; measured on
#: both twins with chirp bursts, tests/audio/test_voice.py).
LATENCY_SAMPLES: dict[str, dict[int, int]] = {
    "high_pass": {8000: 24, 16000: 0, 32000: 3, 48000: 46},
    "noise_suppress": {8000: 72, 16000: 96, 32000: 195, 48000: 334},
    "auto_gain": {8000: 24, 16000: 0, 32000: 0, 48000: 0},
}
RATE_PROBLEM = (
    "the WebRTC audio processing module runs at 8000, 16000, 32000 or 48000 Hz, got {rate} Hz; "
    "put Resample before it"
)


def _rtc(stage: str) -> Any:
    try:
        from livekit import rtc
    except ImportError as exc:
        raise BackendUnavailable(
            f"the Python twin needs livekit ({exc}); pip install 'remotemedia[twins]'",
            stage=stage,
        ) from exc
    return rtc


class ApmKernel(PyKernel):
    """One component of livekit's audio processing module, streaming (see the module docs).

    Subclasses name the component (``component``: a key of ``LATENCY_SAMPLES``) and the flag of
    ``rtc.AudioProcessingModule`` that turns it on (``flag``).
    """

    component: ClassVar[str]
    flag: ClassVar[str]

    def __init__(self, *, stage: str) -> None:
        super().__init__(stage=stage)
        self._rtc = _rtc(stage)
        self._format = StreamFormat()
        self._apms: list[Any] = []
        self._pending = np.zeros((0, 0), np.int16)  # the sub-frame being filled, per channel
        self._fill = 0
        self._sub = 0

    @property
    def frame_samples(self) -> int | None:
        """Samples per 10 ms sub-frame of the stream (None before its first block)."""
        return self._sub or None

    @property
    def pending_samples(self) -> int:
        """Samples per channel buffered towards the next sub-frame."""
        return self._fill

    @property
    def latency_samples(self) -> int:
        """Delay of the output behind the input in samples (0 before the first block)."""
        return LATENCY_SAMPLES[self.component][self._format.rate] if self._format.rate else 0

    def _run(self, out: Block, at: int) -> None:
        """The full sub-frame of every channel, through its module, into ``out[:, at:]``."""
        rtc, sub, rate = self._rtc, self._sub, self._format.rate
        for c, apm in enumerate(self._apms):
            frame = rtc.AudioFrame(bytearray(self._pending[c].tobytes()), rate, 1, sub)
            apm.process_stream(frame)
            got = np.frombuffer(frame.data, dtype=np.int16, count=sub)
            out[c, at : at + sub] = got.astype(np.float32) / np.float32(32768.0)

    def _process(self, block: Block, rate: int) -> list[Block]:
        if rate not in RATES:
            raise self.error(FormatError, RATE_PROBLEM.format(rate=rate))
        if self._format.check(self, block, rate):
            channels = block.shape[0]
            self._sub = rate * SUB_FRAME_MS // 1000
            self._apms = [
                self._rtc.AudioProcessingModule(**{self.flag: True}) for _ in range(channels)
            ]
            self._pending = np.zeros((channels, self._sub), np.int16)
            self._fill = 0
        x, sub = to_i16(block), self._sub
        n = x.shape[1]
        subs = (self._fill + n) // sub
        out = np.empty((x.shape[0], subs * sub), np.float32)
        pos = 0
        for k in range(subs):
            take = sub - self._fill
            self._pending[:, self._fill :] = x[:, pos : pos + take]
            pos += take
            self._fill = 0
            self._run(out, k * sub)
        rest = n - pos
        self._pending[:, self._fill : self._fill + rest] = x[:, pos:]
        self._fill += rest
        return [out] if subs else []

    def flush(self) -> list[Block]:
        held, out = self._fill, []
        if self._apms and held:
            self._pending[:, held:] = 0
            full = np.empty((len(self._apms), self._sub), np.float32)
            self._run(full, 0)
            out = [np.ascontiguousarray(full[:, :held])]
        self.reset()
        return out

    def reset(self) -> None:
        self._format.clear()
        self._apms = []
        self._fill = 0
        self._sub = 0


__all__ = ["LATENCY_SAMPLES", "RATES", "ApmKernel"]
