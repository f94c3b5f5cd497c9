"""HTTPS: ``serve --make-cert`` and ``--cert/--key``; Chromium and the Python peer over https.

The browser trusts the pair only through its key's pin (``--ignore-certificate-errors-spki-list``),
not through a flag that makes an insecure origin count as secure: the page must be a secure
context to get the microphone at all.
"""

from __future__ import annotations

import json
import re
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.testing import tone

from .conftest import REPO, manifest
from .signals import active, band_share, dominant_hz, rms_db
from .test_browser import TONE_HZ, chromium_binary, chromium_in_namespace, read_wav, write_wav

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytest.importorskip("cryptography", reason="cryptography is not installed (remotemedia[webrtc])")

from stream.errors import TransportError
from stream.transport.certs import fingerprint, spki_sha256
from stream.transport.webrtc import connect

SERVE = [sys.executable, "-m", "stream.transport", "serve"]
CONNECT = [sys.executable, "-m", "stream.transport", "connect"]


def make_cert(directory: Path, host: str) -> tuple[Path, Path, str]:
    """``serve --make-cert`` as a user runs it: the pair and the fingerprint it printed."""
    done = subprocess.run(
        [*SERVE, "--make-cert", str(directory), "--host", host],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = re.search(r"SHA-256 fingerprint: ([0-9A-F:]{95})", done.stdout)
    assert printed, done.stdout
    return directory / "cert.pem", directory / "key.pem", printed.group(1)


def test_make_cert_writes_a_pair_and_prints_its_fingerprint(tmp_path: Path) -> None:
    from cryptography import x509

    cert, key, printed = make_cert(tmp_path / "tls", "10.213.0.1")
    assert printed == fingerprint(cert)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "10.213.0.1" in {str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)}
    # the key matches the certificate: a TLS context takes the pair
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    # never overwritten
    again = subprocess.run(
        [*SERVE, "--make-cert", str(tmp_path / "tls")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert again.returncode == 1 and "exists" in again.stderr
    assert fingerprint(cert) == printed


def _https_get(hosts: Any, url: str, cafile: Path) -> tuple[int, Any]:
    async def call() -> tuple[int, Any]:
        context = ssl.create_default_context(cafile=str(cafile))
        with urllib.request.urlopen(url, timeout=20, context=context) as resp:
            return resp.status, json.loads(resp.read())

    result: tuple[int, Any] = hosts.run_async("client", call)
    return result


@pytest.mark.webrtc
def test_python_peer_over_https(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    cert, key, _ = make_cert(tmp_path / "tls", hosts.server_ip)
    server = start_server(
        "--pipeline",
        manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]),
        "--cert",
        str(cert),
        "--key",
        str(key),
    )
    assert server.url.startswith("https://")
    assert _https_get(hosts, server.url + "healthz", cert) == (200, {"status": "alive"})
    received: list[Any] = []

    async def trusted() -> Any:
        frames = tone(440, 1.5, 48000, amplitude=0.5)
        from stream.testing import split_frames

        return await connect(server.url, split_frames(frames, 48000, 960), received, cafile=cert)

    result = hosts.run_async("client", trusted)
    assert result.session and result.audio_seconds_received > 0.5
    x = active(np.concatenate([f.samples[0] for f in received]))
    assert dominant_hz(x) == pytest.approx(440, abs=2)

    async def untrusted() -> str:  # the system store does not know this certificate
        try:
            await connect(server.url, [], seconds=1.0)
        except TransportError as exc:
            return str(exc)
        return "connected"

    assert "CERTIFICATE_VERIFY_FAILED" in hosts.run_async("client", untrusted)

    # the command line takes the CA file too
    out = hosts.run(
        "client",
        [
            *CONNECT,
            server.url,
            "--tone",
            "440",
            "--seconds",
            "1.5",
            "--cafile",
            str(cert),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["audio_seconds_received"] > 0.5


@pytest.mark.webrtc
def test_browser_over_https(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    """Chromium on the client host loads the page over https (the pair pinned by its key, no
    insecure-origin flag), sends its fake microphone, and gets it back through the pipeline."""
    pytest.importorskip("playwright", reason="playwright is not installed (.ci/install-webrtc.sh)")
    from playwright.sync_api import sync_playwright

    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (.ci/install-webrtc.sh)")
    cert, key, _ = make_cert(tmp_path / "tls", hosts.server_ip)
    fake = tmp_path / "fake-mic.wav"
    write_wav(fake, tone(TONE_HZ, 10.0, 48000, amplitude=0.5)[0])
    record = tmp_path / "record"
    server = start_server(
        "--pipeline",
        manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]),
        "--record",
        str(record),
        "--cert",
        str(cert),
        "--key",
        str(key),
    )
    assert server.url.startswith("https://")
    args = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake}",
        f"--ignore-certificate-errors-spki-list={spki_sha256(cert)}",
        "--autoplay-policy=no-user-gesture-required",
    ]  # fmt: skip
    assert not any("insecure-origin" in a or a == "--ignore-certificate-errors" for a in args)
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
            secure = page.evaluate("({protocol: location.protocol, secure: isSecureContext})")
            page.click("#connect")
            page.wait_for_function("window.remotemedia.connection === 'connected'", timeout=30_000)
            page.wait_for_function(
                "window.remotemedia.levels && window.remotemedia.levels.input.rms_db > -30",
                timeout=15_000,
            )
            # 3 s of processed audio recorded, measured by what the page saw come back
            page.wait_for_function(
                "(remotemedia.stats['audio packets received'] || 0) > 150", timeout=20_000
            )
            state = page.evaluate(
                "({session: remotemedia.session, levels: remotemedia.levels,"
                " kinds: remotemedia.messages.map(m => m.type)})"
            )
            page.click("#disconnect")
        finally:
            browser.close()
    assert secure == {"protocol": "https:", "secure": True}
    assert "hello" in state["kinds"]
    levels = state["levels"]
    assert levels["output"]["rms_db"] == pytest.approx(levels["input"]["rms_db"] - 6, abs=1.5)
    # the recording is finalized when the session has closed
    deadline = time.monotonic() + 20
    while _https_get(hosts, server.url + "status", cert)[1]["sessions"]:
        assert time.monotonic() < deadline, server.log()
    recording = record / f"{state['session']}.wav"
    assert recording.exists(), f"no recording\n{server.log()}"
    x = active(read_wav(recording))
    assert len(x) > 2 * 48000, f"{len(x)} samples recorded"
    x = x[4800 : 4800 + 2 * 48000]
    assert dominant_hz(x) == pytest.approx(TONE_HZ, abs=2)
    assert band_share(x, TONE_HZ) > 0.95
    assert rms_db(x) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)) - 6, abs=2.0)
