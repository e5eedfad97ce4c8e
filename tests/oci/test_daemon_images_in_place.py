"""Image layouts written into the spool in place, file by file, as build tools and cp do.

The daemon must wait for the whole tree, push it once as an image, and never
take one of its blobs for a layer of a repository of its own.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.daemon import DaemonProcess, start_daemon
from tests.imagefixtures import write_buildx_layout
from tests.oci.conftest import Layout, OciRegistryProcess, needs_tools, write_layout

MIB = 1024 * 1024
PAUSE = 0.8
"""Longer than the tests' settle time (0.3 s): each step settles before the next."""

pytestmark = [pytest.mark.e2e, needs_tools]


def daemon_for(registry: OciRegistryProcess, tmp_path: Path, *options: str) -> DaemonProcess:
    config = tmp_path / "config.toml"
    config.write_text(f'[registry]\nurl = "{registry.url}"\ninsecure = true\n')
    return start_daemon(tmp_path, "http://127.0.0.1:9", "--config", str(config), *options)


def copy_in_place(source: Path, destination: Path, order: list[str]) -> None:
    """Copy the layout's files one at a time, in ``order``, pausing after each."""
    destination.mkdir(parents=True)
    for relpath in order:
        target = destination / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relpath, target)
        time.sleep(PAUSE)


def blob_paths(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "blobs").rglob("*/*"))


def assert_pushed_once_and_only_there(
    daemon: DaemonProcess, registry: OciRegistryProcess, layout: Layout, image: str
) -> None:
    """The image at ``<spool>/<repository>/<name>`` went to ``<repository>``, and only there."""
    repository = image.rpartition("/")[0]
    daemon.wait_until((daemon.state_dir / f"done/{image}/index.json").is_file, 60, "image in done/")
    pushed = [e for e in daemon.log_events() if e["event"] == "image pushed"]
    assert [(e["file"], e["repository"]) for e in pushed] == [(image, repository)]
    assert registry.log.read_text().count(f'"PUT /v2/{repository}/manifests/v1 ') == 1
    assert registry.get(f"/v2/{repository}/manifests/v1") == (200, layout.manifest)
    manifest = json.loads(layout.manifest)
    for descriptor in (manifest["config"], *manifest["layers"]):
        status, _ = registry.get(f"/v2/{repository}/blobs/{descriptor['digest']}")
        assert status == 200, descriptor["digest"]
    status, catalog = registry.get("/v2/_catalog")
    assert (status, json.loads(catalog)["repositories"]) == (200, [repository])
    uploads = [line for line in registry.log.read_text().splitlines() if "/blobs/uploads" in line]
    assert uploads
    assert all(f"/v2/{repository}/blobs/uploads" in line for line in uploads)
    queued = [e for e in daemon.log_events() if e["event"] == "file queued"]
    assert {(e["kind"], e["file"]) for e in queued} == {("image", image)}
    assert daemon.failed_files() == []


@pytest.mark.parametrize("blobs_first", [False, True], ids=["layout files first", "blobs first"])
def test_a_layout_copied_in_place_file_by_file_is_pushed_once_it_is_whole(
    oci_registry: OciRegistryProcess, tmp_path: Path, blobs_first: bool
) -> None:
    layout = write_layout(tmp_path / "source", [2 * MIB, 3000], tag="v1")
    markers = ["oci-layout", "index.json"]
    blobs = blob_paths(layout.root)
    order = [*blobs, *markers] if blobs_first else [*markers, *blobs]
    daemon = daemon_for(oci_registry, tmp_path)
    try:
        copy_in_place(layout.root, daemon.watch / "team/img2", order)
        assert_pushed_once_and_only_there(daemon, oci_registry, layout, "team/img2")
        with sqlite3.connect(daemon.state_dir / "journal.sqlite") as journal:
            sizes = journal.execute("SELECT size FROM files WHERE relpath = 'team/img2'").fetchall()
        total = sum(p.stat().st_size for p in layout.root.rglob("*") if p.is_file())
        assert sizes == [(total,)]  # an image counts the bytes of all its files
    finally:
        assert daemon.stop() == 0


def test_a_layout_that_never_completes_fails_after_the_image_settle_timeout(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    layout = write_layout(tmp_path / "source", [4000, 5000], tag="v1")
    missing = layout.blob(layout.layers[1]).name
    order = [p for p in ["oci-layout", "index.json", *blob_paths(layout.root)] if missing not in p]
    daemon = daemon_for(oci_registry, tmp_path, "--image-settle-timeout", "2")
    try:
        destination = daemon.watch / "team/img3"
        destination.mkdir(parents=True)
        for relpath in order:
            (destination / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(layout.root / relpath, destination / relpath)
        written = time.monotonic()
        error_file = daemon.state_dir / "failed/team/img3.error.json"
        time.sleep(1.5)
        assert not error_file.exists()
        assert (destination / "index.json").is_file()  # still waited for, in the spool
        daemon.wait_until(error_file.is_file, 30, "the incomplete image in failed/")
        assert time.monotonic() - written >= 2
        details = json.loads(error_file.read_text())
        assert details["code"] == "ImageIncomplete"
        assert missing in details["message"]
        assert "image_settle_timeout" in details["message"]
        assert (daemon.state_dir / "failed/team/img3/oci-layout").is_file()
        assert not destination.exists()
        assert oci_registry.get("/v2/team/manifests/v1")[0] == 404
        assert '"PUT /v2/' not in oci_registry.log.read_text()
        assert not (daemon.state_dir / "done").exists() or daemon.done_files() == []
    finally:
        assert daemon.stop() == 0


def test_a_buildx_layout_copied_in_place_is_pushed_once_whole_and_never_as_layers(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    layout = write_buildx_layout(tmp_path / "source", tag="v1")
    # index.json first, as cp -r of a layout does: the daemon must wait for every blob.
    order = ["oci-layout", "index.json", *blob_paths(layout.root)]
    daemon = daemon_for(oci_registry, tmp_path)
    try:
        copy_in_place(layout.root, daemon.watch / "team/multi", order)
        daemon.wait_until(
            (daemon.state_dir / "done/team/multi/index.json").is_file, 90, "image in done/"
        )
        assert oci_registry.get("/v2/team/manifests/v1") == (200, layout.index)
        pushed = [e for e in daemon.log_events() if e["event"] == "image pushed"]
        assert [e["file"] for e in pushed] == ["team/multi"]
        status, catalog = oci_registry.get("/v2/_catalog")
        assert (status, json.loads(catalog)["repositories"]) == (200, ["team"])
        queued = [e for e in daemon.log_events() if e["event"] == "file queued"]
        assert {(e["kind"], e["file"]) for e in queued} == {("image", "team/multi")}
        assert daemon.failed_files() == []
    finally:
        assert daemon.stop() == 0
