"""Parsers for what the boot and the container runtime depend on: the machine config's `machine.files`
(op and path only), `talosctl ls`, `talosctl services`, and the boot-sequence lines of `talosctl dmesg`.

The machine config holds the cluster's keys and tokens: `parse_machine_files` keeps nothing of it but
each file entry's `op` and `path`, and its errors never quote the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from checks.parsers.base import ParseError, clean_lines, never_raises, too_large

MACHINE_FILES_EXPECTED = "talosctl get machineconfig -o yaml (the config as a YAML string under spec)"
LS_EXPECTED = "talosctl ls output (a NODE/NAME table, or one name per line)"
SERVICES_EXPECTED = "talosctl services output (NODE SERVICE STATE HEALTH ... table)"


@dataclass(frozen=True)
class MachineFile:
    op: str
    path: str


def _cut_short(text: str, expected: str) -> ParseError | None:
    """talosctl ends every line it prints; output that does not end with one was cut off (a dropped
    stream), and reading it would miss what came after: refuse it rather than judge a part."""
    if text.strip() and not text.endswith("\n"):
        return ParseError(expected, "the output ends in the middle of a line (cut short?)")
    return None


def _files_of(document: Any) -> list[MachineFile] | None:
    if not isinstance(document, dict):
        return None
    machine = document.get("machine")
    if not isinstance(machine, dict):
        return None
    entries = machine.get("files") or []
    if not isinstance(entries, list):
        return []
    files = []
    for entry in entries:
        if isinstance(entry, dict):
            files.append(MachineFile(str(entry.get("op") or ""), str(entry.get("path") or "")))
        else:
            files.append(MachineFile("", ""))
    return files


@never_raises(MACHINE_FILES_EXPECTED)
def parse_machine_files(text: str) -> tuple[MachineFile, ...] | ParseError:
    """`machine.files` (op, path) in order, from `talosctl get mc -o yaml` (or `-o json`).

    Talos presents the config under `spec` as its raw YAML text (older releases as a mapping); a
    multi-document config has the v1alpha1 document among others. Only op and path are kept."""
    import json

    import yaml

    from checks import yamlsafe

    refused = too_large(text, MACHINE_FILES_EXPECTED) or _cut_short(text, MACHINE_FILES_EXPECTED)
    if refused:
        return refused
    try:
        stripped = text.lstrip()
        if stripped.startswith("{"):
            decoder = json.JSONDecoder()
            outer, _ = decoder.raw_decode(stripped)
            documents = [outer]
        else:
            documents = [doc for doc in yamlsafe.safe_load_all(text) if doc is not None]
    except (yaml.YAMLError, ValueError):
        return ParseError(MACHINE_FILES_EXPECTED, "the output is not YAML or JSON")  # never quote it: secrets
    for outer in documents:
        spec = outer.get("spec") if isinstance(outer, dict) else None
        if isinstance(spec, str):
            try:
                inner = [doc for doc in yamlsafe.safe_load_all(spec) if doc is not None]
            except yaml.YAMLError:
                return ParseError(MACHINE_FILES_EXPECTED, "the config under spec is not YAML")
        else:
            inner = [spec]
        for document in inner:
            files = _files_of(document)
            if files is not None:
                return tuple(files)
        if isinstance(spec, str | dict):
            return ()  # a config without a machine section (or without files)
    return ParseError(MACHINE_FILES_EXPECTED, "no MachineConfig resource with a spec")


@never_raises(LS_EXPECTED)
def parse_ls_names(text: str) -> tuple[str, ...] | ParseError:
    """The names `talosctl ls DIR` lists (`.` dropped), from either of its formats."""
    refused = too_large(text, LS_EXPECTED) or _cut_short(text, LS_EXPECTED)
    if refused:
        return refused
    names: list[str] = []
    lines = [line for line in clean_lines(text) if line.strip()]
    table = bool(lines) and lines[0].split()[:1] == ["NODE"]
    for line in lines[1:] if table else lines:
        if table:
            parts = line.split(None, 1)
            name = parts[1].strip() if len(parts) == 2 else ""
        else:
            name = line.strip()
        if name and name != ".":
            names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class Service:
    id: str
    state: str
    health: str
    last_event: str


_SERVICE_STATES = ("Running", "Finished", "Failed", "Waiting", "Preparing", "Starting", "Stopping", "Skipped",
                   "Initialized", "Pre", "Unknown")


@never_raises(SERVICES_EXPECTED)
def parse_services(text: str) -> dict[str, Service] | ParseError:
    """Service id → state, from `talosctl services` (with or without the NODE column)."""
    refused = too_large(text, SERVICES_EXPECTED) or _cut_short(text, SERVICES_EXPECTED)
    if refused:
        return refused
    lines = [line for line in clean_lines(text) if line.strip()]
    header = next((index for index, line in enumerate(lines) if "SERVICE" in line.split() and
                   "STATE" in line.split()), None)
    if header is None:
        return ParseError(SERVICES_EXPECTED, "no SERVICE/STATE header")
    columns = lines[header].split()
    with_node = columns[0] == "NODE"
    services: dict[str, Service] = {}
    for line in lines[header + 1:]:
        parts = line.split()
        if with_node:
            parts = parts[1:]
        if len(parts) < 3:
            continue
        sid, state, health = parts[0], parts[1], parts[2]
        rest = line.split("ago", 1)[1].strip() if " ago" in line else ""
        services[sid] = Service(sid, state, health, rest)
    return services


# --------------------------------------------------------------------------- the boot sequence in dmesg

_BOOT_LINE_RE = re.compile(
    r"(?P<task>\w+) failed, rebooting in (?P<wait>[^.]+)\.|phase (?P<phase>\w+) \([^)]*\): failed|"
    r"task (?P<ftask>\w+) \([^)]*\): failed|boot sequence: failed|rebooting in \d+ seconds")
_ERROR_RE = re.compile(r"\berror: (?P<error>.+)$")


@dataclass(frozen=True)
class BootFailure:
    """The boot sequence stopped: the task that failed, its error, and the kernel-log lines that say so."""

    task: str
    error: str
    phase: str
    lines: tuple[str, ...]


def _message(line: str) -> str:
    """The message part of a `talosctl dmesg` line (after `...Z]: `), or the line."""
    match = re.search(r"\]:\s(.*)$", line)
    return (match.group(1) if match else line).strip()


@never_raises("a kernel log")
def parse_boot_failure(text: str) -> BootFailure | None | ParseError:
    """The last boot's failure from `talosctl dmesg`, None when the log shows none."""
    refused = too_large(text, "a kernel log")
    if refused:
        return refused
    found: list[str] = []
    task = error = phase = ""
    for line in clean_lines(text):
        match = _BOOT_LINE_RE.search(line)
        if match is None:
            continue
        message = _message(line)
        if match.group("task"):  # a new failure: forget an older boot's lines
            found, task, phase = [], match.group("task"), ""
            tail = _ERROR_RE.search(message)
            error = tail.group("error").strip() if tail else ""
        elif match.group("phase"):
            phase = match.group("phase")
        elif match.group("ftask") and not task:
            task = match.group("ftask")
            error = message.split(": failed: ", 1)[1].strip() if ": failed: " in message else error
        found.append(message)
    if not found:
        return None
    return BootFailure(task, error, phase, tuple(found))
