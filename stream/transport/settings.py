"""``ServerSettings``: what a ``WebRTCServer`` is told, checked once, never changed afterwards.

The server keeps its settings apart from its running state (sessions, workers, the listening
socket), as a GStreamer element does: a bad value is a ``ConfigError`` at construction, not a
failure once peers are connected. ``WebRTCServer(factory, host, port, max_sessions=...)`` builds
one from its keyword arguments (``ServerOptions`` lists them for type checkers);
``WebRTCServer(factory, settings=ServerSettings(...))`` takes one whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from ..errors import ConfigError
from ._aiortc import resolve_host_addresses
from .host import SinkFactory
from .ice import DEFAULT_TURN_TTL_S, parse_ice_server, with_secret
from .session import SessionOptions
from .telephony.settings import TelephonySettings

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_OFFER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_STATUS_RATE = 5.0  # admin requests a second per client address
DEFAULT_DRAIN_TIMEOUT_S = 30.0  # SIGTERM: how long live sessions may run on before closing
#: How long a server that stops waits, at most, for its peers to have the close notice (their
#: SCTP acknowledged it, normally within a round trip) before closing their sessions. The
#: front and workers both wait it.
CLOSE_NOTICE_S = 5.0
STATUS_BURST_S = 4.0  # a client may spend this many seconds' worth of them at once


@dataclass(frozen=True)
class ServerSettings:
    """Every setting of a ``WebRTCServer`` (see its docstring for what each one does).

    Raises ConfigError for a value out of range. Mutable inputs (``ray_resources``, the ICE
    lists) are copied, so changing the caller's objects later changes nothing here.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    max_sessions: int = 16
    max_offer_bytes: int = DEFAULT_MAX_OFFER_BYTES
    token: str | None = None
    admin_token: str | None = None
    status_rate: float = DEFAULT_STATUS_RATE
    offer_rate: float = 0.0
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S
    idle_timeout: float = 10.0
    connect_timeout: float = 20.0
    ice_addresses: Sequence[str] | None = None
    ice_servers: Sequence[str] = ()
    turn_secret: str | None = field(default=None, repr=False)
    turn_ttl: float = DEFAULT_TURN_TTL_S
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S
    cert_file: Path | None = None
    key_file: Path | None = None
    jitter_depth: int | None = 3
    opus_inline: bool = True
    native_rtp: bool = True
    input_channels: int | None = 1
    input_sample_rate: int | None = None
    pixel_format: str = "rgb24"
    sink_factory: SinkFactory | None = None
    backend: str | None = None
    static_dir: Path | None = None
    workers: int = 0
    ray_address: str | None = None
    ray_worker_cpus: float = 1.0
    ray_resources: Mapping[str, float] | None = None
    worker_sessions: int | None = None
    telephony: TelephonySettings | None = None

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.max_offer_bytes < 256:
            raise ConfigError(f"max_offer_bytes must be >= 256, got {self.max_offer_bytes}")
        if self.idle_timeout <= 0 or self.connect_timeout <= 0:
            raise ConfigError("idle_timeout and connect_timeout must be > 0")
        if not (self.header_timeout > 0 and self.body_timeout > 0):
            raise ConfigError(
                "header_timeout and body_timeout must be > 0, got "
                f"{self.header_timeout}, {self.body_timeout}"
            )
        if not self.status_rate >= 0:
            raise ConfigError(f"status_rate must be >= 0 (0: no limit), got {self.status_rate}")
        if not self.offer_rate >= 0:
            raise ConfigError(f"offer_rate must be >= 0 (0: no limit), got {self.offer_rate}")
        if self.jitter_depth is not None and not 0 <= self.jitter_depth <= 8:
            raise ConfigError(f"jitter_depth must be in 0..8 or None, got {self.jitter_depth}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.worker_sessions is not None and self.worker_sessions < 1:
            raise ConfigError(f"worker_sessions must be >= 1, got {self.worker_sessions}")
        if not self.turn_ttl > 0:
            raise ConfigError(f"turn_ttl must be > 0 seconds, got {self.turn_ttl}")
        if not self.drain_timeout >= 0:
            raise ConfigError(f"drain_timeout must be >= 0 seconds, got {self.drain_timeout}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("HTTPS needs both cert_file and key_file (--cert and --key)")
        for path in (self.cert_file, self.key_file):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"no such file: {path}")
        servers = [
            parse_ice_server(s)
            for s in with_secret(self.ice_servers, self.turn_secret or None, self.turn_ttl)
        ]  # ConfigError for a malformed one, now
        if self.turn_secret and not any(s.secret for s in servers):
            raise ConfigError("turn_secret given, but no turn: URL without credentials to use it")
        if self.ray_address is not None:
            if not self.ray_address.strip():
                raise ConfigError("ray_address is empty (give host:port, 'auto' or 'local')")
            if self.ray_worker_cpus < 0:
                raise ConfigError(f"ray_worker_cpus must be >= 0, got {self.ray_worker_cpus}")
        # frozen: the copies go in the way the dataclass machinery itself sets fields
        copies = {
            "token": self.token or None,  # "": no token, as an unset variable
            "admin_token": self.admin_token or None,
            "header_timeout": float(self.header_timeout),
            "body_timeout": float(self.body_timeout),
            "ray_worker_cpus": float(self.ray_worker_cpus),
            "ice_addresses": tuple(self.ice_addresses or ()),
            "ice_servers": tuple(self.ice_servers),
            "turn_secret": self.turn_secret or None,
            "turn_ttl": float(self.turn_ttl),
            "drain_timeout": float(self.drain_timeout),
            "cert_file": Path(self.cert_file) if self.cert_file is not None else None,
            "key_file": Path(self.key_file) if self.key_file is not None else None,
            "ray_resources": dict(self.ray_resources or {}),
        }
        for name, value in copies.items():
            object.__setattr__(self, name, value)

    @property
    def pooled(self) -> bool:
        """Whether sessions run on workers (processes or Ray), not in the server's process."""
        return bool(self.workers) or self.ray_address is not None

    @property
    def ice_server_specs(self) -> tuple[str, ...]:
        """The ICE servers with ``turn_secret`` attached to the TURN URLs that need it (see
        ``ice``): what the server's own peer connections and ``GET /config`` use."""
        return with_secret(self.ice_servers, self.turn_secret, self.turn_ttl)

    @property
    def tls(self) -> bool:
        """Whether signaling and the page are served over HTTPS."""
        return self.cert_file is not None

    @property
    def page_dir(self) -> Path:
        """Where the browser page is served from."""
        return self.static_dir or STATIC_DIR

    def session_options(self) -> SessionOptions:
        """The options every session gets. ICE interface names are resolved here, except on a
        Ray cluster, where each worker resolves them on its own node; raises ConfigError for
        a name or address that is not on this machine."""
        spec = tuple(self.ice_addresses or ())
        resolve_here = bool(spec) and self.ray_address is None
        return SessionOptions(
            input_channels=self.input_channels,
            input_sample_rate=self.input_sample_rate,
            pixel_format=self.pixel_format,
            idle_timeout=self.idle_timeout,
            jitter_depth=self.jitter_depth,
            opus_inline=self.opus_inline,
            native_rtp=self.native_rtp,
            ice_addresses=resolve_host_addresses(spec) if resolve_here else None,
            ice_servers=self.ice_server_specs,
            backend=self.backend,
        )


class ServerOptions(TypedDict, total=False):
    """``ServerSettings``' fields but ``host`` and ``port``, as ``WebRTCServer``'s keyword
    arguments (``**options: Unpack[ServerOptions]``), so a type checker sees each one."""

    max_sessions: int
    max_offer_bytes: int
    token: str | None
    admin_token: str | None
    status_rate: float
    offer_rate: float
    header_timeout: float
    body_timeout: float
    idle_timeout: float
    connect_timeout: float
    ice_addresses: Sequence[str] | None
    ice_servers: Sequence[str]
    turn_secret: str | None
    turn_ttl: float
    drain_timeout: float
    cert_file: Path | None
    key_file: Path | None
    jitter_depth: int | None
    opus_inline: bool
    native_rtp: bool
    input_channels: int | None
    input_sample_rate: int | None
    pixel_format: str
    sink_factory: SinkFactory | None
    backend: str | None
    static_dir: Path | None
    workers: int
    ray_address: str | None
    ray_worker_cpus: float
    ray_resources: Mapping[str, float] | None
    worker_sessions: int | None
    telephony: TelephonySettings | None


__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_DRAIN_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_OFFER_BYTES",
    "DEFAULT_STATUS_RATE",
    "STATIC_DIR",
    "STATUS_BURST_S",
    "ServerOptions",
    "ServerSettings",
]
