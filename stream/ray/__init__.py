"""Stages on a Ray cluster: ``RemoteStage(node, ...)`` runs a node in a Ray actor.

The only package that touches Ray, and it imports Ray lazily: importing ``stream`` or this
package loads nothing of it; constructing a ``RemoteStage`` does, and raises
``BackendUnavailable`` (``pip install remotemedia[ray]``) where Ray is missing.
``stream.ray.session_workers`` puts WebRTC sessions on session workers on the cluster's nodes
(``WebRTCServer(..., ray_address=...)``, ``remotemedia serve --ray``); ``_ray`` is the one
module that imports Ray. The throwaway multi-node cluster the tests and benchmarks run on is
test infrastructure: ``tests/hosts/ray_cluster.py``. Deployment: docs/deploy.md.
"""

from __future__ import annotations

from ._ray import INSTALL_HINT, connect, ray_available, require_ray
from .stage import RemoteStage

__all__ = ["INSTALL_HINT", "RemoteStage", "connect", "ray_available", "require_ray"]
