"""Whole images dropped into the daemon's spool: a layout directory or an .image.tar."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import RegistryProcess
from tests.e2e.daemon import start_daemon
from tests.helpers import digest_of
from tests.imagefixtures import write_buildx_layout
from tests.oci.conftest import OciRegistryProcess, skopeo, write_layout
from tests.oci.test_image_ecr import batch_get_image

MIB = 1024 * 1024
pytestmark = pytest.mark.e2e


def tar_directory(source: Path, archive: Path) -> None:
    with tarfile.open(archive, "w") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(source)), recursive=False)


def test_layout_directory_and_image_tarball_are_pushed_whole_and_tagged(
    ecr_registry: RegistryProcess, tmp_path: Path
) -> None:
    daemon = start_daemon(tmp_path, ecr_registry.url, "--part-size", "5MiB")
    try:
        repository = daemon.watch / "team/app"
        repository.mkdir(parents=True)
        directory_image = write_layout(repository / ".layout-v1", [6 * MIB, 3000], tag="v1")
        (repository / ".layout-v1").rename(repository / "layout-v1")

        archived = write_layout(tmp_path / "layout-v2", [2 * MIB], tag="v2")
        tar_directory(archived.root, repository / ".v2.tmp")
        (repository / ".v2.tmp").rename(repository / "app-v2.image.tar")

        daemon.wait_until(
            lambda: (
                (daemon.state_dir / "done/team/app/layout-v1/oci-layout").is_file()
                and (daemon.state_dir / "done/team/app/app-v2.image.tar").is_file()
            ),
            90,
            "both images in done/",
        )
        for tag, layout in (("v1", directory_image), ("v2", archived)):
            answer = batch_get_image(ecr_registry, "team/app", tag)
            assert answer["failures"] == [], tag
            assert answer["images"][0]["imageManifest"].encode() == layout.manifest
            manifest = json.loads(layout.manifest)
            for descriptor in (manifest["config"], *manifest["layers"]):
                fetched = ecr_registry.fetch_layer("team/app", descriptor["digest"])
                assert digest_of(fetched) == descriptor["digest"]
        # Blobs of an image are never taken as layers of repositories of their own.
        assert not any("blobs" in key for key in ecr_registry.stats()["completed"])
        pushed = [e for e in daemon.log_events() if e["event"] == "image pushed"]
        assert len(pushed) == 2
        assert daemon.failed_files() == []
    finally:
        assert daemon.stop() == 0


def test_image_with_a_missing_blob_fails_whole_and_nothing_is_tagged(
    ecr_registry: RegistryProcess, tmp_path: Path
) -> None:
    # Even renamed in, a directory lacking a blob is waited for (its writer may
    # add it) until unchanged for --image-settle-timeout.
    daemon = start_daemon(tmp_path, ecr_registry.url, "--image-settle-timeout", "1")
    try:
        repository = daemon.watch / "team/app"
        repository.mkdir(parents=True)
        layout = write_layout(repository / ".broken", [4000, 5000], tag="broken")
        layout.blob(layout.layers[1]).unlink()
        (repository / ".broken").rename(repository / "broken")

        daemon.wait_until(
            (daemon.state_dir / "failed/team/app/broken.error.json").is_file,
            60,
            "the broken image in failed/",
        )
        details = json.loads((daemon.state_dir / "failed/team/app/broken.error.json").read_text())
        assert details["code"] == "ImageIncomplete"
        assert layout.blob(layout.layers[1]).name in details["message"]
        assert (daemon.state_dir / "failed/team/app/broken/oci-layout").is_file()
        answer = batch_get_image(ecr_registry, "team/app", "broken")
        assert answer["images"] == []
        assert ecr_registry.stats()["requests"].get("PutImage", 0) == 0
    finally:
        assert daemon.stop() == 0


def test_daemon_pushes_to_an_oci_registry_named_in_the_config_section(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[registry]\nurl = "{oci_registry.url}"\ninsecure = true\n')
    daemon = start_daemon(tmp_path, "http://127.0.0.1:9", "--config", str(config))
    try:
        repository = daemon.watch / "team/app"
        repository.mkdir(parents=True)
        layout = write_layout(repository / ".img", [3 * MIB], tag="v1")
        (repository / ".img").rename(repository / "img")
        daemon.wait_until(
            (daemon.state_dir / "done/team/app/img/oci-layout").is_file, 60, "image in done/"
        )
        inspected = skopeo(
            "inspect", "--raw", "--tls-verify=false", f"docker://{oci_registry.host}/team/app:v1"
        )
        assert inspected.returncode == 0, inspected.stderr
        assert inspected.stdout.encode() == layout.manifest
    finally:
        assert daemon.stop() == 0


def test_daemon_pushes_a_renamed_multi_platform_layout_with_its_signature(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[registry]\nurl = "{oci_registry.url}"\ninsecure = true\n')
    daemon = start_daemon(tmp_path, "http://127.0.0.1:9", "--config", str(config))
    try:
        repository = daemon.watch / "team/app"
        repository.mkdir(parents=True)
        layout = write_buildx_layout(repository / ".multi", tag="v1")
        (repository / ".multi").rename(repository / "multi")
        daemon.wait_until(
            (daemon.state_dir / "done/team/app/multi/index.json").is_file, 60, "image in done/"
        )
        inspected = skopeo(
            "inspect", "--raw", "--tls-verify=false", f"docker://{oci_registry.host}/team/app:v1"
        )
        assert inspected.returncode == 0, inspected.stderr
        assert inspected.stdout.encode() == layout.index
        signature = digest_of(layout.signature)
        assert oci_registry.get(f"/v2/team/app/manifests/{signature}") == (200, layout.signature)
        pushed = [e for e in daemon.log_events() if e["event"] == "image pushed"]
        assert [e["image"] for e in pushed] == [f"team/app:v1@{layout.index_digest}"]
    finally:
        assert daemon.stop() == 0
