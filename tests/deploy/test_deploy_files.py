"""The deployment artifacts in deploy/, checked with the tools that will consume them.

systemd-analyze, systemd-sysusers and systemd-tmpfiles (Debian package ``systemd``) and
promtool (Debian package ``prometheus``) are required: .ci/run installs them, so a
missing tool fails these tests instead of skipping them, which would hide a broken unit
or alert behind a green run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from uploaderd.settings import DaemonSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "uploaderd.service"
CONFIG_EXAMPLE = DEPLOY / "config.example.toml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "uploaderd.json"

# `uploaderd run` settings and their defaults (None: no default, or unset by default).
DOCUMENTED_SETTINGS: dict[str, object] = {
    "watch": "/var/spool/uploaderd",
    "state_dir": "/var/lib/uploaderd",
    "endpoint_url": None,
    "region": None,
    "registry_id": None,
    "ecr_public": False,
    "ecr_quota_share": 1.0,
    "concurrency": "auto",
    "max_concurrency": 16,
    "memory_budget": "256MiB",
    "part_size": None,
    "metrics_address": "127.0.0.1:9464",
    "settle_seconds": 1.0,
    "image_settle_timeout": 600.0,
    "rescan_interval": 60.0,
    "delete_uploaded": False,
    "drain_timeout": 30.0,
    "log_format": "logfmt",
    "max_attempts": 8,
    "request_timeout": 120.0,
    "overlap_threshold": "64MiB",
    "retry_max_delay": 300.0,
    "registry": None,
    "insecure_registry": False,
    "registry_username": None,
}

# What the daemon exports.  Histograms also expose _bucket, _sum, _count and _created.
EXPORTED_METRICS = {
    "uploaderd_uploaded_bytes_total",
    "uploaderd_layers_total",
    "uploaderd_retries_total",
    "uploaderd_client_retries_total",
    "uploaderd_registry_errors_total",
    "uploaderd_layers_in_flight",
    "uploaderd_queue_files",
    "uploaderd_queue_bytes",
    "uploaderd_readahead_bytes",
    "uploaderd_oldest_queued_file_age_seconds",
    "uploaderd_last_progress_timestamp_seconds",
    "uploaderd_watcher_up",
    "uploaderd_concurrency_limit",
    "uploaderd_registry_reachable",
    "uploaderd_build_info",
}
EXPORTED_HISTOGRAMS = {"uploaderd_part_upload_seconds", "uploaderd_layer_upload_seconds"}
# From prometheus-client's process collector and from Prometheus itself.
OTHER_METRICS = {"process_resident_memory_bytes", "process_start_time_seconds", "up"}

ALERT_NAMES = {
    "UploaderdDown",
    "UploaderdQueueStuck",
    "UploaderdNoProgress",
    "UploaderdErrorRatio",
    "UploaderdOldestFileTooOld",
    "UploaderdRetryStorm",
    "UploaderdRegistryUnreachable",
}


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(
            f"{name} is not installed; install it with "
            f"`apt-get install -y --no-install-recommends {package}` (.ci/run does)"
        )
    return path


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0"},
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr).strip()


# --- systemd unit ----------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value, in order (systemd allows a key more than once)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def only(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key)
    assert values, f"{UNIT.name} has no {key.replace('.', ' ')}="
    return values[-1]


def seconds(span: str) -> float:
    """A systemd time span as used in the unit: "60", "60s", "1min", "2min 30s"."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(number) * units[unit]
    return total


def installed_uploaderd() -> Path:
    beside_python = Path(sys.executable).parent / "uploaderd"
    if beside_python.exists():
        return beside_python
    found = shutil.which("uploaderd")
    if found is None:
        pytest.fail("uploaderd is not installed in this environment: pip install -e .")
    return Path(found)


def unit_for_this_machine(directory: Path, extra: str = "") -> Path:
    """The unit with ExecStart= pointing at the uploaderd installed here.

    verify checks that the ExecStart binary exists; /opt/uploaderd/venv exists only on a
    deployed host, and its absence says nothing about the unit file itself.
    """
    text = UNIT.read_text()
    deployed = "ExecStart=/opt/uploaderd/venv/bin/uploaderd "
    assert deployed in text
    text = text.replace(deployed, f"ExecStart={installed_uploaderd()} ") + extra
    path = directory / UNIT.name
    path.write_text(text)
    return path


