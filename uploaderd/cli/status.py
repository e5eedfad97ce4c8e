"""``uploaderd status``: the daemon's view, read from its journal (no server needed)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uploaderd.cli.exits import ExitStatus
from uploaderd.daemon.journal import JOURNAL_NAME, FileRecord, Journal, QueueFigures
from uploaderd.daemon.limitfile import PublishedLimit, read_limit
from uploaderd.errors import ConfigurationError, ErrorCode
from uploaderd.settings import load_paths
from uploaderd.sizes import MIB


@dataclass(frozen=True, slots=True)
class Progress:
    """One file in flight: how far, how fast, how long to go."""

    record: FileRecord
    done_bytes: int
    rate: float | None
    eta: float | None

    @classmethod
    def of(cls, record: FileRecord, now: float) -> Progress:
        done = record.next_byte if record.state == "uploading" else 0
        sent = done - record.resume_from
        elapsed = now - (record.started_at or now)
        rate = sent / elapsed if sent > 0 and elapsed > 0 else None
        eta = (record.identity.size - done) / rate if rate else None
        return cls(record, done, rate, eta)


def open_journal_read(state_dir: Path) -> Journal:
    path = state_dir / JOURNAL_NAME
    if not path.exists():
        raise ConfigurationError(
            f"no journal at {path}: has 'uploaderd run' used this --state-dir?",
            code=ErrorCode.NO_JOURNAL,
        )
    return Journal.open(path)


@dataclass(frozen=True, slots=True)
class QueueEstimate:
    """How long the whole queue takes at the rate the uploads in flight go now.

    Waiting files count whole: until a worker claims one, nobody knows whether
    the registry already has it or still holds the upload it was postponed
    with.  The rate is the sum of the in-flight uploads' rates, since they
    share the link; with none measured yet there is no estimate, not a guess.
    """

    remaining_bytes: int
    rate: float | None
    eta: float | None

    @classmethod
    def of(cls, figures: QueueFigures, in_flight: list[Progress]) -> QueueEstimate:
        left_in_flight = sum(p.record.identity.size - p.done_bytes for p in in_flight)
        remaining = figures.waiting_bytes + left_in_flight
        rate = sum(p.rate for p in in_flight if p.rate) or None
        if remaining == 0:
            return cls(0, rate, 0.0)
        return cls(remaining, rate, remaining / rate if rate else None)


def snapshot(
    journal: Journal, *, failures: int = 10, limit: PublishedLimit | None = None
) -> dict[str, Any]:
    """The view; ``limit`` is what a running daemon published of its layer limit."""
    now = time.time()
    figures = journal.queue_figures()
    in_flight = [Progress.of(r, now) for r in journal.records("hashing", "uploading")]
    estimate = QueueEstimate.of(figures, in_flight)
    return {
        "queue": {
            "files": figures.files,
            "bytes": figures.bytes,
            "waiting_files": figures.waiting_files,
            "waiting_bytes": figures.waiting_bytes,
            "in_flight_files": figures.in_flight_files,
            "in_flight_bytes": figures.in_flight_bytes,
            "oldest_age_seconds": round(now - figures.oldest_queued_at, 1)
            if figures.oldest_queued_at
            else None,
            "remaining_bytes": estimate.remaining_bytes,
            "mib_per_second": round(estimate.rate / MIB, 2) if estimate.rate else None,
            "eta_seconds": round(estimate.eta, 1) if estimate.eta is not None else None,
        },
        "concurrency": _concurrency(limit),
        "in_flight": [
            {
                "file": p.record.relpath,
                "repository": p.record.repository,
                "state": p.record.state,
                "bytes_done": p.done_bytes,
                "size": p.record.identity.size,
                "mib_per_second": round(p.rate / MIB, 2) if p.rate else None,
                "eta_seconds": round(p.eta, 1) if p.eta is not None else None,
            }
            for p in in_flight
        ],
        "recent_failures": [
            {
                "file": r.relpath,
                "code": r.error_code,
                "message": r.error_message,
                "failed_at": r.finished_at,
            }
            for r in journal.records("failed", limit=failures)
        ],
    }


def _concurrency(limit: PublishedLimit | None) -> dict[str, Any] | None:
    if limit is None:
        return None
    return {
        "mode": limit.mode,
        "limit": limit.limit,
        "max": limit.ceiling,
        "budget_cap": limit.budget_cap,
        "updated_at": limit.updated_at,
    }


def _concurrency_line(concurrency: dict[str, Any] | None) -> str:
    if concurrency is None:
        return "concurrency limit: - (no running daemon published one)"
    if concurrency["mode"] == "fixed":
        return f"concurrency limit: {concurrency['limit']} layers (fixed)"
    line = f"concurrency limit: {concurrency['limit']} layers (auto, max {concurrency['max']}"
    if concurrency["budget_cap"] is not None and concurrency["budget_cap"] < concurrency["max"]:
        line += f", memory budget holds {concurrency['budget_cap']}"
    return line + ")"


def render(view: dict[str, Any]) -> str:
    lines = [
        _queue_line(view["queue"]),
        _concurrency_line(view.get("concurrency")),
        f"in flight: {len(view['in_flight'])}",
    ]
    for item in view["in_flight"]:
        rate = f"{item['mib_per_second']:.1f} MiB/s" if item["mib_per_second"] else "-"
        eta = f"ETA {item['eta_seconds']:.0f}s" if item["eta_seconds"] is not None else "ETA -"
        percent = 100 * item["bytes_done"] / item["size"] if item["size"] else 0
        lines.append(
            f"  {item['file']}  {item['state']}  {item['bytes_done'] / MIB:.1f}/"
            f"{item['size'] / MIB:.1f} MiB ({percent:.0f}%)  {rate}  {eta}"
        )
    lines.append(f"recent failures: {len(view['recent_failures'])}")
    for item in view["recent_failures"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item["failed_at"] or 0))
        lines.append(f"  {item['file']}  {item['code']}: {item['message']}  ({when} UTC)")
    return "\n".join(lines)


def _queue_line(queue: dict[str, Any]) -> str:
    line = (
        f"queue: {queue['waiting_files']} waiting ({queue['waiting_bytes'] / MIB:.1f} MiB), "
        f"{queue['in_flight_files']} in flight ({queue['in_flight_bytes'] / MIB:.1f} MiB)"
    )
    if queue["oldest_age_seconds"] is not None:
        line += f", oldest queued {queue['oldest_age_seconds']:.0f}s ago"
    if not queue["files"]:
        return line
    if queue["eta_seconds"] is None:
        return line + ", ETA - (no upload rate yet)"
    return line + f", ETA {_duration(queue['eta_seconds'])} at {queue['mib_per_second']:.1f} MiB/s"


def _duration(seconds: float) -> str:
    """A queue can take hours: 95s, 12m05s, 3h20m."""
    whole = round(seconds)
    if whole < 120:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def show_status(state_dir: Path, *, as_json: bool) -> str:
    journal = open_journal_read(state_dir)
    try:
        view = snapshot(journal, limit=read_limit(state_dir))
    finally:
        journal.close()
    return json.dumps(view, indent=2) if as_json else render(view)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Read the daemon's journal (no running daemon needed)."
    parser.add_argument("--state-dir", type=Path, help="the daemon's state dir")
    parser.add_argument("--config", type=Path, help="the daemon's config file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--watch", action="store_true", help="refresh the view every second until Ctrl-C"
    )


async def run(args: argparse.Namespace) -> int:
    state_dir = load_paths(("state_dir",), vars(args), config_file=args.config)["state_dir"]
    if args.watch and not args.json:
        import anyio.to_thread  # noqa: PLC0415

        from uploaderd.cli.terminal import watch_refreshing  # noqa: PLC0415  # rich: only here

        await anyio.to_thread.run_sync(
            watch_refreshing, lambda: show_status(state_dir, as_json=False)
        )
        return ExitStatus.OK
    print(show_status(state_dir, as_json=args.json))
    return ExitStatus.OK
