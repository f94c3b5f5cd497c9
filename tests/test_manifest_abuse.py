"""Hostile manifests: bounded reading, module:Class refused before import, strict values.

The inputs that once ran away (deep nesting, YAML "billion laughs", a 50 MB file) go through the
command in a subprocess with a timeout, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream import ConfigError, Pipeline
from stream import manifest as m
from stream.chain_spec import parse_chain
from stream.cli import main
from stream.errors import ManifestError
from stream.testing import split_frames, tone
from stream.transport.cli import pipeline_factory

GAIN = {"type": "Gain", "name": "g", "params": {"gain_db": -6}}


def python_m(
    module: str, *args: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` in ``cwd``, as a user runs it (no PYTHONPATH of ours)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def nested(depth: int) -> str:
    return '{"nodes": [{"type": "Gain", "params": {"x": ' + "[" * depth + "]" * depth + "}}]}"


def laughs(levels: int, width: int) -> str:
    """YAML where each level is ``width`` aliases of the one before: width**levels values."""
    lines = ['a0: &a0 ["lol"]']
    for k in range(1, levels + 1):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
    lines.append(f"nodes: [{{type: Gain, params: {{gain_db: 0, x: *a{levels}}}}}]")
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the command: every limit is one line on stderr, a non-zero exit, no traceback ---


CASES = [
    # name, text, the message; the first five once ran for minutes or raised RecursionError
    ("deep.json", nested(2000), "nested deeper than 32 levels"),
    ("deep.yaml", "nodes: " + "[" * 2000 + "]" * 2000 + "\n", "nested deeper than 32 levels"),
    ("laughs.yaml", laughs(9, 9), "more than 64 YAML aliases"),
    ("laughs8.yaml", laughs(8, 7), "more than 100000 values"),
    ("big.json", '{"nodes": [], "pad": "' + "x" * 50_000_000 + '"}', "larger than 262144 bytes"),
    ("deep40.json", nested(40), "nested deeper than 32 levels"),
    ("cyclic.yaml", "nodes: &n [{type: Gain, params: {x: *n}}]\n", "nested deeper than"),
    ("bigint.json", '{"nodes": [], "queue_size": ' + "9" * 5000 + "}", "not valid JSON"),
    ("bad.yaml", "nodes:\n  - type: Gain\n   params: {\n", "not valid YAML"),
    ("latin1.json", '{"name": "caf\xe9", "nodes": []}', "not UTF-8"),
]


def write_case(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1" if name == "latin1.json" else "utf-8"))
    return path


@pytest.mark.parametrize(("name", "text", "message"), CASES[:5])
def test_hostile_files_are_one_line_errors_from_python_m(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write_case(tmp_path, name, text)
    result = python_m("stream", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"remotemedia: error: {path}: ") and message in lines[0]


@pytest.mark.parametrize(("name", "text", "message"), CASES)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_limits_are_one_line_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    name: str,
    text: str,
    message: str,
) -> None:
    path = write_case(tmp_path, name, text)
    assert main([command, str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"remotemedia: error: {path}: ") and message in err
    assert err.count("\n") == 1  # one line: no traceback


def test_a_module_outside_the_allow_list_is_not_imported(tmp_path: Path) -> None:
    path = write(tmp_path / "zen.json", json.dumps({"nodes": [{"type": "this:s"}, GAIN]}))
    result = python_m("stream", "validate", str(path), cwd=tmp_path)
    assert "Zen of Python" not in result.stdout + result.stderr
    assert result.returncode == 2
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(f"{path}: nodes[0]: ") and "module 'this' is not allowed" in line


def test_python_m_does_not_import_from_the_working_directory(tmp_path: Path) -> None:
    for module in ("media_nodes", "evil"):
        marker = tmp_path / f"{module}.imported"
        (tmp_path / f"{module}.py").write_text(
            f"from pathlib import Path\nPath({str(marker)!r}).write_text('yes')\n"
            "print('IMPORTED FROM THE WORKING DIRECTORY')\n"
        )
    path = write(tmp_path / "p.json", json.dumps({"nodes": [GAIN, {"type": "evil:Evil"}]}))
    result = python_m("stream", "validate", str(path), "--allow-module", "evil", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stdout.strip().splitlines()  # Gain came from the real media_nodes
    assert line.startswith(f"{path}: nodes[1]: cannot import module 'evil'")
    good = write(tmp_path / "good.json", json.dumps({"nodes": [GAIN]}))
    assert python_m("stream", "validate", str(good), cwd=tmp_path).returncode == 0
    serve = python_m(
        "stream.transport",
        "serve",
        *("--host", "127.0.0.1", "--port", "0", "--allow-module", "evil", "--pipeline", str(path)),
        cwd=tmp_path,
    )
    assert serve.returncode == 1 and "cannot import module 'evil'" in serve.stderr
    assert not list(tmp_path.glob("*.imported"))
    assert "IMPORTED" not in result.stdout + serve.stdout


def test_duplicate_names_and_booleans_fail_validate(tmp_path: Path) -> None:
    nodes = [
        GAIN,
        {"type": "Rebuffer", "params": {"samples": True}},
        {"type": "PassThrough", "name": "g"},
    ]
    path = write(tmp_path / "p.json", json.dumps({"nodes": nodes}))
    result = python_m("stream", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"{path}: nodes[1].params.samples: ") and "boolean" in lines[0]
    assert lines[1] == f"{path}: nodes[2].name: 'g' is taken by nodes[0]"
    assert len(lines) == 2


# --- the API ---


def test_limits_hold_for_dicts_too() -> None:
    deep: Any = []
    for _ in range(m.MAX_DEPTH):
        deep = [deep]
    data = {"nodes": [{"type": "Gain", "params": {"gain_db": deep}}]}
    (problem,) = m.validate_manifest(data)
    assert problem.startswith("nodes[0].params.gain_db") and "nested deeper than 32" in problem
    cyclic: dict[str, Any] = {"type": "Gain"}
    cyclic["params"] = {"x": cyclic}
    with pytest.raises(ManifestError, match="nested deeper"):
        m.from_manifest({"nodes": [cyclic]})


def test_the_stage_limit(tmp_path: Path) -> None:
    many = {"nodes": [{"type": "PassThrough"}] * m.MAX_STAGES}
    assert m.validate_manifest(many) == []
    too_many = {"nodes": [{"type": "PassThrough"}] * (m.MAX_STAGES + 1)}
    (problem,) = m.validate_manifest(too_many)
    assert problem == f"nodes: {m.MAX_STAGES + 1} stages, more than {m.MAX_STAGES} " + (
        "(stream.manifest.MAX_STAGES)"
    )
    with pytest.raises(ConfigError, match=f"more than {m.MAX_STAGES}"):
        parse_chain(",".join(["pass"] * (m.MAX_STAGES + 1)))
    assert len(parse_chain(",".join(["pass"] * m.MAX_STAGES))) == m.MAX_STAGES


def test_files_at_the_limits_still_load(tmp_path: Path) -> None:
    head = json.dumps({"nodes": [GAIN], "name": ""})[:-2]
    text = head + "x" * (m.MAX_BYTES - len(head) - 2) + '"}'
    assert len(text.encode()) == m.MAX_BYTES
    assert m.load(write(tmp_path / "full.json", text))["nodes"] == [GAIN]
    with pytest.raises(ManifestError, match="larger than"):
        m.load("/dev/zero")  # a device without end: read up to the limit, no further
    anchors = "nodes:\n  - {type: Gain, name: g, params: &p {gain_db: -6}}\n" + "".join(
        f"  - {{type: Gain, name: g{i}, params: *p}}\n" for i in range(m.MAX_YAML_ALIASES)
    )
    pipeline = Pipeline.from_manifest(write(tmp_path / "anchors.yaml", anchors))
    assert len(pipeline.nodes) == m.MAX_YAML_ALIASES + 1


def test_one_line_problems_stay_short() -> None:
    (problem,) = m.validate_manifest({"nodes": [{"type": "x" * 100_000}]})
    assert problem.startswith("nodes[0]: unknown node type 'xxx") and problem.endswith("...")
    assert len(problem) <= 300


@pytest.mark.parametrize(
    "kind",
    ["stream.transport.__main__:Node", "stream._engine:GainKernel", "media_nodes:_Private"],
)
def test_private_names_are_refused(kind: str) -> None:
    with pytest.raises(ConfigError, match="starting with '_'"):
        m.resolve_type(kind)
    assert "stream.transport.__main__" not in sys.modules


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A module of the user's own node, which leaves a marker file when imported."""
    name = f"abuse_nodes_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        "from pathlib import Path\n"
        "from stream.node import Node\n"
        f"Path({str(marker)!r}).write_text('yes')\n\n\n"
        "class Double(Node):\n"
        "    def __init__(self, factor: float = 2.0, name: str | None = None) -> None:\n"
        "        super().__init__(name)\n"
        "        self.factor = factor\n\n"
        "    def params(self):\n"
        "        return {'factor': self.factor}\n\n"
        "    def process(self, item):\n"
        "        return item * self.factor\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


