"""The error raised for evaluation inputs that make a statistic undefined.

One-class labels, score and label arrays of different lengths, NaN scores and non-binary
labels all raise :class:`EvaluationInputError`, a ``ValueError`` subclass, so the CLI reports
them as user errors (``osteomet.errors.USER_ERRORS``) with the message naming the problem.
"""

from __future__ import annotations

from osteomet.errors import InputError


class EvaluationInputError(InputError):
    """Labels or scores that cannot be evaluated (the message says which and why)."""
