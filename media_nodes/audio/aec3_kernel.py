"""Aec3Kernel: the Python twin of the engine's AEC3 echo canceller, on WebRTC's own C++.

The Rust kernel (``rust_engine/src/dsp/aec3.rs``) runs ``sonora``, a pure-Rust port of WebRTC's
audio processing module; this twin runs the module itself, through ``livekit``'s
``rtc.AudioProcessingModule`` (PyPI ``livekit``, the ``twins`` extra), configured the same way:
AEC3 with its defaults and the high-pass filter, nothing else. livekit's module takes int16
frames of exactly 10 ms, so the twin quantises (``clip(rint(x * 32768))``) and scales back by
1/32768. The twins are different code of one algorithm: they agree in echo reduction and level
(measured in tests/audio/test_aec3.py), not sample for sample.

The node is ``EchoCancel`` (echo_cancel.py, with ``algorithm="aec3"``); the kernel's
settings are ``AEC3_SETTINGS`` in echo_settings.py, beside the node's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.errors import BackendUnavailable
from stream.kernel import Block

from .echo_pair import Int16Frames, PairKernel, far_mono
from .echo_settings import AEC3_FRAME_MS, AEC3_SETTINGS, AEC3_SUB_FRAME_MS

#: The sample rates the module runs natively.
RATES = (8000, 16000, 32000, 48000)
#: ``frame_ms``: a whole number of the module's 10 ms sub-frames, one to ten.
FRAME_MS = AEC3_FRAME_MS
SUB_FRAME_MS = AEC3_SUB_FRAME_MS
#: The output's delay behind the near-end input, in samples, per rate (the module's framing,
#: band split and suppression filter; measured on both twins, tests/audio/test_aec3.py).
LATENCY_SAMPLES = {8000: 88, 16000: 128, 32000: 260, 48000: 430}
#: The kernel's settings: ``AEC3_SETTINGS`` of echo_settings.py (EchoCancel's, one definition).
SETTINGS = AEC3_SETTINGS


class _Apm:
    """One livekit audio processing module and the sub-frame being filled."""

    def __init__(self, rate: int, far_channels: int, frame: int) -> None:
        from livekit import rtc

        self.rtc = rtc
        self.apm = rtc.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)
        self.rate, self.far_channels, self.frame = rate, far_channels, frame
        self.sub = rate * SUB_FRAME_MS // 1000
        self.frames = Int16Frames(self.sub)
        self.done: list[Block] = []

    def run(self) -> None:
        """One 10 ms sub-frame: render (the far end) then capture (the near end)."""
        rtc, sub = self.rtc, self.sub
        far = rtc.AudioFrame(bytearray(self.frames.far.tobytes()), self.rate, 1, sub)
        self.apm.process_reverse_stream(far)
        near = rtc.AudioFrame(bytearray(self.frames.near.tobytes()), self.rate, 1, sub)
        self.apm.process_stream(near)
        out = np.frombuffer(near.data, dtype=np.int16, count=sub)
        self.done.append(out.astype(np.float32) / np.float32(32768.0))

    @property
    def done_samples(self) -> int:
        return self.sub * len(self.done)


class Aec3Kernel(PairKernel):
    """Python twin of ``stream._engine.Aec3Kernel``: WebRTC AEC3 on livekit's module.

    ``process(near, far, sample_rate)``: ``near`` a ``(1, n)`` float32 block, ``far`` ``(C, n)``
    (averaged to mono), at 8, 16, 32 or 48 kHz; returns zero or one ``(1, k * frame)`` block of
    echo-cancelled near-end, ``latency_samples`` behind the input. Raises ``FormatError`` for
    bad blocks, ``ConfigError`` for a bad ``frame_ms``, ``BackendUnavailable`` without livekit.
    """

    def __init__(self, frame_ms: float = 20.0, *, stage: str = "echo_cancel") -> None:
        super().__init__(stage=stage)
        values = SETTINGS.validate(stage, {"frame_ms": frame_ms}, kernel=True)
        self.frame_ms: float = values["frame_ms"]
        try:
            import livekit.rtc  # noqa: F401  (checked here, used per stream)
        except ImportError as exc:
            raise BackendUnavailable(
                f"the AEC3 twin needs livekit ({exc}); pip install 'remotemedia[twins]'",
                stage=stage,
            ) from exc
        self._st: _Apm | None = None

    @property
    def frame_samples(self) -> int | None:
        return None if self._st is None else self._st.frame

    @property
    def pending_samples(self) -> int:
        return 0 if self._st is None else self._st.frames.fill + self._st.done_samples

    @property
    def latency_samples(self) -> int:
        return 0 if self._st is None else LATENCY_SAMPLES[self._st.rate]

    def rate_problem(self, rate: int) -> str | None:
        if rate in RATES:
            return None
        return f"AEC3 runs at 8000, 16000, 32000 or 48000 Hz, got {rate} Hz; put Resample before it"

    def process(self, near: Any, far: Any, sample_rate: int) -> list[Block]:
        st = self._st
        started = None if st is None else (st.rate, st.far_channels)
        x, f, rate = self.check_pair(near, far, sample_rate, started)
        if st is None:
            sub = rate * SUB_FRAME_MS // 1000
            st = self._st = _Apm(rate, f.shape[0], sub * int(self.frame_ms) // SUB_FRAME_MS)
        out: list[Block] = []
        for _ in st.frames.feed(x[0], far_mono(f)):
            st.run()
            if st.done_samples == st.frame:
                out += st.done
                st.done = []
        return [np.concatenate(out)[None, :]] if out else []

    def flush(self) -> list[Block]:
        st, out = self._st, []
        if st is not None:
            if st.frames.fill:
                held = st.frames.pad()
                st.run()
                st.done[-1] = st.done[-1][:held]
            if st.done:
                out = [np.concatenate(st.done)[None, :]]
        self.reset()
        return out

    def reset(self) -> None:
        self._st = None


__all__ = ["FRAME_MS", "LATENCY_SAMPLES", "RATES", "SETTINGS", "Aec3Kernel"]
