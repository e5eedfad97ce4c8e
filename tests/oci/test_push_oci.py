"""``uploaderd push`` as a real process against the real distribution registry."""

from __future__ import annotations

import base64
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.helpers import digest_of
from tests.oci.conftest import (
    PASSWORD,
    USER,
    OciRegistryProcess,
    needs_tools,
    skopeo,
    uploaderd_push,
    write_layout,
)

MIB = 1024 * 1024
pytestmark = [pytest.mark.e2e, needs_tools]


def target(server: OciRegistryProcess) -> tuple[str, ...]:
    return ("--registry", server.url, "--insecure-registry")


def test_layers_arrive_intact_in_parts(oci_registry: OciRegistryProcess, tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"x")
    big.write_bytes(os.urandom(11 * MIB + 3))

    run = uploaderd_push(
        *target(oci_registry),
        "--repository",
        "team/app",
        "--part-size",
        "5MiB",
        str(small),
        str(big),
    )

    assert run.returncode == 0, run.stderr
    assert [r["outcome"] for r in run.records] == ["uploaded", "uploaded"]
    for path in (small, big):
        status, body = oci_registry.get(f"/v2/team/app/blobs/{digest_of(path.read_bytes())}")
        assert status == 200
        assert body == path.read_bytes()
    # One PATCH per layer: its three 5 MiB parts go in order in one chunk (ocichunks).
    assert oci_registry.requests("PATCH") == 2


def test_image_from_oci_layout_round_trips_and_second_push_sends_nothing(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    layout = write_layout(tmp_path / "layout", [12 * MIB, 1000, 3 * MIB], tag="v1")

    run = uploaderd_push(
        *target(oci_registry), "--repository", "team/app", "--image", str(layout.root)
    )

    assert run.returncode == 0, run.stderr
    assert f"tagged team/app:v1 {layout.manifest_digest}" in run.stderr
    assert sorted(r["digest"] for r in run.records) == sorted(
        digest_of(b) for b in (layout.config, *layout.layers)
    )
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{oci_registry.host}/team/app:v1"
    )
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.encode() == layout.manifest
    copied = tmp_path / "copied"
    done = skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{oci_registry.host}/team/app:v1",
        f"dir:{copied}",
    )
    assert done.returncode == 0, done.stderr
    assert (copied / "manifest.json").read_bytes() == layout.manifest
    for blob in (layout.config, *layout.layers):
        assert (copied / digest_of(blob).removeprefix("sha256:")).read_bytes() == blob

    patches = oci_registry.requests("PATCH")
    again = uploaderd_push(
        *target(oci_registry), "--repository", "team/app", "--image", str(layout.root)
    )
    assert again.returncode == 0, again.stderr
    assert {r["outcome"] for r in again.records} == {"exists"}
    assert oci_registry.requests("PATCH") == patches


def test_docker_save_archive_becomes_a_docker_v2_image(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    layout = write_layout(tmp_path / "layout", [2 * MIB, 4096], tag="v1")
    archive = tmp_path / "image.tar"
    made = skopeo("copy", f"oci:{layout.root}:v1", f"docker-archive:{archive}:team/app:v2")
    assert made.returncode == 0, made.stderr

    run = uploaderd_push(*target(oci_registry), "--repository", "team/app", "--image", str(archive))

    assert run.returncode == 0, run.stderr
    assert "tagged team/app:v2" in run.stderr
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{oci_registry.host}/team/app:v2"
    )
    assert raw.returncode == 0, raw.stderr
    manifest = json.loads(raw.stdout)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert [layer["digest"] for layer in manifest["layers"]] == [
        digest_of(b) for b in layout.layers
    ]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar"
    }
    copied = tmp_path / "copied"
    done = skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{oci_registry.host}/team/app:v2",
        f"dir:{copied}",
    )
    assert done.returncode == 0, done.stderr
    for layer in layout.layers:
        assert (copied / digest_of(layer).removeprefix("sha256:")).read_bytes() == layer


def test_oci_layout_tarball_and_tag_flag(oci_registry: OciRegistryProcess, tmp_path: Path) -> None:
    layout = write_layout(tmp_path / "layout", [5000], tag="v1")
    archive = tmp_path / "layout.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout.root / name, arcname=name)

    run = uploaderd_push(
        *target(oci_registry), "--repository", "team/app", "--image", str(archive), "--tag", "v1"
    )

    assert run.returncode == 0, run.stderr
    status, _ = oci_registry.get(f"/v2/team/app/manifests/{layout.manifest_digest}")
    assert status == 200


