"""The compiled engine (``rust_engine/``): audio kernels with the contract of docs/kernels.md.

Only ``stream.engine`` imports this module. Blocks are C-contiguous ``float32`` arrays of shape
``(channels, samples)``; every error is a ``stream.errors`` class whose ``stage`` attribute names
the kernel. A kernel used by two calls at once raises ``RuntimeError``.
"""

import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Final, Self, TypeAlias, final

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

__version__: Final[str]
__all__ = [
    "Aec3Kernel",
    "AutoGainKernel",
    "Chain",
    "ChannelMixKernel",
    "ColorConvertKernel",
    "DelayEstimator",
    "DenoiseKernel",
    "EchoCancelKernel",
    "EnergyVADKernel",
    "FormatConvertKernel",
    "FrameRateKernel",
    "G711Kernel",
    "GainKernel",
    "GrayscaleKernel",
    "HighPassKernel",
    "KalmanAecKernel",
    "Kernel",
    "LevelMeterKernel",
    "MixKernel",
    "NoiseSuppressKernel",
    "PassThroughKernel",
    "RebufferKernel",
    "ResampleKernel",
    "ResizeKernel",
    "RtpAudioLeg",
    "SileroVADKernel",
    "SocketRelay",
    "__version__",
    "selftest_panic",
]

_Block: TypeAlias = npt.NDArray[np.float32]

@disjoint_base
class Kernel:
    """Base class of the kernels a ``Chain`` can fuse; holds one stage's stream state."""

    def process(self, samples: _Block, sample_rate: int) -> list[_Block]:
        """Processes one block at ``sample_rate`` Hz; returns zero or more output blocks.

        Raises ``FormatError`` for a bad block (dtype, shape, empty, rate, non-finite, or a
        rate/channel change mid-stream in stateful kernels).
        """

    def flush(self) -> list[_Block]:
        """Ends the stream: returns any tail, then resets the stream state."""

    def reset(self) -> None:
        """Drops the stream state without emitting."""

    def output_rate(self, input_rate: int) -> int:
        """The sample rate (Hz) of the blocks emitted for input at ``input_rate`` Hz."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class PassThroughKernel(Kernel):
    """Returns its input array unchanged (skipped inside a ``Chain``)."""

    def __new__(cls, *, stage: str = "passthrough") -> Self: ...

@final
class GainKernel(Kernel):
    """Gain in dB; setting ``gain_db`` ramps linearly over ``ramp_ms``. Raises ``ConfigError``."""

    def __new__(
        cls, gain_db: float = 0.0, ramp_ms: float = 5.0, *, stage: str = "gain"
    ) -> Self: ...
    @property
    def gain_db(self) -> float: ...
    @gain_db.setter
    def gain_db(self, value: float) -> None: ...
    @property
    def ramp_ms(self) -> float: ...

@final
class ChannelMixKernel(Kernel):
    """Converts to ``channels`` (1..=64) channels: copy, duplicate mono, or average to mono."""

    def __new__(cls, channels: int, *, stage: str = "channel_mix") -> Self: ...
    @property
    def channels(self) -> int: ...

@final
class ResampleKernel(Kernel):
    """Streaming polyphase resampler to ``sample_rate`` Hz (1000..=384000)."""

    def __new__(cls, sample_rate: int, *, stage: str = "resample") -> Self: ...
    @property
    def sample_rate(self) -> int:
        """The output rate in Hz."""

    @property
    def input_rate(self) -> int | None:
        """The stream's input rate in Hz, ``None`` before its first block."""

    @property
    def latency_samples(self) -> int:
        """The filter delay in output samples, rounded (0 before a block or when in == out)."""

    @property
    def latency_seconds(self) -> float:
        """The filter delay in seconds."""

