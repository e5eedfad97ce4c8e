"""``uploaderd push`` as a real process against ``uploaderd local-registry`` on loopback."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RegistryProcess, push, start_registry
from tests.helpers import make_layer
from uploaderd.testing import free_port

MIB = 1024 * 1024
PART = 5 * MIB

pytestmark = pytest.mark.e2e

# botocore's own retries multiply ours; the bounded-time tests keep to one.
ONE_BOTOCORE_ATTEMPT = {"AWS_MAX_ATTEMPTS": "1"}


def test_layers_of_awkward_sizes_arrive_intact(registry: RegistryProcess, tmp_path: Path) -> None:
    sizes = {
        "one-byte": 1,
        "three-mib": 3 * MIB,
        "two-parts": 2 * PART,
        "two-parts-plus": 2 * PART + 1,
    }
    layers = {name: make_layer(tmp_path, name, size) for name, size in sizes.items()}

    run = push(
        registry.url, "team/app", *(p for p, _ in layers.values()), options=("--part-size", "5MiB")
    )

    assert run.returncode == 0, run.stderr
    by_file = {Path(r["file"]).name: r for r in run.records}
    for name, (path, digest) in layers.items():
        assert by_file[name]["outcome"] == "uploaded"
        assert by_file[name]["digest"] == digest
        assert by_file[name]["size"] == sizes[name]
        fetched = registry.fetch_layer("team/app", digest)
        assert "sha256:" + hashlib.sha256(fetched).hexdigest() == digest
        assert fetched == path.read_bytes()
    stats = registry.stats()
    assert stats["requests"]["UploadLayerPart"] == 1 + 1 + 2 + 3
    assert stats["overlapping_requests_same_upload"] == 0


def test_second_push_sends_no_part(registry: RegistryProcess, tmp_path: Path) -> None:
    files = [make_layer(tmp_path, f"layer{i}", 6 * MIB)[0] for i in range(3)]
    assert push(registry.url, "team/app", *files).returncode == 0
    parts_before = registry.stats()["requests"]["UploadLayerPart"]

    again = push(registry.url, "team/app", *files)

    assert again.returncode == 0, again.stderr
    assert [r["outcome"] for r in again.records] == ["exists"] * 3
    assert registry.stats()["requests"]["UploadLayerPart"] == parts_before
    assert "3 already present" in again.stderr


def test_layers_upload_in_parallel_but_parts_of_one_layer_never_overlap(
    tmp_path: Path,
) -> None:
    server = start_registry(
        tmp_path / "storage", "--auto-create-repositories", "--fault", "latency=0.05"
    )
    try:
        files = [make_layer(tmp_path, f"layer{i}", 3 * PART + 7)[0] for i in range(4)]
        run = push(
            server.url, "team/app", *files, options=("--concurrency", "4", "--part-size", "5MiB")
        )
        assert run.returncode == 0, run.stderr
        stats = server.stats()
        assert stats["max_concurrent_uploads"] >= 2
        assert stats["overlapping_requests_same_upload"] == 0
        assert stats["requests"]["UploadLayerPart"] == 4 * 4
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


@pytest.mark.parametrize(
    "faults",
    [
        ("throttle-every=3",),
        ("server-error-every=2",),
        ("drop-after-apply-every=2",),
        ("throttle-every=4", "server-error-every=3", "drop-after-apply-every=5"),
    ],
)
def test_retries_recover_from_injected_faults(tmp_path: Path, faults: tuple[str, ...]) -> None:
    options = ["--auto-create-repositories"]
    for fault in faults:
        options += ["--fault", fault]
    server = start_registry(tmp_path / "storage", *options)
    try:
        layers = [make_layer(tmp_path, f"layer{i}", 2 * PART + 1000 * i) for i in range(3)]
        run = push(server.url, "team/app", *(p for p, _ in layers), options=("--part-size", "5MiB"))
        assert run.returncode == 0, run.stderr + run.stdout
        for path, digest in layers:
            fetched = server.fetch_layer("team/app", digest)
            assert fetched == path.read_bytes()
        stats = server.stats()
        assert sum(stats["faults_injected"].values()) > 0
        assert all(count == 1 for count in stats["completed"].values())
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_bad_files_fail_alone_with_specific_messages(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    good, digest = make_layer(tmp_path, "good", 1234)
    empty = tmp_path / "empty"
    empty.touch()
    directory = tmp_path / "adir"
    directory.mkdir()
    missing = tmp_path / "missing"

    run = push(registry.url, "team/app", missing, directory, empty, good)

    assert run.returncode == 1
    records = {Path(r["file"]).name: r for r in run.records}
    assert records["good"]["outcome"] == "uploaded"
    assert registry.fetch_layer("team/app", digest) == good.read_bytes()
    assert records["missing"]["error"]["code"] == "FileNotFound"
    assert records["adir"]["error"]["code"] == "NotARegularFile"
    assert "directory" in records["adir"]["error"]["message"]
    assert records["empty"]["error"]["code"] == "EmptyLayer"
    assert "0 bytes" in records["empty"]["error"]["message"]


def test_invalid_repository_name_is_refused_before_any_request(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    path, _ = make_layer(tmp_path, "layer", 10)
    run = push(registry.url, "Team/App", path)
    assert run.returncode == 2
    assert "'Team/App' is not valid for ECR" in run.stderr
    assert registry.stats()["requests"] == {}


def test_missing_repository_fails_with_advice(tmp_path: Path) -> None:
    server = start_registry(tmp_path / "storage")  # no auto-create
    try:
        path, _ = make_layer(tmp_path, "layer", 10)
        run = push(server.url, "team/absent", path)
        assert run.returncode == 1
        error = run.records[0]["error"]
        assert error["code"] == "RepositoryNotFoundException"
        assert "create-repository --repository-name team/absent" in error["message"]
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_refused_connections_fail_in_bounded_time(tmp_path: Path) -> None:
    path, _ = make_layer(tmp_path, "layer", 10)
    started = time.monotonic()
    run = push(
        f"http://127.0.0.1:{free_port()}",
        "team/app",
        path,
        options=("--max-attempts", "2"),
        env=ONE_BOTOCORE_ATTEMPT,
    )
    assert run.returncode == 1
    assert time.monotonic() - started < 30
    error = run.records[0]["error"]
    assert "cannot reach the registry" in error["message"]
    assert "gave up after 2 attempts" in error["message"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_registry_that_never_answers_fails_in_bounded_time(
    silent_server: str, tmp_path: Path
) -> None:
    path, _ = make_layer(tmp_path, "layer", 10)
    started = time.monotonic()
    run = push(
        silent_server,
        "team/app",
        path,
        options=("--max-attempts", "2", "--request-timeout", "1"),
        env=ONE_BOTOCORE_ATTEMPT,
    )
    assert run.returncode == 1
    assert time.monotonic() - started < 20
    assert "cannot reach the registry" in run.records[0]["error"]["message"]


def test_registry_answering_non_json_fails_with_a_clear_message(tmp_path: Path) -> None:
    server = start_registry(
        tmp_path / "storage", "--auto-create-repositories", "--fault", "non-json-every=1"
    )
    try:
        path, _ = make_layer(tmp_path, "layer", 10)
        run = push(server.url, "team/app", path, options=("--max-attempts", "2"))
        assert run.returncode == 1
        message = run.records[0]["error"]["message"]
        assert "not ECR's JSON protocol" in message or "cannot reach the registry" in message
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_a_file_named_by_its_digest_is_checked_against_its_name(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """Build systems name layers sha256-<hex>: the name is asked for first, checked as sent."""
    source, digest = make_layer(tmp_path / "built", "layer", 6 * MIB + 7)
    named = source.with_name(f"sha256-{digest.removeprefix('sha256:')}.tar")
    source.rename(named)
    _, other = make_layer(tmp_path / "built", "other", 10)
    misnamed = tmp_path / f"sha256-{other.removeprefix('sha256:')}"
    misnamed.write_bytes(named.read_bytes())

    run = push(registry.url, "team/app", named, misnamed, options=("--part-size", "5MiB"))

    assert run.returncode == 1, run.stderr
    by_file = {Path(record["file"]).name: record for record in run.records}  # in finishing order
    good, bad = by_file[named.name], by_file[misnamed.name]
    assert (good["outcome"], good["digest"]) == ("uploaded", digest)
    assert registry.fetch_layer("team/app", digest) == named.read_bytes()
    assert bad["outcome"] == "failed"
    assert bad["error"]["code"] == "DigestMismatch"
    assert f"hash to {digest}, not {other}" in bad["error"]["message"]
    completed = registry.stats()["completed"]
    assert f"team/app@{digest}" in completed
    assert f"team/app@{other}" not in completed  # never completed under the name's claim


def test_a_layer_file_with_a_sidecar_is_checked_against_it(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """A build system's ``<name>.sha256`` beside a layer is its claimed digest, as a name is."""
    good, digest = make_layer(tmp_path, "good.tar", 6 * MIB + 7)
    (tmp_path / "good.tar.sha256").write_text(f"{digest.removeprefix('sha256:')}  good.tar\n")
    wrong, actual = make_layer(tmp_path, "wrong.tar", 1000)
    claimed = "sha256:" + "ab" * 32
    (tmp_path / "wrong.tar.sha256").write_text(claimed + "\n")
    garbled, _ = make_layer(tmp_path, "garbled.tar", 1000)
    (tmp_path / "garbled.tar.sha256").write_text(f"{'ab' * 32}  another.tar\n")

    run = push(registry.url, "team/app", good, wrong, garbled, options=("--part-size", "5MiB"))

    assert run.returncode == 1, run.stderr
    by_file = {Path(record["file"]).name: record for record in run.records}
    assert (by_file["good.tar"]["outcome"], by_file["good.tar"]["digest"]) == ("uploaded", digest)
    assert registry.fetch_layer("team/app", digest) == good.read_bytes()
    mismatch = by_file["wrong.tar"]["error"]
    assert mismatch["code"] == "DigestMismatch"
    assert f"not {claimed} as its sidecar wrong.tar.sha256 says" in mismatch["message"]
    assert f"hash to {actual}, not {claimed}" in mismatch["message"]
    refused = by_file["garbled.tar"]["error"]
    assert refused["code"] == "InvalidSidecar"
    assert "names the file 'another.tar', not this layer 'garbled.tar'" in refused["message"]
    stats = registry.stats()
    assert list(stats["completed"]) == [f"team/app@{digest}"]
    assert stats["requests"]["InitiateLayerUpload"] == 2  # the garbled one never started
    assert "3 layers: 1 uploaded, 0 already present, 2 failed" in run.stderr
