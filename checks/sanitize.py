"""Make untrusted text harmless before it reaches a terminal, a log, a saved file or a screenshot.

Everything that comes from a cluster, a tool or a file is untrusted. Two dangers besides secrets
(checks/redact.py handles those):

* **Control characters and escape sequences.** ESC (`\\x1b`) and the C1 CSI (`\\x9b`) start
  sequences that a terminal obeys: OSC 52 writes the clipboard, OSC 0 sets the window title, CSI
  moves the cursor or clears the screen. Carriage returns, backspaces and bidi overrides rewrite
  what the reader sees. Each such character is replaced by a visible escape (`\\x1b`, `\\u202e`),
  which also defuses the whole sequence: the rest of it is ordinary printable text.
* **Rich markup.** A string handed to Rich as markup (`console.print(str)`, a `Table` cell, a
  Textual label) has `[bold red]`, `[link=…]` and `[/]` interpreted (the last one raises
  `MarkupError`). Untrusted text goes into a `rich.text.Text`, which is never parsed as markup:
  `text(value)` builds one.

`safe(value)` is the one call for a sink: redacted, then made visible. `safe_json(document)` is
JSON with every control character (C0, DEL, C1) and bidi override escaped. No Textual import here.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from checks.redact import redact

if TYPE_CHECKING:
    from rich.text import Text

# C0 except \t and \n, DEL, C1, and the invisible characters that reorder or hide text: the bidi
# embeddings/overrides/isolates, the marks, the line/paragraph separators, the BOM/zero-width no-break.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _show(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, *, one_line: bool = False) -> str:
    """`value` as text with every control character and escape sequence made visible.

    Newlines and tabs are kept unless `one_line`; a CRLF ending counts as a newline. Nothing is
    redacted here: use `safe` at a sink.
    """
    text = value if isinstance(value, str) else str(value)
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    pattern = _UNSAFE_ONE_LINE if one_line else _UNSAFE
    if pattern.search(text) is None:  # the common case: one scan, no copy
        return text
    return pattern.sub(_show, text)


def safe(value: object, *, one_line: bool = False) -> str:
    """Untrusted `value` ready for any sink: secrets redacted, controls and escapes made visible."""
    text = value if isinstance(value, str) else str(value)
    return visible(redact(text), one_line=one_line)


def text(value: object, style: str = "", *, one_line: bool = False, **kwargs: Any) -> Text:
    """A Rich `Text` of untrusted `value` (never parsed as markup), redacted and made visible."""
    from rich.text import Text

    return Text(safe(value, one_line=one_line), style=style, **kwargs)


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def safe_json(document: Any, **kwargs: Any) -> str:
    """`json.dumps(document)`, redacted, with C1 controls, DEL and bidi overrides escaped as well.

    `json.dumps` escapes C0 itself; the rest appear only inside JSON strings, where `\\uXXXX` is
    the same character to a JSON reader but inert on a terminal. Other non-ASCII text stays readable.
    """
    dumped = redact(json.dumps(document, ensure_ascii=False, **kwargs))
    return _JSON_UNSAFE.sub(_json_escape, dumped)