def test_unit_is_a_sandboxed_notify_service() -> None:
    unit = unit_settings(UNIT.read_text())
    assert only(unit, "Service.Type") == "notify"
    assert only(unit, "Service.NotifyAccess") == "main"
    assert seconds(only(unit, "Service.WatchdogSec")) > 0
    assert only(unit, "Service.ExecStart") == (
        "/opt/uploaderd/venv/bin/uploaderd run --config /etc/uploaderd/config.toml"
    )
    assert only(unit, "Service.ExecReload") == "/bin/kill -HUP $MAINPID"
    assert only(unit, "Service.User") not in {"root", "0"}
    assert only(unit, "Service.Group") not in {"root", "0"}
    assert only(unit, "Service.NoNewPrivileges") == "yes"
    assert only(unit, "Service.ProtectSystem") == "strict"
    assert only(unit, "Service.CapabilityBoundingSet") == ""
    assert only(unit, "Service.UMask") == "0077"
    assert only(unit, "Service.EnvironmentFile").startswith("-")
    writable = only(unit, "Service.ReadWritePaths").split()
    config = tomllib.loads(CONFIG_EXAMPLE.read_text())
    assert {config["watch"], config["state_dir"]} <= set(writable)


def test_stop_timeout_outlasts_the_drain_timeout() -> None:
    """systemd must not SIGKILL a daemon that is still draining or saving its state."""
    unit = unit_settings(UNIT.read_text())
    drain = tomllib.loads(CONFIG_EXAMPLE.read_text())["drain_timeout"]
    assert seconds(only(unit, "Service.TimeoutStopSec")) >= drain + 10


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    result = run(analyze, "verify", "--man=no", unit_for_this_machine(tmp_path), cwd=tmp_path)
    # verify exits 0 on many problems (unknown keys, bad values are "ignoring" warnings), so
    # any word it prints about the unit is a failure.
    assert result.returncode == 0, output_of(result)
    assert output_of(result) == "", output_of(result)


def test_systemd_analyze_verify_would_report_a_bad_line(tmp_path: Path) -> None:
    """Guards the test above: an empty output must mean "checked", not "not looked at"."""
    analyze = require_tool("systemd-analyze", "systemd")
    unit = unit_for_this_machine(tmp_path, extra="[Service]\nProtectSystme=strict\n")
    result = run(analyze, "verify", "--man=no", unit, cwd=tmp_path)
    assert "ProtectSystme" in output_of(result)


def test_sandbox_exposure_stays_low(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    unit = unit_for_this_machine(tmp_path)
    result = run(analyze, "security", "--offline=yes", "--no-pager", unit, cwd=tmp_path)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output_of(result))
    assert found, output_of(result)
    # 1.5 when written; 10 is fully exposed.  A rise means a sandboxing line was lost.
    assert float(found.group(1)) <= 2.0, output_of(result)


def test_sysusers_creates_a_system_user_without_login(tmp_path: Path) -> None:
    sysusers = require_tool("systemd-sysusers", "systemd")
    (tmp_path / "etc").mkdir()
    result = run(sysusers, f"--root={tmp_path}", DEPLOY / "uploaderd.sysusers.conf")
    assert result.returncode == 0, output_of(result)
    users = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    user = users[only(unit_settings(UNIT.read_text()), "Service.User")]
    assert 0 < int(user[2]) < 1000
    assert user[6] == "/usr/sbin/nologin"


def test_tmpfiles_creates_the_spool_for_the_service_group(tmp_path: Path) -> None:
    sysusers = require_tool("systemd-sysusers", "systemd")
    tmpfiles = require_tool("systemd-tmpfiles", "systemd")
    (tmp_path / "etc").mkdir()
    (tmp_path / "var/spool").mkdir(parents=True)
    assert run(sysusers, f"--root={tmp_path}", DEPLOY / "uploaderd.sysusers.conf").returncode == 0
    result = run(tmpfiles, f"--root={tmp_path}", "--create", DEPLOY / "uploaderd.tmpfiles.conf")
    assert result.returncode == 0, output_of(result)
    spool = tmp_path / tomllib.loads(CONFIG_EXAMPLE.read_text())["watch"].lstrip("/")
    assert spool.is_dir()
    assert spool.stat().st_mode & 0o7777 == 0o2770


# --- configuration example -------------------------------------------------------------------


def test_config_example_sets_only_documented_keys_to_their_defaults() -> None:
    config = tomllib.loads(CONFIG_EXAMPLE.read_text())
    assert set(config) <= set(DOCUMENTED_SETTINGS), set(config) - set(DOCUMENTED_SETTINGS)
    for key, value in config.items():
        assert value == DOCUMENTED_SETTINGS[key], key


def test_config_example_mentions_every_key() -> None:
    """Keys without a default are shown commented out, so an operator sees all of them."""
    text = CONFIG_EXAMPLE.read_text()
    for key in DOCUMENTED_SETTINGS:
        assert re.search(rf"^(# )?{key} = ", text, re.MULTILINE), f"{key} is not in the example"


