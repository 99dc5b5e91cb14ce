"""The Kubernetes reads of a one-shot sweep (`talos-gpu check`), in a forked child process.

In a fresh process the official client's import (~0.2-0.3 s of one core) is the floor of a check
(issue 7). Imported in a thread, it shares the GIL with the spawning of the talosctl calls and the
parsing of their answers, so the two hardly overlap. A child forked just before the sweep has the
configs, the profile and the app's modules already; it imports the client on another core and runs
the very same Kubernetes probes (`checks/probes.py`) while the parent runs the talosctl and helm ones.

Two pipes join them:
- parent → child: the `nodename` fact, as soon as talosctl has answered (the Node's name may depend on
  it), length-prefixed. The parent keeps its end open while it wants the answers: end of file tells
  the child that the parent is gone or has given up (timeout, Ctrl-C), and the child stops at once.
- child → parent: each probe's ProbeResult as soon as it is known (length-prefixed pickles; a str
  instead says why the child could not go on), then end of file. What arrived before the sweep's
  time limit counts, however long the rest take.

Forking is used only where it is safe and pays: `os.fork` exists, this process runs one thread, and
the client is not imported yet. Anywhere else (the TUI, `enable`, in-process callers) the sweep reads
in threads as before. The child prints nothing; its results are the probes' own values and
(redacted) messages; its exit handlers remove the kubeconfig loader's temporary files, also when it
is stopped.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

import anyio

from checks.model import ProbeResult

if TYPE_CHECKING:  # this module is loaded before the stage tables and probes (tui/headless.py)
    from checks.node_cache import PluginNames
    from checks.probes import Probe
    from checks.target import Target

STOP_GRACE_S = 2.0
_HEADER = struct.Struct(">I")


class KubeProcess:
    """The parent's handle on the child that answers the Kubernetes probes."""

    def __init__(self, pid: int, results_fd: int, nodename_fd: int, remembered_node: str | None,
                 remembered_plugin: PluginNames | None, probes: tuple[Probe, ...] | Callable[[], tuple[Probe, ...]]
                 ) -> None:
        self.pid = pid
        self._probes = probes  # the Kubernetes probes (`Probe.kube`) the child answers, or how to list them
        self.remembered_node = remembered_node
        self.remembered_plugin = remembered_plugin
        self._results_fd = results_fd
        self._nodename_fd: int | None = nodename_fd
        self._guard = threading.Lock()
        self._reader_started = False
        self._reaped = False
        self._answers: dict[str, ProbeResult] = {}
        self._failure: str | None = None  # why the rest will not come, once known
        self._events: dict[str, anyio.Event] = {}  # created in the event loop, on first use

    @property
    def probes(self) -> tuple[Probe, ...]:
        if callable(self._probes):
            self._probes = self._probes()
        return self._probes

    @classmethod
    def start(cls, target: Target, *, timeout: float, remembered_node: str | None,
              remembered_plugin: PluginNames | None, guess: str | None) -> KubeProcess | None:
        """Fork the child; None where forking is not possible or not safe (the caller reads in-process).
        Both sides list the probes the child answers (`checks.paths.kube_probes`) from `guess`, the path
        the last run found: the parent once its stage tables are loaded, the child on its own core."""
        if not hasattr(os, "fork") or threading.active_count() != 1 or "kubernetes.client" in sys.modules \
                or os.environ.get("TALOS_GPU_KUBE_IN_PROCESS"):
            return None
        started = time.monotonic()
        results_r, results_w = os.pipe()
        nodename_r, nodename_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (results_r, results_w, nodename_r, nodename_w):
                os.close(fd)
            return None
        if pid == 0:  # the child: never returns
            os.close(results_r)
            os.close(nodename_w)
            _child(target, started + timeout, (remembered_node, remembered_plugin), nodename_r, results_w, started,
                   guess)
        os.close(results_w)
        os.close(nodename_r)
        return cls(pid, results_r, nodename_w, remembered_node, remembered_plugin, lambda: _kube_probes(target, guess))

    # ---- parent side, inside the sweep ----------------------------------------------------------

    def send_nodename(self, result: ProbeResult) -> None:
        """Hand the child the `nodename` fact (a small write: it never blocks)."""
        if self._nodename_fd is None:
            return
        try:
            _send(self._nodename_fd, result)
        except OSError:  # the child has ended: its answers (or their absence) say why
            pass

    def _event(self, name: str) -> anyio.Event:
        if name not in self._events:
            self._events[name] = anyio.Event()
        return self._events[name]

    async def answer(self, probe: Probe) -> ProbeResult:
        """The child's result for the probe, once it has come (`receive` must run alongside)."""
        await self._event(probe.name).wait()
        result = self._answers.get(probe.name)
        if result is None:
            reason = self._failure or "no answer"
            return ProbeResult(probe.name, probe.source, error=f"the Kubernetes reads did not finish: {reason}")
        return result

    async def receive(self) -> None:
        """Take the child's results as they come (a task of the sweep's task group). It returns once every
        result is in, or the child has ended; the reading thread then reads the end on its own.

        Each message is read in a worker thread and handled here, in the event loop. No thread ever waits on
        the loop: a thread that handed a result to the loop and waited for it (`anyio.from_thread.run_sync`)
        could wait forever when the sweep ended between its hand-over and the loop's close, and the
        interpreter then hung at exit joining that thread."""
        with self._guard:
            if self._reader_started:
                return
            self._reader_started = True
        try:
            missing = {probe.name for probe in self.probes}
            while missing:
                message = await anyio.to_thread.run_sync(self._next_message, abandon_on_cancel=True)
                if isinstance(message, ProbeResult):
                    self._arrived(message)
                    missing.discard(message.name)
                elif message is not None:  # why no more will come ("" at the end of the pipe)
                    # close the pipe and reap the child (quick: it closes the pipe as it exits), off the loop
                    self._failure = await anyio.to_thread.run_sync(self._finish, message, abandon_on_cancel=True)
                    return
            # every result is in: the end of the pipe and the child's exit are read off the event loop
            threading.Thread(target=self._drain, name="kube-reader-end", daemon=True).start()
        except BaseException:
            # cancelled (the sweep's time ran out): the abandoned read ends when the child does (`stop`)
            self._failure = self._failure or "the sweep ended first"
            raise
        finally:
            for probe in self.probes:
                self._event(probe.name).set()

    def _arrived(self, result: ProbeResult) -> None:
        self._answers[result.name] = result
        self._event(result.name).set()

    def _next_message(self) -> ProbeResult | str | None:
        """(worker thread) The child's next result; a str saying why no more will come; None when a message
        that is neither came (ignored)."""
        try:
            body = _read_message(self._results_fd)
        except EOFError:
            return "the reading process's answer was cut short"
        except OSError as exc:
            return f"the reading process's pipe broke ({exc.strerror or exc})"
        if body is None:
            return ""  # end of file: `_finish` says how the child ended
        try:
            message = pickle.loads(body)  # noqa: S301 - our own child, over a private pipe
        except Exception:  # noqa: BLE001
            return "the reading process's answer was not understood"
        return message if isinstance(message, (ProbeResult, str)) else None

    def _drain(self) -> None:
        """(thread) After the last result: read the pipe to its end, then close it and reap the child."""
        while isinstance(self._next_message(), ProbeResult):
            pass
        self._finish("")

    def _finish(self, reason: str | None) -> str:
        """(thread) Close the pipe, reap the child; why no more results come."""
        try:
            os.close(self._results_fd)
        except OSError:
            pass
        status = self._reap(block=True)
        return reason or f"the reading process ended ({_describe(status)})"

    # ---- parent side, after the sweep ---------------------------------------------------------

    def stop(self) -> None:
        """Let the child go (closing our end of its pipe stops it), and reap it: SIGKILL if it lingers."""
        if self._nodename_fd is not None:
            os.close(self._nodename_fd)
            self._nodename_fd = None
            if self._reap(block=False) is None:
                # what the pipe's end tells it anyway, at once: in a group of its own, the child does not get
                # the terminal's Ctrl-C; it needs the grace period for its exit handlers (temporary files)
                try:
                    os.kill(self.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_GRACE_S
        while self._reap(block=False) is None and time.monotonic() < deadline:
            time.sleep(0.001)
        if not self._reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(block=True)
        try:  # whatever the child started and left (a credential plugin) is in its group
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        with self._guard:
            if not self._reader_started:  # no thread reads it: ours to close
                self._reader_started = True
                os.close(self._results_fd)

    def _reap(self, *, block: bool) -> int | None:
        """The child's wait status once it has ended (0 if the other thread reaped it), else None. Not under
        the lock: a blocking wait must not hold up `stop()`."""
        if self._reaped:
            return 0
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped already, by the other thread
            self._reaped = True
            return 0
        if pid == 0:
            return None
        self._reaped = True
        return status


def _describe(status: int | None) -> str:
    if status is None:
        return "still running"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else "ended"


# ---- the child ------------------------------------------------------------------------------------


class _Parent:
    """(child) The pipe from the parent: the nodename fact, then end of file when the parent is done."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._nodename: ProbeResult | None = None
        self._ready = threading.Event()
        self.finished = False
        threading.Thread(target=self._watch, name="parent-pipe", daemon=True).start()

    def _watch(self) -> None:
        try:
            body = _read_message(self._fd)  # EOFError (cut short) means the same as the end of file
            if body is not None:
                value = pickle.loads(body)  # noqa: S301 - our own parent, over a private pipe
                if isinstance(value, ProbeResult):
                    self._nodename = value
                self._ready.set()
                while os.read(self._fd, 4096):  # nothing more is sent: wait for the end of file
                    pass
        except Exception:  # noqa: BLE001 - a broken pipe means the same as its end
            pass
        self._ready.set()
        if not self.finished:  # the parent is gone or gave up: stop like SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)

    async def nodename(self, probe: Probe) -> ProbeResult:
        await anyio.to_thread.run_sync(self._ready.wait, abandon_on_cancel=True)
        if self._nodename is None:
            return ProbeResult(probe.name, probe.source, error="talosctl did not answer")
        return self._nodename


def _read_message(fd: int) -> bytes | None:
    """One length-prefixed message (`_send`): its body, or None at end of file. EOFError: the pipe
    ended inside a message."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(fd, _HEADER.unpack(header)[0])
    if body is None:
        raise EOFError("cut short")
    return body


def _read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes into one buffer (linear: a 30 MB answer is not copied once per 64 KiB chunk)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = os.readv(fd, [view[got:]])
        if not count:
            return None
        got += count
    return bytes(buffer)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _ChildExitHandlers:
    """(child) The exit handlers registered in the forked reader, run by the reader itself before `os._exit`.

    The child inherits the parent's `atexit` handlers, which are the parent's to run (the demo's lab, the
    parent's own temporary files), and it leaves with `os._exit`, which runs none. What the child itself
    registers (the kubeconfig loader's temporary certificate files, `checks.errors`' private copies) is
    collected here instead, by replacing the `atexit.register` the child's code calls, and run in `run`:
    public `atexit` names only (the interpreter's `atexit._run_exitfuncs` and `_clear` are private)."""

    def __init__(self) -> None:
        self.handlers: list[tuple[Callable[..., object], tuple[object, ...], dict[str, object]]] = []

    def install(self) -> None:
        import atexit

        atexit.register = self.register  # type: ignore[assignment]  # this process only: it ends with os._exit
        atexit.unregister = self.unregister  # type: ignore[assignment]

    def register(self, func: Callable[..., object], *args: object, **kwargs: object) -> Callable[..., object]:
        self.handlers.append((func, args, kwargs))
        return func

    def unregister(self, func: Callable[..., object]) -> None:
        self.handlers = [entry for entry in self.handlers if entry[0] != func]

    def run(self) -> None:
        """Last registered first, as the interpreter does; one that raises does not stop the others."""
        while self.handlers:
            func, args, kwargs = self.handlers.pop()
            try:
                func(*args, **kwargs)
            except Exception:  # noqa: BLE001 - the child is leaving: nothing to report it to
                pass


def _kube_probes(target: Target, guess: str | None) -> tuple[Probe, ...]:
    from checks.paths import kube_probes

    return kube_probes(target.profile, guess)


def _child(target: Target, deadline: float, remembered: tuple[str | None, PluginNames | None], nodename_fd: int,
           results_fd: int, started: float, guess: str | None) -> NoReturn:
    exit_handlers = _ChildExitHandlers()
    code = 0
    try:
        exit_handlers.install()  # before anything registers one (the kubernetes client is imported below)
        os.setpgid(0, 0)  # a group of its own: the parent ends it with whatever it started (an exec plugin)
        from checks.runner import GuardedPopen

        GuardedPopen.own_session = False
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        parent = _Parent(nodename_fd)
        payload: str | None = None
        try:
            _read_kubernetes(target, deadline, remembered, parent, started, lambda r: _send(results_fd, r), guess)
        except KeyboardInterrupt:
            payload, code = None, 130
        except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
            from checks.errors import one_line

            payload, code = f"internal error: {one_line(exc)}", 1
        parent.finished = True
        if payload is not None:
            _send(results_fd, payload)
    except BaseException:  # noqa: BLE001 - whatever happens, the child ends here, silently
        code = code or 1
    finally:
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):  # done: let nothing cut the exit handlers short
                signal.signal(signum, signal.SIG_IGN)
            from checks.runner import kill_tracked_groups

            kill_tracked_groups()  # a credential plugin still running (the sweep's time ran out)
            exit_handlers.run()  # the kubeconfig loader's temporary files
        finally:
            os._exit(code)


