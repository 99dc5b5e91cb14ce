"""Issue 18: where the time of one first-contact `talos-gpu check` goes, probe by probe.

Runs `talos-gpu check --json` once under first_contact.py's cost model (an empty cache; talosctl and
helm as plain processes paying `--start-ms` and then the lab's `--talosctl-ms` round trip;
`--api-ms` per Kubernetes API request) with a few functions wrapped to note when they start and end:
each probe (`ProbeContext.get`, in the parent and in the forked reading child), each talosctl/helm
run, the client's import, the kubeconfig loading, each API request, the `nodename` fact reaching
the child. Every mark is `time.monotonic()` (one clock for both processes) relative to the moment
the bench spawned `check`. The wrapping costs a few microseconds per mark; nothing else changes.

Prints one timeline: a row per span (`P` the check process, `C` the reading child), its start and
end in ms, what it is (probe, its commands and requests indented under it), and a bar.

    .venv/bin/python bench/trace_first_contact.py [--start-ms 40] [--talosctl-ms 300] [--api-ms 100]
    .venv/bin/python bench/trace_first_contact.py --warm     # the second run: the cache filled
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TRACE_VARIABLE = "TALOS_GPU_BENCH_TRACE"


# ---- inside `check`: the wrapping --------------------------------------------------------------


def _when_imported(name: str, wrap: Any) -> None:
    """Call `wrap(module)` once module `name` has been executed (at once if it has been): the check loads its
    modules in the order it chooses, and the tracing must not load any of them sooner."""
    import importlib.abc
    import importlib.machinery

    if name in sys.modules:
        wrap(sys.modules[name])
        return

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None:
                return spec
            original = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                original(module)
                wrap(module)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Finder())


def _install(path: str) -> None:
    """(inside the traced check) Wrap the functions whose spans the timeline shows, each once its module
    has been loaded by the check itself."""
    import contextvars
    import functools

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    owner: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="-")
    main_pid = os.getpid()

    def mark(kind: str, name: str, start: float, end: float, parent: str | None = None) -> None:
        role = "P" if os.getpid() == main_pid else "C"
        line = json.dumps({"role": role, "kind": kind, "name": name, "start": start, "end": end,
                           "owner": parent if parent is not None else owner.get()})
        os.write(fd, (line + "\n").encode())

    mark("process", "interpreter up, tracing installed", time.monotonic(), time.monotonic(), "-")
    _watch_milestones(mark, main_pid)

    def wrap_probes(probes: Any) -> None:
        original_get = probes.ProbeContext.get

        @functools.wraps(original_get)
        async def get(self: Any, probe: Any) -> Any:
            name = probe.name
            if name in self._results or name in self._tasks:
                return await original_get(self, probe)
            waiter = owner.get()
            token = owner.set(name)
            start = time.monotonic()
            try:
                return await original_get(self, probe)
            finally:
                kind = "answer" if name in self.elsewhere else "probe"
                mark(kind, name, start, time.monotonic(), waiter)
                owner.reset(token)

        probes.ProbeContext.get = get
        original_make = probes.ProbeContext._make_reader

        def make_reader(self: Any) -> Any:
            start = time.monotonic()
            try:
                return original_make(self)
            finally:
                mark("reader", "kubeconfig loaded, ApiClient made", start, time.monotonic(), "-")

        probes.ProbeContext._make_reader = make_reader

    def wrap_runner(runner: Any) -> None:
        original_run = runner.run_command

        @functools.wraps(original_run)
        async def run_command(argv: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return await original_run(argv, **kwargs)
            finally:
                shown = runner.display_argv(argv)
                mark("command", shown, start, time.monotonic())

        runner.run_command = run_command

    def wrap_kube(kube: Any) -> None:
        original_answer = kube.KubeReader._answer

        @functools.wraps(original_answer)
        def answer(self: Any, what: str, *args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return original_answer(self, what, *args, **kwargs)
            finally:
                mark("request", what, start, time.monotonic())

        kube.KubeReader._answer = answer

    def wrap_kube_import(kube_import: Any) -> None:
        original_import = kube_import._import

        def import_client() -> Any:
            start = time.monotonic()
            try:
                return original_import()
            finally:
                mark("import", "kubernetes client import", start, time.monotonic(), "-")

        kube_import._import = import_client

    def wrap_kube_process(kube_process: Any) -> None:
        original_nodename = kube_process._Parent.nodename

        async def nodename(self: Any, probe: Any) -> Any:
            start = time.monotonic()
            try:
                return await original_nodename(self, probe)
            finally:
                mark("pipe", "nodename fact from the parent", start, time.monotonic())

        kube_process._Parent.nodename = nodename
        original_start = kube_process.KubeProcess.start.__func__

        def start_child(cls: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return original_start(cls, *args, **kwargs)
            finally:
                mark("fork", "fork of the reading child", start, time.monotonic(), "-")

        kube_process.KubeProcess.start = classmethod(start_child)

    for name, wrap in (("checks.probes", wrap_probes), ("checks.runner", wrap_runner),
                       ("checks.adapters.kube", wrap_kube), ("checks.adapters.kube_import", wrap_kube_import),
                       ("checks.kube_process", wrap_kube_process)):
        _when_imported(name, wrap)


MILESTONE_IMPORTS = ("tui.headless", "checks.engine", "asyncio", "anyio._backends._asyncio", "checks.prefetch",
                     "checks.parsers", "checks.judges", "rich")


def _watch_milestones(mark: Any, main_pid: int) -> None:
    """Marks from the interpreter's audit events (PEP 578): the first import of a few modules, the fork,
    the first and last program started by the check process."""
    seen: set[str] = set()
    spawns: list[float] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "import" and args and args[0] in MILESTONE_IMPORTS and args[0] not in seen:
            seen.add(args[0])
            now = time.monotonic()
            mark("milestone", f"import {args[0]} begins", now, now, "-")
        elif event in ("subprocess.Popen", "os.posix_spawn") and os.getpid() == main_pid:
            spawns.append(time.monotonic())
            if len(spawns) in (1, 16):
                mark("milestone", f"program #{len(spawns)} spawned ({os.path.basename(str(args[0]))})", spawns[-1],
                     spawns[-1], "-")

    sys.addaudithook(hook)


def _inside(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE.parent))
    _install(os.environ[TRACE_VARIABLE])
    from tui.cli import main

    code = main(argv)
    sys.stdout.flush()
    with open(os.environ[TRACE_VARIABLE], "a", encoding="utf-8") as stream:
        stream.write(json.dumps({"role": "P", "kind": "process", "name": "report written", "start": time.monotonic(),
                                 "end": time.monotonic(), "owner": "-"}) + "\n")
    return code


# ---- the bench: run one check and print its timeline ---------------------------------------------


def traced_check(env: dict[str, str], trace: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Spawn the traced check; its spawn time, its exit time (monotonic) and the result."""
    env = {**env, TRACE_VARIABLE: str(trace)}
    spawned = time.monotonic()
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--inside", "check", "--json"], env=env,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=HERE.parent)
    return spawned, time.monotonic(), result


