"""Sidecar digests (``<layer>.sha256``) with the real ``uploaderd run`` and local registry.

A layer with a sidecar is read once: the daemon's own read count
(``rchar`` in ``/proc/<pid>/io``, every byte its threads read) grows by the
layer's size, where a layer without one costs a hashing pass and a sending
pass.  Everything else is checked on the server side (``/_stats``,
GetDownloadUrlForLayer) and in the state dir.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RegistryProcess
from tests.e2e.daemon import DaemonProcess, start_daemon
from tests.helpers import make_layer, write_renamed

MIB = 1024 * 1024
pytestmark = pytest.mark.e2e


def bytes_read(daemon: DaemonProcess) -> int:
    """Bytes the daemon's process has read so far, through any read call, by any thread."""
    for line in Path(f"/proc/{daemon.process.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/<pid>/io")


def drop_with_sidecar(
    directory: Path, name: str, size: int, *, sidecar: str | None = None
) -> tuple[Path, str]:
    """A layer and its sidecar as a writer should drop them: sidecar first, both renamed.

    The layer is made outside the spool (beside it, on the same file system) and
    renamed in; the sidecar holds its digest unless ``sidecar`` says otherwise.
    """
    staging = _staging(directory)
    layer, digest = make_layer(staging, name, size)
    write_renamed(directory, name + ".sha256", (sidecar or digest + "\n").encode())
    return layer.rename(directory / name), digest


def _staging(directory: Path) -> Path:
    """A directory beside the spool (``<tmp>/spool`` -> ``<tmp>/staging``)."""
    spool = next(p for p in directory.parents if p.name == "spool")
    return spool.with_name("staging")


def error_details(daemon: DaemonProcess, relpath: str) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(
        (daemon.state_dir / "failed" / (relpath + ".error.json")).read_text()
    )
    return details


def journal_state(daemon: DaemonProcess, relpath: str) -> str | None:
    with sqlite3.connect(daemon.state_dir / "journal.sqlite", timeout=5) as db:
        row = db.execute("SELECT state FROM files WHERE relpath = ?", (relpath,)).fetchone()
    return str(row[0]) if row else None


