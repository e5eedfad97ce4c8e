"""The daemon's engine observer: every step of a layer goes to the journal and metrics.

The journal write happens inside the hook, before the engine sends the next
part, so the last confirmed byte on disk is never behind by more than the
part in flight: that is what lets a restart after kill -9 continue the
upload instead of starting it over.
"""

from __future__ import annotations

from pathlib import Path

from uploaderd.daemon.journal import FileRecord, Journal
from uploaderd.daemon.metrics import DaemonMetrics
from uploaderd.model import LayerJob, LayerResult


class DaemonObserver:
    def __init__(self, journal: Journal, metrics: DaemonMetrics) -> None:
        self.journal = journal
        self.metrics = metrics
        self._records: dict[Path, int] = {}

    def track(self, path: Path, record: FileRecord) -> None:
        self._records[path] = record.id

    def untrack(self, path: Path) -> None:
        self._records.pop(path, None)

    def layer_started(self, job: LayerJob) -> None:
        pass

    def layer_hashed(self, job: LayerJob, digest: str, size: int) -> None:
        record_id = self._records.get(job.path)
        if record_id is not None:
            self.journal.record_digest(record_id, digest)

    def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None:
        record_id = self._records.get(job.path)
        if record_id is not None:
            self.journal.record_upload(record_id, upload_id, part_size)

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        record_id = self._records.get(job.path)
        if record_id is not None:
            self.journal.record_progress(record_id, next_byte)
        self.metrics.part_confirmed(job, next_byte, nbytes, seconds)

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None:
        self.metrics.retrying(job, reason, delay)

    def layer_finished(self, result: LayerResult) -> None:
        self.metrics.layer_finished(result)
