"""deploy/install.sh, run for real into a throwaway root (``--root``).

The script chowns to the uploaderd user and writes a user database, so these tests need
root, as CI has; elsewhere they are skipped.  Every test but one passes ``--no-venv``;
that one creates the venv with pip from this checkout and runs the installed command.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.test_deploy_files import unit_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL = DEPLOY / "install.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="install.sh chowns to the uploaderd user: needs root (CI is)"
)

SPOOL = "var/spool/uploaderd"
STATE = "var/lib/uploaderd"
ETC = "etc/uploaderd"
CONFIG = "etc/uploaderd/config.toml"
VENV = "opt/uploaderd/venv"
UNIT = "etc/systemd/system/uploaderd.service"
SYSUSERS = "etc/sysusers.d/uploaderd.conf"
TMPFILES = "etc/tmpfiles.d/uploaderd.conf"


def install(root: Path, *options: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
    return subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), *options],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def installed(root: Path, *options: str) -> str:
    result = install(root, *options)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int
    home: str
    shell: str


def account(root: Path) -> Account | None:
    groups = {}
    if (root / "etc/group").exists():
        for line in (root / "etc/group").read_text().splitlines():
            name, _, gid, _ = line.split(":", 3)
            groups[name] = int(gid)
    if not (root / "etc/passwd").exists():
        return None
    for line in (root / "etc/passwd").read_text().splitlines():
        name, _, uid, gid, _, home, shell = line.split(":")
        if name == "uploaderd":
            assert groups.get("uploaderd") == int(gid), "primary group uploaderd"
            return Account(int(uid), int(gid), home, shell)
    return None


def mode_and_owner(path: Path) -> tuple[int, int, int]:
    found = path.stat()
    return stat.S_IMODE(found.st_mode), found.st_uid, found.st_gid


def check_installed_tree(root: Path) -> Account:
    user = account(root)
    assert user is not None, "no uploaderd user in <root>/etc/passwd"
    assert 0 < user.uid < 1000, "a system user"
    assert user.shell == "/usr/sbin/nologin"
    assert mode_and_owner(root / SPOOL) == (0o2770, user.uid, user.gid)
    assert mode_and_owner(root / STATE) == (0o700, user.uid, user.gid)
    assert mode_and_owner(root / ETC) == (0o750, 0, user.gid)
    assert mode_and_owner(root / CONFIG) == (0o640, 0, user.gid)
    assert mode_and_owner(root / UNIT) == (0o644, 0, 0)
    assert (root / UNIT).read_bytes() == (DEPLOY / "uploaderd.service").read_bytes()
    assert (root / SYSUSERS).read_bytes() == (DEPLOY / "uploaderd.sysusers.conf").read_bytes()
    assert (root / TMPFILES).read_bytes() == (DEPLOY / "uploaderd.tmpfiles.conf").read_bytes()
    return user


def test_install_twice_converges_and_keeps_a_modified_config(tmp_path: Path) -> None:
    first = installed(tmp_path, "--no-venv")
    assert "systemctl daemon-reload && systemctl enable --now uploaderd" in first
    user = check_installed_tree(tmp_path)
    assert (tmp_path / CONFIG).read_bytes() == (DEPLOY / "config.example.toml").read_bytes()
    assert not (tmp_path / VENV).exists()

    (tmp_path / CONFIG).write_text('watch = "/srv/spool"\n')
    (tmp_path / SPOOL).chmod(0o755)  # drift the second run must put right
    os.chown(tmp_path / STATE, 0, 0)
    (tmp_path / SPOOL / "team/app").mkdir(parents=True)
    (tmp_path / SPOOL / "team/app/layer.tar").write_bytes(b"queued")

    second = installed(tmp_path, "--no-venv")
    assert "kept /etc/uploaderd/config.toml" in second
    assert check_installed_tree(tmp_path) == user, "same user, same ids"
    assert (tmp_path / CONFIG).read_text() == 'watch = "/srv/spool"\n'
    assert (tmp_path / SPOOL / "team/app/layer.tar").read_bytes() == b"queued"
    passwd = (tmp_path / "etc/passwd").read_text()
    assert passwd.count("uploaderd:") == 1


def test_uninstall_removes_program_unit_and_user_and_keeps_the_data(tmp_path: Path) -> None:
    installed(tmp_path, "--no-venv")
    (tmp_path / SPOOL / "team").mkdir()
    (tmp_path / SPOOL / "team/queued.tar").write_bytes(b"not pushed yet")
    (tmp_path / STATE / "journal.sqlite").write_bytes(b"journal")
    (tmp_path / CONFIG).write_text("concurrency = 8\n")
    # Stand-ins for what `systemctl enable` and a real venv leave behind.
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants/uploaderd.service"
    wants.parent.mkdir(parents=True)
    wants.symlink_to("/etc/systemd/system/uploaderd.service")
    (tmp_path / VENV / "bin").mkdir(parents=True)

    result = install(tmp_path, "--uninstall")
    assert result.returncode == 0, result.stdout + result.stderr

    assert account(tmp_path) is None
    assert "uploaderd:" not in (tmp_path / "etc/group").read_text()
    for gone in (UNIT, SYSUSERS, TMPFILES, "opt/uploaderd"):
        assert not (tmp_path / gone).exists(), gone
    assert not wants.is_symlink()
    assert (tmp_path / SPOOL / "team/queued.tar").read_bytes() == b"not pushed yet"
    assert (tmp_path / STATE / "journal.sqlite").read_bytes() == b"journal"
    assert (tmp_path / CONFIG).read_text() == "concurrency = 8\n"

    again = install(tmp_path, "--uninstall")
    assert again.returncode == 0, again.stdout + again.stderr
    installed(tmp_path, "--no-venv")  # and back: the kept data is handed to the new user
    check_installed_tree(tmp_path)
    assert (tmp_path / CONFIG).read_text() == "concurrency = 8\n"


def test_installed_modes_agree_with_unit_and_tmpfiles(tmp_path: Path) -> None:
    """The script, the unit's StateDirectoryMode= and tmpfiles.d must not disagree."""
    installed(tmp_path, "--no-venv")
    unit = unit_settings((tmp_path / UNIT).read_text())
    assert unit["Service.User"] == ["uploaderd"]
    assert unit["Service.ExecStart"][0].startswith(f"/{VENV}/bin/uploaderd ")
    assert unit["Service.StateDirectoryMode"] == [f"0{mode_and_owner(tmp_path / STATE)[0]:o}"]
    assert {f"/{SPOOL}", f"/{STATE}"} <= set(unit["Service.ReadWritePaths"][0].split())
    user = check_installed_tree(tmp_path)
    ids = {"root": 0, "uploaderd": user.uid}
    group_ids = {"root": 0, "uploaderd": user.gid}
    checked = 0
    for line in (tmp_path / TMPFILES).read_text().splitlines():
        if line.startswith("d "):
            _, path, mode, owner, group, _ = line.split()
            expected = (int(mode, 8), ids[owner], group_ids[group])
            assert mode_and_owner(tmp_path / path.lstrip("/")) == expected, line
            checked += 1
    assert checked == 2


