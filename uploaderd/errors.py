"""One exception hierarchy for everything uploaderd reports to an operator.

Every error carries what an operator needs to act on it: the file, the
repository, the registry's error code when there is one, and a message that
says what to do.  ``transient`` separates faults that a later attempt can cure
(throttling, 5xx, a dropped connection) from faults that no retry will cure (a
missing repository, a corrupt layer): the engine retries the first kind and
fails the layer at once on the second.
"""

from __future__ import annotations

from pathlib import Path


class UploaderError(Exception):
    """Base of every error uploaderd raises on purpose."""

    transient = False

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        repository: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.repository = repository
        self.code = code or type(self).__name__

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        return f"{where}{self.message}"


class ConfigurationError(UploaderError):
    """A setting or command-line value is invalid; nothing was started."""


class LayerFileError(UploaderError):
    """The layer file itself cannot be pushed (missing, empty, unreadable, too big)."""


class LayerChangedError(LayerFileError):
    """The file changed between hashing and uploading; pushing it would mix versions."""


class ImageError(UploaderError):
    """The image to push is malformed (missing or corrupt blob, unknown media type, ...)."""


class RegistryError(UploaderError):
    """The registry refused a request; ``code`` is its error name."""


class TransientRegistryError(RegistryError):
    """Throttling, a server fault or a network failure: retrying later can succeed."""

    transient = True


class PartOutOfOrderError(RegistryError):
    """InvalidLayerPartException: the registry holds a different byte count than we sent.

    Raised after a retried request whose first answer was lost: the part did
    arrive.  ``next_byte`` is where the registry wants the upload to go on.
    """

    transient = True

    def __init__(
        self,
        message: str,
        *,
        next_byte: int,
        path: Path | None = None,
        repository: str | None = None,
    ) -> None:
        super().__init__(
            message, path=path, repository=repository, code="InvalidLayerPartException"
        )
        self.next_byte = next_byte


class UploadNotFoundError(RegistryError):
    """The registry forgot the upload id (expired or lost): the layer starts over."""

    transient = True


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
