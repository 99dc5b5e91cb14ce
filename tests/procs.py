"""Finding live processes by their command line (for "no process is left behind" assertions)."""

from __future__ import annotations

from pathlib import Path


def live_command_lines(*needles: str, exclude: tuple[str, ...] = ()) -> dict[int, str]:
    """pid → command line of every live (non-zombie) process whose command line contains all
    `needles` and none of `exclude`."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and all(n in cmdline for n in needles) and not any(x in cmdline for x in exclude):
            found[int(entry.name)] = cmdline.strip()
    return found
