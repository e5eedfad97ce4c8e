"""The benchmarks' link emulator, against real loopback servers: it must add the delay it
promises and hold a connection to its cap, or every WAN figure measured through it is
wrong."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from benchmarks.linkemu import MIB, Shape, start


@asynccontextmanager
async def loopback_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@asynccontextmanager
async def link_to(port: int, shape: Shape) -> AsyncIterator[int]:
    proxy = await start(0, ("127.0.0.1", port), shape)
    async with proxy:
        yield proxy.sockets[0].getsockname()[1]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    started = time.perf_counter()
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    return time.perf_counter() - started


async def test_a_request_waits_at_least_the_round_trip() -> None:
    shape = Shape("test", delay=0.05, rate=None)
    async with loopback_server(echo) as port, link_to(port, shape) as proxied:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxied)
        # The first also pays the handshake's round trip, as a new TCP connection does.
        first = await round_trip(reader, writer)
        later = [await round_trip(reader, writer) for _ in range(3)]
        writer.close()
    assert first >= 2 * shape.rtt
    # Below two round trips: a delay paid twice, or added up over chunks, would show.
    assert all(shape.rtt <= seconds < 2 * shape.rtt for seconds in later), later


async def test_a_capped_connection_runs_at_its_cap() -> None:
    size, cap = 3 * MIB, 4 * MIB
    shape = Shape("test", delay=0.005, rate=cap)
    received = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        while total < size and (data := await reader.read(1 << 20)):
            total += len(data)
        received.set_result(time.perf_counter())
        writer.close()

    async with loopback_server(sink) as port, link_to(port, shape) as proxied:
        _, writer = await asyncio.open_connection("127.0.0.1", proxied)
        started = time.perf_counter()
        writer.write(bytes(size))
        await writer.drain()
        finished = await asyncio.wait_for(received, 10)
        writer.close()
    rate = size / (finished - started)
    assert 0.75 * cap <= rate <= 1.25 * cap, rate / MIB


async def test_both_directions_close_once_the_server_has_answered() -> None:
    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client's EOF, which must travel through the link
        writer.write(b"bye")
        writer.close()

    async with (
        loopback_server(answer_and_close) as port,
        link_to(port, Shape("t", 0.01, None)) as proxied,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxied)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"bye"
        writer.close()
