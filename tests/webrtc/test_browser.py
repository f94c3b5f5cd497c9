"""A real browser: headless Chromium on the client host sends a file through the server's page."""

from __future__ import annotations

import os
import shutil
import stat
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.engine import has_rtp_audio_leg
from stream.testing import tone

from .conftest import manifest
from .signals import active, band_share, dominant_hz, rms_db

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytest.importorskip("playwright", reason="playwright is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

TONE_HZ = 660


def chromium_binary() -> str | None:
    """The real Chromium executable (Debian's /usr/bin/chromium is a shell wrapper)."""
    for path in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if path and os.access(path, os.X_OK):
            return path
    return None


def chromium_in_namespace(tmp_path: Path, namespace: str, binary: str) -> str:
    """A launcher Playwright can start that runs Chromium inside ``namespace``."""
    script = tmp_path / "chromium-in-netns"
    script.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {binary} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def write_wav(path: Path, samples: np.ndarray, rate: int = 48000) -> None:
    pcm = np.clip(np.rint(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        raw = w.readframes(w.getnframes())
        channels = w.getnchannels()
    x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
    return x.reshape(-1, channels)[:, 0]


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "two-workers"])
def test_browser_audio_goes_through_the_pipeline(
    hosts: Any, start_server: Any, tmp_path: Path, workers: int
) -> None:
    from playwright.sync_api import sync_playwright

    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (.ci/install-webrtc.sh)")
    fake = tmp_path / "fake-mic.wav"
    write_wav(fake, tone(TONE_HZ, 10.0, 48000, amplitude=0.5)[0])
    record = tmp_path / "record"
    server = start_server(
        "--pipeline",
        manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]),
        "--record",
        str(record),
        *(["--workers", str(workers)] if workers else []),
    )
    origin = server.url.rstrip("/")
    args = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake}",
        f"--unsafely-treat-insecure-origin-as-secure={origin}",
        "--autoplay-policy=no-user-gesture-required",
    ]  # fmt: skip
    launcher = chromium_in_namespace(tmp_path, hosts.namespaces["client"], binary)
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
            page.goto(server.url, timeout=30_000)
            page.click("#connect")
            page.wait_for_function("window.remotemedia.connection === 'connected'", timeout=30_000)
            page.wait_for_function(
                "window.remotemedia.levels && window.remotemedia.levels.input.rms_db > -30",
                timeout=15_000,
            )
            busy = server.wait_for(lambda s: s["sessions"] == 1, timeout=10)
            time.sleep(3.0)
            state = page.evaluate(
                "({session: remotemedia.session, levels: remotemedia.levels,"
                " stats: remotemedia.stats, kinds: remotemedia.messages.map(m => m.type),"
                " log: document.querySelector('#log').innerText})"
            )
            page.screenshot(path=str(tmp_path / "page.png"))
            # the page's stage form sends a live setting over the data channel
            page.fill("#stages input", "-20")
            page.dispatch_event("#stages input", "change")
            page.wait_for_function(
                "(() => { const l = remotemedia.levels;"
                " return l.output.rms_db !== null && l.output.rms_db < l.input.rms_db - 17; })()",
                timeout=10_000,
            )
            acks = page.evaluate("remotemedia.messages.filter(m => m.type === 'ack')")
            page.click("#disconnect")
        finally:
            browser.close()
    if workers:  # the browser's session ran in a worker process, not the front
        assert busy["list"][0]["worker"] in range(workers), busy
        assert sum(w["sessions"] for w in busy["workers"]) == 1, busy["workers"]
    # Chromium's audio RTP (AES-GCM SRTP, its header extensions) goes through the engine's leg
    expected = "native" if has_rtp_audio_leg() else "aiortc"
    assert busy["list"][0]["audio_transport"] == expected, busy["list"][0]
    assert "hello" in state["kinds"] and "stats" in state["kinds"]
    assert state["stats"].get("audio packets received", 0) > 50, state["stats"]
    # the server's output level is the input's minus the gain, as the page shows it
    levels = state["levels"]
    assert levels["output"]["rms_db"] == pytest.approx(levels["input"]["rms_db"] - 6, abs=1.5)
    server.wait_for(lambda s: s["sessions"] == 0, timeout=20)
    recording = record / f"{state['session']}.wav"
    assert recording.exists(), f"no recording\n{server.log()}"
    assert acks and acks[0]["param"] == "gain_db" and acks[0]["value"] == -20
    x = active(read_wav(recording))
    assert len(x) > 3 * 48000, f"{len(x)} samples recorded"
    x = x[4800 : 4800 + 2 * 48000]  # before the gain change
    assert dominant_hz(x) == pytest.approx(TONE_HZ, abs=2)
    assert band_share(x, TONE_HZ) > 0.95
    # Chromium's fake capture plays the file at its level; the pipeline took 6 dB off
    assert rms_db(x) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)) - 6, abs=2.0)