def test_bad_options_are_refused(tmp_path: Path) -> None:
    unknown = install(tmp_path, "--frobnicate")
    assert unknown.returncode == 2
    assert "unknown option --frobnicate" in unknown.stderr
    assert "--uninstall" in unknown.stderr  # the usage text
    missing = install(tmp_path / "absent", "--no-venv")
    assert missing.returncode == 1
    assert "not a directory" in missing.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_venv_runs_uploaderd_from_this_checkout(tmp_path: Path) -> None:
    """The slow one: python -m venv and pip install of the checkout, twice, then uninstall."""
    python = shutil.which("python3") or sys.executable
    installed(tmp_path, "--python", python)
    uploaderd = tmp_path / VENV / "bin/uploaderd"
    help_text = subprocess.run(
        [str(uploaderd), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for command in ("push", "run", "local-registry", "status"):
        assert command in help_text
    where = subprocess.run(
        [str(tmp_path / VENV / "bin/python"), "-c", "import uploaderd; print(uploaderd.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / VENV), "installed, not the editable checkout"
    assert not (ROOT / "build").exists(), "pip built inside the checkout"

    second = installed(tmp_path, "--python", python)
    assert "installed uploaderd" in second
    assert uploaderd.exists()

    result = install(tmp_path, "--uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "opt/uploaderd").exists()
