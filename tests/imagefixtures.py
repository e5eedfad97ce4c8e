"""Image layouts shaped like what build hosts write, generated (never checked in).

``write_buildx_layout`` writes what ``docker buildx build --platform
linux/amd64,linux/arm64 --output type=oci`` writes, plus a cosign-style
signature saved beside it (as ``cosign save`` and ``oras`` do): index.json
names one image index under the tag; the index lists two platform manifests
sharing a base layer and one attestation manifest per platform
(``unknown/unknown``, in-toto layers); the signature is an OCI 1.1 artifact
whose ``subject`` is the amd64 manifest, listed in index.json without a name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import digest_of, layer_tar

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
IN_TOTO = "application/vnd.in-toto+json"
EMPTY = "application/vnd.oci.empty.v1+json"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGNATURE_PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
PLATFORMS = {"amd64": {"architecture": "amd64", "os": "linux"},
             "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"}}  # fmt: skip


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def as_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode()


@dataclass
class BuildxLayout:
    """The layout written, and the bytes of each of its parts."""

    root: Path
    index: bytes
    platforms: dict[str, bytes]
    """Each platform's image manifest, by architecture."""
    attestations: dict[str, bytes]
    signature: bytes
    base_layer: bytes
    blobs: dict[str, bytes] = field(default_factory=dict)
    """Every blob and manifest, by digest."""

    @property
    def index_digest(self) -> str:
        return digest_of(self.index)

    def path_of(self, data: bytes) -> Path:
        return self.root / "blobs" / "sha256" / digest_of(data).removeprefix("sha256:")

    def write(self, data: bytes) -> bytes:
        self.blobs[digest_of(data)] = data
        path = self.path_of(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def write_index_json(self, entries: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        (self.root / "index.json").write_text(json.dumps(index))


def _image_manifest(layout: BuildxLayout, arch: str, base: bytes, own_size: int) -> bytes:
    own = layout.write(layer_tar(own_size))
    config = layout.write(
        as_json(
            {
                **PLATFORMS[arch],
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [digest_of(base), digest_of(own)]},
            }
        )
    )
    return layout.write(
        as_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, base), descriptor(OCI_LAYER, own)],
            }
        )
    )


def _attestation(layout: BuildxLayout, subject: bytes) -> bytes:
    statement = layout.write(
        as_json({"_type": "https://in-toto.io/Statement/v0.1", "subject": digest_of(subject)})
    )
    config = layout.write(
        as_json({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {}})
    )
    predicate = {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}
    return layout.write(
        as_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(IN_TOTO, statement, annotations=predicate)],
            }
        )
    )


def _signature(layout: BuildxLayout, subject: bytes) -> bytes:
    payload = layout.write(as_json({"critical": {"image": {"docker-manifest-digest": "x"}}}))
    empty = layout.write(b"{}")
    return layout.write(
        as_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": SIGNATURE_TYPE,
                "config": descriptor(EMPTY, empty),
                "layers": [descriptor(SIGNATURE_PAYLOAD, payload)],
                "subject": descriptor(OCI_MANIFEST, subject),
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ-test"},
            }
        )
    )


def write_buildx_layout(root: Path, tag: str = "v1", *, layer_size: int = 300_000) -> BuildxLayout:
    """The layout of a two-platform buildx build with attestations and a signature."""
    layout = BuildxLayout(root, b"", {}, {}, b"", b"")
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layout.base_layer = layout.write(layer_tar(layer_size))
    entries = []
    for arch, platform in PLATFORMS.items():
        manifest = _image_manifest(layout, arch, layout.base_layer, layer_size // 3)
        layout.platforms[arch] = manifest
        entries.append(descriptor(OCI_MANIFEST, manifest, platform=platform))
    for arch, manifest in layout.platforms.items():
        attestation = _attestation(layout, manifest)
        layout.attestations[arch] = attestation
        annotations = {
            "vnd.docker.reference.digest": digest_of(manifest),
            "vnd.docker.reference.type": "attestation-manifest",
        }
        unknown = {"architecture": "unknown", "os": "unknown"}
        entries.append(
            descriptor(OCI_MANIFEST, attestation, platform=unknown, annotations=annotations)
        )
    layout.index = layout.write(
        as_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    )
    layout.signature = _signature(layout, layout.platforms["amd64"])
    layout.write_index_json(
        [
            descriptor(OCI_INDEX, layout.index, annotations={REF_NAME: tag}),
            descriptor(OCI_MANIFEST, layout.signature),
        ]
    )
    return layout
