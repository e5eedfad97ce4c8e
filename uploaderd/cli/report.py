"""How ``uploaderd push`` tells people and machines what happened to each layer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from uploaderd.model import LayerResult, Outcome
from uploaderd.sizes import MIB


def result_record(result: LayerResult) -> dict[str, Any]:
    """The fields a machine reading ``--json`` output needs, one object per layer."""
    record: dict[str, Any] = {
        "file": str(result.job.path),
        "repository": result.job.repository,
        "outcome": result.outcome.value,
        "digest": result.digest,
        "size": result.size,
        "seconds": round(result.seconds, 3),
        "mib_per_second": round(result.mib_per_second, 2),
        "attempts": result.attempts,
    }
    if result.error is not None:
        record["error"] = {"code": result.error.code, "message": result.error.message}
    return record


def result_line(result: LayerResult) -> str:
    """One human line: outcome, digest, size, time and rate, or the error and what to do."""
    if result.error is not None:
        return f"failed   {result.job.path}: {result.error.message} [{result.error.code}]"
    rate = f" {result.mib_per_second:.1f} MiB/s" if result.outcome is Outcome.UPLOADED else ""
    return (
        f"{result.outcome.value:<8} {result.digest} {result.size} bytes "
        f"{result.seconds:.2f}s{rate} {result.job.path}"
    )


def summary_line(results: Sequence[LayerResult], seconds: float) -> str:
    """Totals for the whole run, rate counted over the bytes actually sent."""
    outcomes = Counter(result.outcome for result in results)
    sent = sum(result.size for result in results if result.outcome is Outcome.UPLOADED)
    rate = sent / MIB / seconds if seconds > 0 else 0.0
    return (
        f"{len(results)} layers: {outcomes[Outcome.UPLOADED]} uploaded, "
        f"{outcomes[Outcome.EXISTS]} already present, {outcomes[Outcome.FAILED]} failed; "
        f"{sent / MIB:.1f} MiB sent in {seconds:.2f}s ({rate:.1f} MiB/s)"
    )
