"""One exception hierarchy and one vocabulary of codes for everything uploaderd reports.

Every error carries what an operator needs to act on it: the file, the
repository, a code, and a message that says what to do.  What happens next
is a property of the error's class, never of its code string:

* ``TransientRegistryError``: a later attempt of the same request can succeed
  (throttling, 5xx, a dropped connection); the engine retries the request
  with backoff.
* ``PartOutOfOrderError``, ``UploadNotFoundError``: the registry's upload is
  not where we thought; the layer push resynchronises or starts over.
* ``retry_later``: the file is worth another try later (any of the above
  that outlasted the engine's attempts, a file still being written, missing
  credentials); the daemon puts it back in the queue instead of failed/.

The codes operators see (``--json``, ``.error.json``, the ``reason`` and
``code`` metric labels, log lines) are uploaderd's own ``ErrorCode`` members,
or, for a refusal the registry itself names, the registry's own error name
(ECR's ``RepositoryNotFoundException``, an OCI registry's ``NAME_UNKNOWN``)
or the network library's exception name, passed through verbatim.
"""

from __future__ import annotations

import enum
from pathlib import Path


class ErrorCode(enum.StrEnum):
    """The codes uploaderd itself assigns; the README's error table lists each one."""

    # the command line and the settings
    USAGE = "Usage"
    INVALID_SETTING = "InvalidSetting"
    INVALID_REPOSITORY = "InvalidRepository"
    CONFIG_FILE_MISSING = "ConfigFileMissing"
    CONFIG_FILE_INVALID = "ConfigFileInvalid"
    CONFIG_FILE_UNREADABLE = "ConfigFileUnreadable"
    WATCH_DIR_MISSING = "WatchDirMissing"
    STATE_DIR_IN_SPOOL = "StateDirInSpool"
    METRICS_ADDRESS_IN_USE = "MetricsAddressInUse"
    NO_JOURNAL = "NoJournal"
    NO_REGION = "NoRegion"
    NO_CREDENTIALS = "NoCredentials"
    INVALID_REGISTRY_URL = "InvalidRegistryURL"
    INSECURE_REGISTRY = "InsecureRegistry"
    NO_REGISTRY_PASSWORD = "NoRegistryPassword"
    BAD_DOCKER_CONFIG = "BadDockerConfig"
    BAD_CREDENTIAL_HELPER = "BadCredentialHelper"
    # a layer file
    FILE_NOT_FOUND = "FileNotFound"
    NOT_A_REGULAR_FILE = "NotARegularFile"
    EMPTY_LAYER = "EmptyLayer"
    LAYER_TOO_LARGE = "LayerTooLarge"
    FILE_UNREADABLE = "FileUnreadable"
    FILE_CHANGED = "FileChanged"
    FILE_VANISHED = "FileVanished"
    INVALID_SIDECAR = "InvalidSidecar"
    # a spool entry refused on sight
    NO_REPOSITORY = "NoRepository"
    INVALID_FILE_NAME = "InvalidFileName"
    SYMLINK = "Symlink"
    SYMLINK_OUTSIDE_SPOOL = "SymlinkOutsideSpool"
    # an image
    INVALID_IMAGE = "InvalidImage"
    AMBIGUOUS_IMAGE = "AmbiguousImage"
    BAD_ARCHIVE = "BadArchive"
    MISSING_BLOB = "MissingBlob"
    UNREADABLE_BLOB = "UnreadableBlob"
    DIGEST_MISMATCH = "DigestMismatch"
    SIZE_MISMATCH = "SizeMismatch"
    UNSUPPORTED_MEDIA_TYPE = "UnsupportedMediaType"
    NO_TAG = "NoTag"
    INVALID_TAG = "InvalidTag"
    PLATFORM_NOT_FOUND = "PlatformNotFound"
    MANIFEST_CYCLE = "ManifestCycle"
    BLOBS_MISSING = "BlobsMissing"
    IMAGE_INCOMPLETE = "ImageIncomplete"
    # the registry, as uploaderd names what both backends mean alike
    PART_OUT_OF_ORDER = "InvalidLayerPartException"
    UPLOAD_NOT_FOUND = "UploadNotFoundException"
    UPLOAD_DIVERGED = "UploadDiverged"
    CHUNK_LOST = "ChunkLost"
    UPLOAD_POSITION_UNSTABLE = "UploadPositionUnstable"
    RANGE_NOT_SATISFIABLE = "RangeNotSatisfiable"
    TOO_MANY_REQUESTS = "TooManyRequests"
    MALFORMED_RESPONSE = "MalformedResponse"
    UNAUTHORIZED = "Unauthorized"
    UNSUPPORTED_AUTHENTICATION = "UnsupportedAuthentication"
    TOKEN_UNREACHABLE = "TokenUnreachable"
    TOKEN_REFUSED = "TokenRefused"
    MALFORMED_TOKEN = "MalformedToken"
    # the daemon's own state
    JOURNAL_UNWRITABLE = "JournalUnwritable"
    JOURNAL_CORRUPT = "JournalCorrupt"


