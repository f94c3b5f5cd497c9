"""The served page over the plain PCM WebSocket (/ws): headless Chromium on the client host, its
fake microphone playing a tone, over plain http on the test network; what the page received is
checked for the pipeline's level and pitch."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.testing import tone

from .conftest import manifest
from .signals import band_share, dominant_hz, rms_db
from .test_browser import chromium_binary, chromium_in_namespace, write_wav

pytest.importorskip("playwright", reason="playwright is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

TONE_HZ = 660
TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))  # the fake microphone's level
GAIN = [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]
UNREACHABLE = "10.213.1.1"  # an address on the server host the client has no route to


@pytest.fixture
def page(hosts: Any, tmp_path: Path) -> Iterator[Any]:
    """``page(url)``: a Playwright page of Chromium on the client host at ``url``, its
    microphone a 660 Hz tone at -9 dBFS."""
    from playwright.sync_api import sync_playwright

    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (.ci/install-webrtc.sh)")
    fake = tmp_path / "fake-mic.wav"
    write_wav(fake, tone(TONE_HZ, 30.0, 48000, amplitude=0.5)[0])
    launcher = chromium_in_namespace(tmp_path, hosts.namespaces["client"], binary)
    with sync_playwright() as pw:
        contexts: list[Any] = []

        def open_page(url: str) -> Any:
            origin = url.split("/?")[0].rstrip("/")
            args = [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake}",
                f"--unsafely-treat-insecure-origin-as-secure={origin}",
                "--autoplay-policy=no-user-gesture-required",
            ]  # fmt: skip
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=launcher,
                headless=True,
                args=args,
                ignore_default_args=["--headless", "--mute-audio"],
                timeout=60_000,
            )
            contexts.append(browser)
            tab = browser.pages[0] if browser.pages else browser.new_page()
            tab.goto(url, timeout=30_000)
            return tab

        try:
            yield open_page
        finally:
            for browser in contexts:
                browser.close()


def check_received(tab: Any) -> None:
    """The page's last 3 s of received audio: the tone, 6 dB down (the served Gain)."""
    rate = tab.evaluate("remotemedia.rate")
    x = np.asarray(
        tab.evaluate(
            "(() => { const out = [];"
            " for (const b of remotemedia.received.slice(-150)) for (const v of b) out.push(v);"
            " return out; })()"
        ),
        np.float64,
    )
    assert rate in (44100, 48000) and len(x) == 3 * rate, (rate, len(x))
    assert dominant_hz(x, rate) == pytest.approx(TONE_HZ, abs=2)
    assert band_share(x, TONE_HZ, rate) > 0.99
    assert rms_db(x) == pytest.approx(TONE_DB - 6, abs=1.0)


def test_page_over_ws(start_server: Any, tmp_path: Path, page: Any) -> None:
    server = start_server("--pipeline", manifest(tmp_path, GAIN), "--calls")
    tab = page(server.url + "?transport=ws")
    assert tab.input_value("#transport") == "ws"
    tab.click("#connect")
    tab.wait_for_function("remotemedia.connection === 'connected'", timeout=30_000)
    busy = server.wait_for(lambda s: s["calls"]["calls"] == 1, timeout=10)
    assert busy["sessions"] == 0  # no WebRTC session was tried
    # 4 s of the tone through the pipeline and back (150 frames of 20 ms are the last 3 s)
    tab.wait_for_function("remotemedia.received.length >= 200", timeout=30_000)
    state = tab.evaluate(
        "({transport: remotemedia.transport, levels: remotemedia.levels,"
        " stats: remotemedia.stats, call: remotemedia.session})"
    )
    tab.screenshot(path=str(tmp_path / "page.png"))
    check_received(tab)
    assert state["transport"] == "ws"
    assert state["call"] == busy["calls"]["list"][0]["call"]
    # the page's meters: its microphone, and the pipeline's output 6 dB down
    levels = state["levels"]
    assert levels["input"]["rms_db"] == pytest.approx(TONE_DB, abs=1.0)
    assert levels["output"]["rms_db"] == pytest.approx(levels["input"]["rms_db"] - 6, abs=1.0)
    assert state["stats"]["audio frames played"] > 0
    tab.click("#disconnect")  # the page says stop: the call ends as the caller asked
    done = server.wait_for(lambda s: s["calls"]["calls"] == 0, timeout=15)
    assert done["calls"]["ended"] == {"caller stopped the stream": 1}, done["calls"]


@pytest.fixture
def unreachable_ice(hosts: Any) -> Iterator[str]:
    """An address on the server host that the client cannot reach (no route): WebRTC pinned to
    it never connects, while the page's HTTP and WebSocket reach the server as before."""
    ns, link = hosts.namespaces["server"], hosts.interfaces["server"]
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{UNREACHABLE}/24", "dev", link], check=True)
    try:
        yield UNREACHABLE
    finally:
        subprocess.run(["ip", "-n", ns, "addr", "del", f"{UNREACHABLE}/24", "dev", link])


def test_page_falls_back_to_ws(
    start_server: Any, tmp_path: Path, page: Any, unreachable_ice: str
) -> None:
    server = start_server(
        "--pipeline", manifest(tmp_path, GAIN), "--calls", "--ice-address", unreachable_ice
    )
    tab = page(server.url)  # transport: auto
    assert tab.input_value("#transport") == "auto"
    tab.click("#connect")
    tab.wait_for_function(
        "remotemedia.transport === 'ws' && remotemedia.connection === 'connected'",
        timeout=60_000,
    )
    log = tab.evaluate("document.querySelector('#log').innerText")
    assert "falling back to the WebSocket" in log, log
    busy = server.wait_for(lambda s: s["calls"]["calls"] == 1, timeout=10)
    assert busy["sessions_total"] == 1  # the WebRTC attempt came first
    tab.wait_for_function("remotemedia.received.length >= 200", timeout=30_000)
    check_received(tab)
