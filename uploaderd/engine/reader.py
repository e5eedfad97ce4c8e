"""Reading a layer file: validation, the hashing pass, and part read-ahead.

A loose layer is read twice.  The first pass computes its sha256 so the
registry can be asked whether it already has the layer (before a single part
is sent, or beside the upload for a big one: ``alongside``); the second pass
reads the parts to send, a little ahead of the network.  A layer whose digest
is claimed is read once, hashed as it is sent (``digests``).  Both passes
charge their buffers to the shared ``ByteBudget`` and run the blocking reads
and the hashing in worker threads (hashlib releases the GIL on large
buffers), so the event loop stays free to drive the uploads; only a layer of
at most ``INLINE_BYTES`` is handled on the loop, where the thread hop would
cost more than the work.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ObjectSendStream

from uploaderd.engine.budget import ByteBudget
from uploaderd.engine.buffers import PartBuffers, PartCharge
from uploaderd.engine.digests import HashingPartSource, StreamDigest
from uploaderd.engine.parts import PartRange, layer_size_problem
from uploaderd.errors import ErrorCode, LayerChangedError, LayerFileError
from uploaderd.model import FileIdentity
from uploaderd.registry.base import Allocate, PartPayload, PartSource
from uploaderd.registry.limits import RegistryLimits

HASH_CHUNK_SIZE = 4 * 1024 * 1024
INLINE_BYTES = 256 * 1024
"""A layer (or part) this small is read, hashed and encoded on the event loop itself.

