"""Image directories in the spool: the structural rule, the tree identity, the settle of a tree."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.unit.test_settler import settler_over, write
from uploaderd.daemon.imagetree import image_root, is_blob_path, tree_identity
from uploaderd.daemon.spool import IMAGE, LAYER, SpoolFile, classify, walk
from uploaderd.daemon.watcher import Seen

HEX = "ab" * 32


def spool_with(watch: Path, *files: str, dirs: tuple[str, ...] = ()) -> None:
    for relpath in files:
        write(watch / relpath, b"x" * 10)
    for relpath in dirs:
        (watch / relpath).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize(
    ("files", "dirs"),
    [
        (["team/img/oci-layout"], ()),
        (["team/img/index.json"], ()),
        ([], ("team/img/blobs",)),
        ([], ("team/img/blobs/sha256",)),
        ([f"team/img/blobs/sha256/{HEX}"], ()),
    ],
    ids=["oci-layout first", "index.json first", "empty blobs/", "blobs/sha256/", "a blob first"],
)
def test_a_layout_being_written_is_an_image_from_its_first_entry_on(
    tmp_path: Path, files: list[str], dirs: tuple[str, ...]
) -> None:
    spool_with(tmp_path, *files, dirs=dirs)
    verdict = classify(tmp_path, "team/img")
    assert isinstance(verdict, SpoolFile)
    assert (verdict.kind, verdict.repository) == (IMAGE, "team")
    for inner in walk(tmp_path, "team/img"):
        assert classify(tmp_path, inner) is None
        assert image_root(tmp_path, inner) == "team/img"
    assert list(walk(tmp_path, "team")) == ["team/img"]


@pytest.mark.parametrize(
    "relpath",
    [
        f"team/img/blobs/sha256/{HEX}",
        f"team/img/sha256/{HEX}",
        f"team/img/blobs/sha512/{'cd' * 64}",
        f"sha256/{HEX}",
    ],
)
def test_a_blob_named_by_its_digest_is_never_a_layer_even_without_its_image(
    tmp_path: Path, relpath: str
) -> None:
    write(tmp_path / relpath, b"blob bytes")
    (tmp_path / relpath).parent.joinpath("stray.tar").write_bytes(b"a file beside it")
    assert is_blob_path(relpath)
    assert classify(tmp_path, relpath) is None
    assert image_root(tmp_path, relpath) == ("team/img" if "/img/" in relpath else None)


@pytest.mark.parametrize(
    "relpath",
    ["team/app/layer.tar", f"team/app/{HEX}", "team/sha256/short", f"team/sha256/{HEX}.tar"],
)
def test_ordinary_layers_stay_layers(tmp_path: Path, relpath: str) -> None:
    write(tmp_path / relpath, b"layer")
    verdict = classify(tmp_path, relpath)
    assert isinstance(verdict, SpoolFile)
    assert verdict.kind == LAYER
    assert image_root(tmp_path, relpath) is None


def test_a_repository_named_blobs_with_layers_in_it_is_no_image(tmp_path: Path) -> None:
    write(tmp_path / "team/blobs/layer.tar", b"layer")
    verdict = classify(tmp_path, "team/blobs/layer.tar")
    assert isinstance(verdict, SpoolFile)
    assert (verdict.kind, verdict.repository) == (LAYER, "team/blobs")
    assert classify(tmp_path, "team") is None


def test_an_image_is_queued_with_the_bytes_of_its_whole_tree(tmp_path: Path) -> None:
    write(tmp_path / "team/img/oci-layout", b"12345")
    write(tmp_path / f"team/img/blobs/sha256/{HEX}", b"x" * 1000)
    verdict = classify(tmp_path, "team/img")
    assert isinstance(verdict, SpoolFile)
    assert verdict.identity.size == 1005


def test_any_change_in_the_tree_changes_its_identity(tmp_path: Path) -> None:
    root = tmp_path / "img"
    blob = root / "blobs/sha256" / HEX
    write(blob, b"x" * 100)
    old = 1_000_000_000_000_000_000
    empty = root / "blobs/sha256/empty"
    steps = [
        lambda: None,
        lambda: os.utime(blob, ns=(old, old)),  # tar -x sets old mtimes: the ctime moves
        empty.touch,  # no bytes, but a new entry
        lambda: empty.rename(root / "blobs/sha256/renamed"),
        (root / "blobs/sha256/renamed").unlink,
    ]
    seen = []
    for step in steps:
        step()
        seen.append(tree_identity(root))
        time.sleep(0.02)  # past the kernel's coarse timestamp tick
    assert None not in seen
    assert len(set(seen)) == len(seen)
    assert tree_identity(root) == seen[-1]  # and nothing else does
    assert tree_identity(tmp_path / "gone") is None


def test_events_inside_an_image_settle_the_image_as_one(tmp_path: Path) -> None:
    settler, clock, ready = settler_over(tmp_path)
    write(tmp_path / "team/img/oci-layout", b"{}")
    settler.observe("team/img/oci-layout", Seen.CLOSED)
    clock.now += 0.8
    write(tmp_path / f"team/img/blobs/sha256/{HEX}", b"blob")
    settler.observe(f"team/img/blobs/sha256/{HEX}", Seen.WRITING)
    settler.observe(f"team/img/blobs/sha256/{HEX}", Seen.CLOSED)
    clock.now += 0.8
    settler.check_due()
    assert ready == []  # the blob restarted the image's clock
    clock.now += 0.3
    settler.check_due()
    assert ready == ["team/img"]


def test_a_directory_renamed_in_whole_is_taken_at_once_and_a_repository_never(
    tmp_path: Path,
) -> None:
    settler, _, ready = settler_over(tmp_path)
    write(tmp_path / "team/img/oci-layout", b"{}")
    (tmp_path / "team/app").mkdir()
    settler.observe("team/app", Seen.CLOSED)
    settler.observe("team/img", Seen.RENAMED)
    settler.check_due()
    assert ready == ["team/img"]
