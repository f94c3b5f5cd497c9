"""One definition of a stage's settings: names, types, defaults, bounds, and which are live.

Each built-in stage declares its settings once, as a module-level ``SETTINGS``
(``Settings("Gain", Setting(...), ...)``). The node, the Python twin kernel and the arguments the
Rust kernel is built with (``Settings.kernel_args``: every value, explicitly) all take it; tests
hold the public signatures, the engine's ``__text_signature__``, ``stream/_engine.pyi`` and the
docs' headings to it.

Lifecycle (as gst-plugins-rs elements keep it): settings are validated once, at construction, and
are immutable afterwards, except the ``live`` ones. On a node class (``Node.settings``) each
setting becomes an attribute: a live one is a ``property`` whose setter validates the value and
hands it to the running kernel (``Node.apply_live``, on either backend, inside a fused native
chain too); any other raises ``ConfigError`` on assignment, before the run as during it
("threshold_db is fixed at construction; build a new EnergyVAD").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError


class _Marker:
    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


#: The default of a setting that has none: it must be given.
REQUIRED: Any = _Marker("REQUIRED")
#: ``Setting.kernel_default`` when the kernel's default is the node's.
SAME: Any = _Marker("SAME")


class Invalid(ValueError):
    """A setting's bound check failed; the message says what, without the stage."""


