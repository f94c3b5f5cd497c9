"""``AudioAdapter``: one component that converts a stream of AudioFrames to one sample format,
rate, channel count and frame size.

Every place that adapts audio (the WebRTC tracks, ``SpeakerSink``, ``EchoCancel``'s reference,
file I/O) uses it. The work is the core's conversion kernels (``stream.kernels``: ChannelMix,
Resample, Rebuffer), built for the stream from its first frame and run as one chain: on the
engine one native ``Chain`` call per frame with the GIL released, else their Python twins one
after the other, with the same arguments and results. Sample-format changes (int16 or interleaved
in, int16 or interleaved out) are a cast and a transpose at the chain's edges, the arithmetic of
``FormatConvertKernel``, done without a native call.

When a frame comes at another rate or channel count than the stream so far, the chain's tail is
flushed first and a chain for the new input is built. Timing is kept as the stages keep it: a
chain that re-times audio (Resample, Rebuffer) stamps its output from a sample clock anchored at
the stream's first pts (``SampleClock``); one that does not keeps each frame's pts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .engine import engine_available, make_chain, resolve_mode, select_kernel
from .errors import BackendUnavailable, ConfigError, FormatError
from .frames import SAMPLE_FORMATS, AudioFrame, audio_frame_unchecked
from .kernel import Block
from .kernel_node import SampleClock, check_audio
from .kernels.channel_mix import SETTINGS as MIX_SETTINGS
from .kernels.channel_mix import ChannelMixKernel
from .kernels.rebuffer import SETTINGS as REBUFFER_SETTINGS
from .kernels.rebuffer import RebufferKernel
from .kernels.resample import SETTINGS as RESAMPLE_SETTINGS
from .kernels.resample import ResampleKernel

_INT16_SCALE = np.float32(32768.0)
_FROM_INT16 = np.float32(1.0 / 32768.0)
_INT16_MIN, _INT16_MAX = np.float32(-32768.0), np.float32(32767.0)


def to_fltp(samples: npt.NDArray[Any], planar: bool) -> Block:
    """Float32 planar ``(channels, samples)`` from a checked block of any of the four formats
    (int16 to float is ``x / 32768``, as FormatConvert does)."""
    block = samples if planar else samples.T
    if block.dtype == np.int16:
        out: Block = np.multiply(block, _FROM_INT16, dtype=np.float32, order="C")
        return out
    return np.ascontiguousarray(block, dtype=np.float32)


def from_fltp(block: Block, format: str) -> npt.NDArray[Any]:
    """``block`` (float32 planar, finite) in ``format``: float to int16 is
    ``clip(rint(x * 32768), -32768, 32767)``, as FormatConvert does."""
    dtype, planar = SAMPLE_FORMATS[format]
    if dtype == np.int16:
        scaled = block * _INT16_SCALE
        np.rint(scaled, out=scaled)
        np.minimum(scaled, _INT16_MAX, out=scaled)  # np.clip's wrapper costs more than the work
        np.maximum(scaled, _INT16_MIN, out=scaled)
        out: npt.NDArray[Any] = np.empty(
            block.shape if planar else block.shape[::-1], dtype=np.int16
        )
        out[...] = scaled if planar else scaled.T
        return out
    return block if planar else np.ascontiguousarray(block.T)


class TwinChain:
    """The Python twins of a native ``Chain``: the same ``process``/``flush``/``reset``/
    ``output_rate``, each kernel run on the output of the one before."""

    def __init__(self, kernels: list[Any]) -> None:
        self.kernels = kernels
        self._rates = [0] * len(kernels)  # each kernel's input rate, for flushing tails onward

    def __len__(self) -> int:
        return len(self.kernels)

    def _run(self, start: int, blocks: list[Block], rate: int) -> list[Block]:
        for i in range(start, len(self.kernels)):
            if not blocks:
                break
            kernel = self.kernels[i]
            self._rates[i] = rate
            out: list[Block] = []
            for block in blocks:
                out.extend(kernel.process(block, rate))
            rate = kernel.output_rate(rate)
            blocks = out
        return blocks

    def process(self, samples: Block, sample_rate: int) -> list[Block]:
        return self._run(0, [samples], sample_rate)

    def flush(self) -> list[Block]:
        out: list[Block] = []
        for i, kernel in enumerate(self.kernels):
            rate = self._rates[i]
            tail = kernel.flush()
            if tail and i + 1 < len(self.kernels):
                out.extend(self._run(i + 1, tail, kernel.output_rate(rate)))
            else:
                out.extend(tail)
        return out

    def reset(self) -> None:
        for kernel in self.kernels:
            kernel.reset()

    def output_rate(self, input_rate: int) -> int:
        rate = input_rate
        for kernel in self.kernels:
            rate = kernel.output_rate(rate)
        return rate


class AudioAdapter:
    """Converts a stream of AudioFrames to ``format`` (fltp, flt, s16p or s16), ``sample_rate``
    Hz, ``channels`` and ``frame_samples`` per frame; None keeps what comes in.

    ``channels=None`` keeps 1 and 2 channels and down-mixes more to ``fallback_channels`` (None:
    keeps any count). Channels are mixed as ChannelMix mixes (mono to any, any to mono).
    ``frame_samples``: every frame that many samples; ``flush()`` zero-pads the last. ``backend``:
    ``auto`` (default: ``REMOTEMEDIA_RUNTIME``, else auto), ``rust`` or ``python``; ``backend``
    after construction says which runs and ``backend_reason`` why. ``name`` prefixes the stage
    names errors carry.
    Raises ConfigError for bad settings, BackendUnavailable when ``rust`` cannot run, and
    FormatError (from ``convert``) for audio it cannot take.
    """

    def __init__(
        self,
        format: str = "fltp",
        sample_rate: int | None = None,
        channels: int | None = None,
        frame_samples: int | None = None,
        *,
        fallback_channels: int | None = 2,
        backend: str | None = None,
        name: str = "convert",
    ) -> None:
        if format not in SAMPLE_FORMATS:
            raise ConfigError(
                f"format must be one of {', '.join(SAMPLE_FORMATS)}, got {format!r}", stage=name
            )
        self.format = format
        self.sample_rate: int | None = (
            None
            if sample_rate is None
            else RESAMPLE_SETTINGS.validate(name, {"sample_rate": sample_rate})["sample_rate"]
        )
        self.channels: int | None = (
            None
            if channels is None
            else MIX_SETTINGS.validate(name, {"channels": channels})["channels"]
        )
        self.fallback_channels: int | None = (
            None
            if fallback_channels is None
            else MIX_SETTINGS.validate(name, {"channels": fallback_channels})["channels"]
        )
        self.frame_samples: int | None = (
            None
            if frame_samples is None
            else REBUFFER_SETTINGS.validate(name, {"samples": frame_samples})["samples"]
        )
        self.name = name
        self.requested_backend = backend
        self.backend, self.backend_reason = _pick_backend(name, backend)
        self._planar = SAMPLE_FORMATS[format][1]
        self._key: tuple[int, int] | None = None
        self._chain: Any = None  # a native Chain, a TwinChain, or None: nothing to run
        self._kernels: list[Any] = []
        self._resampler: Any = None
        self._retimes = False
        self._clock = SampleClock()
        self._rate_out = 0

    def __repr__(self) -> str:
        return (
            f"AudioAdapter({self.format!r}, {self.sample_rate}, {self.channels}, "
            f"{self.frame_samples}, backend={self.backend!r}, name={self.name!r})"
        )

    @property
    def latency_samples(self) -> int:
        """The resampler's delay in output samples (0 when nothing is resampled yet)."""
        return 0 if self._resampler is None else int(self._resampler.latency_samples)

    @property
    def stages(self) -> list[str]:
        """The stage names of the chain built for the current input (empty before a frame)."""
        return [str(k.stage) for k in self._kernels]

    def _build(self, rate: int, channels: int) -> None:
        """The chain for input at ``rate`` Hz with ``channels`` channels."""
        want = self.channels
        if want is None and channels > 2:
            want = self.fallback_channels
        mode = self.backend  # "rust" or "python", fixed at construction
        n = self.name

        def kernel(suffix: str, native: str, twin: type[Any], args: dict[str, Any]) -> Any:
            built, _, _ = select_kernel(f"{n}.{suffix}", mode, native, twin, args)
            return built

        mix = None
        if want is not None and want != channels:
            mix = kernel("mix", "ChannelMixKernel", ChannelMixKernel, {"channels": want})
        kernels: list[Any] = []
        # Mix down before resampling and up after it: the resampler filters fewer channels.
        if mix is not None and want is not None and want < channels:
            kernels.append(mix)
        self._resampler = None
        if self.sample_rate is not None and self.sample_rate != rate:
            self._resampler = kernel(
                "resample", "ResampleKernel", ResampleKernel, {"sample_rate": self.sample_rate}
            )
            kernels.append(self._resampler)
        if mix is not None and want is not None and want > channels:
            kernels.append(mix)
        if self.frame_samples is not None:
            kernels.append(
                kernel(
                    "rebuffer",
                    "RebufferKernel",
                    RebufferKernel,
                    {"samples": self.frame_samples, "frame_ms": None, "pad_final": True},
                )
            )
        self._kernels = kernels
        self._retimes = self._resampler is not None or self.frame_samples is not None
        if not kernels:
            self._chain = None
        elif mode == "rust":
            self._chain = make_chain(kernels)
        else:
            self._chain = TwinChain(kernels)
        self._rate_out = rate if self._chain is None else int(self._chain.output_rate(rate))
        self._clock.reset()
        self._key = (rate, channels)

    def kernels_for(self, rate: int, channels: int) -> list[Any]:
        """Build the chain for input at ``rate`` Hz with ``channels`` channels now (as the first
        such frame would) and return its kernels, in order: for a caller that runs them inside
        a larger native chain (``native_rtp.relay_chain``)."""
        self._build(rate, channels)
        return list(self._kernels)

    def convert(self, frame: Any) -> list[AudioFrame]:
        """The converted frames this frame completes (maybe none). Raises FormatError."""
        if (
            type(frame) is AudioFrame
            and frame.planar
            and type(frame.samples) is np.ndarray
            and frame.samples.dtype == np.float32
        ):
            audio = check_audio(self.name, frame)  # the common case: its quick look
        else:
            audio = check_audio(self.name, frame, fltp=False)
        if audio is None:
            raise FormatError(
                f"expected an AudioFrame, got {type(frame).__name__}", stage=self.name
            )
        rate = audio.sample_rate
        key = (rate, audio.channels)
        tail: list[AudioFrame] = []
        if key != self._key:
            if self._key is not None:
                tail = self.flush()
            self._build(*key)
        planar_f32 = audio.planar and audio.samples.dtype == np.float32
        chain = self._chain
        if chain is None:
            if audio.format == self.format:
                return [*tail, audio]  # nothing to do: the frame itself
            block = to_fltp(audio.samples, audio.planar)
            if not math.isfinite(float(block.sum())):  # as FormatConvert's check 4
                c, i = np.argwhere(~np.isfinite(block))[0]
                raise FormatError(f"non-finite sample at channel {c}, index {i}", stage=self.name)
            out = from_fltp(block, self.format)
            return [
                *tail,
                audio_frame_unchecked(out, rate, audio.pts, audio.time_base, self._planar),
            ]
        block = audio.samples if planar_f32 else to_fltp(audio.samples, audio.planar)
        blocks = chain.process(block, rate)
        if not self._retimes:
            return tail + [
                audio_frame_unchecked(
                    from_fltp(b, self.format), rate, audio.pts, audio.time_base, self._planar
                )
                for b in blocks
            ]
        clock = self._clock
        if not clock.started:
            clock.start(audio, self._rate_out)
        return tail + self._stamp(blocks)

    def _stamp(self, blocks: list[Block]) -> list[AudioFrame]:
        clock, rate, fmt, planar = self._clock, self._rate_out, self.format, self._planar
        return [
            audio_frame_unchecked(
                from_fltp(b, fmt), rate, clock.stamp(b.shape[1]), clock.time_base, planar
            )
            for b in blocks
        ]

    def flush(self) -> list[AudioFrame]:
        """The held tail (a padded last frame); the stream ends, and the next frame starts a new
        one (its own chain and clock)."""
        out: list[AudioFrame] = []
        if self._chain is not None:
            out = self._stamp(self._chain.flush())
        self._clock.reset()
        self._key = None
        return out

    def reset(self) -> None:
        """Drop the stream's state without emitting it (the next frame starts a new stream)."""
        if self._chain is not None:
            self._chain.reset()
        self._clock.reset()

    def close(self) -> None:
        """Release the chain; the adapter may be used again (it builds a new one)."""
        if self._chain is not None:
            self._chain.reset()
        self._chain = self._resampler = None
        self._kernels = []
        self._key = None
        self._clock.reset()


def _pick_backend(stage: str, requested: str | None) -> tuple[str, str]:
    """``(backend, reason)`` for an adapter: the engine's chain when it is built (and not refused),
    else the Python twins. Raises BackendUnavailable when ``rust`` was asked for without it."""
    mode, origin = resolve_mode(requested)
    if mode == "python":
        return "python", f"asked for ({origin})"
    if engine_available():
        return "rust", "native chain"
    if mode == "rust":
        raise BackendUnavailable(
            f"backend 'rust' was asked for ({origin}), but the engine is not built", stage=stage
        )
    return "python", "fallback: engine not built"


__all__ = ["AudioAdapter", "TwinChain", "from_fltp", "to_fltp"]
