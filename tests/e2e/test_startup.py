"""Each subcommand loads only what it uses: --version and status never load the network stack."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("botocore", "aiobotocore", "aiohttp", "pydantic", "uploaderd.localregistry", "rich")

PROBE = """
import json, sys
from uploaderd.cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded_by(*argv: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=False
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["status"], set(report["modules"])


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["status", "--help"]])
def test_version_and_help_load_nothing_heavy(argv: list[str]) -> None:
    status, modules = loaded_by(*argv)
    assert status == 0
    assert heavy_in(modules) == []


def test_status_reads_the_journal_without_the_network_stack(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "journal.sqlite").close()
    status, modules = loaded_by("status", "--state-dir", str(tmp_path), "--json")
    assert status == 0
    assert heavy_in(modules) == []
    assert "uploaderd.daemon.journal" in modules  # it did read the journal


def test_push_loads_only_the_backend_it_uses() -> None:
    _, modules = loaded_by("push", "--help")
    assert "uploaderd.registry.ecr" not in modules  # chosen when the push runs, not before
    assert "uploaderd.localregistry" not in modules
