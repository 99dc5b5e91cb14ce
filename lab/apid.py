"""The lab's stand-in for the node's Talos API daemon: one warm process that runs the lab's tools.

A real `talosctl` is a Go binary that starts in milliseconds and asks `apid` on the node; the lab's
`talosctl` and `helm` are Python, and a cold start that imports the lab costs ~100 ms of CPU per call
here. Thirteen of those in one sweep measured the fake, not the app (issue 7). So each lab runs this
forking server on a Unix socket, with the lab's tool modules imported once:

* `bin/talosctl` / `bin/helm` (written by lab/runtime.py) connect, send one request (tool, working
  directory, arguments, environment: `encode_request`) and pass their own stdin, stdout and stderr
  along with it (SCM_RIGHTS). If the socket is not there they run the tool in-process instead.
  Where a C compiler is found the lab builds lab/apid_client.c as those executables (a native
  client starts in ~1 ms, the Python one in ~20 ms), with the Python client as its fallback.
* The server forks a worker per request. The worker puts the client's three descriptors on 0, 1, 2,
  takes its environment and working directory, runs the tool's `main(argv)` — the very code the
  in-process path runs — and answers its pid (4 bytes) first and its exit status (4 bytes) last.
  Output goes straight to the client's pipes or terminal, streaming as it is written.
* A client that goes away (killed with its process group, Ctrl-C) closes the socket; its worker
  sees that and exits at once, so nothing keeps running for a dead `talosctl`. SIGTERM and SIGINT
  that reach the client are forwarded to the worker; the client then ends as the worker did (the
  tool's own exit status, or death by that signal).
* The server exits when its parent (the lab's API server process) is gone, and kills its workers.

"""

from __future__ import annotations

import array
import io
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from contextlib import suppress

HEADER = struct.Struct("!I")
STATUS = struct.Struct("!i")
MAX_REQUEST = 4 * 1024 * 1024
POLL_S = 1.0


def _tools() -> dict[str, Callable[[list[str]], int | None]]:
    from lab import helm, talosctl

    return {"talosctl": talosctl.main, "helm": helm.main}


def serve(socket_path: str, parent: int | None = None) -> int:
    """Accept requests on `socket_path` until the parent process is gone or SIGTERM arrives."""
    tools = _tools()  # imported once, before any fork: every worker starts warm
    with suppress(FileNotFoundError):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    os.chmod(socket_path, 0o600)
    listener.listen(128)
    workers: set[int] = set()

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while parent is None or os.getppid() == parent:
            _reap(workers)
            try:
                ready, _, _ = select.select([listener], [], [], POLL_S)
            except InterruptedError:
                continue
            if not ready:
                continue
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            pid = os.fork()
            if pid == 0:  # the worker
                listener.close()
                _work(connection, tools)  # never returns
            connection.close()
            workers.add(pid)
    except _Stop:
        pass
    finally:
        listener.close()
        with suppress(OSError):
            os.unlink(socket_path)
        for pid in workers:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _reap(workers)
    return 0


class _Stop(Exception):
    """SIGTERM or SIGINT reached the server."""


def _reap(workers: set[int]) -> None:
    for pid in list(workers):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            workers.discard(pid)


