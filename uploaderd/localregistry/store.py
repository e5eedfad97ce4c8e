"""Content-addressed blob storage and the in-progress uploads that feed it.

Layers can be gigabytes, so no layer is ever held whole in memory: each part is
appended to ``<storage>/uploads/<uploadId>`` as it arrives and folded into a running
sha256, and completion renames the file to ``<storage>/blobs/sha256/<hex>``. Large
parts are written and hashed in a worker thread so one upload cannot stall the event
loop (and with it every other client's requests).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

#: Parts above this size are written and hashed off the event loop.
THREAD_THRESHOLD = 1024 * 1024


@dataclass
class UploadSession:
    """One InitiateLayerUpload's state: where its bytes go and what they hash to.

    ``lock`` serialises requests for the same upload: a misbehaving client may send
    two parts of one upload at once, and the byte offsets must stay consistent.
    ``repository`` is whatever the caller scopes uploads by (``<registryId>/<name>``).
    """

    upload_id: str
    repository: str
    path: Path
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    received: int = 0
    part_sizes: list[int] = field(default_factory=list)
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


class BlobStore:
    """Blobs on disk by digest, plus the upload sessions still being written."""

    def __init__(self, root: Path) -> None:
        self._blobs = root / "blobs" / "sha256"
        self._uploads = root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        # Upload sessions live in memory, so files left by an earlier run can never
        # be completed; removing them keeps the disk from filling across restarts.
        shutil.rmtree(self._uploads, ignore_errors=True)
        self._uploads.mkdir(parents=True)
        self._sessions: dict[str, UploadSession] = {}
        self._limiter = anyio.CapacityLimiter(4)

    def blob_path(self, digest: str) -> Path:
        return self._blobs / digest.removeprefix("sha256:")

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def start_upload(self, repository: str) -> UploadSession:
        upload_id = str(uuid.uuid4())
        session = UploadSession(upload_id, repository, self._uploads / upload_id)
        session.path.touch()
        self._sessions[upload_id] = session
        return session

    def find_upload(self, upload_id: str) -> UploadSession | None:
        return self._sessions.get(upload_id)

    async def append(self, session: UploadSession, data: bytes) -> None:
        """Appends one part; the caller has checked it starts where the last ended."""
        if len(data) > THREAD_THRESHOLD:
            await anyio.to_thread.run_sync(_append, session, data, limiter=self._limiter)
        else:
            _append(session, data)

    def commit(self, session: UploadSession) -> None:
        """Makes the upload's bytes the blob of its digest and forgets the upload."""
        target = self.blob_path(session.digest())
        if target.exists():
            # Same digest, same bytes: another repository already stored them.
            session.path.unlink(missing_ok=True)
        else:
            os.replace(session.path, target)
        self._sessions.pop(session.upload_id, None)

    def forget(self, upload_id: str) -> None:
        session = self._sessions.pop(upload_id, None)
        if session is not None:
            session.path.unlink(missing_ok=True)


def _append(session: UploadSession, data: bytes) -> None:
    # The bookkeeping happens here, beside the write, so a cancelled caller (the
    # thread still finishes) cannot leave the offsets behind the bytes on disk.
    with session.path.open("ab") as out:
        out.write(data)
    session.hasher.update(data)
    session.received += len(data)
    session.part_sizes.append(len(data))
