"""The OCI referrers tag schema, for registries without the referrers API.

A signature or SBOM pushed as an OCI 1.1 artifact names its image through
``subject``.  A registry with the referrers API answers such a PUT with an
``OCI-Subject`` header and indexes it itself.  One without (distribution
2.x, most mirrors) does not, and a client must keep the list itself
(distribution-spec 1.1, "Pushing Manifests with Subject"): an index under
the tag ``sha256-<subject hex>`` listing every referrer, each with its
``artifactType`` and annotations.  That is what cosign, oras and regclient
read when the API is missing, so a signature pushed here is found by them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SUBJECT_HEADER = "OCI-Subject"


@dataclass(frozen=True, slots=True)
class Referrer:
    """A pushed manifest with a subject: the tag its list lives under, and its entry there."""

    fallback_tag: str
    entry: dict[str, Any]


def referrer_of(manifest: bytes, media_type: str, digest: str) -> Referrer | None:
    """The referrers-list entry for ``manifest``, or None if it has no subject."""
    try:
        document = json.loads(manifest)
    except ValueError:
        return None
    subject = document.get("subject") if isinstance(document, dict) else None
    subject_digest = subject.get("digest") if isinstance(subject, dict) else None
    if not isinstance(subject_digest, str) or ":" not in subject_digest:
        return None
    algorithm, _, encoded = subject_digest.partition(":")
    entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(manifest)}
    config = document.get("config")
    artifact_type = document.get("artifactType") or (
        config.get("mediaType") if isinstance(config, dict) else None
    )
    if isinstance(artifact_type, str):
        entry["artifactType"] = artifact_type
    if isinstance(document.get("annotations"), dict):
        entry["annotations"] = document["annotations"]
    return Referrer(f"{algorithm}-{encoded}"[:128], entry)


def with_referrer(current: bytes | None, referrer: Referrer) -> bytes | None:
    """The list ``current`` (None: there is none yet) with ``referrer`` in it.

    None if it is already listed, so a repeated push changes nothing.  A tag
    holding something other than an index is not ours to overwrite: ValueError.
    """
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if current is not None:
        document = json.loads(current)
        if not isinstance(document, dict) or not isinstance(document.get("manifests"), list):
            raise ValueError("the referrers tag holds something other than an image index")
    listed = document["manifests"]
    if any(isinstance(e, dict) and e.get("digest") == referrer.entry["digest"] for e in listed):
        return None
    listed.append(referrer.entry)
    return json.dumps(document, separators=(",", ":")).encode()
