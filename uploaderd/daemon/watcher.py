"""Noticing spool files at once (inotify) and deciding when a file is complete.

A file renamed into place (``MOVED_TO``) is complete the moment it appears:
that is the writer's atomic rename.  A file written in place is taken only
after it was closed (``CLOSE_WRITE``) and its size and mtime then stayed the
same for ``settle_seconds``: a writer that reopens it to append restarts the
clock.  An image directory is one candidate: every event inside it is a
change of the image, which is taken once its whole tree stayed unchanged for
``settle_seconds`` (or at once, if the directory was renamed into place).
The periodic full rescan reports what inotify may have missed (queue
overflow, files that arrived while the daemon was down) as ``FOUND``.
"""

from __future__ import annotations

import enum
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskStatus
from asyncinotify import Event, Inotify, Mask

from uploaderd.daemon.imagetree import image_root, is_image_directory, unchanged_seconds
from uploaderd.daemon.spool import entry_identity, identity_of, is_ignored, walk
from uploaderd.model import FileIdentity

WATCH_MASK = (
    Mask.CLOSE_WRITE
    | Mask.MOVED_TO
    | Mask.MOVED_FROM
    | Mask.CREATE
    | Mask.MODIFY
    | Mask.DELETE
    | Mask.DONT_FOLLOW
    | Mask.ONLYDIR
)


STALE_WRITER_SECONDS = 60.0
"""A file open for writing but untouched this long is taken over by the rescan."""


class Seen(enum.Enum):
    RENAMED = "renamed"  # complete now
    CLOSED = "closed"  # complete once unchanged for the settle time
    WRITING = "writing"  # open for writing: wait for CLOSED
    FOUND = "found"  # by a scan: complete once unchanged for the settle time
    GONE = "gone"


@dataclass(slots=True)
class _Candidate:
    identity: FileIdentity | None
    changed_at: float
    closed: bool