class UploaderError(Exception):
    """Base of every error uploaderd raises on purpose."""

    retry_later = False

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | str,
        path: Path | None = None,
        repository: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.repository = repository
        self.code = str(code)

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        return f"{where}{self.message}"


class ConfigurationError(UploaderError):
    """A setting or command-line value is invalid; nothing was started."""


class CredentialsError(ConfigurationError):
    """No usable credentials yet: an instance role or a refreshed file may bring them."""

    retry_later = True


class LayerFileError(UploaderError):
    """The layer file itself cannot be pushed (missing, empty, unreadable, too big)."""


class LayerChangedError(LayerFileError):
    """The file changed or vanished while being pushed; pushing it would mix versions.

    Worth a later try: a writer still at work finishes, and the file settles.
    """

    retry_later = True


class ImageError(UploaderError):
    """The image to push is malformed (missing or corrupt blob, unknown media type, ...)."""


class ImageIncompleteError(ImageError):
    """The image lacks a file it names, or a blob is shorter than its descriptor.

    What a writer still at work leaves: the daemon waits for such an image
    directory to change (up to ``image_settle_timeout``) instead of failing
    it; ``push`` fails it at once like any other ``ImageError``.  A blob of
    full size whose bytes are wrong is corrupt, not incomplete.
    """


class RegistryError(UploaderError):
    """The registry refused a request; no retry will change its mind."""


class TransientRegistryError(RegistryError):
    """Throttling, a server fault or a network failure: retrying the request can succeed."""

    retry_later = True
    retry_after: float | None = None
    """Seconds the registry asked to wait (``Retry-After``), if it said; the retry policy
    waits at least that long instead of its own backoff."""


class PartOutOfOrderError(RegistryError):
    """The registry holds a different byte count than we sent.

    Raised after a retried request whose first answer was lost: the part did
    arrive.  ``next_byte`` is where the registry wants the upload to go on.
    """

    retry_later = True

    def __init__(
        self,
        message: str,
        *,
        next_byte: int,
        path: Path | None = None,
        repository: str | None = None,
    ) -> None:
        super().__init__(
            message, path=path, repository=repository, code=ErrorCode.PART_OUT_OF_ORDER
        )
        self.next_byte = next_byte


class UploadNotFoundError(RegistryError):
    """The registry forgot the upload (expired, lost, or diverged): the layer starts over."""

    retry_later = True


class JournalError(UploaderError):
    """The journal cannot be opened or written; the daemon must not take files."""


def unwrap_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error to report from a task group that failed.

    A layer's reader and sender run in a task group, so an ``UploaderError``
    from either arrives wrapped; callers want the error itself.  Anything that
    is not an ``UploaderError`` (a bug) keeps the whole group for the traceback.
    """
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    if leaves and all(isinstance(leaf, UploaderError) for leaf in leaves):
        return leaves[0]
    return group