ORDER = {"process": 0, "milestone": 0, "fork": 1, "import": 2, "reader": 3, "probe": 4, "answer": 4, "command": 5, "request": 5,
         "pipe": 5}


def timeline(events: list[dict[str, Any]], spawned: float, ended: float, *, scale_ms: float) -> list[str]:
    """The spans as rows: probes in start order, each followed by its commands and requests."""
    def ms(value: float) -> float:
        return (value - spawned) * 1000

    total = ms(ended)
    by_owner: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event in events:
        if event["kind"] in ("command", "request", "pipe"):
            by_owner.setdefault((event["role"], event["owner"]), []).append(event)
    heads = sorted((e for e in events if e["kind"] not in ("command", "request", "pipe")),
                   key=lambda e: (e["start"], ORDER[e["kind"]]))
    width = int(total / scale_ms) + 1
    rows = [f"{'':2} {'start':>6} {'end':>6} {'ms':>5}  {'span':<58} 0{'':{width - 6}}{total:.0f} ms"]

    def row(event: dict[str, Any], indent: str) -> str:
        start, end = ms(event["start"]), ms(event["end"])
        label = event["name"] if event["kind"] not in ("probe", "answer") else \
            f"{event['name']}{' (the child answers)' if event['kind'] == 'answer' else ''}" + \
            (f"  [asked by {event['owner']}]" if event["owner"] != "-" else "")
        bar_start = int(start / scale_ms)
        bar = " " * bar_start + ("#" * max(1, int((end - start) / scale_ms)) if end > start else "|")
        return f"{event['role']:2} {start:6.0f} {end:6.0f} {end - start:5.0f}  {(indent + label)[:58]:<58} {bar}"

    for head in heads:
        rows.append(row(head, ""))
        if head["kind"] == "probe":
            for child in sorted(by_owner.pop((head["role"], head["name"]), []), key=lambda e: e["start"]):
                rows.append(row(child, "  "))
    for (_role, owner), rest in sorted(by_owner.items()):  # spans outside any probe (none expected)
        for child in rest:
            rows.append(row({**child, "name": f"{child['name']} (in {owner})"}, ""))
    rows.append(f"P  {total:6.0f}        check exited")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-ms", type=int, default=40)
    parser.add_argument("--talosctl-ms", type=int, default=300)
    parser.add_argument("--api-ms", type=int, default=100)
    parser.add_argument("--warm", action="store_true", help="trace the second check (the cache the first left)")
    parser.add_argument("--scale-ms", type=float, default=10.0, help="ms per character of the bars")
    parser.add_argument("--json", action="store_true", help="also print the raw spans as one JSON line")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from common import lab
    from first_contact import fresh_home, shimmed_env

    with tempfile.TemporaryDirectory(prefix="talos-gpu-trace-") as tmp, \
            lab("healthy", knobs={"talosctl_latency_ms": args.talosctl_ms, "api_latency_ms": args.api_ms}) as handle:
        base = Path(tmp)
        env = shimmed_env(handle, base, args.start_ms)
        env.update(fresh_home(base, 0))
        trace = base / "trace.jsonl"
        if args.warm:
            traced_check(env, base / "unused.jsonl")
        spawned, ended, result = traced_check(env, trace)
        if result.returncode not in (0, 1):
            print(f"trace_first_contact.py: check exited {result.returncode}: {result.stderr.strip()[-400:]}")
            return 1
        events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"model: talosctl/helm start {args.start_ms} ms + {args.talosctl_ms} ms per call, {args.api_ms} ms per API "
          f"request; {'warm (cache filled)' if args.warm else 'first contact (empty cache)'}; "
          f"P = check, C = reading child")
    print("\n".join(timeline(events, spawned, ended, scale_ms=args.scale_ms)))
    if args.json:
        print("TRACE-JSON " + json.dumps({"spawned": spawned, "ended": ended, "events": events}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        sys.exit(_inside(sys.argv[2:]))
    sys.exit(main())
