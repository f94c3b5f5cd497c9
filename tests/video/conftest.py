"""Fixtures of the video stage tests (the ``backend`` fixture is in tests/conftest.py)."""

from __future__ import annotations

from types import ModuleType

import pytest

from ._util import kernel_module


@pytest.fixture
def kernels(backend: str) -> ModuleType:
    """The kernel classes of the backend under test (``stream._engine`` or the Python twins)."""
    return kernel_module(backend)
