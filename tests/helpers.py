"""Layer files with known digests, for every suite.

What users could need too (the in-memory registry, the local registry, a free
port) is in ``uploaderd.testing``; this is what only our own tests need.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from uploaderd.sizes import MIB


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_renamed(directory: Path, name: str, data: bytes) -> str:
    """Write ``data`` under a hidden temporary name, then rename it into place; its digest.

    A build system drops layers this way, and the daemon may take a file as soon
    as it appears under its name: the rename makes it appear whole.
    """
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{name}.tmp"
    temporary.write_bytes(data)
    temporary.rename(directory / name)
    return digest_of(data)


def make_layer(directory: Path, name: str, size: int) -> tuple[Path, str]:
    """An incompressible layer file of ``size`` bytes and its digest.

    Written in 1 MiB steps, so a big layer is never held in memory whole, and
    like :func:`write_renamed` (hidden, then renamed), so it may be made right
    in a spool a daemon watches.
    """
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{name}.tmp"
    digest = hashlib.sha256()
    with temporary.open("wb") as out:
        for start in range(0, size, MIB):
            chunk = os.urandom(min(MIB, size - start))
            digest.update(chunk)
            out.write(chunk)
    return temporary.rename(directory / name), "sha256:" + digest.hexdigest()


def layer_tar(size: int) -> bytes:
    """An uncompressed tar holding one file of ``size`` random bytes: a real layer."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data-{os.urandom(4).hex()}.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return out.getvalue()
