"""Keep secrets off the screen, out of JSON and out of logs.

Two layers:

* **Known secrets**: every credential found in the kubeconfig and talosconfig in use
  (`checks.secrets.collect_secrets`), plus their base64-decoded forms, replaced verbatim wherever they appear.
* **Generic shapes**, always applied: PEM private-key blocks, bearer tokens, JWTs, Kubernetes
  bootstrap tokens, and the secret-bearing keys of a Talos machine config or a kubeconfig.

`REDACTOR` is the process-wide instance; `redact(text)` uses it. `checks.secrets` finds the known
secrets in the config files and teaches them to `REDACTOR` (`install_secrets_from`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

REDACTED = "‹redacted›"

# Shorter values are too likely to occur by chance in ordinary text ("admin", "true").
MIN_SECRET_LENGTH = 8


# --------------------------------------------------------------------------- redacting


def _replace_value(match: re.Match[str]) -> str:
    return match.group("prefix") + REDACTED


def _replace_block(match: re.Match[str]) -> str:
    body = match.group("body")
    indent = body[: len(body) - len(body.lstrip(" \t"))]
    return match.group("head") + indent + REDACTED + ("\n" if body.endswith("\n") else "")


def _replace_bearer(match: re.Match[str]) -> str:
    token = match.group("token")
    # "bearer authentication failed" is prose, not a token: real tokens have digits or punctuation.
    if len(token) < MIN_SECRET_LENGTH or not any(c.isdigit() or c in "._~+/=-" for c in token):
        return match.group(0)
    return match.group("prefix") + REDACTED


_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*\Z)",
    re.DOTALL,
)
_AUTHORIZATION_HEADER = re.compile(
    r"(?P<prefix>\bAuthorization\s*[:=]\s*[\"']?(?:Bearer|Basic)\s+)[^\s\"',;]+", re.IGNORECASE
)
_BEARER = re.compile(
    r"(?P<prefix>\bbearer\s+)(?P<token>[A-Za-z0-9\-_~+/]+(?:\.[A-Za-z0-9\-_~+/]+)*=*)", re.IGNORECASE
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BOOTSTRAP_TOKEN = re.compile(r"(?<![A-Za-z0-9.-])[a-z0-9]{6}\.[a-z0-9]{16}(?![A-Za-z0-9.-])")
# The names of secret-bearing keys, in any of their usual spellings: `client_secret`, `client-secret`,
# `clientSecret`, `CLIENT_SECRET`, with a prefix word or not (`aws_secret_access_key`, `GOOGLE_CLIENT_SECRET`,
# `x-auth-token`, `awsSecretAccessKey`). A match starts only where a word starts (the look-behinds exclude
# `.` too): inside a long dotted word every `.` would be a new start, and the scan quadratic.
_SEP = r"[-_.]?"
_SECRET_WORDS = "|".join(
    _SEP.join(words.split())
    for words in (
        "secretbox encryption secret", "aescbc encryption secret", "client secret", "client key data",
        "client certificate data", "certificate authority data", "secret access key", "access key secret",
        "refresh token", "access token", "id token", "auth token", "session token", "bearer token",
        "api key", "api token", "private key", "passphrase", "password", "passwd", "secret", "token",
    )
)
_SECRET_KEY = rf"""(?:(?:[A-Za-z0-9]+[-_.]|(?-i:[a-z0-9]+(?=[A-Z])))*(?:{_SECRET_WORDS}))"""
# `key: value` / `"key": "value"` / `key=value` where the key names a secret (the value may be on the
# next line: `\s` spans it).
_SECRET_KEYED_VALUE = re.compile(
    rf"""(?P<prefix>(?<![A-Za-z0-9_.-])(?P<quote>["']?){_SECRET_KEY}(?P=quote)\s*[:=]\s*["']?)[^\s"',}}|>]{{8,}}""",
    re.IGNORECASE,
)
# A YAML block scalar under a secret key: `private_key: |` and the more-indented lines below it.
_SECRET_BLOCK_SCALAR = re.compile(
    rf"""^(?P<head>(?P<indent>[ \t]*)(?:-[ \t]+)?(?P<quote>["']?){_SECRET_KEY}(?P=quote)[ \t]*:[ \t]*[|>][-+0-9]*[ \t]*\n)"""
    r"""(?P<body>(?:(?P=indent)[ \t]+\S[^\n]*(?:\n|\Z)|[ \t]*\n)+)""",
    re.IGNORECASE | re.MULTILINE,
)
# `key: <long base64>`: the private keys of the Talos machine config and talosconfig.
_BASE64_KEY_VALUE = re.compile(
    r"""(?P<prefix>(?<![A-Za-z0-9_-])(?P<quote>["']?)key(?P=quote)\s*:\s*["']?)[A-Za-z0-9+/]{40,}={0,2}"""
)

# (cheap substring test, pattern, replacement); the test skips the regex on most lines.
_GENERIC_RULES: tuple[tuple[str | None, re.Pattern[str], Any], ...] = (
    ("PRIVATE KEY", _PRIVATE_KEY_BLOCK, REDACTED),
    ("\n", _SECRET_BLOCK_SCALAR, _replace_block),
    (None, _AUTHORIZATION_HEADER, _replace_value),
    (None, _BEARER, _replace_bearer),
    ("eyJ", _JWT, REDACTED),
    (".", _BOOTSTRAP_TOKEN, REDACTED),
    (None, _SECRET_KEYED_VALUE, _replace_value),
    (None, _BASE64_KEY_VALUE, _replace_value),
)


class Redactor:
    """Replaces known secrets and secret-shaped text with `‹redacted›`.

    Known secrets are replaced longest first. A few dozen are plain `str.replace` calls (C-speed
    scans, nothing to compile: compiling their alternation took ~12 ms per config at start-up);
    beyond that, one compiled alternation, built on first use after `add` brings new ones.
    """

    PLAIN_LIMIT = 48

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._ordered: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def add(self, secrets: Iterable[str]) -> None:
        """Remember more secrets (values shorter than 8 characters are ignored)."""
        new = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        with self._lock:
            if new <= self._secrets:
                return
            merged = self._secrets | new
            self._ordered = tuple(sorted(merged, key=lambda s: (-len(s), s)))
            self._pattern = None
            self._secrets = merged

    def _known(self, text: str) -> str:
        ordered = self._ordered
        if len(ordered) <= self.PLAIN_LIMIT:
            for secret in ordered:
                if secret in text:
                    text = text.replace(secret, REDACTED)
            return text
        pattern = self._pattern
        if pattern is None:
            with self._lock:
                pattern = self._pattern = re.compile("|".join(re.escape(s) for s in self._ordered))
        return pattern.sub(REDACTED, text)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        text = self._known(text)
        for needle, rule, replacement in _GENERIC_RULES:
            if needle is None or needle in text:
                text = rule.sub(replacement, text)
        return text


REDACTOR = Redactor()


def redact(text: str) -> str:
    """`text` with every secret known to the process-wide `REDACTOR` and every secret shape removed."""
    return REDACTOR(text)


_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
# A line that ends on a secret key whose value follows on the next line(s): `"client_secret":`,
# `client-key-data:`, `private_key: |`, `PASSWORD=`.
_KEY_AT_END = re.compile(
    rf"""(?<![A-Za-z0-9_.-])["']?{_SECRET_KEY}["']?[ \t]*[:=][ \t]*(?P<block>[|>][-+0-9]*)?[ \t]*\Z""",
    re.IGNORECASE,
)
_ONE_VALUE = re.compile(r"""^[ \t]*["']?[^\s"']{8,}["']?,?[ \t]*\Z""")


class StreamRedactor:
    """Redacts a stream line by line, remembering what spans lines: a private-key PEM block (its body
    lines carry no marker of their own) and a secret key whose value is on the next line or lines (a
    YAML block scalar, pretty-printed JSON). One per stream (stdout and stderr apart): call it with
    each line, in order; it returns the line to show.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        self._redactor = redactor
        self._in_pem = False
        self._pending: tuple[str, int] | None = None  # ("block" | "next", the key line's indentation)

    def __call__(self, line: str) -> str:
        redactor = self._redactor or REDACTOR
        if self._in_pem:
            end = _PEM_END.search(line)
            if end is None:
                return REDACTED
            self._in_pem = False
            return REDACTED + redactor(line[end.end():])
        indent = len(line) - len(line.lstrip(" \t"))
        if self._pending is not None and line.strip():
            kind, key_indent = self._pending
            if kind == "block" and indent > key_indent:
                return line[:indent] + REDACTED
            self._pending = None
            if kind == "next" and _ONE_VALUE.match(line) and not line.strip().rstrip(",").endswith(":"):
                return line[:indent] + REDACTED  # the value alone on its line (not the next key)
        begin = _PEM_BEGIN.search(line)
        if begin is not None and _PEM_END.search(line, begin.end()) is None:
            self._in_pem = True
            return redactor(line[: begin.start()]) + REDACTED
        key = _KEY_AT_END.search(line)
        if key is not None:
            self._pending = ("block" if key.group("block") else "next", indent)
        return redactor(line)



class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message, traceback and stack of each record.

    Attach it to the *handlers* (filters on a logger do not see records propagated from child
    loggers, such as those of the kubernetes client).
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self._redactor or REDACTOR
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record nor leak its args
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg = redactor(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor(record.stack_info)
        return True
