"""``uploaderd status`` over a real journal: waiting apart from in flight, and the queue's ETA."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from uploaderd.cli.status import render, show_status, snapshot
from uploaderd.daemon.journal import JOURNAL_NAME, Journal
from uploaderd.daemon.limitfile import PublishedLimit, read_limit, write_limit
from uploaderd.model import FileIdentity

MIB = 1024 * 1024


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal.open(tmp_path / JOURNAL_NAME)
    yield opened
    opened.close()


def enqueue(journal: Journal, name: str, size: int) -> int:
    identity = FileIdentity(size, time.time_ns(), 1)
    return journal.enqueue(f"team/app/{name}", "team/app", identity).id


def start_upload(journal: Journal, seconds_ago: float, sent: int) -> None:
    """Claim the oldest waiting file as a worker did ``seconds_ago``; ``sent`` bytes confirmed."""
    claimed = journal.claim_next(time.time() - seconds_ago)
    assert claimed is not None
    journal.record_upload(claimed.id, f"upload-{claimed.id}", 5 * MIB)
    journal.record_progress(claimed.id, sent)


def test_waiting_and_in_flight_are_counted_apart_with_an_eta_for_the_whole_queue(
    journal: Journal,
) -> None:
    enqueue(journal, "big.tar", 40 * MIB)
    enqueue(journal, "medium.tar", 20 * MIB)
    for name, size in [("w1.tar", 10 * MIB), ("w2.tar", 10 * MIB), ("w3.tar", 20 * MIB)]:
        enqueue(journal, name, size)
    start_upload(journal, seconds_ago=10, sent=20 * MIB)  # big.tar at 2 MiB/s
    start_upload(journal, seconds_ago=5, sent=5 * MIB)  # medium.tar at 1 MiB/s

    view = snapshot(journal)
    queue = view["queue"]
    assert queue["waiting_files"] == 3
    assert queue["waiting_bytes"] == 40 * MIB
    assert queue["in_flight_files"] == 2
    assert queue["in_flight_bytes"] == 60 * MIB
    assert (queue["files"], queue["bytes"]) == (5, 100 * MIB)  # as before: all of them
    # 40 MiB waiting + 20 + 15 MiB left in flight, at 2 + 1 MiB/s.
    assert queue["remaining_bytes"] == 75 * MIB
    assert queue["mib_per_second"] == pytest.approx(3, rel=0.02)
    assert queue["eta_seconds"] == pytest.approx(25, rel=0.02)

    first_line = render(view).splitlines()[0]
    assert re.fullmatch(
        r"queue: 3 waiting \(40\.0 MiB\), 2 in flight \(60\.0 MiB\), "
        r"oldest queued \d+s ago, ETA 2[45]s at 3\.0 MiB/s",
        first_line,
    ), first_line
    assert "in flight: 2" in render(view).splitlines()


def test_without_an_upload_rate_the_eta_says_it_is_unknown(journal: Journal) -> None:
    enqueue(journal, "hashing.tar", 8 * MIB)
    enqueue(journal, "waiting.tar", 4 * MIB)
    assert journal.claim_next(time.time()) is not None  # hashing: no byte sent yet

    view = snapshot(journal)
    assert view["queue"]["eta_seconds"] is None
    assert view["queue"]["mib_per_second"] is None
    assert view["queue"]["remaining_bytes"] == 12 * MIB
    first_line = render(view).splitlines()[0]
    assert re.fullmatch(
        r"queue: 1 waiting \(4\.0 MiB\), 1 in flight \(8\.0 MiB\), "
        r"oldest queued \d+s ago, ETA - \(no upload rate yet\)",
        first_line,
    ), first_line


def test_an_empty_queue_has_nothing_left(journal: Journal) -> None:
    record_id = enqueue(journal, "done.tar", MIB)
    journal.finish(record_id, state="done", outcome="uploaded", destination="done/done.tar")

    view = snapshot(journal)
    assert view["queue"]["eta_seconds"] == 0
    assert render(view).splitlines()[0] == "queue: 0 waiting (0.0 MiB), 0 in flight (0.0 MiB)"


def test_json_keeps_the_old_keys_and_adds_the_split(tmp_path: Path, journal: Journal) -> None:
    enqueue(journal, "a.tar", 3 * MIB)
    enqueue(journal, "b.tar", MIB)
    start_upload(journal, seconds_ago=2, sent=MIB)

    queue = json.loads(show_status(tmp_path, as_json=True))["queue"]
    assert queue["files"] == 2
    assert queue["bytes"] == 4 * MIB
    assert queue["oldest_age_seconds"] is not None
    assert (queue["waiting_files"], queue["waiting_bytes"]) == (1, MIB)
    assert (queue["in_flight_files"], queue["in_flight_bytes"]) == (1, 3 * MIB)
    assert queue["eta_seconds"] == pytest.approx(6, rel=0.05)  # 3 MiB left at 0.5 MiB/s


def published(mode: str, limit: int, *, pid: int | None = None) -> PublishedLimit:
    cap = 6 if mode == "auto" else None
    return PublishedLimit(
        mode, limit, 16 if mode == "auto" else limit, cap, pid or os.getpid(), 0.0
    )


def test_status_shows_the_daemons_concurrency_limit(tmp_path: Path, journal: Journal) -> None:
    assert "concurrency limit: - (no running daemon published one)" in show_status(
        tmp_path, as_json=False
    )
    write_limit(tmp_path, published("auto", 5))
    assert (
        "concurrency limit: 5 layers (auto, max 16, memory budget holds 6)"
        in show_status(tmp_path, as_json=False).splitlines()
    )
    concurrency = json.loads(show_status(tmp_path, as_json=True))["concurrency"]
    assert (concurrency["mode"], concurrency["limit"], concurrency["max"]) == ("auto", 5, 16)
    write_limit(tmp_path, published("fixed", 3))
    assert "concurrency limit: 3 layers (fixed)" in show_status(tmp_path, as_json=False)


def test_a_limit_left_by_a_dead_daemon_is_not_shown(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    write_limit(tmp_path, published("auto", 5, pid=int(child.stdout)))
    assert read_limit(tmp_path) is None
    (tmp_path / "concurrency.json").write_text("{not json")
    assert read_limit(tmp_path) is None
