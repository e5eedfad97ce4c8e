"""An image as a graph of descriptors, in the order a registry must receive it.

A registry refuses an index whose manifests it lacks and a manifest whose
blobs it lacks, so the graph is pushed children first: every blob, then each
manifest in post-order (a child before the index naming it), then a
referrer after its subject, and the tags last of all.  Each node is read and
checked once however many parents share it: a base layer common to two
platforms is one blob, pushed once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from uploaderd.errors import ErrorCode, ImageError, ImageIncompleteError
from uploaderd.image.manifest import MAX_MANIFEST_SIZE, Descriptor, Manifest, parse_manifest


@dataclass(slots=True)
class ManifestStore:
    """Where an image source keeps its manifests and blobs.

    A layout keeps both as files under ``blobs/<algorithm>/<hex>``; a docker
    save archive's manifests are built in memory (``in_memory``) and its
    blobs are files under their own names (``blob_files``).  A manifest made
    for a platform filter joins ``in_memory`` too.
    """

    blob_dir: Path | None
    in_memory: dict[str, bytes] = field(default_factory=dict)
    blob_files: dict[str, Path] = field(default_factory=dict)

    def blob_path(self, descriptor: Descriptor) -> Path:
        known = self.blob_files.get(descriptor.digest)
        if known is not None or self.blob_dir is None:
            return known or Path(descriptor.hex)
        return self.blob_dir / "sha256" / descriptor.hex

    def add(self, raw: bytes) -> str:
        """Keep a manifest made here; its digest."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        self.in_memory[digest] = raw
        return digest

    def read(self, descriptor: Descriptor, named_by: str, ancestors: tuple[str, ...]) -> Manifest:
        """The manifest ``descriptor`` names, its size, structure and digest checked."""
        raw = self.in_memory.get(descriptor.digest)
        path = self.blob_path(descriptor)
        if raw is None:
            raw = _read_manifest_file(descriptor, path, named_by)
        manifest = parse_manifest(raw, descriptor.digest, descriptor.media_type, path)
        _refuse_cycle(manifest, (*ancestors, descriptor.digest), path)
        actual = "sha256:" + hashlib.sha256(raw).hexdigest()
        if actual != descriptor.digest:
            raise ImageError(
                f"the manifest's bytes hash to {actual}, not {descriptor.digest} as "
                f"{named_by} says; the image is corrupt, rebuild or re-export it",
                path=path,
                code=ErrorCode.DIGEST_MISMATCH,
            )
        return manifest


def _read_manifest_file(descriptor: Descriptor, path: Path, named_by: str) -> bytes:
    if descriptor.size > MAX_MANIFEST_SIZE:
        raise ImageError(
            f"{named_by} gives the manifest {descriptor.size} bytes; a manifest is at most "
            f"{MAX_MANIFEST_SIZE}",
            path=path,
            code=ErrorCode.INVALID_IMAGE,
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ImageIncompleteError(
            f"{named_by} names manifest {descriptor.digest}, which the image does not hold",
            path=path,
            code=ErrorCode.MISSING_BLOB,
        ) from None
    except OSError as exc:
        raise ImageError(
            f"cannot read the manifest: {exc.strerror}",
            path=path,
            code=ErrorCode.UNREADABLE_BLOB,
        ) from None
    if len(raw) != descriptor.size:
        short = len(raw) < descriptor.size
        error = ImageIncompleteError if short else ImageError
        raise error(
            f"the manifest is {len(raw)} bytes, not {descriptor.size} as {named_by} says",
            path=path,
            code=ErrorCode.SIZE_MISMATCH,
        )
    return raw


def _refuse_cycle(manifest: Manifest, path_here: tuple[str, ...], source: Path) -> None:
    """An index that lists itself, or an ancestor: no registry could ever hold it."""
    for child in manifest.children:
        if child.digest in path_here:
            chain = " -> ".join((*path_here[path_here.index(child.digest) :], child.digest))
            raise ImageError(
                f"the index contains itself ({chain}); the layout is corrupt, re-export it",
                path=source,
                code=ErrorCode.MANIFEST_CYCLE,
            )


@dataclass(slots=True)
class ImageGraph:
    """Every manifest in push order (children first) and every blob once, by digest."""

    manifests: dict[str, Manifest] = field(default_factory=dict)
    blobs: dict[str, Descriptor] = field(default_factory=dict)

    def add(
        self,
        store: ManifestStore,
        descriptor: Descriptor,
        named_by: str,
        ancestors: tuple[str, ...] = (),
    ) -> Manifest:
        """Read ``descriptor``'s manifest and everything under it, children first."""
        known = self.manifests.get(descriptor.digest)
        if known is not None:
            return known
        manifest = store.read(descriptor, named_by, ancestors)
        below = (*ancestors, descriptor.digest)
        for child in manifest.children:
            self.add(store, child, f"index {descriptor.digest}", below)
        for blob in manifest.blobs:
            self.blobs.setdefault(blob.digest, blob)
        self.manifests[descriptor.digest] = manifest
        return manifest

    def add_referrers(self, store: ManifestStore, candidates: list[Descriptor]) -> None:
        """Take every candidate whose subject is in the graph, until none is left to take.

        A signature's subject may itself be a referrer (a signed SBOM), so a
        candidate can become wanted once another one has been taken.
        """
        pending = list(candidates)
        while True:
            taken = [
                candidate
                for candidate in pending
                if (subject := store.read(candidate, "index.json", ()).subject) is not None
                and subject.digest in self.manifests
            ]
            if not taken:
                return
            for candidate in taken:
                self.add(store, candidate, "index.json")
                pending.remove(candidate)
