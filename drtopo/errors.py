"""Errors as the on-call engineer reads them: one line, whatever the library raised (libpq's messages span several)."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """The message of `exc` on one line; its type's name when it has no message."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
