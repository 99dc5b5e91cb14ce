"""User-facing errors and the one-line rendering of any exception.

`UsageError` means "the check could not run at all" (bad option, unreadable config, missing
tool): the CLI prints `talos-gpu: <message>` on one line of stderr and exits 2.
"""

from __future__ import annotations

import re
from pathlib import Path

from checks.redact import redact

ONE_LINE_LIMIT = 200
USAGE_MESSAGE_LIMIT = 500

# "<urllib3.connection.HTTPSConnection object at 0x7f…>: " says nothing to a user.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*")


class StoppedBySignal(Exception):
    """SIGINT, SIGTERM or SIGHUP stopped a command after its children were ended; exit 128 + `signum`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class UsageError(Exception):
    """A bad option, config file or environment; the message is one redacted line naming the culprit."""

    def __init__(self, message: str) -> None:
        super().__init__(_single_line(redact(str(message)), USAGE_MESSAGE_LIMIT))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, redacted and at most 200 characters.

    For Kubernetes API errors (with `status`/`reason`/`body`) and urllib3 retry errors (with a
    `reason` exception) the useful part is pulled out instead of the raw multi-line text.
    """
    name = type(exc).__name__
    detail = _detail(exc)
    text = f"{name}: {detail}" if detail else name
    return _single_line(redact(text), ONE_LINE_LIMIT)


def _detail(exc: BaseException) -> str:
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if isinstance(status, int) and isinstance(reason, str):
        # kubernetes.client.ApiException: "(403)\nReason: Forbidden\nHTTP response headers: …"
        detail = f"{status} {reason}"
        server_message = _status_message(getattr(exc, "body", None))
        return f"{detail}: {server_message}" if server_message else detail
    if isinstance(reason, BaseException) and reason is not exc:
        # urllib3 MaxRetryError: the cause sits at the end of a long line; lead with it.
        return f"{type(reason).__name__}: {_first_line(redact(str(reason)))}"
    return _first_line(redact(str(exc)))


def _status_message(body: object) -> str | None:
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str) or not body.lstrip().startswith("{"):
        return None
    import json  # here: most runs never see an API status body, and the TUI's first frame needs none

    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        return None
    return message if isinstance(message, str) and message else None


def _first_line(text: str) -> str:
    text = _OBJECT_REPR.sub("", text)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _single_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def read_user_file(path: Path, label: str) -> str:
    """The text of a file the user named (a config, a profile), or a one-line UsageError saying why
    it cannot be read; the message never quotes the file's content."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{label}: not found") from None
    except IsADirectoryError:
        raise UsageError(f"{label}: is a directory, not a file") from None
    except PermissionError:
        raise UsageError(f"{label}: cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise UsageError(f"{label}: is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from None
