"""The exceptions that mean "your input is wrong": reported to users as one paragraph, exit code 2.

Anything else that escapes a command is a bug and keeps its traceback. Subclasses also
derive from the built-in exception a caller would expect (``ValueError`` for bad values,
``FileNotFoundError`` for a missing input, ``FileExistsError`` for an output that would
overwrite something), so library callers can catch either.
"""

from __future__ import annotations


class OsteometError(Exception):
    """Base of every user-input error; the message names the file or patient and what is wrong."""


class InputError(OsteometError, ValueError):
    """A file, table, option or setting the user gave is unusable."""


class MissingInputError(OsteometError, FileNotFoundError):
    """An input file or an earlier stage's output is not there."""


class OutputExistsError(OsteometError, FileExistsError):
    """Writing would replace one of the user's files or an input of the same command."""


class LeakageError(InputError):
    """A patient (or an identical image) sits in two cohorts, or a fitting step would read held-out labels."""


USER_ERRORS: tuple[type[BaseException], ...] = (OsteometError,)
