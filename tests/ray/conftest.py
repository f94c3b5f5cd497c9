"""Ray tests: a real two-node Ray cluster (two raylets) inside a network namespace of their own.

Tests marked ``ray`` need Ray (``.ci/install-ray.sh``), root, ``ip netns`` and util-linux's
``unshare``/``nsenter``; they skip, saying why, where those are missing. They run only when
selected (``pytest -m ray tests/ray``, CI's own bounded step), so the main test runs do not pay
for a cluster. The cluster binds 127.0.0.1 inside its namespace, so no test traffic reaches a
real interface; each test's driver is a separate process inside the same namespace.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVER_TIMEOUT_S = 90


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ray: needs Ray, root and ip netns; runs a two-node Ray cluster in a namespace"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "ray" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="Ray cluster tests run in their own step: pytest -m ray")
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(skip)


class Cluster:
    """The session's cluster, with ``scenario(name, arg)`` running a driver inside it."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def scenario(self, name: str, arg: str = "") -> dict[str, Any]:
        argv = [sys.executable, str(HERE / "scenarios.py"), name]
        if arg:
            argv.append(arg)
        done = self.cluster.run(
            argv, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S, cwd=REPO
        )
        results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not results:
            tail = "\n".join(done.stderr.strip().splitlines()[-30:])
            pytest.fail(f"driver {name} {arg} failed (exit {done.returncode}):\n{tail}")
        result: dict[str, Any] = json.loads(results[-1][len("RESULT ") :])
        return result


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    """A head (2 CPUs, resource ``head``) and a worker node (1 CPU, resource ``worker``)."""
    pytest.importorskip("ray", reason="Ray is not installed (.ci/install-ray.sh)")
    from stream.ray.cluster import cluster_unavailable, local_cluster

    reason = cluster_unavailable()
    if reason:
        pytest.skip(f"no Ray test cluster: {reason}")
    with local_cluster(workers=1, head_cpus=2, worker_cpus=1) as cluster:
        yield Cluster(cluster)
