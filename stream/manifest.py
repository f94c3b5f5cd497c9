"""Pipeline manifests: a pipeline as JSON (or YAML, when PyYAML is installed) and back.

::

    {"version": 1, "name": "voice", "queue_size": 8,
     "nodes": [{"type": "ChannelMix", "name": "mix", "params": {"channels": 1}},
               {"type": "Resample", "params": {"sample_rate": 16000}},
               {"type": "my_package.stages:Denoiser", "params": {}}]}

``type`` is a built-in stage's class name (anything ``media_nodes`` exports) or ``module:Class``
for your own nodes, which define ``params()``. The format's JSON Schema is
``stream/manifest.schema.json``; ``validate_manifest`` reports every problem with its location.
Loading a manifest imports the modules it names: load only manifests you trust.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, StreamError
from .node import Node

if TYPE_CHECKING:
    from .pipeline import Pipeline

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
VERSION = 1


class ManifestError(ConfigError):
    """A manifest that cannot build a pipeline; ``problems`` lists each one with its location."""

    def __init__(self, problems: list[str], source: str = "manifest") -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.problems = problems


def load(source: str | Path) -> dict[str, Any]:
    """Read a manifest file: JSON, or YAML for .yaml/.yml (needs PyYAML)."""
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError([f"cannot read: {exc.strerror or exc}"], str(path)) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ManifestError(
                ["YAML manifests need PyYAML: pip install pyyaml"], str(path)
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ManifestError([f"not valid YAML: {exc}"], str(path)) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError([f"not valid JSON: {exc}"], str(path)) from None
    if not isinstance(data, dict):
        raise ManifestError(["the top level must be an object"], str(path))
    return data


def save(data: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a manifest as JSON, or YAML for .yaml/.yml (needs PyYAML)."""
    target = Path(path)
    if target.suffix.lower() in (".yaml", ".yml"):
        import yaml

        target.write_text(yaml.safe_dump(dict(data), sort_keys=False))
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


def resolve_type(name: str) -> type[Node]:
    """The node class a manifest ``type`` names. Raises ConfigError."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import module {module_name!r}: {exc}") from None
    else:
        module, attr = importlib.import_module("media_nodes"), name
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        where = "media_nodes" if ":" not in name else module.__name__
        raise ConfigError(f"unknown node type {name!r} (no Node class {attr!r} in {where})")
    return cls


def build_nodes(data: Mapping[str, Any]) -> tuple[list[Node], list[str]]:
    """Construct every node; returns the nodes built and the problems met, with locations."""
    nodes, problems = [], []
    for i, spec in enumerate(data.get("nodes", [])):
        where = f"nodes[{i}]"
        try:
            cls = resolve_type(spec["type"])
            params = dict(spec.get("params", {}))
            if "name" in spec:
                params["name"] = spec["name"]
            nodes.append(cls(**params))
        except TypeError as exc:  # an unknown or missing constructor argument
            problems.append(f"{where}.params: {exc}")
        except StreamError as exc:
            problems.append(f"{where}: {exc}")
    return nodes, problems


def validate_manifest(data: Any) -> list[str]:
    """Every problem in a manifest (schema and node construction), each with its location."""
    problems = _schema_problems(data)
    if problems:
        return problems
    return build_nodes(data)[1]


def from_manifest(source: Mapping[str, Any] | str | Path) -> Pipeline:
    """Build a pipeline from a manifest dict or file. Raises ManifestError listing problems."""
    from .pipeline import Pipeline

    label = str(source) if isinstance(source, str | Path) else "manifest"
    data = load(source) if isinstance(source, str | Path) else dict(source)
    problems = _schema_problems(data)
    if problems:
        raise ManifestError(problems, label)
    nodes, problems = build_nodes(data)
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
