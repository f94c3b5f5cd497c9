"""Shared fixtures: ``backend`` runs a test on each backend the session allows.

By default every stage test runs on ``python`` and ``rust`` (the engine must be built: a missing
engine fails the rust runs, it does not skip them). With ``REMOTEMEDIA_RUNTIME=python`` in the
environment the session is the Python-only run, and only ``python`` is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

SESSION_RUNTIME = os.environ.get("REMOTEMEDIA_RUNTIME", "auto")
BACKENDS = ["python"] if SESSION_RUNTIME == "python" else ["python", "rust"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The backend under test; stages built without ``backend=`` pick it from the environment."""
    monkeypatch.setenv("REMOTEMEDIA_RUNTIME", request.param)
    yield request.param
