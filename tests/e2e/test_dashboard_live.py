"""Every series the Grafana dashboard and the alerts query is in a real daemon's scrape.

tests/deploy checks the names against a list written by hand; this checks them against
what ``uploaderd run`` really exports once it has pushed a layer and retried a request,
so a renamed metric, a lost ``_total`` or a label-only series that never appears fails
here instead of as an empty panel or a silent alert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.test_deploy_files import ALERTS, DASHBOARD, alert_rules, exprs, rule_expr
from tests.deploy.test_deploy_files import metric_names as promql_metric_names
from tests.e2e.conftest import start_registry
from tests.e2e.daemon import start_daemon
from tests.helpers import make_layer

MIB = 1024 * 1024
pytestmark = pytest.mark.e2e

# Made by Prometheus itself for every target, never by the target.
PROMETHEUS_MADE = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Scrape:
    """What one GET /metrics of a live daemon exposed."""

    samples: frozenset[str]  # sample names as Prometheus stores them: ..._total, ..._bucket
    families: dict[str, str]  # family name -> type ("counter", "histogram", ...)

    def has(self, name: str) -> bool:
        if name in self.samples:
            return True
        for suffix in HISTOGRAM_SUFFIXES:
            base = name.removesuffix(suffix)
            if base != name and self.families.get(base) == "histogram":
                return True
        return False


@pytest.fixture(scope="module")
def live_scrape(tmp_path_factory: pytest.TempPathFactory) -> Scrape:
    tmp_path = tmp_path_factory.mktemp("dashboard_live")
    registry = start_registry(tmp_path / "registry", "--auto-create-repositories")
    try:
        # Throttling the registry makes the daemon retry, so the series labelled by
        # reason and error code exist; botocore's own retries are turned off so that
        # uploaderd, not botocore, sees the ThrottlingException.
        registry.set_faults("throttle-every=3")
        daemon = start_daemon(
            tmp_path, registry.url, "--part-size", "5MiB", env={"AWS_MAX_ATTEMPTS": "1"}
        )
        try:
            make_layer(daemon.watch / "team/app", "layer.tar", 6 * MIB)
            daemon.wait_until(lambda: len(daemon.done_files()) == 1, 60, "the layer uploaded")
            text = daemon.metrics()
        finally:
            assert daemon.stop() == 0, daemon.log[-5000:]
    finally:
        registry.process.terminate()
        registry.process.wait(timeout=10)
    families = list(text_string_to_metric_families(text))
    return Scrape(
        samples=frozenset(s.name for f in families for s in f.samples),
        families={f.name: f.type for f in families},
    )


def dashboard_exprs() -> list[str]:
    return list(exprs(json.loads(DASHBOARD.read_text())))


def alert_exprs() -> dict[str, str]:
    return {name: rule_expr(rule) for name, rule in alert_rules(ALERTS.read_text()).items()}


def missing_from(scrape: Scrape, expr: str) -> set[str]:
    return {m for m in promql_metric_names(expr) - PROMETHEUS_MADE if not scrape.has(m)}


def test_the_scrape_shows_the_push_and_the_retry(live_scrape: Scrape) -> None:
    """Guards the tests below: a scrape of an idle daemon would lack the labelled series."""
    assert {
        "uploaderd_uploaded_bytes_total",
        "uploaderd_layers_total",
        "uploaderd_retries_total",
        "uploaderd_registry_errors_total",
        "uploaderd_part_upload_seconds_bucket",
    } <= live_scrape.samples
    assert live_scrape.has("uploaderd_layer_upload_seconds_count")
    assert not live_scrape.has("uploaderd_uploaded_bytes_bucket")  # a counter, no buckets


def test_every_dashboard_metric_is_in_a_live_scrape(live_scrape: Scrape) -> None:
    found = dashboard_exprs()
    assert len(found) >= 12
    used = set().union(*(promql_metric_names(e) for e in found)) - PROMETHEUS_MADE
    assert len(used) >= 12, used
    for expr in found:
        missing = missing_from(live_scrape, expr)
        assert not missing, f"dashboard query {expr!r} selects what the daemon lacks: {missing}"


def test_every_alert_metric_is_in_a_live_scrape(live_scrape: Scrape) -> None:
    rules = alert_exprs()
    assert len(rules) >= 7
    for name, expr in rules.items():
        missing = missing_from(live_scrape, expr)
        assert not missing, f"alert {name} selects what the daemon lacks: {missing}"


def test_the_name_extraction_sees_through_promql() -> None:
    expr = (
        "histogram_quantile(0.5, sum by (le) (rate(uploaderd_part_upload_seconds_bucket"
        '{instance=~"$instance"}[$__rate_interval]))) and on (job) time() - up{job="x"}'
    )
    assert promql_metric_names(expr) == {"uploaderd_part_upload_seconds_bucket", "up"}
    scrape = Scrape(frozenset({"a_total"}), {"h": "histogram", "a": "counter"})
    assert scrape.has("h_bucket")
    assert scrape.has("h_sum")
    assert not scrape.has("a_bucket")
    assert not scrape.has("h")
