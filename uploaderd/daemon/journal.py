"""The durable queue: every spool file's state, in sqlite, surviving kill -9.

States run queued -> hashing -> uploading -> done | failed.  ``uploading``
rows carry the upload id and the last byte the registry confirmed, so a
restarted daemon continues the upload instead of starting over.  The file's
size, mtime and inode are recorded when it is queued: a file that changes
afterwards is noticed and hashed again, never uploaded half old, half new.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from uploaderd.daemon.journaldb import FileRecord, open_database
from uploaderd.errors import ErrorCode, JournalError
from uploaderd.model import FileIdentity

# FileRecord is the row type of every read here, so the daemon and the cli take it from here.
__all__ = ["JOURNAL_NAME", "FileRecord", "Journal", "QueueFigures"]

JOURNAL_NAME = "journal.sqlite"
"""The journal's file in the state dir."""


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """The active files at one instant: waiting for a worker, and being pushed.

    Read in one query so that the two halves add up: a file claimed between two
    reads would otherwise be counted twice or not at all.
    """

    waiting_files: int
    waiting_bytes: int
    in_flight_files: int
    in_flight_bytes: int
    oldest_queued_at: float | None
    """When the oldest active file (waiting or in flight) was queued."""

    @property
    def files(self) -> int:
        return self.waiting_files + self.in_flight_files

    @property
    def bytes(self) -> int:
        return self.waiting_bytes + self.in_flight_bytes