def _accept(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Setting:
    """One setting of a stage.

    ``check(value)`` returns the value as stored (e.g. a float) or raises ``Invalid`` with a
    one-line message. ``live``: may change while the stage runs. ``node``/``kernel``: whether the
    node's and the kernel's constructors take it; ``kernel_default``: the kernel's default where
    it differs from the node's (``REQUIRED`` when the node resolves the node's default first).
    """

    name: str
    type: str
    default: Any = REQUIRED
    check: Callable[[Any], Any] = _accept
    live: bool = False
    doc: str = ""
    node: bool = True
    kernel: bool = True
    kernel_default: Any = SAME

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def default_in_kernel(self) -> Any:
        return self.default if self.kernel_default is SAME else self.kernel_default

    def validate(self, stage: str, value: Any) -> Any:
        """``value`` as stored; ConfigError naming ``stage`` when it is out of bounds."""
        try:
            return self.check(value)
        except Invalid as exc:
            raise ConfigError(str(exc), stage=stage) from None


class Settings:
    """The settings of one stage (``stage`` is its class name, used in messages), in order.

    ``first(values)`` checks the values as given, before any one setting is (e.g. "give exactly
    one of samples or frame_ms"); ``relate(values)`` checks the validated settings against each
    other and may fill derived values. Both raise ``Invalid`` and see only the settings they
    were given (the kernel's, for a kernel).
    """

    def __init__(
        self,
        stage: str,
        *settings: Setting,
        first: Callable[[dict[str, Any]], None] | None = None,
        relate: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.stage = stage
        self._by_name = {s.name: s for s in settings}
        self._first = first
        self._relate = relate

    def __iter__(self) -> Iterator[Setting]:
        return iter(self._by_name.values())

    def __getitem__(self, name: str) -> Setting:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"Settings({self.stage!r}, {', '.join(self._by_name)})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def live(self) -> tuple[str, ...]:
        """The settings that may change while the stage runs."""
        return tuple(s.name for s in self if s.live)

    def node_settings(self) -> tuple[Setting, ...]:
        return tuple(s for s in self if s.node)

    def kernel_settings(self) -> tuple[Setting, ...]:
        return tuple(s for s in self if s.kernel)

    def defaults(self) -> dict[str, Any]:
        """The node's defaults (required settings left out)."""
        return {s.name: s.default for s in self if s.node and not s.required}

    def validate(
        self, stage: str, values: Mapping[str, Any], *, kernel: bool = False
    ) -> dict[str, Any]:
        """Every node (or, with ``kernel``, kernel) setting validated, in order; defaults fill
        what ``values`` lacks. ConfigError naming ``stage`` for a bad or missing value."""
        chosen = self.kernel_settings() if kernel else self.node_settings()
        given: dict[str, Any] = {}
        for s in chosen:
            given[s.name] = values.get(s.name, s.default_in_kernel if kernel else s.default)
            if given[s.name] is REQUIRED:
                raise ConfigError(f"{s.name} is required", stage=stage)
        if self._first is not None:
            try:
                self._first(given)
            except Invalid as exc:
                raise ConfigError(str(exc), stage=stage) from None
        out = {s.name: s.validate(stage, given[s.name]) for s in chosen}
        unknown = set(values) - set(out)
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)}", stage=stage)
        self._check_together(stage, out)
        return out

    def _check_together(self, stage: str, values: dict[str, Any]) -> None:
        if self._relate is not None:
            try:
                self._relate(values)
            except Invalid as exc:
                raise ConfigError(str(exc), stage=stage) from None

    def change(self, stage: str, current: Mapping[str, Any], name: str, value: Any) -> Any:
        """A live change of ``name``: the new value, checked alone and against the others."""
        setting = self._by_name.get(name)
        if setting is None or not setting.live:
            raise self.fixed(stage, name)
        new = setting.validate(stage, value)
        values = {**current, name: new}
        self._check_together(stage, values)
        return values[name]

    def fixed(self, stage: str, name: str) -> ConfigError:
        """The error of assigning a setting that is not live."""
        return ConfigError(
            f"{name} is fixed at construction; build a new {self.stage}", stage=stage
        )

    def kernel_args(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The kernel's constructor arguments from a node's values: every one, explicitly."""
        return {s.name: values[s.name] for s in self if s.kernel and s.name in values}

    def install(self, cls: type[Any]) -> None:
        """Make each node setting an attribute of ``cls``: a property with a setter when live
        (validates, stores, then ``obj.apply_live(name, value)``), read-only otherwise
        (assignment raises ``fixed``). Values live in ``obj._settings`` (see ``Node.configure``).
        """
        for s in self.node_settings():
            if s.name in cls.__dict__:
                continue  # the class defines it itself (a computed property)
            setattr(cls, s.name, _live(self, s.name) if s.live else _Fixed(self, s.name))


def _live(settings: Settings, name: str) -> property:
    def get(obj: Any) -> Any:
        value = obj._settings[name]
        return list(value) if isinstance(value, list) else value  # a copy: changes come here

    def put(obj: Any, value: Any) -> None:
        new = settings.change(obj.name, obj._settings, name, value)
        obj.apply_live(name, new)  # first: a value the running state refuses is not kept
        obj._settings[name] = new

    return property(get, put, doc=settings[name].doc)


class _Fixed:
    """A setting that is not live: readable, and assignment raises ConfigError."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.__doc__ = settings[name].doc

    def __get__(self, obj: Any, owner: type[Any] | None = None) -> Any:
        if obj is None:
            return self
        return obj._settings[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        raise self.settings.fixed(obj.name, self.name)


class NotASetting:
    """Hides a setting a base class has and a subclass does not (AttributeError)."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type[Any] | None = None) -> Any:
        raise AttributeError(f"{getattr(owner, '__name__', owner)} has no setting {self.name!r}")

    def __set__(self, obj: Any, value: Any) -> None:
        raise ConfigError(f"{type(obj).__name__} has no setting {self.name!r}", stage=obj.name)


# --------------------------------------------------------------------------- check builders


def as_number(name: str, value: Any) -> float:
    """``value`` as a float; anything that is not a real number (a bool is not) is ``Invalid``,
    as in Rust."""
    if isinstance(value, str | bytes | bool | np.bool_) or not hasattr(type(value), "__float__"):
        raise Invalid(f"{name} must be a number, got {value!r}")
    return float(value)


def in_range(
    name: str, low: float, high: float, *, open_low: bool = False, shown: str | None = None
) -> Callable[[Any], float]:
    """A check: a real number in ``[low, high]`` (``(low, high]`` with ``open_low``), as float;
    the message reads ``"{name} must be {shown}, got {v!r}"`` (``shown`` defaults to the
    interval as written, e.g. ``a number in [0, 1]``)."""

    def fmt(x: float) -> str:
        return str(int(x)) if x == int(x) and abs(x) < 1e15 else str(x)

    what = shown or f"a number in {'(' if open_low else '['}{fmt(low)}, {fmt(high)}]"

    def check(value: Any) -> float:
        v = as_number(name, value)
        if not (math.isfinite(v) and (low < v if open_low else low <= v) and v <= high):
            raise Invalid(f"{name} must be {what}, got {v!r}")
        return v

    return check


def int_in(name: str, low: int, high: int, what: str) -> Callable[[Any], int]:
    """A check: an int (not a bool) in ``low..=high``; message ``"{name} must be {what}, got
    {value!r}"``."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{name} must be an int, got {value!r}")  # the engine's words
        if not low <= value <= high:
            raise Invalid(f"{name} must be {what}, got {value!r}")
        return value

    return check


def one_of(name: str, choices: Any) -> Callable[[Any], str]:
    """A check: a str among ``choices``."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise Invalid(f"{name} must be one of {list(choices)}, got {value!r}")
        return value

    return check


__all__ = [
    "REQUIRED",
    "SAME",
    "Invalid",
    "NotASetting",
    "Setting",
    "Settings",
    "as_number",
    "in_range",
    "int_in",
    "one_of",
]
