"""Unpacking an image tarball (docker save, or an OCI layout in a tar) to a directory.

Members are streamed to disk one at a time, never held whole in memory, and
tarfile's ``data`` filter refuses absolute paths, ``..`` and links leading
out of the directory, so a hostile archive cannot write outside it.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import anyio

from uploaderd.errors import ErrorCode, ImageError


def _extract(archive: Path, destination: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(destination, filter="data")
    except (tarfile.ReadError, EOFError) as exc:
        raise ImageError(
            f"the archive is truncated or not a tar file ({exc}); write it again "
            "(docker save -o FILE, or skopeo copy ... docker-archive:FILE)",
            path=archive,
            code=ErrorCode.BAD_ARCHIVE,
        ) from None
    except tarfile.FilterError as exc:
        raise ImageError(
            f"the archive has a member that would land outside it ({exc})",
            path=archive,
            code=ErrorCode.BAD_ARCHIVE,
        ) from None
    except OSError as exc:
        raise ImageError(
            f"cannot unpack the archive: {exc}", path=archive, code=ErrorCode.BAD_ARCHIVE
        ) from None


async def extract_archive(archive: Path, destination: Path) -> None:
    """Unpack ``archive`` into ``destination`` in a worker thread."""
    await anyio.to_thread.run_sync(_extract, archive, destination)
