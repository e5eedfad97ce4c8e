"""One journaled spool file: pushed through the engine, then moved to where it ends.

Uploaded files go to done/ (or are deleted), permanent failures to failed/
with their reason, and transient failures back to the queue with backoff:
nothing is lost, and the journal row is written before the file moves, so
a crash in between is mended at the next start (see ``intake``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from uploaderd.daemon import logs
from uploaderd.daemon.ahead import CheckAhead
from uploaderd.daemon.decisions import Decision, Done, Fail, ImageWait, Pause, Postpone, decide
from uploaderd.daemon.finished import Archiver
from uploaderd.daemon.imagetree import tree_identity, unchanged_seconds
from uploaderd.daemon.journal import FileRecord, Journal
from uploaderd.daemon.metrics import DaemonMetrics
from uploaderd.daemon.observer import DaemonObserver
from uploaderd.daemon.spool import IMAGE, identity_of
from uploaderd.engine.scheduler import UploadEngine
from uploaderd.errors import (
    ImageIncompleteError,
    JournalError,
    LayerFileError,
    UploaderError,
    unwrap_group,
)
from uploaderd.image.push import push_image
from uploaderd.image.source import ImageChoice, open_image
from uploaderd.model import LayerJob, LayerResult, Outcome
from uploaderd.registry.base import Registry
from uploaderd.settings import DaemonSettings
from uploaderd.sidecar import claimed_job


class FilePush:
    """Pushes queued files one at a time per worker, and settles each one's end."""

    def __init__(
        self,
        *,
        journal: Journal,
        engine: UploadEngine,
        observer: DaemonObserver,
        metrics: DaemonMetrics,
        archiver: Archiver,
        registry: Registry,
        settings: Callable[[], DaemonSettings],
        pause: Callable[[str], None],
        ahead: CheckAhead | None = None,
    ) -> None:
        self.ahead = ahead
        self.journal = journal
        self.engine = engine
        self.observer = observer
        self.metrics = metrics
        self.archiver = archiver
        self.registry = registry
        self.settings = settings
        self.pause = pause

    async def run(self, record: FileRecord) -> None:
        """Push the file of ``record`` and record how it ended; never raises for the file."""
        path = self.settings().watch / record.relpath
        current = identity_of(path)
        if current is None:
            self.journal.forget(record.id, "the file disappeared from the spool before upload")
            logs.event(
                "file vanished",
                level=logging.WARNING,
                file=record.relpath,
                repository=record.repository,
            )
            return
        if record.kind == IMAGE:
            await self._push_image(record, path)
            return
        if current != record.identity:
            self.journal.record_new_identity(record.id, current)
            record = self.journal.get(record.id) or record
        if self.ahead is not None:
            record = await self.ahead.before_push(record)
        job = LayerJob(
            path,
            record.repository,
            known_digest=record.digest,
            known_identity=record.identity,
            resume=record.resume,
        )
        try:
            # Read as the push starts: a sidecar that comes later is not this push's.
            job = claimed_job(job)
        except LayerFileError as exc:
            self._refuse(record, job, exc)
            return
        self.observer.track(path, record)
        self.metrics.in_flight.inc()
        try:
            result = await self.engine.push_layer(job)
        finally:
            self.metrics.in_flight.dec()
            self.observer.untrack(path)
        self._settle(record, result)

    def _refuse(self, record: FileRecord, job: LayerJob, error: LayerFileError) -> None:
        """A layer whose sidecar cannot be used ends as a push that failed at once."""
        error.repository = record.repository
        result = LayerResult(job, Outcome.FAILED, record.identity.size, None, 0.0, 1, error)
        self.observer.layer_finished(result)
        self._settle(record, result)

    async def _push_image(self, record: FileRecord, path: Path) -> None:
        """A whole image: blobs through the engine, then the manifest, then done/ or failed/.

        Not resumable part by part like a layer: after a crash the image is
        pushed again, and every blob that already arrived is skipped.
        """
        started = time.monotonic()
        scratch = self.settings().state_dir / "tmp"
        scratch.mkdir(mode=0o700, exist_ok=True)
        self.metrics.in_flight.inc()
        try:
            with tempfile.TemporaryDirectory(dir=scratch) as workdir:
                image = await open_image(path, ImageChoice(), Path(workdir))
                pushed = await push_image(image, record.repository, self.registry, self.engine)
        except (UploaderError, BaseExceptionGroup) as exc:
            error: UploaderError | None = _as_uploader_error(exc)
            tagged = None
        else:
            failures = [r.error for r in pushed.blobs if r.error is not None]
            error = failures[0] if failures else None
            tagged = " ".join(
                f"{record.repository}:{tag}@{digest}" for tag, digest in pushed.tagged.items()
            )
        finally:
            self.metrics.in_flight.dec()
        seconds = round(time.monotonic() - started, 3)
        # Only an incomplete image directory is waited for; what it waits on needs a tree walk.
        waiting = (
            self._image_wait(record, path) if isinstance(error, ImageIncompleteError) else None
        )
        decision = self._decide(record, error, Outcome.UPLOADED, waiting)
        if error is None:
            logs.event(
                "image pushed",
                repository=record.repository,
                file=record.relpath,
                image=tagged,
                seconds=seconds,
            )
        else:
            retry = isinstance(decision, Postpone)
            shown = decision.error if isinstance(decision, Postpone | Fail) else error
            logs.event(
                "image " + ("retry later" if retry else "failed"),
                level=logging.WARNING if retry else logging.ERROR,
                repository=record.repository,
                file=record.relpath,
                code=shown.code,
                reason=str(shown) if retry else shown.message,
                seconds=seconds,
            )
        self._carry_out(record, decision, attempts=1)

    def _image_wait(self, record: FileRecord, path: Path) -> ImageWait | None:
        """For an image directory, which a writer may still be filling: how long it is quiet.

        A change the intake saw while the push ran was not recorded (the row
        was not queued); it is now, so the next try compares with it.
        """
        tree = tree_identity(path) if path.is_dir() else None
        if tree is None:
            return None  # an archive is renamed in whole: what it lacks will not come
        current = tree.as_file_identity()
        changed = current != record.identity
        if changed:
            try:
                self.journal.record_new_identity(record.id, current)
            except JournalError as exc:
                self.pause(str(exc))
        timeout = self.settings().image_settle_timeout
        return ImageWait(unchanged_seconds(tree), timeout, changed=changed)

    def _settle(self, record: FileRecord, result: LayerResult) -> None:
        decision = self._decide(record, result.error, result.outcome)
        _log_result(record, result, decision)
        self._carry_out(record, decision, result.attempts)

    def _decide(
        self,
        record: FileRecord,
        error: UploaderError | None,
        outcome: Outcome,
        image: ImageWait | None = None,
    ) -> Decision:
        settings = self.settings()
        return decide(
            error,
            outcome,
            attempts=record.attempts,
            retry_max_delay=settings.retry_max_delay,
            settle_seconds=settings.settle_seconds,
            image=image,
        )

    def _carry_out(self, record: FileRecord, decision: Decision, attempts: int) -> None:
        """Do what ``decide`` chose; a journal that cannot record it pauses the intake."""
        try:
            match decision:
                case Pause(reason):
                    self.pause(reason)  # the file stays in the spool; a restart resumes it
                case Done(outcome):
                    self._finish_done(record, outcome)
                case Postpone(error, delay):
                    self.journal.postpone(
                        record.id,
                        not_before=time.time() + delay,
                        code=error.code,
                        message=error.message,
                    )
                case Fail(error):
                    self._finish_failed(record, error, attempts)
        except JournalError as exc:
            self.pause(str(exc))

    def _finish_done(self, record: FileRecord, outcome: Outcome) -> None:
        destination = None if self.settings().delete_uploaded else "done/"
        self.journal.finish(record.id, state="done", outcome=outcome.value, destination=destination)
        try:
            self.archiver.file_done(record.relpath)
        except OSError as exc:
            self.pause(f"cannot move {record.relpath} to done/: {exc}")

    def _finish_failed(self, record: FileRecord, error: UploaderError, attempts: int) -> None:
        self.journal.finish(
            record.id,
            state="failed",
            outcome="failed",
            destination="failed/",
            error_code=error.code,
            error_message=error.message,
        )
        details = {
            "code": error.code,
            "message": error.message,
            "repository": record.repository,
            "attempts": record.attempts,
            "engine_attempts": attempts,
            "queued_at": record.queued_at,
            "failed_at": time.time(),
        }
        try:
            self.archiver.file_failed(record.relpath, details)
        except OSError as exc:
            self.pause(f"cannot move {record.relpath} to failed/: {exc}")


def _as_uploader_error(exc: BaseException) -> UploaderError:
    """The error an image push reports; its checks run in task groups, which wrap it."""
    found = unwrap_group(exc) if isinstance(exc, BaseExceptionGroup) else exc
    if not isinstance(found, UploaderError):
        raise exc  # a bug: keep the whole traceback
    return found


def _log_result(record: FileRecord, result: LayerResult, decision: Decision) -> None:
    fields: dict[str, object] = {
        "outcome": result.outcome.value,
        "repository": record.repository,
        "file": record.relpath,
        "digest": result.digest or "",
        "size": result.size,
        "seconds": round(result.seconds, 3),
        "mib_per_s": round(result.mib_per_second, 2),
        "attempts": result.attempts,
    }
    retry = isinstance(decision, Postpone)
    level = logging.INFO
    if result.error is not None:
        fields.update(code=result.error.code, reason=result.error.message, retry=retry)
        level = logging.WARNING if retry else logging.ERROR
    logs.event(
        "layer " + ("retry later" if retry else result.outcome.value),
        level=level,
        **fields,
    )
