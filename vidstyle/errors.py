"""Typed errors of the library. The CLI turns each into a one-line message.

Every error the user can cause derives from :class:`VidstyleError`; anything else
reaching the CLI is a bug and is reported as such.
"""

from __future__ import annotations

import os


class VidstyleError(Exception):
    """Base of every error the user can cause or fix. Exit code 1."""

    exit_code = 1


class UsageError(VidstyleError):
    """Bad combination of options or values (absurd --size, output == input). Exit code 2."""

    exit_code = 2


class InputError(VidstyleError):
    """An input file is missing, unreadable, not media, truncated or empty."""


class OutputError(VidstyleError):
    """The output cannot be written (unwritable directory, failed encode). Exit code 1."""


class OutputPathError(OutputError, UsageError):
    """The output path itself is wrong: unsupported suffix, missing folder, a folder given
    as the file. A usage error: exit code 2."""


class StyleError(VidstyleError):
    """A bad ``--style`` value: unknown style name, bad or negative weights. A usage
    error: exit code 2 (:class:`StyleImageError` covers unreadable style images)."""

    exit_code = 2


class StyleImageError(StyleError):
    """A style image that is missing or cannot be read. Exit code 1."""

    exit_code = 1


class WeightsError(VidstyleError):
    """Model weights are missing or do not match their recorded hash."""


class Interrupted(VidstyleError):
    """The run was interrupted (Ctrl-C); finished work is kept for resume."""

    exit_code = 130


def describe(exc: BaseException) -> str:
    """What ``exc`` says went wrong, in words, for a one-line message.

    No exception class name, no ``[Errno N]`` and no repeated file name: an OSError gives
    its ``strerror`` ("Permission denied"), one made from a bare errno number the text of
    that number; anything else its message (first line), or "unknown error" without one.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if len(exc.args) == 1 and type(exc.args[0]) is int:
        return os.strerror(exc.args[0])
    text = str(exc).strip()
    return text.splitlines()[0] if text else "unknown error"
