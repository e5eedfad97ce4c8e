"""The durable queue: every spool file's state, in sqlite, surviving kill -9.

States run queued -> hashing -> uploading -> done | failed.  ``uploading``
rows carry the upload id and the last byte the registry confirmed, so a
restarted daemon continues the upload instead of starting over.  The file's
size, mtime and inode are recorded when it is queued: a file that changes
afterwards is noticed and hashed again, never uploaded half old, half new.

WAL mode with ``synchronous=NORMAL`` makes every commit durable against a
crash of the process (kill -9), which is the failure a daemon sees most; a
power loss may lose the last few transitions, which only repeats work (the
registry's availability check keeps a layer from being completed twice).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from uploaderd.errors import ErrorCode, JournalError
from uploaderd.model import FileIdentity, ResumePoint

ACTIVE_STATES = ("queued", "hashing", "uploading")
JOURNAL_NAME = "journal.sqlite"
"""The journal's file in the state dir."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    relpath TEXT NOT NULL,
    repository TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'hashing', 'uploading', 'done', 'failed', 'requeued')),
    digest TEXT,
    upload_id TEXT,
    part_size INTEGER,
    next_byte INTEGER NOT NULL DEFAULT 0,
    resume_from INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    not_before REAL NOT NULL DEFAULT 0,
    outcome TEXT,
    destination TEXT,
    kind TEXT NOT NULL DEFAULT 'layer'
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_row_per_path
    ON files (relpath) WHERE state IN ('queued', 'hashing', 'uploading');
CREATE INDEX IF NOT EXISTS by_state ON files (state, not_before, queued_at);
"""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of the journal."""

    id: int
    relpath: str
    repository: str
    identity: FileIdentity
    state: str
    digest: str | None
    upload_id: str | None
    part_size: int | None
    next_byte: int
    resume_from: int
    attempts: int
    error_code: str | None
    error_message: str | None
    queued_at: float
    started_at: float | None
    finished_at: float | None
    not_before: float
    outcome: str | None
    destination: str | None
    kind: str

    @property
    def resume(self) -> ResumePoint | None:
        """The unfinished upload to continue, if the registry confirmed any of it."""
        if self.upload_id is None or self.part_size is None:
            return None
        return ResumePoint(self.upload_id, self.part_size, self.next_byte)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> FileRecord:
        values = dict(row)
        identity = FileIdentity(values.pop("size"), values.pop("mtime_ns"), values.pop("inode"))
        return cls(identity=identity, **values)


@dataclass(frozen=True, slots=True)
class QueueFigures:
    files: int
    bytes: int
    oldest_queued_at: float | None
    in_flight: int


class Journal:
    """All reads and writes of the state database, one short transaction each."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open (or create) the journal; refuse a corrupt one with the recovery step."""
        fresh = not path.exists()
        try:
            connection = sqlite3.connect(path, isolation_level=None, timeout=10)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            connection.executescript(SCHEMA)
            _add_missing_columns(connection)
        except sqlite3.OperationalError as exc:
            # Cannot open, read-only, I/O error, locked: the file may be fine, so the
            # corrupt-journal advice (move it aside) would throw good state away.
            raise JournalError(
                f"cannot open the journal for writing ({exc}); check that the state dir "
                f"{path.parent} is writable: not on a read-only filesystem, owned by the "
                "uploaderd user, with free space; then start again",
                path=path,
                code=ErrorCode.JOURNAL_UNWRITABLE,
            ) from None
        except sqlite3.DatabaseError as exc:
            raise JournalError(
                f"the journal is unreadable or corrupt ({exc}); stop uploaderd, move {path} "
                "aside (keep it for inspection), and start again: files still in the spool "
                "are queued anew and layers already in the registry are skipped",
                path=path,
                code=ErrorCode.JOURNAL_CORRUPT,
            ) from None
        if fresh:
            os.chmod(path, 0o600)
        return cls(connection, path)

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

    def record_new_identity(self, record_id: int, identity: FileIdentity) -> None:
        """The file changed after it was queued: forget its digest and upload."""
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, inode = ?, digest = NULL, "
                "upload_id = NULL, part_size = NULL, next_byte = 0, resume_from = 0 "
                "WHERE id = ?",
                (identity.size, identity.mtime_ns, identity.inode, record_id),
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
            row = db.execute(
                "SELECT * FROM files WHERE state = 'queued' AND not_before <= ? "
                "ORDER BY queued_at, id LIMIT 1",
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
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(queued_at), "
            "SUM(state IN ('hashing','uploading')) FROM files "
            "WHERE state IN ('queued','hashing','uploading')"
        ).fetchone()
        return QueueFigures(int(row[0]), int(row[1]), row[2], int(row[3] or 0))


def _storable(text: str) -> str:
    """``text`` as sqlite can store it: a name that is not UTF-8 keeps its bytes, escaped.

    Python reads such a name with lone surrogates (PEP 383), which sqlite refuses
    with UnicodeEncodeError; only rejections carry such names (the spool rejects
    them before they are queued), and a crash there would stop the daemon for one
    badly named file.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Journals written before whole images were supported have no ``kind`` column."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(files)")}
    if "kind" not in columns:
        connection.execute("ALTER TABLE files ADD COLUMN kind TEXT NOT NULL DEFAULT 'layer'")
