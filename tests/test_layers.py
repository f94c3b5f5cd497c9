"""The layers import downwards only (docs/architecture.md).

- The runtime modules of ``stream/`` import no ``media_nodes``: the stages build on the core, not
  the other way round. Only the command line and the lookup of stage names by name may.
- The core (``stream/*.py``, ``stream/kernels/``) imports neither transport (``stream.transport``)
  nor cluster (``stream.ray``), except where listed below with the reason.

The scan reads every import statement (at module level and inside functions) and every
``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

STREAM = Path(__file__).resolve().parents[1] / "stream"

#: Modules of stream/ that may import media_nodes, and why.
MAY_IMPORT_STAGES = {
    "stream/cli.py": "the command line builds pipelines of built-in stages",
    "stream/transport/cli.py": "the serve/connect command line builds sources and sinks",
    "stream/chain_spec.py": "the --chain syntax looks stages up by name",
    "stream/manifest.py": "a manifest names built-in stages; the lookup resolves them",
}

#: (module, imported layer) pairs where the core may reach up, and why.
CORE_MAY_IMPORT = {
    ("stream/node.py", "stream.ray"): "Node.on_ray wraps the node in a RemoteStage, lazily",
    ("stream/cli.py", "stream.transport"): "the command line dispatches serve/connect",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(STREAM.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, text: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of each import in ``path`` (or in ``text`` as if it
    were the module at ``path``)."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            yield node.lineno, stem
            for alias in node.names:  # ``from . import transport`` names a module too
                yield node.lineno, f"{stem}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            yield node.lineno, node.args[0].value


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _rel(path: Path) -> str:
    return path.relative_to(STREAM.parent).as_posix()


def _core(path: Path) -> bool:
    rel = _rel(path)
    return path.parent == STREAM or rel.startswith("stream/kernels/")


def test_the_scan_sees_imports_in_functions_relative_ones_and_import_module() -> None:
    text = (
        "import importlib\n"
        "def f():\n"
        "    from media_nodes.audio import Gain\n"
        "    from ..ray import RemoteStage\n"
        "    from .. import transport\n"
        "    importlib.import_module('media_nodes')\n"
    )
    names = {n for _, n in _imports(STREAM / "transport" / "probe.py", text)}
    assert {"media_nodes.audio", "stream.ray", "stream.transport", "media_nodes"} <= names


def test_runtime_modules_of_stream_import_no_stages() -> None:
    bad = [
        f"{_rel(path)}:{line} imports {name}"
        for path in sorted(STREAM.rglob("*.py"))
        if _rel(path) not in MAY_IMPORT_STAGES
        for line, name in _imports(path)
        if _in(name, "media_nodes")
    ]
    assert not bad, "stream/ must not import media_nodes:\n" + "\n".join(bad)


def test_the_core_imports_neither_transport_nor_cluster() -> None:
    bad = [
        f"{_rel(path)}:{line} imports {name}"
        for path in sorted(STREAM.rglob("*.py"))
        if _core(path)
        for line, name in _imports(path)
        for layer in ("stream.transport", "stream.ray")
        if _in(name, layer) and (_rel(path), layer) not in CORE_MAY_IMPORT
    ]
    assert not bad, "the core must not import the transport or cluster layers:\n" + "\n".join(bad)


def test_every_listed_exception_is_still_needed() -> None:
    """An exception that no longer matches anything is stale: drop it from the list."""
    stages = {
        rel
        for rel in MAY_IMPORT_STAGES
        if any(_in(n, "media_nodes") for _, n in _imports(STREAM.parent / rel))
    }
    assert stages == set(MAY_IMPORT_STAGES)
    for rel, layer in CORE_MAY_IMPORT:
        assert any(_in(n, layer) for _, n in _imports(STREAM.parent / rel)), (rel, layer)
