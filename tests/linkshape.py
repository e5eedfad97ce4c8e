"""A test's far registry: the benchmarks' link emulator as a real process in the path,
and two witnesses that the traffic really went through it.

An end-to-end test that means to run "over a WAN" proves nothing if the client quietly
talks to the server directly (an endpoint taken from the wrong variable, a restart that
forgets the link). So the test does not trust its own wiring: ``PathWitness`` reads the
kernel's socket table (``/proc/net/tcp``) and the processes' descriptors to see who is
connected to whom, the way ``ss -tp`` would, and ``PartTimes`` reads the daemon's own
part timings, which a link with a round trip makes slower than loopback ever does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.calibration import Emulator, emulator
from benchmarks.linkemu import Shape
from tests.e2e.daemon import DaemonProcess

ESTABLISHED = "01"


@contextmanager
def running_link(shape: Shape, target_url: str) -> Iterator[Emulator]:
    """``python -m benchmarks.linkemu`` in front of ``target_url``, stopped however the
    block ends (terminate, then kill)."""
    with emulator(shape, f"127.0.0.1:{url_port(target_url)}") as link:
        yield link


def url_port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def established(pid: int) -> set[tuple[int, int]]:
    """(local port, remote port) of each established loopback TCP socket ``pid`` holds."""
    inodes = _socket_inodes(pid)
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == ESTABLISHED and fields[9] in inodes:
                found.add((_port(fields[1]), _port(fields[2])))
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except FileNotFoundError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


@dataclass
class PathWitness:
    """Who the client and the server were connected to, sampled while traffic flowed.

    A sample is a moment, so the client's connections are collected over many of them;
    the server's clients are checked at each one against the emulator's sockets then.
    """

    server_port: int
    link: Emulator | None
    #: Ports the client was connected to (its remote ends), over all samples.
    client_peers: set[int] = field(default_factory=set)
    #: The server's connections whose other end was not the emulator (the link only).
    server_peers_not_link: set[int] = field(default_factory=set)
    #: The server's connections from the emulator, over all samples.
    server_peers_link: int = 0

    def sample(self, client_pid: int, server_pid: int) -> None:
        self.client_peers |= {remote for _, remote in established(client_pid)}
        if self.link is None:
            return
        # The link's sockets read before and after the server's: a connection opened or
        # closed between two reads must not look like one from elsewhere.
        link_ports = {local for local, _ in established(self.link.process.pid)}
        server_clients = {r for local, r in established(server_pid) if local == self.server_port}
        link_ports |= {local for local, _ in established(self.link.process.pid)}
        self.server_peers_link += len(server_clients & link_ports)
        self.server_peers_not_link |= server_clients - link_ports

    def describe(self) -> str:
        if self.link is None:
            return f"client connected to {sorted(self.client_peers)}, server :{self.server_port}"
        return (
            f"client connected to {sorted(self.client_peers)}, link :{self.link.port}, "
            f"server :{self.server_port}; server's connections from the link "
            f"{self.server_peers_link}, from elsewhere {sorted(self.server_peers_not_link)}"
        )

    def check(self) -> None:
        """The client reached the server only through the link (or, with none, directly)."""
        if self.link is None:
            assert self.server_port in self.client_peers, self.describe()
            return
        assert self.link.port in self.client_peers, self.describe()
        assert self.server_port not in self.client_peers, self.describe()
        assert self.server_peers_link > 0, self.describe()
        assert not self.server_peers_not_link, self.describe()


@dataclass(frozen=True)
class PartTimes:
    """``uploaderd_part_upload_seconds``, added up over the daemon's runs.

    Every part over the WAN shape takes at least its round trip, 50 ms, which loopback
    parts rarely do: the daemon's own view of the link it went through.
    """

    count: int
    seconds: float
    within_50_ms: int

    @classmethod
    def scraped(cls, daemon: DaemonProcess) -> PartTimes:
        name = "uploaderd_part_upload_seconds"
        return cls(
            int(daemon.metric_sum(f"{name}_count")),
            daemon.metric_sum(f"{name}_sum"),
            int(daemon.metric_sum(f"{name}_bucket", le="0.05")),
        )

    def __add__(self, other: PartTimes) -> PartTimes:
        return PartTimes(
            self.count + other.count,
            self.seconds + other.seconds,
            self.within_50_ms + other.within_50_ms,
        )

    def describe(self) -> str:
        mean = self.seconds / self.count if self.count else 0.0
        return (
            f"parts confirmed {self.count}, mean {mean * 1000:.0f} ms, "
            f"within 50 ms {self.within_50_ms}"
        )
