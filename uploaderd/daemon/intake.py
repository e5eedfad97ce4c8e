"""From a settled spool path to a journal row (or to failed/ on sight).

Also where a crash is mended: a file still in the spool whose journal row
says done or failed was finished by a run that died before moving it; it is
moved now instead of being pushed again.
"""

from __future__ import annotations

import logging
import time

from uploaderd.daemon import logs
from uploaderd.daemon.finished import Archiver
from uploaderd.daemon.journal import Journal
from uploaderd.daemon.spool import IMAGE, Rejected, SpoolFile, classify, identity_of


class Intake:
    def __init__(self, journal: Journal, archiver: Archiver) -> None:
        self.journal = journal
        self.archiver = archiver

    def admit(self, relpath: str) -> bool:
        """Queue the file at ``relpath`` if it is a new layer; True if work was added."""
        verdict = classify(self.archiver.watch, relpath)
        if verdict is None:
            return False
        if isinstance(verdict, Rejected):
            self._reject(verdict)
            return False
        return self._queue(verdict)

    def _queue(self, spool_file: SpoolFile) -> bool:
        active = self.journal.active_record(spool_file.relpath)
        if active is not None:
            if active.identity == spool_file.identity or active.state != "queued":
                return False
            # Rewritten while waiting: hash it again when its turn comes.  An image
            # waited for because it lacked files may be whole now: its turn is now.
            retry_now = spool_file.kind == IMAGE
            self.journal.record_new_identity(active.id, spool_file.identity, retry_now=retry_now)
            return retry_now
        finished = self.journal.finished_record(spool_file.relpath, spool_file.identity)
        if finished is not None:
            self._finish_interrupted_move(
                finished.relpath, finished.state, finished.error_code, finished.error_message
            )
            return False
        self.journal.enqueue(
            spool_file.relpath, spool_file.repository, spool_file.identity, spool_file.kind
        )
        logs.event(
            "file queued",
            kind=spool_file.kind,
            file=spool_file.relpath,
            repository=spool_file.repository,
            size=spool_file.identity.size,
        )
        return True

    def _reject(self, rejected: Rejected) -> None:
        identity = identity_of(self.archiver.watch / rejected.relpath)
        now = time.time()
        destination = self.archiver.file_failed(
            rejected.relpath,
            {
                "code": rejected.code,
                "message": rejected.message,
                "attempts": 0,
                "first_seen": now,
                "failed_at": now,
            },
        )
        if destination is None or identity is None:
            return
        self.journal.record_rejection(
            rejected.relpath, identity, rejected.code, rejected.message, str(destination)
        )
        logs.event(
            "file rejected",
            level=logging.WARNING,
            file=rejected.relpath,
            code=rejected.code,
            reason=rejected.message,
            moved_to=str(destination),
        )

    def _finish_interrupted_move(
        self, relpath: str, state: str, code: str | None, message: str | None
    ) -> None:
        if state == "done":
            self.archiver.file_done(relpath)
        else:
            self.archiver.file_failed(relpath, {"code": code, "message": message})
        logs.event("finished interrupted move", file=relpath, state=state)