async def test_allow_modules_opens_the_door(user_module: tuple[str, Path]) -> None:
    name, marker = user_module
    data = {"nodes": [{"type": f"{name}:Double", "params": {"factor": 3.0}}]}
    for allow in ([], ["abuse_nodes"], [name + "x"]):  # a prefix is whole dotted parts
        (problem,) = m.validate_manifest(data, allow)
        assert f"module {name!r} is not allowed" in problem
        with pytest.raises(ManifestError, match="not allowed"):
            Pipeline.from_manifest(data, allow_modules=allow)
    assert not marker.exists() and name not in sys.modules
    with pytest.raises(ConfigError, match="not a module name"):
        m.validate_manifest(data, ["bad prefix"])
    pipeline = Pipeline.from_manifest(data, allow_modules=[name])
    assert marker.exists()
    assert await pipeline.run([1.0, 2.0]) == [3.0, 6.0]
    with pytest.raises(ManifestError, match="true"):
        m.from_manifest({"nodes": [{"type": f"{name}:Double", "params": {"factor": True}}]}, [name])


def test_serve_factory_checks_modules_in_every_process(
    tmp_path: Path, user_module: tuple[str, Path]
) -> None:
    name, _ = user_module
    path = write(tmp_path / "p.json", json.dumps({"nodes": [{"type": f"{name}:Double"}]}))
    with pytest.raises(ManifestError, match="not allowed"):
        pipeline_factory(str(path), None, None)
    factory = pipeline_factory(str(path), None, None, [name])
    shipped = pickle.loads(pickle.dumps(factory))  # as worker processes get it
    assert [type(n).__name__ for n in shipped().nodes] == ["Double"]
    error = pickle.loads(pickle.dumps(ManifestError(["a: b", "c: d"], "p.json")))
    assert (error.problems, str(error)) == (["a: b", "c: d"], "p.json: a: b; c: d")


async def test_a_valid_manifest_runs(tmp_path: Path, backend: str) -> None:
    nodes = [
        {"type": "Rebuffer", "name": "rb", "params": {"samples": 480, "pad_final": True}},
        {"type": "Gain", "params": {"gain_db": -6.0}},
    ]
    pipeline = Pipeline.from_manifest(write(tmp_path / "p.yaml", json.dumps({"nodes": nodes})))
    out = await pipeline.run(split_frames(tone(440, 0.1, 48000), 48000, 960))
    assert [f.num_samples for f in out] == [480] * 10


def test_yaml_save_writes_no_aliases(tmp_path: Path) -> None:
    shared = {"gain_db": -3.0}
    data = {"nodes": [{"type": "Gain", "name": f"g{i}", "params": shared} for i in range(3)]}
    path = tmp_path / "p.yaml"
    m.save(data, path)
    assert "*" not in path.read_text()
    assert m.load(path) == data
