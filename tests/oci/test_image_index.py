"""Multi-platform images, attestations and signatures, pushed to the real CNCF registry.

The layout is shaped like buildx's (``tests.imagefixtures``), and what
arrived is read back by skopeo, a client no one here wrote.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from tests.helpers import digest_of, layer_tar
from tests.imagefixtures import BuildxLayout, as_json, descriptor, write_buildx_layout
from tests.oci.conftest import (
    OciRegistryProcess,
    needs_tools,
    skopeo,
    uploaderd_push,
)

pytestmark = [pytest.mark.e2e, needs_tools]
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def target(registry: OciRegistryProcess) -> list[str]:
    return ["--registry", registry.url, "--insecure-registry", "--repository", "team/app"]


def manifest_at(registry: OciRegistryProcess, reference: str) -> tuple[int, bytes]:
    return registry.get(f"/v2/team/app/manifests/{reference}")


def blob_uploads(registry: OciRegistryProcess, digest: str) -> int:
    """Completed uploads of ``digest``: the final PUT names it (URL-encoded or not)."""
    encoded = digest.replace(":", "%3A")
    lines = registry.log.read_text().splitlines()
    return sum(1 for line in lines if '"PUT /v2/' in line and (encoded in line or digest in line))


def test_buildx_layout_round_trips_byte_exact_with_attestations_and_signature(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")

    run = uploaderd_push(*target(oci_registry), "--image", str(layout.root))

    assert run.returncode == 0, run.stderr
    assert f"tagged team/app:v1 {layout.index_digest}" in run.stderr
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{oci_registry.host}/team/app:v1"
    )
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.encode() == layout.index  # byte for byte, so the digest is the layout's
    copied = tmp_path / "copied"
    done = skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        f"docker://{oci_registry.host}/team/app:v1",
        f"oci:{copied}:v1",
    )
    assert done.returncode == 0, done.stderr
    for manifest in (*layout.platforms.values(), *layout.attestations.values()):
        document = json.loads(manifest)
        for item in (manifest, *_blobs_of(layout, document)):
            path = copied / "blobs/sha256" / digest_of(item).removeprefix("sha256:")
            assert path.read_bytes() == item
    assert blob_uploads(oci_registry, digest_of(layout.base_layer)) == 1  # shared, sent once
    _assert_signature_listed(oci_registry, layout)

    patches = oci_registry.requests("PATCH")
    again = uploaderd_push(*target(oci_registry), "--image", str(layout.root))
    assert again.returncode == 0, again.stderr
    assert oci_registry.requests("PATCH") == patches  # a second push sends no blob bytes
    assert manifest_at(oci_registry, "v1") == (200, layout.index)


def _blobs_of(layout: BuildxLayout, document: dict[str, object]) -> list[bytes]:
    config = document["config"]
    layers = document["layers"]
    assert isinstance(config, dict)
    assert isinstance(layers, list)
    return [layout.blobs[d["digest"]] for d in (config, *layers)]


def _assert_signature_listed(registry: OciRegistryProcess, layout: BuildxLayout) -> None:
    """distribution 2.8 has no referrers API: the signature is under the fallback tag."""
    amd64 = digest_of(layout.platforms["amd64"])
    assert manifest_at(registry, digest_of(layout.signature)) == (200, layout.signature)
    status, body = manifest_at(registry, f"sha256-{amd64.removeprefix('sha256:')}")
    assert status == 200
    listed = json.loads(body)["manifests"]
    assert [(d["digest"], d["artifactType"]) for d in listed] == [
        (digest_of(layout.signature), "application/vnd.dev.cosign.artifact.sig.v1+json")
    ]


def test_one_platform_pushes_just_its_manifest(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")

    run = uploaderd_push(
        *target(oci_registry), "--image", str(layout.root), "--platform", "linux/arm64"
    )

    assert run.returncode == 0, run.stderr
    arm64 = layout.platforms["arm64"]
    assert manifest_at(oci_registry, "v1") == (200, arm64)
    amd64_only = json.loads(layout.platforms["amd64"])["layers"][1]["digest"]
    assert oci_registry.get(f"/v2/team/app/blobs/{amd64_only}")[0] == 404
    assert manifest_at(oci_registry, layout.index_digest)[0] == 404


def test_two_platforms_make_a_new_index_of_them_and_their_attestations(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")
    platforms = ["--platform", "linux/amd64", "--platform", "linux/arm64/v8"]

    run = uploaderd_push(*target(oci_registry), "--image", str(layout.root), *platforms)

    assert run.returncode == 0, run.stderr
    status, body = manifest_at(oci_registry, "v1")
    assert status == 200
    listed = [entry["digest"] for entry in json.loads(body)["manifests"]]
    assert listed == [
        digest_of(m) for m in (*layout.platforms.values(), *layout.attestations.values())
    ]
    assert f"tagged team/app:v1 {digest_of(body)}" in run.stderr


def test_repeated_tag_flags_add_tags(oci_registry: OciRegistryProcess, tmp_path: Path) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")

    run = uploaderd_push(
        *target(oci_registry), "--image", str(layout.root), "--tag", "main", "--tag", "latest"
    )

    assert run.returncode == 0, run.stderr
    for tag in ("v1", "main", "latest"):
        assert manifest_at(oci_registry, tag) == (200, layout.index), tag


def test_docker_save_of_two_images_ends_with_all_three_tags(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    archive, configs = write_docker_save(
        tmp_path, {"one": ["app:1", "app:stable"], "two": ["app:2"]}
    )

    run = uploaderd_push(*target(oci_registry), "--image", str(archive))

    assert run.returncode == 0, run.stderr
    for tag, image in (("1", "one"), ("stable", "one"), ("2", "two")):
        status, body = manifest_at(oci_registry, tag)
        assert status == 200, tag
        assert json.loads(body)["config"]["digest"] == digest_of(configs[image]), tag


def write_docker_save(
    tmp_path: Path, images: dict[str, list[str]]
) -> tuple[Path, dict[str, bytes]]:
    """A ``docker save`` archive of several images, sharing a base layer, each with RepoTags."""
    source = tmp_path / "save"
    source.mkdir()
    base = layer_tar(200_000)
    (source / "base.tar").write_bytes(base)
    entries, configs = [], {}
    for name, tags in images.items():
        own = layer_tar(50_000)
        (source / f"{name}.tar").write_bytes(own)
        config = as_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [digest_of(base), digest_of(own)]},
            }
        )
        configs[name] = config
        (source / f"{name}.json").write_bytes(config)
        entries.append(
            {"Config": f"{name}.json", "RepoTags": tags, "Layers": ["base.tar", f"{name}.tar"]}
        )
    (source / "manifest.json").write_text(json.dumps(entries))
    archive = tmp_path / "images.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(source.iterdir()):
            tar.add(path, arcname=path.name)
    return archive, configs


def _missing_manifest(layout: BuildxLayout) -> None:
    layout.path_of(layout.platforms["arm64"]).unlink()


def _self_containing(layout: BuildxLayout) -> None:
    """An index whose entries name its own file: its bytes then cannot hash to that name."""
    index = json.loads(layout.index)
    own = descriptor(OCI_INDEX, layout.index)
    index["manifests"].append(own)
    written = as_json(index)
    layout.path_of(layout.index).write_bytes(written)
    top = json.loads((layout.root / "index.json").read_text())
    top["manifests"][0]["size"] = len(written)
    (layout.root / "index.json").write_text(json.dumps(top))


def _manifest_bytes_differ(layout: BuildxLayout) -> None:
    path = layout.path_of(layout.platforms["amd64"])
    document = json.loads(path.read_bytes())
    document["annotations"] = {"changed": "after the index was written"}
    path.write_bytes(
        json.dumps(document)
        .encode()[: len(layout.platforms["amd64"])]
        .ljust(len(layout.platforms["amd64"]), b" ")
    )


BAD_INPUTS = {
    "index names a missing manifest": (
        _missing_manifest,
        [],
        r"names manifest sha256:[0-9a-f]{64}, which the image does not hold",
    ),
    "platform matches nothing": (
        None,
        ["--platform", "linux/s390x"],
        r"no manifest for --platform linux/s390x; the image sha256:[0-9a-f]{64} has "
        r"linux/amd64, linux/arm64/v8",
    ),
    "index contains itself": (_self_containing, [], r"the index contains itself \(sha256:"),
    "manifest bytes differ from the index": (
        _manifest_bytes_differ,
        [],
        r"the manifest's bytes hash to sha256:[0-9a-f]{64}, not sha256:",
    ),
    "tag is not a reference": (None, ["--tag", "bad:tag"], r"'bad:tag', which is not a valid tag"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_images_are_refused_with_a_specific_message_and_nothing_tagged(
    oci_registry: OciRegistryProcess, tmp_path: Path, case: str
) -> None:
    spoil, flags, message = BAD_INPUTS[case]
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")
    if spoil is not None:
        spoil(layout)

    run = uploaderd_push(*target(oci_registry), "--image", str(layout.root), *flags)

    assert run.returncode == 1, run.stderr
    assert re.search(message, run.stderr), run.stderr
    assert manifest_at(oci_registry, "v1")[0] == 404
    assert '"PUT /v2/team/app/manifests/' not in oci_registry.log.read_text()