@final
class HighPassKernel(Kernel):
    """WebRTC's high-pass filter (sonora), full band.

    8, 16, 32 or 48 kHz, one module per channel; whole 10 ms sub-frames out.
    """

    def __new__(cls, *, stage: str = "high_pass") -> Self: ...
    @property
    def latency_samples(self) -> int:
        """Delay of the output in samples at the stream's rate (0 before the first block)."""

    @property
    def frame_samples(self) -> int | None:
        """Samples per 10 ms sub-frame of the stream (None before its first block)."""

    @property
    def pending_samples(self) -> int:
        """Samples per channel buffered towards the next sub-frame."""

@final
class NoiseSuppressKernel(Kernel):
    """WebRTC's noise suppressor (sonora), default (moderate) level.

    8, 16, 32 or 48 kHz, one module per channel; whole 10 ms sub-frames out.
    """

    def __new__(cls, *, stage: str = "noise_suppress") -> Self: ...
    @property
    def latency_samples(self) -> int:
        """Delay of the output in samples at the stream's rate (0 before the first block)."""

    @property
    def frame_samples(self) -> int | None:
        """Samples per 10 ms sub-frame of the stream (None before its first block)."""

    @property
    def pending_samples(self) -> int:
        """Samples per channel buffered towards the next sub-frame."""

@final
class AutoGainKernel(Kernel):
    """WebRTC's AGC2 (sonora): adaptive digital gain and limiter.

    8, 16, 32 or 48 kHz, one module per channel; whole 10 ms sub-frames out.
    """

    def __new__(cls, *, stage: str = "auto_gain") -> Self: ...
    @property
    def latency_samples(self) -> int:
        """Delay of the output in samples at the stream's rate (0 before the first block)."""

    @property
    def frame_samples(self) -> int | None:
        """Samples per 10 ms sub-frame of the stream (None before its first block)."""

    @property
    def pending_samples(self) -> int:
        """Samples per channel buffered towards the next sub-frame."""

@final
class DenoiseKernel(Kernel):
    """RNNoise noise suppression at 48 kHz (nnnoiseless); ``mix`` in [0, 1] keeps dry signal."""

    def __new__(cls, mix: float = 0.0, *, stage: str = "denoise") -> Self: ...
    @property
    def mix(self) -> float:
        """Fraction of the latency-aligned dry signal kept."""

    @property
    def latency_samples(self) -> int:
        """Delay of the denoised signal in samples (480)."""

    @property
    def frame_samples(self) -> int:
        """Samples per RNNoise frame (480)."""

    @property
    def pending_samples(self) -> int:
        """Samples per channel buffered towards the next frame."""

    @property
    def vad_probability(self) -> list[float]:
        """RNNoise's speech probability of the last complete frame, per channel."""

@final
class EchoCancelKernel:
    """Speex MDF echo cancellation (libspeexdsp): the far-end's echo out of a mono near-end."""

    def __new__(
        cls, filter_ms: float = 200.0, frame_ms: float = 20.0, *, stage: str = "echo_cancel"
    ) -> Self: ...
    def process(self, near: _Block, far: _Block, sample_rate: int) -> list[_Block]:
        """``near`` ``(1, n)``, ``far`` ``(C, n)`` float32; zero or one block of whole frames."""

    def flush(self) -> list[_Block]:
        """The partial frame's samples, then a reset."""

    def reset(self) -> None:
        """Drops the stream state, the adapted filter included."""

    @property
    def filter_ms(self) -> float: ...
    @property
    def frame_ms(self) -> float: ...
    @property
    def frame_samples(self) -> int | None: ...
    @property
    def filter_samples(self) -> int | None: ...
    @property
    def pending_samples(self) -> int: ...
    @property
    def latency_samples(self) -> int: ...
    @property
    def stage(self) -> str: ...

