"""``ServerSettings`` and the names that moved when the server was split by concern.

The settings are one frozen value, checked once; the server's old keyword arguments build it,
its old attributes and module paths still answer, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import pytest

from stream.errors import ConfigError, TransportError

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")

from stream.transport.cli import pipeline_factory
from stream.transport.server import WebRTCServer
from stream.transport.settings import ServerOptions, ServerSettings
from stream.transport.worker_protocol import WorkerHandle


def _server(**kwargs: Any) -> WebRTCServer:
    return WebRTCServer(pipeline_factory(None, None, None), **kwargs)


def test_the_keyword_arguments_are_the_settings_fields() -> None:
    # host and port are the constructor's positional arguments; the rest, keywords
    fields = {f.name for f in dataclasses.fields(ServerSettings)}
    assert set(ServerOptions.__annotations__) == fields - {"host", "port"}


def test_keywords_build_the_settings_and_override_a_given_one() -> None:
    server = _server(host="127.0.0.1", port=0, max_sessions=3, token="")
    assert server.settings.max_sessions == 3 and server.port == 0
    assert server.settings.token is None  # an empty token is no token, as before
    base = ServerSettings(max_sessions=5, idle_timeout=4.0)
    server = WebRTCServer(pipeline_factory(None, None, None), port=0, settings=base, token="t")
    assert server.settings == dataclasses.replace(base, port=0, token="t")
    assert WebRTCServer(pipeline_factory(None, None, None), settings=base).settings is base
    with pytest.raises(ConfigError, match="max_sessions"):  # an override is checked too
        WebRTCServer(pipeline_factory(None, None, None), settings=base, max_sessions=0)


def test_settings_are_frozen_and_keep_copies() -> None:
    resources = {"gpu_box": 1.0}
    ice = ["lo"]
    settings = ServerSettings(ray_address="local", ray_resources=resources, ice_addresses=ice)
    resources["gpu_box"] = 9.0
    ice.append("eth9")
    assert settings.ray_resources == {"gpu_box": 1.0}
    assert settings.ice_addresses == ("lo",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_sessions = 99  # type: ignore[misc]


def test_old_attribute_names_still_answer_with_a_warning() -> None:
    server = _server(port=0, max_sessions=7, workers=0, body_timeout=3)
    with pytest.warns(DeprecationWarning, match=r"settings\.max_sessions"):
        assert server.max_sessions == 7
    with pytest.warns(DeprecationWarning, match=r"settings\.workers"):
        assert server.worker_count == 0
    with pytest.warns(DeprecationWarning, match=r"signaling\.deadlines"):
        assert server.deadlines is server.signaling.deadlines
    with pytest.warns(DeprecationWarning):
        assert server.body_timeout == 3.0
    with pytest.raises(AttributeError, match="no_such_thing"):
        server.no_such_thing  # noqa: B018


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("stream.transport.workers", "Worker", "stream.transport.process_workers"),
        ("stream.transport.workers", "WorkerHandle", "stream.transport.worker_protocol"),
        ("stream.transport.workers", "restart_delay", "stream.transport.supervisor"),
        ("stream.transport.workers", "worker_main", "stream.transport.worker_process"),
        ("stream.ray.workers", "RayWorkerPool", "stream.ray.session_workers"),
        ("stream.ray.workers", "resolve_on_node", "stream.ray.session_actor"),
    ],
)
def test_old_module_paths_still_answer_with_a_warning(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        found = getattr(module, name)
    assert found is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError):
        module.no_such_thing  # noqa: B018


class _Racing(WorkerHandle):
    """A worker whose session ends before its offer's answer comes back (Ray's events can
    overtake an answer); everything else is what the base class does."""

    kind = "racing"

    @property
    def cpu(self) -> float:
        return 0.0

    def _where(self) -> dict[str, Any]:
        return {"pid": None}

    async def start(self, timeout: float = 60.0) -> None:
        self.alive = True

    async def _offer(self, session_id: str, sdp: str, timeout: float) -> dict[str, Any]:
        if session_id == "short":
            self._session_closed(session_id)
        return {"ok": True, "sdp": "v=0", "type": "answer"}

    def close_session(self, session_id: str, reason: str = "closed") -> None:
        pass

    async def _status(self, timeout: float) -> dict[str, Any]:
        return {"ok": False, "error": "no status here"}

    async def _stop_remote(self, reason: str, timeout: float) -> None:
        pass

    async def _release(self) -> None:
        pass

    def _teardown(self, reason: str) -> None:
        pass


async def test_a_session_that_ended_before_its_answer_is_not_counted() -> None:
    closed: list[str] = []
    died: list[int] = []
    worker = _Racing(0, lambda w, sid: closed.append(sid), lambda w: died.append(w.index))
    await worker.start()
    assert await worker.place("long", "v=0") == {"sdp": "v=0", "type": "answer"}
    await worker.place("short", "v=0")
    assert worker.sessions == {"long"} and worker.load == 1 and closed == []
    with pytest.raises(TransportError, match="no status here"):
        await worker.status()
    worker._lost("gone")
    assert died == [0] and worker.sessions == set() and not worker.alive
    await worker.stop()  # a stop after a death is no second death
    assert died == [0]
