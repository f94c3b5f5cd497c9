"""The signaling server under abuse: split and stalled bodies, trickled headers, concurrent offers,
/status cost, its rate limit and admin token, a fuzzer over /offer and the request line, churn.

Most tests run a ``WebRTCServer`` in this process on 127.0.0.1 (its own event loop, in a thread)
and talk raw HTTP to it; ICE on both sides is pinned to 127.0.0.1, so an offer they get answered
leads to packets on loopback only. The concurrent-offers test runs ``serve --max-sessions N`` on
the test hosts (``conftest.py``), with offers from the other host.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import http.client
import json
import logging
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from stream.testing import split_frames, tone
from stream.transport._aiortc import pin_host_addresses, rtc_configuration
from stream.transport.cli import pipeline_factory
from stream.transport.server import WebRTCServer
from stream.transport.webrtc import Peer

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


# -- a server in this process, and raw HTTP to it
class LoopServer:
    """A WebRTCServer on 127.0.0.1 serving from its own event loop in a thread."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="server", daemon=True)
        self.thread.start()

        async def make() -> WebRTCServer:
            server = WebRTCServer(
                pipeline_factory(None, None, None), LOOPBACK, 0, ice_addresses=[LOOPBACK], **kwargs
            )
            await server.start()
            return server

        self.server = self.call(make())
        self.port = self.server.port

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def peek(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on the server's loop (its state is read there, not across threads)."""

        async def run() -> T:
            return fn()

        return self.call(run())

    def stop(self) -> None:
        async def finish() -> None:
            await self.server.stop()
            # what asyncio.run does at its end: aiortc leaves a task or two that end on cancel
            rest = asyncio.all_tasks() - {asyncio.current_task()}
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(finish())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., LoopServer]]:
    """``serve(**kwargs)``: a LoopServer with those WebRTCServer settings; stopped after."""
    made: list[LoopServer] = []

    def start(**kwargs: Any) -> LoopServer:
        made.append(LoopServer(**kwargs))
        return made[-1]

    yield start
    for server in made:
        server.stop()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request on a new connection: (status, headers, JSON body or the text)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, dict(resp.getheaders()), _decode(raw)
    finally:
        conn.close()


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def read_response(sock: socket.socket) -> tuple[int | None, Any]:
    """Read one HTTP response: (status, JSON body or text); (None, "") when closed without one."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return (None, "") if not data else (_status_of(data), data.decode(errors="replace"))
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    length = int(found.group(1)) if found else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return _status_of(head), _decode(rest[:length])


def _status_of(head: bytes) -> int | None:
    found = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(found.group(1)) if found else None


def raw_exchange(port: int, parts: list[bytes], pause_s: float = 0.0) -> tuple[int | None, Any]:
    """Send ``parts`` as separate writes ``pause_s`` apart, then read the response."""
    with socket.create_connection((LOOPBACK, port), timeout=20) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause_s)
            sock.sendall(part)
        return read_response(sock)


def post_head(path: str, length: int | None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
        f"{size}{extra}\r\n"
    ).encode()


def loopback_offer(candidates: bool = True) -> str:
    """An aiortc offer (audio) whose ICE candidates are 127.0.0.1 only (or none)."""

    async def make() -> str:
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection(rtc_configuration())  # no STUN server
        pc.addTransceiver("audio")
        with pin_host_addresses(frozenset({LOOPBACK})):
            await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        sdp = str(pc.localDescription.sdp)
        await pc.close()
        return sdp

    sdp = asyncio.run(make())
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            assert f" {LOOPBACK} " in line, line  # nothing here may point off the machine
    if not candidates:
        sdp = "".join(
            line + "\r\n"
            for line in sdp.splitlines()
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
    return sdp


def padded_offer_body(sdp: str, size: int) -> bytes:
    """The offer as JSON of exactly ``size`` bytes, grown by SDP attribute lines (as many
    candidates and codecs grow a real one), then spaces."""
    head, media = sdp.split("m=", 1)
    line = "a=x-pad:" + "x" * 200 + "\r\n"
    cost = len(json.dumps(line)) - 2  # what one more line adds to the JSON
    base = len(json.dumps({"sdp": sdp, "type": "offer"}))
    padded = head + line * max(0, (size - base) // cost) + "m=" + media
    body = json.dumps({"sdp": padded, "type": "offer"}).encode()
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records at ERROR and above, or with a traceback above DEBUG."""
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or (r.exc_info and r.levelno > logging.DEBUG)
    ]


