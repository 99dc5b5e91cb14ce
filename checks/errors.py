"""User-facing errors and the one-line rendering of any exception.

`UsageError` means "the check could not run at all" (bad option, unreadable config, missing
tool): the CLI prints `talos-gpu: <message>` on one line of stderr and exits 2.
"""

from __future__ import annotations

import os
import re
import stat
import threading
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


MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a kubeconfig, talosconfig or profile larger than this is refused
PIPE_WAIT_S = 5.0  # how long a pipe (`--kubeconfig <(cat kc)`) may take to deliver its whole content

_read_lock = threading.Lock()
# absolute path → (identity, text, a path other programs can read it from); the identity of a regular file
# (device, inode, size, mtime) makes a changed file read again; a pipe (identity None) is read only once
_read_once: dict[str, tuple[tuple[int, ...] | None, str, Path]] = {}


def read_user_file(path: Path, label: str) -> str:
    """The text of a file the user named (a config, a profile), or a one-line UsageError saying why
    it cannot be read; the message never quotes the file's content.

    Read once per process (later calls get the same text, so a pipe such as `<(cat kc)` works), at
    most `MAX_CONFIG_BYTES`. A regular file or a pipe that ends within `PIPE_WAIT_S` is read; a
    device (`/dev/zero`), a socket, or a FIFO nobody writes to fails at once.
    """
    key = os.path.abspath(path)
    identity = _identity(Path(path))
    with _read_lock:
        known = _read_once.get(key)
        if known is not None and (known[0] is None or known[0] == identity):
            return known[1]
        text = _read_bounded(Path(path), label)
        _read_once[key] = (identity, text, Path(path))
        return text


def user_file_path(path: Path) -> Path:
    """A path other programs (talosctl, helm, the kubeconfig loader) can read the same content from:
    the file itself, or for a pipe read by `read_user_file` a private copy (0600, removed at exit)."""
    key = os.path.abspath(path)
    with _read_lock:
        known = _read_once.get(key)
        if known is None or known[0] is not None:  # not read, or a regular file: the file itself
            return Path(path)
        if known[2] == Path(path):
            known = _read_once[key] = (None, known[1], _private_copy(known[1]))
        return known[2]


def _identity(path: Path) -> tuple[int, ...] | None:
    """(device, inode, size, mtime) of a regular file; None for anything else (or when it cannot be read)."""
    try:
        info = os.stat(path)
    except OSError:
        return (-1,)  # never equal to a cached identity: read (and fail) again
    if not stat.S_ISREG(info.st_mode):
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _private_copy(text: str) -> Path:
    import atexit
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="talos-gpu-config-"))  # 0700
    atexit.register(shutil.rmtree, directory, True)
    copy = directory / "config"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
    return copy


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory, not a file"
    if stat.S_ISCHR(mode):
        return "a character device, not a file"
    if stat.S_ISBLK(mode):
        return "a block device, not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    return "not a regular file"


def _read_bounded(path: Path, label: str) -> str:
    limit_mb = MAX_CONFIG_BYTES // (1024 * 1024)
    try:
        info = os.stat(path)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
            raise UsageError(f"{label}: is {_kind(info.st_mode)}")
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_CONFIG_BYTES:
            raise UsageError(f"{label}: is {info.st_size / (1024 * 1024):.0f} MB, more than the {limit_mb} MB "
                             "a config file may have")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise UsageError(f"{label}: not found") from None
    except IsADirectoryError:
        raise UsageError(f"{label}: is a directory, not a file") from None
    except PermissionError:
        raise UsageError(f"{label}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        data = _read_fd(fd, label, fifo=stat.S_ISFIFO(info.st_mode))
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"{label}: is more than the {limit_mb} MB a config file may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{label}: is not UTF-8 text") from None


def _read_fd(fd: int, label: str, *, fifo: bool) -> bytes:
    """Every byte up to one past the limit, in linear time; a pipe gets `PIPE_WAIT_S` in all."""
    import select
    import time

    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + PIPE_WAIT_S
    while size <= MAX_CONFIG_BYTES:
        try:
            chunk = os.read(fd, min(1024 * 1024, MAX_CONFIG_BYTES + 1 - size))
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise UsageError(f"{label}: the pipe did not deliver the whole file within {PIPE_WAIT_S:g}s") from None
            select.select([fd], [], [], left)
            continue
        except OSError as exc:
            raise UsageError(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        if not chunk:
            if fifo and size == 0:
                raise UsageError(f"{label}: is a FIFO with nothing written to it (pass a regular file)")
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