@final
class Aec3Kernel:
    """WebRTC's AEC3 echo canceller (the Rust port ``sonora``): the far-end's echo out of a mono
    near-end, at 8, 16, 32 or 48 kHz."""

    def __new__(cls, frame_ms: float = 20.0, *, stage: str = "echo_cancel") -> Self: ...
    def process(self, near: _Block, far: _Block, sample_rate: int) -> list[_Block]:
        """``near`` ``(1, n)``, ``far`` ``(C, n)`` float32; zero or one block of whole frames."""

    def flush(self) -> list[_Block]:
        """The samples not yet emitted, then a reset."""

    def reset(self) -> None:
        """Drops the stream state, the adapted filters included."""

    @property
    def frame_ms(self) -> float: ...
    @property
    def frame_samples(self) -> int | None: ...
    @property
    def pending_samples(self) -> int: ...
    @property
    def latency_samples(self) -> int: ...
    @property
    def stage(self) -> str: ...

@final
class KalmanAecKernel:
    """Our frequency-domain Kalman echo canceller: the far-end's echo out of a mono near-end, at
    8, 16, 32 or 48 kHz, one canceller block (2 ms up to 16 kHz, 4 ms above) behind the input."""

    def __new__(
        cls, filter_ms: float = 200.0, frame_ms: float = 20.0, *, stage: str = "echo_cancel"
    ) -> Self: ...
    def process(self, near: _Block, far: _Block, sample_rate: int) -> list[_Block]:
        """``near`` ``(1, n)``, ``far`` ``(C, n)`` float32; zero or one block of whole frames."""

    def flush(self) -> list[_Block]:
        """The samples not yet emitted, then a reset."""

    def shift_far(self, samples: int) -> int:
        """Carries the adapted filters over a move of the bulk delay (the far-end fed from now on
        ``samples`` later behind the near-end); returns the samples shifted by (whole blocks),
        0 when it cannot (then flush)."""

    def advance_far(self, far: _Block) -> int:
        """Far-end audio (channels averaged) played while the near-end was dropped: into the
        far-end history in whole blocks, no output, no adaptation; returns the samples taken
        (0 with no stream or between blocks)."""

    def rewind_far(self, samples: int) -> int:
        """The far-end fed from now on continues ``samples`` before where it stopped
        (negative: after), the echo path as it was; whole blocks; returns the samples moved."""

    def set_filter_ms(self, filter_ms: float) -> None:
        """Models ``filter_ms`` of echo path from now on (and in later streams); a running
        stream keeps what it learnt of the lags both lengths cover. ConfigError out of range."""

    def reset(self) -> None:
        """Drops the stream state, the adapted filters included."""

    @property
    def filter_ms(self) -> float: ...
    @property
    def frame_ms(self) -> float: ...
    @property
    def frame_samples(self) -> int | None: ...
    @property
    def pending_samples(self) -> int: ...
    @property
    def latency_samples(self) -> int: ...
    @property
    def stage(self) -> str: ...

