"""A link emulator: a loopback TCP proxy that makes a connection look like a far-away one.

``tc`` here has no ``netem``, so latency comes from a proxy instead. Each accepted
connection gets its own pair of one-way pipes (client to server, server to client), and
each pipe imposes, on every byte:

- **a fixed one-way delay.** A chunk read at time t is queued with the time it may be
  delivered, ``t + delay`` (after its turn on the rate limiter, below); one timer flushes
  the queue's head when that time comes. Delays never add up across chunks, since each
  carries its own absolute deadline; the first bytes of a connection also wait one round
  trip for the handshake a real TCP connection pays before it can send.
- **a bandwidth cap** (optional), a token bucket per direction and per connection, filled
  at the cap and no deeper than the chunk in hand: a chunk of n bytes has left once n /
  rate has passed since the previous chunk left (or since it was read, on an idle link),
  and its delay starts from there. So a chunk's last byte arrives when it would on a real
  bottleneck link, which serialises and never bursts above its rate.
- **a bounded window**: bytes count as in flight from the moment they are read until
  their acknowledgement would be back at the sender (delivery + one more ``delay``).
  Above ``window`` bytes in flight, the proxy stops reading from the sender, so the
  sender's socket fills and it blocks, as TCP's window makes it. The window is 4 MiB,
  Linux's default ``tcp_wmem`` maximum: a real sender never has more in flight on one
  connection. It bounds one connection at window / RTT (400 MiB/s for "region", 80 MiB/s
  for "WAN", 27 MiB/s for "far"), above both caps, so the capped shapes are rate-bound,
  not window-bound, and the emulator holds about a window per direction at most.

Run it as its own process, so its CPU is not counted against the push it carries:
``python -m benchmarks.linkemu --listen 0 --target 127.0.0.1:5000 --shape WAN`` prints
``linkemu listening on 127.0.0.1:PORT`` once it accepts. ``--sink`` instead of
``--target`` serves a discard HTTP server (any request, its body read and dropped, an
empty 201), the far end of the curl calibration in ``calibration.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

MIB = 1024 * 1024
#: Large reads keep the per-chunk Python cost small at loopback speeds.
READ_SIZE = 256 * 1024
WINDOW = 4 * MIB
#: The destination's write buffer before it asks us to stop delivering.
WRITE_HIGH_WATER = 1 * MIB


@dataclass(frozen=True, slots=True)
class Shape:
    """A link: one-way delay in seconds, and a per-connection cap in bytes/s (None: none)."""

    name: str
    delay: float
    rate: float | None
    window: int = WINDOW

    @property
    def rtt(self) -> float:
        return 2 * self.delay

    def describe(self) -> str:
        cap = f"{self.rate / MIB:.0f} MiB/s per connection" if self.rate else "no cap"
        return f"{self.name}: {self.delay * 1000:.0f} ms each way, {cap}"


SHAPES = {
    shape.name: shape
    for shape in (
        Shape("region", 0.005, None),
        Shape("WAN", 0.025, 16 * MIB),
        Shape("far", 0.075, 8 * MIB),
    )
}


def shape_named(name: str) -> Shape:
    for known, shape in SHAPES.items():
        if known.lower() == name.lower():
            return shape
    raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")


class Pipe:
    """One direction of one connection: delay line, token bucket, window."""

    def __init__(
        self,
        shape: Shape,
        source: asyncio.Transport,
        not_before: float,
        on_eof: Callable[[], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.shape = shape
        self.source = source
        self.sink: asyncio.Transport | None = None
        self.on_eof = on_eof
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.in_flight = 0
        # The bucket's clock: when the previous chunk's last byte left.
        self.bucket_free = not_before
        self.not_before = not_before
        self.timer: asyncio.TimerHandle | None = None
        self.sink_paused = False
        self.source_paused = False
        self.eof_fed = False
        self.eof_delivered = False

    def feed(self, data: bytes | None) -> None:
        """Queues a chunk read now (None: the sender's EOF) with its delivery time."""
        if self.eof_fed:
            return
        self.eof_fed = data is None
        now = self.loop.time()
        size = len(data) if data else 0
        leave = max(now, self.not_before)
        if self.shape.rate and size:
            self.bucket_free = max(leave, self.bucket_free) + size / self.shape.rate
            leave = self.bucket_free
        due = leave + self.shape.delay
        if self.queue:  # in order, even if a later chunk would be due no later
            due = max(due, self.queue[-1][0])
        self.queue.append((due, data))
        self.in_flight += size
        if self.in_flight >= self.shape.window and not self.source_paused:
            self.source_paused = True
            self.source.pause_reading()
        self._arm()

    def attach(self, sink: asyncio.Transport) -> None:
        self.sink = sink
        self._arm()

    def pause(self) -> None:
        self.sink_paused = True

    def resume(self) -> None:
        self.sink_paused = False
        self._arm()

    def _arm(self) -> None:
        if self.timer is None and self.queue and self.sink is not None and not self.sink_paused:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        sink = self.sink
        assert sink is not None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now and not self.sink_paused:
            _, data = self.queue.popleft()
            if data is None:
                self._deliver_eof(sink)
                return
            if not sink.is_closing():
                sink.write(data)  # may call pause() at once, which ends this loop
            # The acknowledgement takes one more delay to get back to the sender.
            self.loop.call_later(self.shape.delay, self._acknowledged, len(data))
        self._arm()

    def _deliver_eof(self, sink: asyncio.Transport) -> None:
        self.eof_delivered = True
        if not sink.is_closing():
            if self.source.is_closing() or not sink.can_write_eof():
                sink.close()  # close() still sends what is buffered
            else:
                sink.write_eof()
        self.on_eof()

    def _acknowledged(self, size: int) -> None:
        self.in_flight -= size
        if self.source_paused and self.in_flight < self.shape.window:
            self.source_paused = False
            if not self.source.is_closing():
                self.source.resume_reading()


class Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads goes into ``outgoing``."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.outgoing: Pipe | None = None
        self.incoming: Pipe | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not subclass asyncio's.
        if self is self.link.client:
            self.link.accepted(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        assert self.outgoing is not None
        self.outgoing.feed(data)

    def eof_received(self) -> bool:
        assert self.outgoing is not None
        self.outgoing.feed(None)
        return True  # stay half-open: the answer may still be travelling back

    def connection_lost(self, exc: Exception | None) -> None:
        if self.outgoing is not None:
            self.outgoing.feed(None)

    def pause_writing(self) -> None:
        if self.incoming is not None:
            self.incoming.pause()

    def resume_writing(self) -> None:
        if self.incoming is not None:
            self.incoming.resume()


class Link:
    """One proxied connection: the client's side, the server's side, and their two pipes."""

    def __init__(self, shape: Shape, target: tuple[str, int], tasks: set[asyncio.Task[None]]):
        self.shape = shape
        self.target = target
        self.client = Side(self)
        self.server = Side(self)
        self.tasks = tasks

    def accepted(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        self.client.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        # The handshake's round trip comes before the client's first byte can travel.
        pipe = Pipe(self.shape, transport, loop.time() + self.shape.rtt, self._pipe_ended)
        self.client.outgoing = self.server.incoming = pipe
        task = loop.create_task(self._connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        client = self.client.transport
        assert client is not None
        assert self.client.outgoing is not None
        try:
            transport, _ = await loop.create_connection(lambda: self.server, *self.target)
        except OSError:
            client.abort()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.server.transport = transport
        pipe = Pipe(self.shape, transport, loop.time(), self._pipe_ended)
        self.server.outgoing = self.client.incoming = pipe
        pipe.attach(client)
        self.client.outgoing.attach(transport)

    def _pipe_ended(self) -> None:
        """Both ways closed: nothing more can travel, so both sockets are closed."""
        pipes = (self.client.outgoing, self.server.outgoing)
        if all(pipe is not None and pipe.eof_delivered for pipe in pipes):
            for side in (self.client, self.server):
                if side.transport is not None:
                    side.transport.close()


class Sink(asyncio.Protocol):
    """A discard HTTP/1.1 server: reads each request's body (Content-Length) and drops it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.body_left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.body_left:
                taken = min(self.body_left, len(view))
                self.body_left -= taken
                view = view[taken:]
                if not self.body_left:
                    self._answer()
                continue
            self.head += bytes(view)
            view = memoryview(b"")
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self.body_left = _content_length(head)
            if not self.body_left:
                self._answer()
            view = memoryview(rest)

    def _answer(self) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def start(listen: int, target: tuple[str, int] | None, shape: Shape) -> asyncio.Server:
    """Listens on 127.0.0.1: the link to ``target``, or the discard sink if it is None."""
    loop = asyncio.get_running_loop()
    if target is None:
        return await loop.create_server(Sink, "127.0.0.1", listen)
    tasks: set[asyncio.Task[None]] = set()  # each connection's upstream connect
    return await loop.create_server(lambda: Link(shape, target, tasks).client, "127.0.0.1", listen)


async def serve(listen: int, target: tuple[str, int] | None, shape: Shape) -> None:
    server = await start(listen, target, shape)
    what = (
        "a discard HTTP sink"
        if target is None
        else f"{target[0]}:{target[1]} as {shape.describe()}"
    )
    port = server.sockets[0].getsockname()[1]
    print(f"linkemu listening on 127.0.0.1:{port}, {what}", flush=True)
    async with server:
        await server.serve_forever()


def _target(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise argparse.ArgumentTypeError("the target must be on loopback")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.linkemu", description=__doc__)
    parser.add_argument("--listen", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", type=_target, help="HOST:PORT to forward to (loopback)")
    where.add_argument("--sink", action="store_true", help="serve a discard HTTP sink")
    parser.add_argument("--shape", default="region", help=f"one of {', '.join(SHAPES)}")
    parser.add_argument("--delay-ms", type=float, help="override the shape's one-way delay")
    parser.add_argument("--rate-mib", type=float, help="override the cap (MiB/s, 0: none)")
    options = parser.parse_args(argv)
    try:
        shape = shape_named(options.shape)
    except ValueError as exc:
        parser.error(str(exc))
    if options.delay_ms is not None or options.rate_mib is not None:
        delay = shape.delay if options.delay_ms is None else options.delay_ms / 1000
        rate = shape.rate if options.rate_mib is None else (options.rate_mib * MIB or None)
        shape = Shape(f"{shape.name}*", delay, rate, shape.window)
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(options.listen, None if options.sink else options.target, shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
