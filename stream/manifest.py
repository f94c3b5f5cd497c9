"""Pipeline manifests: a pipeline as JSON (or YAML, when PyYAML is installed) and back.

::

    {"version": 1, "name": "voice", "queue_size": 8,
     "nodes": [{"type": "ChannelMix", "name": "mix", "params": {"channels": 1}},
               {"type": "Resample", "params": {"sample_rate": 16000}},
               {"type": "my_package.stages:Denoiser", "params": {}}]}

``type`` is a built-in stage's class name (anything ``media_nodes`` exports) or ``module:Class``.
A ``module:Class`` may name public modules of ``media_nodes`` and ``stream``; any other module
(your own nodes, which define ``params()``) only when its name is under a prefix you allow:
``allow_modules=["my_package"]`` here, ``--allow-module my_package`` on the command line. The
check comes before the import, so a manifest cannot make this process import anything else.
The format's JSON Schema is ``stream/manifest.schema.json``; ``validate_manifest`` reports every
problem with its location, and stage names must be unique.

Reading is bounded, so a hostile file costs little: at most ``MAX_BYTES`` bytes, containers nested
at most ``MAX_DEPTH`` deep, ``MAX_YAML_ALIASES`` YAML aliases and ``MAX_VALUES`` values once the
aliases are expanded, ``MAX_STAGES`` stages. Each limit exceeded is a one-line ManifestError.
The limits are module attributes, read on each call.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ManifestError, StreamError
from .node import Node

if TYPE_CHECKING:
    from .pipeline import Pipeline

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
VERSION = 1

#: A manifest file's largest size. Real ones are a few kB; YAML this size loads in ~1 s of CPU.
MAX_BYTES = 256 * 1024
#: Deepest nesting of objects/arrays (the top level is 1). Python's parsers recurse per level.
MAX_DEPTH = 32
#: YAML aliases (``*name``) per file: each is a reference, so a few can stand for billions.
MAX_YAML_ALIASES = 64
#: Values (scalars and containers) in a manifest with its YAML aliases expanded.
MAX_VALUES = 100_000
#: Stages in one manifest.
MAX_STAGES = 256
#: The modules ``module:Class`` may always name (and their submodules).
DEFAULT_MODULES = ("media_nodes", "stream")

_PROBLEM_CHARS = 300  # a problem quoting a huge value is cut here, so it stays a readable line
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _LimitExceeded(Exception):
    """Raised by the YAML event check; load() turns it into a ManifestError naming the file."""


def load(source: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a manifest file: JSON, or YAML for .yaml/.yml (needs PyYAML).

    Raises ManifestError (one line) for a file that cannot be read or parsed, or that exceeds a
    limit (``MAX_BYTES``, ``MAX_DEPTH``, ``MAX_YAML_ALIASES``, ``MAX_VALUES``, ``MAX_STAGES``).
    """
    path = Path(source)
    label = str(path)
    text = _read(path, label)
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _parse_yaml(text, label)
    else:
        data = _parse_json(text, label)
    if not isinstance(data, dict):
        raise ManifestError(["the top level must be an object"], label)
    problems = _limit_problems(data)
    if problems:
        raise ManifestError(problems, label)
    return data


def _read(path: Path, label: str) -> str:
    limit = MAX_BYTES
    try:
        with path.open("rb") as file:
            raw = file.read(limit + 1)  # never more, whatever the file (or device) holds
    except OSError as exc:
        raise ManifestError([f"cannot read: {exc.strerror or exc}"], label) from None
    if len(raw) > limit:
        raise ManifestError([f"larger than {limit} bytes (stream.manifest.MAX_BYTES)"], label)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError([f"not UTF-8 text (byte {exc.start})"], label) from None