def _receive(connection: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancillary, _flags, _ = connection.recvmsg(65536, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if len(data) < HEADER.size:
        raise ValueError("short request")
    (size,) = HEADER.unpack_from(data)
    if size > MAX_REQUEST:
        raise ValueError("request too large")
    body = bytearray(data[HEADER.size:])
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    return bytes(body), list(fds)


def encode_request(tool: str, cwd: bytes, argv: list[bytes], environ: list[bytes]) -> bytes:
    """The wire form of one call (what lab/apid_client.c builds too): a 4-byte big-endian length,
    then NUL-terminated fields: tool, cwd, argc, each argument, each `NAME=value` of the environment."""
    fields = [tool.encode(), cwd, str(len(argv)).encode(), *argv, *environ]
    body = b"".join(field + b"\0" for field in fields)
    return HEADER.pack(len(body)) + body


def parse_request(body: bytes) -> tuple[str, list[str], dict[str, str], str]:
    fields = body.split(b"\0")
    if len(fields) < 4 or fields[-1] != b"":
        raise ValueError("malformed request")
    fields.pop()
    tool, cwd, count = fields[0].decode(), os.fsdecode(fields[1]), int(fields[2])
    argv = [os.fsdecode(field) for field in fields[3:3 + count]]
    environ: dict[str, str] = {}
    for entry in fields[3 + count:]:
        name, separator, value = entry.partition(b"=")
        if separator and name:
            environ[os.fsdecode(name)] = os.fsdecode(value)
    return tool, argv, environ, cwd


def _work(connection: socket.socket, tools: dict[str, Callable[[list[str]], int | None]]) -> None:
    """Run one request in this forked process and exit; never returns."""
    exit_now = os._exit
    try:
        for signum in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        body, fds = _receive(connection)
        if len(fds) != 3:
            raise ValueError("expected the client's stdin, stdout and stderr")
        tool, argv, environ, cwd = parse_request(body)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _rebind_standard_streams()
        os.environ.clear()
        os.environ.update(environ)
        connection.sendall(STATUS.pack(os.getpid()))

        def exit_reporting(code: int) -> None:  # a tool that leaves with os._exit (its signal handlers)
            with suppress(OSError):
                connection.sendall(STATUS.pack(code))
            exit_now(code)

        os._exit = exit_reporting  # type: ignore[assignment] - this forked worker only
        done = threading.Event()
        threading.Thread(target=_exit_when_client_goes, args=(connection, done, exit_now), daemon=True).start()
        code = _run(tools[tool], tool, list(argv), cwd)
        done.set()
        connection.sendall(STATUS.pack(code))
    except BaseException:  # noqa: BLE001 - a worker must never return into the server's loop
        with suppress(BaseException):
            traceback.print_exc()
    finally:
        exit_now(0)


def _rebind_standard_streams() -> None:
    """Fresh sys.std* on the client's descriptors, buffered as a process started there would be."""
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False, buffering=1 if os.isatty(1) else -1)  # noqa: SIM115
    sys.stderr = io.TextIOWrapper(open(2, "wb", buffering=0, closefd=False), encoding="utf-8",  # noqa: SIM115
                                  errors="backslashreplace", line_buffering=True)


def _exit_when_client_goes(connection: socket.socket, done: threading.Event, exit_now: Callable[[int], None]) -> None:
    try:
        connection.recv(1)  # the client never writes again: this returns only when it is gone
    except OSError:
        pass
    if not done.is_set():
        exit_now(128 + signal.SIGKILL)


def _run(main: Callable[[list[str]], int | None], tool: str, argv: list[str], cwd: str) -> int:
    sys.argv = [tool, *argv]
    try:
        os.chdir(cwd)
        result = main(argv)
        code = 0 if result is None else int(result)
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except Exception:  # noqa: BLE001 - as an uncaught exception would end the program
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    return code


def client_script(tool: str, module: str, socket_path: str, paths: list[str], python: str) -> str:
    """The Python `bin/<tool>`: hand the call to the server, or run the tool here if none answers.
    (Where a C compiler is found, lab/runtime.py builds lab/apid_client.c instead, and this script
    is its fallback.)"""
    return f'''#!{python} -S
"""The lab's {tool} (written by lab/runtime.py): runs in the lab's apid server (lab/apid.py)."""
import sys
import _socket
import posix


def local():
    sys.path[:0] = {paths!r}
    from {module} import main
    sys.exit(main())


try:
    if not {socket_path!r}:
        raise OSError
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    conn.connect({socket_path!r})
except OSError:
    local()
fields = [{tool!r}.encode(), posix.getcwd().encode("utf-8", "surrogateescape"), str(len(sys.argv) - 1).encode()]
fields += [argument.encode("utf-8", "surrogateescape") for argument in sys.argv[1:]]
fields += [name + b"=" + value for name, value in posix.environ.items()]
body = b"".join(field + b"\\0" for field in fields)
fds = b"".join(n.to_bytes(4, sys.byteorder) for n in (0, 1, 2))
conn.sendmsg([len(body).to_bytes(4, "big") + body], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])


def receive():
    data = b""
    while len(data) < 4:
        chunk = conn.recv(4 - len(data))
        if not chunk:
            return None
        data += chunk
    return int.from_bytes(data, "big", signed=True)


worker = receive()
if worker is None:
    sys.exit(1)
import _signal

forwarded = []


def forward(signum, frame):
    forwarded.append(signum)
    try:
        posix.kill(worker, signum)
    except OSError:
        pass


_signal.signal(_signal.SIGTERM, forward)
_signal.signal(_signal.SIGINT, forward)
code = receive()
if code is None and forwarded:  # the worker died of the signal: so does this process, as it would have
    _signal.signal(forwarded[-1], _signal.SIG_DFL)
    posix.kill(posix.getpid(), forwarded[-1])
sys.exit(1 if code is None else code)
'''
