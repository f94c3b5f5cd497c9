"""Audio devices: what PortAudio sees (``list_devices``) and how a node's ``device=`` picks one."""

from __future__ import annotations

from typing import Any

from stream.kernel import config_error

from ._portaudio import DeviceInfo, query_devices


def list_devices() -> list[dict[str, Any]]:
    """Every audio device PortAudio sees, in index order.

    Each is a dict: ``index``, ``name``, ``host_api``, ``max_input_channels``,
    ``max_output_channels``, ``default_sample_rate`` (Hz, float), and ``default_input`` /
    ``default_output`` (bool: the system's default device of that kind). Raises
    BackendUnavailable when sounddevice or PortAudio is missing.
    """
    return [device.as_dict() for device in query_devices()]


def check_device_arg(stage: str, device: Any) -> None:
    """ConfigError unless ``device`` is None, an index >= 0 or a non-empty name."""
    if device is None:
        return
    if isinstance(device, bool) or not isinstance(device, int | str):
        raise config_error(
            stage, f"device must be None, an index or a name, got {type(device).__name__}"
        )
    if isinstance(device, int) and device < 0:
        raise config_error(stage, f"device index must be >= 0, got {device}")
    if isinstance(device, str) and not device.strip():
        raise config_error(stage, "device name must not be empty")


def _describe(devices: list[DeviceInfo], kind: str) -> str:
    if not devices:
        return f"no {kind} devices found"
    return f"{kind} devices: " + ", ".join(f"{d.index} {d.name!r}" for d in devices)


def find_device(stage: str, device: int | str | None, kind: str) -> DeviceInfo:
    """The device a node's ``device=`` names, for ``kind`` ``"input"`` or ``"output"``.

    None is the system default of that kind; an int is a PortAudio index; a string matches a
    name exactly (case-insensitive) or else as the only device whose name contains it. Raises
    ConfigError, listing the devices of that kind, when none (or several) match.
    """
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    usable = [d for d in query_devices() if getattr(d, channels) > 0]
    if device is None:
        default = [d for d in usable if (d.default_input if kind == "input" else d.default_output)]
        if not default:
            raise config_error(stage, f"no default {kind} device; {_describe(usable, kind)}")
        return default[0]
    if isinstance(device, int):
        by_index = [d for d in usable if d.index == device]
        if not by_index:
            raise config_error(
                stage, f"no {kind} device with index {device}; {_describe(usable, kind)}"
            )
        return by_index[0]
    wanted = device.strip().lower()
    exact = [d for d in usable if d.name.lower() == wanted]
    if exact:
        return exact[0]
    matches = [d for d in usable if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise config_error(
            stage,
            f"{device!r} matches several {kind} devices ({_describe(matches, kind)}); "
            "give more of the name or the index",
        )
    raise config_error(stage, f"no {kind} device matches {device!r}; {_describe(usable, kind)}")


__all__ = ["find_device", "list_devices"]
