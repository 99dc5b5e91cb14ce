"""Shared pieces of the parsers: the ParseError value and small text helpers.

Every parser in this package is a pure function ``parse_x(text) -> X | ParseError``. A parser never
raises: whatever the input (empty, binary junk, truncated YAML, a megabyte of noise) it returns either
the typed value or a ``ParseError`` that says what it expected and what it found instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeGuard, TypeVar

DETAIL_LIMIT = 120
"""How many characters of offending input a ParseError quotes."""

MAX_INPUT_CHARS = 64 * 1024 * 1024
"""Inputs longer than this are refused instead of parsed (no real talosctl/helm output is this big)."""

LONG_LINE = 2000
"""Lines longer than this are never a talosctl/nvidia-smi line; line regexes skip them (no slow backtracking)."""

INTERNAL_ERROR_PREFIX = "internal parser error"
"""Start of ParseError.detail when a parser hit a bug; the fuzz tests treat such a result as a failure."""

_ANSI_ESCAPE_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_SPINNER_RE = re.compile(r"^[\u2500-\u25ff\u2800-\u28ff]+[ \t]*")


@dataclass(frozen=True)
class ParseError:
    """Why a text could not be parsed. A value that parsers return, never an exception."""

    expected: str
    """What the parser expected, e.g. "a talosctl table with a header line containing NODE/ID columns"."""
    detail: str = ""
    """What it found instead: short, usually the first offending line truncated to 120 characters."""

    def __str__(self) -> str:
        if self.detail:
            return f"expected {self.expected}: {self.detail}"
        return f"expected {self.expected}"


def is_error(value: object) -> TypeGuard[ParseError]:
    """True when a parser's result is a ParseError rather than the parsed value."""
    return isinstance(value, ParseError)


def truncate(text: str, limit: int = DETAIL_LIMIT) -> str:
    """The text on one line, cut to ``limit`` characters with an ellipsis when longer."""
    flat = " ".join(text.split()) if ("\n" in text or "\r" in text or "\t" in text) else text.strip()
    if len(flat) <= limit:
        return flat
    return flat[: max(limit - 1, 0)] + "…"


def is_number(text: str) -> bool:
    """True for ASCII decimal digits only ("²" and other Unicode digits pass str.isdigit() but not int())."""
    return text.isascii() and text.isdigit()


def first_line(text: str) -> str:
    """The first non-blank line of ``text`` (truncated), or a note that the input was empty."""
    for line in text.splitlines():
        if line.strip():
            return truncate(line)
    return "empty input"


def strip_ansi(text: str) -> str:
    """Remove terminal colour and cursor escape sequences."""
    if "\x1b" not in text:
        return text
    return _ANSI_ESCAPE_RE.sub("", text)


def strip_spinner(line: str) -> str:
    """Drop a leading progress spinner glyph such as ``◳ `` or ``⠋ `` (talosctl's interactive reporter)."""
    return _SPINNER_RE.sub("", line, count=1)


def is_skew_warning(line: str) -> bool:
    """True for talosctl's ``WARNING: <node>: server version X is older than client version Y`` line."""
    stripped = line.strip()
    if not stripped.startswith("WARNING: "):
        return False
    server = stripped.find("server version ")
    return server >= 0 and stripped.find(" is older than client version", server) >= 0


def clean_lines(text: str) -> list[str]:
    """Lines of ``text`` without ANSI escapes and without trailing whitespace (line breaks normalised)."""
    return [line.rstrip() for line in strip_ansi(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def non_blank(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(index, line) for the lines that hold something other than whitespace."""
    for index, line in enumerate(lines):
        if line.strip():
            yield index, line


def too_large(text: str, expected: str) -> ParseError | None:
    """A ParseError when ``text`` is not a str or is too big to parse, else None."""
    if not isinstance(text, str):
        return ParseError(expected, f"input is {type(text).__name__}, not text")
    if len(text) > MAX_INPUT_CHARS:
        return ParseError(expected, f"input too large ({len(text)} characters)")
    return None


P = ParamSpec("P")
R = TypeVar("R")


def never_raises(expected: str) -> Callable[[Callable[P, R]], Callable[P, R | ParseError]]:
    """Decorate a parser so that an unexpected exception becomes a ParseError instead of escaping.

    Parsers are written not to raise; this is the safety net that keeps the promise if one has a bug.
    The detail starts with INTERNAL_ERROR_PREFIX so that tests can tell a bug from a refused input.
    """

    def decorate(parser: Callable[P, R]) -> Callable[P, R | ParseError]:
        @functools.wraps(parser)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | ParseError:
            try:
                return parser(*args, **kwargs)
            except (RecursionError, MemoryError) as exc:
                return ParseError(expected, f"input too deeply nested or too large ({type(exc).__name__})")
            except Exception as exc:  # the whole point: turn any bug into a value
                return ParseError(expected, truncate(f"{INTERNAL_ERROR_PREFIX}: {type(exc).__name__}: {exc}"))

        return wrapper

    return decorate
