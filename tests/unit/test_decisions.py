"""How a file's push ends: a pure function of the error, the attempts and the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from uploaderd.daemon.decisions import Done, Fail, ImageWait, Pause, Postpone, backoff, decide
from uploaderd.errors import (
    CredentialsError,
    ErrorCode,
    ImageError,
    ImageIncompleteError,
    JournalError,
    LayerChangedError,
    LayerFileError,
    PartOutOfOrderError,
    RegistryError,
    TransientRegistryError,
    UploaderError,
    UploadNotFoundError,
)
from uploaderd.model import Outcome


def highest(low: float, high: float) -> float:
    return high


def ends(error: UploaderError | None, attempts: int = 1) -> object:
    return decide(
        error,
        Outcome.FAILED if error else Outcome.UPLOADED,
        attempts=attempts,
        retry_max_delay=300,
        settle_seconds=2,
        jitter=highest,
    )


def test_success_is_done_with_its_outcome() -> None:
    assert decide(None, Outcome.EXISTS, attempts=1, retry_max_delay=1, settle_seconds=1) == Done(
        Outcome.EXISTS
    )


@pytest.mark.parametrize(
    "error",
    [
        TransientRegistryError("throttled", code="ThrottlingException"),
        UploadNotFoundError("forgotten", code=ErrorCode.UPLOAD_NOT_FOUND),
        PartOutOfOrderError("moved", next_byte=5),
        CredentialsError("none yet", code=ErrorCode.NO_CREDENTIALS),
    ],
)
def test_what_a_later_try_can_cure_is_postponed_with_backoff(error: UploaderError) -> None:
    assert ends(error, attempts=3) == Postpone(error, 8.0)
    assert ends(error, attempts=30) == Postpone(error, 300.0)  # capped


def test_a_file_still_being_written_waits_its_settle_time() -> None:
    error = LayerChangedError("changed", code=ErrorCode.FILE_CHANGED)
    assert ends(error, attempts=7) == Postpone(error, 2)


@pytest.mark.parametrize(
    "error",
    [
        RegistryError("no such repository", code="RepositoryNotFoundException"),
        LayerFileError("empty", code=ErrorCode.EMPTY_LAYER),
        ImageError("missing blob", code=ErrorCode.MISSING_BLOB),
    ],
)
def test_what_no_retry_cures_fails(error: UploaderError) -> None:
    assert ends(error) == Fail(error)


def test_a_journal_that_cannot_record_the_ending_pauses_the_intake() -> None:
    error = JournalError("disk full", code=ErrorCode.JOURNAL_UNWRITABLE)
    assert ends(error) == Pause(str(error))


def test_backoff_doubles_and_is_jittered_below_its_ceiling() -> None:
    delays = [backoff(attempts, 300, highest) for attempts in range(1, 10)]
    assert delays == [2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert backoff(4, 300, lambda low, high: low) == 8  # jitter picks from the upper half


def waiting(error: UploaderError, unchanged_for: float, attempts: int = 1) -> object:
    return decide(
        error,
        Outcome.FAILED,
        attempts=attempts,
        retry_max_delay=300,
        settle_seconds=2,
        jitter=highest,
        image=ImageWait(unchanged_for, timeout=600),
    )


@pytest.mark.parametrize(
    "error",
    [
        ImageIncompleteError("not there", code=ErrorCode.MISSING_BLOB, path=Path("blobs/x")),
        ImageIncompleteError("short", code=ErrorCode.SIZE_MISMATCH),
        ImageIncompleteError("without index.json", code=ErrorCode.INVALID_IMAGE),
    ],
)
def test_an_incomplete_image_directory_waits_while_it_may_still_be_written(
    error: UploaderError,
) -> None:
    assert waiting(error, unchanged_for=5, attempts=3) == Postpone(error, 8.0)
    assert waiting(error, unchanged_for=597, attempts=9) == Postpone(error, 3.0)  # timeout first


def test_an_image_directory_unchanged_for_the_timeout_fails_naming_what_is_missing() -> None:
    error = ImageIncompleteError(
        "the image names this blob but it is not there",
        code=ErrorCode.MISSING_BLOB,
        path=Path("/spool/team/img/blobs/sha256/abc"),
    )
    decision = waiting(error, unchanged_for=601)
    assert isinstance(decision, Fail)
    assert decision.error.code == ErrorCode.IMAGE_INCOMPLETE
    assert "blobs/sha256/abc" in decision.error.message
    assert "601 s" in decision.error.message
    assert "image_settle_timeout" in decision.error.message


def test_an_incomplete_archive_or_push_fails_at_once_and_corrupt_images_never_wait() -> None:
    incomplete = ImageIncompleteError("not there", code=ErrorCode.MISSING_BLOB)
    assert ends(incomplete) == Fail(incomplete)  # no directory to wait for: an archive
    corrupt = ImageError("hashes to another digest", code=ErrorCode.DIGEST_MISMATCH)
    assert waiting(corrupt, unchanged_for=0) == Fail(corrupt)


def test_an_incomplete_image_that_changed_during_its_push_is_tried_after_the_settle_time() -> None:
    error = ImageIncompleteError("not there", code=ErrorCode.MISSING_BLOB)
    decision = decide(
        error,
        Outcome.FAILED,
        attempts=9,
        retry_max_delay=300,
        settle_seconds=2,
        jitter=highest,
        image=ImageWait(0.5, timeout=600, changed=True),
    )
    assert decision == Postpone(error, 2)
