"""The command line's chain syntax: ``"mix:1,resample:16000,gain:-3"``.

Each item is ``stage[:argument]``: ``mix:CHANNELS``, ``resample:RATE``, ``gain:DB``,
``rebuffer:SAMPLES`` or ``rebuffer:MSms``, ``format:FORMAT``, ``pass``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .node import Node


def _rebuffer(arg: str, backend: str | None) -> Node:
    from media_nodes import Rebuffer

    if arg.endswith("ms"):
        return Rebuffer(frame_ms=float(arg[:-2]), backend=backend)
    return Rebuffer(samples=int(arg), backend=backend)


def _builders() -> dict[str, tuple[str, Callable[[str, str | None], Node]]]:
    import media_nodes as m

    return {
        "mix": ("CHANNELS", lambda a, b: m.ChannelMix(int(a), backend=b)),
        "resample": ("RATE", lambda a, b: m.Resample(int(a), backend=b)),
        "gain": ("DB", lambda a, b: m.Gain(float(a), backend=b)),
        "rebuffer": ("SAMPLES or MSms", _rebuffer),
        "format": ("FORMAT", lambda a, b: m.FormatConvert(a, backend=b)),
        "pass": ("", lambda a, b: m.PassThrough(backend=b)),
    }


def parse_chain(spec: str, backend: str | None = None) -> list[Node]:
    """Nodes for a chain spec; ConfigError names the item that is wrong and why."""
    from .manifest import MAX_STAGES  # one bound on stages, however they are written

    builders = _builders()
    nodes: list[Node] = []
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if len(items) > MAX_STAGES:
        raise ConfigError(f"chain has {len(items)} items, more than {MAX_STAGES}")
    for position, item in enumerate(items, 1):
        stage, _, arg = item.partition(":")
        if stage not in builders:
            known = ", ".join(f"{k}:{v[0]}" if v[0] else k for k, v in builders.items())
            raise ConfigError(f"chain item {position} {item!r}: unknown stage; known: {known}")
        usage, build = builders[stage]
        if bool(usage) != bool(arg):
            want = f"needs an argument ({stage}:{usage})" if usage else "takes no argument"
            raise ConfigError(f"chain item {position} {item!r}: {want}")
        try:
            nodes.append(build(arg, backend))
        except (ValueError, ArithmeticError) as exc:  # includes ConfigError, and OverflowError
            raise ConfigError(f"chain item {position} {item!r}: {exc}") from None
    return nodes


def describe_chain_syntax() -> str:
    return ", ".join(f"{k}:{v[0]}" if v[0] else k for k, v in _builders().items())


__all__: list[Any] = ["describe_chain_syntax", "parse_chain"]
