"""``--platform os/arch[/variant]``: push only some platforms of a multi-platform image.

With one platform chosen, the result is that platform's plain manifest;
with several, a new index listing just them (and the attestation manifests
buildx attached to them).  A new index has new bytes, so its digest differs
from the layout's: the README says so where ``--platform`` is described.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from uploaderd.errors import ConfigurationError, ErrorCode, ImageError
from uploaderd.image.graph import ManifestStore
from uploaderd.image.manifest import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    Manifest,
    Platform,
    platform_of,
)

ATTESTATION_TYPE = "vnd.docker.reference.type"
ATTESTATION_SUBJECT = "vnd.docker.reference.digest"
_PLATFORM = re.compile(r"([a-z0-9_.-]+)/([a-z0-9_.-]+)(?:/([a-z0-9_.-]+))?")


def parse_platform(text: str) -> Platform:
    """``linux/arm64`` or ``linux/arm/v7``; anything else is a usage error naming the flag."""
    match = _PLATFORM.fullmatch(text.strip().lower())
    if match is None:
        raise ConfigurationError(
            f"--platform {text!r} is not os/architecture[/variant], e.g. linux/arm64",
            code=ErrorCode.USAGE,
        )
    return Platform(match[1], match[2], match[3])


def matches(wanted: Platform, offered: Platform) -> bool:
    """Same os and architecture; the variant too, if the filter names one."""
    return (
        wanted.os == offered.os
        and wanted.architecture == offered.architecture
        and (wanted.variant is None or wanted.variant == offered.variant)
    )


def is_attestation(descriptor: Descriptor) -> bool:
    return descriptor.annotations.get(ATTESTATION_TYPE) == "attestation-manifest"


def select_platforms(
    store: ManifestStore, top: Descriptor, manifest: Manifest, wanted: Sequence[Platform]
) -> Descriptor:
    """The descriptor to push instead of ``top`` for the ``wanted`` platforms."""
    if not manifest.is_index:
        offered = top.platform or _config_platform(store, manifest)
        if offered is not None and any(matches(w, offered) for w in wanted):
            return top
        raise _not_found(store, top, wanted, [offered] if offered else [])
    images = [child for child in manifest.children if not is_attestation(child)]
    chosen = [
        child
        for child in images
        if child.platform is not None and any(matches(w, child.platform) for w in wanted)
    ]
    if not chosen:
        raise _not_found(store, top, wanted, [c.platform for c in images if c.platform])
    if len(chosen) == 1:
        return chosen[0]
    return _narrowed_index(store, manifest, chosen)


def _narrowed_index(
    store: ManifestStore, manifest: Manifest, chosen: list[Descriptor]
) -> Descriptor:
    """A new index of the chosen manifests and their attestations, in the original order."""
    digests = {child.digest for child in chosen}
    kept = [
        dict(child.entry)
        for child in manifest.children
        if child.digest in digests
        or (is_attestation(child) and child.annotations.get(ATTESTATION_SUBJECT) in digests)
    ]
    document = json.loads(manifest.raw)
    document["manifests"] = kept
    raw = json.dumps(document, separators=(",", ":")).encode()
    return Descriptor(manifest.media_type, store.add(raw), len(raw))


def _config_platform(store: ManifestStore, manifest: Manifest) -> Platform | None:
    """A single-platform image's platform, from its config (``os``, ``architecture``)."""
    config = manifest.config
    if config is None or config.size > MAX_MANIFEST_SIZE:
        return None
    try:
        document = json.loads(store.blob_path(config).read_bytes())
    except (OSError, ValueError):
        return None
    return platform_of(document)


def _not_found(
    store: ManifestStore, top: Descriptor, wanted: Sequence[Platform], offered: list[Platform]
) -> ImageError:
    asked = ", ".join(str(w) for w in wanted)
    has = ", ".join(sorted({str(p) for p in offered})) or "no platform it names"
    return ImageError(
        f"no manifest for --platform {asked}; the image {top.digest} has {has}",
        path=store.blob_path(top),
        code=ErrorCode.PLATFORM_NOT_FOUND,
    )
