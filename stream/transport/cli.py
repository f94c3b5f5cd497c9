"""The WebRTC commands: ``serve_main(argv)`` and ``connect_main(argv)``.

``remotemedia serve --pipeline pipeline.json --host 127.0.0.1 --port 8080`` serves the pipeline
to browsers and Python peers (``--workers N``: in N worker processes; ``--ray ADDRESS``: on the
nodes of a Ray cluster, see docs/deploy.md; ``--cert FILE --key FILE``: over HTTPS, and
``--make-cert DIR`` makes a self-signed pair for a trial). SIGTERM or Ctrl-C drains: no new
sessions, the live ones run on for up to ``--drain-timeout`` seconds, then are closed with a
reason to each peer; a second signal closes them at once; the exit code is 0 either way
(docs/operations.md). ``remotemedia connect URL --in FILE --out FILE``
sends a file (or a tone) to a server and records what comes back: over WebRTC to an
``http(s)://`` URL, over the plain PCM WebSocket to a ``ws(s)://HOST:PORT/ws`` URL (``serve
--calls``), where an exchange that lost data (the server ended the call, reported an error, or
the socket closed abnormally) exits 1. Both return an exit code; a user's mistake prints one
line on stderr (``--debug`` shows the traceback).
``python -m stream.transport serve|connect`` runs them without the main CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import StreamError
from ..node import Node
from ..pipeline import Pipeline
from .ice import DEFAULT_TURN_TTL_S
from .logs import LogFormat
from .logs import configure as configure_logs

DEFAULT_DRAIN_TIMEOUT_S = 30.0  # settings.DEFAULT_DRAIN_TIMEOUT_S, without importing aiortc

EXIT_ERROR = 1
EXIT_USAGE = 2


def _jitter(value: str) -> int | None:
    if value == "aiortc":
        return None
    depth = int(value)
    if not 0 <= depth <= 8:
        raise argparse.ArgumentTypeError("jitter depth is 0..8 packets, or 'aiortc'")
    return depth


def _resources(value: str) -> dict[str, float]:
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in data.items()
    ):
        raise argparse.ArgumentTypeError("want a JSON object of amounts, e.g. '{\"webrtc\": 1}'")
    return {k: float(v) for k, v in data.items()}


def serve_parser(prog: str = "remotemedia serve") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve a pipeline over WebRTC: one pipeline per peer, page at /.",
    )
    p.add_argument("--pipeline", help="pipeline manifest (JSON/YAML); each session builds its own")
    p.add_argument("--chain", help='stages in chain syntax, e.g. "gain:-6" (after --pipeline)')
    p.add_argument(
        "--allow-module",
        action="append",
        default=[],
        metavar="PREFIX",
        help="let --pipeline's module:Class types import modules under PREFIX (repeatable; "
        "media_nodes and stream always may, nothing else unless listed)",
    )
    p.add_argument("--backend", choices=["auto", "rust", "python"], default=None)
    p.add_argument("--host", default="127.0.0.1", help="signaling/page address (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="signaling/page port (8080; 0: any)")
    p.add_argument("--max-sessions", type=int, default=16, help="concurrent peers (16)")
    p.add_argument("--max-offer-bytes", type=int, default=64 * 1024)
    p.add_argument(
        "--token",
        default=os.environ.get("REMOTEMEDIA_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' (default $REMOTEMEDIA_TOKEN)",
    )
    p.add_argument(
        "--admin-token",
        default=os.environ.get("REMOTEMEDIA_ADMIN_TOKEN"),
        help="/status and /workers/N/drain need this token instead of --token "
        "(default $REMOTEMEDIA_ADMIN_TOKEN)",
    )
    p.add_argument(
        "--status-rate",
        type=float,
        default=5.0,
        metavar="PER_S",
        help="/status and drain requests a second per client address, bursts of 4 s worth, "
        "429 past it (5; 0: no limit)",
    )
    p.add_argument(
        "--offer-rate",
        type=float,
        default=0.0,
        metavar="PER_S",
        help="offers a second per client address, bursts of 4 s worth, 429 past it "
        "(0, the default: no limit; one client can then take every session slot)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="close a connection without a complete request line and headers after S (10)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="refuse an offer whose body did not arrive within S, 408 (10)",
    )
    p.add_argument("--idle-timeout", type=float, default=10.0, help="seconds without media (10)")
    p.add_argument(
        "--ice-address",
        action="append",
        default=[],
        metavar="ADDR_OR_IFACE",
        help="offer ICE host candidates only from these addresses/interfaces (repeatable)",
    )
    p.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN server for the server's and every peer's connections (repeatable): "
        "stun:HOST[:PORT], turn:USER:PASS@HOST[:PORT][?transport=udp|tcp], or turn:HOST with "
        "--turn-secret",
    )
    p.add_argument(
        "--turn-secret",
        default=os.environ.get("REMOTEMEDIA_TURN_SECRET"),
        help="coturn's static-auth-secret: each peer gets time-limited TURN credentials for "
        "the turn: URLs without USER:PASS (default $REMOTEMEDIA_TURN_SECRET)",
    )
    p.add_argument(
        "--turn-ttl",
        type=float,
        default=DEFAULT_TURN_TTL_S,
        metavar="S",
        help=f"lifetime of those credentials ({DEFAULT_TURN_TTL_S:g} s)",
    )
    p.add_argument(
        "--jitter",
        type=_jitter,
        default=3,
        help="audio jitter buffer: packets waited for a missing one (3), or 'aiortc' (80 ms fixed)",
    )
    p.add_argument(
        "--audio-codec",
        choices=("native", "inline", "aiortc"),
        default="native",
        help="the audio media path: 'native' (default): RTP, SRTP, jitter buffer and Opus in "
        "the engine, under aiortc's ICE and DTLS, where the peer offers Opus and names its SSRC "
        "(else 'inline'); 'inline': aiortc's RTP, decoded and Opus-encoded on the session's "
        "loop; 'aiortc': aiortc's decoder thread and thread pool (thread hops per 20 ms frame)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT_S,
        metavar="S",
        help="on SIGTERM/Ctrl-C, let live sessions run on up to S before closing them "
        f"({DEFAULT_DRAIN_TIMEOUT_S:g}); a second signal closes them at once",
    )
    p.add_argument(
        "--calls",
        action="store_true",
        help="also serve phone calls and WebSocket media: /twilio (Twilio Media Streams), "
        "/telnyx and /ws (plain PCM; --token applies), each call with its own pipeline",
    )
    p.add_argument(
        "--max-calls", type=int, default=16, help="concurrent calls (16; with sessions <= max)"
    )
    p.add_argument(
        "--twilio-auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN"),
        help="check X-Twilio-Signature on /twilio with this token (default $TWILIO_AUTH_TOKEN)",
    )
    p.add_argument(
        "--public-url",
        help="the wss://host Twilio is given, for its signature (default: the request's Host)",
    )
    p.add_argument("--cert", type=Path, metavar="FILE", help="serve HTTPS: certificate (PEM)")
    p.add_argument("--key", type=Path, metavar="FILE", help="serve HTTPS: private key (PEM)")
    p.add_argument(
        "--make-cert",
        type=Path,
        metavar="DIR",
        help="write a self-signed DIR/cert.pem and DIR/key.pem for --host (and --cert-name), "
        "print the SHA-256 fingerprint, and exit",
    )
    p.add_argument(
        "--cert-name",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="with --make-cert: another name or address the certificate is for (repeatable)",
    )
    p.add_argument("--channels", type=int, default=1, help="channels the pipeline gets (1)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run sessions in N worker processes, least loaded first (0: in this process); "
        "with --ray: N session workers per Ray node (1)",
    )
    p.add_argument(
        "--worker-sessions",
        type=int,
        metavar="N",
        help="at most N sessions per worker (default: no cap but --max-sessions)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run sessions on a Ray cluster's nodes: HOST:PORT of its head, 'auto' (the cluster "
        "this machine belongs to, else a new local one) or 'local' (a new one in this process)",
    )
    p.add_argument(
        "--ray-cpus",
        type=float,
        default=1.0,
        metavar="N",
        help="CPUs each Ray session worker reserves (1; nodes with fewer get none)",
    )
    p.add_argument(
        "--ray-resources",
        type=_resources,
        metavar="JSON",
        help="custom resources each Ray session worker needs, e.g. '{\"webrtc\": 1}': only "
        "nodes started with them (ray start --resources) get workers",
    )
    p.add_argument("--record", type=Path, help="also write each session's output to DIR/ID.wav")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("REMOTEMEDIA_LOG_FORMAT", "text"),
        help="log lines as text or one JSON object each, with session, stage, worker and trace "
        "id (default text, or $REMOTEMEDIA_LOG_FORMAT); workers log the same way",
    )
    p.add_argument("--debug", action="store_true", help="tracebacks and debug logs")
    return p


def pipeline_factory(
    manifest: str | None,
    chain: str | None,
    backend: str | None,
    allow_modules: Sequence[str] = (),
) -> Callable[[], Pipeline]:
    """A factory building a fresh pipeline per session from a manifest and/or a chain spec.

    Checks the manifest once up front (ManifestError lists its problems); its ``module:Class``
    types may name modules under ``allow_modules`` besides media_nodes and stream. With neither,
    the pipeline is a pass-through. The factory is picklable, so worker processes can use it.
    """
    return ManifestFactory(manifest, chain, backend, allow_modules)


class ManifestFactory:
    """A picklable pipeline factory: the manifest's stages, then the chain's (see above)."""

    def __init__(
        self,
        manifest: str | None,
        chain: str | None,
        backend: str | None,
        allow_modules: Sequence[str] = (),
    ) -> None:
        from ..chain_spec import parse_chain
        from ..manifest import ManifestError, load, validate_manifest

        self.data: dict[str, Any] | None = None
        # kept (and pickled) with the data: each worker checks module:Class types the same way
        self.allow_modules = (
            (allow_modules,) if isinstance(allow_modules, str) else tuple(allow_modules)
        )
        if manifest:
            self.data = load(manifest)
            problems = validate_manifest(self.data, self.allow_modules)
            if problems:
                raise ManifestError(problems, manifest)
        if chain:
            parse_chain(chain, backend)  # ConfigError now, not at the first session
        self.chain = chain
        self.backend = backend

    def __call__(self) -> Pipeline:
        from ..chain_spec import parse_chain
        from ..manifest import build_nodes

        nodes: list[Node] = []
        name = "session"
        if self.data is not None:
            nodes.extend(build_nodes(self.data, self.allow_modules)[0])
            name = str(self.data.get("name", name))
        if self.chain:
            nodes.extend(parse_chain(self.chain, self.backend))
        if not nodes:
            from media_nodes import PassThrough

            nodes.append(PassThrough(name="pass"))
        return Pipeline(nodes, name=name)


def record_factory(directory: Path) -> Callable[[str], Node]:
    """A sink factory writing each session's audio to ``directory/SESSION.wav`` (picklable)."""
    directory.mkdir(parents=True, exist_ok=True)
    return RecordFactory(directory)