def test_config_example_loads_with_the_daemons_settings() -> None:
    settings = load_settings(DaemonSettings, {}, config_file=CONFIG_EXAMPLE, environ={})
    assert str(settings.watch) == DOCUMENTED_SETTINGS["watch"]


# --- Prometheus rules ------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    promtool = require_tool("promtool", "prometheus")
    result = run(promtool, "check", "rules", ALERTS)
    assert result.returncode == 0, output_of(result)
    assert "SUCCESS" in output_of(result)


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    promtool = require_tool("promtool", "prometheus")
    result = run(promtool, "test", "rules", ALERTS_TEST)
    assert result.returncode == 0, output_of(result)
    assert "SUCCESS" in output_of(result)


def alert_rules(text: str) -> dict[str, str]:
    """Alert name -> its rule's YAML text.

    A line-based split, enough for this file's layout (PyYAML is not a dependency);
    promtool check rules proves the YAML itself is valid.
    """
    chunks = re.split(r"^\s*- alert: *", text, flags=re.MULTILINE)[1:]
    return {chunk.split("\n", 1)[0].strip(): chunk for chunk in chunks}


def rule_expr(rule: str) -> str:
    block = re.search(r"^( *)expr: \|\n((?:\1  .*\n)+)", rule, re.MULTILINE)
    if block:
        return block.group(2)
    line = re.search(r"^ *expr: (.+)$", rule, re.MULTILINE)
    assert line, f"no expr in {rule!r}"
    return line.group(1)


def test_every_alert_has_severity_summary_and_description() -> None:
    rules = alert_rules(ALERTS.read_text())
    assert set(rules) >= ALERT_NAMES, ALERT_NAMES - set(rules)
    for name, rule in rules.items():
        assert re.search(r"^ +severity: (critical|warning)$", rule, re.MULTILINE), name
        assert re.search(r"^ +summary: ", rule, re.MULTILINE), name
        assert re.search(r"^ +description: ", rule, re.MULTILINE), name


def test_every_alert_is_unit_tested() -> None:
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST.read_text()))
    assert set(alert_rules(ALERTS.read_text())) <= tested


# --- metric names in expressions -------------------------------------------------------------

PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (function names and labels excluded)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: regexes, label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    # label lists, so that `sum by (le) (` reads as the call `sum (`
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(\s*\()?", expr):
        if match.group(2) is None and match.group(1).lower() not in PROMQL_WORDS:
            names.add(match.group(1))
    return names


def known_metric(name: str) -> bool:
    if name in EXPORTED_METRICS | OTHER_METRICS:
        return True
    base, _, suffix = name.rpartition("_")
    return base in EXPORTED_HISTOGRAMS and suffix in {"bucket", "sum", "count", "created"}


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le) (rate(uploaderd_part_upload_seconds_bucket"
        '{instance=~"$instance"}[$__rate_interval]))) and on (instance) up{job="x"} == 0'
    )
    assert metric_names(expr) == {"uploaderd_part_upload_seconds_bucket", "up"}


def test_alerts_use_only_exported_metrics() -> None:
    for name, rule in alert_rules(ALERTS.read_text()).items():
        unknown = {m for m in metric_names(rule_expr(rule)) if not known_metric(m)}
        assert not unknown, f"{name} uses metrics uploaderd does not export: {unknown}"


# --- Grafana dashboard -----------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def exprs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs(item)


def test_dashboard_uses_only_exported_metrics() -> None:
    found = list(exprs(dashboard()))
    assert len(found) >= 12
    for expr in found:
        unknown = {m for m in metric_names(expr) if not known_metric(m)}
        assert not unknown, f"{expr!r} uses metrics uploaderd does not export: {unknown}"


def test_dashboard_covers_every_exported_metric_family() -> None:
    used = set().union(*(metric_names(e) for e in exprs(dashboard())))
    used_bases = {m.removesuffix("_bucket") for m in used}
    missing = (EXPORTED_METRICS | EXPORTED_HISTOGRAMS) - used_bases - {"uploaderd_build_info"}
    assert not missing, missing


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query, Grafana's variables replaced by what they expand to."""
    promtool = require_tool("promtool", "prometheus")
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for number, expr in enumerate(exprs(dashboard())):
        concrete = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
        concrete = re.sub(r"\$\{?\w+\}?", ".*", concrete)
        rules += [f"      - alert: Panel{number}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = run(promtool, "check", "rules", path)
    assert result.returncode == 0, output_of(result)


def test_dashboard_variables_and_datasource() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    repository = variables["repository"]
    assert repository["query"]["query"] == "label_values(uploaderd_layers_total, repository)"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
