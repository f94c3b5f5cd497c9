"""ICE servers (STUN and TURN): how they are written, checked, and handed to every peer.

A server is given ICE servers as URLs (``serve --ice-server``, ``ServerSettings.ice_servers``)::

    stun:HOST[:PORT]
    turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]      static TURN credentials
    turn:HOST[:PORT][?transport=udp|tcp]                     with --turn-secret (coturn's REST API)

``USER`` and ``PASSWORD`` may be percent-encoded (``%40`` for ``@``). With a shared secret
(coturn's ``use-auth-secret``/``static-auth-secret``), each peer gets time-limited credentials:
username ``EXPIRY:LABEL`` (EXPIRY in Unix seconds, ``ttl_s`` from now), password
``base64(HMAC-SHA1(secret, username))``. In a spec string the secret rides in the fragment
(``turn:HOST#secret=...&ttl=...``), so it reaches worker processes with the session options and
every peer connection the server makes computes fresh credentials; the fragment never leaves
the server. ``for_peer`` gives the browser's ``RTCIceServer`` dictionaries (``GET /config``),
``rtc_ice_servers`` aiortc's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

DEFAULT_TURN_TTL_S = 24 * 3600.0  # coturn's documented example lifetime for REST credentials
SCHEMES = ("stun", "stuns", "turn", "turns")


@dataclass(frozen=True)
class IceServer:
    """One STUN/TURN server: ``url`` without credentials, and how to authenticate.

    ``username``/``credential``: static TURN credentials; ``secret``/``ttl_s``: coturn's REST
    shared secret (credentials made per peer by ``credentials()``).
    """

    url: str
    username: str | None = None
    credential: str | None = None
    secret: str | None = None
    ttl_s: float = DEFAULT_TURN_TTL_S

    @property
    def is_turn(self) -> bool:
        return self.url.startswith("turn")

    def credentials(self, label: str, now: float | None = None) -> tuple[str | None, str | None]:
        """``(username, password)`` for a peer: static ones, or REST ones made now for
        ``label``; ``(None, None)`` for STUN."""
        if self.secret is not None:
            return rest_credentials(self.secret, self.ttl_s, label, now)
        return self.username, self.credential

    def spec(self) -> str:
        """Back to a spec string (``parse_ice_server(s.spec()) == s``)."""
        scheme, _, rest = self.url.partition(":")
        if self.username is not None:
            user = urllib.parse.quote(self.username, safe="")
            password = urllib.parse.quote(self.credential or "", safe="")
            rest = f"{user}:{password}@{rest}"
        out = f"{scheme}:{rest}"
        if self.secret is not None:
            out += "#" + urllib.parse.urlencode({"secret": self.secret, "ttl": f"{self.ttl_s:g}"})
        return out


def rest_credentials(
    secret: str, ttl_s: float, label: str, now: float | None = None
) -> tuple[str, str]:
    """coturn's time-limited credentials: ``("EXPIRY:LABEL", base64(HMAC-SHA1(secret, it)))``."""
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{label}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def parse_ice_server(spec: str) -> IceServer:
    """An ICE server from its spec (see the module docstring); ConfigError when malformed.

    A ``turn:``/``turns:`` URL needs credentials (``USER:PASSWORD@``) or a secret.
    """
    from aiortc.rtcicetransport import parse_stun_turn_uri

    text = spec.strip()
    text, _, fragment = text.partition("#")
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() not in SCHEMES:
        raise ConfigError(f"ice server {_redacted(spec)!r}: want stun:, stuns:, turn: or turns:")
    scheme = scheme.lower()
    username = credential = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if not user or not sep:
            raise ConfigError(
                f"ice server {_redacted(spec)!r}: credentials are written USER:PASSWORD@HOST"
            )
        username = urllib.parse.unquote(user)
        credential = urllib.parse.unquote(password)
    url = f"{scheme}:{rest}"
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        raise ConfigError(f"ice server {_redacted(spec)!r}: {exc}") from None
    transport = parsed.get("transport")
    # aiortc skips a TURN URL it cannot use without a word: refuse it here instead
    if (scheme, transport) not in {("turn", "udp"), ("turn", "tcp"), ("turns", "tcp")} and (
        transport is not None
    ):
        raise ConfigError(
            f"ice server {_redacted(spec)!r}: malformed or unsupported transport {transport!r} "
            "(turn: udp or tcp, turns: tcp)"
        )
    secret: str | None = None
    ttl_s = DEFAULT_TURN_TTL_S
    if fragment:
        values = urllib.parse.parse_qs(fragment, keep_blank_values=True)
        secret = values.get("secret", [""])[0] or None
        try:
            ttl_s = float(values.get("ttl", [str(DEFAULT_TURN_TTL_S)])[0])
        except ValueError:
            raise ConfigError(f"ice server {_redacted(spec)!r}: ttl is not a number") from None
    server = IceServer(url, username, credential, secret, ttl_s)
    if not server.is_turn and (username is not None or secret is not None):
        raise ConfigError(f"ice server {_redacted(spec)!r}: STUN takes no credentials")
    if server.is_turn and username is None and secret is None:
        raise ConfigError(
            f"ice server {_redacted(spec)!r}: a TURN server needs USER:PASSWORD@ in its URL, "
            "or a shared secret (--turn-secret)"
        )
    if username is not None and secret is not None:
        raise ConfigError(f"ice server {_redacted(spec)!r}: static credentials and a secret")
    if not ttl_s > 0:
        raise ConfigError(f"ice server {_redacted(spec)!r}: ttl must be > 0, got {ttl_s:g}")
    return server


