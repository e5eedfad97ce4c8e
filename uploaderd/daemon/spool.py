"""The watched directory: which paths are layers, and for which repository.

The contract with writers: a file at ``<watch>/<repository path>/<name>`` is a
layer for ECR repository ``<repository path>``.  Names starting with ``.`` or
ending in ``.tmp``/``.part`` are ignored until renamed, so a writer can write
then rename atomically.  A file ending in ``.sha256`` is a layer's sidecar
(its digest, see ``uploaderd.sidecar``), never a layer itself: it is read
when its layer is pushed and moves with it.  Symlinks are never followed: a link could lead the
daemon to upload (and then move) a file outside the spool.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from uploaderd.daemon.imagetree import (
    image_root,
    is_blob_path,
    is_image_directory,
    tree_identity,
)
from uploaderd.errors import ErrorCode
from uploaderd.model import FileIdentity
from uploaderd.naming import repository_name_problem
from uploaderd.sidecar import is_sidecar_name

IGNORED_SUFFIXES = (".tmp", ".part")
IMAGE_ARCHIVE_SUFFIX = ".image.tar"
"""A file named so is a whole image (docker save or OCI layout tarball), not a layer."""

LAYER = "layer"
IMAGE = "image"


@dataclass(frozen=True, slots=True)
class SpoolFile:
    """A candidate under a valid repository directory: a layer, or a whole image.

    An image is an OCI layout directory (see ``imagetree`` for the rule) or a
    file ending in ``.image.tar``.  A directory's identity is its whole tree's,
    so its size is the bytes of all its blobs.
    """

    relpath: str
    repository: str
    identity: FileIdentity
    kind: str = LAYER


@dataclass(frozen=True, slots=True)
class Rejected:
    """A path that will never be a layer; it is moved to failed/ with this reason."""

    relpath: str
    code: str
    message: str


def is_ignored(relpath: str) -> bool:
    """Hidden or temporary names anywhere in the path (a writer is not done yet), or a sidecar."""
    parts = relpath.split("/")
    name = parts[-1]
    hidden = any(part.startswith(".") for part in parts)
    return hidden or name.endswith(IGNORED_SUFFIXES) or is_sidecar_name(name)


def classify(watch: Path, relpath: str) -> SpoolFile | Rejected | None:
    """What the spool entry at ``relpath`` is; None when it is to be left alone."""
    if is_ignored(relpath) or not _directory_is_real(watch, relpath):
        return None
    root = image_root(watch, relpath)
    if is_blob_path(relpath) or (root is not None and root != relpath):
        return None  # in an image, or a blob by its name: the image is pushed as a whole
    path = watch / relpath
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    kind = LAYER
    identity: FileIdentity | None = FileIdentity(st.st_size, st.st_mtime_ns, st.st_ino)
    if stat.S_ISDIR(st.st_mode):
        if root is None:
            return None  # a repository path
        tree = tree_identity(path)
        kind, identity = IMAGE, tree.as_file_identity() if tree else None
    elif stat.S_ISREG(st.st_mode) and relpath.endswith(IMAGE_ARCHIVE_SUFFIX):
        kind = IMAGE
    if stat.S_ISLNK(st.st_mode):
        return _symlink_rejection(watch, relpath)
    if kind == LAYER and not stat.S_ISREG(st.st_mode):
        return Rejected(
            relpath,
            ErrorCode.NOT_A_REGULAR_FILE,
            "is a fifo, socket or device node, not a layer file; only regular files are pushed",
        )
    name_problem = _name_problem(relpath)
    if name_problem is not None:
        return Rejected(relpath, ErrorCode.INVALID_FILE_NAME, name_problem)
    directory, _, _ = relpath.rpartition("/")
    if not directory:
        return Rejected(
            relpath,
            ErrorCode.NO_REPOSITORY,
            "lies at the top of the spool; put layers in <watch>/<repository>/<file>",
        )
    problem = repository_name_problem(directory)
    if problem is not None:
        return Rejected(
            relpath,
            ErrorCode.INVALID_REPOSITORY,
            f"{problem}; rename the directory under the spool",
        )
    if identity is None:
        return None  # removed while we looked
    return SpoolFile(relpath, directory, identity, kind)


def _directory_is_real(watch: Path, relpath: str) -> bool:
    """Whether no directory on the way to the entry is a symlink.

    ``lstat`` refuses a link only as the last component.  The watcher reports paths
    by the directory it registered; if that directory is swapped for a link, a
    reported path leads through the link to a file elsewhere, which must be neither
    pushed nor moved.  The link itself is a spool entry and is rejected as one.
    """
    directory = os.path.dirname(relpath)
    if not directory:
        return True
    real = os.path.realpath(os.path.join(watch, directory))
    return real == os.path.join(os.path.realpath(watch), directory)


def _symlink_rejection(watch: Path, relpath: str) -> Rejected:
    target = os.path.realpath(watch / relpath)
    inside = target.startswith(str(watch.resolve()) + os.sep)
    if inside:
        return Rejected(
            relpath, ErrorCode.SYMLINK, "is a symlink; move the layer file itself into the spool"
        )
    return Rejected(
        relpath,
        ErrorCode.SYMLINK_OUTSIDE_SPOOL,
        "is a symlink to a path outside the watch directory; uploaderd never follows it",
    )


def _name_problem(relpath: str) -> str | None:
    if any(ch in relpath for ch in "\n\r\t"):
        return "the file name contains a newline or tab; rename it"
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8; rename it"
    return None


def walk(watch: Path, directory: str = "") -> Iterator[str]:
    """Every entry to judge under ``directory`` (relative), without following links.

    Directories are descended into, except image directories, which are
    entries themselves (their blobs are never judged one by one).
    """
    base = watch / directory if directory else watch
    try:
        entries = list(os.scandir(base))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        relpath = f"{directory}/{entry.name}" if directory else entry.name
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False) and not is_image_directory(Path(entry.path)):
            yield from walk(watch, relpath)
        else:
            yield relpath


def entry_identity(path: Path) -> FileIdentity | None:
    """What must stay the same while an entry settles: an image directory's whole tree."""
    return tree_identity(path) if is_image_directory(path) else identity_of(path)


def identity_of(path: Path) -> FileIdentity | None:
    """Size, mtime and inode of ``path`` itself (a link is not followed); None if gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return FileIdentity(st.st_size, st.st_mtime_ns, st.st_ino)