def _retype_manifest(layout_root: Path, media_type: str) -> None:
    """Give the manifest another media type and re-point index.json at the new manifest."""
    index = json.loads((layout_root / "index.json").read_text())
    old = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((layout_root / "blobs" / "sha256" / old).read_bytes())
    manifest["mediaType"] = media_type
    raw = json.dumps(manifest).encode()
    (layout_root / "blobs" / "sha256" / digest_of(raw).removeprefix("sha256:")).write_bytes(raw)
    index["manifests"][0].update(digest=digest_of(raw), size=len(raw), mediaType=media_type)
    (layout_root / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    "fault", ["missing-blob", "corrupt-blob", "unknown-media-type", "truncated"]
)
def test_bad_image_is_refused_and_nothing_is_tagged(
    oci_registry: OciRegistryProcess, tmp_path: Path, fault: str
) -> None:
    layout = write_layout(tmp_path / "layout", [300_000, 2000], tag="v1")
    image = layout.root
    if fault == "missing-blob":
        layout.blob(layout.layers[1]).unlink()
        expected = "the image names this blob but it is not there"
    elif fault == "corrupt-blob":
        path = layout.blob(layout.layers[0])
        data = bytearray(path.read_bytes())
        data[1000] ^= 0xFF
        path.write_bytes(bytes(data))
        expected = "hash to sha256:"
    elif fault == "unknown-media-type":
        _retype_manifest(layout.root, "application/x-not-a-manifest")
        expected = "unknown manifest media type 'application/x-not-a-manifest'"
    else:
        archive = tmp_path / "image.tar"
        made = skopeo("copy", f"oci:{layout.root}:v1", f"docker-archive:{archive}:team/app:v1")
        assert made.returncode == 0, made.stderr
        data = archive.read_bytes()
        archive.write_bytes(data[: len(data) // 2])
        image = archive
        expected = "truncated"

    run = uploaderd_push(*target(oci_registry), "--repository", "team/app", "--image", str(image))

    assert run.returncode != 0
    assert expected in run.stderr, run.stderr
    assert oci_registry.get("/v2/team/app/manifests/v1")[0] == 404
    if fault == "corrupt-blob":
        # Its bytes are hashed as they are sent (read once), so they may be sent,
        # but the upload is never completed under the digest they do not have.
        corrupt = digest_of(layout.blob(layout.layers[0]).read_bytes())
        assert oci_registry.get(f"/v2/team/app/blobs/{digest_of(layout.layers[0])}")[0] == 404
        assert oci_registry.get(f"/v2/team/app/blobs/{corrupt}")[0] == 404
    else:
        assert oci_registry.requests("PATCH") == 0  # a missing or unreadable blob sends nothing


def test_wrong_credentials_fail_with_a_message(
    auth_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    layer = tmp_path / "layer"
    layer.write_bytes(os.urandom(4096))
    args = (*target(auth_registry), "--repository", "team/app", "--registry-username", USER)

    wrong = uploaderd_push(*args, str(layer), env={"UPLOADERD_REGISTRY_PASSWORD": "nope"})
    right = uploaderd_push(*args, str(layer), env={"UPLOADERD_REGISTRY_PASSWORD": PASSWORD})

    assert wrong.returncode != 0
    assert wrong.records[0]["error"]["code"] == "Unauthorized"
    assert "check the user name and password" in wrong.records[0]["error"]["message"]
    assert right.returncode == 0, right.stderr
    assert right.records[0]["outcome"] == "uploaded"


def test_credentials_from_docker_config(auth_registry: OciRegistryProcess, tmp_path: Path) -> None:
    home = tmp_path / "docker"
    home.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (home / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    layout = write_layout(tmp_path / "layout", [1000], tag="v3")

    run = uploaderd_push(
        *target(auth_registry), "--repository", "team/app", "--image", str(layout.root), home=home
    )

    assert run.returncode == 0, run.stderr
    inspected = skopeo(
        "inspect",
        "--raw",
        "--tls-verify=false",
        f"--creds={USER}:{PASSWORD}",
        f"docker://{auth_registry.host}/team/app:v3",
    )
    assert inspected.stdout.encode() == layout.manifest
