"""``uploaderd push``'s layer files with sidecars, in-process: claims, refusals, display.

The engine over ``MemoryRegistry``, with ``hash_layer`` made to fail: a
layer with a sidecar must never be hashed in a pass of its own.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from tests.helpers import make_layer
from tests.unit.test_claimed_digest import no_hash_pass  # noqa: F401 (a fixture)
from tests.unit.test_engine import engine_for
from uploaderd.cli.push import LayerJobs, LinePrinter
from uploaderd.cli.terminal import PushProgress
from uploaderd.engine.observer import EngineObserver
from uploaderd.engine.scheduler import UploadEngine
from uploaderd.model import Outcome
from uploaderd.sizes import MIB
from uploaderd.testing import MemoryRegistry

WRONG = "sha256:" + "ab" * 32


def engine_with(registry: MemoryRegistry, observer: EngineObserver) -> UploadEngine:
    return UploadEngine(registry, engine_for(registry).settings, observer)


def three_layers(tmp_path: Path) -> tuple[list[Path], str]:
    good, digest = make_layer(tmp_path, "good.tar", 6 * MIB)
    (tmp_path / "good.tar.sha256").write_text(digest.upper().replace("SHA256:", "sha256:"))
    wrong, _ = make_layer(tmp_path, "wrong.tar", 1000)
    (tmp_path / "wrong.tar.sha256").write_text(WRONG)
    garbled, _ = make_layer(tmp_path, "garbled.tar", 1000)
    (tmp_path / "garbled.tar.sha256").write_text("sha256:")
    return [good, wrong, garbled], digest


@pytest.mark.usefixtures("no_hash_pass")
async def test_claims_refusals_and_results_in_the_files_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = MemoryRegistry()
    paths, digest = three_layers(tmp_path)
    layers = LayerJobs.of(paths, "team/app")
    assert [job.claimed_digest for job in layers.jobs] == [digest, WRONG, None]

    engine = engine_with(registry, LinePrinter(as_json=False))
    results = await layers.push(engine)

    assert [r.job.path.name for r in results] == ["good.tar", "wrong.tar", "garbled.tar"]
    assert [r.outcome for r in results] == [Outcome.UPLOADED, Outcome.FAILED, Outcome.FAILED]
    assert registry.layers[digest] == paths[0].read_bytes()
    assert results[1].error is not None
    assert results[1].error.code == "DigestMismatch"
    assert "as its sidecar wrong.tar.sha256 says" in results[1].error.message
    assert results[2].error is not None
    assert results[2].error.code == "InvalidSidecar"
    assert results[2].error.repository == "team/app"
    assert WRONG not in registry.layers  # never completed under the claim
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"failed   {paths[2]}: its sidecar garbled.tar.sha256 holds")
    assert any("as its sidecar wrong.tar.sha256 says" in line for line in printed)


async def test_the_live_display_shows_a_refused_layer_and_the_sidecars_mismatch(
    tmp_path: Path,
) -> None:
    registry = MemoryRegistry()
    paths, _ = three_layers(tmp_path)
    layers = LayerJobs.of(paths, "team/app")
    screen = io.StringIO()
    display = PushProgress(layers.jobs, Console(file=screen, width=400))
    with display:
        engine = engine_with(registry, display)
        await layers.push(engine)
    shown = screen.getvalue()
    assert "[InvalidSidecar]" in shown
    assert "as its sidecar wrong.tar.sha256 says" in shown
