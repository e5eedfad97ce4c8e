"""Image directories in the spool: which directories are images, and when one changed.

Build tools (``buildx --output type=oci,dest=...``, ``cp -r``, ``tar -x``)
write a layout into its final directory file by file, in an order nobody
promises.  So an image directory is recognised by structure, from its first
file on, and nothing inside it is ever a layer:

* a directory is an image if it holds a file ``oci-layout`` or
  ``index.json``, or a ``blobs/`` directory with no file directly in it
  (a layout's ``blobs/`` holds only ``<algorithm>/`` directories);
* a file named by a digest's hex under ``sha256/`` or ``sha512/`` (as in
  ``blobs/sha256/<64 hex>``) is a blob of an image, wherever it is.

The price: a repository directory holding a layer named ``index.json`` or
``oci-layout`` (or an empty ``blobs/`` subdirectory) is taken for an image,
and one ending in ``/sha256`` holding files named by 64 hex digits is never
pushed.

Such a directory is complete once its whole tree stayed unchanged for the
settle time: ``tree_identity`` folds the tree into one ``FileIdentity``
whose size is the bytes of every file in it (what the queue counts) and
whose time is the newest change of any entry.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from uploaderd.model import FileIdentity

LAYOUT_MARKERS = ("oci-layout", "index.json")
BLOB_NAME = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha512": re.compile(r"[0-9a-f]{128}")}


@dataclass(frozen=True, slots=True)
class TreeIdentity(FileIdentity):
    """A tree's identity, and how many entries it holds.

    The kernel stamps times from a coarse clock (a few milliseconds), so an
    empty file created or removed within one tick shows only in the count.
    """

    entries: int = 0

    def as_file_identity(self) -> FileIdentity:
        """What the journal keeps, and compares with the next time it is queued."""
        return FileIdentity(self.size, self.mtime_ns, self.inode)


def is_image_directory(path: Path) -> bool:
    """Whether ``path`` is a real directory holding an image, whole or being written."""
    if not _is_real_directory(path):
        return False
    if any(os.path.isfile(path / marker) for marker in LAYOUT_MARKERS):
        return True
    blobs = path / "blobs"
    if not _is_real_directory(blobs):
        return False
    try:
        with os.scandir(blobs) as entries:
            return not any(entry.is_file(follow_symlinks=False) for entry in entries)
    except OSError:
        return False


def is_blob_path(relpath: str) -> bool:
    """Whether the name says it is a blob: ``.../sha256/<64 hex>`` or ``.../sha512/<128 hex>``."""
    parts = relpath.split("/")
    if len(parts) < 2:
        return False
    pattern = BLOB_NAME.get(parts[-2])
    return pattern is not None and pattern.fullmatch(parts[-1]) is not None


def image_root(watch: Path, relpath: str) -> str | None:
    """The image directory that ``relpath`` is or lies in; None for anything else.

    The outermost image directory on the path wins, so ``blobs/`` and
    ``blobs/sha256/`` of an image are never images (or repositories) of their own.
    A blob named so whose image directory is not (or no longer) there belongs
    to the directory above ``blobs/`` (or above ``sha256/``) all the same.
    """
    parts = relpath.split("/")
    for end in range(1, len(parts) + 1):
        if is_image_directory(watch.joinpath(*parts[:end])):
            return "/".join(parts[:end])
    if is_blob_path(relpath):
        end = len(parts) - 2
        if end > 0 and parts[end - 1] == "blobs":
            end -= 1
        return "/".join(parts[:end]) or None
    return None


def tree_identity(path: Path) -> TreeIdentity | None:
    """One identity for a whole tree: any write, new, renamed or removed entry changes it.

    Size is the bytes of all its files; the time is the newest mtime or ctime
    of any entry, directories included (a new or removed entry changes its
    directory's; ctime catches ``tar -x`` setting old mtimes); the inode is
    the root's.  Links are not followed.  None if the root is gone.
    """
    try:
        root = os.lstat(path)
    except OSError:
        return None
    total, entries, newest = 0, 0, max(root.st_mtime_ns, root.st_ctime_ns)
    pending = [path] if stat.S_ISDIR(root.st_mode) else []
    while pending:
        try:
            with os.scandir(pending.pop()) as scanned:
                for entry in scanned:
                    entries += 1
                    st = entry.stat(follow_symlinks=False)
                    newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
                    elif stat.S_ISDIR(st.st_mode):
                        pending.append(Path(entry.path))
        except OSError:
            continue  # removed while we looked: the change shows in its parent's time
    return TreeIdentity(total, newest, root.st_ino, entries)


def unchanged_seconds(identity: FileIdentity) -> float:
    """How long ago the file (or tree) last changed, by the wall clock its times use."""
    return (time.time_ns() - identity.mtime_ns) / 1e9


def _is_real_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
