"""Moving finished files out of the spool: ``done/`` and ``failed/`` in the state dir.

A file is never deleted for failing: it is moved aside with an
``<name>.error.json`` beside it that says why, so nothing is lost and an
operator can put it back with ``uploaderd retry-failed``.  Destinations are
built from the spool-relative path and checked to stay inside their root, so
no file name can make the daemon write outside the state dir.

A file's sidecar (``<name>.sha256``, its digest) goes where the file goes,
renamed alike (``name.1`` -> ``name.1.sha256``), and moves first: a crash in
between leaves the file in the spool, which the next start finishes moving,
never a sidecar without its file that a later file of that name would take
for its own.  A sidecar is whatever the spool holds under that name (a link
is moved as a link, never followed), but never a directory.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from uploaderd.sidecar import sidecar_of

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class PathEscapeError(ValueError):
    """A relative path that would lead outside its root."""


def contained(root: Path, relpath: str) -> Path:
    """``root / relpath``, refusing anything that would land outside ``root``."""
    parts = relpath.split("/")
    if relpath.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise PathEscapeError(f"{relpath!r} is not a plain relative path")
    destination = root.joinpath(*parts)
    if os.path.commonpath([root.resolve(), destination.parent.resolve()]) != str(root.resolve()):
        raise PathEscapeError(f"{relpath!r} leads outside {root}")
    return destination


def _free_name(destination: Path) -> Path:
    """The destination, or ``name.1``, ``name.2``... if a file of that name is there.

    Taken also when its error file or its sidecar is there: a move never
    overwrites, and a file never lands beside another file's reason or digest.
    """
    candidate, n = destination, 0
    while any(
        os.path.lexists(path)
        for path in (candidate, error_file_of(candidate), sidecar_of(candidate))
    ):
        n += 1
        candidate = destination.with_name(f"{destination.name}.{n}")
    return candidate


def free_destination(root: Path, relpath: str) -> Path:
    """``root/relpath`` or a free variant of it, its directories made (owner only)."""
    destination = _free_name(contained(root, relpath))
    _make_private_dirs(root, destination.parent)
    return destination


def _move(source: Path, destination: Path) -> None:
    try:
        os.rename(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # another filesystem: copy, then remove
            raise
        shutil.move(source, destination)


def error_file_of(destination: Path) -> Path:
    return destination.with_name(destination.name + ".error.json")


def write_error_file(layer_destination: Path, details: dict[str, Any]) -> Path:
    """``<name>.error.json`` beside the failed file, readable by its owner only.

    Written whole under a hidden name, then renamed: whoever reads it (an
    operator, retry-failed, a log shipper) never sees half a reason.  The
    hidden name also ends in ``.error.json``, so a crash in between leaves
    nothing that retry-failed would take for a failed file.
    """
    path = error_file_of(layer_destination)
    partial = path.with_name(f".{path.name}.partial.error.json")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as handle:
        json.dump(details, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(partial, path)
    return path


def _make_private_dirs(root: Path, directory: Path) -> None:
    root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)


class Archiver:
    """Where finished spool files go: ``done/`` (or deleted) and ``failed/``."""

    def __init__(self, watch: Path, state_dir: Path, *, delete_uploaded: bool) -> None:
        self.watch = watch
        self.done_root = state_dir / "done"
        self.failed_root = state_dir / "failed"
        self.delete_uploaded = delete_uploaded

    def file_done(self, relpath: str) -> Path | None:
        """Move an uploaded file (and its sidecar) to done/, or delete both; None when
        deleted or gone.

        Deleted, the sidecar goes too: left behind, it would claim its digest
        for the next file dropped under that name.
        """
        source = self.watch / relpath
        sidecar = _sidecar_beside(source)
        if self.delete_uploaded:
            if sidecar is not None:
                sidecar.unlink(missing_ok=True)
            if source.is_dir() and not source.is_symlink():
                shutil.rmtree(source)  # an image layout directory
            else:
                source.unlink(missing_ok=True)
            return None
        if not os.path.lexists(source):
            return None
        destination = free_destination(self.done_root, relpath)
        if sidecar is not None:
            _move(sidecar, sidecar_of(destination))
        _move(source, destination)
        return destination

    def file_failed(self, relpath: str, details: dict[str, Any]) -> Path | None:
        """Move a file that can never be pushed to failed/, with its reason beside it."""
        source = self.watch / relpath
        if not os.path.lexists(source):
            return None
        # The reason is there before the file: failed/ never holds a file without it.
        destination = free_destination(self.failed_root, relpath)
        reason = write_error_file(
            destination, {**details, "file": relpath, "moved_to": str(destination)}
        )
        sidecar = _sidecar_beside(source)
        try:
            if sidecar is not None:
                _move(sidecar, sidecar_of(destination))
            _move(source, destination)
        except OSError:
            if sidecar is not None and os.path.lexists(sidecar_of(destination)):
                _move(sidecar_of(destination), sidecar)  # back beside its file
            reason.unlink(missing_ok=True)
            raise
        return destination


def _sidecar_beside(source: Path) -> Path | None:
    """The sidecar in the spool beside ``source``, if it has one; never for a directory.

    A directory (an image layout) has no sidecar, and a directory named like
    one is a repository path, not a file to move.
    """
    if stat.S_ISDIR(_mode(source)):
        return None
    sidecar = sidecar_of(source)
    mode = _mode(sidecar)
    return sidecar if mode and not stat.S_ISDIR(mode) else None


def _mode(path: Path) -> int:
    """``path``'s own mode (a link's, not its target's); 0 when there is nothing."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0
