"""TURN for every peer: a real coturn on a third host, the only way between peer and server.

The client and server hosts have no route to each other (``tests/hosts/turn_hosts.py``); the
server is given the TURN server with coturn's REST shared secret, hands time-limited credentials
to each peer (``GET /config``), and uses them for its own connections. Sessions must then run
through relay candidates, and the audio must come back processed. Wrong credentials must fail
clearly, within a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.engine import has_rtp_audio_leg
from stream.testing import split_frames, tone

from .conftest import ServerProcess, manifest
from .signals import active, band_share, dominant_hz, rms_db
from .test_browser import TONE_HZ, chromium_binary, chromium_in_namespace, write_wav

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from stream.errors import TransportError  # noqa: E402
from stream.transport.webrtc import Peer, connect  # noqa: E402

SECRET = "turn-test-secret"
TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))


@pytest.fixture(scope="module")
def turn_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Client, turn and server hosts with coturn (REST secret ``SECRET``) on the turn host."""
    from hosts.turn_hosts import turn_test_hosts, turnserver_unavailable

    reason = turnserver_unavailable()
    if reason:
        pytest.skip(f"no TURN test hosts: {reason}")
    with turn_test_hosts() as made:
        made.start_turnserver(tmp_path_factory.mktemp("coturn"), secret=SECRET)
        yield made


def start_behind_turn(hosts: Any, args: list[str], secret: str = SECRET) -> ServerProcess:
    """A server on the server host given the TURN server, reached through the turn host."""
    from hosts.turn_hosts import RELAY_IP, TURN_PORT

    server = ServerProcess(
        hosts,
        [
            *args,
            *("--ice-server", f"turn:{RELAY_IP}:{TURN_PORT}?transport=udp"),
            *("--turn-secret", secret, "--turn-ttl", "600"),
        ],
    )
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    # signaling crosses the turn host too (a TCP forwarder there); media can only relay
    server.url = f"http://{RELAY_IP}:{hosts.forward(hosts.server_ip, port)}/"
    return server


def gain_manifest(tmp_path: Path) -> str:
    return manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}])


def test_hosts_meet_only_through_the_turn_host(turn_hosts: Any) -> None:
    from hosts.turn_hosts import RELAY_IP

    async def reach(address: str) -> bool:
        try:
            async with asyncio.timeout(3):
                _, writer = await asyncio.open_connection(address, 9)
                writer.close()
        except ConnectionRefusedError:
            return True  # a host answered (nothing listens on port 9)
        except (OSError, TimeoutError):
            return False
        return True

    assert turn_hosts.run_async("client", lambda: reach(RELAY_IP))
    assert not turn_hosts.run_async("client", lambda: reach(turn_hosts.server_ip))
    assert not turn_hosts.run_async("server", lambda: reach(turn_hosts.client_ip))


def test_python_peer_relays_through_turn(turn_hosts: Any, tmp_path: Path) -> None:
    server = start_behind_turn(turn_hosts, ["--pipeline", gain_manifest(tmp_path)])
    try:
        config = server.http("GET", "/config")
        received: list[Any] = []

        async def run() -> Any:
            frames = split_frames(tone(440, 2.0, 48000, amplitude=0.5), 48000, 960)
            return await connect(server.url, frames, received, connect_timeout=20)

        result = turn_hosts.run_async("client", run)
    finally:
        server.stop()
    # the peer was handed REST credentials: EXPIRY:LABEL, not the secret
    (entry,) = config[1]["iceServers"]
    assert entry["urls"][0].startswith("turn:")
    expiry, _, label = entry["username"].partition(":")
    assert int(expiry) > time.time() and label
    assert SECRET not in str(config)
    assert result.candidates is not None and "relay" in result.candidates, result.candidates
    x = active(np.concatenate([f.samples[0] for f in received]))
    n = int(0.3 * 48000)
    x = x[n : len(x) - n]
    assert len(x) > 48000, f"only {len(x)} samples came back"
    assert dominant_hz(x) == pytest.approx(440, abs=2)
    assert band_share(x, 440) > 0.99
    assert rms_db(x) == pytest.approx(TONE_DB - 6, abs=0.5)


def test_wrong_turn_credentials_fail_clearly(turn_hosts: Any, tmp_path: Path) -> None:
    server = start_behind_turn(turn_hosts, [], secret="not-the-secret")
    timeout_s = 10.0
    try:

        async def run() -> tuple[str, float]:
            started = time.monotonic()
            try:
                async with Peer(
                    server.url, split_frames(tone(440, 1.0), 48000, 960), [],
                    connect_timeout=timeout_s,
                ):  # fmt: skip
                    pass
            except TransportError as exc:
                return str(exc), time.monotonic() - started
            return "connected", time.monotonic() - started

        message, took = turn_hosts.run_async("client", run)
    finally:
        server.stop()
    assert "gave no relay candidate (wrong credentials" in message, message
    assert took < timeout_s + 15  # allocation attempts (5 s at most) and the connect deadline