def test_a_layer_with_its_sidecar_is_read_once_and_moves_with_it(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    size = 24 * MIB
    daemon = start_daemon(tmp_path, registry.url, "--part-size", "5MiB")
    try:
        spool = daemon.watch / "team/app"
        before = bytes_read(daemon)
        _, digest = drop_with_sidecar(spool, "layer.tar", size)
        daemon.wait_until(lambda: len(daemon.done_files()) == 2, 60, "layer and sidecar in done/")
        with_sidecar = bytes_read(daemon) - before

        # The same-sized layer without a sidecar: hashed, then read again to be sent.
        before = bytes_read(daemon)
        _, plain_digest = make_layer(spool, "plain.tar", size)
        daemon.wait_until(lambda: len(daemon.done_files()) == 3, 60, "plain.tar in done/")
        without = bytes_read(daemon) - before

        assert size <= with_sidecar < 1.25 * size, with_sidecar
        assert without >= 1.9 * size, without  # the measure sees a second pass
        done = daemon.state_dir / "done/team/app"
        assert sorted(p.name for p in done.iterdir()) == [
            "layer.tar",
            "layer.tar.sha256",
            "plain.tar",
        ]
        assert (done / "layer.tar.sha256").read_text() == digest + "\n"
        assert registry.fetch_layer("team/app", digest) == (done / "layer.tar").read_bytes()
        stats = registry.stats()
        assert stats["completed"][f"team/app@{digest}"] == 1
        assert stats["completed"][f"team/app@{plain_digest}"] == 1
        assert list(spool.iterdir()) == []
        uploaded = {e["file"]: e for e in daemon.log_events() if e["event"] == "layer uploaded"}
        assert uploaded["team/app/layer.tar"]["digest"] == digest
    finally:
        assert daemon.stop() == 0


def test_a_wrong_or_unusable_sidecar_fails_its_layer_with_the_reason(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    daemon = start_daemon(tmp_path, registry.url, "--part-size", "5MiB")
    try:
        spool = daemon.watch / "team/app"
        wrong = "sha256:" + "ab" * 32
        _, actual = drop_with_sidecar(spool, "wrong.tar", 6 * MIB + 1, sidecar=wrong + "\n")
        drop_with_sidecar(spool, "garbled.tar", 1000, sidecar="this is not a digest\n")
        # Named by its own digest, with a sidecar that says another.
        staged, named = make_layer(tmp_path / "staging", "named", 1000)
        renamed = f"sha256-{named.removeprefix('sha256:')}.tar"
        write_renamed(spool, renamed + ".sha256", (wrong + "\n").encode())
        staged.rename(spool / renamed)
        # A sidecar that is a link to a file outside the spool.
        outside = tmp_path / "outside.sha256"
        outside.write_text(named + "\n")
        (spool / "linked.tar.sha256").symlink_to(outside)
        make_layer(spool, "linked.tar", 1000)

        daemon.wait_until(lambda: len(daemon.failed_files()) == 8, 60, "4 layers + sidecars failed")

        failed = daemon.state_dir / "failed/team/app"
        mismatch = error_details(daemon, "team/app/wrong.tar")
        assert mismatch["code"] == "DigestMismatch"
        assert f"not {wrong} as its sidecar wrong.tar.sha256 says" in mismatch["message"]
        assert f"hash to {actual}, not {wrong}" in mismatch["message"]
        assert (failed / "wrong.tar.sha256").read_text() == wrong + "\n"

        garbled = error_details(daemon, "team/app/garbled.tar")
        assert garbled["code"] == "InvalidSidecar"
        assert garbled["message"].startswith(
            "its sidecar garbled.tar.sha256 holds 'this is not a digest', not a sha256 digest"
        )
        conflict = error_details(daemon, f"team/app/{renamed}")
        assert conflict["code"] == "InvalidSidecar"
        assert f"holds {wrong}, but the layer's name claims {named}" in conflict["message"]
        linked = error_details(daemon, "team/app/linked.tar")
        assert linked["code"] == "InvalidSidecar"
        assert "is a symlink, which uploaderd never follows" in linked["message"]
        assert (failed / "linked.tar.sha256").is_symlink()  # moved as a link
        assert outside.read_text() == named + "\n"  # its target untouched, still outside

        completed = registry.stats()["completed"]
        assert not any(wrong in key or actual in key for key in completed)  # nothing completed
        assert not any(named in key for key in completed)
        assert list(spool.iterdir()) == []
        failures = [e for e in daemon.log_events() if e["event"] == "layer failed"]
        assert {e["code"] for e in failures} == {"DigestMismatch", "InvalidSidecar"}
        assert daemon.metric_sum("uploaderd_layers_total", outcome="failed") == 4
    finally:
        assert daemon.stop() == 0


def test_a_sidecar_alone_stays_and_a_late_one_is_not_used_but_moves_along(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    daemon = start_daemon(tmp_path, registry.url, "--part-size", "5MiB")
    try:
        spool = daemon.watch / "team/app"
        orphan = "sha256:" + "cd" * 32 + "\n"
        write_renamed(spool, "orphan.tar.sha256", orphan.encode())
        registry.set_faults("latency=0.3")  # slow parts: time to drop a sidecar mid-push
        _, digest = make_layer(spool, "late.tar", 16 * MIB)
        daemon.wait_until(
            lambda: journal_state(daemon, "team/app/late.tar") == "uploading", 30, "late.tar sent"
        )
        wrong = "sha256:" + "ef" * 32 + "\n"  # would fail the layer, had it been read
        write_renamed(spool, "late.tar.sha256", wrong.encode())
        daemon.wait_until(lambda: len(daemon.done_files()) == 2, 60, "late.tar and its sidecar")

        done = daemon.state_dir / "done/team/app"
        assert (done / "late.tar.sha256").read_text() == wrong
        assert registry.fetch_layer("team/app", digest) == (done / "late.tar").read_bytes()
        assert (spool / "orphan.tar.sha256").read_text() == orphan  # left where it is
        assert [p.name for p in spool.iterdir()] == ["orphan.tar.sha256"]
        assert journal_state(daemon, "team/app/orphan.tar.sha256") is None  # never queued
        queued = [e["file"] for e in daemon.log_events() if e["event"] == "file queued"]
        assert queued == ["team/app/late.tar"]
        assert daemon.failed_files() == []
    finally:
        assert daemon.stop() == 0
