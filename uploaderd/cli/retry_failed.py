"""``uploaderd retry-failed``: put files from failed/ back into the spool.

The journal rows are marked ``requeued`` before each file moves back, so the
daemon (running or not) sees the returning file as new work rather than as
an interrupted move to failed/.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from uploaderd.cli.exits import ExitStatus
from uploaderd.cli.status import open_journal_read
from uploaderd.daemon.finished import contained
from uploaderd.daemon.journal import Journal
from uploaderd.settings import load_paths
from uploaderd.sidecar import is_sidecar_name, sidecar_of


def failed_files(failed_root: Path) -> list[str]:
    """The failed files, without their ``.error.json`` and sidecars (they go with them)."""
    found = []
    for directory, _, names in os.walk(failed_root):
        for name in names:
            if not name.endswith(".error.json") and not is_sidecar_name(name):
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
        # A sidecar already in the spool under the layer's name would claim its
        # digest, whether or not the layer came with one of its own.
        taken = next((p for p in (target, sidecar_of(target)) if os.path.lexists(p)), None)
        if taken is not None:
            report.append((relpath, f"skipped: {taken} already exists in the spool"))
            continue
        sidecar = sidecar_of(source)
        has_sidecar = os.path.lexists(sidecar)
        row = failed_rows.get(original)
        if row is not None:
            journal.requeue_failed(row.id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if has_sidecar:
            # First, and under the layer's original name: a layer the daemon
            # takes before its sidecar is back would be hashed, not claimed.
            os.rename(sidecar, sidecar_of(target))
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Move every failed file back to <watch>/<repository>/ so the daemon "
        "tries it again; its .error.json is removed."
    )
    parser.add_argument("--state-dir", type=Path, help="the daemon's state dir")
    parser.add_argument("--watch", type=Path, help="the daemon's spool directory")
    parser.add_argument("--config", type=Path, help="the daemon's config file")


async def run(args: argparse.Namespace) -> int:
    found = load_paths(("state_dir", "watch"), vars(args), config_file=args.config)
    journal = open_journal_read(found["state_dir"])
    try:
        report = retry_failed(journal, found["watch"], found["state_dir"])
    finally:
        journal.close()
    for relpath, what in report:
        print(f"{relpath}: {what}")
    print(f"{len(report)} failed files handled", file=sys.stderr)
    return ExitStatus.OK