def _parse_json(text: str, label: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:  # the C decoder recurses per level; past ~1000 it raises this
        raise ManifestError([_too_deep("(top level)")], label) from None
    except ValueError as exc:  # JSONDecodeError, or an integer longer than int() converts
        raise ManifestError([f"not valid JSON: {exc}"], label) from None


def _parse_yaml(text: str, label: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ManifestError(["YAML manifests need PyYAML: pip install pyyaml"], label) from None
    # libyaml when PyYAML was built with it: several times faster than the pure-Python loader
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _check_yaml_events(yaml.parse(text, Loader=loader))  # before any node is composed
        return yaml.load(text, Loader=loader)
    except _LimitExceeded as exc:
        raise ManifestError([str(exc)], label) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ManifestError(
            [f"not valid YAML: {exc.problem or exc.context}{where}"], label
        ) from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an integer too long for int()
        raise ManifestError([f"not valid YAML: {exc}"], label) from None


def _check_yaml_events(events: Iterable[Any]) -> None:
    """Count nesting and aliases in the parser's events, which come from a loop, not recursion.

    The composer recurses once per level, and an alias is a reference that the walk in
    ``_limit_problems`` would otherwise meet expanded: so both are bounded here, up front.
    """
    import yaml

    depth = aliases = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise _LimitExceeded(
                    f"more than {MAX_YAML_ALIASES} YAML aliases (stream.manifest.MAX_YAML_ALIASES)"
                )
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise _LimitExceeded(_too_deep(f"line {mark.line + 1}" if mark else "(top level)"))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            depth -= 1


def _too_deep(where: str) -> str:
    return f"{where}: nested deeper than {MAX_DEPTH} levels (stream.manifest.MAX_DEPTH)"


def _limit_problems(data: Any) -> list[str]:
    """The first limit a manifest's data exceeds (stages, depth, expanded values), or none.

    Walks without recursion and stops at the limit, so shared or cyclic structures (YAML
    aliases, or a dict built in Python) cost at most ``MAX_VALUES`` steps.
    """
    nodes = data.get("nodes") if isinstance(data, Mapping) else None
    if isinstance(nodes, list) and len(nodes) > MAX_STAGES:
        return [f"nodes: {len(nodes)} stages, more than {MAX_STAGES} (stream.manifest.MAX_STAGES)"]
    count = 0
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return [
                f"more than {MAX_VALUES} values with YAML aliases expanded "
                "(stream.manifest.MAX_VALUES)"
            ]
        if isinstance(value, Mapping | list | tuple):
            if depth > MAX_DEPTH:
                return [_too_deep(_location(path))]
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            stack.extend((item, depth + 1, (*path, key)) for key, item in items)
    return []


def save(data: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a manifest as JSON, or YAML for .yaml/.yml (needs PyYAML)."""
    target = Path(path)
    if target.suffix.lower() in (".yaml", ".yml"):
        import yaml

        class NoAliases(yaml.SafeDumper):
            """Writes a value shared by two keys twice: load() counts aliases against a limit."""

            def ignore_aliases(self, data: Any) -> bool:
                return True

        target.write_text(yaml.dump(dict(data), Dumper=NoAliases, sort_keys=False))
    else:
        target.write_text(json.dumps(data, indent=2) + "\n")


def _schema_problems(data: Any) -> list[str]:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        problems.append(f"{_location(err.absolute_path)}: {err.message}")
    return problems


def _location(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _one_line(problem: str) -> str:
    flat = problem.replace("\r", "\\r").replace("\n", "\\n")
    return flat if len(flat) <= _PROBLEM_CHARS else flat[: _PROBLEM_CHARS - 3] + "..."


def _prefixes(allow_modules: Iterable[str]) -> tuple[str, ...]:
    if isinstance(allow_modules, str):  # one prefix given bare: not its characters
        allow_modules = [allow_modules]
    prefixes = tuple(allow_modules)
    for prefix in prefixes:
        if not (isinstance(prefix, str) and _MODULE_NAME.fullmatch(prefix)):
            raise ConfigError(f"allowed module prefix {prefix!r} is not a module name")
    return tuple(dict.fromkeys((*DEFAULT_MODULES, *prefixes)))  # in order, once each


def _module_allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def resolve_type(name: str, allow_modules: Iterable[str] = ()) -> type[Node]:
    """The node class a manifest ``type`` names. Raises ConfigError (one line).

    ``module:Class`` is refused before any import unless ``module`` is public and under
    ``media_nodes``, ``stream`` or a prefix in ``allow_modules`` (``"pkg"`` allows ``pkg`` and
    ``pkg.sub``, not ``pkg2``).
    """
    prefixes = _prefixes(allow_modules)
    if ":" not in name:
        if not _IDENTIFIER.fullmatch(name):
            raise ConfigError(f"node type {name!r} is neither a class name nor module:Class")
        module, attr, where = importlib.import_module("media_nodes"), name, "media_nodes"
    else:
        module_name, _, attr = name.partition(":")
        if not (_MODULE_NAME.fullmatch(module_name) and _IDENTIFIER.fullmatch(attr)):
            raise ConfigError(f"node type {name!r} is neither a class name nor module:Class")
        if any(part.startswith("_") for part in (*module_name.split("."), attr)):
            # private modules, __main__ (which runs a program when imported) and private classes
            raise ConfigError(f"node type {name!r}: names starting with '_' are not allowed")
        if not _module_allowed(module_name, prefixes):
            allowed = ", ".join(prefixes)
            raise ConfigError(
                f"node type {name!r}: module {module_name!r} is not allowed (allowed: {allowed}; "
                "allow more with --allow-module PREFIX or allow_modules=)"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import module {module_name!r}: {exc}") from None
        where = module.__name__
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise ConfigError(f"unknown node type {name!r} (no Node class {attr!r} in {where})")
    return cls


_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _bool_problems(cls: type[Node], params: Mapping[str, Any], where: str) -> list[str]:
    """JSON ``true`` where the constructor wants a number: Python would take it as 1."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read: the constructor checks alone
        return []
    problems = []
    for key, value in params.items():
        parameter = parameters.get(key)
        if not isinstance(value, bool) or parameter is None:
            continue
        annotation = parameter.annotation
        if annotation is inspect.Parameter.empty:
            continue
        text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
        words = set(_WORDS.findall(text))
        if "bool" not in words and words & {"int", "float"}:
            problems.append(
                f"{where}.params.{key}: want {text}, got {json.dumps(value)} "
                "(a boolean is not a number)"
            )
    return problems


def build_nodes(
    data: Mapping[str, Any], allow_modules: Iterable[str] = ()
) -> tuple[list[Node], list[str]]:
    """Construct every node; returns the nodes built and the problems met, with locations.

    ``allow_modules``: module prefixes ``module:Class`` may name besides ``media_nodes`` and
    ``stream`` (see ``resolve_type``). A stage name used twice is a problem.
    """
    prefixes = _prefixes(allow_modules)
    nodes: list[Node] = []
    problems: list[str] = []
    taken: dict[str, int] = {}
    for i, spec in enumerate(data.get("nodes", [])):
        where = f"nodes[{i}]"
        try:
            cls = resolve_type(spec["type"], prefixes)
        except StreamError as exc:
            problems.append(f"{where}: {exc}")
            continue
        params = dict(spec.get("params", {}))
        if "name" in spec:
            params["name"] = spec["name"]
        wrong = _bool_problems(cls, params, where)
        if wrong:
            problems.extend(wrong)
            continue
        try:
            node = cls(**params)
        except StreamError as exc:
            problems.append(f"{where}: {exc}")
            continue
        except Exception as exc:  # the constructor refused a value: TypeError, OverflowError...
            kind = "" if isinstance(exc, TypeError | ValueError) else f"{type(exc).__name__}: "
            problems.append(f"{where}.params: {kind}{exc}")
            continue
        if node.name in taken:
            problems.append(f"{where}.name: {node.name!r} is taken by nodes[{taken[node.name]}]")
        else:
            taken[node.name] = i
        nodes.append(node)
    return nodes, [_one_line(p) for p in problems]


def validate_manifest(data: Any, allow_modules: Iterable[str] = ()) -> list[str]:
    """Every problem in a manifest (limits, schema, node construction), each with its location.

    Builds the nodes to check them, so it imports what ``module:Class`` types name: only
    ``media_nodes``, ``stream`` and the ``allow_modules`` prefixes. Raises ConfigError for a bad
    prefix.
    """
    problems = _limit_problems(data) or _schema_problems(data)
    if problems:
        return [_one_line(p) for p in problems]
    return build_nodes(data, allow_modules)[1]


def from_manifest(
    source: Mapping[str, Any] | str | os.PathLike[str], allow_modules: Iterable[str] = ()
) -> Pipeline:
    """Build a pipeline from a manifest dict or file. Raises ManifestError listing problems.

    ``allow_modules``: module prefixes ``module:Class`` may name besides ``media_nodes`` and
    ``stream``.
    """
    from .pipeline import Pipeline

    if isinstance(source, Mapping):
        label, data = "manifest", dict(source)
    else:
        label, data = str(source), load(source)
    problems = _limit_problems(data) or _schema_problems(data)
    if problems:
        raise ManifestError([_one_line(p) for p in problems], label)
    nodes, problems = build_nodes(data, allow_modules)
    if problems:
        raise ManifestError(problems, label)
    options = {k: data[k] for k in ("queue_size", "fuse") if k in data}
    return Pipeline(nodes, name=data.get("name"), **options)


def to_manifest(pipeline: Pipeline) -> dict[str, Any]:
    """The manifest of a pipeline; raises ConfigError for a node without ``params()``."""
    nodes = []
    for node in pipeline.nodes:
        cls = type(node)
        builtin = getattr(importlib.import_module("media_nodes"), cls.__name__, None) is cls
        kind = cls.__name__ if builtin else f"{cls.__module__}:{cls.__qualname__}"
        nodes.append({"type": kind, "name": node.name, "params": node.params()})
    return {
        "version": VERSION,
        "name": pipeline.name,
        "queue_size": pipeline.queue_size,
        "fuse": pipeline.fuse,
        "nodes": nodes,
    }


__all__ = [
    "DEFAULT_MODULES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_STAGES",
    "MAX_VALUES",
    "MAX_YAML_ALIASES",
    "SCHEMA_PATH",
    "ManifestError",
    "build_nodes",
    "from_manifest",
    "load",
    "resolve_type",
    "save",
    "to_manifest",
    "validate_manifest",
]