class Settler:
    """Holds candidate files until they are complete, then hands them on."""

    def __init__(
        self,
        watch: Path,
        settle_seconds: float,
        on_ready: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` times the settle rule (tests pass a fake one); mtimes stay the file's."""
        self._clock = clock
        self.watch = watch
        self.settle_seconds = settle_seconds
        self.on_ready = on_ready
        self._candidates: dict[str, _Candidate] = {}
        self._wakeup = anyio.Event()

    def observe(self, relpath: str, seen: Seen) -> None:
        root = image_root(self.watch, relpath)
        if root is not None:
            relpath, seen = root, _image_change(seen, inside=root != relpath)
        if is_ignored(relpath):
            return
        if root is None and seen is not Seen.GONE and _is_directory(self.watch / relpath):
            return  # a repository directory: its files are reported one by one
        if seen is Seen.GONE:
            self._candidates.pop(relpath, None)
            return
        if seen is Seen.RENAMED:
            self._candidates.pop(relpath, None)
            self.on_ready(relpath)
            return
        now = self._clock()
        if seen is Seen.FOUND and self._following(relpath):
            return
        if seen is Seen.WRITING:
            if not _is_regular_file(self.watch / relpath):
                self.on_ready(relpath)  # a link, fifo or device: never written, judge it now
            else:
                self._candidates[relpath] = _Candidate(None, now, closed=False)
            return
        identity = entry_identity(self.watch / relpath)
        if identity is None:
            self._candidates.pop(relpath, None)
        elif seen is Seen.FOUND and _unchanged_for(identity, self.settle_seconds):
            self.on_ready(relpath)  # its mtime already says it settled long ago
        else:
            self._candidates[relpath] = _Candidate(identity, now, closed=True)
            self._wakeup.set()

    def _following(self, relpath: str) -> bool:
        """Whether events already track this file, so a scan need not report it.

        A file seen open for writing whose mtime is older than a rescan interval
        lost its writer without a close event: the scan takes it over.
        """
        candidate = self._candidates.get(relpath)
        if candidate is None:
            return False
        if candidate.closed:
            return True
        identity = identity_of(self.watch / relpath)
        return identity is not None and not _unchanged_for(identity, STALE_WRITER_SECONDS)

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(self._next_check()):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()
            self.check_due()

    def _next_check(self) -> float:
        closed = [c.changed_at for c in self._candidates.values() if c.closed]
        if not closed:
            return 1.0
        return max(0.0, min(closed) + self.settle_seconds - self._clock())

    def check_due(self) -> None:
        """Hand on every closed candidate unchanged for the settle time; restart the changed."""
        now = self._clock()
        for relpath, candidate in list(self._candidates.items()):
            if not candidate.closed or now - candidate.changed_at < self.settle_seconds:
                continue
            identity = entry_identity(self.watch / relpath)
            if identity is None:
                del self._candidates[relpath]
            elif identity == candidate.identity:
                del self._candidates[relpath]
                self.on_ready(relpath)
            else:
                candidate.identity, candidate.changed_at = identity, now  # changed: wait again


def _image_change(seen: Seen, *, inside: bool) -> Seen:
    """What an event in (or on) an image directory means for the image as a whole.

    Anything written, renamed or removed inside it is a change of the image,
    which then settles as one tree; only the directory itself renamed into
    place is complete at once.
    """
    if seen is Seen.FOUND or (not inside and seen in (Seen.RENAMED, Seen.GONE)):
        return seen
    return Seen.CLOSED


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return True  # gone: the settle check will drop it


def _is_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _unchanged_for(identity: FileIdentity, seconds: float) -> bool:
    return unchanged_seconds(identity) >= seconds


class SpoolWatcher:
    """inotify watches on every directory of the spool, reporting to a ``Settler``."""

    def __init__(self, watch: Path, settler: Settler, on_overflow: Callable[[], None]) -> None:
        self.watch = watch
        self.settler = settler
        self.on_overflow = on_overflow
        self.running = False

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with Inotify() as inotify:
            self._watch_tree(inotify, "")
            self.running = True
            task_status.started()
            try:
                async for event in inotify:
                    self._handle(inotify, event)
            finally:
                self.running = False

    def _watch_tree(self, inotify: Inotify, directory: str) -> None:
        base = self.watch / directory if directory else self.watch
        try:
            inotify.add_watch(base, WATCH_MASK)
            entries = list(os.scandir(base))
        except OSError:
            return  # vanished or not a directory any more
        for entry in entries:
            # Image directories too: a layout written in place changes in blobs/sha256/.
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                self._watch_tree(inotify, f"{directory}/{entry.name}" if directory else entry.name)

    def _handle(self, inotify: Inotify, event: Event) -> None:
        if Mask.Q_OVERFLOW in event.mask:
            self.on_overflow()
            return
        if event.path is None or event.name is None:
            return
        relpath = os.path.relpath(event.path, self.watch)
        if Mask.ISDIR in event.mask:
            self._directory_event(inotify, relpath, event.mask)
        else:
            self.settler.observe(relpath, _seen(event.mask))

    def _directory_event(self, inotify: Inotify, relpath: str, mask: Mask) -> None:
        if not mask & (Mask.CREATE | Mask.MOVED_TO):
            self.settler.observe(relpath, Seen.GONE)  # inside an image: a change of it
            return
        self._watch_tree(inotify, relpath)
        if Mask.MOVED_TO in mask and is_image_directory(self.watch / relpath):
            self.settler.observe(relpath, Seen.RENAMED)  # a whole image, renamed in
            return
        # An image being written (or a directory of one) settles as a tree; the
        # settler ignores a repository directory.  Files may have landed before
        # the watch did: report them as found.
        self.settler.observe(relpath, Seen.CLOSED)
        for inner in walk(self.watch, relpath):
            self.settler.observe(inner, Seen.FOUND)


def _seen(mask: Mask) -> Seen:
    if Mask.MOVED_TO in mask:
        return Seen.RENAMED
    if Mask.CLOSE_WRITE in mask:
        return Seen.CLOSED
    if mask & (Mask.DELETE | Mask.MOVED_FROM):
        return Seen.GONE
    return Seen.WRITING
