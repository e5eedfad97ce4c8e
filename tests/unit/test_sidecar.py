"""A layer's sidecar, ``<name>.sha256``: every form build tools write, and every refusal.

The parser on bytes, then the reading on real files (links, fifos, big
files), then the claim a layer's name and sidecar make together.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from uploaderd.errors import ErrorCode, LayerFileError
from uploaderd.sidecar import (
    MAX_SIDECAR_BYTES,
    LayerClaim,
    layer_claim,
    parse_sidecar,
    read_sidecar,
    sidecar_of,
    sidecar_source,
)

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"
OTHER_HEX = "fedcba9876543210" * 4


@pytest.mark.parametrize(
    "content",
    [
        f"sha256:{HEX}",
        f"sha256:{HEX}\n",
        f"  sha256:{HEX} \r\n",
        HEX,
        f"{HEX}\n",
        f"{HEX}  layer.tar\n",  # sha256sum, text mode
        f"{HEX} *layer.tar\n",  # sha256sum, binary mode
        f"{HEX}  ./layer.tar\n",
        f"{HEX}  /build/out/layer.tar\n",  # hashed where it was built, then moved
        HEX.upper(),
        f"sha256:{HEX.upper()}",
    ],
    ids=[
        "oci",
        "oci-newline",
        "oci-whitespace",
        "bare",
        "bare-newline",
        "sha256sum-text",
        "sha256sum-binary",
        "sha256sum-dot-path",
        "sha256sum-absolute-path",
        "bare-uppercase",
        "oci-uppercase-hex",
    ],
)
def test_each_accepted_form_gives_the_lowercase_digest(content: str) -> None:
    assert parse_sidecar(content.encode(), "layer.tar") == DIGEST


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b" \n\n", "is empty"),
        (b"\xff\xfe" + HEX.encode(), "is not text"),
        (f"{HEX}\n{OTHER_HEX}\n".encode(), "holds more than one line"),
        (f"{HEX}  layer.tar\n{OTHER_HEX}  other.tar\n".encode(), "holds more than one line"),
        (HEX[:-1].encode(), "not a sha256 digest"),
        ((HEX + "0").encode(), "not a sha256 digest"),
        (("g" + HEX[1:]).encode(), "not a sha256 digest"),
        (f"sha512:{HEX}{HEX}".encode(), "not a sha256 digest"),
        (f"SHA256:{HEX}".encode(), "not a sha256 digest"),
        (f"sha256-{HEX}".encode(), "not a sha256 digest"),
        (f"SHA256 (layer.tar) = {HEX}".encode(), "not a sha256 digest"),  # BSD --tag
        (f"{HEX} layer.tar".encode(), "not a sha256 digest"),  # one space: not sha256sum's
        (f"{HEX}\tlayer.tar".encode(), "not a sha256 digest"),
        (f"sha256:{HEX}  layer.tar".encode(), "not a sha256 digest"),
        (f"{HEX}  other.tar".encode(), "names the file 'other.tar', not this layer 'layer.tar'"),
        (f"{HEX} *layer.tar.gz".encode(), "names the file 'layer.tar.gz'"),
        (f"{HEX}  layer.tar/x".encode(), "names the file 'layer.tar/x'"),
    ],
)
def test_each_refused_form_says_what_is_wrong(content: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_sidecar(content, "layer.tar")


def test_a_refusal_lists_the_accepted_forms_and_cuts_long_text_short() -> None:
    with pytest.raises(ValueError, match="not a sha256 digest") as refused:
        parse_sidecar(b"x" * 500, "layer.tar")
    text = str(refused.value)
    assert "'sha256:<64 hex>', '<64 hex>', or sha256sum's '<64 hex>  <name>'" in text
    assert "x" * 77 + "..." in text
    assert "x" * 100 not in text


def write_layer(directory: Path, name: str = "layer.tar") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    layer = directory / name
    layer.write_bytes(b"layer bytes")
    return layer


def refusal(layer: Path) -> LayerFileError:
    with pytest.raises(LayerFileError) as refused:
        read_sidecar(layer)
    assert refused.value.code == ErrorCode.INVALID_SIDECAR
    assert refused.value.path == layer
    return refused.value


def test_the_sidecar_is_the_layers_name_plus_sha256_beside_it(tmp_path: Path) -> None:
    layer = write_layer(tmp_path)
    assert sidecar_of(layer) == tmp_path / "layer.tar.sha256"
    assert read_sidecar(layer) is None
    sidecar_of(layer).write_text(f"{HEX}  layer.tar\n")
    assert read_sidecar(layer) == DIGEST


def test_a_malformed_sidecar_names_itself_and_what_to_do(tmp_path: Path) -> None:
    layer = write_layer(tmp_path)
    sidecar_of(layer).write_text("not a digest\n")
    error = refusal(layer)
    assert error.message.startswith("its sidecar layer.tar.sha256 holds 'not a digest'")
    assert "uploaderd retry-failed" in error.message
    assert "remove the sidecar to have it hashed" in error.message
    assert not error.retry_later


def test_a_symlinked_sidecar_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.sha256"
    outside.write_text(DIGEST)
    layer = write_layer(tmp_path / "spool")
    sidecar_of(layer).symlink_to(outside)
    assert "is a symlink, which uploaderd never follows" in refusal(layer).message
    dangling = write_layer(tmp_path / "spool", "dangling.tar")
    sidecar_of(dangling).symlink_to(tmp_path / "nowhere")
    assert "is a symlink" in refusal(dangling).message


def test_a_fifo_or_directory_sidecar_is_refused_without_being_opened(tmp_path: Path) -> None:
    layer = write_layer(tmp_path)
    os.mkfifo(sidecar_of(layer))  # opening it for reading would wait for a writer
    assert "is not a regular file" in refusal(layer).message
    other = write_layer(tmp_path, "other.tar")
    sidecar_of(other).mkdir()
    assert "is not a regular file" in refusal(other).message


def test_a_sidecar_over_the_cap_is_refused(tmp_path: Path) -> None:
    layer = write_layer(tmp_path)
    padded = f"{HEX}  {'d/' * ((MAX_SIDECAR_BYTES - 80) // 2)}layer.tar\n"
    assert len(padded) <= MAX_SIDECAR_BYTES
    sidecar_of(layer).write_text(padded)
    assert read_sidecar(layer) == DIGEST  # a long path still fits
    sidecar_of(layer).write_text(HEX + " " * MAX_SIDECAR_BYTES)
    assert f"is over {MAX_SIDECAR_BYTES} bytes" in refusal(layer).message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_sidecar_is_refused(tmp_path: Path) -> None:
    layer = write_layer(tmp_path)
    sidecar_of(layer).write_text(DIGEST)
    sidecar_of(layer).chmod(0)
    assert "cannot be read (permission denied)" in refusal(layer).message


def test_the_claim_comes_from_the_sidecar_or_the_name(tmp_path: Path) -> None:
    plain = write_layer(tmp_path, "plain.tar")
    assert layer_claim(plain) is None
    named = write_layer(tmp_path, f"sha256-{HEX}.tar")
    assert layer_claim(named) == LayerClaim(DIGEST)
    sidecar_of(plain).write_text(DIGEST)
    assert layer_claim(plain) == LayerClaim(DIGEST, sidecar_source(sidecar_of(plain)))
    sidecar_of(named).write_text(HEX.upper())
    agreed = layer_claim(named)  # they agree: the sidecar is named as the claim's source
    assert agreed == LayerClaim(DIGEST, sidecar_source(sidecar_of(named)))
    assert agreed.source.says == f"its sidecar sha256-{HEX}.tar.sha256"


def test_a_sidecar_and_a_name_that_disagree_are_refused(tmp_path: Path) -> None:
    named = write_layer(tmp_path, f"sha256-{HEX}.tar")
    sidecar_of(named).write_text(f"sha256:{OTHER_HEX}\n")
    with pytest.raises(LayerFileError) as refused:
        layer_claim(named)
    assert refused.value.code == ErrorCode.INVALID_SIDECAR
    assert f"holds sha256:{OTHER_HEX}, but the layer's name claims {DIGEST}" in (
        refused.value.message
    )