class RecordFactory:
    """``factory(session_id)``: a FileSink of the session's audio in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, session_id: str) -> Node:
        from media_nodes.sinks import FileSink

        return _AudioOnly(FileSink(self.directory / f"{session_id}.wav", name="record"))


class _AudioOnly(Node):
    """Hands only AudioFrames to the wrapped sink (a WAV file takes no video or events)."""

    def __init__(self, sink: Node) -> None:
        super().__init__(name=sink.name)
        self.sink = sink

    def initialize(self) -> Any:
        return self.sink.initialize()

    async def process(self, item: Any) -> Any:
        from ..frames import AudioFrame
        from ..node import maybe_await

        if isinstance(item, AudioFrame):
            await maybe_await(self.sink.process(item))
        return None

    async def flush(self) -> list[Any]:
        from ..node import maybe_await

        await maybe_await(self.sink.flush())
        return []

    def cleanup(self) -> Any:
        return self.sink.cleanup()


def _telephony(args: argparse.Namespace) -> Any:
    from .telephony.settings import TelephonySettings

    return TelephonySettings(
        max_calls=args.max_calls,
        twilio_auth_token=args.twilio_auth_token,
        public_url=args.public_url,
        token=args.token,
        backend=args.backend,
    )


def _setup_logging(debug: bool, fmt: LogFormat = "text") -> None:
    configure_logs(fmt, logging.DEBUG if debug else logging.INFO)
    os.environ["REMOTEMEDIA_LOG_FORMAT"] = fmt  # worker processes inherit it


def _fail(debug: bool, exc: BaseException) -> int:
    if debug:
        raise exc
    if isinstance(exc, ImportError) and exc.name in ("aiortc", "aiohttp", "aioice"):
        exc = ImportError(f"the WebRTC transport needs {exc.name}: pip install aiortc aiohttp")
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_ERROR


def serve_main(argv: Sequence[str] | None = None, prog: str = "remotemedia serve") -> int:
    """``remotemedia serve``: run a WebRTCServer until SIGINT/SIGTERM; returns the exit code."""
    args = serve_parser(prog).parse_args(argv)
    _setup_logging(args.debug, args.log_format)
    if args.make_cert is not None:
        try:
            return _make_cert(args)
        except (StreamError, OSError, ImportError) as exc:
            return _fail(args.debug, exc)
    try:
        return asyncio.run(_serve(args))
    except (StreamError, OSError, ImportError) as exc:
        return _fail(args.debug, exc)
    except KeyboardInterrupt:
        return 0


def _make_cert(args: argparse.Namespace) -> int:
    from .certs import make_self_signed

    names = [args.host] if args.host not in ("0.0.0.0", "::", "") else []
    names += [*args.cert_name, "localhost", "127.0.0.1"]
    made = make_self_signed(args.make_cert, names)
    print(f"wrote {made.cert_file} and {made.key_file} for {', '.join(made.names)}")
    print(f"SHA-256 fingerprint: {made.sha256}")
    print(f"serve with: --cert {made.cert_file} --key {made.key_file}")
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from .server import WebRTCServer

    server = WebRTCServer(
        pipeline_factory(args.pipeline, args.chain, args.backend, args.allow_module),
        args.host,
        args.port,
        max_sessions=args.max_sessions,
        max_offer_bytes=args.max_offer_bytes,
        token=args.token,
        admin_token=args.admin_token,
        status_rate=args.status_rate,
        offer_rate=args.offer_rate,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout,
        ice_addresses=args.ice_address or None,
        ice_servers=args.ice_server,
        turn_secret=args.turn_secret,
        turn_ttl=args.turn_ttl,
        drain_timeout=args.drain_timeout,
        cert_file=args.cert,
        key_file=args.key,
        jitter_depth=args.jitter,
        opus_inline=args.audio_codec != "aiortc",
        native_rtp=args.audio_codec == "native",
        input_channels=args.channels,
        sink_factory=record_factory(args.record) if args.record else None,
        backend=args.backend,
        workers=args.workers,
        ray_address=args.ray,
        ray_worker_cpus=args.ray_cpus,
        ray_resources=args.ray_resources,
        worker_sessions=args.worker_sessions,
        telephony=_telephony(args) if args.calls else None,
    )
    await server.start()
    loop = asyncio.get_running_loop()
    shutdown: list[asyncio.Task[None]] = []

    def on_signal(name: str) -> None:
        if not shutdown:  # the first signal drains, the next one closes at once
            live = server.live_sessions
            timeout = server.settings.drain_timeout
            print(
                f"{name}: draining {live} sessions, up to {timeout:g} s (again: stop now)",
                flush=True,
            )
            shutdown.append(asyncio.create_task(server.drain(), name="drain"))
        else:
            print(f"{name}: stopping now", flush=True)
            shutdown.append(
                asyncio.create_task(server.stop(reason="server stopping now"), name="stop")
            )

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig.name)
    print(f"serving on {server.url} (Ctrl-C stops)", flush=True)
    for worker in server.workers:
        where = worker.describe()
        node = f" on node {where['node_ip']}" if where.get("node_ip") else ""
        state = "running" if where["alive"] else "not started (retrying)"
        print(f"worker {where['index']}: {where['kind']}{node}, {state}", flush=True)
    await server.serve_forever()
    for task in shutdown:  # their work is done once the server stopped; collect their outcome
        with contextlib.suppress(Exception):
            await task
    print("stopped", flush=True)
    return 0


def connect_parser(prog: str = "remotemedia connect") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Send a file or a tone to a RemoteMedia server, over WebRTC (http:// URL) "
        "or its PCM WebSocket (ws://HOST:PORT/ws, serve --calls); record what comes back.",
    )
    p.add_argument("url", help="the server, e.g. http://127.0.0.1:8080/ or ws://127.0.0.1:8080/ws")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--in", dest="input", help="media file to send (any FFmpeg-readable audio)")
    src.add_argument("--tone", type=float, metavar="HZ", help="send a sine of HZ instead")
    p.add_argument("--out", help="write the returned audio here (wav, flac, ...)")
    p.add_argument("--seconds", type=float, help="stop after this long (default: end of --in)")
    p.add_argument("--token", default=os.environ.get("REMOTEMEDIA_TOKEN"))
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.PARAM=VALUE",
        help="change a stage setting once connected, e.g. gain1.gain_db=-6 (repeatable)",
    )
    p.add_argument("--ice-address", action="append", default=[], metavar="ADDR_OR_IFACE")
    p.add_argument(
        "--ice-server",
        action="append",
        metavar="URL",
        help="STUN/TURN server (repeatable, as for serve); default: those the server offers",
    )
    p.add_argument(
        "--cafile",
        metavar="PEM",
        help="CA certificates an https:// server's certificate must chain to "
        "(default: the system's store)",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="fail when no media connection is up within S (15)",
    )
    p.add_argument("--jitter", type=_jitter, default=3)
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--debug", action="store_true")
    return p


def _set_message(spec: str) -> dict[str, Any]:
    target, sep, raw = spec.partition("=")
    stage, dot, param = target.rpartition(".")
    if not sep or not dot or not stage or not param:
        raise argparse.ArgumentTypeError(f"--set wants STAGE.PARAM=VALUE, got {spec!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return {"type": "set", "stage": stage, "param": param, "value": value}


def connect_main(argv: Sequence[str] | None = None, prog: str = "remotemedia connect") -> int:
    """``remotemedia connect``: one exchange with a server; returns the exit code."""
    parser = connect_parser(prog)
    args = parser.parse_args(argv)
    try:
        control = [_set_message(s) for s in args.set]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.input is None and args.tone is None:
        parser.error("give --in FILE or --tone HZ")
    if args.tone is not None and args.seconds is None:
        args.seconds = 5.0
    websocket = args.url.startswith(("ws://", "wss://"))
    if websocket and control:
        parser.error("--set needs a WebRTC server (http:// URL): /ws has no control channel")
    _setup_logging(args.debug)
    if not args.debug:
        logging.getLogger().setLevel(logging.WARNING)
    if websocket:
        return _connect_ws_main(args)
    try:
        summary = asyncio.run(_connect(args, control))
    except (StreamError, OSError, ImportError) as exc:
        return _fail(args.debug, exc)
    except KeyboardInterrupt:
        return 0
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"session {summary['session']}: sent {summary['frames_sent']} frames, received "
            f"{summary['audio_seconds_received']:.2f} s of audio"
            + (f" -> {args.out}" if args.out else "")
        )
    return 0


async def _connect(args: argparse.Namespace, control: list[dict[str, Any]]) -> dict[str, Any]:
    from .client import connect

    source, sink = _source_and_sink(args)
    result = await connect(
        args.url,
        source,
        sink,
        seconds=args.seconds,
        control=control,
        token=args.token,
        ice_addresses=args.ice_address or None,
        ice_servers=args.ice_server,
        cafile=args.cafile,
        connect_timeout=args.connect_timeout,
        jitter_depth=args.jitter,
    )
    return {
        "session": result.session,
        "frames_sent": result.frames_sent,
        "frames_received": result.frames_received,
        "audio_seconds_received": round(result.audio_seconds_received, 3),
        "messages": len(result.messages),
        "seconds": round(result.seconds, 3),
        "ended_by": result.ended_by,
        "close_reason": result.close_reason,
        "candidates": list(result.candidates) if result.candidates else None,
    }


def _source_and_sink(args: argparse.Namespace) -> tuple[Node, Node | None]:
    """``--in FILE`` or ``--tone HZ`` as a source node, ``--out FILE`` as a sink node."""
    source: Node
    if args.input is not None:
        from media_nodes.sources import FileSource

        source = FileSource(args.input, video=False, name="input")
    else:
        from media_nodes.sources import ToneSource

        source = ToneSource(args.tone, duration_s=args.seconds, name="tone")
    sink = None
    if args.out:
        from media_nodes.sinks import FileSink

        sink = FileSink(args.out, name="output")
    return source, sink


def _connect_ws_main(args: argparse.Namespace) -> int:
    """``remotemedia connect ws://HOST:PORT/ws``: exits 1 when the exchange lost data."""
    from .ws_client import connect_ws

    source, sink = _source_and_sink(args)
    try:
        result = asyncio.run(
            connect_ws(
                args.url,
                source,
                sink,
                seconds=args.seconds,
                token=args.token,
                cafile=args.cafile,
                timeout=args.connect_timeout,
            )
        )
    except (StreamError, OSError, ImportError) as exc:
        return _fail(args.debug, exc)
    except KeyboardInterrupt:
        return 0
    problem = result.problem()
    if args.json:
        print(
            json.dumps(
                {
                    "call": result.call,
                    "frames_sent": result.frames_sent,
                    "frames_received": result.frames_received,
                    "audio_seconds_received": round(result.audio_seconds_received, 3),
                    "messages": len(result.messages),
                    "seconds": round(result.seconds, 3),
                    "ended_by": result.ended_by,
                    "close_reason": result.close_reason,
                    "close_code": result.close_code,
                    "errors": result.errors,
                    "complete": problem is None,
                }
            )
        )
    else:
        print(
            f"call {result.call}: sent {result.frames_sent} frames, received "
            f"{result.audio_seconds_received:.2f} s of audio"
            + (f" -> {args.out}" if args.out else "")
        )
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def main(argv: Sequence[str]) -> int:
    """``python -m stream.transport serve ...`` or ``... connect ...``."""
    if not argv or argv[0] not in ("serve", "connect"):
        print("usage: python -m stream.transport {serve,connect} ...", file=sys.stderr)
        return EXIT_USAGE
    if argv[0] == "serve":
        return serve_main(argv[1:], "python -m stream.transport serve")
    return connect_main(argv[1:], "python -m stream.transport connect")


__all__ = ["connect_main", "main", "pipeline_factory", "record_factory", "serve_main"]
