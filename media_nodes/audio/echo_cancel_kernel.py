"""EchoCancelKernel: the Python twin of the Rust echo canceller, and the libspeexdsp loader.

The kernel is Speex's MDF canceller (a multidelay block frequency-domain adaptive filter with an
adaptive step size that keeps it stable through double talk), from libspeexdsp (Debian's
``libspeexdsp1``). The Rust kernel loads that library at run time; the Python twin here calls the
same library through ctypes, so the two backends compute the same samples (the parity test asserts
equality). No PyPI package was used for the twin: the Speex bindings there are unmaintained
(``speexdsp``, 2018, needs swig) or wrap a differently configured build (``pyaec`` bundles its own
library with the preprocessor on), and a ctypes call to the library the Rust kernel uses is the one
way to make the twins agree exactly. The node is ``EchoCancel`` (echo_cancel.py).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from stream.errors import BackendUnavailable, EngineError
from stream.kernel import Block

from .echo_pair import Int16Frames, PairKernel, far_mono
from .echo_settings import SETTINGS

LIBRARY = "libspeexdsp.so.1"
MIN_RATE, MAX_RATE = 8000, 96000
_SET_SAMPLING_RATE = 24  # speex_echo.h
_I16P = ctypes.POINTER(ctypes.c_int16)
_LIB: ctypes.CDLL | None = None


def _library(stage: str) -> ctypes.CDLL:
    """libspeexdsp, loaded once; BackendUnavailable (naming ``stage``) when it is missing."""
    global _LIB
    if _LIB is not None:
        return _LIB
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as exc:
        raise BackendUnavailable(
            f"echo cancellation needs libspeexdsp ({LIBRARY}: {exc}); install libspeexdsp1",
            stage=stage,
        ) from exc
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p, _I16P, _I16P, _I16P]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_ctl.restype = ctypes.c_int
    _LIB = lib
    return lib


def _samples(ms: float, rate: int) -> int:
    return max(1, round(ms * rate / 1000))


class _Speex:
    """One Speex echo canceller state and the partial frame being filled."""

    def __init__(
        self, stage: str, lib: ctypes.CDLL, rate: int, far_channels: int, frame: int, taps: int
    ) -> None:
        self.lib, self.rate, self.far_channels, self.frame = lib, rate, far_channels, frame
        self.ptr = lib.speex_echo_state_init(frame, taps)
        if not self.ptr:  # what the Rust kernel raises for the same failure
            raise EngineError("speex_echo_state_init failed", stage=stage)
        r = ctypes.c_int(rate)
        lib.speex_echo_ctl(self.ptr, _SET_SAMPLING_RATE, ctypes.byref(r))
        self.frames = Int16Frames(frame)
        self.out = np.zeros(frame, np.int16)

    def run(self) -> Block:
        self.lib.speex_echo_cancellation(
            self.ptr,
            self.frames.near.ctypes.data_as(_I16P),
            self.frames.far.ctypes.data_as(_I16P),
            self.out.ctypes.data_as(_I16P),
        )
        return self.out.astype(np.float32) / np.float32(32768.0)

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.lib.speex_echo_state_destroy(self.ptr)
            self.ptr = None


class EchoCancelKernel(PairKernel):
    """Python twin of ``stream._engine.EchoCancelKernel`` (docs/stages-audio.md).

    ``process(near, far, sample_rate)``: ``near`` a ``(1, n)`` float32 block, ``far`` ``(C, n)``
    (averaged to mono); returns zero or one ``(1, k * frame)`` block of echo-cancelled near-end.
    """

    def __init__(
        self, filter_ms: float = 200.0, frame_ms: float = 20.0, *, stage: str = "echo_cancel"
    ) -> None:
        super().__init__(stage=stage)
        values = SETTINGS.validate(
            stage, {"filter_ms": filter_ms, "frame_ms": frame_ms}, kernel=True
        )
        self.filter_ms: float = values["filter_ms"]
        self.frame_ms: float = values["frame_ms"]
        self._lib = _library(stage)
        self._st: _Speex | None = None

    latency_samples = 0

    @property
    def frame_samples(self) -> int | None:
        return None if self._st is None else self._st.frame

    @property
    def filter_samples(self) -> int | None:
        return None if self._st is None else _samples(self.filter_ms, self._st.rate)

    @property
    def pending_samples(self) -> int:
        return 0 if self._st is None else self._st.frames.fill

    def rate_problem(self, rate: int) -> str | None:
        if MIN_RATE <= rate <= MAX_RATE:
            return None
        return (
            f"echo cancellation runs at {MIN_RATE} to {MAX_RATE} Hz, got {rate} Hz; "
            "put Resample before it"
        )

    def process(self, near: Any, far: Any, sample_rate: int) -> list[Block]:
        st = self._st
        started = None if st is None else (st.rate, st.far_channels)
        x, f, rate = self.check_pair(near, far, sample_rate, started)
        if st is None:
            st = self._st = _Speex(
                self.stage,
                self._lib,
                rate,
                f.shape[0],
                _samples(self.frame_ms, rate),
                _samples(self.filter_ms, rate),
            )
        out = [st.run() for _ in st.frames.feed(x[0], far_mono(f))]
        return [np.concatenate(out)[None, :]] if out else []

    def flush(self) -> list[Block]:
        st, out = self._st, []
        if st is not None and st.frames.fill:
            held = st.frames.pad()
            out = [st.run()[:held][None, :].copy()]
        self.reset()
        return out

    def reset(self) -> None:
        self._st = None
