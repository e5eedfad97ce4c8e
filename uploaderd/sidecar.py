"""A layer's digest from the file a build system drops beside it: ``<layer name>.sha256``.

Build systems often know a layer's digest already (they just wrote and
hashed it) and say so in a sidecar.  A claimed digest lets the push ask the
registry first and hash the bytes only while sending them, so a big layer is
read once instead of twice; the engine still checks the claim before it
completes the upload, so a wrong sidecar can fail a layer but never put it
under a digest it does not have.

Accepted, with surrounding whitespace and a final newline ignored, as one line:

* ``sha256:<64 hex>``  (an OCI digest, as ``docker``, ``crane`` or ``buildx`` print it)
* ``<64 hex>``
* ``<64 hex>  <name>`` or ``<64 hex> *<name>``  (``sha256sum`` output, text or binary
  mode); ``<name>`` may carry the directory the writer hashed it in, but its last
  component must be this layer's name.

Upper-case hex is accepted and lowered: it is the same digest (Windows tools
write it so), while ECR and OCI registries take only the lower-case form.

The sidecar is only ever looked up as a sibling by name, opened with
``O_NOFOLLOW`` and read no further than ``MAX_SIDECAR_BYTES``: a link could
make the daemon read a file outside the spool, and a fifo or a huge file
could stall or bloat it.  Anything unusable is a ``LayerFileError`` with the
code ``InvalidSidecar``: the layer fails (it is not silently hashed), because
the writer meant to claim something and must learn that it did not.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from uploaderd.errors import ErrorCode, LayerFileError
from uploaderd.model import BY_NAME, ClaimSource, LayerJob
from uploaderd.naming import claimed_digest

SIDECAR_SUFFIX = ".sha256"
MAX_SIDECAR_BYTES = 4096
"""A digest line with a long path fits; more than this is not a sidecar."""

_HEX = r"[0-9a-fA-F]{64}"
_OCI_DIGEST = re.compile(rf"sha256:(?P<hex>{_HEX})")
_BARE_OR_SUM = re.compile(rf"(?P<hex>{_HEX})(?: [ *](?P<name>.+))?")
_ACCEPTED = "'sha256:<64 hex>', '<64 hex>', or sha256sum's '<64 hex>  <name>'"


@dataclass(frozen=True, slots=True)
class LayerClaim:
    """The digest a layer file is claimed to have, and who claims it."""

    digest: str
    source: ClaimSource = BY_NAME


def sidecar_source(sidecar: Path) -> ClaimSource:
    """A sidecar's claim, as a digest mismatch names it (see ``ClaimSource``)."""
    return ClaimSource(
        f"its sidecar {sidecar.name}",
        "the layer or its sidecar is wrong: write the layer's own digest into the sidecar "
        "(or remove it), then put both back, sidecar first",
    )


def sidecar_of(layer: Path) -> Path:
    """Where a layer's sidecar would be: beside it, its name plus ``.sha256``."""
    return layer.with_name(layer.name + SIDECAR_SUFFIX)


def is_sidecar_name(name: str) -> bool:
    """Whether a file so named is a sidecar, never a layer of its own."""
    return name.endswith(SIDECAR_SUFFIX)


def parse_sidecar(content: bytes, layer_name: str) -> str:
    """The ``sha256:<hex>`` digest ``content`` states for ``layer_name``; ValueError if none.

    The error's text says what is wrong, for the operator's message.
    """
    try:
        text = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"is not text; write one line: {_ACCEPTED}") from None
    if not text:
        raise ValueError(f"is empty; write one line: {_ACCEPTED}")
    if "\n" in text or "\r" in text:
        raise ValueError(
            f"holds more than one line; a sidecar holds this layer's digest alone: {_ACCEPTED}"
        )
    match = _OCI_DIGEST.fullmatch(text) or _BARE_OR_SUM.fullmatch(text)
    if match is None:
        raise ValueError(f"holds {_shown(text)}, not a sha256 digest; write one of {_ACCEPTED}")
    named = match.groupdict().get("name")
    if named is not None and named.rpartition("/")[2] != layer_name:
        raise ValueError(
            f"names the file {named!r}, not this layer {layer_name!r}; "
            f"it is another file's digest: write this layer's"
        )
    return "sha256:" + match.group("hex").lower()


