"""What the engine tells the outside world while it works.

Metrics, the journal, log lines and terminal progress all watch the same
events; the engine calls an ``EngineObserver`` and never imports any of them,
so data flows one way: engine -> observers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from uploaderd.errors import UploaderError
from uploaderd.parts import MIB


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
class LayerJob:
    """One file to push to one repository.

    A daemon that restarts after a crash passes what it already knows: the
    digest of the file as it was (trusted only while the file's identity is
    unchanged) and the upload to continue.
    """

    path: Path
    repository: str
    known_digest: str | None = None
    known_identity: FileIdentity | None = None
    resume: ResumePoint | None = None


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


class EngineObserver(Protocol):
    """Hooks called from the event loop; they must not block."""

    def layer_started(self, job: LayerJob) -> None:
        """The engine took the layer: it is being checked and hashed."""

    def layer_hashed(self, job: LayerJob, digest: str, size: int) -> None: ...

    def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None: ...

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        """The registry holds bytes up to ``next_byte - 1``; ``nbytes`` of them were just sent."""

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None: ...

    def layer_finished(self, result: LayerResult) -> None: ...


class SilentObserver:
    """The observer for callers that only want the results."""

    def layer_started(self, job: LayerJob) -> None:
        pass

    def layer_hashed(self, job: LayerJob, digest: str, size: int) -> None:
        pass

    def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None:
        pass

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        pass

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None:
        pass

    def layer_finished(self, result: LayerResult) -> None:
        pass
