"""``uploaderd retry-failed`` brings a layer's sidecar back with it, first, under its name."""

from __future__ import annotations

from pathlib import Path

from uploaderd.cli.retry_failed import retry_failed
from uploaderd.daemon.journal import JOURNAL_NAME, Journal

DIGEST = "sha256:" + "ab" * 32


def failed_layer(state_dir: Path, name: str, *, sidecar: bool) -> Path:
    directory = state_dir / "failed/team/app"
    directory.mkdir(parents=True, exist_ok=True)
    layer = directory / name
    layer.write_bytes(b"layer bytes")
    (directory / f"{name}.error.json").write_text('{"code": "DigestMismatch"}')
    if sidecar:
        (directory / f"{name}.sha256").write_text(DIGEST + "\n")
    return layer


def test_a_layer_and_its_sidecar_go_back_together(tmp_path: Path) -> None:
    state_dir, watch = tmp_path / "state", tmp_path / "spool"
    state_dir.mkdir()
    failed_layer(state_dir, "with.tar", sidecar=True)
    failed_layer(state_dir, "plain.tar", sidecar=False)
    journal = Journal.open(state_dir / JOURNAL_NAME)
    try:
        report = retry_failed(journal, watch, state_dir)
    finally:
        journal.close()
    # One line a layer: the sidecar is not a failed file of its own.
    assert sorted(relpath for relpath, _ in report) == ["team/app/plain.tar", "team/app/with.tar"]
    back = watch / "team/app"
    assert sorted(p.name for p in back.iterdir()) == ["plain.tar", "with.tar", "with.tar.sha256"]
    assert (back / "with.tar.sha256").read_text() == DIGEST + "\n"
    assert list((state_dir / "failed").rglob("*.*")) == []


def test_a_sidecar_already_in_the_spool_keeps_the_layer_in_failed(tmp_path: Path) -> None:
    state_dir, watch = tmp_path / "state", tmp_path / "spool"
    state_dir.mkdir()
    layer = failed_layer(state_dir, "plain.tar", sidecar=False)
    stray = watch / "team/app/plain.tar.sha256"
    stray.parent.mkdir(parents=True)
    stray.write_text("sha256:" + "cd" * 32)
    journal = Journal.open(state_dir / JOURNAL_NAME)
    try:
        report = retry_failed(journal, watch, state_dir)
    finally:
        journal.close()
    # Moving the layer back would let another file's digest claim it.
    assert report == [("team/app/plain.tar", f"skipped: {stray} already exists in the spool")]
    assert layer.exists()
    assert not (watch / "team/app/plain.tar").exists()
