"""kill -9 in the middle of an OCI blob's streamed PATCH, then a restart: nothing is lost.

An OCI layer goes up as one PATCH per chunk of up to 64 MiB, fed part by part
(``registry/ocichunks.py``), so a kill lands inside a request whose bytes the
registry has partly stored and uploaderd never saw confirmed.  The restarted
daemon asks the registry where the interrupted upload stands.  The CNCF
registry cannot say: it signs the upload's offset into each ``Location``
(``_state``) and refuses a stale one, and the kill left it more bytes than the
last offset it signed.  So the blob is sent again in a new upload, and must
arrive whole, under its digest, completed exactly once.  The registry sits
behind the link emulator's "far" shape (8 MiB/s a connection), so a 40 MiB
layer is mid-upload for seconds: long enough to be killed there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.linkemu import shape_named
from tests.e2e.daemon import start_daemon
from tests.e2e.test_daemon import journal_row
from tests.helpers import make_layer
from tests.linkshape import running_link
from tests.oci.conftest import OciRegistryProcess

MIB = 1024 * 1024
LAYER_SIZE = 40 * MIB
pytestmark = pytest.mark.e2e

UPLOAD_REQUEST = re.compile(r'"(PATCH|PUT|GET) /v2/team/app/blobs/uploads/([0-9a-f-]{36})')


def upload_requests(registry: OciRegistryProcess) -> list[tuple[str, str]]:
    """(method, upload uuid) of every request on an upload, in the access log's order."""
    return UPLOAD_REQUEST.findall(registry.log.read_text())


def test_kill_9_mid_patch_then_restart_completes_the_blob_exactly_once(
    oci_registry: OciRegistryProcess, tmp_path: Path
) -> None:
    with running_link(shape_named("far"), oci_registry.url) as link:
        config = tmp_path / "config.toml"
        config.write_text(f'[registry]\nurl = "{link.url}"\ninsecure = true\n')
        options = ("--config", str(config), "--part-size", "5MiB")
        daemon = start_daemon(tmp_path, "http://127.0.0.1:9", *options)
        _, digest = make_layer(daemon.watch / "team/app", "big.tar", LAYER_SIZE)

        def mid_upload() -> bool:
            row = journal_row(daemon.state_dir, "big.tar")
            return bool(
                row
                and row["state"] == "uploading"
                and 10 * MIB <= int(str(row["next_byte"])) < LAYER_SIZE - 10 * MIB
            )

        daemon.wait_until(mid_upload, 60, "big.tar partly uploaded")
        daemon.process.kill()
        daemon.process.wait(timeout=10)
        interrupted = journal_row(daemon.state_dir, "big.tar")
        assert interrupted is not None
        assert interrupted["state"] == "uploading"
        before = upload_requests(oci_registry)
        assert not any(method == "PUT" for method, _ in before), "completed before the kill"

        restarted = start_daemon(tmp_path, "http://127.0.0.1:9", *options, log_name="restart.log")
        try:
            restarted.wait_until(lambda: restarted.done_files() != [], 90, "big.tar in done/")
            assert restarted.failed_files() == []
            events = [e["event"] for e in restarted.log_events()]
            assert "resuming interrupted files" in events
        finally:
            assert restarted.stop() == 0

    after = upload_requests(oci_registry)[len(before) :]
    interrupted_uuid = str(interrupted["upload_id"]).split("/uploads/")[1].split("?")[0]
    # The restart asked about the interrupted upload first, then opened exactly one new
    # upload, and the blob was completed once, in that new upload.
    # (The killed PATCH itself may be logged after the kill, in either order with the GET.)
    fresh = {uuid for _, uuid in after} - {interrupted_uuid}
    assert len(fresh) == 1, after
    first_fresh = next(i for i, (_, uuid) in enumerate(after) if uuid in fresh)
    assert ("GET", interrupted_uuid) in after[:first_fresh], after
    completions = [uuid for method, uuid in upload_requests(oci_registry) if method == "PUT"]
    assert completions == list(fresh)
    assert oci_registry.get(f"/v2/team/app/blobs/{digest}") == (
        200,
        (restarted.state_dir / "done/team/app/big.tar").read_bytes(),
    )