def _shown(text: str) -> str:
    """The sidecar's text for a message, cut short: it may be anything."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


class _UnusableSidecarError(Exception):
    """A sidecar that is there but cannot be read as one; the text says why."""


def read_sidecar(layer: Path) -> str | None:
    """The digest the sidecar beside ``layer`` states; None if there is no sidecar.

    Raises ``LayerFileError`` (``InvalidSidecar``) when there is one but it
    cannot be used: a symlink, not a regular file, unreadable, too big, or
    not one of the accepted forms.
    """
    path = sidecar_of(layer)
    try:
        content = _read_capped(path)
        return parse_sidecar(content, layer.name)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _invalid(path, _why_unreadable(exc)) from exc
    except (_UnusableSidecarError, ValueError) as exc:
        raise _invalid(path, str(exc)) from None


def _read_capped(path: Path) -> bytes:
    """The bytes of ``path`` itself, never through a link, at most ``MAX_SIDECAR_BYTES``.

    Judged by ``lstat`` before it is opened, so a fifo or a device is never
    opened at all; ``O_NOFOLLOW`` and the inode check close the race with a
    swap in between.
    """
    before = os.lstat(path)
    if stat.S_ISLNK(before.st_mode):
        raise _UnusableSidecarError(_SYMLINK)
    if not stat.S_ISREG(before.st_mode):
        raise _UnusableSidecarError(
            "is not a regular file (a directory, fifo, socket or device); write a file"
        )
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise _UnusableSidecarError(
                "was replaced while it was read; write it once, then leave it"
            )
        content = os.read(fd, MAX_SIDECAR_BYTES + 1)
    finally:
        os.close(fd)
    if len(content) > MAX_SIDECAR_BYTES:
        raise _UnusableSidecarError(
            f"is over {MAX_SIDECAR_BYTES} bytes; a sidecar holds one digest line"
        )
    return content


_SYMLINK = "is a symlink, which uploaderd never follows; write the sidecar itself beside the layer"


def _why_unreadable(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return _SYMLINK  # made a link between the lstat and the open
    if isinstance(exc, PermissionError):
        return "cannot be read (permission denied); let uploaderd's user read it"
    return f"cannot be read ({exc.strerror or exc}); check the file system"


def _invalid(sidecar: Path, what: str) -> LayerFileError:
    return LayerFileError(
        f"its sidecar {sidecar.name} {what}; then push the layer again "
        "(the daemon: uploaderd retry-failed), or remove the sidecar to have it hashed",
        code=ErrorCode.INVALID_SIDECAR,
        path=sidecar.with_name(sidecar.name.removesuffix(SIDECAR_SUFFIX)),
    )


def layer_claim(layer: Path) -> LayerClaim | None:
    """The digest claimed for a layer file: by its sidecar, by its ``sha256-<hex>`` name, or None.

    A sidecar and a name that disagree are refused: one of them is wrong,
    and pushing under either could put the layer under a digest it lacks
    (the engine would catch it, but only after sending every byte).
    """
    by_name = claimed_digest(layer.name)
    by_sidecar = read_sidecar(layer)
    if by_sidecar is None:
        return LayerClaim(by_name) if by_name is not None else None
    if by_name is not None and by_name != by_sidecar:
        raise _invalid(
            sidecar_of(layer),
            f"holds {by_sidecar}, but the layer's name claims {by_name}; "
            "one of them is wrong: correct the sidecar or rename the layer",
        )
    return LayerClaim(by_sidecar, sidecar_source(sidecar_of(layer)))


def claimed_job(job: LayerJob) -> LayerJob:
    """``job`` with the digest its file's sidecar or name claims, if any (see ``layer_claim``).

    Raises ``LayerFileError`` (``InvalidSidecar``) when the sidecar cannot be used.
    """
    claim = layer_claim(job.path)
    if claim is None:
        return job
    return replace(job, claimed_digest=claim.digest, claimed_by=claim.source)
