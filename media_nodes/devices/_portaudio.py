"""The seam to PortAudio: the only module that touches ``sounddevice``.

``sounddevice`` is imported on first use, not when ``media_nodes`` is imported: it loads PortAudio
and scans the devices at import, which a pipeline without devices should not pay for (nor fail
on, where PortAudio is missing). It ships no type information, so it is reached through
``importlib`` and everything it returns is converted here into the typed values below. Its errors
are mapped once, here: a missing binding or library is ``BackendUnavailable``; a device that
cannot open as asked is ``ConfigError``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from stream.errors import BackendUnavailable
from stream.kernel import config_error

_sd: ModuleType | None = None

InputCallback = Callable[[npt.NDArray[np.float32], int, Any, Any], None]
OutputCallback = Callable[[npt.NDArray[np.float32], int, Any, Any], None]


def sounddevice() -> ModuleType:
    """The ``sounddevice`` module, imported (and PortAudio initialized) on the first call.

    Raises BackendUnavailable when the package or the PortAudio library is missing.
    """
    global _sd
    if _sd is None:
        try:
            _sd = importlib.import_module("sounddevice")
        except (ImportError, OSError) as exc:  # OSError: "PortAudio library not found"
            raise BackendUnavailable(
                "audio devices need the sounddevice package and the PortAudio library "
                f"(pip install sounddevice; apt-get install libportaudio2): {exc}"
            ) from exc
    return _sd


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device, as ``list_devices()`` reports it."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    default_input: bool
    default_output: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "host_api": self.host_api,
            "max_input_channels": self.max_input_channels,
            "max_output_channels": self.max_output_channels,
            "default_sample_rate": self.default_sample_rate,
            "default_input": self.default_input,
            "default_output": self.default_output,
        }


def _default_index(sd: ModuleType, kind: str) -> int | None:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except Exception:  # PortAudioError or ValueError: this machine has no default of that kind
        return None


def query_devices() -> list[DeviceInfo]:
    """Every device PortAudio sees, in index order."""
    sd = sounddevice()
    apis = [str(api["name"]) for api in sd.query_hostapis()]
    default_in, default_out = _default_index(sd, "input"), _default_index(sd, "output")
    devices = []
    for raw in sd.query_devices():
        index = int(raw["index"])
        devices.append(
            DeviceInfo(
                index=index,
                name=str(raw["name"]),
                host_api=apis[int(raw["hostapi"])],
                max_input_channels=int(raw["max_input_channels"]),
                max_output_channels=int(raw["max_output_channels"]),
                default_sample_rate=float(raw["default_samplerate"]),
                default_input=index == default_in,
                default_output=index == default_out,
            )
        )
    return devices


class AudioStream(Protocol):
    """The part of a ``sounddevice`` stream the device nodes use."""

    @property
    def active(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def latency(self) -> float: ...
    def start(self) -> None: ...
    def stop(self, ignore_errors: bool = True) -> None: ...
    def abort(self, ignore_errors: bool = True) -> None: ...
    def close(self, ignore_errors: bool = True) -> None: ...


def _cannot_open(kind: str, device: DeviceInfo, rate: int, channels: int) -> str:
    return (
        f"{kind} device {device.index} {device.name!r} cannot open at {rate} Hz with "
        f"{channels} channel(s) (it has at most {device.max_input_channels} input and "
        f"{device.max_output_channels} output channels, default rate "
        f"{device.default_sample_rate:g} Hz)"
    )


def check_settings(stage: str, kind: str, device: DeviceInfo, rate: int, channels: int) -> None:
    """ConfigError unless ``device`` can open for ``kind`` (input/output) as float32 at ``rate``."""
    sd = sounddevice()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device.index, samplerate=rate, channels=channels, dtype="float32")
    except Exception as exc:  # sounddevice raises PortAudioError or ValueError
        message = f"{_cannot_open(kind, device, rate, channels)}: {exc}"
        raise config_error(stage, message) from exc


def open_stream(
    stage: str,
    kind: str,
    device: DeviceInfo,
    rate: int,
    channels: int,
    blocksize: int,
    callback: InputCallback | OutputCallback,
    finished: Callable[[], None],
) -> AudioStream:
    """Open (not start) a float32 stream with a callback; ConfigError when the device refuses."""
    sd = sounddevice()
    cls = sd.InputStream if kind == "input" else sd.OutputStream
    try:
        stream: AudioStream = cls(
            samplerate=rate,
            blocksize=blocksize,
            device=device.index,
            channels=channels,
            dtype="float32",
            callback=callback,
            finished_callback=finished,
        )
    except Exception as exc:
        message = f"{_cannot_open(kind, device, rate, channels)}: {exc}"
        raise config_error(stage, message) from exc
    return stream


def callback_stop() -> type[BaseException]:
    """The exception a callback raises to end its stream after the current block."""
    stop: type[BaseException] = sounddevice().CallbackAbort
    return stop


class StreamClock:
    """Where a stream's sample 0 sits on PortAudio's stream time (seconds), from the callbacks.

    Each callback gives the stream time of its first sample (``inputBufferAdcTime`` or
    ``outputBufferDacTime``) and that sample's index ``pos``; ``time - pos / rate`` is an estimate
    of the origin. Callbacks run late, never early (and a host API may call several in a burst
    when a stream starts), so the smallest estimate is the best one. ``origin`` is the smallest
    over the current and the previous ``window_s`` of samples, so a device clock drifting from
    the stream clock is followed within two windows. It is published once ``settle_s`` of
    samples have been timed (the bursts of callbacks that fill a stream's buffers at its start
    give early estimates that later blocks correct). A host API that gives no times (0) leaves
    ``origin`` None. Written by the audio thread only; a float read is atomic.
    """

    __slots__ = (
        "_current",
        "_previous",
        "_rate",
        "_settle",
        "_settled",
        "_window",
        "_window_end",
        "origin",
    )

    def __init__(self, rate: int, window_s: float = 2.0, settle_s: float = 0.1) -> None:
        self._rate = rate
        self._window = max(1, round(window_s * rate))
        self._settle = round(settle_s * rate)
        self._settled: int | None = None  # the pos from which the origin is published
        self._window_end = self._window
        self._current: float | None = None
        self._previous: float | None = None
        self.origin: float | None = None

    def update(self, pos: int, stream_time: float) -> None:
        """Audio thread: the block starting at sample ``pos`` is at ``stream_time`` seconds."""
        if not stream_time > 0:
            return
        estimate = float(stream_time) - pos / self._rate
        if pos >= self._window_end:
            self._previous, self._current = self._current, None
            self._window_end = pos + self._window
        if self._current is None or estimate < self._current:
            self._current = estimate
        if self._settled is None:
            self._settled = pos + self._settle
        if pos >= self._settled:
            prev = self._previous
            self.origin = self._current if prev is None else min(prev, self._current)
