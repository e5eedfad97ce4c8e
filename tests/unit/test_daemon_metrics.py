"""The daemon's state gauges are read from the journal, the budget and the watcher per scrape."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from uploaderd.daemon.journal import Journal
from uploaderd.daemon.metrics import DaemonMetrics, DaemonStateCollector
from uploaderd.engine.budget import ByteBudget
from uploaderd.engine.limiter import AimdLimit, LayerLimit
from uploaderd.model import FileIdentity

MIB = 1024 * 1024
QUEUE_GAUGES = {
    "uploaderd_queue_files",
    "uploaderd_queue_bytes",
    "uploaderd_oldest_queued_file_age_seconds",
}


@dataclass
class Watcher:
    running: bool = True


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal.open(tmp_path / "journal.sqlite")
    yield opened
    opened.close()


def enqueue(journal: Journal, name: str, size: int) -> None:
    journal.enqueue(f"team/app/{name}", "team/app", FileIdentity(size, time.time_ns(), size))


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample of the exposition Prometheus would read, by name."""
    text = generate_latest(registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_queue_gauges_follow_the_journal_with_no_one_setting_them(journal: Journal) -> None:
    budget = ByteBudget(64 * MIB)
    await budget.acquire(5 * MIB)
    registry = CollectorRegistry()
    DaemonStateCollector(journal, budget, Watcher(), registry=registry)
    enqueue(journal, "a.tar", 3 * MIB)
    enqueue(journal, "b.tar", 7 * MIB)
    claimed = journal.claim_next(time.time())
    assert claimed is not None

    first = scrape(registry)
    assert first["uploaderd_queue_files"] == 2  # one waiting, one in flight
    assert first["uploaderd_queue_bytes"] == 10 * MIB
    assert 0 <= first["uploaderd_oldest_queued_file_age_seconds"] < 60
    assert first["uploaderd_readahead_bytes"] == 5 * MIB
    assert first["uploaderd_watcher_up"] == 1

    # Only the journal changes: the next scrape sees it.
    journal.finish(claimed.id, state="done", outcome="uploaded", destination="done/a.tar")
    enqueue(journal, "c.tar", 1)
    enqueue(journal, "d.tar", 2)
    second = scrape(registry)
    assert second["uploaderd_queue_files"] == 3
    assert second["uploaderd_queue_bytes"] == 7 * MIB + 3


async def test_budget_and_watcher_are_read_at_scrape_time(journal: Journal) -> None:
    budget, watcher = ByteBudget(64 * MIB), Watcher()
    registry = CollectorRegistry()
    DaemonStateCollector(journal, budget, watcher, registry=registry)
    assert scrape(registry)["uploaderd_readahead_bytes"] == 0
    assert scrape(registry)["uploaderd_oldest_queued_file_age_seconds"] == 0

    await budget.acquire(MIB)
    watcher.running = False
    samples = scrape(registry)
    assert samples["uploaderd_readahead_bytes"] == MIB
    assert samples["uploaderd_watcher_up"] == 0


def test_an_unreadable_journal_leaves_out_the_queue_samples_not_the_scrape(
    tmp_path: Path,
) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite")
    enqueue(journal, "a.tar", 100)
    registry = CollectorRegistry()
    DaemonStateCollector(journal, ByteBudget(MIB), Watcher(), registry=registry)
    assert set(scrape(registry)) >= QUEUE_GAUGES

    journal.close()  # every read now fails inside sqlite
    samples = scrape(registry)
    assert not QUEUE_GAUGES & set(samples)
    assert samples["uploaderd_watcher_up"] == 1
    assert samples["uploaderd_readahead_bytes"] == 0


def test_state_gauges_are_exported_as_before(journal: Journal) -> None:
    """Names, types and help are what dashboards, alerts and the README were written against."""
    metrics = DaemonMetrics()
    DaemonStateCollector(journal, ByteBudget(MIB), Watcher(), registry=metrics.registry)
    families = {
        family.name: (family.type, family.documentation)
        for family in text_string_to_metric_families(metrics.exposition().decode())
    }
    expected = {
        "uploaderd_queue_files": ("gauge", "Files queued or in flight"),
        "uploaderd_queue_bytes": ("gauge", "Bytes of files queued or in flight"),
        "uploaderd_oldest_queued_file_age_seconds": ("gauge", "Age of the oldest queued file"),
        "uploaderd_readahead_bytes": ("gauge", "Layer bytes held in memory (read-ahead)"),
        "uploaderd_watcher_up": ("gauge", "1 while the spool watcher runs"),
        "uploaderd_layers_in_flight": ("gauge", "Layers being pushed"),
        "uploaderd_registry_reachable": ("gauge", "1 when the registry answered lately"),
        "uploaderd_last_progress_timestamp_seconds": (
            "gauge",
            "Unix time of the last confirmed part or finished layer",
        ),
    }
    assert {name: families.get(name) for name in expected} == expected


def test_a_second_collector_of_the_same_names_is_refused(journal: Journal) -> None:
    registry = CollectorRegistry()
    DaemonStateCollector(journal, ByteBudget(MIB), Watcher(), registry=registry)
    with pytest.raises(ValueError, match="uploaderd_queue_files"):
        DaemonStateCollector(journal, ByteBudget(MIB), Watcher(), registry=registry)


async def test_the_concurrency_limit_is_read_at_scrape_time(journal: Journal) -> None:
    limit = LayerLimit.adaptive(AimdLimit(ceiling=16, budget_cap=6))
    registry = CollectorRegistry()
    DaemonStateCollector(journal, ByteBudget(MIB), Watcher(), limit=limit, registry=registry)
    assert scrape(registry)["uploaderd_concurrency_limit"] == 6  # the initial 8, within the cap
    limit.congested()
    assert scrape(registry)["uploaderd_concurrency_limit"] == 3
