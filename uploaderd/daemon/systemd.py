"""The sd_notify protocol: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

A few lines over a datagram socket; libsystemd's bindings would need a C
library on every build host for this.  The watchdog ping is sent from the
event loop itself, so a loop that stalls (a blocking call, a deadlock)
stops the pings and systemd restarts the daemon.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping


class SystemdNotifier:
    """Sends state to systemd when run as a ``Type=notify`` service; a no-op otherwise."""

    def __init__(self, socket_path: str | None, watchdog_usec: int | None) -> None:
        self._address = _address(socket_path) if socket_path else None
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def watchdog_interval(self) -> float | None:
        """Half the watchdog timeout, as systemd recommends; None without a watchdog."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def notify(self, **fields: str) -> None:
        if self._address is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        # systemd gone (shutdown) or a socket not ours: nothing to tell.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(message, self._address)

    def ready(self, status: str) -> None:
        self.notify(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        self.notify(STATUS=status)

    def watchdog(self) -> None:
        self.notify(WATCHDOG="1")

    def stopping(self, status: str) -> None:
        self.notify(STOPPING="1", STATUS=status)


def _address(path: str) -> str:
    # An abstract socket is written with a leading '@' and sent with a NUL.
    return "\0" + path[1:] if path.startswith("@") else path
