"""``uploaderd retry-failed``: put files from failed/ back into the spool.

The journal rows are marked ``requeued`` before each file moves back, so the
daemon (running or not) sees the returning file as new work rather than as
an interrupted move to failed/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from uploaderd.archive import contained
from uploaderd.journal import Journal


def failed_files(failed_root: Path) -> list[str]:
    found = []
    for directory, _, names in os.walk(failed_root):
        for name in names:
            if not name.endswith(".error.json"):
                found.append(os.path.relpath(os.path.join(directory, name), failed_root))
    return sorted(found)


def retry_failed(journal: Journal, watch: Path, state_dir: Path) -> list[tuple[str, str]]:
    """Move every failed file back; returns (file, what happened) for each."""
    failed_root = state_dir / "failed"
    report = []
    failed_rows = {r.relpath: r for r in journal.records("failed", limit=1_000_000)}
    for relpath in failed_files(failed_root):
        source = failed_root / relpath
        original = _original_name(relpath, failed_rows)
        target = contained(watch, original)
        if os.path.lexists(target):
            report.append((relpath, f"skipped: {target} already exists in the spool"))
            continue
        row = failed_rows.get(original)
        if row is not None:
            journal.requeue_failed(row.id)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
        error_file = source.with_name(source.name + ".error.json")
        error_file.unlink(missing_ok=True)
        report.append((relpath, f"back in the spool as {original}"))
    return report


def _original_name(relpath: str, failed_rows: Mapping[str, object]) -> str:
    """``name.1`` in failed/ came from ``name`` when failed/ already had one."""
    if relpath in failed_rows:
        return relpath
    stem, dot, suffix = relpath.rpartition(".")
    return stem if dot and suffix.isdigit() and stem in failed_rows else relpath