def _send(fd: int, message: ProbeResult | str) -> None:
    """One length-prefixed pickle down a pipe (both ways; `_read_message` reads it)."""
    try:
        data = pickle.dumps(message)
    except Exception as exc:  # noqa: BLE001 - a value that cannot be sent is a reason, not a crash
        name = message.name if isinstance(message, ProbeResult) else "answer"
        data = pickle.dumps(f"the {name} result could not be sent ({type(exc).__name__})")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_kubernetes(target: Target, deadline: float, remembered: tuple[str | None, PluginNames | None],
                     parent: _Parent, started: float, send: Callable[[ProbeResult], None], guess: str | None) -> None:
    """(child) Import the client, then run the Kubernetes probes, sending each result as it is known."""
    from checks.adapters.kube_import import kubernetes_client

    try:
        kubernetes_client()  # first, on this core: every read waits for it
    except Exception:  # noqa: BLE001 - the probes' own reader reports an unusable client
        pass
    from checks.context import make_context

    probes = _kube_probes(target, guess)
    timeout = max(0.1, deadline - time.monotonic())
    ctx = make_context(target, timeout=timeout, remembered_node=remembered[0], remembered_plugin=remembered[1])
    ctx.elsewhere["nodename"] = parent.nodename
    offset = int((time.monotonic() - started) * 1000)  # a probe's time counts from the sweep's start, as in-process
    sent: set[str] = set()

    async def answer(probe: Probe) -> None:
        result = await ctx.get(probe)
        send(replace(result, duration_ms=result.duration_ms + offset))
        sent.add(probe.name)

    async def run() -> None:
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as group:
                for probe in probes:
                    group.start_soon(answer, probe)

    anyio.run(run)
    for probe in probes:
        if probe.name not in sent:
            send(ctx.timed_out(probe))


def start_kube_process(target: Target, *, timeout: float, pod_test: bool = False) -> KubeProcess | None:
    """For a one-shot sweep in a fresh process (`talos-gpu check`): fork the child that will answer the
    Kubernetes probes, before the sweep starts. None where that is not possible or not worth it (threads
    running, the client imported already, the GPU test pod wanted): the sweep then reads in-process."""
    if pod_test:
        return None
    from checks import node_cache

    node, plugin = node_cache.recall(target.kube.server, target.talos.node)
    guess = node_cache.remembered_path(target.kube.server, target.talos.node)
    return KubeProcess.start(target, timeout=timeout, remembered_node=node, remembered_plugin=plugin, guess=guess)
