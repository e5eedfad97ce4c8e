"""The journal's sqlite database: its one table, what a row of it is, opening it.

WAL mode with ``synchronous=NORMAL`` makes every commit durable against a
crash of the process (kill -9), which is the failure a daemon sees most; a
power loss may lose the last few transitions, which only repeats work (the
registry's availability check keeps a layer from being completed twice).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from uploaderd.errors import ErrorCode, JournalError
from uploaderd.model import FileIdentity, ResumePoint

ACTIVE_STATES = ("queued", "hashing", "uploading")
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
CREATE INDEX IF NOT EXISTS by_queue_order ON files (state, queued_at, id);
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


def open_database(path: Path) -> sqlite3.Connection:
    """A connection to the journal's database, created if missing, with today's columns.

    sqlite's quick check runs first: a corrupt journal is refused with the
    recovery step, never read half-way.
    """
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
    return connection


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Journals written before whole images were supported have no ``kind`` column."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(files)")}
    if "kind" not in columns:
        connection.execute("ALTER TABLE files ADD COLUMN kind TEXT NOT NULL DEFAULT 'layer'")
