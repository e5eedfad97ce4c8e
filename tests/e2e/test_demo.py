"""The README's first set-up command must keep working at every commit."""

import subprocess
import sys

import pytest

from tests.e2e.conftest import uploaderd_env


@pytest.mark.e2e
def test_demo_runs_the_daemon_and_verifies_every_layer() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "uploaderd", "demo"],
        capture_output=True,
        text=True,
        env=uploaderd_env(),
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("verified") == 4
    assert "MISMATCH" not in done.stdout
    assert "demo succeeded" in done.stdout
    assert "exit status 0" in done.stdout
