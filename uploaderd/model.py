"""What every part of uploaderd shares: a file's identity, a job, and how it ended.

These are plain values, the words in which the daemon, the command line and
the engine talk to each other; none of them knows who produces or reads them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from uploaderd.errors import UploaderError
from uploaderd.sizes import MIB


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What says a file is still the one that was hashed: size, mtime and inode."""

    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """An upload a previous run left unfinished, as far as the registry confirmed it."""

    upload_id: str
    part_size: int
    next_byte: int


@dataclass(frozen=True, slots=True)
class ClaimSource:
    """Who says what a file's digest is, in the words a mismatch's message needs.

    A claimed digest is checked as the bytes are sent; when they disagree the
    operator must learn which to fix (the image, the file's name, its
    sidecar), and the engine that finds the mismatch knows none of them.
    """

    says: str
    """Who claims it: "its image's manifest"."""
    remedy: str
    """What to do when the bytes disagree."""


BY_MANIFEST = ClaimSource("its image's manifest", "the image is corrupt: rebuild or re-export it")
BY_NAME = ClaimSource(
    "its sha256-<hex> name",
    "the file is misnamed or corrupt: name it by its own digest, or rebuild it",
)


@dataclass(frozen=True, slots=True)
class LayerJob:
    """One file to push to one repository.

    A daemon that restarts after a crash passes what it already knows: the
    digest of the file as it was (trusted only while the file's identity is
    unchanged) and the upload to continue.  An image's blob comes with the
    digest its manifest claims, which is checked while the bytes are sent
    rather than by reading the file once more beforehand.
    """

    path: Path
    repository: str
    known_digest: str | None = None
    known_identity: FileIdentity | None = None
    resume: ResumePoint | None = None
    claimed_digest: str | None = None
    claimed_by: ClaimSource = BY_MANIFEST
    """Who claims ``claimed_digest``: named by the message if the bytes disagree."""


class Outcome(enum.StrEnum):
    UPLOADED = "uploaded"
    EXISTS = "exists"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LayerResult:
    """How one layer ended; ``error`` is set exactly when the outcome is FAILED."""

    job: LayerJob
    outcome: Outcome
    size: int
    digest: str | None
    seconds: float
    attempts: int
    error: UploaderError | None = None

    @property
    def mib_per_second(self) -> float:
        return self.size / MIB / self.seconds if self.seconds > 0 else 0.0
