"""Three test hosts where peers can meet only through a TURN server: client, turn, server.

::

    client 10.214.1.2 --veth-- 10.214.1.1 [turn] 10.214.2.1 --veth-- 10.214.2.2 server
                                    relay address 10.214.9.1 (on turn's lo)

The turn host forwards no packets (``net.ipv4.ip_forward=0``), so the client and the server
have no route to each other; each has one route, to the relay address 10.214.9.1 through its
link to the turn host. What can cross: TURN (coturn on 10.214.9.1, relaying between its
allocations) and the signaling port, which ``tcp_forward.py`` on the turn host carries
(``TurnHosts.forward``). A session connects only through relay candidates, or not at all.

``turnserver_unavailable()`` says why coturn cannot be used here; ``turn_test_hosts()`` makes and
removes the hosts; ``TurnHosts.start_turnserver(secret=..., users=...)`` runs coturn.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .netns import TestHosts, _ip, netns_unavailable

RELAY_IP = "10.214.9.1"
TURN_PORT = 3478
REALM = "remotemedia.test"
FORWARDER = Path(__file__).with_name("tcp_forward.py")


def turnserver_unavailable() -> str | None:
    """Why coturn test hosts cannot be made here, or None."""
    reason = netns_unavailable()
    if reason:
        return reason
    if shutil.which("turnserver") is None:
        return "turnserver (Debian package coturn) is not installed"
    return None


@dataclass
class TurnHosts(TestHosts):
    """``TestHosts`` with a third host, ``turn``, between the other two."""

    __test__ = False

    @property
    def relay_ip(self) -> str:
        return RELAY_IP

    def start_turnserver(
        self, workdir: Path, *, secret: str | None = None, users: Sequence[str] = ()
    ) -> subprocess.Popen[str]:
        """coturn on the turn host, listening and relaying on ``RELAY_IP``; with ``secret`` it
        takes REST credentials (``use-auth-secret``), else the ``users`` (``name:password``).
        Returns once it listens; its log is ``workdir/turnserver.log``."""
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("turnserver") or "turnserver", "-n",  # -n: no /etc/turnserver.conf
            "--listening-ip", RELAY_IP, "--relay-ip", RELAY_IP,
            "--listening-port", str(TURN_PORT),
            "--min-port", "49160", "--max-port", "49400",
            "--realm", REALM, "--fingerprint",
            "--no-tls", "--no-dtls", "--no-cli", "--no-multicast-peers",
            "--userdb", str(workdir / "turndb.sqlite"),
            "--pidfile", str(workdir / "turnserver.pid"),
            "--log-file", "stdout", "--simple-log", "--verbose",
        ]  # fmt: skip
        if secret is not None:
            argv += ["--use-auth-secret", f"--static-auth-secret={secret}"]
        else:
            argv += ["--lt-cred-mech"]
        for user in users:
            argv += ["--user", user]
        log_path = workdir / "turnserver.log"
        proc = self.popen("turn", argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        listening = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            with log_path.open("w") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if "Total General servers" in line:  # its UDP listeners are up
                        listening.set()
            listening.set()

        threading.Thread(target=read, name="turnserver log", daemon=True).start()
        if not listening.wait(30) or proc.poll() is not None:
            raise RuntimeError(f"turnserver did not start:\n{log_path.read_text()[-3000:]}")
        return proc

    def forward(self, target_host: str, target_port: int) -> int:
        """Carry TCP from ``RELAY_IP:PORT`` on the turn host to ``target_host:target_port``
        (signaling); returns PORT."""
        proc = self.popen(
            "turn",
            [sys.executable, str(FORWARDER), RELAY_IP, "0", target_host, str(target_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"the TCP forwarder did not start: {line!r}")
        return int(line.split()[1])


@contextlib.contextmanager
def turn_test_hosts(prefix: str = "rt") -> Iterator[TurnHosts]:
    """Create the three hosts; remove them (and end their processes) on exit."""
    token = secrets.token_hex(3)
    names = {h: f"{prefix}{h[0]}{token}" for h in ("client", "turn", "server")}
    # veth names (<= 15 chars): client<->turn and turn<->server
    links = {
        "client": f"{prefix}c{token}",
        "turn-c": f"{prefix}tc{token}",
        "turn-s": f"{prefix}ts{token}",
        "server": f"{prefix}s{token}x",
    }
    addresses = {"client": "10.214.1.2", "turn": RELAY_IP, "server": "10.214.2.2"}
    hosts = TurnHosts(names, addresses, {"client": links["client"], "server": links["server"]})
    made: list[str] = []
    try:
        for ns in names.values():
            _ip("netns", "add", ns)
            made.append(ns)
        for side, turn_side, subnet in (
            ("client", "turn-c", "10.214.1"),
            ("server", "turn-s", "10.214.2"),
        ):
            _ip("link", "add", links[side], "type", "veth", "peer", "name", links[turn_side])
            _ip("link", "set", links[side], "netns", names[side])
            _ip("link", "set", links[turn_side], "netns", names["turn"])
            _ip("-n", names[side], "addr", "add", f"{subnet}.2/24", "dev", links[side])
            _ip("-n", names["turn"], "addr", "add", f"{subnet}.1/24", "dev", links[turn_side])
            for ns, link in ((names[side], links[side]), (names["turn"], links[turn_side])):
                _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", names[side], "route", "add", f"{RELAY_IP}/32", "via", f"{subnet}.1")
        for ns in names.values():
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", names["turn"], "addr", "add", f"{RELAY_IP}/32", "dev", "lo")
        _sysctl(hosts, "turn", "net.ipv4.ip_forward", "0")
        yield hosts
    finally:
        hosts.stop_processes()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _sysctl(hosts: TurnHosts, host: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    done: Any = hosts.run(host, ["sh", "-c", f"echo {value} > {path}"], capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{key}={value} on {host}: {done.stderr!r}")


__all__ = [
    "REALM",
    "RELAY_IP",
    "TURN_PORT",
    "TurnHosts",
    "turn_test_hosts",
    "turnserver_unavailable",
]
