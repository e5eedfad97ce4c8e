"""Reading images as descriptor graphs: order, sharing, selection, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.helpers import digest_of
from tests.imagefixtures import write_buildx_layout
from uploaderd.errors import ConfigurationError, ErrorCode, ImageError
from uploaderd.image.platforms import parse_platform
from uploaderd.image.source import Image, ImageChoice, open_image
from uploaderd.registry.ocireferrers import referrer_of, with_referrer


def read(path: Path, tmp_path: Path, *tags: str, platforms: tuple[str, ...] = ()) -> Image:
    choice = ImageChoice(tags=tags, platforms=[parse_platform(p) for p in platforms])
    return anyio.run(open_image, path, choice, tmp_path)


def test_children_come_before_parents_and_the_referrer_after_its_subject(
    tmp_path: Path,
) -> None:
    layout = write_buildx_layout(tmp_path / "layout")

    image = read(layout.root, tmp_path)

    order = [m.digest for m in image.manifests]
    index = order.index(layout.index_digest)
    for child in (*layout.platforms.values(), *layout.attestations.values()):
        assert order.index(digest_of(child)) < index
    signature = order.index(digest_of(layout.signature))
    assert signature > order.index(digest_of(layout.platforms["amd64"]))
    assert [m.digest for m in image.tags.values()] == [layout.index_digest]
    blob_digests = [b.descriptor.digest for b in image.blobs]
    assert blob_digests.count(digest_of(layout.base_layer)) == 1  # shared by both platforms
    assert len(blob_digests) == len(set(blob_digests))


def test_a_platform_filter_picks_the_plain_manifest_or_a_narrower_index(
    tmp_path: Path,
) -> None:
    layout = write_buildx_layout(tmp_path / "layout")

    one = read(layout.root, tmp_path / "a", platforms=("linux/arm64",))
    both = read(layout.root, tmp_path / "b", platforms=("linux/arm64/v8", "linux/amd64"))

    assert [m.raw for m in one.tags.values()] == [layout.platforms["arm64"]]
    assert digest_of(layout.signature) not in [m.digest for m in one.manifests]
    narrowed = next(iter(both.tags.values()))
    assert narrowed.digest != layout.index_digest
    assert [d.digest for d in narrowed.children] == [
        digest_of(m) for m in (*layout.platforms.values(), *layout.attestations.values())
    ]


def test_extra_tags_are_added_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")

    image = read(layout.root, tmp_path, "main", "latest")

    assert list(image.tags) == ["v1", "main", "latest"]
    with pytest.raises(ImageError) as refused:
        read(layout.root, tmp_path, "-dash-first")
    assert refused.value.code == ErrorCode.INVALID_TAG


def test_a_malformed_platform_is_a_usage_error() -> None:
    with pytest.raises(ConfigurationError, match="os/architecture"):
        parse_platform("arm64")


def test_a_layout_of_two_images_needs_a_tag_naming_one_to_add_tags(tmp_path: Path) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")
    index = json.loads((layout.root / "index.json").read_text())
    other = dict(index["manifests"][0])
    other.update(digest=digest_of(layout.platforms["amd64"]), size=len(layout.platforms["amd64"]))
    other["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    other["annotations"] = {"org.opencontainers.image.ref.name": "amd64-only"}
    layout.write_index_json([*index["manifests"], other])

    everything = read(layout.root, tmp_path / "a")
    chosen = read(layout.root, tmp_path / "b", "amd64-only")

    assert list(everything.tags) == ["v1", "amd64-only"]
    assert list(chosen.tags) == ["amd64-only"]
    with pytest.raises(ImageError) as refused:
        read(layout.root, tmp_path / "c", "release")
    assert refused.value.code == ErrorCode.AMBIGUOUS_IMAGE
    assert "amd64-only, v1" in str(refused.value)


def test_the_referrers_list_gains_each_referrer_once() -> None:
    subject = "sha256:" + "ab" * 32
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json"},
            "subject": {"digest": subject},
            "annotations": {"signed": "yes"},
        }
    ).encode()
    referrer = referrer_of(manifest, "application/vnd.oci.image.manifest.v1+json", "sha256:x")
    assert referrer is not None
    assert referrer.fallback_tag == "sha256-" + "ab" * 32

    listed = with_referrer(None, referrer)
    assert listed is not None
    entry = json.loads(listed)["manifests"][0]
    assert entry["artifactType"] == "application/vnd.oci.empty.v1+json"
    assert entry["annotations"] == {"signed": "yes"}
    assert with_referrer(listed, referrer) is None  # already there: nothing to push
    no_subject = referrer_of(b'{"schemaVersion": 2}', "application/json", "sha256:y")
    assert no_subject is None
