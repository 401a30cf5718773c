"""One root exception for everything a user can cause.

Every message names the file (when there is one), says what was wrong and what to do.
"""

from __future__ import annotations

from pathlib import Path


class CrossmixError(Exception):
    """Root of every error Crossmix raises on purpose."""


class Cancelled(CrossmixError):
    """Long work was cancelled through its cancel token."""

    def __init__(self, what: str = "the operation") -> None:
        super().__init__(f"Cancelled {what}.")


# --- audio input -----------------------------------------------------------------------


class AudioError(CrossmixError):
    """A file could not be used as audio. ``path`` names it."""

    hint = ""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = Path(path)
        self.cause = cause
        msg = f"{self.path}: {cause}"
        if self.hint:
            msg += f" {self.hint}"
        super().__init__(msg)


class UnreadableFileError(AudioError):
    hint = "Check that the file exists and that you may read it."


class NotRegularFileError(AudioError):
    hint = "Choose a song file; named pipes, devices and sockets are skipped."


class NotAudioError(AudioError):
    hint = "Choose a song file (wav, flac, mp3, ogg, m4a/aac)."


class UnsupportedFormatError(AudioError):
    hint = "Convert it to wav, flac, mp3, ogg or m4a first."


class CorruptAudioError(AudioError):
    hint = "The file is damaged or truncated; re-export or re-download it."


class EmptyAudioError(AudioError):
    hint = "The file holds no audio samples."


class SilentAudioError(AudioError):
    hint = "There is nothing to separate or match in silence; choose another song."


class TooLongError(AudioError):
    hint = "Trim it, or raise the length limit in the settings (max_duration)."


# --- models, storage, other capabilities ----------------------------------------------------


class ModelError(CrossmixError):
    """Weights missing, corrupt (sha256 mismatch) or of another architecture."""


class DeviceError(CrossmixError):
    """The requested compute device is not available."""


class LibraryError(CrossmixError):
    """The song library could not be read or written."""


class LibraryReadOnlyError(LibraryError):
    """The library's folder or catalog may not be written."""


class DiskFullError(LibraryError):
    """The disk holding the library is full."""


class CatalogDamagedError(LibraryError):
    """The library's catalog has damaged pages or values (``crossmix library repair``)."""


class NoVocalError(LibraryError):
    """A query has no singing voice (or too little audio) to be matched by its vocal."""


class EmptyLibraryError(LibraryError):
    """The library has no indexed songs yet (nothing to search or to build indexes of)."""


class ClusterError(CrossmixError):
    """Distributed indexing (Ray) is not installed, its cluster cannot be reached, or its
    shard folder cannot be used."""


class RemixError(CrossmixError):
    """A cross-mix could not be rendered."""


class ExportError(CrossmixError):
    """A file could not be written (exists, disk full, no permission, encoder missing)."""


class TrainingError(CrossmixError):
    """Training data or a training run is unusable."""
