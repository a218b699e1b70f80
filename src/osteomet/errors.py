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


class PatientsFailedError(InputError):
    """Some (exit code 3) or all (exit code 2) patients of a cohort failed a stage; the message names each
    with its own reason. What the others got is kept, so the same command continues once they are fixed."""

    def __init__(self, message: str, *, failed: int, total: int):
        super().__init__(message)
        self.failed, self.total = failed, total

    @property
    def exit_code(self) -> int:
        return 2 if self.failed >= self.total else 3


USER_ERRORS: tuple[type[BaseException], ...] = (OsteometError,)

#: What to do about a file-system refusal, by errno: these come from where the user pointed a
#: command (an output folder that is a file, read-only or full, a name too long), not from a bug.
_OS_ADVICE = {
    "EACCES": "no permission; choose a folder you can write to, or fix its permissions",
    "EPERM": "no permission; choose a folder you can write to, or fix its permissions",
    "EROFS": "the file system is read-only; choose another folder",
    "ENOTDIR": "part of the path is a file, not a folder; give a folder or a path inside one",
    "EEXIST": "it is in the way of a folder osteomet must create; remove it or choose another path",
    "EISDIR": "this is a folder where a file was expected",
    "ENAMETOOLONG": "a name in the path is longer than the file system allows, usually 255 bytes; choose a shorter one",
    "ENOSPC": "the disk is full; free space or choose another folder, then rerun the same command to continue",
    "EDQUOT": "the disk quota is used up; free space or choose another folder, then rerun the same command",
}


def describe_os_error(exc: OSError) -> str | None:
    """One paragraph for a file-system refusal caused by the path the user gave; None for anything else."""
    import errno

    name = errno.errorcode.get(exc.errno or -1)
    if name not in _OS_ADVICE:
        return None
    where = exc.filename if exc.filename is not None else "a file"
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    return f"{where}: {exc.strerror or name} ({_OS_ADVICE[name]})"