# -- item 1: a body that arrives in more than one segment
def test_a_59_kib_offer_in_two_writes_is_answered(
    serve: Callable[..., LoopServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = serve(connect_timeout=3.0)
    body = padded_offer_body(loopback_offer(), 59 * 1024)
    assert len(body) == 59 * 1024
    half = len(body) // 2
    # declared length, the body in two writes 0.3 s apart (the repro)
    head = post_head("/offer", len(body))
    status, answer = raw_exchange(server.port, [head + body[:half], body[half:]], pause_s=0.3)
    assert status == 200, answer
    assert answer["type"] == "answer" and answer["sdp"].startswith("v=0")
    # chunked, no declared length: the chunks in three writes
    chunked = post_head("/offer", None, "Transfer-Encoding: chunked\r\n")
    chunks = [body[:1000], body[1000:half], body[half:]]
    parts = [chunked] + [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks]
    parts[-1] += b"0\r\n\r\n"
    status, answer = raw_exchange(server.port, parts, pause_s=0.2)
    assert status == 200, answer
    assert server.peek(lambda: server.server.sessions_total) == 2
    assert no_tracebacks(caplog) == []


def test_a_stalled_body_gets_408_within_the_body_deadline(serve: Callable[..., LoopServer]) -> None:
    server = serve(body_timeout=1.0)
    with socket.create_connection((LOOPBACK, server.port), timeout=20) as sock:
        sock.sendall(post_head("/offer", 4000) + b'{"type": "offer", "sdp": "v=0')
        started = time.monotonic()
        status, data = read_response(sock)
        waited = time.monotonic() - started
    assert status == 408, data
    assert "did not arrive in 1 s" in data["error"]
    assert waited >= 0.9  # not before the deadline (the reply bounds the rest)
    assert server.peek(lambda: server.server.rejected) == {408: 1}


# -- item 6: slow clients
def test_trickled_headers_and_silent_connections_are_closed_at_the_header_deadline(
    serve: Callable[..., LoopServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stream.transport")
    deadline = 1.5
    server = serve(header_timeout=deadline)
    opened = time.monotonic()  # before any connection: none may be closed earlier than this
    trickling = [socket.create_connection((LOOPBACK, server.port), timeout=5) for _ in range(30)]
    silent = [socket.create_connection((LOOPBACK, server.port), timeout=5) for _ in range(5)]
    # one that finished a request and stays open (keep-alive) without another
    idle = http.client.HTTPConnection(LOOPBACK, server.port, timeout=20)
    idle.request("GET", "/status")
    assert idle.getresponse().read()
    for sock in trickling:
        sock.sendall(b"POST /offer HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    closed_after: dict[socket.socket, float] = {}
    alive = [*trickling, *silent]
    if idle.sock is not None:
        alive.append(idle.sock)
    expected = len(alive)
    give_up = opened + deadline + 20  # bounded however busy the machine is
    while alive and time.monotonic() < give_up:
        for sock in list(alive):
            ready, _, _ = select.select([sock], [], [], 0)
            ended = False
            if ready:
                try:
                    ended = sock.recv(4096) == b""
                except OSError:
                    ended = True
            elif sock in trickling:
                try:
                    sock.sendall(b"a")  # one more byte of the header, never its end
                except OSError:
                    ended = True
            if ended:
                closed_after[sock] = time.monotonic() - opened
                alive.remove(sock)
        time.sleep(0.1)
    for sock in [*trickling, *silent]:
        sock.close()
    idle.close()
    assert len(closed_after) == expected, f"{len(alive)} of {expected} still held"
    assert min(closed_after.values()) >= deadline - 0.05  # nobody dropped early
    lines = [r for r in caplog.records if "no complete request in 1.5 s" in r.getMessage()]
    assert len(lines) == len(trickling) + len(silent)  # one line per connection
    assert all(r.levelno == logging.INFO and not r.exc_info for r in lines)
    idled = [r for r in caplog.records if "closed an idle connection" in r.getMessage()]
    assert len(idled) == 1 and idled[0].levelno == logging.DEBUG  # not news: browsers do it
    status, _, data = request(server.port, "GET", "/status")  # still serving
    assert status == 200 and data["sessions"] == 0


def test_malformed_requests_get_one_log_line_not_a_traceback(
    serve: Callable[..., LoopServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve()
    junk = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n",  # TLS hello
        b"GET /status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
        b"POST /offer HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /offer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for raw in junk:
        status, _ = raw_exchange(server.port, [raw])
        assert status is None or 400 <= status < 500, (raw[:40], status)
    assert no_tracebacks(caplog) == []
    # one line each, but for the TLS handshake, which aiohttp itself keeps at DEBUG
    said = [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiohttp.server" and r.levelno == logging.INFO
    ]
    assert len(said) == len(junk) - 1, said
    assert all("\n" not in m and len(m) < 300 for m in said), said
    assert request(server.port, "GET", "/status")[0] == 200


# -- item 4: concurrent offers
@pytest.mark.webrtc
def test_concurrent_offers_get_the_whole_capacity(hosts: Any, start_server: Any) -> None:
    capacity, extra = 16, 8

    async def offer_sdp() -> str:
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection(rtc_configuration())
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        sdp = str(pc.localDescription.sdp)
        await pc.close()
        return sdp

    def offers_at_once(url: str, count: int) -> list[tuple[int, dict[str, Any]]]:
        async def run() -> list[tuple[int, dict[str, Any]]]:
            import aiohttp

            body = {"sdp": await offer_sdp(), "type": "offer"}
            start = asyncio.Event()

            async def one(http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
                await start.wait()
                async with http.post(url.rstrip("/") + "/offer", json=body) as resp:
                    return resp.status, await resp.json()

            limits = aiohttp.TCPConnector(limit=0)  # every offer on its own connection
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=limits, timeout=timeout) as http:
                tasks = [asyncio.create_task(one(http)) for _ in range(count)]
                await asyncio.sleep(0.2)
                start.set()
                return list(await asyncio.gather(*tasks))

        result: list[tuple[int, dict[str, Any]]] = hosts.run_async("client", run)
        return result

    exact = start_server("--max-sessions", str(capacity))
    replies = offers_at_once(exact.url, capacity)
    assert sorted(code for code, _ in replies) == [200] * capacity, replies
    assert len({data["session"] for _, data in replies}) == capacity

    over = start_server("--max-sessions", str(capacity))
    replies = offers_at_once(over.url, capacity + extra)
    codes = [code for code, _ in replies]
    assert codes.count(200) == capacity and codes.count(503) == extra, replies
    refused = [data for code, data in replies if code == 503]
    assert all(f"server full: {capacity} sessions" in d["error"] for d in refused), refused
    assert over.status()["rejected"] == {"503": extra}


# -- item 5: /status cost, its rate limit, the admin token
def _full_collections(action: Callable[[], None]) -> int:
    """How many generation-2 garbage collections ran during ``action()`` (in any thread)."""
    seen: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info.get("generation") == 2:
            seen.append(1)

    gc.callbacks.append(callback)
    try:
        action()
    finally:
        gc.callbacks.remove(callback)
    return len(seen)


def test_status_during_a_live_session_runs_no_garbage_collection(
    serve: Callable[..., LoopServer],
) -> None:
    server = serve(status_rate=0)  # no limit: this is about the cost of each request
    requests = 40

    took: list[float] = []

    def hammer() -> None:
        started = time.monotonic()
        for _ in range(requests):
            status, _, data = request(server.port, "GET", "/status")
            assert status == 200 and data["sessions"] == 1
        took.append(time.monotonic() - started)

    def pause() -> None:
        time.sleep(took[0])

    def frames_in() -> int:
        return sum(s.frames_in for s in server.server.sessions.values())

    async def run() -> tuple[int, int]:
        frames = split_frames(tone(440, 60.0), 48000, 960)
        async with Peer(server.server.url, frames, [], ice_addresses=[LOOPBACK]):
            async with asyncio.timeout(20):
                while server.peek(frames_in) < 25:  # media flows
                    await asyncio.sleep(0.1)
            during = await asyncio.to_thread(_full_collections, hammer)
            # as long again without requests: the collections Python makes on its own
            baseline = await asyncio.to_thread(_full_collections, pause)
        return baseline, during

    baseline, during = asyncio.run(run())
    # the old server collected once per request (40); what is left is Python's own schedule
    assert during <= baseline + 3, (baseline, during)


def test_status_is_rate_limited_per_client(serve: Callable[..., LoopServer]) -> None:
    rate = 2.0
    server = serve(status_rate=rate)
    burst = int(server.peek(lambda: server.server.signaling.status_limit.burst))  # type: ignore[union-attr]
    assert burst == 8  # 4 s worth
    conn = http.client.HTTPConnection(LOOPBACK, server.port, timeout=20)
    codes: list[int] = []
    started = time.monotonic()
    try:
        for _ in range(30):
            conn.request("GET", "/status")
            resp = conn.getresponse()
            data = json.loads(resp.read())
            codes.append(resp.status)
            if resp.status == 429:
                assert int(resp.getheader("Retry-After", "0")) >= 1
                assert "at most 2 a second per client" in data["error"]
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    ok = codes.count(200)
    assert set(codes) == {200, 429}
    assert burst <= ok <= burst + rate * elapsed + 1, (ok, elapsed)
    time.sleep(1.0 / rate + 0.1)  # a token is back
    assert request(server.port, "GET", "/status")[0] == 200
    # the drain endpoint shares the limit; without workers, 404 once let through
    assert request(server.port, "POST", "/workers/0/drain")[0] in (404, 429)


def test_offers_are_rate_limited_per_client_when_asked(serve: Callable[..., LoopServer]) -> None:
    rate = 1.0
    server = serve(offer_rate=rate, token="s3cret")
    burst = int(server.peek(lambda: server.server.signaling.offer_limit.burst))  # type: ignore[union-attr]
    assert burst == 4  # 4 s worth
    codes: list[int] = []
    started = time.monotonic()
    for _ in range(12):  # a wrong token: 401 while under the limit, 429 past it
        status, headers, body = request(
            server.port, "POST", "/offer", b"{}", {"Authorization": "Bearer guess"}
        )
        codes.append(status)
        if status == 429:
            assert "at most 1 a second per client" in body["error"]
            assert int(headers["Retry-After"]) >= 1
    elapsed = time.monotonic() - started
    assert set(codes) == {401, 429}, codes
    assert burst <= codes.count(401) <= burst + rate * elapsed + 1, (codes, elapsed)
    # /status has its own bucket: offers spent none of it
    admin = {"Authorization": "Bearer s3cret"}
    assert request(server.port, "GET", "/status", headers=admin)[0] == 200


def test_admin_token_guards_status_and_drain_but_not_offers(
    serve: Callable[..., LoopServer],
) -> None:
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    split = serve(token="user", admin_token="admin", status_rate=0)
    port = split.port
    assert request(port, "GET", "/status")[0] == 401
    assert request(port, "GET", "/status", headers=bearer("user"))[0] == 401
    assert request(port, "GET", "/status", headers=bearer("admin"))[0] == 200
    assert request(port, "POST", "/workers/0/drain", headers=bearer("user"))[0] == 401
    assert request(port, "POST", "/workers/0/drain", headers=bearer("admin"))[0] == 404
    not_json = b"not json"
    assert request(port, "POST", "/offer", not_json, bearer("admin"))[0] == 401
    assert request(port, "POST", "/offer", not_json, bearer("user"))[0] == 400  # past the token
    # a header with non-ASCII bytes is a wrong token, not a server error
    assert request(port, "GET", "/status", headers={"Authorization": "Bearer adm\xefn"})[0] == 401

    only_admin = serve(admin_token="admin", status_rate=0)
    assert request(only_admin.port, "POST", "/offer", not_json)[0] == 400  # /offer is public
    assert request(only_admin.port, "GET", "/status")[0] == 401

    only_token = serve(token="user", status_rate=0)  # as before: one token guards everything
    assert request(only_token.port, "GET", "/status")[0] == 401
    assert request(only_token.port, "GET", "/status", headers=bearer("user"))[0] == 200
    assert request(only_token.port, "POST", "/offer", not_json)[0] == 401

    public = serve(status_rate=0)
    assert request(public.port, "GET", "/status")[0] == 200


# -- the fuzzers
@functools.cache
def _template() -> str:
    return loopback_offer(candidates=False)


@st.composite
def mutated_offers(draw: st.DrawFn) -> bytes:
    """A real offer with lines dropped, repeated, cut or replaced, in a JSON body (or not)."""
    lines = _template().split("\r\n")
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "cut", "replace", "value"]))
        if action == "drop":
            del lines[i]
        elif action == "repeat":
            lines.insert(i, lines[i])
        elif action == "cut":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif action == "replace":
            lines[i] = draw(st.text(max_size=60))
        else:
            key, sep, _ = lines[i].partition(":")
            lines[i] = key + (sep or "=") + draw(st.text(max_size=40))
        if not lines:
            lines = [""]
    sdp = "\r\n".join(lines)
    shape = draw(st.sampled_from(["offer", "type", "raw", "extra"]))
    if shape == "raw":
        return sdp.encode("utf-8", "surrogatepass")
    data: dict[str, Any] = {"sdp": sdp, "type": "offer"}
    if shape == "type":
        data["type"] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=10)))
    elif shape == "extra":
        data[draw(st.text(max_size=10))] = draw(st.text(max_size=20))
    return json.dumps(data).encode("utf-8", "surrogatepass")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
offer_bodies = st.one_of(
    st.binary(max_size=600),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_offers(),
)


class Collected(logging.Handler):
    """Keeps the records worth failing for: errors, and tracebacks above DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "asyncio" and "destroyed but it is pending" in record.getMessage():
            return  # an earlier test's event loop torn down, not this server
        if record.levelno >= logging.ERROR or (record.exc_info and record.levelno > logging.DEBUG):
            self.bad.append(f"{record.levelname} {record.name}: {record.getMessage()}")


class FuzzTarget:
    def __init__(self) -> None:
        self.log = Collected()
        logging.getLogger().addHandler(self.log)
        self.loop_server = LoopServer(
            connect_timeout=2.0, max_sessions=1000, status_rate=0, admin_token="admin"
        )
        self.port = self.loop_server.port

    def check(self) -> None:
        """The server logged no error or traceback so far and sent no 500."""
        assert self.log.bad == []
        rejected = self.loop_server.peek(lambda: dict(self.loop_server.server.rejected))
        assert 500 not in rejected, rejected

    def close(self) -> None:
        self.loop_server.stop()
        logging.getLogger().removeHandler(self.log)


@pytest.fixture(scope="module")
def fuzz_target() -> Iterator[FuzzTarget]:
    """One server for every example of both fuzzers (a server per example would be slow)."""
    target = FuzzTarget()
    yield target
    target.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=offer_bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_fuzzed_offers_get_a_4xx_or_an_answer_never_a_5xx(
    fuzz_target: FuzzTarget, body: bytes, content_type: str
) -> None:
    assume(b"a=candidate" not in body)  # the template has none: no address to send to
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, data = request(fuzz_target.port, "POST", "/offer", body, headers)
    event(f"HTTP {status}")  # --hypothesis-show-statistics: how deep the bodies got
    assert status in (200, 400, 413), (status, data, body[:200])
    if status == 200:
        assert data["type"] == "answer" and data["sdp"].startswith("v=0")
    else:
        assert isinstance(data, dict) and data["error"], data
    fuzz_target.check()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.one_of(
        st.binary(min_size=1, max_size=400),
        st.builds(
            lambda method, path, headers: f"{method} {path} HTTP/1.1\r\n{headers}\r\n".encode(
                "utf-8", "surrogatepass"
            ),
            st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "G\x00T", ""]),
            st.sampled_from(["/", "/offer", "/status", "/workers/0/drain", "/static/../x", "*"])
            | st.text(max_size=30),
            st.text(max_size=200)
            | st.text(max_size=40).map(lambda t: f"Host: x\r\nAuthorization: Bearer {t}\r\n"),
        ),
    )
)
def test_fuzzed_requests_never_get_a_5xx(fuzz_target: FuzzTarget, raw: bytes) -> None:
    with socket.create_connection((LOOPBACK, fuzz_target.port), timeout=20) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)  # nothing more: the server answers or closes
        status, _ = read_response(sock)
    event(f"HTTP {status}")
    assert status is None or status < 500, (status, raw[:100])
    fuzz_target.check()


# -- churn: connections dropped in every phase leave nothing behind
def test_connection_churn_leaves_nothing_behind(
    serve: Callable[..., LoopServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = serve(header_timeout=2.0, body_timeout=2.0, connect_timeout=2.0, status_rate=0)
    port = server.port
    offer = json.dumps({"sdp": loopback_offer(candidates=False), "type": "offer"}).encode()

    def tasks_now() -> int:
        return len(asyncio.all_tasks())

    baseline = server.peek(tasks_now)
    ways = [
        b"",  # connect and go
        b"GET /sta",  # mid request line
        b"GET /status HTTP/1.1\r\nHost: x\r\n",  # mid headers
        post_head("/offer", len(offer)) + offer[:100],  # mid body
        post_head("/offer", len(offer)) + offer,  # a whole offer, gone before the answer
        b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",  # gone before reading the reply
    ]
    for _ in range(5):
        socks = []
        for way in ways * 6:
            sock = socket.create_connection((LOOPBACK, port), timeout=10)
            if way:
                sock.sendall(way)
            socks.append(sock)
        time.sleep(0.05)
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset, as a vanished client
    assert request(port, "GET", "/status")[0] == 200  # serving throughout

    def left() -> dict[str, int]:
        """What is left that should not be (a closing session's aiortc tasks end soon after)."""
        s = server.server
        http = s.signaling
        assert http.runner is not None and http.runner.server is not None
        counts = {
            "connections": len(http.runner.server.connections),
            "waiting": len(http.deadlines.waiting_since),
            "served": len(http.deadlines.served),
            "in handler": len(http.deadlines.in_handler),
            "sessions": len(s.sessions),
            "answering": len(s._answering),
            "extra tasks": max(0, tasks_now() - baseline),
        }
        return {k: v for k, v in counts.items() if v}

    give_up = time.monotonic() + 30
    while server.peek(left) and time.monotonic() < give_up:
        time.sleep(0.2)
    assert server.peek(left) == {}
    assert no_tracebacks(caplog) == []