@final
class DelayEstimator:
    """The bulk delay of an echo path from the signals (GCC-PHAT): the engine's twin of
    ``media_nodes.audio.echo_delay.DelayEstimator``, for ``EchoCancel(delay_ms="auto")``."""

    def __new__(
        cls,
        sample_rate: int,
        max_delay_ms: float = 1000.0,
        window_s: float = 4.0,
        lag_s: float = 0.1,
        *,
        stage: str = "echo_cancel",
    ) -> Self: ...
    def add_near(self, pos: int, samples: _Block) -> None:
        """Near-end audio ``(C, n)`` float32 (channels averaged) at absolute position ``pos``."""

    def add_far(self, pos: int, samples: _Block) -> None:
        """Reference audio at ``pos`` on the near-end's clock, delay 0."""

    def estimate(self, at: int) -> tuple[float, float] | None:
        """``(delay_ms, ratio)`` from the window ending ``lag`` before ``at``, or None (silent,
        or under half a second of near-end)."""

    @property
    def sample_rate(self) -> int: ...
    @property
    def lag(self) -> int: ...
    @property
    def max_delay(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def stage(self) -> str: ...

@final
class RebufferKernel(Kernel):
    """Re-cuts the stream into blocks of ``samples``, or ``frame_ms`` at the stream's rate."""

    def __new__(
        cls,
        samples: int | None = None,
        frame_ms: float | None = None,
        pad_final: bool = False,
        *,
        stage: str = "rebuffer",
    ) -> Self: ...
    @property
    def samples(self) -> int | None: ...
    @property
    def frame_ms(self) -> float | None: ...
    @property
    def pad_final(self) -> bool: ...

@final
class FormatConvertKernel:
    """Converts between PyAV sample formats ``fltp``, ``flt``, ``s16p`` and ``s16``."""

    def __new__(cls, format: str, *, stage: str = "format_convert") -> Self: ...
    def process(
        self, samples: npt.NDArray[np.float32] | npt.NDArray[np.int16], src_format: str
    ) -> npt.NDArray[np.float32] | npt.NDArray[np.int16]:
        """Converts ``samples`` (dtype and layout of ``src_format``) to ``format``."""

    @property
    def format(self) -> str:
        """The output sample format."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class G711Kernel:
    """ITU-T G.711 ``law`` (mu-law or A-law): float32 blocks to uint8 codes and back."""

    def __new__(cls, law: str = "mulaw", *, stage: str = "g711") -> Self: ...
    def encode(self, samples: _Block, sample_rate: int) -> npt.NDArray[np.uint8]:
        """The codes of ``samples`` (``(channels, samples)``, same shape)."""

    def decode(self, codes: npt.NDArray[np.uint8]) -> _Block:
        """float32 samples (``int16 / 32768``) of uint8 ``codes`` ``(channels, samples)``."""

    def reset(self) -> None:
        """Nothing to drop: the codec keeps no state."""

    def flush(self) -> list[_Block]:
        """Nothing to emit: the codec keeps no state."""

    @property
    def law(self) -> str:
        """The companding law, ``"mulaw"`` or ``"alaw"``."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class Chain:
    """Runs several kernels as one native call per block, with the GIL released."""

    def __new__(cls, kernels: list[Kernel]) -> Self: ...
    def process(self, samples: _Block, sample_rate: int) -> list[_Block]:
        """Runs one block through every kernel; errors name the kernel that raised."""

    def flush(self) -> list[_Block]:
        """Flushes each kernel in turn, pushing its tail through the kernels after it."""

    def reset(self) -> None:
        """Drops every kernel's stream state."""

    def output_rate(self, input_rate: int) -> int:
        """The sample rate (Hz) the chain emits for input at ``input_rate`` Hz."""

    def __len__(self) -> int: ...

def selftest_panic(message: str) -> None:
    """Panics inside the engine on purpose; raises ``stream.errors.EngineError``."""

@final
class LevelMeterKernel:
    """RMS and peak in dBFS of each block and of a sliding window (docs/stages-audio.md)."""

    def __new__(cls, window_ms: float = 300.0, *, stage: str = "level_meter") -> Self: ...
    def process(self, samples: _Block, sample_rate: int) -> tuple[float, float, float, float]:
        """Measures one block: ``(rms_db, peak_db, window_rms_db, window_peak_db)``.

        Raises ``FormatError`` for a bad block or a rate/channel change mid-stream.
        """

    def reset(self) -> None:
        """Drops the stream state: the next block starts a new stream and an empty window."""

    @property
    def window_ms(self) -> float: ...
    @property
    def window_samples(self) -> int | None:
        """The window length in samples of the current stream (None before its first block)."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

_Decision: TypeAlias = tuple[str, int, int]

@final
class EnergyVADKernel:
    """Speech/non-speech from analysis-frame energy with hysteresis and minimum durations."""

    def __new__(
        cls,
        threshold_db: float = -40.0,
        hysteresis_db: float = 6.0,
        min_speech_ms: float = 100.0,
        min_silence_ms: float = 300.0,
        frame_ms: float = 10.0,
        *,
        stage: str = "energy_vad",
    ) -> Self: ...
    def process(self, samples: _Block, sample_rate: int) -> list[_Decision]:
        """Analyzes one block; returns the decisions completed, ``(kind, sample, confirmed)``."""

    def flush(self) -> list[_Decision]:
        """Ends the stream (speech still on ends), then drops the stream state."""

    def reset(self) -> None:
        """Drops the stream state without deciding anything."""

    @property
    def threshold_db(self) -> float: ...
    @property
    def hysteresis_db(self) -> float: ...
    @property
    def min_speech_ms(self) -> float: ...
    @property
    def min_silence_ms(self) -> float: ...
    @property
    def frame_ms(self) -> float: ...
    @property
    def state(self) -> str:
        """``"silence"``, ``"maybe_speech"``, ``"speech"`` or ``"maybe_silence"``."""

    @property
    def speaking(self) -> bool: ...
    @property
    def pending_sample(self) -> int | None:
        """Where the unconfirmed run began (a candidate start or end), or None."""

    @property
    def analyzed_samples(self) -> int: ...
    @property
    def frame_samples(self) -> int | None: ...
    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class SileroVADKernel:
    """Speech/non-speech from the Silero VAD model (tract) over 512-sample windows of 16 kHz
    mono audio, with ``EnergyVADKernel``'s state machine. Only in an engine built with the cargo
    feature ``silero``. Raises ``BackendUnavailable`` when ``model_path`` cannot be read,
    ``ConfigError`` for bad settings or a file that is not the model."""

    def __new__(
        cls,
        model_path: str | os.PathLike[str],
        threshold: float = 0.5,
        neg_threshold: float | None = None,
        min_speech_ms: float = 250.0,
        min_silence_ms: float = 100.0,
        *,
        stage: str = "silero_vad",
    ) -> Self: ...
    def process(self, samples: _Block, sample_rate: int) -> list[_Decision]:
        """Analyzes one ``(1, samples)`` block at 16000 Hz; returns the decisions completed,
        ``(kind, sample, confirmed)``. Other rates and more channels are ``FormatError``."""

    def flush(self) -> list[_Decision]:
        """Ends the stream (speech still on ends), then drops the stream state."""

    def reset(self) -> None:
        """Drops the stream state without deciding anything."""

    @property
    def model_path(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def neg_threshold(self) -> float:
        """The quiet threshold, resolved (``threshold - 0.15``, at least 0.01, when not given)."""

    @property
    def min_speech_ms(self) -> float: ...
    @property
    def min_silence_ms(self) -> float: ...
    @property
    def frame_ms(self) -> float:
        """One model window: 32.0."""

    @property
    def state(self) -> str:
        """``"silence"``, ``"maybe_speech"``, ``"speech"`` or ``"maybe_silence"``."""

    @property
    def speaking(self) -> bool: ...
    @property
    def pending_sample(self) -> int | None:
        """Where the unconfirmed run began (a candidate start or end), or None."""

    @property
    def analyzed_samples(self) -> int: ...
    @property
    def frame_samples(self) -> int | None: ...
    @property
    def probability(self) -> float | None:
        """The speech probability of the last complete window (None before the first)."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class MixKernel:
    """Sums one block per input, each times its gain, in float32 (no clipping)."""

    def __new__(cls, gains_db: Sequence[float], *, stage: str = "mixer") -> Self: ...
    def process(self, blocks: Sequence[_Block | None], channels: int, samples: int) -> _Block:
        """Mixes ``(channels_k, samples)`` blocks (None: nothing from that input) into a new
        ``(channels, samples)`` block. Raises ``FormatError`` naming the input at fault."""

    def set_gain_db(self, index: int, gain_db: float) -> None:
        """Sets input ``index``'s gain in dB, from the next call on (no ramp)."""

    def reset(self) -> None:
        """Does nothing: the mix keeps no stream state."""

    @property
    def gains_db(self) -> list[float]: ...
    @property
    def inputs(self) -> int: ...
    @property
    def stage(self) -> str:
        """The stage name errors carry."""

# Video kernels (docs/stages-video.md): uint8 pictures as PyAV's ``to_ndarray`` lays them out.

_Pixels: TypeAlias = npt.NDArray[np.uint8]

@final
class ResizeKernel:
    """Scales pictures to ``width`` x ``height`` (1..=16384) with ``quality`` nearest, bilinear,
    bicubic or lanczos; keeps the pixel format. Raises ``ConfigError`` for bad settings."""

    def __new__(
        cls, width: int, height: int, quality: str = "bilinear", *, stage: str = "resize"
    ) -> Self: ...
    def process(self, pixels: _Pixels, format: str) -> _Pixels:
        """``pixels`` (laid out as ``format`` says) scaled; raises ``FormatError`` for a bad
        picture or an odd target size for a 4:2:0 format."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def quality(self) -> str: ...
    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class ColorConvertKernel:
    """Converts pictures to ``format`` (rgb24, bgr24, gray, yuv420p, nv12): BT.601, YUV limited
    range, gray full range."""

    def __new__(cls, format: str, *, stage: str = "color_convert") -> Self: ...
    def process(self, pixels: _Pixels, src_format: str) -> _Pixels:
        """``pixels`` (laid out as ``src_format`` says) in this kernel's format; raises
        ``FormatError`` for a bad picture or an odd size for a 4:2:0 target."""

    @property
    def format(self) -> str:
        """The output pixel format."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class GrayscaleKernel:
    """Converts pictures of any supported format to gray (full-range BT.601 luma)."""

    def __new__(cls, *, stage: str = "grayscale") -> Self: ...
    def process(self, pixels: _Pixels, src_format: str) -> _Pixels:
        """The gray picture of ``pixels``; raises ``FormatError`` for a bad picture."""

    @property
    def format(self) -> str:
        """The output pixel format, ``gray``."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class FrameRateKernel:
    """Constant frame rate by timestamp: which input frame fills which output slot.

    ``fps``: an int, float (nearest fraction with denominator up to 1001), ``Fraction`` or
    ``'num/den'`` string, above 0 and at most 1000. Raises ``ConfigError`` otherwise.
    """

    def __new__(cls, fps: int | float | Fraction | str, *, stage: str = "frame_rate") -> Self: ...
    def process(self, pts: int, time_base: Fraction) -> tuple[int, int]:
        """Registers a frame at ``pts * time_base`` s; returns ``(start, count)``: the frame
        registered before it fills output pts ``start .. start + count``. Raises
        ``FormatError`` for a bad timestamp or a time base change mid-stream."""

    def flush(self) -> tuple[int, int]:
        """End of stream: ``(start, count)`` of the last frame, then resets."""

    def reset(self) -> None:
        """Drops the stream state."""

    @property
    def fps(self) -> Fraction:
        """The output frame rate."""

    @property
    def time_base(self) -> Fraction:
        """The output time base, ``1 / fps``."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class SocketRelay:
    """``RtpAudioLeg.relay_socket``'s thread; ``stop()`` (or the last reference gone) ends it."""

    @property
    def running(self) -> bool:
        """Relaying: not stopped, the chain not failed."""

    def stop(self) -> None:
        """Ends the thread and waits for it (tens of milliseconds at most)."""

    def set_paused(self, paused: bool) -> None:
        """Drop the peer's audio (counted as ``paused_drops``) while true."""

    def take_passed(self) -> list[tuple[bytes, tuple[str, int]]]:
        """The datagrams that were not the peer's audio, oldest first, with their sender
        (at most 1024 held; past that the oldest go, counted as ``passed_dropped``)."""

    def take_error(self) -> Exception | None:
        """The chain's error that stopped the relaying (typed as ``relay`` raises it), once."""

    def counts(self) -> dict[str, int]:
        """``relayed``, ``sent``, ``bytes_sent`` (datagram bytes), ``send_failed``, ``passed``,
        ``passed_dropped``, ``paused_drops``, ``after_error``."""

@final
class RtpAudioLeg:
    """One session's audio RTP leg once DTLS gave the SRTP keys: SRTP datagrams in, decoded
    48 kHz audio out (adaptive jitter buffer, Opus PLC for gaps up to 5 packets); int16 blocks
    in, Opus in SRTP datagrams out. Receive and send may run on different threads.

    ``profile``: ``"SRTP_AEAD_AES_256_GCM"``, ``"SRTP_AEAD_AES_128_GCM"`` or
    ``"SRTP_AES128_CM_SHA1_80"``; ``rx_key``/``tx_key``: master key then master salt (aiortc's
    ``get_key_and_salt``). ``mid``: ``(id, value)`` of the one-byte MID header extension to send.
    Raises ``ConfigError`` (stage ``"rtp"``) for bad settings.
    """

    def __new__(
        cls,
        profile: str,
        rx_key: bytes,
        tx_key: bytes,
        *,
        remote_ssrc: int,
        local_ssrc: int,
        payload_type: int,
        decode_channels: int = 2,
        jitter_depth: int = 3,
        mid: tuple[int, bytes] | None = None,
    ) -> Self: ...
    def receive(self, datagram: bytes) -> list[tuple[int, _Block]]:
        """The ``(timestamp, (channels, n) float32)`` frames one SRTP datagram releases,
        concealed ones first; ``timestamp`` in samples from the first packet received. Never
        raises for what a peer sends: bad packets are dropped and counted in ``stats()``."""

    def send(self, samples: npt.NDArray[np.int16]) -> bytes:
        """One SRTP datagram of one int16 ``(samples, channels)`` block at 48 kHz (1 or 2
        channels, a whole Opus frame: 120 to 2880 samples). Raises ``FormatError`` otherwise."""

    def relay(self, datagram: bytes, chain: Chain) -> list[bytes]:
        """A whole round trip in one call: ``receive(datagram)``, each released frame through
        ``chain`` (as ``chain.process(frame, 48000)``), the output cut into 20 ms blocks (the
        stream's first block front-padded with zeros, the remainder kept), converted to int16
        and sent as ``send`` sends; returns the datagrams to send (0 or more). A frame that
        starts after the previous one ended (a gap not concealed) moves the send timestamp on
        by the gap. Raises ``ConfigError`` (stage ``"rtp"``) for a chain that does not emit
        48 kHz, ``FormatError`` for output that is not 1 or 2 channels, and the chain's own
        errors; the leg stays usable (output made before a chain error is sent next call)."""

    def relay_socket(
        self, fd: int, host: str, port: int, chain: Chain, wake_fd: int
    ) -> SocketRelay:
        """``relay`` on a thread of the engine's, on a duplicate of the UDP socket ``fd`` (the
        caller stops reading it meanwhile; it may keep sending on it): each datagram that is RTP
        of the peer's SSRC goes through ``chain`` and its datagrams go straight to ``(host,
        port)``; every other datagram waits in ``take_passed()`` and a byte is written to
        ``wake_fd`` (non-blocking; kept open until ``stop()`` returned) when the queue was
        empty or the chain failed. No Python runs per packet. Raises ``ConfigError`` for a
        chain that does not emit 48 kHz or a host that is not an IP address."""

    def levels(self) -> tuple[float, float, int, float, float, int]:
        """``(in_peak, in_sum_sq, in_count, out_peak, out_sum_sq, out_count)`` of the audio
        ``relay`` took from the network and got from the chain (as int16 / 32768) since the
        last call, over every sample of every channel; then resets them."""

    def stats(self) -> dict[str, int]:
        """The leg's counters: packets and bytes each way, drops by cause, jitter buffer and
        codec counts, RFC 3550 sequence and jitter figures, SSRCs; ``relay_frames``,
        ``relay_ns`` (time in the chain) and ``relay_gaps``."""