def test_browser_relays_through_turn(turn_hosts: Any, tmp_path: Path) -> None:
    """Chromium on the client host: ICE servers from /config, a relay pair in getStats(), its
    audio back through the pipeline; then with wrong credentials, the page reports the 401."""
    pytest.importorskip("playwright", reason="playwright is not installed (.ci/install-webrtc.sh)")
    from playwright.sync_api import sync_playwright

    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (.ci/install-webrtc.sh)")
    fake = tmp_path / "fake-mic.wav"
    write_wav(fake, tone(TONE_HZ, 10.0, 48000, amplitude=0.5)[0])
    good = start_behind_turn(turn_hosts, ["--pipeline", gain_manifest(tmp_path)])
    bad = start_behind_turn(turn_hosts, [], secret="not-the-secret")
    args = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake}",
        # plain http on a private address: a test host, not a browser flag a user would need
        f"--unsafely-treat-insecure-origin-as-secure={good.url.rstrip('/')},"
        f"{bad.url.rstrip('/')}",
        "--autoplay-policy=no-user-gesture-required",
    ]  # fmt: skip
    launcher = chromium_in_namespace(tmp_path, turn_hosts.namespaces["client"], binary)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=launcher,
                headless=True,
                args=args,
                ignore_default_args=["--headless", "--mute-audio"],
                timeout=60_000,
            )
            try:
                page = browser.pages[0] if browser.pages else browser.new_page()
                page.goto(good.url + "?transport=webrtc", timeout=30_000)
                page.click("#connect")
                page.wait_for_function(
                    "window.remotemedia.connection === 'connected'", timeout=30_000
                )
                page.wait_for_function(
                    "window.remotemedia.candidates !== null"
                    " && (remotemedia.stats['audio packets received'] || 0) > 100",
                    timeout=20_000,
                )
                page.wait_for_function(
                    "remotemedia.levels && remotemedia.levels.output.rms_db !== null",
                    timeout=10_000,
                )
                state = page.evaluate(
                    "({candidates: remotemedia.candidates, levels: remotemedia.levels,"
                    " ice: remotemedia.iceServers})"
                )
                relayed = good.status()["list"][0]
                page.click("#disconnect")

                page.goto(bad.url + "?transport=webrtc", timeout=30_000)
                page.click("#connect")
                page.wait_for_function("remotemedia.iceErrors.length > 0", timeout=20_000)
                errors = page.evaluate("remotemedia.iceErrors")
                page.click("#disconnect")
            finally:
                browser.close()
    finally:
        good.stop()
        bad.stop()
    assert "relay" in state["candidates"].values(), state["candidates"]
    # through the relay, the engine's leg sent and received the audio (aioice's TURN sends it)
    expected = "native" if has_rtp_audio_leg() else "aiortc"
    assert relayed["audio_transport"] == expected, relayed
    assert state["ice"][0]["urls"][0].startswith("turn:") and state["ice"][0]["username"]
    levels = state["levels"]
    assert levels["output"]["rms_db"] == pytest.approx(levels["input"]["rms_db"] - 6, abs=1.5)
    assert any(e["errorCode"] == 401 for e in errors), errors


def test_ice_server_specs_parse_and_refuse() -> None:
    """Static credentials come out of the URL (aiortc's own parser refuses them there); bad
    specs are a ConfigError naming the problem without the password."""
    from stream.errors import ConfigError
    from stream.transport._aiortc import rtc_configuration
    from stream.transport.ice import parse_ice_server

    server = parse_ice_server("turn:al%40ice:pa:ss@10.0.0.1:3478?transport=tcp")
    assert (server.url, server.username, server.credential) == (
        "turn:10.0.0.1:3478?transport=tcp",
        "al@ice",
        "pa:ss",
    )
    assert parse_ice_server(server.spec()) == server
    (ice,) = rtc_configuration([server.spec()]).iceServers or []
    assert (ice.urls, ice.username, ice.credential) == (server.url, "al@ice", "pa:ss")
    for spec, problem in [
        ("turn:10.0.0.1", "needs USER:PASSWORD@"),
        ("stun:u:hunter2@10.0.0.1", "STUN takes no credentials"),
        ("http://10.0.0.1", "want stun:"),
        ("turn:u:hunter2@10.0.0.1?transport=sctp", "malformed"),
    ]:
        with pytest.raises(ConfigError, match=problem) as caught:
            parse_ice_server(spec)
        assert "hunter2" not in str(caught.value)
