"""Whole images dropped into the daemon's spool: a layout directory or an .image.tar."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import RegistryProcess
from tests.e2e.daemon import start_daemon
from tests.helpers import digest_of
from tests.imagefixtures import OCI_INDEX, BuildxLayout, as_json, descriptor, write_buildx_layout
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


def test_daemon_pushes_single_and_multi_platform_layouts_to_the_configured_oci_registry(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[registry]\nurl = "{oci_registry.url}"\ninsecure = true\n')
    daemon = start_daemon(tmp_path, "http://127.0.0.1:9", "--config", str(config))
    try:
        repository = daemon.watch / "team/app"
        repository.mkdir(parents=True)
        single = write_layout(repository / ".img", [3 * MIB], tag="v1")
        multi = write_buildx_layout(repository / ".multi", tag="v2")
        for name in ("img", "multi"):
            (repository / f".{name}").rename(repository / name)
        daemon.wait_until(
            lambda: all(
                (daemon.state_dir / f"done/team/app/{name}/index.json").is_file()
                for name in ("img", "multi")
            ),
            60,
            "both images in done/",
        )
        for tag, expected in (("v1", single.manifest), ("v2", multi.index)):
            inspected = skopeo(
                "inspect",
                "--raw",
                "--tls-verify=false",
                f"docker://{oci_registry.host}/team/app:{tag}",
            )
            assert inspected.returncode == 0, inspected.stderr
            assert inspected.stdout.encode() == expected
        signature = digest_of(multi.signature)
        assert oci_registry.get(f"/v2/team/app/manifests/{signature}") == (200, multi.signature)
        pushed = {
            e["file"]: e["image"] for e in daemon.log_events() if e["event"] == "image pushed"
        }
        assert pushed["team/app/multi"] == f"team/app:v2@{multi.index_digest}"
    finally:
        assert daemon.stop() == 0


def _bad_tag(layout: BuildxLayout) -> None:
    index = json.loads((layout.root / "index.json").read_text())
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "not a tag!"
    (layout.root / "index.json").write_text(json.dumps(index))


def _self_containing(layout: BuildxLayout) -> None:
    index = json.loads(layout.index)
    index["manifests"].append(descriptor(OCI_INDEX, layout.index))
    written = as_json(index)
    layout.path_of(layout.index).write_bytes(written)
    top = json.loads((layout.root / "index.json").read_text())
    top["manifests"][0]["size"] = len(written)
    (layout.root / "index.json").write_text(json.dumps(top))


@pytest.mark.parametrize(
    ("spoil", "code"), [(_bad_tag, "InvalidTag"), (_self_containing, "ManifestCycle")]
)
def test_a_bad_multi_platform_layout_goes_to_failed_with_its_reason_and_nothing_tagged(
    ecr_registry: RegistryProcess,
    tmp_path: Path,
    spoil: Callable[[BuildxLayout], None],
    code: str,
) -> None:
    daemon = start_daemon(tmp_path, ecr_registry.url)
    try:
        repository = daemon.watch / "team/app"
        repository.mkdir(parents=True)
        spoil(write_buildx_layout(repository / ".bad", tag="v1"))
        (repository / ".bad").rename(repository / "bad")

        reason = daemon.state_dir / "failed/team/app/bad.error.json"
        daemon.wait_until(reason.is_file, 60, "the bad image in failed/")
        details = json.loads(reason.read_text())
        assert details["code"] == code
        assert "index.json" in details["message"] or "contains itself" in details["message"]
        assert (daemon.state_dir / "failed/team/app/bad/index.json").is_file()
        assert ecr_registry.stats()["requests"].get("PutImage", 0) == 0
    finally:
        assert daemon.stop() == 0
