"""Live processes read from /proc (for "no process is left behind" assertions)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    state: str  # "R", "S", "Z" (zombie) …
    command_line: str


def processes() -> Iterator[Process]:
    """Every process this user can see (those that vanish while being read are skipped)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        yield Process(int(entry.name), int(fields[1]), fields[0], cmdline.strip())


def live_command_lines(*needles: str, exclude: tuple[str, ...] = ()) -> dict[int, str]:
    """pid → command line of every live (non-zombie) process whose command line contains all
    `needles` and none of `exclude`."""
    return {p.pid: p.command_line for p in processes()
            if p.state != "Z" and all(n in p.command_line for n in needles)
            and not any(x in p.command_line for x in exclude)}


def live_children(pid: int) -> list[int]:
    """The live (non-zombie) children of `pid`."""
    return [p.pid for p in processes() if p.ppid == pid and p.state != "Z"]
