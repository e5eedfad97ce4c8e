"""The settle rule, with a fake clock and real files: taken once closed and unchanged."""

from __future__ import annotations

import os
from pathlib import Path

from uploaderd.daemon.watcher import Seen, Settler


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settler_over(watch: Path, settle_seconds: float = 1.0) -> tuple[Settler, FakeClock, list[str]]:
    clock, ready = FakeClock(), []
    return Settler(watch, settle_seconds, ready.append, clock=clock), clock, ready


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_closed_file_is_taken_once_unchanged_for_the_settle_time(tmp_path: Path) -> None:
    settler, clock, ready = settler_over(tmp_path)
    write(tmp_path / "team/app/a.tar", b"layer")
    settler.observe("team/app/a.tar", Seen.CLOSED)
    clock.now += 0.9
    settler.check_due()
    assert ready == []
    clock.now += 0.2
    settler.check_due()
    assert ready == ["team/app/a.tar"]
    clock.now += 5
    settler.check_due()
    assert ready == ["team/app/a.tar"]  # handed on once


def test_a_file_that_changes_while_settling_waits_again(tmp_path: Path) -> None:
    settler, clock, ready = settler_over(tmp_path)
    layer = tmp_path / "team/app/a.tar"
    write(layer, b"part one")
    settler.observe("team/app/a.tar", Seen.CLOSED)
    clock.now += 1.1
    write(layer, b"part one, part two")  # appended in place: size differs
    settler.check_due()
    assert ready == []
    clock.now += 0.9
    settler.check_due()
    assert ready == []  # the clock restarted at the change
    clock.now += 0.2
    settler.check_due()
    assert ready == ["team/app/a.tar"]


def test_a_renamed_file_is_taken_at_once_and_a_writing_one_never(tmp_path: Path) -> None:
    settler, clock, ready = settler_over(tmp_path)
    write(tmp_path / "team/app/renamed.tar", b"x")
    write(tmp_path / "team/app/open.tar", b"y")
    settler.observe("team/app/renamed.tar", Seen.RENAMED)
    settler.observe("team/app/open.tar", Seen.WRITING)
    clock.now += 3600
    settler.check_due()
    assert ready == ["team/app/renamed.tar"]  # open for writing: waits for its close


def test_a_vanished_candidate_is_dropped_and_ignored_names_never_enter(tmp_path: Path) -> None:
    settler, clock, ready = settler_over(tmp_path)
    layer = tmp_path / "team/app/a.tar"
    write(layer, b"x")
    write(tmp_path / "team/app/b.tar.part", b"x")
    settler.observe("team/app/a.tar", Seen.CLOSED)
    settler.observe("team/app/b.tar.part", Seen.CLOSED)
    layer.unlink()
    clock.now += 2
    settler.check_due()
    assert ready == []


def test_a_scan_takes_a_long_settled_file_at_once(tmp_path: Path) -> None:
    settler, _, ready = settler_over(tmp_path, settle_seconds=30)
    layer = tmp_path / "team/app/old.tar"
    write(layer, b"x")
    an_hour_ago = layer.stat().st_mtime_ns - 3600 * 10**9
    os.utime(layer, ns=(an_hour_ago, an_hour_ago))
    settler.observe("team/app/old.tar", Seen.FOUND)
    assert ready == ["team/app/old.tar"]  # its mtime says it settled long ago
