"""The project's errors: one base class, so a command line can tell a user's mistake from a bug.

Everything here is something a user can fix (a bad file, option, config or checkpoint) and is
reported as one line with exit code 2. Any other exception is a bug and keeps its traceback.
`ludovico_vae.midi.MidiError` is the one other error the commands report this way: the MIDI
library cannot import the application, so it has its own.
"""
from __future__ import annotations


class BachsformerError(Exception):
    """Base of every error a user can fix; the message names the file or option and the reason."""


class CommandError(BachsformerError):
    """A command-line option or argument that cannot be used."""


class ConfigError(BachsformerError, ValueError):
    """A configuration that cannot be used; the message names the key and the reason."""


class CheckpointError(BachsformerError, ValueError):
    """A checkpoint that cannot be used, with the file and the reason in one line."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class DeviceError(BachsformerError, ValueError):
    """A device that is unknown or not on this machine."""


class GenerationError(BachsformerError, ValueError):
    """Generation options that cannot be honoured (bars, samples, prompt, key plan)."""


class OutputExistsError(BachsformerError, FileExistsError):
    """An output file that exists already: nothing is replaced without --force."""


class MissingExtraError(BachsformerError, ImportError):
    """An optional part whose dependency is not installed; the message says what to install."""


class DownloadError(BachsformerError):
    """One file that could not be fetched; `unreachable` means the others need not be tried."""

    def __init__(self, name: str, reason: str, unreachable: bool = False):
        self.name, self.reason, self.unreachable = name, reason, unreachable
        super().__init__(f"{name}: {reason}")


class ExportError(BachsformerError):
    """A corpus export that failed: music21 is missing, or a score cannot become MIDI."""


class MeasureError(BachsformerError, ValueError):
    """Music that cannot be measured as asked (an empty reference, say)."""
