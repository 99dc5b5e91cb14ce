"""A small YAML emitter that writes the way Go's YAML libraries do.

Talos (go-yaml v3 with a 4-space indent) and Image Factory print YAML with block sequences indented
under their key; Helm (sigs.k8s.io/yaml over go-yaml v2) uses a 2-space indent with sequences flush
with their key and sorted keys. The lab needs both byte-exactly (schematic ids are hashes of the
YAML text), so it does not rely on PyYAML's emitter, whose quoting and indentation differ.

Only what the lab prints is supported: dicts (insertion order kept unless ``sort_keys``), lists,
str, int, float, bool, None, and :class:`Raw` (written verbatim, e.g. a timestamp that Go marshals
from a ``time.Time`` without quotes).
"""

from __future__ import annotations

import re
from typing import Any


class Raw(str):
    """A scalar written exactly as given, never quoted."""


_INT_RE = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$|^0x[0-9a-fA-F_]+$|^0o?[0-7_]+$|^0b[01_]+$")
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOATS = {".inf", "-.inf", "+.inf", ".Inf", "-.Inf", "+.Inf", ".INF", "-.INF", "+.INF", ".nan", ".NaN", ".NAN"}
_NULLS = {"~", "null", "Null", "NULL"}
_BOOLS = {
    "true", "True", "TRUE", "false", "False", "FALSE",
    # YAML 1.1 booleans that go-yaml still quotes to stay readable by old parsers
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
}
_TIMESTAMP_RE = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"([Tt ]+[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]*)?([ \t]*(Z|[-+][0-9]{1,2}(:[0-9]{2})?))?)?$"
)
_LEADING_INDICATORS = set("#,[]{}&*!|>'\"%@`")


def _resolves_to_non_string(text: str) -> bool:
    return (
        text == ""
        or text in _NULLS
        or text in _BOOLS
        or text in _SPECIAL_FLOATS
        or bool(_INT_RE.match(text))
        or bool(_FLOAT_RE.match(text))
        or bool(_TIMESTAMP_RE.match(text))
    )


def _plain_allowed(text: str) -> bool:
    """A simplified libyaml scalar analysis: may ``text`` be written without quotes?"""
    if not text or text[0] in " \t" or text[-1] in " \t":
        return False
    if text.startswith(("---", "...")):
        return False
    first = text[0]
    if first in _LEADING_INDICATORS:
        return False
    if first in "-?:" and (len(text) == 1 or text[1] in " \t"):
        return False
    for index, char in enumerate(text):
        following = text[index + 1] if index + 1 < len(text) else ""
        if char == ":" and (following in (" ", "\t", "")):
            return False
        if char == "#" and index > 0 and text[index - 1] in " \t":
            return False
        if not char.isprintable():
            return False
    return True


def _double_quoted(text: str) -> str:
    out = []
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif not char.isprintable():
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def scalar(value: Any) -> str:
    """The inline text of a scalar value (not for multi-line strings)."""
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    text = str(value)
    if _resolves_to_non_string(text):
        return _double_quoted(text)
    if not all(char.isprintable() for char in text):
        return _double_quoted(text)
    if _plain_allowed(text):
        return text
    return "'" + text.replace("'", "''") + "'"


def _is_block_string(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, Raw) and "\n" in value and value.strip() != ""


class _Emitter:
    def __init__(self, indent: int, indent_sequences: bool, sort_keys: bool) -> None:
        self.indent = indent
        self.indent_sequences = indent_sequences
        self.sort_keys = sort_keys
        self.lines: list[str] = []

    def keys(self, mapping: dict) -> list:
        return sorted(mapping) if self.sort_keys else list(mapping)

    def block_string(self, prefix: str, text: str, content_indent: int) -> None:
        if text.endswith("\n"):
            indicator = "|"
            body = text[:-1]
        else:
            indicator = "|-"
            body = text
        self.lines.append(f"{prefix}{indicator}")
        for line in body.split("\n"):
            self.lines.append((" " * content_indent + line) if line else "")

    def mapping(self, mapping: dict, column: int, first_prefix: str | None = None) -> None:
        """Write ``mapping`` with its keys at ``column``; ``first_prefix`` replaces the first key's indent."""
        for index, key in enumerate(self.keys(mapping)):
            value = mapping[key]
            lead = first_prefix if (index == 0 and first_prefix is not None) else " " * column
            self.entry(f"{lead}{scalar(key)}:", value, column)

    def entry(self, head: str, value: Any, column: int) -> None:
        """``head`` is ``<indent>key:``; ``column`` is the key's column."""
        if isinstance(value, dict):
            if not value:
                self.lines.append(f"{head} {{}}")
            else:
                self.lines.append(head)
                self.mapping(value, column + self.indent)
        elif isinstance(value, list):
            if not value:
                self.lines.append(f"{head} []")
            else:
                self.lines.append(head)
                self.sequence(value, column + self.indent if self.indent_sequences else column)
        elif _is_block_string(value):
            self.block_string(f"{head} ", value, column + self.indent)
        else:
            self.lines.append(f"{head} {scalar(value)}")

    def sequence(self, items: list, column: int) -> None:
        for item in items:
            dash = " " * column + "- "
            if isinstance(item, dict) and item:
                self.mapping(item, column + 2, first_prefix=dash)
            elif isinstance(item, list) and item:
                self.lines.append(dash.rstrip())
                self.sequence(item, column + 2)
            elif isinstance(item, dict):
                self.lines.append(dash + "{}")
            elif isinstance(item, list):
                self.lines.append(dash + "[]")
            elif _is_block_string(item):
                self.block_string(dash, item, column + self.indent)
            else:
                self.lines.append(dash + scalar(item))


def dump(value: Any, *, indent: int = 4, indent_sequences: bool = True, sort_keys: bool = False) -> str:
    """YAML text of ``value``, ending with a newline."""
    emitter = _Emitter(indent, indent_sequences, sort_keys)
    if isinstance(value, dict):
        if not value:
            return "{}\n"
        emitter.mapping(value, 0)
    elif isinstance(value, list):
        if not value:
            return "[]\n"
        emitter.sequence(value, 0)
    elif _is_block_string(value):
        emitter.block_string("", value, indent)
    else:
        return scalar(value) + "\n"
    return "\n".join(emitter.lines) + "\n"


def dump_talos(value: Any) -> str:
    """Talos / Image Factory style: 4-space indent, sequences indented under their key."""
    return dump(value, indent=4, indent_sequences=True)


def dump_helm(value: Any) -> str:
    """Helm / sigs.k8s.io/yaml style: 2-space indent, sequences flush with their key, sorted keys."""
    return dump(value, indent=2, indent_sequences=False, sort_keys=True)
