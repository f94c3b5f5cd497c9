"""Pipeline manifests: round trips through JSON and YAML, and every problem with its location."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from media_nodes import ChannelMix, FormatConvert, Gain, PassThrough, Rebuffer, Resample
from stream import Node, Pipeline
from stream.manifest import SCHEMA_PATH, ManifestError, validate_manifest
from stream.testing import join_frames, split_frames, tone


class Scale(Node):
    """A user's own node, rebuilt from a manifest by module:Class."""

    def __init__(self, factor: float, name: str | None = None) -> None:
        super().__init__(name)
        self.factor = factor

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def process(self, item: float) -> float:
        return item * self.factor


def _voice() -> Pipeline:
    return Pipeline(
        [
            ChannelMix(1, name="mix"),
            Resample(16000, name="rs", backend="python"),
            Gain(-3.0, ramp_ms=2.0, name="g"),
            Rebuffer(frame_ms=32.0, pad_final=True, name="rb"),
            FormatConvert("s16", name="fc"),
            PassThrough(name="p"),
        ],
        name="voice",
        queue_size=4,
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
async def test_round_trip_gives_the_same_pipeline_and_output(tmp_path: Path, suffix: str) -> None:
    original = _voice()
    path = tmp_path / f"voice{suffix}"
    data = original.to_manifest(path)
    rebuilt = Pipeline.from_manifest(path)
    assert rebuilt.to_manifest() == data
    assert (rebuilt.name, rebuilt.queue_size) == ("voice", 4)
    assert [type(n).__name__ for n in rebuilt.nodes] == [type(n).__name__ for n in original.nodes]
    assert rebuilt.nodes[1].requested_backend == "python"  # type: ignore[attr-defined]
    frames = split_frames(tone(440, 0.2, 48000, channels=2), 48000, 960)
    a = await original.run(frames)
    b = await rebuilt.run(frames)
    assert [f.samples.tolist() for f in a] == [f.samples.tolist() for f in b]


async def test_user_node_round_trips_by_module_and_class() -> None:
    p = Pipeline([Scale(2.0, name="x2")])
    data = p.to_manifest()
    assert data["nodes"][0]["type"] == f"{Scale.__module__}:Scale"
    rebuilt = Pipeline.from_manifest(data, allow_modules=[Scale.__module__])
    assert await rebuilt.run([1.0, 2.0]) == [2.0, 4.0]


def test_node_without_params_cannot_be_saved() -> None:
    class Plain(Node):
        pass

    with pytest.raises(Exception, match="params"):
        Pipeline([Plain()]).to_manifest()


def test_every_problem_is_reported_with_its_location() -> None:
    data = {
        "name": "bad",
        "nodes": [
            {"type": "Resample", "name": "rs", "params": {"sample_rate": 500}},
            {"type": "NoSuchStage"},
            {"type": "Gain", "params": {"gain": 3}},
            {"type": "Gain", "params": {"gain_db": -3}},
        ],
    }
    problems = validate_manifest(data)
    assert len(problems) == 3
    assert problems[0] == "nodes[0]: rs: sample_rate must be an int in 1000..=384000 Hz, got 500"
    assert problems[1].startswith("nodes[1]: ") and "unknown node type 'NoSuchStage'" in problems[1]
    assert problems[2].startswith("nodes[2].params: ") and "gain" in problems[2]
    with pytest.raises(ManifestError) as info:
        Pipeline.from_manifest(data)
    assert info.value.problems == problems


def test_schema_problems_have_paths() -> None:
    problems = validate_manifest({"nodes": [{"params": {}}, {"type": 3}], "queue_size": 0})
    assert any(p.startswith("nodes[0]: 'type' is a required property") for p in problems)
    assert any(p.startswith("nodes[1].type: ") for p in problems)
    assert any(p.startswith("queue_size: ") for p in problems)


def test_the_schema_is_valid_json_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_bad_files_are_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Pipeline.from_manifest(bad)
    with pytest.raises(ManifestError, match="cannot read"):
        Pipeline.from_manifest(tmp_path / "missing.json")
    out = join_frames([])
    assert out.shape == (1, 0)