Handing work to a worker thread and back costs the loop a few hundred
microseconds when it is busy (the thread's wake-up, the GIL handed over and
back, a future), more than hashing and encoding 256 KiB takes; with many
small layers those hops were a tenth of the daemon's CPU.  The loop is held
for well under a millisecond, which delays no other upload noticeably.
"""


@dataclass(frozen=True, slots=True)
class LayerFile:
    """A layer file as it was when it was accepted: changes after that are detected."""

    path: Path
    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def open(cls, path: Path, limits: RegistryLimits) -> LayerFile:
        """Check that ``path`` can be pushed as a layer to a registry with ``limits``.

        Raises a specific error if not, before any request: a layer the
        registry would refuse only at completion would cost its whole upload.
        """
        try:
            st = path.stat()
        except FileNotFoundError:
            raise LayerFileError(
                "no such file; check the path", path=path, code=ErrorCode.FILE_NOT_FOUND
            ) from None
        except OSError as exc:
            raise LayerFileError(
                f"cannot stat the file: {exc.strerror}", path=path, code=ErrorCode.FILE_UNREADABLE
            ) from exc
        if stat.S_ISDIR(st.st_mode):
            raise LayerFileError(
                "is a directory, not a layer file; give the layer tarball itself",
                path=path,
                code=ErrorCode.NOT_A_REGULAR_FILE,
            )
        if not stat.S_ISREG(st.st_mode):
            raise LayerFileError(
                "is not a regular file (fifo, socket or device); only layer files are pushed",
                path=path,
                code=ErrorCode.NOT_A_REGULAR_FILE,
            )
        problem = layer_size_problem(st.st_size, limits)
        if problem is not None:
            code = ErrorCode.EMPTY_LAYER if st.st_size == 0 else ErrorCode.LAYER_TOO_LARGE
            raise LayerFileError(problem, path=path, code=code)
        layer = cls(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
        layer.check_readable()
        return layer

    @property
    def identity(self) -> FileIdentity:
        return FileIdentity(self.size, self.mtime_ns, self.inode)

    def check_readable(self) -> None:
        """Open the file once so a permission problem is reported before any request."""
        os.close(_open_fd(self))

    def check_unchanged(self) -> None:
        """Fail if the file is not the one that was hashed (size, mtime or inode differ)."""
        try:
            st = self.path.stat()
        except OSError as exc:
            raise LayerChangedError(
                f"the file disappeared while it was being pushed ({exc.strerror})",
                path=self.path,
                code=ErrorCode.FILE_CHANGED,
            ) from exc
        if (st.st_size, st.st_mtime_ns, st.st_ino) != (self.size, self.mtime_ns, self.inode):
            raise LayerChangedError(
                "the file changed while it was being pushed; write layers elsewhere and "
                "rename them into place when complete",
                path=self.path,
                code=ErrorCode.FILE_CHANGED,
            )


def _read_exactly(fd: int, buffer: bytearray | memoryview, offset: int, layer: LayerFile) -> None:
    view = memoryview(buffer)
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise LayerChangedError(
                f"the file ended at byte {offset + done}, before its size of {layer.size} "
                "bytes; it was truncated while being pushed",
                path=layer.path,
                code=ErrorCode.FILE_CHANGED,
            )
        done += n


def _hash_file(layer: LayerFile, chunk_size: int) -> str:
    digest = hashlib.sha256()
    fd = _open_fd(layer)
    try:
        whole_layer = FilePartSource(fd, layer, PartRange(0, layer.size - 1))
        for chunk in whole_layer.chunks(chunk_size):
            digest.update(chunk)
    finally:
        os.close(fd)
    return "sha256:" + digest.hexdigest()


def _open_fd(layer: LayerFile) -> int:
    try:
        return os.open(layer.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise LayerChangedError(
            "the file disappeared while it was being pushed",
            path=layer.path,
            code=ErrorCode.FILE_CHANGED,
        ) from exc
    except PermissionError:
        raise LayerFileError(
            "permission denied; make the file readable by the uploaderd user",
            path=layer.path,
            code=ErrorCode.FILE_UNREADABLE,
        ) from None
    except OSError as exc:
        raise LayerFileError(
            f"cannot open the file: {exc.strerror}",
            path=layer.path,
            code=ErrorCode.FILE_UNREADABLE,
        ) from exc


def hash_if_unchanged(path: Path, identity: FileIdentity) -> str | None:
    """The ``sha256:`` digest of the regular file at ``path`` if it still is ``identity``.

    None when it is not (changed, gone, empty, unreadable): whoever pushes it
    finds out why.  Runs in the calling thread, for a caller hashing several
    small files in one worker thread; it reads through one buffer of at most
    ``HASH_CHUNK_SIZE`` bytes, which that caller charges to the budget.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return None
    found = FileIdentity(st.st_size, st.st_mtime_ns, st.st_ino)
    if not stat.S_ISREG(st.st_mode) or found != identity or st.st_size == 0:
        return None
    layer = LayerFile(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    try:
        digest = _hash_file(layer, min(HASH_CHUNK_SIZE, layer.size))
        layer.check_unchanged()
    except (LayerFileError, OSError):
        return None  # a read error, too: the push meets it again and reports it
    return digest


async def hash_layer(
    layer: LayerFile, budget: ByteBudget, *, chunk_size: int = HASH_CHUNK_SIZE
) -> str:
    """The layer's ``sha256:`` digest, read through one budgeted buffer off the event loop."""
    chunk = min(chunk_size, layer.size, budget.capacity)
    async with budget.reserve(chunk):
        if layer.size <= INLINE_BYTES:
            digest = _hash_file(layer, chunk)
        else:
            digest = await anyio.to_thread.run_sync(_hash_file, layer, chunk)
    layer.check_unchanged()
    return digest


@dataclass(slots=True)
class Part:
    """One part, encoded for the wire, with the budget charge it owns until it is settled."""

    range: PartRange
    payload: PartPayload
    charge: PartCharge


@dataclass(frozen=True, slots=True)
class FilePartSource:
    """A byte range of an open layer file, read in a worker thread.

    A part, read by the registry's encoder; or the whole layer, for its digest.
    """

    fd: int
    layer: LayerFile
    range: PartRange

    @property
    def first_byte(self) -> int:
        return self.range.first

    @property
    def length(self) -> int:
        return self.range.length

    def read_into(self, buffer: memoryview, offset: int = 0) -> None:
        _read_exactly(self.fd, buffer, self.range.first + offset, self.layer)

    def chunks(self, chunk_size: int) -> Iterator[memoryview]:
        buffer = memoryview(bytearray(min(chunk_size, self.length)))
        for offset in range(0, self.length, chunk_size):
            chunk = buffer[: min(chunk_size, self.length - offset)]
            self.read_into(chunk, offset)
            yield chunk


async def read_parts(
    layer: LayerFile,
    ranges: Iterable[PartRange],
    buffers: PartBuffers,
    parts_out: ObjectSendStream[Part],
    *,
    encode: Callable[[PartSource, Allocate], PartPayload],
    memory_per_byte: float,
    streamed: StreamDigest | None = None,
) -> None:
    """Read and encode ``ranges`` in order into ``parts_out``, each charged to the budget.

    The charge covers every copy the part will have while in flight (the
    registry says how much per byte: its encoding and request body), so the
    budget bounds real memory.  The stream's buffer sets how far reading runs
    ahead of sending; whoever receives a ``Part`` owns its charge and settles
    it.  A part that never reaches the stream is settled here.  With ``streamed``,
    every byte read is also fed to that layer digest (see ``digests``).
    """
    small = layer.size <= INLINE_BYTES
    fd = _open_fd(layer) if small else await anyio.to_thread.run_sync(_open_fd, layer)
    try:
        async with parts_out:
            for part_range in ranges:
                nbytes = min(
                    math.ceil(part_range.length * memory_per_byte), buffers.budget.capacity
                )
                charge = await buffers.acquire(nbytes)
                try:
                    source: PartSource = FilePartSource(fd, layer, part_range)
                    if streamed is not None:
                        source = HashingPartSource(source, streamed)
                    if small:
                        payload = encode(source, charge.allocate)
                    else:
                        payload = await anyio.to_thread.run_sync(encode, source, charge.allocate)
                    await parts_out.send(Part(part_range, payload, charge))
                    # The receiver owns the part now; holding it here while
                    # waiting for budget would keep a buffer nobody counts.
                    del payload
                except BaseException:
                    charge.settle()  # a no-op if the receiver got it and settled it
                    raise
    finally:
        os.close(fd)