def with_secret(specs: Iterable[str], secret: str | None, ttl_s: float) -> tuple[str, ...]:
    """``specs`` with ``secret`` given to each TURN URL that has no credentials of its own."""
    out: list[str] = []
    for spec in specs:
        text = spec.strip()
        _, _, rest = text.partition(":")
        bare_turn = text.lower().startswith("turn") and "@" not in rest and "#" not in text
        if secret is not None and bare_turn:
            text += "#" + urllib.parse.urlencode({"secret": secret, "ttl": f"{ttl_s:g}"})
        out.append(text)
    return tuple(out)


def for_peer(specs: Iterable[str], label: str | None = None) -> list[dict[str, Any]]:
    """The servers as W3C ``RTCIceServer`` dictionaries for one peer (REST credentials made
    now, named ``label``: a random one by default)."""
    label = label or f"peer-{secrets.token_hex(6)}"
    out: list[dict[str, Any]] = []
    for spec in specs:
        server = parse_ice_server(spec)
        entry: dict[str, Any] = {"urls": [server.url]}
        username, credential = server.credentials(label)
        if username is not None:
            entry["username"] = username
            entry["credential"] = credential
        out.append(entry)
    return out


def from_peer_config(entries: Iterable[Any]) -> tuple[str, ...]:
    """Spec strings from ``RTCIceServer`` dictionaries (a server's ``/config``); entries that
    are not such dictionaries are skipped."""
    out: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        urls = entry.get("urls")
        username, credential = entry.get("username"), entry.get("credential")
        for url in [urls] if isinstance(urls, str) else (urls or []):
            if not isinstance(url, str):
                continue
            if isinstance(username, str) and isinstance(credential, str):
                out.append(IceServer(url, username, credential).spec())
            else:
                out.append(url)
    return tuple(out)


def rtc_ice_servers(specs: Iterable[str], label: str = "remotemedia") -> list[Any]:
    """aiortc ``RTCIceServer`` objects for ``specs`` (REST credentials made now)."""
    from aiortc import RTCIceServer

    out: list[Any] = []
    for spec in specs:
        server = parse_ice_server(spec)
        username, credential = server.credentials(label)
        out.append(RTCIceServer(urls=server.url, username=username, credential=credential))
    return out


def _redacted(spec: str) -> str:
    """``spec`` without its password or secret, for error messages."""
    text, _, fragment = spec.partition("#")
    scheme, _, rest = text.partition(":")
    if "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        rest = f"{userinfo.partition(':')[0]}:***@{host}"
    return f"{scheme}:{rest}" + ("#***" if fragment else "")


__all__ = [
    "DEFAULT_TURN_TTL_S",
    "IceServer",
    "for_peer",
    "from_peer_config",
    "parse_ice_server",
    "rest_credentials",
    "rtc_ice_servers",
    "with_secret",
]
