"""Denoise: RNNoise noise suppression at 48 kHz, one model state per channel.

The Rust kernel runs nnnoiseless (the Rust port of RNNoise, with the original 2018 model built
in); the Python twin runs the RNNoise C library that the ``pyrnnoise`` wheel ships
(``librnnoise.so``, RNNoise 0.2 and its newer model), called through ctypes. The two are the same
algorithm with different weights (no Python package ships the 2018 model nnnoiseless carries),
so their outputs agree only to the loose bound stated in docs/stages-audio.md: both suppress noise
by a similar amount, and output lengths, block boundaries and errors are identical, but the newer
model adds a frame of delay (``latency_samples`` is 960 here, 480 in Rust). The twin loads
the library straight from the installed package without importing ``pyrnnoise`` itself,
whose file helpers pull in audiolab and matplotlib.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import sys
from typing import Any

import numpy as np

from stream.errors import BackendUnavailable, FormatError
from stream.kernel import Block, PyKernel, StreamFormat
from stream.kernel_node import KernelNode
from stream.stage_settings import Invalid, Setting, Settings

FRAME = 480  # samples per RNNoise frame: 10 ms at 48 kHz
RATE = 48000
# RNNoise 0.2 delays its output by two frames (overlap-add plus the model's look-ahead), measured;
# nnnoiseless (the Rust kernel) by one.
LATENCY_SAMPLES = 2 * FRAME
SCALE = 32768.0  # RNNoise works on samples in the int16 range


def _mix(mix: Any) -> float:
    if isinstance(mix, bool) or not isinstance(mix, (int, float)):
        raise Invalid(f"mix must be a number, got {mix!r}")
    if not (math.isfinite(mix) and 0.0 <= mix <= 1.0):
        raise Invalid(f"mix must be a number in [0, 1], got {float(mix)}")
    return float(mix)


SETTINGS = Settings(
    "Denoise", Setting("mix", "float", 0.0, _mix, doc="fraction of the dry signal kept")
)


_LIB: ctypes.CDLL | None = None


def _library(stage: str) -> ctypes.CDLL:
    """``librnnoise`` from the installed pyrnnoise wheel, loaded once."""
    global _LIB
    if _LIB is not None:
        return _LIB
    spec = importlib.util.find_spec("pyrnnoise")  # locates the package without importing it
    name = {"darwin": "librnnoise.dylib", "win32": "rnnoise.dll"}.get(sys.platform, "librnnoise.so")
    paths = [os.path.join(p, name) for p in (spec.submodule_search_locations or [])] if spec else []
    path = next((p for p in paths if os.path.exists(p)), None)
    if path is None:
        raise BackendUnavailable(
            "the Python Denoise needs the RNNoise library of pyrnnoise (pip install pyrnnoise)",
            stage=stage,
        )
    lib = ctypes.CDLL(path)
    lib.rnnoise_create.argtypes = [ctypes.c_void_p]
    lib.rnnoise_create.restype = ctypes.c_void_p
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    lib.rnnoise_destroy.restype = None
    ptr = ctypes.POINTER(ctypes.c_float)
    lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ptr, ptr]
    lib.rnnoise_process_frame.restype = ctypes.c_float
    if lib.rnnoise_get_frame_size() != FRAME:
        raise RuntimeError("librnnoise frame size is not 480")
    _LIB = lib
    return lib


class _State:
    """One channel: an RNNoise state, the partial frame and the last two frames (dry signal)."""

    __slots__ = ("dry", "lib", "out", "pending", "ptr")

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.ptr = lib.rnnoise_create(None)
        self.pending = np.zeros(FRAME, np.float32)  # scaled input of the frame being filled
        self.out = np.zeros(FRAME, np.float32)
        self.dry = np.zeros(2 * FRAME, np.float32)  # the dry signal LATENCY_SAMPLES behind

    def run(self, mix: float) -> tuple[Block, float]:
        fp = ctypes.POINTER(ctypes.c_float)
        vad = float(
            self.lib.rnnoise_process_frame(
                self.ptr, self.out.ctypes.data_as(fp), self.pending.ctypes.data_as(fp)
            )
        )
        wet = self.out / np.float32(SCALE)
        if mix:
            wet = wet * np.float32(1.0 - mix) + self.dry[:FRAME] * np.float32(mix)
        self.dry[:FRAME] = self.dry[FRAME:]
        self.dry[FRAME:] = self.pending / np.float32(SCALE)
        return wet, vad

    def __del__(self) -> None:
        if self.ptr:
            self.lib.rnnoise_destroy(self.ptr)
            self.ptr = None


class DenoiseKernel(PyKernel):
    """Python twin of ``stream._engine.DenoiseKernel`` (docs/stages-audio.md)."""

    def __init__(self, mix: float = 0.0, *, stage: str = "denoise") -> None:
        super().__init__(stage=stage)
        self.mix: float = SETTINGS.validate(stage, {"mix": mix}, kernel=True)["mix"]
        self._lib = _library(self.stage)
        self._format = StreamFormat()
        self._states: list[_State] = []
        self._fill = 0
        self.vad_probability: list[float] = []

    latency_samples = LATENCY_SAMPLES
    frame_samples = FRAME

    @property
    def pending_samples(self) -> int:
        return self._fill

    def _process(self, block: Block, rate: int) -> list[Block]:
        if rate != RATE:
            raise self.error(
                FormatError,
                f"RNNoise runs at 48000 Hz, got {rate} Hz; put Resample(48000) before it",
            )
        if self._format.check(self, block, rate):
            self._states = [_State(self._lib) for _ in range(block.shape[0])]
            self._fill = 0
        n = block.shape[1]
        frames = (self._fill + n) // FRAME
        out = np.empty((block.shape[0], frames * FRAME), np.float32)
        vads = []
        for c, st in enumerate(self._states):
            x, pos, fill = block[c], 0, self._fill
            for f in range(frames):
                take = FRAME - fill
                np.multiply(x[pos : pos + take], np.float32(SCALE), out=st.pending[fill:])
                pos, fill = pos + take, 0
                out[c, f * FRAME : (f + 1) * FRAME], vad = st.run(self.mix)
            rest = n - pos
            np.multiply(x[pos:], np.float32(SCALE), out=st.pending[fill : fill + rest])
            if frames:
                vads.append(vad)
        self._fill = (self._fill + n) % FRAME
        if frames:
            self.vad_probability = vads
            return [out]
        return []

    def flush(self) -> list[Block]:
        n = self._fill
        out: list[Block] = []
        if self._states and n:
            tail = np.empty((len(self._states), n), np.float32)
            for c, st in enumerate(self._states):
                st.pending[n:] = 0.0
                tail[c] = st.run(self.mix)[0][:n]
            out = [tail]
        self.reset()
        return out

    def reset(self) -> None:
        self._format.clear()
        self._states = []
        self._fill = 0
        self.vad_probability = []


class Denoise(KernelNode):
    """Suppress noise with RNNoise (48 kHz only; put ``Resample(48000)`` before it otherwise).

    ``mix`` in [0, 1] is the fraction of the dry signal kept (0: fully denoised). Output lags
    the input by ``latency_samples`` (the kernel's: 480 samples in Rust, 960 in the Python twin)
    and is emitted in whole 480-sample frames, so up to 479 more samples wait in the buffer; the
    stream's sample count is kept (``flush()`` emits the last partial frame).
    """

    native_kernel = "DenoiseKernel"
    python_kernel = DenoiseKernel
    retimes = True
    settings = SETTINGS
    mix: float

    def __init__(
        self, mix: float = 0.0, *, name: str | None = None, backend: str | None = None
    ) -> None:
        super().__init__(name=name, backend=backend)
        self.configure(mix=mix)

    @property
    def latency_samples(self) -> int:
        """Delay of the denoised signal in samples, from the kernel (needs ``initialize()``)."""
        return int(self._kernel.latency_samples)
