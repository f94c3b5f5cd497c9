"""RemoteStage: on a real two-node Ray cluster (marker ``ray``), and its setup without one."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from media_nodes import Gain
from stream.errors import BackendUnavailable, ConfigError
from stream.ray import RemoteStage  # imports no Ray: constructing a stage does


# -- on the cluster
@pytest.mark.ray
@pytest.mark.parametrize("backend", ["rust", "python"])
def test_same_output_as_local_on_the_worker_node(ray_cluster: Any, backend: str) -> None:
    found = ray_cluster.scenario("parity", backend)
    assert found["backends"] == [backend, backend]
    assert all(found["node"][:8] in reason for reason in found["reasons"])
    assert found["events"] == 1  # went around, in order (the driver compares positions)
    assert all(1 < peak <= 4 for peak in found["peak_in_flight"])


@pytest.mark.ray
def test_frames_run_in_the_order_sent(ray_cluster: Any) -> None:
    found = ray_cluster.scenario("order")
    assert found["frames"] == 100
    assert 1 < found["peak_in_flight"] <= 8


@pytest.mark.ray
def test_killed_actor_ends_the_stream_with_a_clear_error(ray_cluster: Any) -> None:
    found = ray_cluster.scenario("kill")
    assert found["frames"] == 20
    assert "gain" in found["error"] and "TransportError" in found["error"]
    assert "died" in found["cause"]
    assert found["waited_s"] < 10


@pytest.mark.ray
def test_the_nodes_own_error_keeps_its_type(ray_cluster: Any) -> None:
    found = ray_cluster.scenario("bad_input")
    assert "at frame 3: FormatError" in found["error"]


@pytest.mark.ray
def test_a_stage_no_node_can_take_fails_at_setup(ray_cluster: Any) -> None:
    found = ray_cluster.scenario("unplaceable")
    assert "did not start within 3 s" in found["error"]
    assert found["waited_s"] < 10


# -- without a cluster
def test_settings_are_checked_at_construction() -> None:
    pytest.importorskip("ray", reason="Ray is not installed (.ci/install-ray.sh)")
    with pytest.raises(ConfigError, match="max_in_flight"):
        RemoteStage(Gain(), max_in_flight=0)
    with pytest.raises(ConfigError, match="num_cpus"):
        RemoteStage(Gain(), num_cpus=-1)
    with pytest.raises(ConfigError, match="takes a Node"):
        RemoteStage("gain")  # type: ignore[arg-type]
    stage = RemoteStage(Gain(name="g"))
    assert stage.name == "g@ray" and stage.backend == "unset"
    with pytest.raises(ConfigError, match="manifest"):
        stage.params()


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(BackendUnavailable, match=r"pip install remotemedia\[ray\]"):
        RemoteStage(Gain())


def test_importing_the_package_loads_no_ray() -> None:
    code = (
        "import sys, stream, media_nodes, stream.ray, stream.ray.stage, stream.ray.actor\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