class Journal:
    """All reads and writes of the state database, one short transaction each."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open (or create) the journal; refuse a corrupt one with the recovery step."""
        return cls(open_database(path), path)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise JournalError(
                f"cannot write the journal ({exc}); check free space and permissions of "
                f"{self.path.parent}",
                path=self.path,
                code=ErrorCode.JOURNAL_UNWRITABLE,
            ) from exc

    # --- the spool side ---------------------------------------------------------------

    def active_record(self, relpath: str) -> FileRecord | None:
        row = self._db.execute(
            "SELECT * FROM files WHERE relpath = ? AND state IN ('queued','hashing','uploading')",
            (relpath,),
        ).fetchone()
        return FileRecord.from_row(row) if row else None

    def queued_layers(self, repository: str, now: float, limit: int) -> list[FileRecord]:
        """The layer files of ``repository`` next in the queue (due now), in claim order."""
        rows = self._db.execute(
            "SELECT * FROM files INDEXED BY by_queue_order WHERE state = 'queued' "
            "AND kind = 'layer' AND repository = ? AND not_before <= ? "
            "ORDER BY queued_at, id LIMIT ?",
            (repository, now, limit),
        ).fetchall()
        return [FileRecord.from_row(row) for row in rows]

    def finished_record(self, relpath: str, identity: FileIdentity) -> FileRecord | None:
        """A done/failed row for this very file: it was finished but not yet moved away."""
        row = self._db.execute(
            "SELECT * FROM files WHERE relpath = ? AND state IN ('done','failed') "
            "AND size = ? AND mtime_ns = ? AND inode = ? ORDER BY id DESC LIMIT 1",
            (relpath, identity.size, identity.mtime_ns, identity.inode),
        ).fetchone()
        return FileRecord.from_row(row) if row else None

    def enqueue(
        self, relpath: str, repository: str, identity: FileIdentity, kind: str = "layer"
    ) -> FileRecord:
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO files (relpath, repository, size, mtime_ns, inode, state, "
                "queued_at, kind) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                (relpath, repository, identity.size, identity.mtime_ns, identity.inode, now, kind),
            )
        record = self.get(int(cursor.lastrowid or 0))
        assert record is not None
        return record

    def record_new_identity(
        self, record_id: int, identity: FileIdentity, *, retry_now: bool = False
    ) -> None:
        """The file changed after it was queued: forget its digest and upload.

        ``retry_now`` also ends a postponement: the change may be what it waited for.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, inode = ?, digest = NULL, "
                "upload_id = NULL, part_size = NULL, next_byte = 0, resume_from = 0, "
                "not_before = CASE WHEN ? THEN 0 ELSE not_before END WHERE id = ?",
                (identity.size, identity.mtime_ns, identity.inode, retry_now, record_id),
            )

    def record_rejection(
        self, relpath: str, identity: FileIdentity, code: str, message: str, destination: str
    ) -> None:
        """A spool entry that can never be a layer, moved to failed/ on sight."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO files (relpath, repository, size, mtime_ns, inode, state, "
                "queued_at, finished_at, outcome, error_code, error_message, destination) "
                "VALUES (?, '', ?, ?, ?, 'failed', ?, ?, 'rejected', ?, ?, ?)",
                (
                    _storable(relpath),
                    identity.size,
                    identity.mtime_ns,
                    identity.inode,
                    now,
                    now,
                    code,
                    _storable(message),
                    _storable(destination),
                ),
            )

    # --- the engine side --------------------------------------------------------------

    def claim_next(self, now: float) -> FileRecord | None:
        """Take the oldest queued file that is due, marking it as being worked on."""
        with self._transaction() as db:
            # In queue order from the index, stopping at the first file due: without
            # it sqlite sorts every queued row, each claim, and a deep queue drains
            # in quadratic time.
            row = db.execute(
                "SELECT * FROM files INDEXED BY by_queue_order "
                "WHERE state = 'queued' AND not_before <= ? ORDER BY queued_at, id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE files SET state = CASE WHEN upload_id IS NULL THEN 'hashing' "
                "ELSE 'uploading' END, started_at = ?, attempts = attempts + 1, "
                "resume_from = next_byte WHERE id = ?",
                (now, row["id"]),
            )
        return self.get(int(row["id"]))

    def record_digest(self, record_id: int, digest: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE files SET digest = ? WHERE id = ?", (digest, record_id))

    def record_digests(self, hashed: Iterable[tuple[FileRecord, str]]) -> None:
        """Digests of files hashed ahead of their push, in one transaction.

        Each only if its row still has the identity the file was hashed with: a
        file rewritten meanwhile has had its row reset, and keeps no digest.
        """
        with self._transaction() as db:
            db.executemany(
                "UPDATE files SET digest = ? WHERE id = ? AND digest IS NULL "
                "AND size = ? AND mtime_ns = ? AND inode = ?",
                [
                    (digest, r.id, r.identity.size, r.identity.mtime_ns, r.identity.inode)
                    for r, digest in hashed
                ],
            )

    def record_upload(self, record_id: int, upload_id: str, part_size: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET state = 'uploading', upload_id = ?, part_size = ?, "
                "next_byte = 0, resume_from = 0 WHERE id = ?",
                (upload_id, part_size, record_id),
            )

    def record_progress(self, record_id: int, next_byte: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE files SET next_byte = ? WHERE id = ?", (next_byte, record_id))

    def finish(
        self,
        record_id: int,
        *,
        state: str,
        outcome: str,
        destination: str | None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET state = ?, outcome = ?, destination = ?, error_code = ?, "
                "error_message = ?, finished_at = ? WHERE id = ?",
                (state, outcome, destination, error_code, error_message, time.time(), record_id),
            )

    def postpone(self, record_id: int, *, not_before: float, code: str, message: str) -> None:
        """A transient failure: back to the queue, keeping the upload to resume."""
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET state = 'queued', not_before = ?, error_code = ?, "
                "error_message = ? WHERE id = ?",
                (not_before, code, message, record_id),
            )

    def forget(self, record_id: int, reason: str) -> None:
        """The file vanished from the spool before it was pushed; nothing to move."""
        self.finish(
            record_id,
            state="failed",
            outcome="vanished",
            destination=None,
            error_code=ErrorCode.FILE_VANISHED,
            error_message=reason,
        )

    def release_claims(self) -> int:
        """At start-up: files a crashed run was working on go back to the queue."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE files SET state = 'queued', not_before = 0 "
                "WHERE state IN ('hashing', 'uploading')"
            )
        return cursor.rowcount

    def requeue_failed(self, record_id: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE files SET state = 'requeued' WHERE id = ?", (record_id,))

    # --- reading ------------------------------------------------------------------------

    def get(self, record_id: int) -> FileRecord | None:
        row = self._db.execute("SELECT * FROM files WHERE id = ?", (record_id,)).fetchone()
        return FileRecord.from_row(row) if row else None

    def records(self, *states: str, limit: int = 1000) -> list[FileRecord]:
        marks = ",".join("?" * len(states))
        rows = self._db.execute(
            f"SELECT * FROM files WHERE state IN ({marks}) ORDER BY id DESC LIMIT ?",  # noqa: S608
            (*states, limit),
        ).fetchall()
        return [FileRecord.from_row(row) for row in rows]

    def queue_figures(self) -> QueueFigures:
        """Raises JournalError when sqlite cannot read: callers decide whether that is fatal."""
        try:
            row = self._db.execute(
                "SELECT COALESCE(SUM(state = 'queued'), 0), "
                "COALESCE(SUM(CASE WHEN state = 'queued' THEN size END), 0), "
                "COALESCE(SUM(state != 'queued'), 0), "
                "COALESCE(SUM(CASE WHEN state != 'queued' THEN size END), 0), "
                "MIN(queued_at) FROM files WHERE state IN ('queued','hashing','uploading')"
            ).fetchone()
        except sqlite3.Error as exc:
            corrupt = not isinstance(exc, sqlite3.OperationalError)
            raise JournalError(
                f"cannot read the journal {self.path} ({exc}); check the disk and the "
                f"permissions of {self.path.parent}",
                path=self.path,
                code=ErrorCode.JOURNAL_CORRUPT if corrupt else ErrorCode.JOURNAL_UNWRITABLE,
            ) from exc
        return QueueFigures(int(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4])


def _storable(text: str) -> str:
    """``text`` as sqlite can store it: a name that is not UTF-8 keeps its bytes, escaped.

    Python reads such a name with lone surrogates (PEP 383), which sqlite refuses
    with UnicodeEncodeError; only rejections carry such names (the spool rejects
    them before they are queued), and a crash there would stop the daemon for one
    badly named file.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
