"""Sidecars in the spool: never a layer, and always where their layer goes.

``classify`` on real files, and the ``Archiver`` moving (or deleting) a
layer and its sidecar together, renamed alike, never overwriting.
"""

from __future__ import annotations

import json
from pathlib import Path

from uploaderd.daemon.finished import Archiver
from uploaderd.daemon.spool import SpoolFile, classify, is_ignored

DIGEST = "sha256:" + "ab" * 32


def spool_with_layer(tmp_path: Path, name: str = "layer.tar") -> tuple[Path, Path]:
    watch = tmp_path / "spool"
    layer = watch / "team/app" / name
    layer.parent.mkdir(parents=True)
    layer.write_bytes(b"layer bytes")
    sidecar = layer.with_name(name + ".sha256")
    sidecar.write_text(DIGEST + "\n")
    return watch, layer


def archiver(tmp_path: Path, watch: Path, *, delete_uploaded: bool = False) -> Archiver:
    return Archiver(watch, tmp_path / "state", delete_uploaded=delete_uploaded)


def test_a_sidecar_is_never_a_layer(tmp_path: Path) -> None:
    watch, _ = spool_with_layer(tmp_path)
    (watch / "team/app/orphan.tar.sha256").write_text(DIGEST)
    assert is_ignored("team/app/layer.tar.sha256")
    assert is_ignored("team/app/orphan.tar.sha256")
    assert classify(watch, "team/app/layer.tar.sha256") is None
    assert classify(watch, "team/app/orphan.tar.sha256") is None
    assert isinstance(classify(watch, "team/app/layer.tar"), SpoolFile)
    assert not is_ignored("team/app.sha256/layer.tar")  # a directory so named holds layers


def test_a_sidecar_moves_to_done_with_its_layer(tmp_path: Path) -> None:
    watch, _ = spool_with_layer(tmp_path)
    destination = archiver(tmp_path, watch).file_done("team/app/layer.tar")
    done = tmp_path / "state/done/team/app"
    assert destination == done / "layer.tar"
    assert (done / "layer.tar.sha256").read_text() == DIGEST + "\n"
    assert list((watch / "team/app").iterdir()) == []


def test_a_sidecar_moves_to_failed_beside_the_reason(tmp_path: Path) -> None:
    watch, _ = spool_with_layer(tmp_path)
    archiver(tmp_path, watch).file_failed("team/app/layer.tar", {"code": "DigestMismatch"})
    failed = tmp_path / "state/failed/team/app"
    assert sorted(p.name for p in failed.iterdir()) == [
        "layer.tar",
        "layer.tar.error.json",
        "layer.tar.sha256",
    ]
    assert json.loads((failed / "layer.tar.error.json").read_text())["code"] == "DigestMismatch"
    assert list((watch / "team/app").iterdir()) == []


def test_a_taken_name_renames_the_sidecar_alike_and_overwrites_nothing(tmp_path: Path) -> None:
    watch, _ = spool_with_layer(tmp_path)
    done = tmp_path / "state/done/team/app"
    done.mkdir(parents=True)
    (done / "layer.tar.sha256").write_text("an earlier layer's sidecar")  # its layer moved on
    destination = archiver(tmp_path, watch).file_done("team/app/layer.tar")
    assert destination == done / "layer.tar.1"
    assert (done / "layer.tar.1.sha256").read_text() == DIGEST + "\n"
    assert (done / "layer.tar.sha256").read_text() == "an earlier layer's sidecar"
    assert not (done / "layer.tar").exists()


def test_delete_uploaded_deletes_the_sidecar_too(tmp_path: Path) -> None:
    watch, _ = spool_with_layer(tmp_path)
    assert archiver(tmp_path, watch, delete_uploaded=True).file_done("team/app/layer.tar") is None
    assert list((watch / "team/app").iterdir()) == []  # no stale claim for the next layer.tar


def test_a_symlinked_sidecar_moves_as_a_link_its_target_untouched(tmp_path: Path) -> None:
    watch, layer = spool_with_layer(tmp_path)
    target = tmp_path / "elsewhere.sha256"
    target.write_text(DIGEST)
    layer.with_name("layer.tar.sha256").unlink()
    layer.with_name("layer.tar.sha256").symlink_to(target)
    archiver(tmp_path, watch).file_failed("team/app/layer.tar", {"code": "InvalidSidecar"})
    moved = tmp_path / "state/failed/team/app/layer.tar.sha256"
    assert moved.is_symlink()
    assert target.read_text() == DIGEST


def test_a_directory_named_like_a_sidecar_stays(tmp_path: Path) -> None:
    watch, layer = spool_with_layer(tmp_path)
    layer.with_name("layer.tar.sha256").unlink()
    layer.with_name("layer.tar.sha256").mkdir()
    archiver(tmp_path, watch).file_done("team/app/layer.tar")
    assert (watch / "team/app/layer.tar.sha256").is_dir()
    assert not (tmp_path / "state/done/team/app/layer.tar.sha256").exists()


def test_a_file_without_a_sidecar_moves_alone(tmp_path: Path) -> None:
    watch, layer = spool_with_layer(tmp_path)
    layer.with_name("layer.tar.sha256").unlink()
    archiver(tmp_path, watch).file_done("team/app/layer.tar")
    assert [p.name for p in (tmp_path / "state/done/team/app").iterdir()] == ["layer.tar"]
